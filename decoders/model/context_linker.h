// Joins spans into traces: decides every exchange's trace id, span id,
// parent and sampling before the SpanAssembler turns it into a Span.
//
// It sits between the ConnTracker (decoders) and the SpanAssembler, and
// sees exchanges twice: announced when their request is seen
// (ExchangeStart, HTTP/1 and HTTP/2) and finished (SpanRecord). Decoders
// that do not announce (databases) are handled at completion, with the
// record's own start time. Decisions, in order of precedence:
//
//   SERVER  1. the CLIENT exchange on the other end of its connection, when
//              that end is on this node too (the client's local endpoint is
//              the server's remote endpoint; HTTP/2 stream ids equal; the
//              client's request open when the server read it): child of it.
//              A request header context naming another trace wins over this.
//           2. a request header context (traceparent, b3): child of the
//              caller's span, in the caller's trace.
//           3. otherwise a new trace.
//   CLIENT  1. outgoing header context equal to the incoming context of a
//              server exchange open on the same thread (a proxy forwarding
//              the header): child of that server exchange.
//           2. another outgoing header context (an instrumented process):
//              in that trace, child of the span the header names.
//           3. exactly one server exchange open on the same thread when the
//              request started: child of it (thread causality).
//           4. several open (an event loop interleaving requests): no link
//              is guessed, counted as ambiguous; a new trace.
//           5. none: a new trace.
//
// An exchange is decided once every exchange it may depend on has been
// announced: `decide_delay_ns` after its start in event time (events arrive
// nearly in time order; the tracker reorders within its own window). A
// decision that needs another exchange's decides that one first, so a trace
// id chosen for a request is the one all its descendants get, whatever the
// order in which their records finish. A record finished before its
// exchange is decided waits (bounded by the delay); one announced after
// its due time is decided at once with what is known (counted as late).
//
// Sampling is decided with the trace: roots by the sampler, header contexts
// by the parent-based sampler with the header's flag, children inherit.
//
// Bounded: at most `max_exchanges` are remembered (oldest are decided,
// emitted and forgotten first, counted), finished ones for `retain_ns`,
// unfinished ones for `max_open_ns` or until their connection ends.
#ifndef LOUPE_DECODERS_MODEL_CONTEXT_LINKER_H_
#define LOUPE_DECODERS_MODEL_CONTEXT_LINKER_H_

#include <cstdint>
#include <array>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "decoders/model/sampler.h"
#include "decoders/model/span.h"
#include "decoders/model/span_assembler.h"

namespace loupe {

struct LinkerOptions {
  // How long after an exchange's start (event time) its decision waits for
  // related exchanges to be announced.
  uint64_t decide_delay_ns = 20ull * 1000 * 1000;
  // A server's read may return a little before the client's write does
  // (both are syscall exit times): a client request may start this much
  // after the server's and still be its peer.
  uint64_t peer_slack_ns = 2ull * 1000 * 1000;
  // Finished exchanges are kept this long (their ids, for exchanges decided
  // late); they leave the lookup indexes once no pending decision can need
  // them.
  uint64_t retain_ns = 100ull * 1000 * 1000;
  // Unfinished exchanges (no response, connection still open) are
  // forgotten after this.
  uint64_t max_open_ns = 300ull * 1000 * 1000 * 1000;
  size_t max_exchanges = 65536;
  SamplerConfig sampler;
};

struct LinkerStats {
  uint64_t exchanges = 0;         // announced or completion-only exchanges seen
  uint64_t links_peer = 0;        // SERVER joined to its CLIENT on this node
  uint64_t links_header = 0;      // joined to a header context
  uint64_t links_forwarded = 0;   // CLIENT forwarding its server's header context
  uint64_t links_thread = 0;      // CLIENT under the one server open on its thread
  uint64_t ambiguous = 0;         // CLIENT with several servers open on its thread
  uint64_t roots = 0;             // new traces
  uint64_t late = 0;              // decided on arrival, after their due time
  uint64_t forced = 0;            // decided early: evicted or at shutdown
  uint64_t evicted = 0;           // forgotten to stay within max_exchanges
  uint64_t unannounced_records = 0;  // records whose announcement is unknown
  uint64_t pairs = 0;             // client/server pairs reported (service graph)
};

// A CLIENT exchange and the SERVER exchange it reached, both on this node
// and both finished: one edge of the service graph.
struct LinkedPair {
  uint32_t client_tgid = 0;
  uint32_t server_tgid = 0;
  bool failed = false;  // either side has status ERROR
  double client_seconds = 0;
  double server_seconds = 0;
};

class PairSink {
 public:
  virtual ~PairSink() = default;
  virtual void OnPair(const LinkedPair& pair) = 0;
};

class ContextLinker : public SpanSink {
 public:
  // Decided records go to `out` (the SpanAssembler); pairs to `pairs` (may
  // be null).
  ContextLinker(LinkerOptions options, SpanSink& out, PairSink* pairs, uint64_t id_seed);

