// Wire compatibility of Loupe's OTLP requests with an independent
// implementation: tests/otlp_receiver/receiver.js (Node.js, @grpc/grpc-js,
// protobufjs) decodes them with upstream opentelemetry-proto files shipped in
// opentelemetry-js packages, never with Loupe's own .proto files, and writes
// what it decoded as JSON lines. Two upstream generations are checked:
//   "otlp-grpc-exporter-base"  InstrumentationScope generation: every field
//                              Loupe writes is declared, so every field is
//                              compared and nothing may be unknown to it;
//   "exporter-trace-otlp-grpc" the older InstrumentationLibrary /
//                              DoubleHistogram generation (what an old
//                              collector runs): everything it declares must
//                              decode to the same values, and the only
//                              fields it may not know are the histogram
//                              point's attributes, min and max.
// The bodies are sent by minimal senders written here (a gRPC generic stub,
// libcurl); the exporters' own transports are tested elsewhere. The end of
// the file checks the receiver's fault modes, which the transport tests use.
#include <curl/curl.h>
#include <gmock/gmock.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/version.h"
#include "exporters/otlp/otlp_encoder.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/exporters/otlp_encoding/otlp_samples.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr char kTraceMethod[] = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
constexpr char kMetricsMethod[] = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
constexpr char kLogsMethod[] = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
constexpr char kCurrentSchema[] = "otlp-grpc-exporter-base";
constexpr char kLegacySchema[] = "exporter-trace-otlp-grpc";

std::string ReceiverPrerequisites() { return OtlpReceiverProcess::Prerequisites(); }

// ---- the receiver process ---------------------------------------------------

class Receiver : public OtlpReceiverProcess {
 public:
  static std::unique_ptr<Receiver> Start(const std::vector<std::string>& flags,
                                         std::string* error) {
    auto receiver = std::unique_ptr<Receiver>(new Receiver(flags));
    *error = receiver->OtlpReceiverProcess::Start();
    if (!error->empty()) return nullptr;
    return receiver;
  }

 private:
  explicit Receiver(const std::vector<std::string>& flags) : OtlpReceiverProcess(flags) {}
};

// ---- minimal senders --------------------------------------------------------

struct GrpcResult {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  std::string details;  // grpc-status-details-bin
  std::string response;
};

GrpcResult GrpcExport(uint16_t port, const std::string& method, const std::string& body, bool gzip,
                      std::chrono::milliseconds deadline = 10s) {
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  if (gzip) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  grpc::Slice slice(body);
  grpc::ByteBuffer request(&slice, 1);
  grpc::CompletionQueue queue;
  auto call = stub.PrepareUnaryCall(&context, method, request, &queue);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(queue.Next(&tag, &ok));
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  GrpcResult result;
  result.code = status.error_code();
  result.message = status.error_message();
  result.details = status.error_details();
  if (status.ok()) {
    grpc::Slice all;
    if (response.Length() > 0 && response.DumpToSingleSlice(&all).ok()) {
      result.response.assign(reinterpret_cast<const char*>(all.begin()), all.size());
    }
  }
  return result;
}

