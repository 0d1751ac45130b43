#include "exporters/otlp/otlp_batch_exporter.h"

#include "decoders/model/log_record.h"
#include "decoders/model/span.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace loupe {
namespace {

OtlpBatchConfig Sanitize(OtlpBatchConfig config) {
  config.max_queue_size = std::max<size_t>(config.max_queue_size, 1);
  // OpenTelemetry SDK specification, "Batching processor": the batch size
  // must be less than or equal to the queue size.
  config.max_export_batch_size =
      std::clamp<size_t>(config.max_export_batch_size, 1, config.max_queue_size);
  config.schedule_delay = std::max(config.schedule_delay, std::chrono::milliseconds(0));
  config.retry_deadline = std::max(config.retry_deadline, std::chrono::milliseconds(0));
  config.initial_backoff = std::max(config.initial_backoff, std::chrono::milliseconds(1));
  config.max_backoff = std::max(config.max_backoff, config.initial_backoff);
  return config;
}

}  // namespace

template <typename Item>
OtlpBatchExporter<Item>::OtlpBatchExporter(OtlpBatchConfig config,
                                           std::unique_ptr<OtlpTransport> transport,
                                           ExportLogFn log, EncodeFn encode, std::string name,
                                           BatchItemNames names)
    : config_(Sanitize(config)),
      transport_(std::move(transport)),
      encode_(std::move(encode)),
      name_(std::move(name)),
      names_(names),
      backoff_{config_.initial_backoff, config_.max_backoff},
      log_(absl::StrCat(name_, " ", std::string(names_.signal)), std::move(log)),
      random_(std::random_device{}()) {
  std::lock_guard<std::mutex> lock(join_mu_);
  thread_ = std::thread([this] { Run(); });
}

template <typename Item>
OtlpBatchExporter<Item>::~OtlpBatchExporter() {
  Shutdown(kDestructorShutdownDeadline);
}

template <typename Item>
void OtlpBatchExporter<Item>::Consume(Item&& item) {
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) {
    ++stats_.dropped_shutdown;
    ++stats_.spans_dropped;
    return;
  }
  // The batch in flight counts against the bound: its spans (now its
  // encoded bytes) are still held.
  if (queue_.size() + in_flight_ >= config_.max_queue_size) {
    ++stats_.dropped_queue_full;
    ++stats_.spans_dropped;
    return;
  }
  queue_.push_back(Pending{std::move(item), now});
  // Wake the export thread only when it has something new to decide: the
  // schedule-delay timer starts, or a batch is full.
  if (queue_.size() == 1 || queue_.size() == config_.max_export_batch_size) cv_.notify_one();
}

template <typename Item>
ExporterStats OtlpBatchExporter<Item>::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ExporterStats s = stats_;
  s.queued = queue_.size() + in_flight_;
  return s;
}

template <typename Item>
void OtlpBatchExporter<Item>::Shutdown(std::chrono::milliseconds deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shutdown_) {
      shutdown_ = true;
      shutdown_deadline_ = Clock::now() + std::max(deadline, std::chrono::milliseconds(0));
    }
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

template <typename Item>
std::vector<Item> OtlpBatchExporter<Item>::TakeBatchLocked() {
  const size_t n = std::min(queue_.size(), config_.max_export_batch_size);
  std::vector<Item> items;
  items.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    items.push_back(std::move(queue_.front().item));
    queue_.pop_front();
  }
  in_flight_ = n;
  return items;
}

template <typename Item>
typename OtlpBatchExporter<Item>::Batch OtlpBatchExporter<Item>::Encode(std::vector<Item> items) {
  Batch batch;
  batch.spans = items.size();
  // Encoded once: every retry sends the same bytes, and the spans are freed
  // while the batch waits.
  batch.body = encode_(std::span<const Item>(items));
  return batch;
}

template <typename Item>
bool OtlpBatchExporter<Item>::WaitUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_until(lock, until, [this] { return shutdown_; });
}

template <typename Item>
void OtlpBatchExporter<Item>::Run() {
  std::optional<Batch> interrupted;
  for (;;) {
    std::vector<Item> spans;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // A batch leaves when it is full or its oldest span has waited
      // schedule_delay (OpenTelemetry SDK specification, "Batching
      // processor": scheduledDelayMillis, maxExportBatchSize).
      for (;;) {
        if (shutdown_ || queue_.size() >= config_.max_export_batch_size) break;
        if (queue_.empty()) {
          cv_.wait(lock);
          continue;
        }
        const Clock::time_point due = queue_.front().enqueued + config_.schedule_delay;
        if (Clock::now() >= due) break;
        cv_.wait_until(lock, due);
      }
      if (shutdown_) break;
      spans = TakeBatchLocked();
    }
    Batch batch = Encode(std::move(spans));
    if (!SendWithRetries(batch)) {
      interrupted = std::move(batch);
      break;
    }
    LogDrops();
  }
  DrainAtShutdown(std::move(interrupted));
}

