// Observed instruments of the metric model (MetricsRecorder::RecordObserved):
// values set rather than counted, their series' start times, cumulative and
// delta collections, forgetting, idle eviction and bounds; and their exact
// Prometheus exposition.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "decoders/model/metrics.h"
#include "exporters/prometheus/prometheus_format.h"

// Counts heap allocations while g_count_allocations is set (steady-state
// recording must make none).
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<uint64_t> g_allocations{0};
}  // namespace

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace loupe {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kT0 = 1'700'000'000 * kSecond;

std::shared_ptr<const Resource> Process(int64_t pid) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", "shop");
  r->attributes.Set("service.instance.id", "h:" + std::to_string(pid));
  r->attributes.Set("process.pid", pid);
  return r;
}

Attributes Mode(const std::string& mode) {
  Attributes a;
  a.Set("cpu.mode", mode);
  return a;
}

const MetricData* FindMetric(const ResourceMetrics& rm, const std::string& name) {
  for (const MetricData& m : rm.metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const SumPoint* FindPoint(const MetricsSnapshot& s, int64_t pid, const std::string& name,
                          const std::string& mode = "") {
  for (const ResourceMetrics& rm : s.resources) {
    const int64_t* p = rm.resource->attributes.FindInt("process.pid");
    if (p == nullptr || *p != pid) continue;
    const MetricData* m = FindMetric(rm, name);
    if (m == nullptr) return nullptr;
    for (const SumPoint& point : m->sum_points) {
      const std::string* v = point.attributes.FindString("cpu.mode");
      if (mode.empty() ? v == nullptr : (v != nullptr && *v == mode)) return &point;
    }
  }
  return nullptr;
}

TEST(ObservedInstruments, NamesUnitsAndKindsFollowTheConventions) {
  struct Want {
    ObservedInstrument instrument;
    const char* name;
    const char* unit;
    bool monotonic;
    const char* prometheus;
  };
  const Want want[] = {
      {ObservedInstrument::kProcessCpuTime, "process.cpu.time", "s", true,
       "process_cpu_time_seconds_total"},
      {ObservedInstrument::kProcessMemoryUsage, "process.memory.usage", "By", false,
       "process_memory_usage_bytes"},
      {ObservedInstrument::kProcessMemoryVirtual, "process.memory.virtual", "By", false,
       "process_memory_virtual_bytes"},
      {ObservedInstrument::kProcessPagingFaults, "process.paging.faults", "{fault}", true,
       "process_paging_faults_total"},
      {ObservedInstrument::kProcessThreadCount, "process.thread.count", "{thread}", false,
       "process_thread_count"},
      {ObservedInstrument::kContainerCpuTime, "container.cpu.time", "s", true,
       "container_cpu_time_seconds_total"},
      {ObservedInstrument::kContainerMemoryUsage, "container.memory.usage", "By", false,
       "container_memory_usage_bytes"},
      {ObservedInstrument::kContainerMemoryWorkingSet, "container.memory.working_set", "By", false,
       "container_memory_working_set_bytes"},
      {ObservedInstrument::kContainerMemoryRss, "container.memory.rss", "By", false,
       "container_memory_rss_bytes"},
      {ObservedInstrument::kContainerMemoryLimit, "loupe.container.memory.limit", "By", false,
       "loupe_container_memory_limit_bytes"},
      {ObservedInstrument::kContainerCpuPeriods, "loupe.container.cpu.periods", "{period}", true,
       "loupe_container_cpu_periods_total"},
      {ObservedInstrument::kContainerCpuThrottledPeriods, "loupe.container.cpu.throttled.periods",
       "{period}", true, "loupe_container_cpu_throttled_periods_total"},
      {ObservedInstrument::kContainerCpuThrottledTime, "loupe.container.cpu.throttled.time", "s",
       true, "loupe_container_cpu_throttled_time_seconds_total"},
      {ObservedInstrument::kContainerMemoryOomKills, "loupe.container.memory.oom_kills", "{kill}",
       true, "loupe_container_memory_oom_kills_total"},
  };
  ASSERT_EQ(std::size(want), kObservedInstrumentCount);
  for (const Want& w : want) {
    const ObservedInstrumentInfo& info = ObservedInstrumentInfoOf(w.instrument);
    SCOPED_TRACE(w.name);
    EXPECT_EQ(info.name, w.name);
    EXPECT_EQ(info.unit, w.unit);
    EXPECT_EQ(info.monotonic, w.monotonic);
    EXPECT_FALSE(info.description.empty());
    EXPECT_EQ(PrometheusMetricName(info.name, info.unit, info.monotonic), w.prometheus);
  }
}

TEST(ObservedInstruments, CumulativeHoldsTheLastValue) {
  MetricsRecorder recorder;
  const auto shop = Process(10);
  const Attributes user = Mode("user");
  const Attributes system = Mode("system");
  const uint64_t process_start = kT0 - 100 * kSecond;
  const ObservedValue first[] = {
      {ObservedInstrument::kProcessCpuTime, &user, 1.5, process_start},
      {ObservedInstrument::kProcessCpuTime, &system, 0.25, process_start},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, 4096, 0},
  };
  recorder.RecordObserved(shop, first, kT0);
  // Later values replace earlier ones; a new Resource object with the same
  // attributes is the same resource.
  const ObservedValue second[] = {
      {ObservedInstrument::kProcessCpuTime, &user, 2.0, process_start},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, 2048, 0},
  };
  recorder.RecordObserved(Process(10), second, kT0 + 10 * kSecond);

  const MetricsSnapshot s = recorder.CollectCumulative(kT0 + 15 * kSecond);
  ASSERT_EQ(s.resources.size(), 1u);
  const MetricData* cpu = FindMetric(s.resources[0], "process.cpu.time");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->type, MetricType::kSum);
  EXPECT_EQ(cpu->temporality, Temporality::kCumulative);
  EXPECT_TRUE(cpu->monotonic);
  EXPECT_EQ(cpu->unit, "s");
  ASSERT_EQ(cpu->sum_points.size(), 2u);
  const SumPoint* u = FindPoint(s, 10, "process.cpu.time", "user");
  EXPECT_EQ(u->value, 2.0);
  EXPECT_EQ(u->start_unix_ns, process_start);  // when the kernel started counting
  EXPECT_EQ(u->time_unix_ns, kT0 + 15 * kSecond);
  EXPECT_EQ(FindPoint(s, 10, "process.cpu.time", "system")->value, 0.25);
  const MetricData* rss = FindMetric(s.resources[0], "process.memory.usage");
  EXPECT_FALSE(rss->monotonic);
  EXPECT_EQ(rss->sum_points[0].value, 2048);         // levels go down too
  EXPECT_EQ(rss->sum_points[0].start_unix_ns, kT0);  // no start given: the first value's time

  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.points_recorded, 5u);
  EXPECT_EQ(stats.series, 3u);
  EXPECT_EQ(stats.resources, 1u);
}

