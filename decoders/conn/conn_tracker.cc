#include "decoders/conn/conn_tracker.h"

#include <algorithm>
#include <array>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace loupe {

struct ConnTracker::Connection {
  Connection(ConnInfo conn_info, ByteStream::Options stream_options)
      : info(std::move(conn_info)),
        streams{ByteStream(stream_options), ByteStream(stream_options)} {}

  // Heap-allocated (unique_ptr in the table) so that `info` has a stable
  // address: decoders keep the reference they were created with.
  ConnInfo info;
  std::array<ByteStream, kDirections> streams;
  std::unique_ptr<ConnectionDecoder> decoder;
  ProtocolStats protocol_stats;
  uint64_t last_active_ns = 0;
  // When each direction began holding out-of-order events; nullopt while it
  // holds none. If the first hole fills and a later one remains, the clock is
  // not restarted: the later hole is given up on a little early, which only
  // matters for events delayed by almost reorder_wait_ns.
  std::array<std::optional<uint64_t>, kDirections> pending_since_ns;
  LruList::iterator lru_position;
};

ConnTracker::ConnTracker(TrackerOptions options, SpanSink& sink,
                         std::span<const ProtocolDescriptor> protocols)
    : options_(std::move(options)), sink_(sink), protocols_(protocols) {}

ConnTracker::~ConnTracker() = default;

void ConnTracker::OnEvent(const KernelEvent& event) {
  std::visit(
      [this](const auto& e) {
        if constexpr (std::is_same_v<std::decay_t<decltype(e)>, ConnEvent>) {
          OnConnEvent(e);
        } else {
          OnDataEvent(e);
        }
      },
      event);
}

ConnTracker::Connection* ConnTracker::Find(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : it->second.get();
}

ConnTracker::Connection& ConnTracker::Create(uint64_t conn_id, ConnInfo info, uint64_t now_ns) {
  // A limit of 0 would leave no room for the connection being created; one
  // entry is the least the tracker can work with.
  const size_t limit = std::max<size_t>(options_.max_connections, 1);
  while (conns_.size() >= limit && !lru_.empty()) {
    Finish(lru_.front(), /*closed=*/false);
    ++retired_.connections_evicted;
  }
  info.conn_id = conn_id;
  auto conn = std::make_unique<Connection>(
      std::move(info), ByteStream::Options{.max_pending_events = options_.max_pending_events});
  conn->last_active_ns = now_ns;
  conn->lru_position = lru_.insert(lru_.end(), conn_id);
  Connection& ref = *conn;
  conns_.emplace(conn_id, std::move(conn));
  ++retired_.connections_opened;
  return ref;
}

void ConnTracker::Touch(Connection& conn, uint64_t now_ns) {
  // Events from different CPUs reach us slightly out of time order; activity
  // never moves backwards.
  conn.last_active_ns = std::max(conn.last_active_ns, now_ns);
  lru_.splice(lru_.end(), lru_, conn.lru_position);
}

void ConnTracker::OnConnEvent(const ConnEvent& event) {
  const uint64_t conn_id = event.header.conn_id;
  Connection* conn = Find(conn_id);
  if (event.open) {
    if (conn == nullptr) {
      ConnInfo info;
      info.tgid = event.header.tgid;
      info.tuple = event.tuple;
      info.role = event.role;
      info.role_source = event.role_source;
      info.protocol = event.protocol;
      info.start_ns = event.start_ns;
      info.comm = event.comm;
      Create(conn_id, std::move(info), event.header.ts_ns);
      return;
    }
    // The connection was created from a data event that overtook its open
    // (or the open is repeated): fill in what the open knows better.
    ConnInfo& info = conn->info;
    if (info.role == Role::kUnknown && event.role != Role::kUnknown) {
      info.role = event.role;
      info.role_source = event.role_source;
    }
    if (info.protocol == Protocol::kUnknown) info.protocol = event.protocol;
    if (info.comm.empty()) info.comm = event.comm;
    // The open's start_ns is connect/accept time; a data-created entry only
    // had its first sighting.
    if (event.start_ns != 0 && event.start_ns < info.start_ns) info.start_ns = event.start_ns;
    Touch(*conn, event.header.ts_ns);
    return;
  }
  // A close for a connection we do not hold (never had data, or already
  // evicted) has nothing to finish.
  if (conn == nullptr) return;
  if (conn->info.role == Role::kUnknown && event.role != Role::kUnknown) {
    conn->info.role = event.role;
    conn->info.role_source = event.role_source;
  }
  ++retired_.connections_closed;
  Finish(conn_id, /*closed=*/true);
}

