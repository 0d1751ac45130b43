// The OTLP span exporter under collector faults, end to end in one process:
// OtlpSpanExporter + MakeOtlpTransport (gRPC and HTTP) + EncodeTraceRequest,
// against tests/otlp_receiver/receiver.js, an OTLP receiver written
// independently (Node.js, @grpc/grpc-js, upstream .proto files) that records
// every request it decoded and injects faults on demand. (No OpenTelemetry
// Collector is packaged for this machine; this receiver is the stand-in.)
//
//   CollectorAbsentAtStart      export resumes once it comes up: the batch
//                               that outlived its retry deadline is dropped
//                               and counted, the later ones are delivered
//   CollectorKilledAndRestarted spans keep flowing at a steady rate while the
//                               receiver is SIGKILLed and restarted on the
//                               same ports: export resumes, every span is
//                               either delivered or counted as dropped, the
//                               queue never exceeds its bound, Consume never
//                               stalls
//   ThrottledWithRetryAfter     503 + Retry-After: 2 (gRPC: UNAVAILABLE +
//                               RetryInfo 2 s): the retry waits ~2 s, not the
//                               50 ms back-off
//   ResourceExhaustedWithRetryInfo  429 / RESOURCE_EXHAUSTED + RetryInfo:
//                               retried after the server's delay
//   CollectorHangs              the per-request timeout fires, Consume never
//                               blocks, the queue stays bounded, the stuck
//                               batch is dropped at its deadline, and
//                               Shutdown returns promptly
//
// Each runs over OTLP/gRPC and OTLP/HTTP.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "exporters/otlp/otlp_span_exporter.h"
#include "exporters/otlp/otlp_transport.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string ReceiverPrerequisites() { return OtlpReceiverProcess::Prerequisites(); }

// receiver.js with the 1.x protos (the shared helper keeps fixed ports, so
// it can be started late, killed and started again).
std::vector<std::string> WithProtos(std::vector<std::string> flags) {
  flags.insert(flags.begin(), {"--protos", "otlp-grpc-exporter-base"});
  return flags;
}

class Receiver : public OtlpReceiverProcess {
 public:
  explicit Receiver(std::vector<std::string> flags)
      : OtlpReceiverProcess(WithProtos(std::move(flags))) {}
  std::string endpoint(bool grpc) const {
    return grpc ? grpc_endpoint() : http_base() + "/v1/traces";
  }
};

std::shared_ptr<const Resource> TestResource() {
  static const std::shared_ptr<const Resource> resource = [] {
    auto r = std::make_shared<Resource>();
    r->attributes.Set("service.name", "otlp-faults-test");
    return r;
  }();
  return resource;
}

Span NamedSpan(const std::string& name, uint64_t n) {
  Span span;
  span.name = name;
  span.kind = SpanKind::kServer;
  for (int i = 0; i < 8; ++i) {
    span.trace_id[i] = static_cast<uint8_t>(n >> (8 * i));
    span.span_id[i] = static_cast<uint8_t>((n * 31 + 7) >> (8 * i));
  }
  span.trace_id[15] = 1;
  span.span_id[7] |= 0x80;
  span.start_unix_ns = UnixNowNs();
  span.end_unix_ns = span.start_unix_ns + 1000;
  span.attributes.Set("http.request.method", "GET");
  span.resource = TestResource();
  return span;
}

struct Logs {
  std::mutex mu;
  std::vector<std::string> lines;
  ExportLogFn fn() {
    return [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(line);
    };
  }
  bool Contains(const std::string& needle) {
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& l : lines) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  std::string All() {
    std::lock_guard<std::mutex> lock(mu);
    std::string out;
    for (const std::string& l : lines) out += l + "\n";
    return out;
  }
};

// Waits until `predicate` holds, up to `timeout`.
template <typename Predicate>
bool WaitFor(Predicate predicate, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class OtlpFaultsTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    const std::string missing = ReceiverPrerequisites();
    ASSERT_EQ(missing, "") << missing;
  }
  bool grpc() const { return GetParam(); }

  std::unique_ptr<OtlpSpanExporter> MakeExporter(const Receiver& receiver, OtlpBatchConfig batch,
                                                 std::chrono::milliseconds timeout, Logs* logs) {
    OtlpEndpointConfig endpoint;
    endpoint.protocol = grpc() ? OtlpProtocol::kGrpc : OtlpProtocol::kHttpProtobuf;
    endpoint.endpoint = receiver.endpoint(grpc());
    endpoint.timeout = timeout;
    absl::StatusOr<std::unique_ptr<OtlpTransport>> transport =
        MakeOtlpTransport(OtlpSignal::kTraces, endpoint);
    EXPECT_TRUE(transport.ok()) << transport.status();
    if (!transport.ok()) return nullptr;
    return std::make_unique<OtlpSpanExporter>(batch, *std::move(transport), logs->fn());
  }
};

