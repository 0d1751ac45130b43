// The agent's own counters as loupe_* metrics (Prometheus /metrics and the
// periodic log line read the same numbers).
#ifndef LOUPE_AGENT_SELF_TELEMETRY_H_
#define LOUPE_AGENT_SELF_TELEMETRY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/bpf_capture.h"
#include "agent/pipeline.h"
#include "agent/resource_usage.h"
#include "decoders/model/metrics.h"
#include "exporters/exporter.h"
#include "exporters/self_metrics.h"

namespace loupe {

struct SelfTelemetry {
  PipelineStats pipeline;
  bool live = false;               // kernel counters below are meaningful
  KernelCounters kernel{};
  uint64_t queue_dropped = 0;      // events the reader could not hand over
  size_t hooks_attached = 0;
  MetricsStats metrics;
  // Per span exporter: its name and counters.
  std::vector<std::pair<std::string, ExporterStats>> exporters;
  // OTLP metric exports (when enabled).
  uint64_t metric_points_exported = 0;
  uint64_t metric_exports_failed = 0;
  // The OTLP log exporter (OOM kills), when there is one.
  std::optional<ExporterStats> logs;
  // CPU and memory sampling (--resource-interval), when on.
  std::optional<ResourceSamplerStats> resources;
};

std::vector<SelfMetric> ToSelfMetrics(const SelfTelemetry& t);

}  // namespace loupe

#endif  // LOUPE_AGENT_SELF_TELEMETRY_H_
