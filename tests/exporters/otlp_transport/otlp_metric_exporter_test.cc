// OtlpMetricExporter's schedule, empty snapshots, retry bound and final
// export, with a fake snapshot source and a scripted transport.
#include "exporters/otlp/otlp_metric_exporter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/exporters/otlp_transport/scripted_transport.h"

namespace loupe::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A snapshot with `points` histogram points spread over two metrics.
MetricsSnapshot SnapshotWith(int points, uint64_t now_unix_ns) {
  MetricsSnapshot snapshot;
  snapshot.time_unix_ns = now_unix_ns;
  if (points == 0) return snapshot;
  ResourceMetrics resource;
  resource.resource = std::make_shared<Resource>();
  MetricData a;
  a.name = "http.server.request.duration";
  MetricData b;
  b.name = "http.client.request.duration";
  for (int i = 0; i < points; ++i) {
    HistogramPoint p;
    p.time_unix_ns = now_unix_ns;
    p.count = 1;
    (i % 2 == 0 ? a : b).points.push_back(p);
  }
  resource.metrics.push_back(std::move(a));
  resource.metrics.push_back(std::move(b));
  snapshot.resources.push_back(std::move(resource));
  return snapshot;
}

std::string DescribeEncode(const MetricsSnapshot& snapshot) {
  size_t points = 0;
  for (const auto& r : snapshot.resources) {
    for (const auto& m : r.metrics) points += m.points.size();
  }
  return absl::StrCat("t=", snapshot.time_unix_ns, " points=", points);
}

struct Harness {
  std::shared_ptr<TransportScript> script = std::make_shared<TransportScript>();
  std::atomic<int> collections{0};
  std::atomic<int> points_per_collection{3};
  std::atomic<uint64_t> fake_now{1000};
  std::unique_ptr<OtlpMetricExporter> exporter;

  void Start(milliseconds interval, milliseconds retry_deadline,
             BackoffPolicy backoff = {milliseconds(20), milliseconds(40)}) {
    OtlpMetricsConfig config;
    config.export_interval = interval;
    config.retry_deadline = retry_deadline;
    exporter = std::make_unique<OtlpMetricExporter>(
        config, std::make_unique<ScriptedTransport>(script),
        [this](uint64_t now) {
          ++collections;
          return SnapshotWith(points_per_collection, now);
        },
        ExportLogFn{}, DescribeEncode, backoff, [this] { return fake_now += 1000; });
  }
};

TEST(OtlpMetricExporterTest, ExportsOneSnapshotPerInterval) {
  Harness h;
  const Clock::time_point start = Clock::now();
  h.Start(milliseconds(150), milliseconds(100));
  ASSERT_TRUE(h.script->WaitForAttempts(3, milliseconds(3000)));
  const std::vector<TransportScript::Attempt> a = h.script->attempts();
  // The first collection is one interval after the start, then every interval.
  EXPECT_GE(a[0].start - start, milliseconds(145));
  EXPECT_LE(a[0].start - start, milliseconds(400));
  EXPECT_GE(a[1].start - a[0].start, milliseconds(100));
  EXPECT_LE(a[1].start - a[0].start, milliseconds(300));
  // Collection times come from the exporter's clock, one per collection.
  EXPECT_EQ(a[0].body, "t=2000 points=3");
  EXPECT_EQ(a[1].body, "t=3000 points=3");
  h.exporter->Shutdown(milliseconds(500));
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_EQ(s.exports, static_cast<uint64_t>(h.script->attempts().size()));
  EXPECT_EQ(s.points_exported, 3 * s.exports);
  EXPECT_EQ(s.collections, static_cast<uint64_t>(h.collections.load()));
  EXPECT_EQ(s.exports_failed, 0u);
}

TEST(OtlpMetricExporterTest, EmptySnapshotsAreNotSent) {
  Harness h;
  h.points_per_collection = 0;
  h.Start(milliseconds(50), milliseconds(40));
  std::this_thread::sleep_for(milliseconds(300));
  h.exporter->Shutdown(milliseconds(200));
  EXPECT_TRUE(h.script->attempts().empty());
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_GE(s.empty_skipped, 3u);
  EXPECT_EQ(s.empty_skipped, s.collections);
  EXPECT_EQ(s.exports, 0u);
}

TEST(OtlpMetricExporterTest, RetriesOfOneSnapshotNeverOutlastTheInterval) {
  Harness h;
  h.script->SetFallback(Retryable());
  // retry_deadline far longer than the interval: the interval bounds it.
  h.Start(milliseconds(300), std::chrono::seconds(60));
  ASSERT_TRUE(h.script->WaitForAttempts(1, milliseconds(3000)));
  std::this_thread::sleep_for(milliseconds(1000));
  h.exporter->Shutdown(milliseconds(0));
  const std::vector<TransportScript::Attempt> a = h.script->attempts();
  // Group attempts by snapshot (the body names its collection time).
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> spans;
  for (const auto& attempt : a) {
    auto [it, inserted] = spans.try_emplace(attempt.body, attempt.start, attempt.start);
    it->second.second = attempt.start;
  }
  ASSERT_GE(spans.size(), 2u);
  for (const auto& [body, range] : spans) {
    EXPECT_LE(range.second - range.first, milliseconds(300) + milliseconds(40)) << body;
  }
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_GE(s.exports_failed, 2u);
  EXPECT_EQ(s.points_dropped, 3 * s.exports_failed);
  EXPECT_EQ(s.export_errors, a.size());
  EXPECT_EQ(s.exports, 0u);
}