std::string Transport(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Grpc" : "Http";
}

TEST_P(OtlpFaultsTest, CollectorAbsentAtStart) {
  Receiver receiver({});
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_queue_size = 100;
  batch.max_export_batch_size = 10;
  batch.schedule_delay = 100ms;
  batch.retry_deadline = 4000ms;
  batch.initial_backoff = 100ms;
  batch.max_backoff = 400ms;
  auto exporter = MakeExporter(receiver, batch, 1000ms, &logs);
  ASSERT_TRUE(exporter);

  for (int i = 0; i < 10; ++i) exporter->Consume(NamedSpan("early-" + std::to_string(i), i));
  // The mid batch outlives the early one by this much: the time the
  // receiver (Node.js) has to start, ample also on a loaded machine.
  std::this_thread::sleep_for(3000ms);
  for (int i = 0; i < 10; ++i) exporter->Consume(NamedSpan("mid-" + std::to_string(i), 100 + i));
  // The early batch has nowhere to go until its deadline.
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().dropped_retry_expired == 10; }, 8s))
      << logs.All();
  EXPECT_TRUE(logs.Contains("export failed:")) << logs.All();
  // The collector comes up while the mid batch is being retried.
  ASSERT_EQ(receiver.Start(), "");
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().spans_exported == 10; }, 8s))
      << logs.All();
  EXPECT_TRUE(logs.Contains("export recovered after")) << logs.All();
  for (int i = 0; i < 10; ++i) exporter->Consume(NamedSpan("late-" + std::to_string(i), 200 + i));
  exporter->Shutdown(3s);

  const ExporterStats s = exporter->stats();
  EXPECT_EQ(s.spans_exported, 20u);
  EXPECT_EQ(s.dropped_retry_expired, 10u);
  EXPECT_EQ(s.spans_dropped, 10u);
  EXPECT_GT(s.export_errors, 2u);
  EXPECT_EQ(s.queued, 0u);
  std::multiset<std::string> names;
  for (const std::string& n : receiver.SpanNames("ok")) names.insert(n);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(names.count("early-" + std::to_string(i)), 0u);
    EXPECT_EQ(names.count("mid-" + std::to_string(i)), 1u);
    EXPECT_EQ(names.count("late-" + std::to_string(i)), 1u);
  }
  EXPECT_EQ(names.size(), 20u);
}

