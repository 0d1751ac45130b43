// The whole agent against an independent OTLP receiver (tests/otlp_receiver,
// Node.js with the upstream .proto files): real nginx and curl on loopback,
// the agent configured only through the OTEL_* variables an SDK would read,
// over OTLP/gRPC and OTLP/HTTP. The spans and metric points the receiver
// decodes must match the requests driven, field by field.
#include <signal.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;

std::map<std::string, Json> AttributeMap(const Json& attributes) {
  std::map<std::string, Json> out;
  for (const Json& kv : attributes) out[kv["key"]] = kv["value"];
  return out;
}

std::string Str(const Json& any) { return any.value("stringValue", "<not a string>"); }
std::string Int(const Json& any) { return any.value("intValue", "<not an int>"); }

const std::vector<double> kDurationBounds = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                             0.5,   0.75, 1,     2.5,   5,     7.5, 10};

struct Driven {
  uint64_t before_ns = 0;
  uint64_t after_ns = 0;
};

class OtlpAgentTest : public ::testing::TestWithParam<std::string /*protocol*/> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    const std::string missing = OtlpReceiverProcess::Prerequisites();
    ASSERT_TRUE(missing.empty()) << missing;
  }
};

TEST_P(OtlpAgentTest, SpansAndMetricsArriveFieldByField) {
  const std::string protocol = GetParam();
  OtlpReceiverProcess receiver({"--protos", "otlp-grpc-exporter-base"});
  ASSERT_EQ(receiver.Start(), "");
  std::string error;
  auto nginx = NginxServer::Start({{"ok.txt", std::string(321, 'o')}}, &error);
  ASSERT_TRUE(nginx) << error;
  const std::string endpoint =
      protocol == "grpc" ? receiver.grpc_endpoint() : receiver.http_base();
  auto loupe = LoupeProcess::Start(
      nginx->dir(), {"--port", std::to_string(nginx->port())},
      {"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
       "OTEL_EXPORTER_OTLP_HEADERS=x-tenant=loupe-test", "OTEL_METRIC_EXPORT_INTERVAL=1000",
       "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=ci"});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  EXPECT_THAT(loupe->Log(), HasSubstr("exporting traces over OTLP " + protocol));

  Driven driven;
  driven.before_ns = UnixNowNs();
  const std::string curl = FindProgram({"/usr/bin/curl"});
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url("/ok.txt")}), 0);
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url("/missing/" +
                                                                    std::to_string(i))}),
              0);
  }
  driven.after_ns = UnixNowNs();
  // Let a periodic metric export happen while the agent runs, then stop it:
  // shutdown delivers what is still queued.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(loupe->Stop(), 0);
  EXPECT_EQ(loupe->FinalStat("dropped"), 0) << loupe->Log();

  // --- Requests as the receiver saw them ---------------------------------
  std::set<std::string> transports;
  for (const Json& r : receiver.Requests()) {
    EXPECT_EQ(r["outcome"], "ok") << r.dump();
    EXPECT_EQ(r["unknownFields"].size(), 0u) << r.dump();
    transports.insert(r["transport"].get<std::string>());
    EXPECT_EQ(r["headers"].value("x-tenant", ""), "loupe-test") << r.dump();
  }
  EXPECT_EQ(transports, std::set<std::string>{protocol == "grpc" ? "grpc" : "http"});

  // --- Spans --------------------------------------------------------------
  const std::vector<Json> spans = receiver.Spans();
  ASSERT_EQ(spans.size(), 10u) << "5 requests, each a SERVER span in nginx and a CLIENT span "
                                  "in curl";
  std::map<std::string, int> by_kind_and_status;
  std::set<std::string> span_ids;
  std::map<std::string, std::pair<std::string, std::string>> parent_of;  // span: trace, parent
  for (const Json& s : spans) {
    SCOPED_TRACE(s.dump());
    EXPECT_THAT(s["traceId"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{32}"));
    EXPECT_THAT(s["spanId"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{16}"));
    EXPECT_TRUE(span_ids.insert(s["spanId"].get<std::string>()).second);
    // curl's CLIENT span is a root, nginx's SERVER span its child in the
    // same trace (both ends on this host; checked after the loop).
    const std::string parent = s.value("parentSpanId", "");
    if (s["kind"] == "SPAN_KIND_CLIENT") {
      EXPECT_EQ(parent, "");
    } else {
      parent_of[s["spanId"].get<std::string>()] = {s["traceId"].get<std::string>(), parent};
    }
    const uint64_t start = std::stoull(s["startTimeUnixNano"].get<std::string>());
    const uint64_t end = std::stoull(s["endTimeUnixNano"].get<std::string>());
    EXPECT_LE(start, end);
    EXPECT_GE(start + 5'000'000, driven.before_ns);
    EXPECT_LE(end, driven.after_ns + 5'000'000);
    const auto attributes = AttributeMap(s["attributes"]);
    const std::string path = Str(attributes.at("url.path"));
    const bool ok = path == "/ok.txt";
    EXPECT_EQ(Str(attributes.at("http.request.method")), "GET");
    EXPECT_EQ(Int(attributes.at("http.response.status_code")), ok ? "200" : "404");
    EXPECT_EQ(Str(attributes.at("http.route")), ok ? "/ok.txt" : "/missing/{id}");
    EXPECT_EQ(Int(attributes.at("server.port")), std::to_string(nginx->port()));
    EXPECT_EQ(s["name"], ok ? "GET /ok.txt" : "GET /missing/{id}");
    const std::string kind = s["kind"];
    const bool server = kind == "SPAN_KIND_SERVER";
    EXPECT_TRUE(server || kind == "SPAN_KIND_CLIENT");
    // 404: an error for the client only (HTTP semantic conventions).
    const std::string status = s.contains("status") ? s["status"].value("code", "STATUS_CODE_UNSET")
                                                    : "STATUS_CODE_UNSET";
    EXPECT_EQ(status, !ok && !server ? "STATUS_CODE_ERROR" : "STATUS_CODE_UNSET");
    if (ok) {
      EXPECT_EQ(Int(attributes.at("http.response.body.size")), "321");
    }
    const auto resource = AttributeMap(s["__resource"]["attributes"]);
    EXPECT_EQ(Str(resource.at("service.name")), server ? "nginx" : "curl");
    EXPECT_EQ(Str(resource.at("deployment.environment")), "ci");
    EXPECT_EQ(Str(resource.at("host.name")).empty(), false);
    EXPECT_EQ(s["__scope"]["name"], "loupe");
    by_kind_and_status[kind + " " + (ok ? "200" : "404")]++;
  }
  EXPECT_EQ(by_kind_and_status["SPAN_KIND_SERVER 200"], 3);
  EXPECT_EQ(by_kind_and_status["SPAN_KIND_CLIENT 200"], 3);
  EXPECT_EQ(by_kind_and_status["SPAN_KIND_SERVER 404"], 2);
  EXPECT_EQ(by_kind_and_status["SPAN_KIND_CLIENT 404"], 2);
  ASSERT_EQ(parent_of.size(), 5u);
  for (const auto& [span_id, trace_and_parent] : parent_of) {
    const auto& [trace_id, parent] = trace_and_parent;
    const auto client = std::find_if(spans.begin(), spans.end(), [&](const Json& s) {
      return s["spanId"] == parent && s["kind"] == "SPAN_KIND_CLIENT";
    });
    ASSERT_NE(client, spans.end()) << "SERVER span " << span_id << " has no CLIENT parent";
    EXPECT_EQ((*client)["traceId"], trace_id);
  }

  // --- Metrics: the last cumulative export holds every request ----------
  Json last_metrics;
  for (const Json& r : receiver.Requests()) {
    if (r["signal"] == "metrics") last_metrics = r;
  }
  ASSERT_FALSE(last_metrics.is_null()) << "no metric export arrived";
  std::map<std::string, uint64_t> counts;  // "metric service status" -> count
  std::map<std::string, double> graph;      // "metric client server resource" -> value
  for (const Json& rm : last_metrics["request"]["resourceMetrics"]) {
    const std::string service = Str(AttributeMap(rm["resource"]["attributes"]).at("service.name"));
    for (const Json& sm : rm["scopeMetrics"]) {
      EXPECT_EQ(sm["scope"]["name"], "loupe");
      for (const Json& m : sm["metrics"]) {
        const std::string name = m["name"];
        if (name.rfind("traces_service_graph_", 0) == 0) {
          // The service graph: curl -> nginx, on the agent's own resource.
          SCOPED_TRACE(m.dump());
          const bool sum = m.contains("sum");
          const Json& points = sum ? m["sum"]["dataPoints"] : m["histogram"]["dataPoints"];
          if (sum) {
            EXPECT_EQ(m["sum"]["isMonotonic"], true);
            EXPECT_EQ(m["sum"]["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
          }
          for (const Json& p : points) {
            const auto attributes = AttributeMap(p["attributes"]);
            const double value = sum ? p["asDouble"].get<double>()
                                     : static_cast<double>(std::stoull(p["count"].get<std::string>()));
            graph[name + " " + Str(attributes.at("client")) + " " + Str(attributes.at("server")) +
                  " " + service] += value;
          }
          continue;
        }
        if (m["name"] != "http.server.request.duration" &&
            m["name"] != "http.client.request.duration") {
          continue;
        }
        SCOPED_TRACE(m.dump());
        EXPECT_EQ(m["unit"], "s");
        EXPECT_EQ(m["histogram"]["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
        for (const Json& p : m["histogram"]["dataPoints"]) {
          const auto attributes = AttributeMap(p["attributes"]);
          const uint64_t count = std::stoull(p["count"].get<std::string>());
          uint64_t bucket_total = 0;
          for (const Json& b : p["bucketCounts"]) bucket_total += std::stoull(b.get<std::string>());
          EXPECT_EQ(bucket_total, count);
          std::vector<double> bounds = p["explicitBounds"].get<std::vector<double>>();
          EXPECT_EQ(bounds, kDurationBounds);
          EXPECT_GT(p["sum"].get<double>(), 0);
          EXPECT_LE(p["min"].get<double>(), p["max"].get<double>());
          counts[m["name"].get<std::string>() + " " + service + " " +
                 Int(attributes.at("http.response.status_code"))] += count;
        }
      }
    }
  }
  EXPECT_EQ(counts["http.server.request.duration nginx 200"], 3u);
  EXPECT_EQ(counts["http.server.request.duration nginx 404"], 2u);
  EXPECT_EQ(counts["http.client.request.duration curl 200"], 3u);
  EXPECT_EQ(counts["http.client.request.duration curl 404"], 2u);
  EXPECT_EQ(graph["traces_service_graph_request_total curl nginx loupe"], 5);
  EXPECT_EQ(graph["traces_service_graph_request_failed_total curl nginx loupe"], 2)
      << "the 404s are errors for the client";
  EXPECT_EQ(graph["traces_service_graph_request_server_seconds curl nginx loupe"], 5);
  EXPECT_EQ(graph["traces_service_graph_request_client_seconds curl nginx loupe"], 5);
  EXPECT_EQ(graph.size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Protocols, OtlpAgentTest, ::testing::Values("grpc", "http/protobuf"),
                         [](const auto& info) {
                           return info.param == "grpc" ? std::string("Grpc")
                                                       : std::string("HttpProtobuf");
                         });

TEST(OtlpAgentFaultTest, CollectorStartedLateStillReceivesLaterSpans) {
  ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  ASSERT_EQ(OtlpReceiverProcess::Prerequisites(), "");
  OtlpReceiverProcess receiver({"--protos", "otlp-grpc-exporter-base"});
  std::string error;
  auto nginx = NginxServer::Start({{"a.txt", "a"}, {"b.txt", "b"}}, &error);
  ASSERT_TRUE(nginx) << error;
  // The collector is not there yet: the agent starts anyway and keeps going.
  auto loupe = LoupeProcess::Start(
      nginx->dir(), {"--port", std::to_string(nginx->port())},
      {"OTEL_EXPORTER_OTLP_ENDPOINT=" + receiver.http_base(), "OTEL_BSP_SCHEDULE_DELAY=100",
       "OTEL_BSP_EXPORT_TIMEOUT=1500", "OTEL_METRICS_EXPORTER=none"});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  const std::string curl = FindProgram({"/usr/bin/curl"});
  ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url("/a.txt")}), 0);
  // Past the export deadline: that batch is given up and counted.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  ASSERT_EQ(receiver.Start(), "");
  ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url("/b.txt")}), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(loupe->running());
  EXPECT_EQ(loupe->Stop(), 0);
  std::multiset<std::string> names;
  for (const std::string& n : receiver.SpanNames("ok")) names.insert(n);
  EXPECT_EQ(names.count("GET /b.txt"), 2u) << loupe->Log();
  EXPECT_EQ(names.count("GET /a.txt"), 0u);
  EXPECT_EQ(loupe->FinalStat("dropped"), 2) << loupe->Log();
  EXPECT_GT(loupe->FinalStat("export_errors"), 0);
}

}  // namespace
}  // namespace loupe::testing