std::string Gzip(const std::string& data) {
  z_stream stream{};
  // 15 + 16: a gzip header and trailer, as Content-Encoding: gzip means.
  EXPECT_EQ(
      deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY),
      Z_OK);
  std::string out(deflateBound(&stream, data.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

struct HttpResult {
  CURLcode curl = CURLE_OK;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t CollectHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    const size_t first = value.find_first_not_of(" \t");
    const size_t last = value.find_last_not_of(" \t\r\n");
    value = first == std::string::npos ? "" : value.substr(first, last - first + 1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

HttpResult HttpPost(uint16_t port, const std::string& path, const std::string& body, bool gzip,
                    std::chrono::milliseconds timeout = 10s) {
  HttpResult result;
  CURL* curl = curl_easy_init();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  const std::string payload = gzip ? Gzip(body) : body;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/x-protobuf");
  if (gzip) headers = curl_slist_append(headers, "Content-Encoding: gzip");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CollectHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
  result.curl = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

// ---- reading what the receiver decoded --------------------------------------

// protobufjs' toObject names fields in camelCase; the two upstream
// generations name the scope level differently.
struct Generation {
  bool current;
  const char* scope_spans() const { return current ? "scopeSpans" : "instrumentationLibrarySpans"; }
  const char* scope_metrics() const {
    return current ? "scopeMetrics" : "instrumentationLibraryMetrics";
  }
  const char* scope() const { return current ? "scope" : "instrumentationLibrary"; }
  const char* histogram() const { return current ? "histogram" : "doubleHistogram"; }
};

// Attributes as "key" -> "type:value", the type being the AnyValue arm the
// receiver decoded (64-bit ints arrive as decimal strings).
std::map<std::string, std::string> Typed(const Json& attributes) {
  std::map<std::string, std::string> out;
  if (!attributes.is_array()) return out;
  for (const Json& kv : attributes) {
    const Json& value = kv.at("value");
    const std::string arm = value.value("value", std::string("none"));
    std::string typed = arm + ":";
    if (arm == "stringValue" || arm == "intValue") {
      typed += value.at(arm).get<std::string>();
    } else if (arm == "boolValue") {
      typed += value.at(arm).get<bool>() ? "true" : "false";
    } else if (arm == "doubleValue") {
      typed += value.at(arm).dump();
    } else {
      typed += value.dump();
    }
    EXPECT_TRUE(out.emplace(kv.at("key").get<std::string>(), typed).second);
  }
  return out;
}

const std::map<std::string, std::string> kNginxResource = {{"service.name", "stringValue:nginx"},
                                                           {"process.pid", "intValue:3988"},
                                                           {"host.name", "stringValue:node-1"}};
const std::map<std::string, std::string> kCurlResource = {{"service.name", "stringValue:curl"},
                                                          {"process.pid", "intValue:4130"},
                                                          {"host.name", "stringValue:node-1"}};

void ExpectScope(const Json& scope) {
  EXPECT_EQ(scope.value("name", ""), "loupe");
  EXPECT_EQ(scope.value("version", ""), LOUPE_VERSION);
}

// The known spans: nginx server span, curl client span (child of it), and a
// second nginx span with status OK.
std::vector<Span> KnownSpans() {
  auto nginx = otlp_samples::ProcessResource("nginx", 3988);
  auto curl = otlp_samples::ProcessResource("curl", 4130);
  Span ok = otlp_samples::ServerSpan(nginx);
  ok.span_id = {0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22};
  ok.name = "GET /healthz";
  ok.status = StatusCode::kOk;
  ok.attributes = Attributes();
  ok.attributes.Set("http.request.method", "GET");
  return {otlp_samples::ServerSpan(nginx), otlp_samples::ClientSpan(curl), ok};
}

void ExpectKnownSpans(const Json& request, Generation g) {
  ASSERT_TRUE(request.contains("resourceSpans")) << request.dump();
  const Json& resources = request["resourceSpans"];
  ASSERT_EQ(resources.size(), 2u) << request.dump();

  // nginx: two spans under one resource.
  EXPECT_EQ(Typed(resources[0]["resource"]["attributes"]), kNginxResource);
  ASSERT_EQ(resources[0][g.scope_spans()].size(), 1u);
  const Json& nginx_scope = resources[0][g.scope_spans()][0];
  ExpectScope(nginx_scope[g.scope()]);
  ASSERT_EQ(nginx_scope["spans"].size(), 2u);

  const Json& server = nginx_scope["spans"][0];
  EXPECT_EQ(server["traceId"], "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(server["spanId"], "0112233445566778");
  EXPECT_FALSE(server.contains("parentSpanId")) << "a root span has an empty parent";
  EXPECT_EQ(server["name"], "GET /api/items/{id}");
  EXPECT_EQ(server["kind"], "SPAN_KIND_SERVER");
  // Decimal strings: exact, even above 2^53.
  EXPECT_EQ(server["startTimeUnixNano"], "1795293080123456789");
  EXPECT_EQ(server["endTimeUnixNano"], "1795293080124691356");
  EXPECT_EQ(Typed(server["attributes"]),
            (std::map<std::string, std::string>{
                {"http.request.method", "stringValue:GET"},
                {"url.path", "stringValue:/api/items/42"},
                {"http.route", "stringValue:/api/items/{id}"},
                {"http.response.status_code", "intValue:200"},
                {"http.response.body.size", "intValue:-1"},
                {"loupe.ratio", "doubleValue:0.25"},
                {"loupe.truncated", "boolValue:true"},
                {"loupe.complete", "boolValue:false"},
                {"user_agent.original", "stringValue:curl/7.88 \xc3\xa9t\xc3\xa9"}}));
  EXPECT_FALSE(server.contains("status")) << "UNSET is sent as no status";
  EXPECT_FALSE(server.contains("droppedAttributesCount"));

  const Json& healthz = nginx_scope["spans"][1];
  EXPECT_EQ(healthz["spanId"], "9988776655443322");
  EXPECT_EQ(healthz["name"], "GET /healthz");
  EXPECT_EQ(healthz["status"]["code"], "STATUS_CODE_OK");
  EXPECT_FALSE(healthz["status"].contains("message"));
  EXPECT_EQ(Typed(healthz["attributes"]),
            (std::map<std::string, std::string>{{"http.request.method", "stringValue:GET"}}));

  // curl: the client span.
  EXPECT_EQ(Typed(resources[1]["resource"]["attributes"]), kCurlResource);
  ASSERT_EQ(resources[1][g.scope_spans()].size(), 1u);
  const Json& curl_scope = resources[1][g.scope_spans()][0];
  ExpectScope(curl_scope[g.scope()]);
  ASSERT_EQ(curl_scope["spans"].size(), 1u);
  const Json& client = curl_scope["spans"][0];
  EXPECT_EQ(client["traceId"], "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
  EXPECT_EQ(client["spanId"], "f1e2d3c4b5a69788");
  EXPECT_EQ(client["parentSpanId"], "0112233445566778");
  EXPECT_EQ(client["name"], "POST");
  EXPECT_EQ(client["kind"], "SPAN_KIND_CLIENT");
  EXPECT_EQ(client["startTimeUnixNano"], "1795293080123500000");
  EXPECT_EQ(client["endTimeUnixNano"], "1795293080124000001");
  EXPECT_EQ(client["status"]["code"], "STATUS_CODE_ERROR");
  EXPECT_EQ(client["status"]["message"], "HTTP 503");
  EXPECT_EQ(Typed(client["attributes"]),
            (std::map<std::string, std::string>{{"http.request.method", "stringValue:POST"},
                                                {"server.address", "stringValue:10.0.0.7"},
                                                {"server.port", "intValue:8080"},
                                                {"http.response.status_code", "intValue:503"}}));
}

std::vector<std::string> Strings(const Json& array) {
  std::vector<std::string> out;
  for (const Json& v : array) out.push_back(v.get<std::string>());
  return out;
}

std::vector<double> Doubles(const Json& array) {
  std::vector<double> out;
  for (const Json& v : array) out.push_back(v.get<double>());
  return out;
}

// One histogram point as decoded. Attributes, min and max are checked where
// the schema declares them (current generation); the legacy generation's
// unknown fields are checked by ExpectLegacyUnknownFields.
void ExpectPoint(const Json& point, Generation g, const std::map<std::string, std::string>& attrs,
                 const std::string& count, std::optional<double> sum,
                 const std::vector<std::string>& buckets, const std::vector<double>& bounds,
                 std::optional<double> min, std::optional<double> max) {
  EXPECT_EQ(point["startTimeUnixNano"], "1795293080000000001");
  EXPECT_EQ(point["timeUnixNano"], "1795293140000000000");
  if (count == "0") {
    EXPECT_FALSE(point.contains("count"));  // proto3 zero: not on the wire
  } else {
    EXPECT_EQ(point["count"], count);
  }
  if (sum) {
    EXPECT_EQ(point["sum"].get<double>(), *sum);
  } else {
    EXPECT_FALSE(point.contains("sum"));
  }
  EXPECT_EQ(Strings(point["bucketCounts"]), buckets);
  EXPECT_EQ(Doubles(point["explicitBounds"]), bounds);
  EXPECT_FALSE(point.contains("flags"));
  if (!g.current) return;
  EXPECT_EQ(Typed(point["attributes"]), attrs);
  if (min) {
    EXPECT_EQ(point["min"].get<double>(), *min);
  } else {
    EXPECT_FALSE(point.contains("min"));
  }
  if (max) {
    EXPECT_EQ(point["max"].get<double>(), *max);
  } else {
    EXPECT_FALSE(point.contains("max"));
  }
}

void ExpectKnownSnapshot(const Json& request, Generation g, Temporality temporality) {
  ASSERT_TRUE(request.contains("resourceMetrics")) << request.dump();
  const Json& resources = request["resourceMetrics"];
  ASSERT_EQ(resources.size(), 2u) << request.dump();
  const std::string temporality_name = temporality == Temporality::kDelta
                                           ? "AGGREGATION_TEMPORALITY_DELTA"
                                           : "AGGREGATION_TEMPORALITY_CUMULATIVE";

  EXPECT_EQ(Typed(resources[0]["resource"]["attributes"]), kNginxResource);
  ASSERT_EQ(resources[0][g.scope_metrics()].size(), 1u);
  const Json& nginx_scope = resources[0][g.scope_metrics()][0];
  ExpectScope(nginx_scope[g.scope()]);
  const Json& metrics = nginx_scope["metrics"];
  ASSERT_EQ(metrics.size(), 2u);

  EXPECT_EQ(metrics[0]["name"], "http.server.request.duration");
  EXPECT_EQ(metrics[0]["description"], "Duration of HTTP server requests.");
  EXPECT_EQ(metrics[0]["unit"], "s");
  EXPECT_EQ(metrics[0]["data"], g.histogram()) << "the oneof arm of Metric.data";
  const Json& duration = metrics[0][g.histogram()];
  EXPECT_EQ(duration["aggregationTemporality"], temporality_name);
  ASSERT_EQ(duration["dataPoints"].size(), 2u);
  const std::vector<double> duration_bounds = {0.005, 0.01, 0.025, 0.05, 0.1};
  ExpectPoint(duration["dataPoints"][0], g,
              {{"http.request.method", "stringValue:GET"},
               {"http.route", "stringValue:/api/items/{id}"},
               {"http.response.status_code", "intValue:200"}},
              "7", 0.0625, {"3", "2", "1", "1", "0", "0"}, duration_bounds, 0.001, 0.03125);
  ExpectPoint(
      duration["dataPoints"][1], g,
      {{"http.request.method", "stringValue:POST"}, {"http.response.status_code", "intValue:500"}},
      "1", 12.5, {"0", "0", "0", "0", "0", "1"}, duration_bounds, 12.5, 12.5);

  EXPECT_EQ(metrics[1]["name"], "http.server.response.body.size");
  EXPECT_EQ(metrics[1]["unit"], "By");
  const Json& body = metrics[1][g.histogram()];
  EXPECT_EQ(body["aggregationTemporality"], temporality_name);
  ASSERT_EQ(body["dataPoints"].size(), 1u);
  // An empty point: sum 0 is on the wire (sum has explicit presence), min
  // and max are not.
  ExpectPoint(body["dataPoints"][0], g, {{"http.request.method", "stringValue:GET"}}, "0", 0.0,
              {"0", "0", "0"}, {100.0, 1000.0}, std::nullopt, std::nullopt);

  EXPECT_EQ(Typed(resources[1]["resource"]["attributes"]), kCurlResource);
  ASSERT_EQ(resources[1][g.scope_metrics()].size(), 1u);
  const Json& curl_scope = resources[1][g.scope_metrics()][0];
  ExpectScope(curl_scope[g.scope()]);
  ASSERT_EQ(curl_scope["metrics"].size(), 1u);
  const Json& client = curl_scope["metrics"][0];
  EXPECT_EQ(client["name"], "http.client.request.duration");
  EXPECT_EQ(client["description"], "Duration of HTTP client requests.");
  EXPECT_EQ(client[g.histogram()]["aggregationTemporality"], temporality_name);
  ASSERT_EQ(client[g.histogram()]["dataPoints"].size(), 1u);
  ExpectPoint(client[g.histogram()]["dataPoints"][0], g,
              {{"http.request.method", "stringValue:POST"},
               {"server.address", "stringValue:10.0.0.7"},
               {"server.port", "intValue:8080"}},
              "2", 0.5, {"0", "0", "0", "0", "0", "2"}, duration_bounds, 0.125, 0.375);
}

// The legacy schema predates HistogramDataPoint.attributes (9), min (11) and
// max (12): they must be exactly what it does not know, at those numbers
// with the right wire types and values.
void ExpectLegacyUnknownFields(const Json& unknown) {
  std::multiset<std::string> seen;
  std::map<std::string, double> doubles;
  for (const Json& f : unknown) {
    const std::string key =
        f["path"].get<std::string>() + "#" + std::to_string(f["field"].get<int>());
    seen.insert(key);
    if (f["field"] == 11 || f["field"] == 12) {
      EXPECT_EQ(f["wireType"], 1) << key;  // 64-bit
      doubles[key] = f["double"].get<double>();
    } else {
      EXPECT_EQ(f["field"], 9) << key;
      EXPECT_EQ(f["wireType"], 2) << key;  // length-delimited KeyValue
    }
  }
  const std::string nginx_duration =
      ".resourceMetrics[0].instrumentationLibraryMetrics[0].metrics[0].doubleHistogram.dataPoints";
  const std::string nginx_body =
      ".resourceMetrics[0].instrumentationLibraryMetrics[0].metrics[1].doubleHistogram.dataPoints";
  const std::string curl_duration =
      ".resourceMetrics[1].instrumentationLibraryMetrics[0].metrics[0].doubleHistogram.dataPoints";
  const std::multiset<std::string> expected = {
      nginx_duration + "[0]#9",  nginx_duration + "[0]#9",  nginx_duration + "[0]#9",
      nginx_duration + "[0]#11", nginx_duration + "[0]#12", nginx_duration + "[1]#9",
      nginx_duration + "[1]#9",  nginx_duration + "[1]#11", nginx_duration + "[1]#12",
      nginx_body + "[0]#9",  // the empty point: no min/max
      curl_duration + "[0]#9",   curl_duration + "[0]#9",   curl_duration + "[0]#9",
      curl_duration + "[0]#11",  curl_duration + "[0]#12"};
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(doubles[nginx_duration + "[0]#11"], 0.001);
  EXPECT_EQ(doubles[nginx_duration + "[0]#12"], 0.03125);
  EXPECT_EQ(doubles[nginx_duration + "[1]#11"], 12.5);
  EXPECT_EQ(doubles[curl_duration + "[0]#11"], 0.125);
  EXPECT_EQ(doubles[curl_duration + "[0]#12"], 0.375);
}

// The service graph counters (otlp_samples::ServiceGraphSnapshot). The
// current generation decodes them as Sum with NumberDataPoint.as_double; the
// legacy one reads Metric field 7 as DoubleSum, whose DoubleDataPoint.value
// (4) is as_double's number, so the counts survive there too, and the only
// fields it does not know are the points' attributes (7).
void ExpectServiceGraphSums(const Json& entry, Generation g) {
  const Json& request = entry["request"];
  ASSERT_TRUE(request.contains("resourceMetrics")) << request.dump();
  ASSERT_EQ(request["resourceMetrics"].size(), 1u) << request.dump();
  const Json& agent = request["resourceMetrics"][0];
  EXPECT_EQ(Typed(agent["resource"]["attributes"]),
            (std::map<std::string, std::string>{{"service.name", "stringValue:loupe"},
                                                {"host.name", "stringValue:node-1"}}));
  ASSERT_EQ(agent[g.scope_metrics()].size(), 1u);
  const Json& scope = agent[g.scope_metrics()][0];
  ExpectScope(scope[g.scope()]);
  const Json& metrics = scope["metrics"];
  ASSERT_EQ(metrics.size(), 2u);
  const char* arm = g.current ? "sum" : "doubleSum";
  const char* value = g.current ? "asDouble" : "value";
  struct Want {
    const char* name;
    double shop_db;
    double web_shop;
  };
  const Want wants[] = {{"traces_service_graph_request_total", 9007199254740991.0, 1},
                        {"traces_service_graph_request_failed_total", 2, 0}};
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(wants[i].name);
    const Json& metric = metrics[i];
    EXPECT_EQ(metric["name"], wants[i].name);
    EXPECT_EQ(metric["unit"], "{request}");
    EXPECT_EQ(metric["data"], arm) << "the oneof arm of Metric.data";
    EXPECT_EQ(metric[arm]["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE");
    EXPECT_EQ(metric[arm]["isMonotonic"], true);
    const Json& points = metric[arm]["dataPoints"];
    ASSERT_EQ(points.size(), 2u);
    const double values[] = {wants[i].shop_db, wants[i].web_shop};
    for (size_t k = 0; k < 2; ++k) {
      EXPECT_EQ(points[k]["startTimeUnixNano"], "1795293080000000001");
      EXPECT_EQ(points[k]["timeUnixNano"], "1795293140000000000");
      EXPECT_EQ(points[k].value(value, -1.0), values[k]) << points[k].dump();
      if (g.current) {
        EXPECT_EQ(points[k]["value"], "asDouble") << "the oneof arm of the value";
      }
    }
    if (g.current) {
      EXPECT_EQ(Typed(points[0]["attributes"]),
                (std::map<std::string, std::string>{{"client", "stringValue:shop"},
                                                    {"server", "stringValue:db"}}));
      EXPECT_EQ(Typed(points[1]["attributes"]),
                (std::map<std::string, std::string>{{"client", "stringValue:web"},
                                                    {"server", "stringValue:shop"}}));
    }
  }
  if (g.current) {
    EXPECT_EQ(entry["unknownFields"], Json::array()) << entry["unknownFields"].dump();
    return;
  }
  std::multiset<std::string> seen;
  for (const Json& f : entry["unknownFields"]) {
    EXPECT_EQ(f["field"], 7) << f.dump();
    EXPECT_EQ(f["wireType"], 2) << f.dump();  // length-delimited KeyValue
    seen.insert(f["path"].get<std::string>());
  }
  std::multiset<std::string> expected;
  for (int m = 0; m < 2; ++m) {
    for (int k = 0; k < 2; ++k) {
      const std::string path = ".resourceMetrics[0].instrumentationLibraryMetrics[0].metrics[" +
                               std::to_string(m) + "].doubleSum.dataPoints[" +
                               std::to_string(k) + "]";
      expected.insert(path);  // client
      expected.insert(path);  // server
    }
  }
  EXPECT_EQ(seen, expected);
}

// ---- the wire-compatibility matrix -------------------------------------------

enum class Transport { kGrpc, kGrpcGzip, kHttp, kHttpGzip };

struct WireCase {
  const char* schema;
  Transport transport;
};

void PrintTo(const WireCase& c, std::ostream* os) {
  static constexpr const char* kTransports[] = {"grpc", "grpc+gzip", "http", "http+gzip"};
  *os << c.schema << " over " << kTransports[static_cast<int>(c.transport)];
}

std::string CaseName(const ::testing::TestParamInfo<WireCase>& info) {
  std::string name = info.param.schema == std::string(kCurrentSchema) ? "Current" : "Legacy";
  switch (info.param.transport) {
    case Transport::kGrpc:
      return name + "Grpc";
    case Transport::kGrpcGzip:
      return name + "GrpcGzip";
    case Transport::kHttp:
      return name + "Http";
    case Transport::kHttpGzip:
      return name + "HttpGzip";
  }
  return name;
}

class OtlpWireTest : public ::testing::TestWithParam<WireCase> {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (const char* schema : {kCurrentSchema, kLegacySchema}) {
      std::string error;
      auto receiver = Receiver::Start({"--protos", schema}, &error);
      if (!receiver) {
        start_error_ = error;
        return;
      }
      receivers_[schema] = std::move(receiver);
    }
  }
  static void TearDownTestSuite() { receivers_.clear(); }

  void SetUp() override { ASSERT_EQ(start_error_, "") << start_error_; }

  Receiver& receiver() { return *receivers_.at(GetParam().schema); }
  Generation generation() const {
    return Generation{GetParam().schema == std::string(kCurrentSchema)};
  }

  // Sends one request body and returns the receiver's record of it, after
  // checking that the transport succeeded and the body arrived whole.
  Json Send(const std::string& signal, const std::string& body) {
    const size_t before = receiver().Requests().size();
    const std::string method = signal == "traces"    ? kTraceMethod
                               : signal == "metrics" ? kMetricsMethod
                                                     : kLogsMethod;
    const std::string path = "/v1/" + signal;
    const Transport t = GetParam().transport;
    if (t == Transport::kGrpc || t == Transport::kGrpcGzip) {
      const GrpcResult r =
          GrpcExport(receiver().grpc_port(), method, body, t == Transport::kGrpcGzip);
      EXPECT_EQ(r.code, grpc::StatusCode::OK) << r.message;
    } else {
      const HttpResult r = HttpPost(receiver().http_port(), path, body, t == Transport::kHttpGzip);
      EXPECT_EQ(r.curl, CURLE_OK) << curl_easy_strerror(r.curl);
      EXPECT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(r.header("content-type"), "application/x-protobuf");
    }
    Json entry = receiver().Last(before + 1);
    EXPECT_EQ(entry["outcome"], "ok") << entry.dump();
    EXPECT_EQ(entry["signal"], signal);
    EXPECT_EQ(entry["schema"], GetParam().schema);
    EXPECT_FALSE(entry.contains("decodeError")) << entry.dump();
    // The decompressed body is byte for byte the size we encoded.
    EXPECT_EQ(entry["bodyBytes"], body.size());
    if (t == Transport::kHttp || t == Transport::kHttpGzip) {
      EXPECT_EQ(entry["transport"], "http");
      EXPECT_EQ(entry["path"], path);
      EXPECT_EQ(entry["headers"]["content-type"], "application/x-protobuf");
      if (t == Transport::kHttpGzip) {
        EXPECT_EQ(entry["contentEncoding"], "gzip");
        EXPECT_NE(entry["wireBytes"], body.size());
      } else {
        EXPECT_EQ(entry["contentEncoding"], nullptr);
        EXPECT_EQ(entry["wireBytes"], body.size());
      }
    } else {
      EXPECT_EQ(entry["transport"], "grpc");
      // The method path the receiver took from the upstream service
      // definition is the one we called.
      EXPECT_EQ(entry["path"], method);
      EXPECT_THAT(entry["headers"].value("user-agent", ""), HasSubstr("grpc-c++"));
      // grpc-js decompresses a gzip message itself and does not show the
      // grpc-encoding header to the handler, so the gzip case shows here
      // only as a body that decoded to the same values.
    }
    return entry;
  }

  static inline std::map<std::string, std::unique_ptr<Receiver>> receivers_;
  static inline std::string start_error_;
};

TEST_P(OtlpWireTest, Traces) {
  const std::vector<Span> spans = KnownSpans();
  const Json entry = Send("traces", EncodeTraceRequest(spans));
  ExpectKnownSpans(entry["request"], generation());
  // Both generations declare every trace field Loupe writes.
  EXPECT_EQ(entry["unknownFields"], Json::array()) << entry["unknownFields"].dump();
}

// An OOM kill's log record, as the agent sends it: every field Loupe writes,
// decoded by both generations of upstream files (the older one calls the
// scope level InstrumentationLibraryLogs, same field numbers). event_name
// (field 12) is newer than both: it must arrive as that unknown field.
TEST_P(OtlpWireTest, Logs) {
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "orders");
  LogRecord record;
  record.time_unix_ns = 1'700'000'000'000'000'123ull;
  record.observed_time_unix_ns = 1'700'000'000'500'000'000ull;
  record.severity = Severity::kWarn;
  record.severity_text = "WARN";
  record.event_name = "loupe.oom_kill";
  record.body = "OOMKILL java[42] cgroup /kubepods/x";
  record.attributes.Set("process.pid", int64_t{42});
  record.attributes.Set("loupe.oom.kind", "cgroup");
  AttributeList& trend = record.lists.emplace_back();
  trend.key = "loupe.oom.memory_trend";
  trend.items.emplace_back().Set("usage_bytes", int64_t{1} << 30);
  record.resource = resource;
  const Json entry = Send("logs", EncodeLogsRequest(std::span<const LogRecord>(&record, 1)));
  const Json& rl = entry["request"]["resourceLogs"][0];
  EXPECT_EQ(rl["resource"]["attributes"][0]["key"], "service.name");
  const bool current = generation().current;
  const Json& scope = rl[current ? "scopeLogs" : "instrumentationLibraryLogs"][0];
  EXPECT_EQ(scope[current ? "scope" : "instrumentationLibrary"]["name"], "loupe");
  const Json& out = scope[current ? "logRecords" : "logs"][0];
  EXPECT_EQ(out["timeUnixNano"], "1700000000000000123");
  if (current) {
    EXPECT_EQ(out["observedTimeUnixNano"], "1700000000500000000");
  }
  EXPECT_EQ(out["severityNumber"], "SEVERITY_NUMBER_WARN");
  EXPECT_EQ(out["severityText"], "WARN");
  EXPECT_EQ(out["body"]["stringValue"], record.body);
  ASSERT_EQ(out["attributes"].size(), 3u) << out.dump();
  EXPECT_EQ(out["attributes"][0]["value"]["intValue"], "42");
  EXPECT_EQ(out["attributes"][1]["value"]["stringValue"], "cgroup");
  EXPECT_EQ(out["attributes"][2]["value"]["arrayValue"]["values"][0]["kvlistValue"]["values"][0]
               ["value"]["intValue"],
            "1073741824");
  bool event_name_seen = false;
  for (const Json& f : entry["unknownFields"]) {
    if (f["field"] == 12) {
      event_name_seen = true;
      EXPECT_EQ(f["hex"], "6c6f7570652e6f6f6d5f6b696c6c");  // "loupe.oom_kill"
    } else if (!current) {
      // The older files lack observed_time_unix_nano (11) too.
      EXPECT_EQ(f["field"], 11) << f.dump();
    } else {
      ADD_FAILURE() << "unexpected unknown field " << f.dump();
    }
  }
  EXPECT_TRUE(event_name_seen) << entry["unknownFields"].dump();
}

TEST_P(OtlpWireTest, CumulativeMetrics) {
  const Json entry =
      Send("metrics", EncodeMetricsRequest(otlp_samples::Snapshot(Temporality::kCumulative)));
  ExpectKnownSnapshot(entry["request"], generation(), Temporality::kCumulative);
  if (generation().current) {
    EXPECT_EQ(entry["unknownFields"], Json::array()) << entry["unknownFields"].dump();
  } else {
    ExpectLegacyUnknownFields(entry["unknownFields"]);
  }
}

TEST_P(OtlpWireTest, DeltaMetrics) {
  const Json entry =
      Send("metrics", EncodeMetricsRequest(otlp_samples::Snapshot(Temporality::kDelta)));
  ExpectKnownSnapshot(entry["request"], generation(), Temporality::kDelta);
}

TEST_P(OtlpWireTest, SumMetrics) {
  const Json entry = Send("metrics", EncodeMetricsRequest(otlp_samples::ServiceGraphSnapshot(
                                         Temporality::kCumulative)));
  ExpectServiceGraphSums(entry, generation());
}

TEST_P(OtlpWireTest, EmptyRequests) {
  // Zero-byte bodies are valid empty requests and must be accepted.
  const Json traces = Send("traces", EncodeTraceRequest({}));
  EXPECT_EQ(traces["request"], Json::object());
  const Json metrics = Send("metrics", EncodeMetricsRequest(MetricsSnapshot{}));
  EXPECT_EQ(metrics["request"], Json::object());
}

INSTANTIATE_TEST_SUITE_P(UpstreamSchemas, OtlpWireTest,
                         ::testing::Values(WireCase{kCurrentSchema, Transport::kGrpc},
                                           WireCase{kCurrentSchema, Transport::kGrpcGzip},
                                           WireCase{kCurrentSchema, Transport::kHttp},
                                           WireCase{kCurrentSchema, Transport::kHttpGzip},
                                           WireCase{kLegacySchema, Transport::kGrpc},
                                           WireCase{kLegacySchema, Transport::kGrpcGzip},
                                           WireCase{kLegacySchema, Transport::kHttp},
                                           WireCase{kLegacySchema, Transport::kHttpGzip}),
                         CaseName);

// ---- the receiver's fault modes ---------------------------------------------
// The transport and retry tests lean on these; here they are checked against
// the same minimal senders so a broken fault mode shows up as such.

using UnknownFieldSet = ::google::protobuf::UnknownFieldSet;

// google.rpc.Status{code 1, message 2, details 3: Any{type_url 1, value 2}}
// and RetryInfo{retry_delay 1: Duration{seconds 1}}, read without a schema.
struct RpcStatus {
  uint64_t code = 0;
  std::string message;
  std::optional<uint64_t> retry_delay_seconds;
};

RpcStatus ParseRpcStatus(const std::string& bytes) {
  RpcStatus out;
  UnknownFieldSet status;
  EXPECT_TRUE(status.ParseFromString(bytes));
  for (int i = 0; i < status.field_count(); ++i) {
    const auto& f = status.field(i);
    if (f.number() == 1) out.code = f.varint();
    if (f.number() == 2) out.message = f.length_delimited();
    if (f.number() != 3) continue;
    UnknownFieldSet any;
    EXPECT_TRUE(any.ParseFromString(f.length_delimited()));
    std::string type_url, value;
    for (int j = 0; j < any.field_count(); ++j) {
      if (any.field(j).number() == 1) type_url = any.field(j).length_delimited();
      if (any.field(j).number() == 2) value = any.field(j).length_delimited();
    }
    if (type_url != "type.googleapis.com/google.rpc.RetryInfo") continue;
    UnknownFieldSet retry_info;
    EXPECT_TRUE(retry_info.ParseFromString(value));
    for (int j = 0; j < retry_info.field_count(); ++j) {
      if (retry_info.field(j).number() != 1) continue;
      UnknownFieldSet duration;
      EXPECT_TRUE(duration.ParseFromString(retry_info.field(j).length_delimited()));
      out.retry_delay_seconds = 0;
      for (int k = 0; k < duration.field_count(); ++k) {
        if (duration.field(k).number() == 1) out.retry_delay_seconds = duration.field(k).varint();
      }
    }
  }
  return out;
}

class ReceiverFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string error = ReceiverPrerequisites();
    ASSERT_EQ(error, "") << error;
    curl_global_init(CURL_GLOBAL_DEFAULT);
  }
  const std::string body_ = EncodeTraceRequest(KnownSpans());
};

TEST_F(ReceiverFaultTest, FailFirstWithRetryAfter) {
  std::string error;
  auto receiver = Receiver::Start(
      {"--fail-first", "2", "--fail-with-status", "503", "--retry-after", "7"}, &error);
  ASSERT_TRUE(receiver) << error;

  const HttpResult http_failed = HttpPost(receiver->http_port(), "/v1/traces", body_, false);
  EXPECT_EQ(http_failed.status, 503);
  EXPECT_EQ(http_failed.header("retry-after"), "7");
  EXPECT_EQ(http_failed.header("content-type"), "application/x-protobuf");
  EXPECT_EQ(ParseRpcStatus(http_failed.body).code, 14u);  // UNAVAILABLE
  EXPECT_EQ(receiver->Last(1)["outcome"], "failed");
  EXPECT_EQ(receiver->Last(1)["status"], 503);

  const GrpcResult grpc_failed = GrpcExport(receiver->grpc_port(), kTraceMethod, body_, false);
  EXPECT_EQ(grpc_failed.code, grpc::StatusCode::UNAVAILABLE);
  const RpcStatus details = ParseRpcStatus(grpc_failed.details);
  EXPECT_EQ(details.code, 14u);
  EXPECT_EQ(details.retry_delay_seconds, 7u);
  EXPECT_EQ(receiver->Last(2)["grpcCode"], 14);

  // Request 3 and later succeed, and the failed ones were still decoded.
  EXPECT_EQ(HttpPost(receiver->http_port(), "/v1/traces", body_, false).status, 200);
  EXPECT_EQ(GrpcExport(receiver->grpc_port(), kTraceMethod, body_, false).code,
            grpc::StatusCode::OK);
  const std::vector<Json> requests = receiver->Requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0]["request"], requests[2]["request"]);
  EXPECT_EQ(requests[2]["outcome"], "ok");
  EXPECT_EQ(requests[3]["outcome"], "ok");
}

TEST_F(ReceiverFaultTest, TooManyRequestsOverGrpcIsResourceExhausted) {
  std::string error;
  auto receiver = Receiver::Start({"--fail-with-status", "429", "--retry-after", "2"}, &error);
  ASSERT_TRUE(receiver) << error;
  const GrpcResult r = GrpcExport(receiver->grpc_port(), kTraceMethod, body_, false);
  EXPECT_EQ(r.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ParseRpcStatus(r.details).retry_delay_seconds, 2u);
  const HttpResult h = HttpPost(receiver->http_port(), "/v1/traces", body_, false);
  EXPECT_EQ(h.status, 429);
  EXPECT_EQ(h.header("retry-after"), "2");
}

TEST_F(ReceiverFaultTest, HangNeverAnswersTheFirstRequests) {
  std::string error;
  auto receiver = Receiver::Start({"--hang", "--fail-first", "2"}, &error);
  ASSERT_TRUE(receiver) << error;
  const auto start = std::chrono::steady_clock::now();
  const HttpResult http_hung = HttpPost(receiver->http_port(), "/v1/traces", body_, false, 500ms);
  EXPECT_EQ(http_hung.curl, CURLE_OPERATION_TIMEDOUT);
  const GrpcResult grpc_hung = GrpcExport(receiver->grpc_port(), kTraceMethod, body_, false, 500ms);
  EXPECT_EQ(grpc_hung.code, grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1s);
  const std::vector<Json> requests = receiver->Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0]["outcome"], "hung");
  EXPECT_EQ(requests[1]["outcome"], "hung");
  // Past the first two, answers come again.
  EXPECT_EQ(HttpPost(receiver->http_port(), "/v1/traces", body_, false, 5s).status, 200);
}

