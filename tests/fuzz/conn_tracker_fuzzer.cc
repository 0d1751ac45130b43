// libFuzzer target: the connection tracker (decoders/conn) fed by a model of
// the kernel side. The input is a program of socket syscalls by a few
// processes; the model does what bpf/loupe.bpf.c and bpf/socket.bpf.h do
// with them (connection state per process and fd, stream offsets, the
// protocol classifier of bpf/classify.bpf.h on the first bytes, role from
// connect/accept or from traffic, payload prefixes), and the events it
// emits pass through a ring buffer that may reorder, lose, duplicate or
// corrupt them before ParseKernelEvent and the tracker see the bytes.
//
// Input format (make_seeds.cc writes fixtures in it):
//
//   input  := config op*
//   config := 1 byte
//     bits 0-1  payload prefix, HTTP/1 and framed protocols: 4096/32768 (the
//               agent's defaults), 64/256, 16/16, 32768/32768
//     bit 2     tight bounds: 3 connections, 1 KiB buffered per direction, 2
//               held out-of-order events, 512-byte headers, 4 pending
//               requests, 16 exchanges in the context linker
//     bit 3     url.query, HTTP headers (fuzz_support.h) and the Redis key
//               captured
//     bit 4     SQL text not sanitized
//   op := code operands; code bits 0-2 are the operation, bits 3-7 its flags
//     0 connect  sock            a client socket (role from connect)
//     1 accept   sock            a server socket (role from accept)
//     2 send     sock len:u16 [extra:u16] payload
//     3 recv     sock len:u16 [extra:u16] payload
//                flags 0x08  `extra` follows: bytes moved but not copied
//                      0x10  the data event is held by the ring buffer (a
//                            release op delivers it, or nothing does)
//                      0x20  the data event is lost
//                      0x30  (both) the connection's open event, if this
//                            call makes one, is lost; the data arrives
//                      0x40  the data event is delivered twice
//                      0x50  (held and twice) the open event, if this call
//                            makes one, is held with the data, once
//                      0x80  a second thread of the process makes the call
//     4 close    sock        flag 0x08: the process exits instead (no close
//                            events; the agent ends its connections), and
//                            0x10: it was OOM-killed
//     5 time     n:u8            event time moves 2^(n % 40) ns on; the
//                                tracker's and linker's housekeeping runs
//     6 release                  held events are delivered, oldest first
//                                (flag 0x08: newest first)
//     7 corrupt  at:u16 value:u8 the last delivered event again, with byte
//                                `at` replaced by `value` (flag 0x08: cut
//                                at `at` instead), parsed as a raw record
//   sock := 1 byte: process (bits 3-4, one of 4) and fd (bits 0-2, one of 8)
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <utility>

#include "tests/fuzz/fuzz_support.h"

#define LOUPE_CLASSIFY_IN_USERSPACE 1
#include "bpf/classify.bpf.h"