void ConnTracker::OnDataEvent(const DataEvent& event) {
  const uint64_t conn_id = event.header.conn_id;
  const uint64_t now_ns = event.header.ts_ns;
  retired_.bytes_received += event.total_len;
  retired_.bytes_captured += event.payload.size();

  Connection* conn = Find(conn_id);
  if (conn == nullptr) {
    ++retired_.data_without_open;
    ConnInfo info;
    info.tgid = event.header.tgid;
    info.tuple = event.tuple;
    info.role = event.role;
    // A data event does not say how its role was learned.
    info.role_source = RoleSource::kNone;
    info.protocol = event.protocol;
    info.start_ns = event.enter_ns;  // first sighting
    conn = &Create(conn_id, std::move(info), now_ns);
  } else {
    Touch(*conn, now_ns);
    if (conn->info.role == Role::kUnknown && event.role != Role::kUnknown) {
      // The open event carried connect/accept roles; one appearing only
      // later was inferred by the kernel from the traffic.
      conn->info.role = event.role;
      conn->info.role_source = RoleSource::kTraffic;
    }
    if (conn->info.protocol == Protocol::kUnknown) conn->info.protocol = event.protocol;
  }

  if (!EnsureDecoder(*conn)) {
    // Nobody could parse these bytes; buffering them would only cost memory.
    ++retired_.unknown_protocol_events;
    return;
  }

  const Direction dir = event.direction;
  const int d = Index(dir);
  ByteStream& stream = conn->streams[d];
  const uint64_t end_before = stream.end();
  stream.Add(event.stream_offset, event.payload, event.total_len,
             EventTime{event.enter_ns, event.header.ts_ns, event.header.tid});
  if (!stream.has_pending()) {
    conn->pending_since_ns[d].reset();
  } else if (!conn->pending_since_ns[d].has_value()) {
    conn->pending_since_ns[d] = now_ns;
  }
  // An event held for reordering (or a pure duplicate) adds nothing to parse.
  if (stream.end() != end_before) Decode(*conn, dir);
  EnforceBounds(*conn, dir);
}

bool ConnTracker::EnsureDecoder(Connection& conn) {
  if (conn.decoder != nullptr) return true;
  for (const ProtocolDescriptor& protocol : protocols_) {
    if (protocol.id == conn.info.protocol) {
      conn.decoder = protocol.create(conn.info, options_.decoder);
      break;
    }
  }
  return conn.decoder != nullptr;
}

namespace {

// A decoder asked to switch protocols (HTTP/1.1 "Upgrade: h2c" answered by
// 101, RFC 7540 section 3.2): the next protocol's decoder, created with its
// create_upgraded, or null when that protocol cannot be upgraded to (the old
// decoder then stays and sees the rest as the end of its protocol).
std::unique_ptr<ConnectionDecoder> CreateUpgraded(std::span<const ProtocolDescriptor> protocols,
                                                  const ConnInfo& info,
                                                  const DecoderOptions& options,
                                                  const ProtocolUpgrade& upgrade) {
  if (upgrade.to == Protocol::kUnknown || upgrade.to == info.protocol) return nullptr;
  for (const ProtocolDescriptor& protocol : protocols) {
    if (protocol.id == upgrade.to && protocol.create_upgraded != nullptr) {
      return protocol.create_upgraded(info, options, upgrade);
    }
  }
  return nullptr;
}

}  // namespace

