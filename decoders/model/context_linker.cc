#include "decoders/model/context_linker.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace loupe {

namespace {

// Decisions that need another exchange's decide it first; chains are short
// (client -> server on its thread -> peer client -> ...), this bounds them.
constexpr int kMaxDepth = 16;

// An endpoint as a key that is the same for an IPv4 socket and an
// IPv4-mapped IPv6 one.
std::pair<std::array<uint8_t, 16>, uint16_t> EndpointKey(const Endpoint& e) {
  std::array<uint8_t, 16> bytes{};
  if (e.addr.family == AF_INET) {
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    std::memcpy(bytes.data() + 12, e.addr.bytes.data(), 4);
  } else {
    bytes = e.addr.bytes;
  }
  return {bytes, e.port};
}

bool SameEndpoint(const Endpoint& a, const Endpoint& b) { return EndpointKey(a) == EndpointKey(b); }

bool SameAddress(const Endpoint& a, const Endpoint& b) {
  return EndpointKey(a).first == EndpointKey(b).first;
}

bool IsLoopback(const Endpoint& e) {
  const std::array<uint8_t, 16> bytes = EndpointKey(e).first;
  static constexpr std::array<uint8_t, 16> kV6Loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                                           0, 0, 0, 0, 0, 0, 0, 1};
  const bool v4_mapped = bytes[10] == 0xff && bytes[11] == 0xff &&
                         std::all_of(bytes.begin(), bytes.begin() + 10, [](uint8_t b) { return b == 0; });
  return (v4_mapped && bytes[12] == 127) || bytes == kV6Loopback;
}

uint64_t ThreadKey(uint32_t tgid, uint32_t tid) { return (uint64_t{tgid} << 32) | tid; }

template <typename T>
void EraseValue(std::vector<T>& v, const T& value) {
  auto it = std::find(v.begin(), v.end(), value);
  if (it != v.end()) {
    *it = v.back();
    v.pop_back();
  }
}

double Seconds(uint64_t start_ns, uint64_t end_ns) {
  return end_ns > start_ns ? static_cast<double>(end_ns - start_ns) / 1e9 : 0.0;
}

}  // namespace

ContextLinker::ContextLinker(LinkerOptions options, SpanSink& out, PairSink* pairs,
                             uint64_t id_seed)
    : options_(options), out_(out), pairs_(pairs), ids_(id_seed) {
  options_.max_exchanges = std::max<size_t>(options_.max_exchanges, 1);
}

ContextLinker::Exchange* ContextLinker::Get(Id id) {
  if (id == 0) return nullptr;
  auto it = exchanges_.find(id);
  return it == exchanges_.end() ? nullptr : &it->second;
}

ContextLinker::Id ContextLinker::Add(Exchange exchange) {
  const Id id = next_id_++;
  exchange.id = id;
  ++stats_.exchanges;
  const uint64_t due = exchange.start_ns + options_.decide_delay_ns;
  if (exchange.kind == SpanKind::kServer) {
    ThreadServers& t = servers_by_thread_[ThreadKey(exchange.tgid, exchange.tid)];
    (exchange.ended ? t.ended.push_back(id) : t.open.push_back(id));
  } else {
    clients_by_endpoint_[EndpointKey(exchange.tuple.local)].push_back(id);
    CaptureThreadServers(exchange);
  }
  if (exchange.announced && !exchange.ended) {
    open_by_conn_[exchange.key.conn_id].push_back(id);
  }
  exchanges_.emplace(id, std::move(exchange));
  by_age_.push_back(id);
  due_.emplace(due, id);
  // Past the bound, the oldest go first: decided (with what is known) and
  // emitted if finished.
  while (exchanges_.size() > options_.max_exchanges && !by_age_.empty()) {
    const Id oldest = by_age_.front();
    by_age_.pop_front();
    Exchange* x = Get(oldest);
    if (x == nullptr) continue;
    if (!x->ended || !x->decided) ++stats_.evicted;
    if (!x->decided) {
      ++stats_.forced;
      Decide(*x, 0);
    }
    Forget(oldest);
  }
  return id;
}