TEST(ObservedInstruments, ACounterGoingDownRestartsItsSeries) {
  MetricsRecorder recorder;
  DeltaReader reader;
  const auto shop = Process(10);
  const Attributes user = Mode("user");
  recorder.RecordObserved(shop, ObservedInstrument::kProcessCpuTime, user, 5, kT0);
  EXPECT_EQ(reader.Collect(recorder, kT0 + kSecond).resources.size(), 1u);
  recorder.RecordObserved(shop, ObservedInstrument::kProcessCpuTime, user, 7, kT0 + 2 * kSecond);
  const MetricsSnapshot d1 = reader.Collect(recorder, kT0 + 3 * kSecond);
  EXPECT_EQ(FindPoint(d1, 10, "process.cpu.time", "user")->value, 2);

  // A new process behind the same resource: the counter starts over.
  recorder.RecordObserved(shop, ObservedInstrument::kProcessCpuTime, user, 0.5, kT0 + 4 * kSecond);
  const MetricsSnapshot c = recorder.CollectCumulative(kT0 + 5 * kSecond);
  const SumPoint* restarted = FindPoint(c, 10, "process.cpu.time", "user");
  EXPECT_EQ(restarted->value, 0.5);
  EXPECT_EQ(restarted->start_unix_ns, kT0 + 2 * kSecond);  // after the previous value
  const MetricsSnapshot d2 = reader.Collect(recorder, kT0 + 5 * kSecond);
  const SumPoint* delta = FindPoint(d2, 10, "process.cpu.time", "user");
  ASSERT_NE(delta, nullptr);
  EXPECT_EQ(delta->value, 0.5);  // all of it, not 0.5 - 7
  EXPECT_EQ(delta->start_unix_ns, kT0 + 3 * kSecond);

  // Counting from a start after the previous value (a reused pid whose new
  // process already used more): a restart too, though the value grew.
  const ObservedValue later{ObservedInstrument::kProcessCpuTime, &user, 9, kT0 + 6 * kSecond};
  recorder.RecordObserved(shop, std::span<const ObservedValue>(&later, 1), kT0 + 7 * kSecond);
  EXPECT_EQ(FindPoint(recorder.CollectCumulative(kT0 + 8 * kSecond), 10, "process.cpu.time", "user")
                ->start_unix_ns,
            kT0 + 6 * kSecond);
  const MetricsSnapshot d3 = reader.Collect(recorder, kT0 + 8 * kSecond);
  EXPECT_EQ(FindPoint(d3, 10, "process.cpu.time", "user")->value, 9);
  EXPECT_EQ(FindPoint(d3, 10, "process.cpu.time", "user")->start_unix_ns, kT0 + 6 * kSecond);
}