TEST_F(ReceiverFaultTest, PartialSuccessIsReadableWithOurResponseMessage) {
  std::string error;
  auto receiver = Receiver::Start({"--partial-success", "3"}, &error);
  ASSERT_TRUE(receiver) << error;
  const GrpcResult r = GrpcExport(receiver->grpc_port(), kTraceMethod, body_, false);
  ASSERT_EQ(r.code, grpc::StatusCode::OK);
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse response;
  ASSERT_TRUE(response.ParseFromString(r.response));
  EXPECT_EQ(response.partial_success().rejected_spans(), 3);
  EXPECT_EQ(response.partial_success().error_message(), "rejected by test receiver");
  const HttpResult h = HttpPost(receiver->http_port(), "/v1/traces", body_, true);
  ASSERT_EQ(h.status, 200);
  ASSERT_TRUE(response.ParseFromString(h.body));
  EXPECT_EQ(response.partial_success().rejected_spans(), 3);
}

TEST_F(ReceiverFaultTest, RejectsWhatIsNotOtlpProtobuf) {
  std::string error;
  auto receiver = Receiver::Start({}, &error);
  ASSERT_TRUE(receiver) << error;
  const HttpResult garbage =
      HttpPost(receiver->http_port(), "/v1/traces", std::string("\xff\xff\xff", 3), false);
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(receiver->Last(1)["outcome"], "rejected");
  EXPECT_FALSE(receiver->Last(1).value("decodeError", std::string()).empty());
  const GrpcResult grpc_garbage =
      GrpcExport(receiver->grpc_port(), kTraceMethod, std::string("\xff\xff\xff", 3), false);
  EXPECT_EQ(grpc_garbage.code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(HttpPost(receiver->http_port(), "/v1/profiles", body_, false).status, 404);
}

}  // namespace
}  // namespace loupe::testing