TEST(OtlpMetricExporterTest, ShutdownCollectsAndExportsOnceMore) {
  Harness h;
  h.Start(std::chrono::seconds(60), std::chrono::seconds(5));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_TRUE(h.script->attempts().empty());
  h.points_per_collection = 5;
  h.exporter->Shutdown(milliseconds(1000));
  ASSERT_EQ(h.script->attempts().size(), 1u);
  EXPECT_EQ(h.script->bodies()[0], "t=2000 points=5");
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_EQ(s.exports, 1u);
  EXPECT_EQ(s.points_exported, 5u);
  h.exporter->Shutdown(milliseconds(1000));  // idempotent: no second final export
  EXPECT_EQ(h.script->attempts().size(), 1u);
}

TEST(OtlpMetricExporterTest, SumPointsAreSentAndCounted) {
  // A snapshot holding only counters (the service graph's, before any RED
  // histogram exists) is not empty.
  auto script = std::make_shared<TransportScript>();
  OtlpMetricsConfig config;
  config.export_interval = std::chrono::seconds(60);
  config.retry_deadline = std::chrono::seconds(5);
  OtlpMetricExporter exporter(
      config, std::make_unique<ScriptedTransport>(script),
      [](uint64_t now) {
        MetricsSnapshot snapshot;
        snapshot.time_unix_ns = now;
        ResourceMetrics resource;
        resource.resource = std::make_shared<Resource>();
        MetricData total;
        total.name = "traces_service_graph_request_total";
        total.type = MetricType::kSum;
        total.monotonic = true;
        total.sum_points.resize(2);
        resource.metrics.push_back(std::move(total));
        snapshot.resources.push_back(std::move(resource));
        return snapshot;
      },
      ExportLogFn{}, [](const MetricsSnapshot&) { return std::string("sums"); },
      BackoffPolicy{milliseconds(20), milliseconds(40)}, [] { return uint64_t{1000}; });
  exporter.Shutdown(milliseconds(1000));
  ASSERT_EQ(script->attempts().size(), 1u);
  const OtlpMetricExporterStats s = exporter.stats();
  EXPECT_EQ(s.empty_skipped, 0u);
  EXPECT_EQ(s.exports, 1u);
  EXPECT_EQ(s.points_exported, 2u);
}

TEST(OtlpMetricExporterTest, FinalExportRetriesWithinTheShutdownDeadline) {
  Harness h;
  h.script->Push(Retryable());
  h.script->Push(Retryable());
  h.Start(std::chrono::seconds(60), std::chrono::seconds(5));
  h.exporter->Shutdown(milliseconds(1000));
  EXPECT_EQ(h.script->attempts().size(), 3u);
  EXPECT_EQ(h.exporter->stats().exports, 1u);
}

TEST(OtlpMetricExporterTest, SnapshotInterruptedByShutdownIsSentOnceThenTheFinalOne) {
  Harness h;
  h.script->Push(Retryable());  // the periodic snapshot fails once ...
  // Retries are bounded by the interval (400 ms); the 5-10 s back-off is cut
  // to it, so Shutdown right after the first attempt interrupts the wait.
  h.Start(milliseconds(400), std::chrono::seconds(60),
          BackoffPolicy{std::chrono::seconds(10), std::chrono::seconds(10)});
  ASSERT_TRUE(h.script->WaitForAttempts(1, milliseconds(3000)));
  // ... and waits 5-10 s for its retry when Shutdown comes.
  const Clock::time_point start = Clock::now();
  h.exporter->Shutdown(milliseconds(1000));
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  const std::vector<std::string> bodies = h.script->bodies();
  ASSERT_EQ(bodies.size(), 3u);
  EXPECT_EQ(bodies[0], "t=2000 points=3");
  EXPECT_EQ(bodies[1], "t=2000 points=3");  // its one last attempt
  EXPECT_EQ(bodies[2], "t=3000 points=3");  // the final collection
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_EQ(s.exports, 2u);
  EXPECT_EQ(s.exports_failed, 0u);
}

TEST(OtlpMetricExporterTest, PermanentFailureDropsTheSnapshot) {
  Harness h;
  h.script->Push(Permanent());
  h.Start(milliseconds(100), std::chrono::seconds(5));
  ASSERT_TRUE(h.script->WaitForAttempts(2, milliseconds(3000)));
  h.exporter->Shutdown(milliseconds(500));
  const OtlpMetricExporterStats s = h.exporter->stats();
  EXPECT_EQ(s.exports_failed, 1u);
  EXPECT_EQ(s.points_dropped, 3u);
  EXPECT_GE(s.exports, 1u);
  EXPECT_EQ(s.export_retries, 0u);
}

}  // namespace
}  // namespace loupe::testing