namespace loupe::fuzz {
namespace {

enum Op : uint8_t {
  kConnect = 0,
  kAccept = 1,
  kSend = 2,
  kRecv = 3,
  kClose = 4,
  kTime = 5,
  kRelease = 6,
  kCorrupt = 7,
};
constexpr uint8_t kFlagExtra = 0x08;
constexpr uint8_t kFlagHeld = 0x10;
constexpr uint8_t kFlagLost = 0x20;
constexpr uint8_t kFlagTwice = 0x40;
constexpr uint8_t kFlagOtherThread = 0x80;
constexpr uint8_t kFlagNewestFirst = 0x08;
constexpr uint8_t kFlagProcessExit = 0x08;
constexpr uint8_t kFlagOomKilled = 0x10;
constexpr uint8_t kFlagCut = 0x08;

constexpr uint8_t kConfigPrefixMask = 0x03;
constexpr uint8_t kConfigTight = 0x04;
constexpr uint8_t kConfigCaptureExtras = 0x08;
constexpr uint8_t kConfigRawSql = 0x10;

constexpr uint64_t kSyscallNs = 1000;
constexpr uint64_t kSyscallDurationNs = 400;
constexpr uint16_t kServerPort = 8080;

IpAddress V4(uint8_t last) {
  IpAddress addr;
  addr.family = AF_INET;
  addr.bytes = {10, 0, 0, last};
  return addr;
}

// struct loupe_conn_state (bpf/maps.bpf.h), as far as events show it.
struct SocketState {
  uint64_t conn_id = 0;
  Role role = Role::kUnknown;
  RoleSource role_source = RoleSource::kNone;
  Protocol protocol = Protocol::kUnknown;
  uint32_t classify_attempts = 0;
  bool announced = false;
  std::array<uint64_t, kDirections> bytes{};
  uint64_t start_ns = 0;
  ConnTuple tuple;
};

class KernelModel {
 public:
  KernelModel(Pipeline& pipeline, uint32_t prefix_http1, uint32_t prefix_framed)
      : pipeline_(pipeline), prefix_http1_(prefix_http1), prefix_framed_(prefix_framed) {}

  void Start(uint8_t sock, Role role) {
    const auto key = Key(sock);
    if (auto it = sockets_.find(key); it != sockets_.end()) {
      // loupe_conn_start: an fd reused without a close we saw.
      if (it->second.announced) Emit(EncodeConnEvent(MakeConnEvent(key, it->second, false)));
      sockets_.erase(it);
    }
    SocketState& s = sockets_[key];
    s.conn_id = next_conn_id_++;
    s.role = role;
    s.role_source = role == Role::kServer   ? RoleSource::kAccept
                    : role == Role::kClient ? RoleSource::kConnect
                                            : RoleSource::kNone;
    s.start_ns = now_;
    const uint16_t client_port = static_cast<uint16_t>(40000 + (sock & 7));
    const Endpoint server{V4(100), kServerPort};
    const Endpoint client{V4(1), client_port};
    s.tuple.local = role == Role::kServer ? server : client;
    s.tuple.remote = role == Role::kServer ? client : server;
    now_ += kSyscallNs;
  }

  // loupe_exit_data for one call that moved payload.size() + extra bytes.
  void Data(uint8_t sock, Direction dir, std::span<const uint8_t> payload, uint64_t extra,
            uint8_t flags) {
    const uint64_t total = payload.size() + extra;
    const uint64_t enter_ns = now_;
    now_ += kSyscallNs;
    if (total == 0) return;  // ret <= 0: nothing moved
    const auto key = Key(sock);
    if (sockets_.find(key) == sockets_.end()) Start(sock, Role::kUnknown);
    SocketState& s = sockets_[key];
    const uint64_t offset = s.bytes[Index(dir)];
    s.bytes[Index(dir)] += total;

    if (s.protocol == Protocol::kUnknown) {
      if (s.classify_attempts >= LOUPE_CLASSIFY_ATTEMPTS) return;
      ++s.classify_attempts;
      char head[LOUPE_CLASSIFY_BYTES] = {};
      const size_t n = std::min<size_t>(payload.size(), sizeof(head));
      if (n > 0) std::memcpy(head, payload.data(), n);
      const loupe_classification c =
          loupe_classify(head, static_cast<__u32>(n), total, offset);
      if (c.protocol == LOUPE_PROTO_UNKNOWN) return;
      s.protocol = static_cast<Protocol>(c.protocol);
      if (s.role == Role::kUnknown) {
        const bool sends_requests = (c.msg == LOUPE_MSG_REQUEST) == (dir == Direction::kEgress);
        s.role = sends_requests ? Role::kClient : Role::kServer;
        s.role_source = RoleSource::kTraffic;
      }
    }
    const bool held = (flags & kFlagHeld) != 0;
    const bool lose_open = held && (flags & kFlagLost) != 0;
    const bool hold_open = held && (flags & kFlagTwice) != 0;
    if (!s.announced) {
      s.announced = true;
      std::string open = EncodeConnEvent(MakeConnEvent(key, s, true));
      if (hold_open) {
        held_.push_back(std::move(open));
      } else if (!lose_open) {
        Emit(std::move(open));
      }
    }

    DataEvent e;
    e.header.type = LOUPE_EV_DATA;
    e.header.ts_ns = enter_ns + kSyscallDurationNs;
    e.header.conn_id = s.conn_id;
    e.header.tgid = key.first;
    e.header.tid = (flags & kFlagOtherThread) != 0 ? key.first + 100 : key.first;
    e.tuple = s.tuple;
    e.enter_ns = enter_ns;
    e.stream_offset = offset;
    e.total_len = total;
    e.direction = dir;
    e.protocol = s.protocol;
    e.role = s.role;
    e.syscall = dir == Direction::kEgress ? LOUPE_SYS_SENDTO : LOUPE_SYS_RECVFROM;
    const uint32_t limit = s.protocol == Protocol::kHttp1 ? prefix_http1_ : prefix_framed_;
    e.payload = payload.first(std::min<size_t>(payload.size(), limit));
    std::string raw = EncodeDataEvent(e);
    if (lose_open) {
      Emit(std::move(raw));
    } else if ((flags & kFlagLost) != 0) {
      // The ring buffer was full.
    } else if (held) {
      held_.push_back(std::move(raw));
    } else {
      Emit(raw);
      if ((flags & kFlagTwice) != 0) Emit(std::move(raw));
    }
  }