TEST(ObservedInstruments, DeltaReaderGivesCounterChangesAndLevelsAsTheyAre) {
  MetricsRecorder recorder;
  DeltaReader reader;
  const auto shop = Process(10);
  const Attributes user = Mode("user");
  const ObservedValue v1[] = {{ObservedInstrument::kProcessCpuTime, &user, 3, kT0 - kSecond},
                              {ObservedInstrument::kProcessMemoryUsage, nullptr, 1000, 0}};
  recorder.RecordObserved(shop, v1, kT0);

  const MetricsSnapshot d1 = reader.Collect(recorder, kT0 + 10 * kSecond);
  ASSERT_EQ(d1.resources.size(), 1u);
  const MetricData* cpu = FindMetric(d1.resources[0], "process.cpu.time");
  EXPECT_EQ(cpu->temporality, Temporality::kDelta);
  EXPECT_EQ(cpu->sum_points[0].value, 3);  // new to the reader: all since the start
  EXPECT_EQ(cpu->sum_points[0].start_unix_ns, kT0 - kSecond);
  const MetricData* rss = FindMetric(d1.resources[0], "process.memory.usage");
  EXPECT_EQ(rss->temporality, Temporality::kCumulative);
  EXPECT_EQ(rss->sum_points[0].value, 1000);

  // Unchanged: the counter is left out, the level is not.
  const MetricsSnapshot d2 = reader.Collect(recorder, kT0 + 20 * kSecond);
  ASSERT_EQ(d2.resources.size(), 1u);
  EXPECT_EQ(FindMetric(d2.resources[0], "process.cpu.time"), nullptr);
  EXPECT_EQ(FindMetric(d2.resources[0], "process.memory.usage")->sum_points[0].value, 1000);

  const ObservedValue v3[] = {{ObservedInstrument::kProcessCpuTime, &user, 4.25, kT0 - kSecond},
                              {ObservedInstrument::kProcessMemoryUsage, nullptr, 600, 0}};
  recorder.RecordObserved(shop, v3, kT0 + 25 * kSecond);
  const MetricsSnapshot d3 = reader.Collect(recorder, kT0 + 30 * kSecond);
  const SumPoint* change = FindPoint(d3, 10, "process.cpu.time", "user");
  EXPECT_EQ(change->value, 1.25);
  EXPECT_EQ(change->start_unix_ns, kT0 + 20 * kSecond);  // the previous collection
  const SumPoint* level = FindPoint(d3, 10, "process.memory.usage");
  EXPECT_EQ(level->value, 600);
  EXPECT_EQ(level->start_unix_ns, kT0);
}