void ContextLinker::OnExchangeStart(const ExchangeStart& start) {
  Exchange x;
  x.key = start.key;
  x.announced = true;
  x.kind = start.kind;
  x.tgid = start.tgid;
  x.tid = start.tid;
  x.start_ns = start.start_mono_ns;
  x.tuple = start.tuple;
  x.context = start.context;
  const std::pair<uint64_t, uint64_t> key{start.key.conn_id, start.key.seq};
  if (by_key_.contains(key)) return;  // announced twice: keep the first
  const Id id = Add(std::move(x));
  by_key_[key] = id;
  if (start.start_mono_ns + options_.decide_delay_ns <= now_ns_) {
    // Announced after its due time (held by the tracker's reordering, or
    // decoded late): decided now with what is known.
    ++stats_.late;
    if (Exchange* e = Get(id)) Decide(*e, 0);
  }
}

void ContextLinker::OnSpan(SpanRecord&& record) {
  Exchange* x = nullptr;
  if (record.key.seq != 0) {
    auto it = by_key_.find(std::pair{record.key.conn_id, record.key.seq});
    if (it != by_key_.end()) {
      x = Get(it->second);
      by_key_.erase(it);
    } else {
      ++stats_.unannounced_records;
    }
  }
  if (x == nullptr) {
    // A completion-only exchange (databases), or one whose announcement is
    // gone: it starts and ends now, with the record's own times.
    Exchange e;
    e.key = record.key;
    if (e.key.conn_id == 0) e.key.conn_id = record.conn_id;
    e.kind = record.kind;
    e.tgid = record.tgid;
    e.tid = record.tid;
    e.start_ns = record.start_mono_ns;
    e.tuple = record.tuple;
    e.context = record.context;
    e.ended = true;
    e.end_ns = record.end_mono_ns;
    e.status = record.status;
    const Id id = Add(std::move(e));
    x = Get(id);
    if (x == nullptr) return;  // cannot happen: just added
    x->record = std::move(record);
    if (x->start_ns + options_.decide_delay_ns <= now_ns_) Decide(*x, 0);
  } else {
    if (!x->ended) {
      auto open = open_by_conn_.find(x->key.conn_id);
      if (open != open_by_conn_.end()) {
        EraseValue(open->second, x->id);
        if (open->second.empty()) open_by_conn_.erase(open);
      }
    }
    MarkEnded(*x, record.end_mono_ns);
    x->status = record.status;
    x->record = std::move(record);
  }
  EmitIfReady(*x);
  if (x->kind == SpanKind::kServer) {
    ReportPair(*x);
  } else if (Exchange* server = Get(x->paired_server)) {
    ReportPair(*server);
  }
}

void ContextLinker::OnConnectionEnd(uint64_t conn_id, uint64_t last_active_ns) {
  auto it = open_by_conn_.find(conn_id);
  if (it == open_by_conn_.end()) return;
  for (Id id : it->second) {
    if (Exchange* x = Get(id); x != nullptr && !x->ended) {
      // Never answered: over at the connection's last activity (never
      // before its own start).
      MarkEnded(*x, std::max(last_active_ns, x->start_ns));
    }
  }
  open_by_conn_.erase(it);
}

void ContextLinker::Decide(Exchange& x, int depth) {
  if (x.decided || x.deciding) return;
  x.deciding = true;
  if (x.kind == SpanKind::kServer) {
    DecideServer(x, depth);
  } else {
    DecideClient(x, depth);
  }
  x.span_id = ids_.NewSpanId();
  x.deciding = false;
  x.decided = true;
  EmitIfReady(x);
  if (x.kind == SpanKind::kServer) {
    ReportPair(x);
  } else if (Exchange* server = Get(x.paired_server)) {
    ReportPair(*server);
  }
}

