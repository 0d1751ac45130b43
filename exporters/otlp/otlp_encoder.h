// Spans and metric snapshots as OTLP protobuf request bodies
// (ExportTraceServiceRequest, ExportMetricsServiceRequest,
// ExportLogsServiceRequest), the same bytes
// for OTLP/gRPC and OTLP/HTTP. The .proto files under exporters/otlp/proto
// are written from the published OTLP specification.
#ifndef LOUPE_EXPORTERS_OTLP_OTLP_ENCODER_H_
#define LOUPE_EXPORTERS_OTLP_OTLP_ENCODER_H_

#include <span>
#include <string>

#include "decoders/model/log_record.h"
#include "decoders/model/metrics.h"
#include "decoders/model/span.h"

namespace loupe {

// Groups spans by resource (one ResourceSpans per distinct resource) and
// puts them under the instrumentation scope "loupe" with the agent version.
std::string EncodeTraceRequest(std::span<const Span> spans);
std::string EncodeMetricsRequest(const MetricsSnapshot& snapshot);
// Groups log records by resource, like spans (ExportLogsServiceRequest).
std::string EncodeLogsRequest(std::span<const LogRecord> records);

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_OTLP_ENCODER_H_
