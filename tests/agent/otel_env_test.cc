// The OpenTelemetry SDK environment variables and their flags.
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/config.h"

namespace loupe {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

absl::StatusOr<AgentConfig> Parse(std::map<std::string, std::string> env,
                                  std::vector<std::string> args = {}) {
  std::vector<const char*> argv = {"loupe"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  auto lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  return ParseFlags(static_cast<int>(argv.size()), argv.data(), lookup);
}

std::string ErrorOf(std::map<std::string, std::string> env, std::vector<std::string> args = {}) {
  auto c = Parse(std::move(env), std::move(args));
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(OtelEnvTest, WithoutAnEndpointTheConsoleAndPrometheusAreOn) {
  auto c = Parse({});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->console);
  EXPECT_EQ(c->metrics_listen, "0.0.0.0:9464");
  EXPECT_FALSE(c->otlp_traces.has_value());
  EXPECT_FALSE(c->otlp_metrics.has_value());
  EXPECT_EQ(c->sampler.kind, SamplerKind::kParentBasedAlwaysOn);
}

TEST(OtelEnvTest, HttpEndpointGetsTheSignalPaths) {
  auto c = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"}});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->otlp_traces && c->otlp_metrics);
  EXPECT_EQ(c->otlp_traces->endpoint.protocol, OtlpProtocol::kHttpProtobuf);  // the default
  EXPECT_EQ(c->otlp_traces->endpoint.endpoint, "http://collector:4318/v1/traces");
  EXPECT_EQ(c->otlp_metrics->endpoint.endpoint, "http://collector:4318/v1/metrics");
  EXPECT_FALSE(c->console);  // an endpoint replaces the console by default
  EXPECT_EQ(c->metrics_listen, "0.0.0.0:9464");  // Prometheus stays
  auto slash = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base/"}});
  EXPECT_EQ(slash->otlp_traces->endpoint.endpoint, "http://collector:4318/base/v1/traces");
}

TEST(OtelEnvTest, LogRecordsFollowTheEndpointAndTheirOwnSettings) {
  EXPECT_FALSE(Parse({})->otlp_logs.has_value()) << "no endpoint: no OTLP logs";
  auto c = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"},
                  {"OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-logs=1"}});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->otlp_logs.has_value());
  EXPECT_EQ(c->otlp_logs->endpoint.endpoint, "http://collector:4318/v1/logs");
  EXPECT_THAT(c->otlp_logs->endpoint.headers, ElementsAre(Pair("x-logs", "1")));
  EXPECT_TRUE(c->otlp_traces->endpoint.headers.empty()) << "a logs variable is for logs only";
  auto only = Parse({{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4318/custom"},
                     {"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"}});
  ASSERT_TRUE(only.ok()) << only.status();
  ASSERT_TRUE(only->otlp_logs.has_value());
  EXPECT_EQ(only->otlp_logs->endpoint.endpoint, "http://logs:4318/custom");
  EXPECT_EQ(only->otlp_logs->endpoint.protocol, OtlpProtocol::kGrpc);
  EXPECT_FALSE(only->otlp_traces.has_value());
  auto off = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"},
                    {"OTEL_LOGS_EXPORTER", "none"}});
  EXPECT_FALSE(off->otlp_logs.has_value());
  EXPECT_THAT(ErrorOf({{"OTEL_LOGS_EXPORTER", "console"}}), HasSubstr("OTEL_LOGS_EXPORTER"));
}

TEST(OtelEnvTest, GrpcEndpointIsUsedAsGiven) {
  auto c = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"},
                  {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->otlp_traces->endpoint.endpoint, "http://collector:4317");
  EXPECT_EQ(c->otlp_metrics->endpoint.endpoint, "http://collector:4317");
}

