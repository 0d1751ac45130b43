// Settings of the OTLP exporters, as the OpenTelemetry SDK environment
// variables define them (OTEL_EXPORTER_OTLP_*). Parsing lives in the agent
// (agent/otel_env.*); exporters only read this struct.
#ifndef LOUPE_EXPORTERS_OTLP_OTLP_CONFIG_H_
#define LOUPE_EXPORTERS_OTLP_OTLP_CONFIG_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "decoders/model/metrics.h"

namespace loupe {

enum class OtlpProtocol : uint8_t { kGrpc, kHttpProtobuf };
enum class OtlpCompression : uint8_t { kNone, kGzip };
enum class OtlpSignal : uint8_t { kTraces, kMetrics, kLogs };

// One signal's destination and transport settings.
struct OtlpEndpointConfig {
  OtlpProtocol protocol = OtlpProtocol::kGrpc;
  // gRPC: "host:port" or a URL ("http://host:4317", "https://..."); the
  // scheme decides TLS unless `insecure` says otherwise.
  // HTTP: the full URL including the signal path ("http://host:4318/v1/traces").
  std::string endpoint;
  bool insecure = false;  // gRPC: plaintext even without an http:// scheme
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every export
  std::chrono::milliseconds timeout{10000};                 // per export attempt
  OtlpCompression compression = OtlpCompression::kNone;
  std::string certificate_file;         // CA bundle (PEM) to trust; "" = system roots
  std::string client_key_file;          // mTLS
  std::string client_certificate_file;  // mTLS
};

struct OtlpBatchConfig {
  size_t max_queue_size = 2048;        // spans waiting; beyond it new spans are dropped
  size_t max_export_batch_size = 512;  // spans per request
  std::chrono::milliseconds schedule_delay{1000};  // longest a span waits for a batch
  // Retries of one batch stop after this long (then the batch is dropped).
  std::chrono::milliseconds retry_deadline{30000};
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{5000};
};

struct OtlpTracesConfig {
  OtlpEndpointConfig endpoint;
  OtlpBatchConfig batch;
};

// Log records (events Loupe diagnoses, such as OOM kills) batch like spans.
struct OtlpLogsConfig {
  OtlpEndpointConfig endpoint;
  OtlpBatchConfig batch;
};

struct OtlpMetricsConfig {
  OtlpEndpointConfig endpoint;
  std::chrono::milliseconds export_interval{60000};  // OTEL_METRIC_EXPORT_INTERVAL
  Temporality temporality = Temporality::kCumulative;
  std::chrono::milliseconds retry_deadline{30000};
};

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_OTLP_CONFIG_H_
