#include "exporters/otlp/otlp_metric_exporter.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace loupe {
namespace {

uint64_t SystemUnixNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

uint64_t CountPoints(const MetricsSnapshot& snapshot) {
  uint64_t points = 0;
  for (const ResourceMetrics& resource : snapshot.resources) {
    for (const MetricData& metric : resource.metrics) points += metric.point_count();
  }
  return points;
}

OtlpMetricsConfig Sanitize(OtlpMetricsConfig config) {
  config.export_interval = std::max(config.export_interval, std::chrono::milliseconds(1));
  config.retry_deadline = std::max(config.retry_deadline, std::chrono::milliseconds(0));
  return config;
}

}  // namespace

OtlpMetricExporter::OtlpMetricExporter(OtlpMetricsConfig config,
                                       std::unique_ptr<OtlpTransport> transport,
                                       MetricsSource source, ExportLogFn log,
                                       MetricsEncodeFn encode, BackoffPolicy backoff,
                                       std::function<uint64_t()> unix_now_ns)
    : config_(Sanitize(std::move(config))),
      transport_(std::move(transport)),
      source_(std::move(source)),
      encode_(std::move(encode)),
      backoff_(backoff),
      unix_now_ns_(unix_now_ns ? std::move(unix_now_ns) : std::function<uint64_t()>(SystemUnixNowNs)),
      log_("otlp metrics", std::move(log)),
      random_(std::random_device{}()) {
  std::lock_guard<std::mutex> lock(join_mu_);
  thread_ = std::thread([this] { Run(); });
}

OtlpMetricExporter::~OtlpMetricExporter() { Shutdown(kDestructorShutdownDeadline); }

OtlpMetricExporterStats OtlpMetricExporter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

bool OtlpMetricExporter::WaitUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_until(lock, until, [this] { return shutdown_; });
}

void OtlpMetricExporter::Run() {
  Clock::time_point next = Clock::now() + config_.export_interval;
  for (;;) {
    if (!WaitUntil(next)) return;
    // Retries of one snapshot never outlast the interval: the next
    // collection supersedes (cumulative) or follows (delta) it.
    const Clock::time_point now = Clock::now();
    const Clock::time_point deadline =
        now + std::min(config_.retry_deadline, config_.export_interval);
    uint64_t points = 0;
    std::optional<std::string> interrupted = CollectAndSend(deadline, true, &points);
    if (interrupted) {
      std::lock_guard<std::mutex> lock(mu_);
      interrupted_body_ = std::move(interrupted);
      interrupted_points_ = points;
      return;
    }
    // Ticks missed while retrying are skipped, not made up in a burst.
    next = std::max(next + config_.export_interval, Clock::now());
  }
}

std::optional<std::string> OtlpMetricExporter::CollectAndSend(Clock::time_point deadline,
                                                              bool interruptible,
                                                              uint64_t* interrupted_points) {
  MetricsSnapshot snapshot = source_(unix_now_ns_());
  const uint64_t points = CountPoints(snapshot);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.collections;
    if (points == 0) {
      ++stats_.empty_skipped;
      return std::nullopt;
    }
  }
  std::string body = encode_(snapshot);
  snapshot = MetricsSnapshot{};  // only the bytes are kept while retrying
  if (Clock::now() >= deadline) {
    SendReport none;
    none.result = SendResult::kExpired;
    Count(points, none);
    return std::nullopt;
  }
  RetryHooks hooks;
  if (interruptible) {
    hooks.wait = [this](Clock::time_point until) { return WaitUntil(until); };
  } else {
    hooks.wait = [](Clock::time_point until) {
      std::this_thread::sleep_until(until);
      return true;
    };
  }
  hooks.random = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(random_); };
  hooks.on_failure = [this](const ExportOutcome& outcome) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.export_errors;
    }
    log_.Failure(outcome);
  };
  const SendReport report = SendWithRetry(*transport_, body, deadline, backoff_, hooks);
  if (report.result == SendResult::kInterrupted) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.export_retries += static_cast<uint64_t>(report.attempts - 1);
    *interrupted_points = points;
    return body;
  }
  Count(points, report);
  return std::nullopt;
}

void OtlpMetricExporter::Count(uint64_t points, const SendReport& report) {
  OtlpMetricExporterStats totals;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (report.attempts > 0) stats_.export_retries += static_cast<uint64_t>(report.attempts - 1);
    if (report.result == SendResult::kSent) {
      ++stats_.exports;
      stats_.points_exported += points;
    } else {
      ++stats_.exports_failed;
      stats_.points_dropped += points;
    }
    totals = stats_;
  }
  if (report.result == SendResult::kSent) {
    log_.Success();
    if (!report.last.message.empty()) log_.Notice(report.last.message);  // partial success
  } else {
    log_.Dropped(totals.points_dropped, "metric points",
                 absl::StrCat(totals.exports_failed, " collections not delivered"));
  }
}

void OtlpMetricExporter::Shutdown(std::chrono::milliseconds deadline) {
  Clock::time_point until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shutdown_) {
      shutdown_ = true;
      shutdown_deadline_ = Clock::now() + std::max(deadline, std::chrono::milliseconds(0));
    }
    until = shutdown_deadline_;
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> join_lock(join_mu_);
  if (thread_.joinable()) thread_.join();
  if (final_done_) return;
  final_done_ = true;

  // The thread has stopped: what follows runs here, alone.
  std::optional<std::string> interrupted;
  uint64_t interrupted_points = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted = std::move(interrupted_body_);
    interrupted_body_.reset();
    interrupted_points = interrupted_points_;
  }
  if (interrupted) {
    // Sent once (a deadline of now allows no retry), if time is left.
    SendReport report;
    report.result = SendResult::kExpired;
    if (Clock::now() < until) {
      RetryHooks hooks;
      hooks.wait = [](Clock::time_point) { return false; };
      hooks.on_failure = [this](const ExportOutcome& outcome) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++stats_.export_errors;
        }
        log_.Failure(outcome);
      };
      report = SendWithRetry(*transport_, *interrupted, Clock::now(), backoff_, hooks);
      if (report.result == SendResult::kInterrupted) report.result = SendResult::kExpired;
    }
    Count(interrupted_points, report);
  }
  uint64_t unused = 0;
  CollectAndSend(until, false, &unused);
}

}  // namespace loupe