TEST(ObservedInstruments, ForgetDropsOnlyTheObservedSeries) {
  MetricsRecorder recorder;
  const auto shop = Process(10);
  const auto other = Process(11);
  // A RED series of the same resource.
  Span span;
  span.kind = SpanKind::kServer;
  span.start_unix_ns = kT0;
  span.end_unix_ns = kT0 + 1000;
  span.attributes.Set("http.request.method", "GET");
  span.attributes.Set("http.response.status_code", int64_t{200});
  span.resource = shop;
  recorder.Record(span);
  const Attributes user = Mode("user");
  recorder.RecordObserved(shop, ObservedInstrument::kProcessCpuTime, user, 1, kT0);
  recorder.RecordObserved(shop, ObservedInstrument::kProcessThreadCount, Attributes(), 4, kT0);
  recorder.RecordObserved(other, ObservedInstrument::kProcessThreadCount, Attributes(), 2, kT0);
  EXPECT_EQ(recorder.stats().series, 4u);
  EXPECT_EQ(recorder.stats().resources, 2u);

  EXPECT_EQ(recorder.ForgetObserved(Process(10)), 2u);  // by value
  EXPECT_EQ(recorder.ForgetObserved(Process(10)), 0u);
  EXPECT_EQ(recorder.ForgetObserved(Process(99)), 0u);
  MetricsSnapshot s = recorder.CollectCumulative(kT0 + kSecond);
  EXPECT_EQ(FindPoint(s, 10, "process.cpu.time", "user"), nullptr);
  ASSERT_EQ(s.resources.size(), 2u);
  EXPECT_NE(FindMetric(s.resources[0], "http.server.request.duration"), nullptr);
  EXPECT_EQ(recorder.stats().series, 2u);

  // The other resource had nothing else: it goes entirely.
  EXPECT_EQ(recorder.ForgetObserved(other), 1u);
  EXPECT_EQ(recorder.stats().resources, 1u);
  // And comes back when it is observed again.
  recorder.RecordObserved(other, ObservedInstrument::kProcessThreadCount, Attributes(), 3,
                          kT0 + 2 * kSecond);
  s = recorder.CollectCumulative(kT0 + 3 * kSecond);
  EXPECT_EQ(FindPoint(s, 11, "process.thread.count")->value, 3);
  EXPECT_EQ(FindPoint(s, 11, "process.thread.count")->start_unix_ns, kT0 + 2 * kSecond);
}

TEST(ObservedInstruments, IdleSeriesGoInObservationTime) {
  MetricsOptions options;
  options.idle_series_ns = 60 * kSecond;
  MetricsRecorder recorder(options);
  const Attributes user = Mode("user");
  const Attributes system = Mode("system");
  recorder.RecordObserved(Process(10), ObservedInstrument::kProcessCpuTime, user, 1, kT0);
  recorder.RecordObserved(Process(10), ObservedInstrument::kProcessCpuTime, system, 1, kT0);
  recorder.RecordObserved(Process(11), ObservedInstrument::kProcessCpuTime, user, 1, kT0);
  // 11 keeps reporting user time only; 10 stops.
  recorder.RecordObserved(Process(11), ObservedInstrument::kProcessCpuTime, user, 2,
                          kT0 + 30 * kSecond);
  recorder.RecordObserved(Process(11), ObservedInstrument::kProcessCpuTime, system, 1,
                          kT0 + 30 * kSecond);
  EXPECT_EQ(recorder.stats().series, 4u);
  recorder.RecordObserved(Process(11), ObservedInstrument::kProcessCpuTime, user, 3,
                          kT0 + 61 * kSecond);
  MetricsSnapshot s = recorder.CollectCumulative(kT0 + 62 * kSecond);
  EXPECT_EQ(FindPoint(s, 10, "process.cpu.time", "user"), nullptr);
  EXPECT_EQ(recorder.stats().series, 2u);
  EXPECT_EQ(recorder.stats().series_evicted, 2u);
  EXPECT_EQ(recorder.stats().resources, 1u);
  // A series its resource stopped reporting goes alone.
  recorder.RecordObserved(Process(11), ObservedInstrument::kProcessCpuTime, user, 4,
                          kT0 + 91 * kSecond);
  s = recorder.CollectCumulative(kT0 + 92 * kSecond);
  EXPECT_EQ(FindPoint(s, 11, "process.cpu.time", "system"), nullptr);
  EXPECT_EQ(FindPoint(s, 11, "process.cpu.time", "user")->value, 4);
  EXPECT_EQ(recorder.stats().series, 1u);
}

