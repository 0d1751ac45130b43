// Trace context linking cost: a request chain (proxy SERVER, its CLIENT to
// a backend on the node, the backend's SERVER, a database call and an HTTP
// call on its thread, the leaf's SERVER) through the ContextLinker and the
// SpanAssembler, against the SpanAssembler alone on the same records (every
// span its own trace), in one binary. Requests overlap as under load: many
// threads, each serving one request at a time.
#include <arpa/inet.h>
#include <sys/socket.h>

#include <memory>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "decoders/model/context_linker.h"
#include "decoders/model/span_assembler.h"

namespace loupe {
namespace {

constexpr uint64_t kUs = 1000;

class NullConsumer : public SpanConsumer {
 public:
  void Consume(Span&& span) override { benchmark::DoNotOptimize(span.span_id); }
};

class FixedResources : public ResourceProvider {
 public:
  std::shared_ptr<const Resource> ForProcess(uint32_t) override { return resource_; }

 private:
  std::shared_ptr<const Resource> resource_ = std::make_shared<Resource>();
};

Endpoint Local(uint16_t port) {
  Endpoint e;
  e.addr.family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", e.addr.bytes.data());
  e.port = port;
  return e;
}

// One request's exchanges, in the order a pipeline delivers them.
struct Step {
  bool start;  // announce, else finish
  ExchangeStart announce;
  SpanRecord record;
};

std::vector<Step> Chain(uint64_t i, uint64_t t0) {
  std::vector<Step> steps;
  const uint32_t worker = 100;                                   // proxy: one event loop
  const uint32_t backend_thread = 200 + static_cast<uint32_t>(i % 64);  // thread per connection
  const uint64_t conn = i * 8;
  const auto proxy_ep = Local(static_cast<uint16_t>(20000 + i % 20000));
  const auto backend_ep = Local(8080);
  const auto call_ep = Local(static_cast<uint16_t>(40000 + i % 20000));
  const auto leaf_ep = Local(9090);
  auto announce = [&](uint64_t c, SpanKind kind, uint32_t tgid, uint32_t tid, uint64_t at,
                      ConnTuple tuple) {
    Step s{true, {}, {}};
    s.announce.key = ExchangeKey{c, 1, 0};
    s.announce.kind = kind;
    s.announce.tgid = tgid;
    s.announce.tid = tid;
    s.announce.start_mono_ns = at;
    s.announce.tuple = tuple;
    steps.push_back(std::move(s));
  };
  auto finish = [&](uint64_t c, uint64_t seq, SpanKind kind, uint32_t tgid, uint32_t tid,
                    uint64_t at, uint64_t end, ConnTuple tuple) {
    Step s{false, {}, {}};
    s.record.key = ExchangeKey{c, seq, 0};
    s.record.conn_id = c;
    s.record.kind = kind;
    s.record.name = "GET /api/{id}";
    s.record.tgid = tgid;
    s.record.tid = tid;
    s.record.start_mono_ns = at;
    s.record.end_mono_ns = end;
    s.record.tuple = tuple;
    steps.push_back(std::move(s));
  };
  announce(conn, SpanKind::kServer, worker, worker, t0, {});
  announce(conn + 1, SpanKind::kClient, worker, worker, t0 + 10 * kUs, {proxy_ep, backend_ep});
  announce(conn + 2, SpanKind::kServer, 200, backend_thread, t0 + 20 * kUs, {backend_ep, proxy_ep});
  finish(conn + 3, 0, SpanKind::kClient, 200, backend_thread, t0 + 30 * kUs, t0 + 60 * kUs, {});
  announce(conn + 4, SpanKind::kClient, 200, backend_thread, t0 + 70 * kUs, {call_ep, leaf_ep});
  announce(conn + 5, SpanKind::kServer, 300, 301, t0 + 80 * kUs, {leaf_ep, call_ep});
  finish(conn + 5, 1, SpanKind::kServer, 300, 301, t0 + 80 * kUs, t0 + 90 * kUs, {leaf_ep, call_ep});
  finish(conn + 4, 1, SpanKind::kClient, 200, backend_thread, t0 + 70 * kUs, t0 + 95 * kUs, {call_ep, leaf_ep});
  finish(conn + 2, 1, SpanKind::kServer, 200, backend_thread, t0 + 20 * kUs, t0 + 100 * kUs, {backend_ep, proxy_ep});
  finish(conn + 1, 1, SpanKind::kClient, worker, worker, t0 + 10 * kUs, t0 + 105 * kUs, {proxy_ep, backend_ep});
  finish(conn, 1, SpanKind::kServer, worker, worker, t0, t0 + 110 * kUs, {});
  return steps;
}

// One iteration is one request chain (six spans), a new one every 20 us
// (about five in flight at once), through a linker in its steady state:
// both benchmarks build the same steps, so the difference is the linking.
void BM_LinkerAndAssembler(benchmark::State& state) {
  FixedResources resources;
  NullConsumer out;
  SpanAssembler assembler(resources, out, 0, 1);
  ContextLinker linker(LinkerOptions{}, assembler, nullptr, 2);
  uint64_t i = 0;
  for (auto _ : state) {
    std::vector<Step> steps = Chain(i, 1000000 + i * 20 * kUs);
    ++i;
    for (Step& step : steps) {
      uint64_t now = 0;
      if (step.start) {
        now = step.announce.start_mono_ns;
        linker.OnExchangeStart(step.announce);
      } else {
        now = step.record.end_mono_ns;
        linker.OnSpan(std::move(step.record));
      }
      linker.Advance(now);
    }
  }
  linker.Flush();
  state.SetItemsProcessed(static_cast<int64_t>(assembler.spans_produced()));
  state.counters["pending"] = static_cast<double>(linker.pending());
}
BENCHMARK(BM_LinkerAndAssembler);

// Baseline: the same records straight into the assembler.
void BM_AssemblerOnly(benchmark::State& state) {
  FixedResources resources;
  NullConsumer out;
  SpanAssembler assembler(resources, out, 0, 1);
  uint64_t i = 0;
  for (auto _ : state) {
    std::vector<Step> steps = Chain(i, 1000000 + i * 20 * kUs);
    ++i;
    for (Step& step : steps) {
      if (!step.start) assembler.OnSpan(std::move(step.record));
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(assembler.spans_produced()));
}
BENCHMARK(BM_AssemblerOnly);

}  // namespace
}  // namespace loupe

BENCHMARK_MAIN();