void ContextLinker::MakeRoot(Exchange& x) {
  ++stats_.roots;
  x.trace_id = ids_.NewTraceId();
  x.parent_span_id = SpanId{};
  x.sampled = ShouldSample(options_.sampler, x.trace_id, ParentSampling::kNone);
}

void ContextLinker::ChildOf(Exchange& x, const Exchange& parent) {
  x.trace_id = parent.trace_id;
  x.parent_span_id = parent.span_id;
  x.sampled = parent.sampled;
}

namespace {
void FromHeader(const TraceContext& context, const SamplerConfig& sampler, TraceId& trace,
                SpanId& parent, bool& sampled) {
  trace = context.trace_id;
  parent = context.span_id;
  sampled = ShouldSample(sampler, context.trace_id,
                         context.sampled ? ParentSampling::kSampled : ParentSampling::kNotSampled);
}
}  // namespace

void ContextLinker::DecideServer(Exchange& s, int depth) {
  Exchange* peer = FindPeerClient(s);
  if (peer != nullptr && depth < kMaxDepth) Decide(*peer, depth + 1);
  if (peer != nullptr && peer->decided &&
      (!s.context || s.context->trace_id == peer->trace_id)) {
    ++stats_.links_peer;
    ChildOf(s, *peer);
    s.peer_client = peer->id;
    peer->paired_server = s.id;
    return;
  }
  if (s.context) {
    ++stats_.links_header;
    FromHeader(*s.context, options_.sampler, s.trace_id, s.parent_span_id, s.sampled);
    return;
  }
  MakeRoot(s);
}

void ContextLinker::DecideClient(Exchange& c, int depth) {
  if (c.context) {
    Exchange* s = Get(c.forwarded_from);
    if (s != nullptr && depth < kMaxDepth) Decide(*s, depth + 1);
    if (s != nullptr && s->decided) {
      ++stats_.links_forwarded;
      ChildOf(c, *s);
      return;
    }
    ++stats_.links_header;
    FromHeader(*c.context, options_.sampler, c.trace_id, c.parent_span_id, c.sampled);
    return;
  }
  if (c.open_on_thread == 1) {
    Exchange* s = Get(c.thread_servers[0]);
    if (s != nullptr && depth < kMaxDepth) Decide(*s, depth + 1);
    if (s != nullptr && s->decided) {
      ++stats_.links_thread;
      ChildOf(c, *s);
      return;
    }
  } else if (c.open_on_thread > 1) {
    ++stats_.ambiguous;
  }
  MakeRoot(c);
}

ContextLinker::Exchange* ContextLinker::FindPeerClient(const Exchange& s) {
  if (s.tuple.remote.port == 0) return nullptr;  // socket address unknown
  auto it = clients_by_endpoint_.find(EndpointKey(s.tuple.remote));
  if (it == clients_by_endpoint_.end()) return nullptr;
  Exchange* best_full = nullptr;    // the client's remote is this server's local
  Exchange* best_partial = nullptr; // only the client's local matches (DNAT)
  TrimFront(it->second);
  for (Id id : it->second) {
    Exchange* c = Get(id);
    if (c == nullptr || IndexStale(*c)) continue;
    if (c->paired_server != 0 || c->deciding) continue;
    if (c->start_ns > s.start_ns + options_.peer_slack_ns) continue;
    if (c->ended && c->end_ns + options_.peer_slack_ns < s.start_ns) continue;
    if (c->key.stream_id != s.key.stream_id) continue;
    const bool full = SameEndpoint(c->tuple.remote, s.tuple.local);
    // Without the full match, only a client that dialled another address
    // than the server's (a translated service address) may be the peer: a
    // local port is reused for connections to other destinations while the
    // first is open, so the same address with another port is another
    // connection (a proxy's upstream call and its own client's connection).
    if (!full && (SameAddress(c->tuple.remote, s.tuple.local) || IsLoopback(c->tuple.remote) ||
                  IsLoopback(s.tuple.local))) {
      continue;
    }
    Exchange*& best = full ? best_full : best_partial;
    // The earliest unpaired request is the one this server read first
    // (keep-alive and pipelined requests are answered in order).
    if (best == nullptr || c->start_ns < best->start_ns) best = c;
  }
  return best_full != nullptr ? best_full : best_partial;
}

