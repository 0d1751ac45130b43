// The OTLP metric exporter: a thread that collects a snapshot every
// export_interval (OTEL_METRIC_EXPORT_INTERVAL; OpenTelemetry SDK
// specification, "Periodic exporting MetricReader"), encodes it and sends it
// with the same retry policy as spans, bounded by retry_deadline and never
// by more than the interval, so one outage cannot pile up collections.
// Empty snapshots are not sent. Shutdown does a final collection and export.
//
// Metrics are aggregates, so nothing queues up: a snapshot that cannot be
// delivered is dropped and counted. With cumulative temporality the next
// successful export carries everything again; with delta temporality the
// dropped interval is lost (and counted in points_dropped).
#ifndef LOUPE_EXPORTERS_OTLP_OTLP_METRIC_EXPORTER_H_
#define LOUPE_EXPORTERS_OTLP_OTLP_METRIC_EXPORTER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "decoders/model/metrics.h"
#include "exporters/otlp/export_retry.h"
#include "exporters/otlp/otlp_config.h"
#include "exporters/otlp/otlp_encoder.h"
#include "exporters/otlp/otlp_transport.h"

namespace loupe {

// Where the exporter collects from: a snapshot at `now_unix_ns`.
using MetricsSource = std::function<MetricsSnapshot(uint64_t now_unix_ns)>;
// A snapshot to one request body (ExportMetricsServiceRequest).
using MetricsEncodeFn = std::function<std::string(const MetricsSnapshot& snapshot)>;

// Collects from `recorder` (which must outlive the source) with the given
// temporality: cumulative reads MetricsRecorder::CollectCumulative, delta
// goes through a DeltaReader owned by the returned function.
MetricsSource MakeMetricsSource(const MetricsRecorder& recorder, Temporality temporality);

struct OtlpMetricExporterStats {
  uint64_t collections = 0;      // snapshots taken
  uint64_t empty_skipped = 0;    // snapshots with no point, not sent
  uint64_t exports = 0;          // requests the server accepted
  uint64_t points_exported = 0;  // data points (histogram and sum) in them
  uint64_t exports_failed = 0;   // snapshots given up (retries expired, rejected, shutdown)
  uint64_t points_dropped = 0;   // data points in them
  uint64_t export_errors = 0;    // failed requests (every attempt)
  uint64_t export_retries = 0;   // attempts after a retryable failure
};

class OtlpMetricExporter {
 public:
  // Starts the thread; the first collection is one interval from now.
  // config.temporality is for the caller's MakeMetricsSource; config.endpoint
  // for its MakeOtlpTransport: the exporter reads export_interval and
  // retry_deadline. `unix_now_ns` is the clock for collection times (tests).
  OtlpMetricExporter(OtlpMetricsConfig config, std::unique_ptr<OtlpTransport> transport,
                     MetricsSource source, ExportLogFn log = {},
                     MetricsEncodeFn encode = EncodeMetricsRequest, BackoffPolicy backoff = {},
                     std::function<uint64_t()> unix_now_ns = {});
  // Shutdown(kDestructorShutdownDeadline) unless Shutdown already ran.
  ~OtlpMetricExporter();
  OtlpMetricExporter(const OtlpMetricExporter&) = delete;
  OtlpMetricExporter& operator=(const OtlpMetricExporter&) = delete;

  static constexpr std::chrono::milliseconds kDestructorShutdownDeadline{200};

  // Stops the periodic thread, then collects once more and exports within
  // `deadline` (retrying until then); a snapshot whose retries were cut
  // short by Shutdown is sent once first. Blocks at most `deadline` plus one
  // transport timeout. Idempotent; thread-safe.
  void Shutdown(std::chrono::milliseconds deadline);

  OtlpMetricExporterStats stats() const;

 private:
  using Clock = std::chrono::steady_clock;

  void Run();
  // Collects, and sends until `deadline`; `interruptible` waits end at
  // Shutdown. Returns the body when interrupted, to be sent at shutdown.
  std::optional<std::string> CollectAndSend(Clock::time_point deadline, bool interruptible,
                                            uint64_t* interrupted_points);
  bool WaitUntil(Clock::time_point until);
  void Count(uint64_t points, const SendReport& report);

  const OtlpMetricsConfig config_;
  const std::unique_ptr<OtlpTransport> transport_;
  const MetricsSource source_;
  const MetricsEncodeFn encode_;
  const BackoffPolicy backoff_;
  const std::function<uint64_t()> unix_now_ns_;

  // Export thread only (and Shutdown's final export, after the join).
  ExportLog log_;
  std::mt19937_64 random_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  bool shutdown_ = false;
  Clock::time_point shutdown_deadline_{};
  OtlpMetricExporterStats stats_;
  std::optional<std::string> interrupted_body_;
  uint64_t interrupted_points_ = 0;

  std::mutex join_mu_;
  std::thread thread_;  // guarded by join_mu_
  bool final_done_ = false;  // guarded by join_mu_
};

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_OTLP_METRIC_EXPORTER_H_