TEST_P(OtlpFaultsTest, CollectorKilledAndRestarted) {
  Receiver receiver({});
  ASSERT_EQ(receiver.Start(), "");
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_queue_size = 200;
  batch.max_export_batch_size = 20;
  batch.schedule_delay = 100ms;
  batch.retry_deadline = 1500ms;
  batch.initial_backoff = 100ms;
  batch.max_backoff = 400ms;
  auto exporter = MakeExporter(receiver, batch, 1000ms, &logs);
  ASSERT_TRUE(exporter);

  // ~500 spans a second for ~9 s, from a "decoding thread".
  std::atomic<bool> producing{true};
  std::atomic<uint64_t> consumed{0};
  std::atomic<int64_t> slowest_consume_us{0};
  std::atomic<uint64_t> max_queued{0};
  std::thread producer([&] {
    for (uint64_t i = 0; producing; ++i) {
      const Clock::time_point t = Clock::now();
      exporter->Consume(NamedSpan("b-" + std::to_string(i), i));
      const int64_t us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
      if (us > slowest_consume_us) slowest_consume_us = us;
      ++consumed;
      std::this_thread::sleep_for(2ms);
    }
  });
  std::thread sampler([&] {
    while (producing) {
      const uint64_t q = exporter->stats().queued;
      if (q > max_queued) max_queued = q;
      std::this_thread::sleep_for(5ms);
    }
  });

  std::this_thread::sleep_for(1500ms);
  const uint64_t exported_before_kill = exporter->stats().spans_exported;
  receiver.Stop(SIGKILL);
  std::this_thread::sleep_for(3000ms);  // longer than the retry deadline
  const ExporterStats while_down = exporter->stats();
  ASSERT_EQ(receiver.Start(), "");
  // Time to reconnect (gRPC's reconnect back-off is capped at 2 s) and work
  // off the backlog; then one more second whose spans must all arrive.
  std::this_thread::sleep_for(3500ms);
  const uint64_t tail_start = consumed;
  std::this_thread::sleep_for(1000ms);
  producing = false;
  producer.join();
  sampler.join();
  exporter->Shutdown(5s);

  const ExporterStats s = exporter->stats();
  SCOPED_TRACE(logs.All());
  EXPECT_GT(exported_before_kill, 0u);
  // Nothing was delivered while the receiver was away, and the loss was counted.
  EXPECT_GT(while_down.spans_dropped, 0u);
  EXPECT_GT(s.dropped_retry_expired + s.dropped_queue_full, 0u);
  // Every span is accounted for, once.
  EXPECT_EQ(s.spans_exported + s.spans_dropped, consumed.load());
  EXPECT_EQ(s.spans_dropped, s.dropped_queue_full + s.dropped_retry_expired + s.dropped_rejected +
                                 s.dropped_shutdown);
  EXPECT_EQ(s.dropped_shutdown, 0u);
  // Bounded, never stalled.
  EXPECT_LE(max_queued.load(), 200u);
  // A Consume that waited on the network would take a whole 1 s timeout;
  // the bound leaves room for scheduling noise on a loaded machine.
  EXPECT_LT(slowest_consume_us.load(), 300000);
  // Export resumed: every span of the last second arrived.
  std::set<std::string> names;
  for (const std::string& n : receiver.SpanNames("ok")) names.insert(n);
  ASSERT_GT(consumed, tail_start);
  size_t tail_missing = 0;
  for (uint64_t i = tail_start; i < consumed; ++i) {
    tail_missing += names.count("b-" + std::to_string(i)) == 0 ? 1 : 0;
  }
  EXPECT_EQ(tail_missing, 0u) << "of " << consumed - tail_start;
  // Everything the exporter counts as delivered did arrive (duplicates from a
  // request answered by a dying receiver are allowed, OTLP "Duplicate Data").
  EXPECT_GE(names.size(), s.spans_exported);
  EXPECT_TRUE(logs.Contains("export failed:"));
  EXPECT_TRUE(logs.Contains("export recovered after"));
}

TEST_P(OtlpFaultsTest, ThrottledWithRetryAfter) {
  // HTTP: 503 + "Retry-After: 2"; gRPC: UNAVAILABLE + RetryInfo{2 s}.
  Receiver receiver({"--fail-first", "1", "--fail-with-status", "503", "--retry-after", "2"});
  ASSERT_EQ(receiver.Start(), "");
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_export_batch_size = 5;
  batch.schedule_delay = 50ms;
  batch.initial_backoff = 50ms;  // what the wait would be without the server's delay
  batch.max_backoff = 100ms;
  batch.retry_deadline = 10s;
  auto exporter = MakeExporter(receiver, batch, 2000ms, &logs);
  ASSERT_TRUE(exporter);
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < 5; ++i) exporter->Consume(NamedSpan("t-" + std::to_string(i), i));
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().spans_exported == 5; }, 6s)) << logs.All();
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 2000ms);
  EXPECT_LT(took, 3000ms);
  const ExporterStats s = exporter->stats();
  EXPECT_EQ(s.export_retries, 1u);
  EXPECT_EQ(s.export_errors, 1u);
  EXPECT_EQ(receiver.CountOutcome("failed"), 1u);
  EXPECT_EQ(receiver.SpanNames("ok").size(), 5u);
  EXPECT_EQ(receiver.SpanNames("failed"), receiver.SpanNames("ok"));  // the same batch again
  EXPECT_TRUE(logs.Contains(grpc() ? "server asks to retry in 2000ms" : "Retry-After: 2000ms"))
      << logs.All();
}

TEST_P(OtlpFaultsTest, ResourceExhaustedWithRetryInfo) {
  // HTTP: 429 + "Retry-After: 1"; gRPC: RESOURCE_EXHAUSTED + RetryInfo{1 s},
  // which is retryable only because the RetryInfo says the server can recover.
  Receiver receiver({"--fail-first", "1", "--fail-with-status", "429", "--retry-after", "1"});
  ASSERT_EQ(receiver.Start(), "");
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_export_batch_size = 3;
  batch.schedule_delay = 50ms;
  batch.initial_backoff = 50ms;
  batch.max_backoff = 100ms;
  auto exporter = MakeExporter(receiver, batch, 2000ms, &logs);
  ASSERT_TRUE(exporter);
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < 3; ++i) exporter->Consume(NamedSpan("r-" + std::to_string(i), i));
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().spans_exported == 3; }, 5s)) << logs.All();
  EXPECT_GE(Clock::now() - start, 1000ms);
  EXPECT_EQ(exporter->stats().dropped_rejected, 0u);
  EXPECT_EQ(receiver.SpanNames("ok").size(), 3u);
}

