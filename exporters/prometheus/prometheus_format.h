// The RED metrics and the agent's own counters in the Prometheus text
// exposition format (0.0.4), named per the OpenTelemetry specification's
// "Prometheus and OpenMetrics Compatibility" (OTLP -> Prometheus):
//
//   http.server.request.duration (unit s)  -> http_server_request_duration_seconds
//                                             {_bucket{le=...}, _sum, _count}
//   http.server.request.body.size (unit By) -> http_server_request_body_size_bytes
//   monotonic sum traces_service_graph_request_total (unit {request})
//                                           -> counter traces_service_graph_request_total
//   (a counter gets "_total" unless its name has it; a non-monotonic sum is a
//   gauge; names that already end in their unit word keep it once)
//   attribute keys                          -> labels, invalid characters as "_"
//   otel.metric.overflow=true               -> otel_metric_overflow="true"
//
// Resources. The endpoint exposes many resources at once (one per observed
// process), unlike an SDK's endpoint which has one. Resource attributes go
// to one `target_info` gauge (value 1) per resource, as the specification
// says, and every series carries only the labels that tell its resource
// apart: service_name (+ service_namespace, service_instance_id when
// present), or process_pid when there is no service.instance.id. These are
// not called `job` and `instance`, which Prometheus sets from the scrape
// target (and would rename ours to exported_job/exported_instance). Join
// for other resource attributes:
//   http_server_request_duration_seconds_count
//     * on (service_name, service_instance_id) group_left (host_name) target_info
//
// Cumulative temporality only: a delta MetricData is skipped.
#ifndef LOUPE_EXPORTERS_PROMETHEUS_PROMETHEUS_FORMAT_H_
#define LOUPE_EXPORTERS_PROMETHEUS_PROMETHEUS_FORMAT_H_

#include <string>
#include <string_view>
#include <vector>

#include "decoders/model/metrics.h"
#include "exporters/self_metrics.h"
#include "prometheus/metric_family.h"

namespace loupe {

// "http.server.request.duration" + "s" -> "http_server_request_duration_seconds".
// Characters outside [a-zA-Z0-9_:] become "_", runs of "_" collapse, a
// leading digit gets a "_" prefix; the unit (curly-brace annotations
// dropped, "s" -> seconds, "By" -> bytes, ...) is appended unless the name
// already ends with it. `counter` appends "_total" (monotonic sums).
std::string PrometheusMetricName(std::string_view name, std::string_view unit,
                                 bool counter = false);

// "http.response.status_code" -> "http_response_status_code". Characters
// outside [a-zA-Z0-9_] become "_"; a leading digit gets "key_", a leading
// "__" (reserved for Prometheus) gets "key".
std::string PrometheusLabelName(std::string_view key);

// Strings as they are (invalid UTF-8 replaced by U+FFFD: Prometheus refuses a
// whole scrape over one bad label value, and routes come from untrusted
// requests), integers in decimal, doubles in the shortest form that reads
// back the same, booleans as "true"/"false".
std::string PrometheusLabelValue(const AttributeValue& value);

// Every family of the exposition (histograms, sums, target_info, self metrics),
// sorted by name; series in snapshot order. Series that end up with identical
// label sets (two resources telling apart only by attributes that are not
// labels) are merged, so the exposition never repeats a series. HELP texts
// come escaped, ready for TextSerializer (which does not escape them).
std::vector<prometheus::MetricFamily> ToMetricFamilies(const MetricsSnapshot& snapshot,
                                                       const std::vector<SelfMetric>& self);

// ToMetricFamilies through prometheus-cpp's TextSerializer.
std::string RenderPrometheusText(const MetricsSnapshot& snapshot,
                                 const std::vector<SelfMetric>& self);

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_PROMETHEUS_PROMETHEUS_FORMAT_H_
