#include "tests/fuzz/conversation.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <vector>

#include "tests/fuzz/fuzz_support.h"

namespace loupe::fuzz {

namespace {

using namespace conversation;

constexpr uint64_t kConnId = 7;
constexpr uint32_t kTgid = 4242;
constexpr uint64_t kSyscallNs = 1000;  // between two syscalls' entries
constexpr uint64_t kSyscallDurationNs = 400;

IpAddress V4(uint8_t last) {
  IpAddress addr;
  addr.family = AF_INET;
  addr.bytes = {10, 0, 0, last};
  return addr;
}

uint16_t ServerPort(Protocol protocol) {
  switch (protocol) {
    case Protocol::kPostgres:
      return 5432;
    case Protocol::kMysql:
      return 3306;
    case Protocol::kRedis:
      return 6379;
    default:
      return 8080;
  }
}

// A data event with its own copy of the payload (held for reordering).
struct OwnedEvent {
  DataEvent event;
  std::vector<uint8_t> bytes;
};

}  // namespace

void FuzzConversation(Protocol protocol, const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t config = in.U8();
  const bool traced_is_server = (config & kTracedIsServer) != 0;
  const Role real_role = traced_is_server ? Role::kServer : Role::kClient;
  static constexpr Role kAnnounced[] = {Role::kUnknown, Role::kClient, Role::kServer};
  const uint8_t role_bits = config & kRoleMask;
  const Role role = role_bits == kRoleReal ? real_role : kAnnounced[role_bits];

  TrackerOptions options;
  LinkerOptions linker;
  if ((config & kTightBounds) != 0) {
    options.max_buffered_bytes_per_direction = 1024;
    options.max_pending_events = 2;
    options.decoder.max_header_bytes = 512;
    options.decoder.max_pending_requests = 4;
    linker.max_exchanges = 16;
  }
  if ((config & kCaptureExtras) != 0) CaptureEverything(options.decoder);
  options.decoder.sanitize_sql = (config & kRawSql) == 0;
  Pipeline pipeline(options, linker);
  ConnTracker& tracker = pipeline.tracker();

  ConnTuple tuple;
  const Endpoint server{V4(2), ServerPort(protocol)};
  const Endpoint client{V4(1), 40000};
  tuple.local = traced_is_server ? server : client;
  tuple.remote = traced_is_server ? client : server;

  uint64_t now = 1'000'000'000;
  if ((config & kNoOpen) == 0) {
    ConnEvent open;
    open.header.type = LOUPE_EV_CONN_OPEN;
    open.header.ts_ns = now;
    open.header.conn_id = kConnId;
    open.header.tgid = kTgid;
    open.header.tid = kTgid;
    open.tuple = tuple;
    open.start_ns = now;
    open.role = role;
    open.role_source = role == Role::kUnknown   ? RoleSource::kNone
                       : role == Role::kServer ? RoleSource::kAccept
                                               : RoleSource::kConnect;
    open.protocol = protocol;
    open.comm = "fuzz";
    tracker.OnConnEvent(open);
  }

  std::array<uint64_t, kDirections> offsets{};
  std::array<std::vector<OwnedEvent>, kDirections> held;
  auto deliver = [&](const DataEvent& event) {
    tracker.OnDataEvent(event);
    pipeline.CheckBounds();
  };

  while (!in.empty()) {
    const uint8_t flags = in.U8();
    const uint16_t len = in.U16();
    const uint64_t extra = (flags & kExtra) != 0 ? in.U16() : 0;
    const uint64_t lost = (flags & kLost) != 0 ? in.U16() : 0;
    const size_t piece = (flags & kPiece) != 0 ? std::max<size_t>(in.U8(), 1) : 0;
    const std::span<const uint8_t> payload = in.Bytes(len);

    const bool from_server = (flags & kFromServer) != 0;
    // What the traced process sends is egress.
    const Direction dir = from_server == traced_is_server ? Direction::kEgress
                                                          : Direction::kIngress;
    const int d = Index(dir);
    offsets[d] += lost;

    std::vector<OwnedEvent> events;
    const size_t step = piece == 0 ? std::max<size_t>(payload.size(), 1) : piece;
    for (size_t at = 0; at < payload.size() || (at == 0 && extra > 0); at += step) {
      const std::span<const uint8_t> part = payload.subspan(at, std::min(step, payload.size() - at));
      const bool last = at + step >= payload.size();
      OwnedEvent owned;
      owned.bytes.assign(part.begin(), part.end());
      DataEvent& e = owned.event;
      e.header.type = LOUPE_EV_DATA;
      e.header.ts_ns = now + kSyscallDurationNs;
      e.header.conn_id = kConnId;
      e.header.tgid = kTgid;
      e.header.tid = (flags & kOtherThread) != 0 ? kTgid + 1 : kTgid;
      e.tuple = tuple;
      e.enter_ns = now;
      e.stream_offset = offsets[d];
      e.total_len = part.size() + (last ? extra : 0);
      e.direction = dir;
      e.protocol = protocol;
      e.role = role;
      e.syscall = dir == Direction::kEgress ? LOUPE_SYS_WRITE : LOUPE_SYS_READ;
      offsets[d] += e.total_len;
      now += kSyscallNs;
      events.push_back(std::move(owned));
    }

    if ((flags & kHeld) != 0) {
      for (OwnedEvent& e : events) held[d].push_back(std::move(e));
    } else {
      for (OwnedEvent& e : events) {
        e.event.payload = e.bytes;
        deliver(e.event);
        if ((flags & kTwice) != 0) deliver(e.event);
      }
      // The held events arrive after the ones that overtook them.
      std::vector<OwnedEvent> late = std::move(held[d]);
      held[d].clear();
      for (OwnedEvent& e : late) {
        e.event.payload = e.bytes;
        deliver(e.event);
      }
    }
    if ((flags & kTick) != 0) {
      now += options.reorder_wait_ns + 1;
      pipeline.Advance(now);
    }
  }

  if ((config & kCloseSeen) != 0) {
    ConnEvent close;
    close.header.type = LOUPE_EV_CONN_CLOSE;
    close.header.ts_ns = now;
    close.header.conn_id = kConnId;
    close.header.tgid = kTgid;
    close.header.tid = kTgid;
    close.open = false;
    close.tuple = tuple;
    close.role = role;
    close.protocol = protocol;
    tracker.OnConnEvent(close);
  } else {
    now += options.idle_timeout_ns + 1;
    pipeline.Advance(now);
  }
  pipeline.Finish(now);
}

}  // namespace loupe::fuzz