TEST_P(OtlpFaultsTest, PermanentErrorDropsTheBatch) {
  // HTTP 400 / gRPC INVALID_ARGUMENT: MUST NOT be retried.
  Receiver receiver({"--fail-first", "1", "--fail-with-status", "400"});
  ASSERT_EQ(receiver.Start(), "");
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_export_batch_size = 4;
  batch.schedule_delay = 50ms;
  auto exporter = MakeExporter(receiver, batch, 2000ms, &logs);
  ASSERT_TRUE(exporter);
  for (int i = 0; i < 4; ++i) exporter->Consume(NamedSpan("p-" + std::to_string(i), i));
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().dropped_rejected == 4; }, 5s)) << logs.All();
  for (int i = 0; i < 4; ++i) exporter->Consume(NamedSpan("q-" + std::to_string(i), 10 + i));
  exporter->Shutdown(3s);
  const ExporterStats s = exporter->stats();
  EXPECT_EQ(s.spans_exported, 4u);
  EXPECT_EQ(s.export_retries, 0u);
  EXPECT_EQ(receiver.Requests().size(), 2u);
  EXPECT_TRUE(logs.Contains("not retryable, data dropped")) << logs.All();
}

TEST_P(OtlpFaultsTest, CollectorHangs) {
  Receiver receiver({"--hang"});
  ASSERT_EQ(receiver.Start(), "");
  Logs logs;
  OtlpBatchConfig batch;
  batch.max_queue_size = 50;
  batch.max_export_batch_size = 10;
  batch.schedule_delay = 50ms;
  batch.retry_deadline = 1600ms;
  batch.initial_backoff = 100ms;
  batch.max_backoff = 200ms;
  auto exporter = MakeExporter(receiver, batch, 500ms, &logs);
  ASSERT_TRUE(exporter);

  const Clock::time_point start = Clock::now();
  int64_t slowest_us = 0;
  uint64_t max_queued = 0;
  for (int i = 0; i < 2500; ++i) {
    const Clock::time_point t = Clock::now();
    exporter->Consume(NamedSpan("h-" + std::to_string(i), i));
    slowest_us = std::max<int64_t>(
        slowest_us,
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
    if (i % 50 == 0) max_queued = std::max<uint64_t>(max_queued, exporter->stats().queued);
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(WaitFor([&] { return exporter->stats().dropped_retry_expired >= 10; }, 5s))
      << logs.All();
  const ExporterStats s = exporter->stats();
  SCOPED_TRACE(logs.All());
  EXPECT_LT(slowest_us, 250000);  // an attempt takes 500 ms: Consume never waited for one
  EXPECT_LE(max_queued, 50u);
  EXPECT_LE(s.queued, 50u);
  EXPECT_GT(s.dropped_queue_full, 1000u);
  EXPECT_EQ(s.spans_exported, 0u);
  // The timeout fired on each attempt: ~1.6 s of 0.5 s attempts plus
  // back-off is 2 to 4 attempts for the first batch, each seen by the receiver.
  const size_t hung = receiver.CountOutcome("hung");
  EXPECT_GE(hung, 2u);
  EXPECT_GE(s.export_errors, 2u);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  EXPECT_LE(s.export_errors, static_cast<uint64_t>(elapsed.count() / 500 + 1));
  EXPECT_TRUE(logs.Contains(grpc() ? "DEADLINE_EXCEEDED" : "Timeout")) << logs.All();
  // Shutdown does not wait out the hung collector: one more attempt at most.
  const Clock::time_point shutdown = Clock::now();
  exporter->Shutdown(300ms);
  EXPECT_LT(Clock::now() - shutdown, 300ms + 500ms + 300ms);
  const ExporterStats after = exporter->stats();
  EXPECT_EQ(after.queued, 0u);
  EXPECT_EQ(after.spans_exported + after.spans_dropped, 2500u);
}

INSTANTIATE_TEST_SUITE_P(Transports, OtlpFaultsTest, ::testing::Values(true, false), Transport);

}  // namespace
}  // namespace loupe::testing