  void OnExchangeStart(const ExchangeStart& start) override;
  void OnSpan(SpanRecord&& record) override;
  void OnConnectionEnd(uint64_t conn_id, uint64_t last_active_ns) override;

  // Event time has reached `now_ns`: decides what is due, emits what is
  // decided and finished, forgets what is old.
  void Advance(uint64_t now_ns);
  // Decides and emits everything finished (shutdown).
  void Flush();

  size_t pending() const { return exchanges_.size(); }
  const LinkerStats& stats() const { return stats_; }

 private:
  using Id = uint64_t;
  struct Exchange {
    Id id = 0;
    ExchangeKey key;
    bool announced = false;
    SpanKind kind = SpanKind::kServer;
    uint32_t tgid = 0;
    uint32_t tid = 0;
    uint64_t start_ns = 0;
    uint64_t end_ns = 0;
    bool ended = false;  // finished, or its connection ended without it
    StatusCode status = StatusCode::kUnset;
    ConnTuple tuple;
    std::optional<TraceContext> context;

    bool decided = false;
    bool deciding = false;
    TraceId trace_id{};
    SpanId span_id{};
    SpanId parent_span_id{};
    bool sampled = true;

    std::optional<SpanRecord> record;  // finished, waiting for the decision
    bool emitted = false;

    // CLIENT: the servers open on its thread when it arrived (thread
    // causality is decided from these): the first two, how many, and the
    // one whose incoming header context this client forwards.
    std::array<Id, 2> thread_servers{};
    uint32_t open_on_thread = 0;
    Id forwarded_from = 0;

    Id peer_client = 0;    // SERVER: the CLIENT exchange it was joined to
    Id paired_server = 0;  // CLIENT: the SERVER exchange joined to it
    bool pair_reported = false;
  };

  Exchange* Get(Id id);
  Id Add(Exchange exchange);
  void Decide(Exchange& x, int depth);
  void DecideServer(Exchange& s, int depth);
  void DecideClient(Exchange& c, int depth);
  void MakeRoot(Exchange& x);
  void ChildOf(Exchange& x, const Exchange& parent);
  Exchange* FindPeerClient(const Exchange& s);
  // Records in `c` the servers open on its thread at its start.
  void CaptureThreadServers(Exchange& c);
  // `x` is over: moves a server from its thread's open list to the ended.
  void MarkEnded(Exchange& x, uint64_t end_ns);
  bool IndexStale(const Exchange& x) const;
  // Pops index entries that are gone or stale from the front of `ids`.
  void TrimFront(std::deque<Id>& ids);
  void EmitIfReady(Exchange& x);
  void ReportPair(Exchange& server);
  void Forget(Id id);
  void DecideDue(uint64_t now_ns);

  LinkerOptions options_;
  SpanSink& out_;
  PairSink* pairs_;
  IdGenerator ids_;
  Id next_id_ = 1;
  absl::flat_hash_map<Id, Exchange> exchanges_;
  std::deque<Id> by_age_;  // creation order, for eviction and expiry
  // Announced exchanges by (conn_id, seq).
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, Id> by_key_;
  // Undecided exchanges by due time (earliest on top).
  std::priority_queue<std::pair<uint64_t, Id>, std::vector<std::pair<uint64_t, Id>>,
                      std::greater<>>
      due_;
  // SERVER exchanges by (tgid, tid); CLIENT exchanges by local endpoint.
  // Per thread: SERVER exchanges still open (few: the requests a thread
  // serves at once), and those over, in the order they ended. Entries of
  // exchanges forgotten or long over leave from the front (lazily, so an
  // index costs O(1) per exchange).
  struct ThreadServers {
    std::vector<Id> open;
    std::deque<Id> ended;
  };
  absl::flat_hash_map<uint64_t, ThreadServers> servers_by_thread_;
  // CLIENT exchanges by local endpoint, in creation order.
  absl::flat_hash_map<std::pair<std::array<uint8_t, 16>, uint16_t>, std::deque<Id>>
      clients_by_endpoint_;
  // Exchanges still open per connection, ended by OnConnectionEnd.
  absl::flat_hash_map<uint64_t, std::vector<Id>> open_by_conn_;
  uint64_t now_ns_ = 0;
  LinkerStats stats_;
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_CONTEXT_LINKER_H_
