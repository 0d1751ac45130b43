// OTLP/gRPC: one unary call per export through grpc::GenericStub, with the
// request bytes the encoder made (no generated service code is needed).
#ifndef LOUPE_EXPORTERS_OTLP_GRPC_TRANSPORT_H_
#define LOUPE_EXPORTERS_OTLP_GRPC_TRANSPORT_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "exporters/otlp/otlp_config.h"
#include "exporters/otlp/otlp_transport.h"

namespace loupe {

// The full method names of the OTLP collector services
// (opentelemetry/proto/collector/{trace,metrics,logs}/v1/*_service.proto).
inline constexpr std::string_view kOtlpTraceExportMethod =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
inline constexpr std::string_view kOtlpMetricsExportMethod =
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
inline constexpr std::string_view kOtlpLogsExportMethod =
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

struct GrpcTarget {
  std::string target;  // what grpc::CreateChannel takes: "host:port", "unix:/path", ...
  bool tls = true;
};

// OTLP exporter specification, "Endpoint (OTLP/gRPC)": a URL with scheme
// http (plaintext) or https (TLS, taking precedence over `insecure`) is
// accepted and turned into a gRPC target by dropping the scheme and any path;
// without a scheme the endpoint is "host:port" and TLS is used unless
// `insecure`. Other gRPC target forms ("dns:", "unix:", "ipv4:", "ipv6:")
// pass through untouched. A missing port is 4317, the OTLP/gRPC default
// port (OTLP specification, "OTLP/gRPC Default Port").
absl::StatusOr<GrpcTarget> ParseGrpcEndpoint(std::string_view endpoint, bool insecure);

// OTLP specification, "OTLP/gRPC Response", "Failures": the retryable codes
// are CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
// DATA_LOSS, and RESOURCE_EXHAUSTED only when the status carries a
// google.rpc.RetryInfo (the server can recover). Everything else is
// permanent. `status_details` is the serialized google.rpc.Status of the
// grpc-status-details-bin trailer ("" when absent); a positive RetryInfo
// delay becomes retry_after ("OTLP/gRPC Throttling"). `response` is the
// reply message, read for a partial success on OK.
ExportOutcome ClassifyGrpcStatus(int code, std::string_view message,
                                 std::string_view status_details, std::string_view response);

std::string_view GrpcStatusCodeName(int code);

// Errors name the setting: "endpoint", "certificate_file",
// "client_key_file", "client_certificate_file", "headers".
absl::StatusOr<std::unique_ptr<OtlpTransport>> MakeGrpcTransport(
    OtlpSignal signal, const OtlpEndpointConfig& config);

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_GRPC_TRANSPORT_H_