void ContextLinker::CaptureThreadServers(Exchange& c) {
  auto it = servers_by_thread_.find(ThreadKey(c.tgid, c.tid));
  if (it == servers_by_thread_.end()) return;
  auto consider = [&](const Exchange& s) {
    if (s.start_ns > c.start_ns) return;
    if (s.ended && s.end_ns < c.start_ns) return;
    if (s.key.conn_id == c.key.conn_id && c.key.conn_id != 0) return;
    if (c.open_on_thread < c.thread_servers.size()) c.thread_servers[c.open_on_thread] = s.id;
    ++c.open_on_thread;
    if (c.context && s.context && c.forwarded_from == 0 &&
        s.context->trace_id == c.context->trace_id && s.context->span_id == c.context->span_id) {
      c.forwarded_from = s.id;
    }
  };
  ThreadServers& t = it->second;
  for (Id id : t.open) {
    if (const Exchange* s = Get(id)) consider(*s);
  }
  // Those that ended since the client started (a database call is seen when
  // it finishes): the newest ended last.
  TrimFront(t.ended);
  for (auto r = t.ended.rbegin(); r != t.ended.rend(); ++r) {
    const Exchange* s = Get(*r);
    if (s == nullptr) continue;
    if (s->end_ns + options_.peer_slack_ns < c.start_ns) break;
    consider(*s);
  }
}

void ContextLinker::MarkEnded(Exchange& x, uint64_t end_ns) {
  if (x.ended) return;
  x.ended = true;
  x.end_ns = end_ns;
  if (x.kind != SpanKind::kServer) return;
  auto it = servers_by_thread_.find(ThreadKey(x.tgid, x.tid));
  if (it == servers_by_thread_.end()) return;
  EraseValue(it->second.open, x.id);
  it->second.ended.push_back(x.id);
}

void ContextLinker::TrimFront(std::deque<Id>& ids) {
  while (!ids.empty()) {
    const Exchange* x = Get(ids.front());
    if (x != nullptr && !IndexStale(*x)) break;
    ids.pop_front();
  }
}

bool ContextLinker::IndexStale(const Exchange& x) const {
  // Over before every exchange still to be decided started (their due
  // times are start + decide_delay_ns): no decision can need it, so it
  // leaves the lookup indexes (it stays in exchanges_ until retain_ns). An
  // exchange announced later than that is decided without it (late).
  if (!x.ended) return false;
  uint64_t horizon = now_ns_ > options_.decide_delay_ns ? now_ns_ - options_.decide_delay_ns : 0;
  if (!due_.empty()) {
    const uint64_t due = due_.top().first;
    horizon = std::min(horizon, due > options_.decide_delay_ns ? due - options_.decide_delay_ns : 0);
  }
  return x.end_ns + options_.peer_slack_ns < horizon;
}

void ContextLinker::EmitIfReady(Exchange& x) {
  if (!x.decided || !x.record || x.emitted) return;
  SpanRecord record = std::move(*x.record);
  x.record.reset();
  x.emitted = true;
  record.ids_decided = true;
  record.trace_id = x.trace_id;
  record.span_id = x.span_id;
  record.parent_span_id = x.parent_span_id;
  record.sampled = x.sampled;
  out_.OnSpan(std::move(record));
}

void ContextLinker::ReportPair(Exchange& server) {
  if (server.pair_reported || server.peer_client == 0 || !server.emitted) return;
  Exchange* client = Get(server.peer_client);
  if (client == nullptr || !client->emitted) return;
  server.pair_reported = true;
  ++stats_.pairs;
  if (pairs_ == nullptr) return;
  LinkedPair pair;
  pair.client_tgid = client->tgid;
  pair.server_tgid = server.tgid;
  pair.failed = client->status == StatusCode::kError || server.status == StatusCode::kError;
  pair.client_seconds = Seconds(client->start_ns, client->end_ns);
  pair.server_seconds = Seconds(server.start_ns, server.end_ns);
  pairs_->OnPair(pair);
}