template <typename Item>
void OtlpBatchExporter<Item>::CountFailedAttempt(const ExportOutcome& outcome) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.export_errors;
  }
  log_.Failure(outcome);
}

template <typename Item>
bool OtlpBatchExporter<Item>::SendWithRetries(Batch& batch) {
  // OTLP exporter specification, "Retry": the retry deadline runs from the
  // first attempt of this batch.
  const Clock::time_point deadline = Clock::now() + config_.retry_deadline;
  RetryHooks hooks;
  hooks.wait = [this](Clock::time_point until) {
    LogDrops();  // queue-full drops pile up while a batch is retried
    return WaitUntil(until);
  };
  hooks.random = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); };
  hooks.on_failure = [this](const ExportOutcome& outcome) { CountFailedAttempt(outcome); };
  const SendReport report = SendWithRetry(*transport_, batch.body, deadline, backoff_, hooks);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.export_retries += static_cast<uint64_t>(report.attempts - 1);
  }
  switch (report.result) {
    case SendResult::kSent:
      Finished(batch.spans, Fate::kExported, report.last);
      return true;
    case SendResult::kRejected:
      Finished(batch.spans, Fate::kRejected, report.last);
      return true;
    case SendResult::kExpired:
      Finished(batch.spans, Fate::kRetryExpired, report.last);
      return true;
    case SendResult::kInterrupted:
      return false;
  }
  return true;
}

template <typename Item>
void OtlpBatchExporter<Item>::Finished(size_t spans, Fate fate, const ExportOutcome& last) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ = 0;
    switch (fate) {
      case Fate::kExported:
        stats_.spans_exported += spans;
        ++stats_.batches_exported;
        break;
      case Fate::kRejected:
        stats_.dropped_rejected += spans;
        stats_.spans_dropped += spans;
        break;
      case Fate::kRetryExpired:
        stats_.dropped_retry_expired += spans;
        stats_.spans_dropped += spans;
        break;
      case Fate::kShutdown:
        stats_.dropped_shutdown += spans;
        stats_.spans_dropped += spans;
        break;
    }
  }
  if (fate == Fate::kExported) {
    log_.Success();
    if (!last.message.empty()) log_.Notice(last.message);  // partial success
  }
}

template <typename Item>
void OtlpBatchExporter<Item>::LogDrops() {
  ExporterStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
  }
  log_.Dropped(s.spans_dropped, names_.unit,
               absl::StrCat("queue full ", s.dropped_queue_full, ", retries expired ",
                            s.dropped_retry_expired, ", rejected ", s.dropped_rejected,
                            ", shutdown ", s.dropped_shutdown));
}

template <typename Item>
void OtlpBatchExporter<Item>::DrainAtShutdown(std::optional<Batch> interrupted) {
  Clock::time_point deadline;
  {
    std::lock_guard<std::mutex> lock(mu_);
    deadline = shutdown_deadline_;
  }
  // One round: each batch is sent at most once. After a retryable failure
  // the collector is presumed away and nothing more is tried.
  bool collector_away = false;
  auto send_once = [&](Batch& batch) {
    if (collector_away || Clock::now() >= deadline) {
      Finished(batch.spans, Fate::kShutdown, ExportOutcome{});
      return;
    }
    const ExportOutcome outcome = transport_->Export(batch.body);
    if (outcome.kind == ExportOutcome::Kind::kOk) {
      Finished(batch.spans, Fate::kExported, outcome);
      return;
    }
    CountFailedAttempt(outcome);
    if (outcome.kind == ExportOutcome::Kind::kPermanent) {
      Finished(batch.spans, Fate::kRejected, outcome);
    } else {
      collector_away = true;
      Finished(batch.spans, Fate::kShutdown, outcome);
    }
  };
  if (interrupted) send_once(*interrupted);
  for (;;) {
    std::vector<Item> spans;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) break;
      if (collector_away || Clock::now() >= deadline) {
        stats_.dropped_shutdown += queue_.size();
        stats_.spans_dropped += queue_.size();
        queue_.clear();
        break;
      }
      spans = TakeBatchLocked();
    }
    Batch batch = Encode(std::move(spans));
    send_once(batch);
  }
  ExporterStats s = stats();
  if (s.spans_dropped > 0) {
    log_.Info(absl::StrCat("stopped: ", s.spans_exported, " ", std::string(names_.unit), " exported, ",
                           s.spans_dropped,
                           " dropped (queue full ", s.dropped_queue_full, ", retries expired ",
                           s.dropped_retry_expired, ", rejected ", s.dropped_rejected,
                           ", shutdown ", s.dropped_shutdown, ")"));
  }
}

template class OtlpBatchExporter<Span>;
template class OtlpBatchExporter<LogRecord>;

}  // namespace loupe
