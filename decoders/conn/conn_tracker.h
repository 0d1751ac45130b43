// Connection tracker: kernel events in, per-direction byte streams, protocol
// decoders driven, finished exchanges out (to a SpanSink).
//
// Bounded everywhere: the number of connections (least recently active is
// evicted), bytes buffered per direction (the head is dropped as a gap),
// out-of-order waiting (flushed after reorder_wait_ns), idle connections
// (reclaimed after idle_timeout_ns). Every bound crossed is counted.
#ifndef LOUPE_DECODERS_CONN_CONN_TRACKER_H_
#define LOUPE_DECODERS_CONN_CONN_TRACKER_H_

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "decoders/conn/byte_stream.h"
#include "decoders/events.h"
#include "decoders/model/span.h"
#include "decoders/protocol.h"

namespace loupe {

struct TrackerOptions {
  size_t max_connections = 16384;
  size_t max_buffered_bytes_per_direction = 256 * 1024;
  uint64_t idle_timeout_ns = 300ull * 1000 * 1000 * 1000;
  uint64_t reorder_wait_ns = 50ull * 1000 * 1000;
  size_t max_pending_events = 16;
  DecoderOptions decoder;
};

struct TrackerStats {
  uint64_t connections_opened = 0;    // entered the table
  uint64_t connections_closed = 0;    // close() seen
  uint64_t connections_idle = 0;      // reclaimed after idle_timeout_ns
  uint64_t connections_evicted = 0;   // pushed out by max_connections
  uint64_t connections_process_gone = 0;  // ended because their process exited
  uint64_t data_without_open = 0;     // data for a connection not announced (open event lost)
  uint64_t unknown_protocol_events = 0;  // no decoder registered for the protocol
  uint64_t bytes_received = 0;        // total_len of data events
  uint64_t bytes_captured = 0;        // payload bytes of data events
  uint64_t gap_bytes = 0;             // truncated or lost bytes seen by streams
  uint64_t lost_bytes = 0;            // holes between events (ring loss, reorder given up)
  uint64_t over_limit_bytes = 0;      // captured bytes dropped by max_buffered_bytes_per_direction
  ProtocolStats protocol;             // summed over protocols
};

class ConnTracker {
 public:
  // `protocols` is the table decoders are created from; tests pass their own
  // to drive the tracker with a fake decoder. It must outlive the tracker.
  ConnTracker(TrackerOptions options, SpanSink& sink,
              std::span<const ProtocolDescriptor> protocols = RegisteredProtocols());
  // Frees everything without calling decoders or the sink (which may already
  // be gone): call CloseAll() first to hand in-flight exchanges over.
  ~ConnTracker();
  ConnTracker(const ConnTracker&) = delete;
  ConnTracker& operator=(const ConnTracker&) = delete;

  // Events are expected roughly in time order; their header.ts_ns is the
  // tracker's notion of activity for idle and reorder bookkeeping.
  void OnConnEvent(const ConnEvent& event);
  void OnDataEvent(const DataEvent& event);
  void OnEvent(const KernelEvent& event);
  // Housekeeping at CLOCK_MONOTONIC `now_ns` (event time in replays):
  // gives up on out-of-order holes, reclaims idle connections.
  void Tick(uint64_t now_ns);
  // Ends every connection as abandoned (shutdown).
  void CloseAll();
  // Ends the connections of process `tgid`, which is gone (it exited, or was
  // OOM-killed). With an `abort_reason` ("OOMKilled"), server requests still
  // waiting for their response become error spans with that reason ending at
  // now_ns (DecodeContext::abort_reason); returns how many.
  uint64_t EndProcess(uint32_t tgid, uint64_t now_ns, std::string_view abort_reason = {});

  size_t open_connections() const { return conns_.size(); }
  // Bytes held by all connections' streams (ByteStream::buffered_bytes()),
  // a memory gauge: at most 2 * max_buffered_bytes_per_direction per
  // connection between calls. O(open connections).
  size_t buffered_bytes() const;
  // Totals, including stream and protocol counters of live connections.
  TrackerStats stats() const;

 private:
  struct Connection;
  using LruList = std::list<uint64_t>;

  Connection* Find(uint64_t conn_id);
  Connection& Create(uint64_t conn_id, ConnInfo info, uint64_t now_ns);
  void Touch(Connection& conn, uint64_t now_ns);
  // Ends a connection: held out-of-order bytes are flushed and decoded, the
  // decoder sees OnClose(closed), counters are retired, the entry is removed.
  // With an abort_reason: see EndProcess. Returns the requests aborted.
  uint64_t Finish(uint64_t conn_id, bool closed, std::string_view abort_reason = {},
                  uint64_t abort_ns = 0);
  // Returns false when no decoder is registered for the connection's protocol.
  bool EnsureDecoder(Connection& conn);
  void Decode(Connection& conn, Direction dir);
  // Flushes out-of-order holes in `dir` and decodes what that released.
  void FlushReordered(Connection& conn, Direction dir);
  void EnforceBounds(Connection& conn, Direction dir);
  void Retire(Connection& conn);

  TrackerOptions options_;
  SpanSink& sink_;
  std::span<const ProtocolDescriptor> protocols_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> conns_;
  LruList lru_;  // front: least recently active
  // Event counters, plus the stream and protocol counters of connections
  // already gone; stats() adds those of live connections.
  TrackerStats retired_;
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_CONN_CONN_TRACKER_H_