  void Close(uint8_t sock) {
    const auto key = Key(sock);
    auto it = sockets_.find(key);
    if (it == sockets_.end()) return;
    if (it->second.announced) Emit(EncodeConnEvent(MakeConnEvent(key, it->second, false)));
    sockets_.erase(it);
    now_ += kSyscallNs;
  }

  // The process is gone: the kernel closes its fds without close() calls
  // (no close events); the agent ends its connections when it learns of the
  // exit (agent/pipeline.cc), with "OOMKilled" when the OOM killer chose it.
  void ProcessExit(uint8_t sock, bool oom_killed) {
    const uint32_t tgid = Key(sock).first;
    for (auto it = sockets_.begin(); it != sockets_.end();) {
      it = it->first.first == tgid ? sockets_.erase(it) : std::next(it);
    }
    now_ += kSyscallNs;
    pipeline_.tracker().EndProcess(tgid, now_, oom_killed ? "OOMKilled" : "");
    pipeline_.CheckBounds();
  }

  void PassTime(uint8_t n) {
    now_ += uint64_t{1} << (n % 40);
    pipeline_.Advance(now_);
  }

  void Release(bool newest_first) {
    std::deque<std::string> held = std::move(held_);
    held_.clear();
    if (newest_first) std::reverse(held.begin(), held.end());
    for (std::string& raw : held) Emit(std::move(raw));
  }

  void Corrupt(uint16_t at, uint8_t value, bool cut) {
    if (last_.empty()) return;
    std::string raw = last_;
    if (cut) {
      raw.resize(at % (raw.size() + 1));
    } else {
      raw[at % raw.size()] = static_cast<char>(value);
    }
    Emit(std::move(raw));
  }

  uint64_t now() const { return now_; }

 private:
  using SocketKey = std::pair<uint32_t, uint32_t>;  // tgid, fd

  static SocketKey Key(uint8_t sock) {
    return {1000u + ((sock >> 3) & 3u), 3u + (sock & 7u)};
  }