TEST(ObservedInstruments, BoundedPerInstrumentAndNoNonFiniteValues) {
  MetricsOptions options;
  options.max_observed_series = 2;
  MetricsRecorder recorder(options);
  for (int64_t pid = 1; pid <= 3; ++pid) {
    recorder.RecordObserved(Process(pid), ObservedInstrument::kProcessThreadCount, Attributes(), 1,
                            kT0);
  }
  // Another instrument has its own bound.
  recorder.RecordObserved(Process(3), ObservedInstrument::kProcessMemoryUsage, Attributes(), 1,
                          kT0);
  recorder.RecordObserved(Process(1), ObservedInstrument::kProcessMemoryUsage, Attributes(),
                          std::numeric_limits<double>::quiet_NaN(), kT0);
  recorder.RecordObserved(Process(1), ObservedInstrument::kProcessMemoryUsage, Attributes(),
                          std::numeric_limits<double>::infinity(), kT0);
  const MetricsSnapshot s = recorder.CollectCumulative(kT0);
  EXPECT_NE(FindPoint(s, 2, "process.thread.count"), nullptr);
  EXPECT_EQ(FindPoint(s, 3, "process.thread.count"), nullptr);
  EXPECT_EQ(FindPoint(s, 3, "process.memory.usage")->value, 1);
  EXPECT_EQ(FindPoint(s, 1, "process.memory.usage"), nullptr);
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.points_recorded, 6u);
  EXPECT_EQ(stats.dropped_points, 3u);
  EXPECT_EQ(stats.series, 3u);
}

TEST(ObservedInstruments, NoAllocationPerValueInSteadyState) {
  MetricsRecorder recorder;
  std::vector<std::shared_ptr<const Resource>> processes;
  for (int64_t pid = 1; pid <= 50; ++pid) processes.push_back(Process(pid));
  const Attributes user = Mode("user");
  const Attributes system = Mode("system");
  auto tick = [&](uint64_t t) {
    for (const auto& p : processes) {
      const ObservedValue values[] = {
          {ObservedInstrument::kProcessCpuTime, &user, static_cast<double>(t % 1000), 0},
          {ObservedInstrument::kProcessCpuTime, &system, 1, 0},
          {ObservedInstrument::kProcessMemoryUsage, nullptr, 4096, 0},
          {ObservedInstrument::kProcessThreadCount, nullptr, 2, 0}};
      recorder.RecordObserved(p, values, kT0 + t * kSecond);
    }
  };
  tick(1);  // series made here
  g_allocations = 0;
  g_count_allocations = true;
  for (uint64_t t = 2; t < 20; ++t) tick(t);
  g_count_allocations = false;
  EXPECT_EQ(g_allocations.load(), 0u);
  EXPECT_EQ(recorder.stats().series, 200u);
}

// ---- Prometheus ---------------------------------------------------------------

