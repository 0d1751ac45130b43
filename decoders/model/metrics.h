// RED metrics: histograms aggregated from finished spans, and service graph
// counters and histograms from joined span pairs, independent of any wire
// format (OTLP and Prometheus exporters read snapshots of them).
//
// Instruments follow the OpenTelemetry semantic conventions for HTTP:
//   http.server.request.duration, http.client.request.duration   (s)
//   http.server.request.body.size, http.server.response.body.size,
//   http.client.request.body.size, http.client.response.body.size (By)
// with the conventions' attributes and advised bucket boundaries, and for RPC
// spans (rpc.system set) rpc.server.duration / rpc.client.duration (ms, the
// v1.37 RPC conventions that the RPC span attributes follow), and for
// database CLIENT spans (db.system.name set) db.client.operation.duration.
//
// Service graph: RecordServiceGraphEdge takes one CLIENT/SERVER span pair
// that the caller joined, and keeps the four series Grafana's service graph
// reads, named exactly as Tempo's metrics-generator and the OpenTelemetry
// Collector's servicegraph connector name them:
//   traces_service_graph_request_total           counter (monotonic Sum)
//   traces_service_graph_request_failed_total    counter (monotonic Sum)
//   traces_service_graph_request_server_seconds  histogram (s)
//   traces_service_graph_request_client_seconds  histogram (s)
// with attributes `client` and `server` only, under the agent's own resource
// (SetServiceGraphResource), not a traced process's.
//
// Cardinality is bounded per instrument: past `max_series` attribute sets
// (resource included), points go to one overflow series per resource whose
// only attribute is otel.metric.overflow=true, and each such point is
// counted. The instruments of one span kind share their attribute sets (a
// span's duration and body sizes carry the same attributes), so they share
// one table and overflow together: the duration instrument, recorded for
// every span, reaches exactly `max_series` series; a body size instrument
// never has more. The four service graph instruments share one table the
// same way. Series idle for `idle_series_ns` make room for new ones
// when a table is full, so processes that come and go (each a resource) do
// not pin the table forever.
//
// Observed (asynchronous) instruments: values read from the kernel rather
// than counted here (a process's CPU seconds, a cgroup's memory), set with
// RecordObserved and reported as Sums: monotonic for counters the kernel
// keeps (cumulative: the last value read; delta: its change), non-monotonic
// for levels (always cumulative, also for a DeltaReader, as SDKs export an
// ObservableUpDownCounter under a delta preference). Their series go with
// ForgetObserved (the process or container is gone) or after
// idle_series_ns without a value; they are bounded by max_observed_series
// per instrument, past which values are dropped (an overflow series would
// add up unrelated levels).
#ifndef LOUPE_DECODERS_MODEL_METRICS_H_
#define LOUPE_DECODERS_MODEL_METRICS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/model/span.h"

namespace loupe {

enum class Temporality : uint8_t { kCumulative, kDelta };

// The OTLP data kinds Loupe produces: explicit-bucket histograms, and sums
// (counters when monotonic).
enum class MetricType : uint8_t { kHistogram, kSum };

struct HistogramPoint {
  Attributes attributes;               // the series' attributes (not the resource)
  uint64_t start_unix_ns = 0;          // cumulative: series start; delta: previous collection
  uint64_t time_unix_ns = 0;           // collection time
  uint64_t count = 0;
  double sum = 0;
  double min = 0;                      // valid when count > 0
  double max = 0;
  std::vector<uint64_t> bucket_counts; // bounds.size() + 1 entries, not cumulative
  // False when min/max are unknown: delta points of a DeltaReader beyond the
  // recorder's kMaxDeltaReadersWithMinMax (min/max since the previous
  // collection need a slot in every series), and of the collection in which
  // a reader obtained its slot. Cumulative points always have them.
  bool has_min_max = true;
};

// One series of a Sum.
struct SumPoint {
  Attributes attributes;       // the series' attributes (not the resource)
  uint64_t start_unix_ns = 0;  // cumulative: series start; delta: previous collection
  uint64_t time_unix_ns = 0;   // collection time
  // Cumulative: the total since start_unix_ns; delta: the change since the
  // previous collection. Counts are integers, exact as doubles below 2^53
  // (and a double is what OTLP as_double and Prometheus carry).
  double value = 0;
};

struct MetricData {
  std::string name;         // "http.server.request.duration"
  std::string description;
  std::string unit;         // "s", "By", "{request}"
  MetricType type = MetricType::kHistogram;
  Temporality temporality = Temporality::kCumulative;
  bool monotonic = false;   // kSum: only ever grows (a counter)
  std::shared_ptr<const std::vector<double>> bounds;  // kHistogram: explicit bucket boundaries
  // The points of `type`; the other vector stays empty.
  std::vector<HistogramPoint> points;  // kHistogram
  std::vector<SumPoint> sum_points;    // kSum

