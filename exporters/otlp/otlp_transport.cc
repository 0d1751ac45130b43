#include "exporters/otlp/otlp_transport.h"

#include "exporters/otlp/grpc_transport.h"
#include "exporters/otlp/http_transport.h"

namespace loupe {

absl::StatusOr<std::unique_ptr<OtlpTransport>> MakeOtlpTransport(
    OtlpSignal signal, const OtlpEndpointConfig& config) {
  switch (config.protocol) {
    case OtlpProtocol::kGrpc:
      return MakeGrpcTransport(signal, config);
    case OtlpProtocol::kHttpProtobuf:
      // The URL already carries the signal path (/v1/traces, /v1/metrics, /v1/logs).
      return MakeHttpTransport(config);
  }
  return absl::InvalidArgumentError("protocol: unknown OTLP protocol");
}

}  // namespace loupe
