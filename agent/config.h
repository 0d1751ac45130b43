// Agent configuration: command-line flags and the OpenTelemetry SDK
// environment variables (OTEL_*).
//
// Every setting is described once, in the table in config.cc, from which the
// parser, the environment lookup and `loupe --help` are all generated.
// Precedence: built-in default < environment variable < command-line flag.
#ifndef LOUPE_AGENT_CONFIG_H_
#define LOUPE_AGENT_CONFIG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/log.h"
#include "decoders/model/http_capture.h"
#include "decoders/model/sampler.h"
#include "exporters/otlp/otlp_config.h"

extern "C" {
#include "bpf/loupe_events.h"
}

namespace loupe {

// Settings shared by both OTLP signals before per-signal variables apply.
struct OtlpInputs {
  std::string endpoint;          // OTEL_EXPORTER_OTLP_ENDPOINT / --otlp-endpoint
  std::string traces_endpoint;   // ..._TRACES_ENDPOINT
  std::string metrics_endpoint;  // ..._METRICS_ENDPOINT
  std::string logs_endpoint;     // ..._LOGS_ENDPOINT
  OtlpProtocol protocol = OtlpProtocol::kHttpProtobuf;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{10000};
  OtlpCompression compression = OtlpCompression::kNone;
  bool insecure = false;
  std::string certificate_file;
  std::string client_key_file;
  std::string client_certificate_file;
  std::chrono::milliseconds metric_export_interval{60000};
  std::chrono::milliseconds metric_export_timeout{30000};
  Temporality temporality = Temporality::kCumulative;
  OtlpBatchConfig batch;
  std::string sampler_name = "parentbased_always_on";
  std::string sampler_arg;
  // OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER,
  // empty when not given.
  std::vector<std::string> traces_exporters;
  std::vector<std::string> metrics_exporters;
  std::vector<std::string> logs_exporters;
};

struct AgentConfig {
  // Output
  bool console = true;
  bool console_set = false;  // --console/--no-console given explicitly
  std::string jsonl_path;    // "" = off, "-" = stdout
  // Metrics
  std::string metrics_listen = "0.0.0.0:9464";  // "" = no HTTP endpoint
  uint32_t max_series = 2000;
  uint32_t resource_interval_s = 10;  // CPU/memory sampling period; 0: off
  // Capture
  uint32_t payload_bytes = 4096;
  uint32_t payload_bytes_framed = LOUPE_PAYLOAD_MAX;
  std::vector<uint32_t> pids;
  std::vector<uint16_t> ports;
  uint64_t ringbuf_bytes = 16ull << 20;
  bool capture_url_query = false;
  bool sanitize_sql = true;
  bool redis_capture_key = false;
  // HTTP header values recorded on spans, header names recorded only as
  // REDACTED (beyond kAlwaysRedactedHeaders), and query parameters redacted
  // in url.query; names in lower case, each once (decoders/model/http_capture.h).
  std::vector<std::string> capture_headers;
  std::vector<std::string> redact_headers;
  std::vector<std::string> redact_query_params = std::vector<std::string>(
      DefaultRedactedQueryParams().begin(), DefaultRedactedQueryParams().end());
  uint32_t max_connections = 16384;
  std::vector<std::string> skip_hooks;  // tracepoint names, e.g. sys_enter_readv
  // Recording
  std::string record_path;
  std::string replay_path;
  // Logging
  LogLevel log_level = LogLevel::kInfo;
  uint32_t stats_interval_s = 10;

  // OpenTelemetry: what the inputs above resolve to.
  OtlpInputs otlp;
  std::vector<std::pair<std::string, std::string>> resource_attributes;
  SamplerConfig sampler;
  std::optional<OtlpTracesConfig> otlp_traces;    // set when traces go to OTLP
  std::optional<OtlpMetricsConfig> otlp_metrics;  // set when metrics go to OTLP
  std::optional<OtlpLogsConfig> otlp_logs;        // set when log records go to OTLP

  bool show_help = false;
  bool show_version = false;
};

// Looks up an environment variable; nullptr when unset.
using Environment = std::function<const char*(const char* name)>;
Environment ProcessEnvironment();

// Parses the environment, then argv. Errors are one sentence naming the
// flag or variable and what is wrong.
absl::StatusOr<AgentConfig> ParseFlags(int argc, const char* const* argv,
                                       const Environment& env = ProcessEnvironment());
std::string HelpText();
std::string VersionText();

}  // namespace loupe

#endif  // LOUPE_AGENT_CONFIG_H_