  size_t point_count() const {
    return type == MetricType::kSum ? sum_points.size() : points.size();
  }
};

struct ResourceMetrics {
  std::shared_ptr<const Resource> resource;
  std::vector<MetricData> metrics;  // only instruments with points for this resource
};

struct MetricsSnapshot {
  uint64_t time_unix_ns = 0;
  std::vector<ResourceMetrics> resources;
};

struct MetricsStats {
  uint64_t points_recorded = 0;   // measurements taken (overflowed and dropped ones included)
  uint64_t overflow_points = 0;   // measurements that went to an overflow series
  // Measurements lost because even the overflow series could not be made:
  // more than max_series resources already had one (extreme process churn
  // within idle_series_ns).
  uint64_t dropped_points = 0;
  uint64_t series = 0;            // live series over all instruments, overflow series included
  uint64_t series_evicted = 0;    // series forgotten after idle_series_ns to make room
  uint64_t resources = 0;         // distinct resources with live series
};

struct MetricsOptions {
  size_t max_series = 2000;  // per instrument
  // A full table forgets series with no measurement for this long (span
  // time) before sending a new attribute set to the overflow series. Longer
  // than any sane scrape or export interval, so an idle series's final value
  // has been read before it goes. 0: never forget.
  uint64_t idle_series_ns = 5ull * 60 * 1000 * 1000 * 1000;
  // Clock for series start times (Unix ns); nullptr: CLOCK_REALTIME. Tests
  // set it; the recording path reads it only when it creates a series.
  uint64_t (*now_unix_ns)() = nullptr;
  // Per observed instrument: series (resource and attribute set) held at
  // once. The default covers the resource sampler's 4096 processes per tick
  // with both CPU modes (agent/resource_usage.h).
  size_t max_observed_series = 16384;
};

// The observed instruments (OpenTelemetry semantic conventions, "OS process
// metrics" and "Container metrics"; loupe.* where they have no name for
// what cgroups tell). Units and kinds in ObservedInstrumentInfo.
enum class ObservedInstrument : uint8_t {
  kProcessCpuTime,       // process.cpu.time                 s        counter, cpu.mode
  kProcessMemoryUsage,   // process.memory.usage             By       level (RSS)
  kProcessMemoryVirtual, // process.memory.virtual           By       level
  kProcessPagingFaults,  // process.paging.faults            {fault}  counter, system.paging.fault.type
  kProcessThreadCount,   // process.thread.count             {thread} level
  kContainerCpuTime,     // container.cpu.time               s        counter, cpu.mode
  kContainerMemoryUsage, // container.memory.usage           By       level
  kContainerMemoryWorkingSet,     // container.memory.working_set  By  level
  kContainerMemoryRss,            // container.memory.rss          By  level
  kContainerMemoryLimit,          // loupe.container.memory.limit  By  level
  kContainerCpuPeriods,           // loupe.container.cpu.periods            {period} counter
  kContainerCpuThrottledPeriods,  // loupe.container.cpu.throttled.periods  {period} counter
  kContainerCpuThrottledTime,     // loupe.container.cpu.throttled.time     s        counter
  kContainerMemoryOomKills,       // loupe.container.memory.oom_kills       {kill}   counter
  kCount
};
constexpr size_t kObservedInstrumentCount = static_cast<size_t>(ObservedInstrument::kCount);

struct ObservedInstrumentInfo {
  std::string_view name;
  std::string_view description;
  std::string_view unit;
  bool monotonic = false;  // a counter (else a level: a non-monotonic sum)
};
const ObservedInstrumentInfo& ObservedInstrumentInfoOf(ObservedInstrument instrument);

// One value of one observed instrument.
struct ObservedValue {
  ObservedInstrument instrument = ObservedInstrument::kProcessCpuTime;
  // The series' attributes (cpu.mode=user, ...); nullptr: none. Borrowed
  // for the call, copied only when the series is new.
  const Attributes* attributes = nullptr;
  double value = 0;
  // Counters: when the kernel started counting (a process's start time);
  // 0: unknown, the series starts at its first value's time.
  uint64_t start_unix_ns = 0;
};

// Explicit bucket boundaries. Durations: the semantic conventions' advice.
// Body sizes: the conventions give none; 0, then powers of 4 from 64 B to
// 64 MiB (reasons in metrics.cc).
const std::vector<double>& DurationBucketsSeconds();  // 0.005 ... 10
const std::vector<double>& BodySizeBucketsBytes();
const std::vector<double>& RpcDurationBucketsMilliseconds();  // 0, 5 ... 10000
const std::vector<double>& DbDurationBucketsSeconds();        // 0.001 ... 10    // 0, 64, 256, ... 67108864
// Tempo's metrics-generator default for the service graph histograms.
const std::vector<double>& ServiceGraphBucketsSeconds();  // 0.1, 0.2, 0.4 ... 12.8

// One request between two services: a CLIENT span and the SERVER span it
// called, joined by the caller.
struct ServiceGraphEdge {
  std::string client;         // service.name of the CLIENT span's process
  std::string server;         // service.name of the SERVER span's process
  bool failed = false;        // either span has status ERROR
  double client_seconds = 0;  // CLIENT span duration
  double server_seconds = 0;  // SERVER span duration
};

// Consumes finished spans (before any sampling) and aggregates them.
// Collect() may be called for several readers; each reader that wants delta
// temporality gets its own DeltaReader. Thread-safe: spans are recorded on
// the decoding thread while the Prometheus endpoint and the OTLP metric
// exporter collect from their own threads.
class MetricsRecorder : public SpanConsumer {
 public:
  explicit MetricsRecorder(MetricsOptions options = {});
  ~MetricsRecorder() override;
  void Consume(Span&& span) override;
  // Records what the span says without taking it (for a fan-out that passes
  // the same span on to exporters).
  void Record(const Span& span);