  ConnEvent MakeConnEvent(const SocketKey& key, const SocketState& s, bool open) const {
    ConnEvent e;
    e.header.type = open ? LOUPE_EV_CONN_OPEN : LOUPE_EV_CONN_CLOSE;
    e.header.ts_ns = now_;
    e.header.conn_id = s.conn_id;
    e.header.tgid = key.first;
    e.header.tid = key.first;
    e.open = open;
    e.tuple = s.tuple;
    e.start_ns = s.start_ns;
    e.bytes_egress = s.bytes[Index(Direction::kEgress)];
    e.bytes_ingress = s.bytes[Index(Direction::kIngress)];
    e.role = s.role;
    e.role_source = s.role_source;
    e.protocol = s.protocol;
    e.comm = "proc" + std::to_string(key.first);
    return e;
  }

  // What the agent's reader thread does with a ring-buffer record.
  void Emit(std::string raw) {
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(raw.data()),
                                         raw.size());
    absl::StatusOr<KernelEvent> event = ParseKernelEvent(bytes);
    if (event.ok()) pipeline_.tracker().OnEvent(*event);
    pipeline_.CheckBounds();
    last_ = std::move(raw);
  }

  Pipeline& pipeline_;
  uint32_t prefix_http1_;
  uint32_t prefix_framed_;
  uint64_t now_ = 1'000'000'000;
  uint64_t next_conn_id_ = (uint64_t{1} << 48) | 1;
  std::map<SocketKey, SocketState> sockets_;
  std::deque<std::string> held_;
  std::string last_;
};

}  // namespace
}  // namespace loupe::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loupe;
  using namespace loupe::fuzz;
  FuzzInput in(data, size);
  const uint8_t config = in.U8();
  static constexpr std::pair<uint32_t, uint32_t> kPrefixes[] = {
      {4096, LOUPE_PAYLOAD_MAX}, {64, 256}, {16, 16}, {LOUPE_PAYLOAD_MAX, LOUPE_PAYLOAD_MAX}};
  const auto [prefix_http1, prefix_framed] = kPrefixes[config & kConfigPrefixMask];

  TrackerOptions options;
  LinkerOptions linker;
  if ((config & kConfigTight) != 0) {
    options.max_connections = 3;
    options.max_buffered_bytes_per_direction = 1024;
    options.max_pending_events = 2;
    options.decoder.max_header_bytes = 512;
    options.decoder.max_pending_requests = 4;
    linker.max_exchanges = 16;
  }
  if ((config & kConfigCaptureExtras) != 0) CaptureEverything(options.decoder);
  options.decoder.sanitize_sql = (config & kConfigRawSql) == 0;
  Pipeline pipeline(options, linker);
  KernelModel kernel(pipeline, prefix_http1, prefix_framed);

  while (!in.empty()) {
    const uint8_t code = in.U8();
    const uint8_t flags = code & 0xf8;
    switch (static_cast<Op>(code & 7)) {
      case kConnect:
        kernel.Start(in.U8(), Role::kClient);
        break;
      case kAccept:
        kernel.Start(in.U8(), Role::kServer);
        break;
      case kSend:
      case kRecv: {
        const uint8_t sock = in.U8();
        const uint16_t len = in.U16();
        const uint64_t extra = (flags & kFlagExtra) != 0 ? in.U16() : 0;
        const std::span<const uint8_t> payload = in.Bytes(len);
        kernel.Data(sock, (code & 7) == kSend ? Direction::kEgress : Direction::kIngress,
                    payload, extra, flags);
        break;
      }
      case kClose:
        if ((flags & kFlagProcessExit) != 0) {
          kernel.ProcessExit(in.U8(), (flags & kFlagOomKilled) != 0);
        } else {
          kernel.Close(in.U8());
        }
        break;
      case kTime:
        kernel.PassTime(in.U8());
        break;
      case kRelease:
        kernel.Release((flags & kFlagNewestFirst) != 0);
        break;
      case kCorrupt: {
        const uint16_t at = in.U16();
        kernel.Corrupt(at, in.U8(), (flags & kFlagCut) != 0);
        break;
      }
    }
  }
  pipeline.Finish(kernel.now());
  return 0;
}