void ConnTracker::Decode(Connection& conn, Direction dir) {
  if (conn.decoder == nullptr) return;
  ProtocolUpgrade upgrade;
  DecodeContext ctx{conn.info, options_.decoder, sink_, conn.protocol_stats, &upgrade};
  conn.decoder->OnData(dir, conn.streams[Index(dir)], ctx);
  // The old decoder stopped consuming exactly where its protocol ended, in
  // both directions; the new one is offered the rest of both streams.
  std::unique_ptr<ConnectionDecoder> next =
      CreateUpgraded(protocols_, conn.info, options_.decoder, upgrade);
  if (next == nullptr) return;
  conn.info.protocol = upgrade.to;
  conn.decoder = std::move(next);
  ++conn.protocol_stats.upgrades;
  Decode(conn, dir);
  Decode(conn, Opposite(dir));
}

void ConnTracker::FlushReordered(Connection& conn, Direction dir) {
  ByteStream& stream = conn.streams[Index(dir)];
  conn.pending_since_ns[Index(dir)].reset();
  if (!stream.has_pending()) return;
  stream.FlushPending();
  Decode(conn, dir);
}

void ConnTracker::EnforceBounds(Connection& conn, Direction dir) {
  ByteStream& stream = conn.streams[Index(dir)];
  const size_t limit = options_.max_buffered_bytes_per_direction;
  if (stream.buffered_bytes() <= limit) return;

  // The decoder left more than the bound unconsumed (a message larger than
  // we are willing to hold, or a hole that keeps later bytes waiting): drop
  // the oldest bytes. Gaps at the head cost no memory but must be skipped to
  // reach the bytes that do.
  bool dropped_any = false;
  uint64_t dropped_captured = 0;
  while (stream.buffered_bytes() > limit) {
    if (stream.empty()) {
      if (!stream.has_pending()) break;  // only bookkeeping is left
      // Held out-of-order events alone exceed the bound: stop waiting for
      // the hole before them so that they can be dropped in order.
      stream.FlushPending();
      conn.pending_since_ns[Index(dir)].reset();
      continue;
    }
    if (const uint64_t gap = stream.GapLength(); gap > 0) {
      stream.DropHead(gap);
      dropped_any = true;
      continue;
    }
    const uint64_t excess = stream.buffered_bytes() - limit;
    const uint64_t n = std::min<uint64_t>(excess, stream.Contiguous().size());
    stream.DropHead(n);
    dropped_captured += n;
    dropped_any = true;
  }
  retired_.over_limit_bytes += dropped_captured;
  if (dropped_any && conn.decoder != nullptr) {
    DecodeContext ctx{conn.info, options_.decoder, sink_, conn.protocol_stats};
    conn.decoder->OnStreamReset(dir, ctx);
  }
}

void ConnTracker::Tick(uint64_t now_ns) {
  // Holes that were waited on long enough become gaps.
  for (auto& [conn_id, conn] : conns_) {
    for (int d = 0; d < kDirections; ++d) {
      const std::optional<uint64_t>& since = conn->pending_since_ns[d];
      if (!since.has_value() || now_ns < *since || now_ns - *since <= options_.reorder_wait_ns) {
        continue;
      }
      const Direction dir = static_cast<Direction>(d);
      FlushReordered(*conn, dir);
      EnforceBounds(*conn, dir);
    }
  }
  // The LRU list is in order of activity, so idle connections are at its
  // front and the scan stops at the first active one. (Activity times of
  // neighbours can be slightly out of order; a connection missed this way is
  // reclaimed at a later tick.)
  while (!lru_.empty()) {
    const uint64_t conn_id = lru_.front();
    const Connection& conn = *conns_.at(conn_id);
    if (now_ns <= conn.last_active_ns || now_ns - conn.last_active_ns <= options_.idle_timeout_ns) {
      break;
    }
    Finish(conn_id, /*closed=*/false);
    ++retired_.connections_idle;
  }
}