  // One joined client/server pair: counts a request (and a failure) between
  // the two services and records both durations (negative or NaN ones as 0).
  // The pair's failed counter starts at 0 with its first request, so that
  // failed / total is defined for every pair. Series are bounded by
  // max_series like the RED instruments, and counted in the same stats: one
  // edge is 3 measurements, 4 when failed. An edge carries no time of its
  // own; for idle eviction it counts as measured at the newest span end the
  // recorder has seen.
  void RecordServiceGraphEdge(const ServiceGraphEdge& edge);
  // The resource of the service graph series: the agent's own. nullptr or
  // never set: a resource with only service.name="loupe". Call it before the
  // first edge; series made before keep their resource until they go idle.
  void SetServiceGraphResource(std::shared_ptr<const Resource> resource);

  // Sets the current value of observed instruments of one resource, all
  // read at time_unix_ns (Unix ns, also the clock of idle eviction for
  // these series). One lock for the batch; no allocation unless a series is
  // new. A counter that goes down was reset (a new process behind the same
  // resource, a recreated cgroup): its series restarts, start time after
  // its previous value. NaN and infinite values are dropped (counted).
  void RecordObserved(const std::shared_ptr<const Resource>& resource,
                      std::span<const ObservedValue> values, uint64_t time_unix_ns);
  void RecordObserved(const std::shared_ptr<const Resource>& resource,
                      ObservedInstrument instrument, const Attributes& attributes, double value,
                      uint64_t time_unix_ns);
  // Drops every observed series of `resource` (identified by value, like
  // any resource here): its process or container is gone. Its RED series,
  // if any, stay. Returns the number of series dropped.
  size_t ForgetObserved(const std::shared_ptr<const Resource>& resource);

  // Cumulative state of every series at now_unix_ns.
  MetricsSnapshot CollectCumulative(uint64_t now_unix_ns) const;
  MetricsStats stats() const;

  // Delta readers that also get min/max since their previous collection;
  // further readers get deltas without them (has_min_max = false).
  static constexpr int kMaxDeltaReadersWithMinMax = 4;

 private:
  friend class DeltaReader;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns successive cumulative snapshots into deltas for one reader: each
// point covers what was measured since this reader's previous Collect
// (start_unix_ns = that collection's time; for a series created since, its
// creation time). Series with nothing new are left out, except that a sum
// series new to the reader is reported even at 0 (a pair's failed counter).
// Observed counters give the change of the value read (all of it when the
// series is new to the reader, or was reset); observed levels are passed on
// as they are, cumulative (MetricData::temporality says which).
// Use one reader with one recorder (a different recorder starts it afresh).
// Not thread-safe itself: one reader per exporter thread.
class DeltaReader {
 public:
  DeltaReader() = default;
  // Move-only: a copy would share (and corrupt) the previous values.
  DeltaReader(DeltaReader&&) = default;
  DeltaReader& operator=(DeltaReader&&) = default;
  DeltaReader(const DeltaReader&) = delete;
  DeltaReader& operator=(const DeltaReader&) = delete;

  MetricsSnapshot Collect(const MetricsRecorder& recorder, uint64_t now_unix_ns);

 private:
  friend struct MetricsRecorder::Impl;
  struct Previous;
  std::shared_ptr<Previous> previous_;
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_METRICS_H_