TEST(OtelEnvTest, SignalVariablesOverrideGenericOnesAndFlagsOverrideBoth) {
  std::map<std::string, std::string> env = {
      {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"},
      {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example:443/custom/path"},
      {"OTEL_EXPORTER_OTLP_TIMEOUT", "2000"},
      {"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "7000"},
      {"OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret%20one,tenant = a "},
      {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x=1"},
      {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"},
      {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
  };
  auto c = Parse(env);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->otlp_traces->endpoint.endpoint, "https://traces.example:443/custom/path");
  EXPECT_EQ(c->otlp_traces->endpoint.timeout.count(), 2000);
  EXPECT_EQ(c->otlp_metrics->endpoint.timeout.count(), 7000);
  EXPECT_THAT(c->otlp_traces->endpoint.headers, ElementsAre(Pair("x", "1")));
  EXPECT_THAT(c->otlp_metrics->endpoint.headers,
              ElementsAre(Pair("api-key", "secret one"), Pair("tenant", "a")));
  EXPECT_EQ(c->otlp_metrics->endpoint.protocol, OtlpProtocol::kGrpc);
  EXPECT_EQ(c->otlp_metrics->endpoint.endpoint, "http://c:4318");  // gRPC: no path
  EXPECT_EQ(c->otlp_traces->endpoint.compression, OtlpCompression::kGzip);

  // A flag beats the environment, the per-signal variables included.
  auto flagged = Parse(env, {"--otlp-timeout", "300", "--otlp-protocol=http/protobuf"});
  ASSERT_TRUE(flagged.ok());
  EXPECT_EQ(flagged->otlp_metrics->endpoint.timeout.count(), 300);
  EXPECT_EQ(flagged->otlp_metrics->endpoint.protocol, OtlpProtocol::kHttpProtobuf);
  EXPECT_EQ(flagged->otlp_metrics->endpoint.endpoint, "http://c:4318/v1/metrics");
}

TEST(OtelEnvTest, TlsSettings) {
  auto c = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"},
                  {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
                  {"OTEL_EXPORTER_OTLP_INSECURE", "true"},
                  {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"},
                  {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/key.pem"},
                  {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/cert.pem"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->otlp_traces->endpoint.insecure);
  EXPECT_EQ(c->otlp_traces->endpoint.certificate_file, "/etc/ca.pem");
  EXPECT_EQ(c->otlp_metrics->endpoint.client_key_file, "/etc/key.pem");
  EXPECT_EQ(c->otlp_metrics->endpoint.client_certificate_file, "/etc/cert.pem");
  EXPECT_THAT(ErrorOf({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"},
                       {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/key.pem"}}),
              HasSubstr("mutual TLS needs both a client key and a client certificate"));
  auto flag = Parse({{"OTEL_EXPORTER_OTLP_INSECURE", "false"}},
                    {"--otlp-endpoint", "c:4317", "--otlp-insecure"});
  ASSERT_TRUE(flag.ok());
  EXPECT_TRUE(flag->otlp_traces->endpoint.insecure);
}

TEST(OtelEnvTest, MetricSettings) {
  auto c = Parse({{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/v1/metrics"},
                  {"OTEL_METRIC_EXPORT_INTERVAL", "15000"},
                  {"OTEL_METRIC_EXPORT_TIMEOUT", "5000"},
                  {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->otlp_traces.has_value());  // only metrics have an endpoint
  EXPECT_TRUE(c->console);
  ASSERT_TRUE(c->otlp_metrics.has_value());
  EXPECT_EQ(c->otlp_metrics->endpoint.endpoint, "http://m:4318/v1/metrics");
  EXPECT_EQ(c->otlp_metrics->export_interval.count(), 15000);
  EXPECT_EQ(c->otlp_metrics->retry_deadline.count(), 5000);
  EXPECT_EQ(c->otlp_metrics->temporality, Temporality::kDelta);
  auto low = Parse({{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "lowmemory"}});
  EXPECT_EQ(low->otlp.temporality, Temporality::kDelta);  // histograms are delta there
}

TEST(OtelEnvTest, ExporterSelection) {
  auto none = Parse({{"OTEL_TRACES_EXPORTER", "none"}, {"OTEL_METRICS_EXPORTER", "none"}});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->console);
  EXPECT_EQ(none->metrics_listen, "");
  auto both = Parse({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"},
                     {"OTEL_TRACES_EXPORTER", "otlp,console"},
                     {"OTEL_METRICS_EXPORTER", "otlp"}});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->console);
  EXPECT_TRUE(both->otlp_traces.has_value());
  EXPECT_EQ(both->metrics_listen, "");
  // An explicit --console wins over the exporter list.
  auto console = Parse({{"OTEL_TRACES_EXPORTER", "none"}}, {"--console"});
  EXPECT_TRUE(console->console);
  // otlp without any endpoint uses the specification's local default.
  auto local = Parse({{"OTEL_TRACES_EXPORTER", "otlp"}});
  EXPECT_EQ(local->otlp_traces->endpoint.endpoint, "http://localhost:4318/v1/traces");
}

TEST(OtelEnvTest, SamplerAndResource) {
  auto c = Parse({{"OTEL_TRACES_SAMPLER", "traceidratio"},
                  {"OTEL_TRACES_SAMPLER_ARG", "0.1"},
                  {"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,k8s.cluster.name=c1"}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->sampler.kind, SamplerKind::kTraceIdRatio);
  EXPECT_DOUBLE_EQ(c->sampler.ratio, 0.1);
  EXPECT_THAT(c->resource_attributes,
              ElementsAre(Pair("deployment.environment", "prod"), Pair("k8s.cluster.name", "c1")));
  auto flagged = Parse({{"OTEL_TRACES_SAMPLER", "traceidratio"}},
                       {"--traces-sampler", "always_off"});
  EXPECT_EQ(flagged->sampler.kind, SamplerKind::kAlwaysOff);
}

TEST(OtelEnvTest, BatchVariablesAndClamping) {
  auto c = Parse({{"OTEL_TRACES_EXPORTER", "otlp"},
                  {"OTEL_BSP_SCHEDULE_DELAY", "200"},
                  {"OTEL_BSP_EXPORT_TIMEOUT", "9000"},
                  {"OTEL_BSP_MAX_QUEUE_SIZE", "100"},
                  {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->otlp_traces->batch.schedule_delay.count(), 200);
  EXPECT_EQ(c->otlp_traces->batch.retry_deadline.count(), 9000);
  EXPECT_EQ(c->otlp_traces->batch.max_queue_size, 100u);
  EXPECT_EQ(c->otlp_traces->batch.max_export_batch_size, 100u);  // clamped to the queue
}

TEST(OtelEnvTest, BadValuesNameTheVariableOrFlag) {
  struct Case {
    std::map<std::string, std::string> env;
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{{"OTEL_EXPORTER_OTLP_TIMEOUT", "soon"}}, {}, "OTEL_EXPORTER_OTLP_TIMEOUT: expected a whole number"},
      {{{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}}, {}, "OTEL_EXPORTER_OTLP_PROTOCOL: http/json is not supported"},
      {{{"OTEL_EXPORTER_OTLP_PROTOCOL", "udp"}}, {}, "OTEL_EXPORTER_OTLP_PROTOCOL: expected grpc or http/protobuf"},
      {{{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"}, {"OTEL_TRACES_EXPORTER", "otlp"}}, {},
       "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: expected grpc or http/protobuf"},
      {{{"OTEL_EXPORTER_OTLP_INSECURE", "yes"}}, {}, "OTEL_EXPORTER_OTLP_INSECURE: expected true or false"},
      {{{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"}}, {}, "OTEL_EXPORTER_OTLP_COMPRESSION: expected gzip or none"},
      {{{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}}, {}, "OTEL_EXPORTER_OTLP_HEADERS: 'novalue' is not key=value"},
      {{{"OTEL_METRIC_EXPORT_INTERVAL", "0"}}, {}, "OTEL_METRIC_EXPORT_INTERVAL: must be at least 1"},
      {{{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes"}}, {},
       "expected cumulative, delta or lowmemory"},
      {{{"OTEL_TRACES_EXPORTER", "zipkin"}}, {}, "OTEL_TRACES_EXPORTER: 'zipkin' is not one of"},
      {{{"OTEL_TRACES_SAMPLER", "traceidratio"}, {"OTEL_TRACES_SAMPLER_ARG", "2"}}, {},
       "OTEL_TRACES_SAMPLER_ARG"},
      {{{"OTEL_BSP_MAX_QUEUE_SIZE", "-1"}}, {}, "OTEL_BSP_MAX_QUEUE_SIZE: expected a whole number"},
      {{{"LOUPE_METRICS_LISTEN", "9464"}}, {}, "LOUPE_METRICS_LISTEN: expected HOST:PORT"},
      {{}, {"--otlp-timeout", "x"}, "--otlp-timeout: expected a whole number"},
      {{}, {"--metrics-listen", "localhost"}, "--metrics-listen: expected HOST:PORT"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ErrorOf(c.env, c.args), HasSubstr(c.message)) << c.message;
  }
}

TEST(OtelEnvTest, HelpListsFlagsWithTheirVariables) {
  const std::string help = HelpText();
  for (const char* text :
       {"--otlp-endpoint URL", "[env: OTEL_EXPORTER_OTLP_ENDPOINT]",
        "[env: OTEL_EXPORTER_OTLP_PROTOCOL]", "[env: OTEL_EXPORTER_OTLP_HEADERS]",
        "[env: OTEL_EXPORTER_OTLP_TIMEOUT]", "[env: OTEL_EXPORTER_OTLP_COMPRESSION]",
        "[env: OTEL_EXPORTER_OTLP_INSECURE]", "[env: OTEL_EXPORTER_OTLP_CERTIFICATE]",
        "[env: OTEL_EXPORTER_OTLP_CLIENT_KEY]", "[env: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE]",
        "[env: OTEL_RESOURCE_ATTRIBUTES]", "[env: OTEL_METRIC_EXPORT_INTERVAL]",
        "[env: OTEL_TRACES_SAMPLER]", "[env: OTEL_TRACES_SAMPLER_ARG]",
        "[env: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE]",
        "OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_PROTOCOL", "OTEL_BSP_MAX_QUEUE_SIZE",
        "--metrics-listen HOST:PORT", "[default: 0.0.0.0:9464]"}) {
    EXPECT_THAT(help, HasSubstr(text));
  }
}

}  // namespace
}  // namespace loupe