TEST(ObservedInstruments, ExactPrometheusText) {
  MetricsRecorder recorder;
  auto shop = std::make_shared<Resource>();
  shop->attributes.Set("service.name", "shop");
  shop->attributes.Set("service.instance.id", "h:10");
  const Attributes user = Mode("user");
  const Attributes system = Mode("system");
  Attributes major;
  major.Set("system.paging.fault.type", "major");
  const ObservedValue process[] = {
      {ObservedInstrument::kProcessCpuTime, &user, 2.5, kT0 - kSecond},
      {ObservedInstrument::kProcessCpuTime, &system, 0.75, kT0 - kSecond},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, 67108864, 0},
      {ObservedInstrument::kProcessPagingFaults, &major, 12, 0},
      {ObservedInstrument::kProcessThreadCount, nullptr, 3, 0},
  };
  recorder.RecordObserved(shop, process, kT0);
  auto container = std::make_shared<Resource>();
  container->attributes.Set("service.name", "shop");
  container->attributes.Set("service.instance.id", "abc123");
  container->attributes.Set("container.id", "abc123");
  const ObservedValue cgroup[] = {
      {ObservedInstrument::kContainerMemoryWorkingSet, nullptr, 1048576, 0},
      {ObservedInstrument::kContainerCpuThrottledTime, nullptr, 1.25, 0},
  };
  recorder.RecordObserved(container, cgroup, kT0);

  const std::string want =
      "# HELP container_memory_working_set_bytes Memory usage of the container's cgroup minus "
      "its inactive file pages.\n"
      "# TYPE container_memory_working_set_bytes gauge\n"
      "container_memory_working_set_bytes{service_instance_id=\"abc123\",service_name=\"shop\"} "
      "1048576\n"
      "# HELP loupe_container_cpu_throttled_time_seconds_total Time the cgroup's tasks spent "
      "throttled.\n"
      "# TYPE loupe_container_cpu_throttled_time_seconds_total counter\n"
      "loupe_container_cpu_throttled_time_seconds_total{service_instance_id=\"abc123\","
      "service_name=\"shop\"} 1.25\n"
      "# HELP process_cpu_time_seconds_total CPU time used by the process, by mode.\n"
      "# TYPE process_cpu_time_seconds_total counter\n"
      "process_cpu_time_seconds_total{cpu_mode=\"user\",service_instance_id=\"h:10\","
      "service_name=\"shop\"} 2.5\n"
      "process_cpu_time_seconds_total{cpu_mode=\"system\",service_instance_id=\"h:10\","
      "service_name=\"shop\"} 0.75\n"
      "# HELP process_memory_usage_bytes Physical memory in use by the process (resident set "
      "size).\n"
      "# TYPE process_memory_usage_bytes gauge\n"
      "process_memory_usage_bytes{service_instance_id=\"h:10\",service_name=\"shop\"} "
      "67108864\n"
      "# HELP process_paging_faults_total Page faults taken by the process, by type.\n"
      "# TYPE process_paging_faults_total counter\n"
      "process_paging_faults_total{service_instance_id=\"h:10\",service_name=\"shop\","
      "system_paging_fault_type=\"major\"} 12\n"
      "# HELP process_thread_count Threads of the process.\n"
      "# TYPE process_thread_count gauge\n"
      "process_thread_count{service_instance_id=\"h:10\",service_name=\"shop\"} 3\n"
      "# HELP target_info Target metadata\n"
      "# TYPE target_info gauge\n"
      "target_info{service_instance_id=\"h:10\",service_name=\"shop\"} 1\n"
      "target_info{container_id=\"abc123\",service_instance_id=\"abc123\",service_name="
      "\"shop\"} 1\n";
  EXPECT_EQ(RenderPrometheusText(recorder.CollectCumulative(kT0 + kSecond), {}), want);

  // A forgotten resource leaves the exposition, target_info included.
  recorder.ForgetObserved(container);
  const std::string after = RenderPrometheusText(recorder.CollectCumulative(kT0 + kSecond), {});
  EXPECT_THAT(after, Not(HasSubstr("abc123")));
  EXPECT_THAT(after, HasSubstr("process_thread_count{service_instance_id=\"h:10\""));
}

}  // namespace
}  // namespace loupe