void ConnTracker::CloseAll() {
  while (!lru_.empty()) Finish(lru_.front(), /*closed=*/false);
}

uint64_t ConnTracker::EndProcess(uint32_t tgid, uint64_t now_ns, std::string_view abort_reason) {
  // Rare (a process exit), so a scan rather than an index kept per process.
  std::vector<uint64_t> ids;
  for (const auto& [id, conn] : conns_) {
    if (conn->info.tgid == tgid) ids.push_back(id);
  }
  uint64_t aborted = 0;
  for (uint64_t id : ids) aborted += Finish(id, /*closed=*/false, abort_reason, now_ns);
  retired_.connections_process_gone += ids.size();
  return aborted;
}

uint64_t ConnTracker::Finish(uint64_t conn_id, bool closed, std::string_view abort_reason,
                             uint64_t abort_ns) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return 0;
  // Out of the table before the decoder runs, so nothing it triggers can
  // find a half-finished connection.
  std::unique_ptr<Connection> conn = std::move(it->second);
  conns_.erase(it);
  lru_.erase(conn->lru_position);
  const uint64_t aborted_before = conn->protocol_stats.aborted_requests;

  if (conn->decoder != nullptr) {
    // Whatever was held for reordering will not be completed now; let the
    // decoder see it (as data after a gap) before the end.
    for (int d = 0; d < kDirections; ++d) FlushReordered(*conn, static_cast<Direction>(d));
    ProtocolUpgrade upgrade;
    DecodeContext ctx{conn->info, options_.decoder, sink_, conn->protocol_stats, &upgrade,
                      abort_reason, abort_ns};
    conn->decoder->OnClose(closed, conn->streams, ctx);
    // The switch may only show while the decoder drains at the close: the
    // next protocol's decoder then gets the rest and the close.
    if (std::unique_ptr<ConnectionDecoder> next =
            CreateUpgraded(protocols_, conn->info, options_.decoder, upgrade)) {
      conn->info.protocol = upgrade.to;
      conn->decoder = std::move(next);
      ++conn->protocol_stats.upgrades;
      for (int d = 0; d < kDirections; ++d) Decode(*conn, static_cast<Direction>(d));
      DecodeContext next_ctx{conn->info, options_.decoder, sink_, conn->protocol_stats,
                             nullptr, abort_reason, abort_ns};
      conn->decoder->OnClose(closed, conn->streams, next_ctx);
    }
  }
  const uint64_t aborted = conn->protocol_stats.aborted_requests - aborted_before;
  Retire(*conn);
  sink_.OnConnectionEnd(conn_id, std::max(conn->last_active_ns, aborted > 0 ? abort_ns : 0));
  return aborted;
}

void ConnTracker::Retire(Connection& conn) {
  for (const ByteStream& stream : conn.streams) {
    retired_.gap_bytes += stream.stats().gap_bytes;
    retired_.lost_bytes += stream.stats().lost_bytes;
  }
  retired_.protocol += conn.protocol_stats;
}

size_t ConnTracker::buffered_bytes() const {
  size_t total = 0;
  for (const auto& [conn_id, conn] : conns_) {
    for (const ByteStream& stream : conn->streams) total += stream.buffered_bytes();
  }
  return total;
}

TrackerStats ConnTracker::stats() const {
  TrackerStats total = retired_;
  for (const auto& [conn_id, conn] : conns_) {
    for (const ByteStream& stream : conn->streams) {
      total.gap_bytes += stream.stats().gap_bytes;
      total.lost_bytes += stream.stats().lost_bytes;
    }
    total.protocol += conn->protocol_stats;
  }
  return total;
}

}  // namespace loupe