void ContextLinker::Forget(Id id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  Exchange& x = it->second;
  // Out of its index when it is at the front (forgetting goes oldest
  // first, so it nearly always is); otherwise a later trim takes it.
  auto unindex = [&](auto& index, const auto& key) {
    auto entry = index.find(key);
    if (entry == index.end()) return;
    std::deque<Id>& ids = entry->second;
    if (!ids.empty() && ids.front() == id) ids.pop_front();
    while (!ids.empty() && Get(ids.front()) == nullptr) ids.pop_front();
    if (ids.empty()) index.erase(entry);
  };
  if (x.kind == SpanKind::kServer) {
    auto t = servers_by_thread_.find(ThreadKey(x.tgid, x.tid));
    if (t != servers_by_thread_.end()) {
      ThreadServers& ts = t->second;
      if (!x.ended) EraseValue(ts.open, id);
      if (!ts.ended.empty() && ts.ended.front() == id) ts.ended.pop_front();
      while (!ts.ended.empty() && Get(ts.ended.front()) == nullptr) ts.ended.pop_front();
      if (ts.open.empty() && ts.ended.empty()) servers_by_thread_.erase(t);
    }
  } else {
    unindex(clients_by_endpoint_, EndpointKey(x.tuple.local));
  }
  if (x.announced) {
    auto k = by_key_.find(std::pair{x.key.conn_id, x.key.seq});
    if (k != by_key_.end() && k->second == id) by_key_.erase(k);
    if (!x.ended) {
      auto open = open_by_conn_.find(x.key.conn_id);
      if (open != open_by_conn_.end()) {
        EraseValue(open->second, id);
        if (open->second.empty()) open_by_conn_.erase(open);
      }
    }
  }
  exchanges_.erase(it);
}

void ContextLinker::DecideDue(uint64_t now_ns) {
  while (!due_.empty() && due_.top().first <= now_ns) {
    // Decided before it leaves the queue: the queue's head bounds what the
    // lookup indexes must still hold (IndexStale).
    if (Exchange* x = Get(due_.top().second); x != nullptr) Decide(*x, 0);
    due_.pop();
  }
}

void ContextLinker::Advance(uint64_t now_ns) {
  if (now_ns > now_ns_) now_ns_ = now_ns;
  DecideDue(now_ns_);
  // Forget, oldest first, what is decided and emitted and has been over for
  // retain_ns, and what has stayed open for max_open_ns. An exchange that
  // is not yet forgettable holds the ones behind it until it is (the
  // max_exchanges bound still holds).
  while (!by_age_.empty()) {
    const Id id = by_age_.front();
    Exchange* x = Get(id);
    if (x == nullptr) {
      by_age_.pop_front();
      continue;
    }
    const bool finished = x->ended && x->decided && !x->record;
    const bool expired = finished && x->end_ns + options_.retain_ns <= now_ns_;
    const bool stale = !x->ended && x->start_ns + options_.max_open_ns <= now_ns_;
    if (!expired && !stale) break;
    if (!x->decided) {
      ++stats_.forced;
      Decide(*x, 0);
    }
    by_age_.pop_front();
    Forget(id);
  }
}

void ContextLinker::Flush() {
  // Decide in start order, so inference sees its parents decided first
  // (Decide recurses anyway).
  std::vector<Exchange*> open;
  open.reserve(exchanges_.size());
  for (auto& [id, x] : exchanges_) {
    if (!x.decided) open.push_back(&x);
  }
  std::sort(open.begin(), open.end(),
            [](const Exchange* a, const Exchange* b) { return a->start_ns < b->start_ns; });
  for (Exchange* x : open) {
    if (!x->decided) {
      ++stats_.forced;
      Decide(*x, 0);
    }
  }
}

}  // namespace loupe
