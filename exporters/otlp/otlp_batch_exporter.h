// The OTLP batching exporter of spans and log records: a bounded queue filled
// by the decoding thread and drained by one export thread that batches,
// encodes, sends and retries. (Item is Span or LogRecord; "span" below
// stands for either.)
//
//   Consume()  (decoding thread)  never blocks on the network: it takes a
//              mutex held only for queue bookkeeping, appends the span, or
//              drops it and counts it when the exporter already holds
//              max_queue_size spans (queued plus the batch in flight), so
//              memory stays bounded however long the collector is away.
//   export thread  cuts a batch when max_export_batch_size spans wait or the
//              oldest has waited schedule_delay, encodes it once, and sends
//              it; a retryable failure is retried with exponential back-off
//              and jitter, or after the delay the server asked for, until
//              retry_deadline after the first attempt (OTLP exporter
//              specification, "Retry"; OTLP specification, "Failures",
//              "OTLP/gRPC Throttling", "OTLP/HTTP Throttling"). A permanent
//              failure drops the batch at once ("The client MUST NOT retry").
//              Only one batch is in flight; new spans queue up meanwhile.
//
// Every span that is not delivered is counted under one reason (see
// ExporterStats). Failures and recoveries are logged through the given
// function, at most one failure line per 30 s.
#ifndef LOUPE_EXPORTERS_OTLP_OTLP_BATCH_EXPORTER_H_
#define LOUPE_EXPORTERS_OTLP_OTLP_BATCH_EXPORTER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "exporters/exporter.h"
#include "exporters/otlp/export_retry.h"
#include "exporters/otlp/otlp_config.h"
#include "exporters/otlp/otlp_transport.h"

namespace loupe {

// What one exporter sends: its items' plural name for logs ("spans") and
// the signal's name ("traces").
struct BatchItemNames {
  std::string_view signal;
  std::string_view unit;
};

// Instantiated for Span and LogRecord (otlp_batch_exporter.cc). The stats'
// spans_* fields count items of either kind.
template <typename Item>
class OtlpBatchExporter {
 public:
  // Starts the export thread. `log` may be empty (no logging). Batch sizes
  // are clamped to sane values: at least 1, and max_export_batch_size at
  // most max_queue_size.
  using EncodeFn = std::function<std::string(std::span<const Item> items)>;
  OtlpBatchExporter(OtlpBatchConfig config, std::unique_ptr<OtlpTransport> transport,
                    ExportLogFn log, EncodeFn encode, std::string name, BatchItemNames names);
  // Shutdown(kDestructorShutdownDeadline) unless Shutdown already ran.
  ~OtlpBatchExporter();
  OtlpBatchExporter(const OtlpBatchExporter&) = delete;
  OtlpBatchExporter& operator=(const OtlpBatchExporter&) = delete;

  static constexpr std::chrono::milliseconds kDestructorShutdownDeadline{200};

  std::string_view name() const { return name_; }
  // Thread-safe and never blocks on the network: the mutex it takes is held
  // by the export thread only for queue bookkeeping, never while encoding or
  // sending. After Shutdown, spans are dropped (dropped_shutdown).
  void Consume(Item&& item);
  ExporterStats stats() const;

  // Stops the export thread after one last round within `deadline`: the
  // batch being retried and then the queued spans, in batches, each sent at
  // most once; no attempt starts after the deadline, and after the first
  // retryable failure the rest is not tried (the collector is away). What is
  // not delivered is counted as dropped_shutdown. Blocks until the thread
  // has stopped: at most `deadline` plus one transport timeout (an attempt
  // in progress is not cut short). Idempotent; thread-safe.
  void Shutdown(std::chrono::milliseconds deadline);

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    Item item;
    Clock::time_point enqueued;
  };
  // A batch taken from the queue, encoded once for all its attempts.
  struct Batch {
    std::string body;
    size_t spans = 0;
  };

  enum class Fate : uint8_t { kExported, kRejected, kRetryExpired, kShutdown };

  void Run();
  // Up to one batch from the front of the queue; the caller holds mu_.
  std::vector<Item> TakeBatchLocked();
  Batch Encode(std::vector<Item> items);
  // Sends with retries; false when a wait was interrupted by Shutdown (the
  // batch is then still in flight).
  bool SendWithRetries(Batch& batch);
  void DrainAtShutdown(std::optional<Batch> interrupted);
  // Bookkeeping once a batch has left the exporter, delivered or not.
  void Finished(size_t spans, Fate fate, const ExportOutcome& last);
  void CountFailedAttempt(const ExportOutcome& outcome);
  // Sleeps until `until`; false (at once) when Shutdown was called.
  bool WaitUntil(Clock::time_point until);
  void LogDrops();

  const OtlpBatchConfig config_;
  const std::unique_ptr<OtlpTransport> transport_;
  const EncodeFn encode_;
  const std::string name_;
  const BatchItemNames names_;
  const BackoffPolicy backoff_;

  // Export thread only.
  ExportLog log_;
  std::mt19937_64 random_;

  // std::condition_variable waits on the steady clock (a wall-clock step
  // cannot stretch a back-off).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  std::deque<Pending> queue_;
  size_t in_flight_ = 0;  // spans of the batch being sent
  bool shutdown_ = false;
  Clock::time_point shutdown_deadline_{};
  ExporterStats stats_;

  std::mutex join_mu_;
  std::thread thread_;  // guarded by join_mu_
};

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_OTLP_BATCH_EXPORTER_H_
