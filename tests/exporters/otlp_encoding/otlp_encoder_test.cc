// EncodeTraceRequest / EncodeMetricsRequest: the bytes are parsed back with
// the generated messages and every field Loupe sets is checked; a separate
// test reads the same bytes without any schema (UnknownFieldSet) to pin the
// field numbers and wire types to the OTLP specification, so a mistake in
// our hand-written .proto files cannot hide behind a symmetric round trip.
#include "exporters/otlp/otlp_encoder.h"

#include <gmock/gmock.h>
#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "agent/version.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/exporters/otlp_encoding/otlp_samples.h"

namespace loupe {
namespace {

namespace common_pb = ::opentelemetry::proto::common::v1;
namespace trace_pb = ::opentelemetry::proto::trace::v1;
namespace metrics_pb = ::opentelemetry::proto::metrics::v1;
using ::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
using ::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using UnknownField = ::google::protobuf::UnknownField;
using UnknownFieldSet = ::google::protobuf::UnknownFieldSet;

ExportTraceServiceRequest ParseTraces(const std::string& bytes) {
  ExportTraceServiceRequest request;
  EXPECT_TRUE(request.ParseFromString(bytes));
  return request;
}

ExportMetricsServiceRequest ParseMetrics(const std::string& bytes) {
  ExportMetricsServiceRequest request;
  EXPECT_TRUE(request.ParseFromString(bytes));
  return request;
}

// Attributes as "key" -> "type:value", so one comparison checks both.
std::map<std::string, std::string> Typed(
    const google::protobuf::RepeatedPtrField<common_pb::KeyValue>& attributes) {
  std::map<std::string, std::string> out;
  for (const common_pb::KeyValue& kv : attributes) {
    const common_pb::AnyValue& v = kv.value();
    std::string typed;
    switch (v.value_case()) {
      case common_pb::AnyValue::kStringValue:
        typed = "string:" + v.string_value();
        break;
      case common_pb::AnyValue::kIntValue:
        typed = "int:" + std::to_string(v.int_value());
        break;
      case common_pb::AnyValue::kDoubleValue:
        typed = "double:" + std::to_string(v.double_value());
        break;
      case common_pb::AnyValue::kBoolValue:
        typed = std::string("bool:") + (v.bool_value() ? "true" : "false");
        break;
      default:
        typed = "other";
    }
    EXPECT_TRUE(out.emplace(kv.key(), typed).second) << "duplicate key " << kv.key();
  }
  return out;
}

std::vector<std::string> Keys(
    const google::protobuf::RepeatedPtrField<common_pb::KeyValue>& attributes) {
  std::vector<std::string> keys;
  for (const common_pb::KeyValue& kv : attributes) keys.push_back(kv.key());
  return keys;
}

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

TEST(EncodeTraceRequestTest, NoSpansIsAnEmptyRequest) {
  const std::string bytes = EncodeTraceRequest({});
  // The empty message encodes as zero bytes; it is still a valid request.
  EXPECT_EQ(bytes, "");
  EXPECT_EQ(ParseTraces(bytes).resource_spans_size(), 0);
}

TEST(EncodeTraceRequestTest, ServerSpanEveryField) {
  const std::vector<Span> spans = {
      otlp_samples::ServerSpan(otlp_samples::ProcessResource("nginx", 3988))};
  const ExportTraceServiceRequest request = ParseTraces(EncodeTraceRequest(spans));

  ASSERT_EQ(request.resource_spans_size(), 1);
  const trace_pb::ResourceSpans& rs = request.resource_spans(0);
  EXPECT_EQ(Typed(rs.resource().attributes()),
            (std::map<std::string, std::string>{{"service.name", "string:nginx"},
                                                {"process.pid", "int:3988"},
                                                {"host.name", "string:node-1"}}));
  EXPECT_EQ(rs.resource().dropped_attributes_count(), 0u);
  EXPECT_EQ(rs.schema_url(), "");
  ASSERT_EQ(rs.scope_spans_size(), 1);
  const trace_pb::ScopeSpans& ss = rs.scope_spans(0);
  EXPECT_EQ(ss.scope().name(), "loupe");
  EXPECT_EQ(ss.scope().version(), LOUPE_VERSION);
  EXPECT_FALSE(ss.scope().version().empty());
  ASSERT_EQ(ss.spans_size(), 1);

  const trace_pb::Span& span = ss.spans(0);
  EXPECT_EQ(span.trace_id(), Bytes({0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9,
                                    0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf}));
  EXPECT_EQ(span.span_id(), Bytes({0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78}));
  // A root span: parent_span_id empty, not eight zero bytes.
  EXPECT_EQ(span.parent_span_id(), "");
  EXPECT_EQ(span.trace_state(), "");
  EXPECT_EQ(span.name(), "GET /api/items/{id}");
  // SPAN_KIND_SERVER is 2 in the specification.
  EXPECT_EQ(span.kind(), trace_pb::Span::SPAN_KIND_SERVER);
  EXPECT_EQ(static_cast<int>(span.kind()), 2);
  EXPECT_EQ(span.start_time_unix_nano(), 1'795'293'080'123'456'789ull);
  EXPECT_EQ(span.end_time_unix_nano(), 1'795'293'080'124'691'356ull);
  EXPECT_EQ(Typed(span.attributes()),
            (std::map<std::string, std::string>{
                {"http.request.method", "string:GET"},
                {"url.path", "string:/api/items/42"},
                {"http.route", "string:/api/items/{id}"},
                {"http.response.status_code", "int:200"},
                {"http.response.body.size", "int:-1"},
                {"loupe.ratio", "double:0.250000"},
                {"loupe.truncated", "bool:true"},
                {"loupe.complete", "bool:false"},
                {"user_agent.original", "string:curl/7.88 \xc3\xa9t\xc3\xa9"}}));
  // Attribute order is the model's insertion order.
  EXPECT_THAT(Keys(span.attributes()),
              ElementsAre("http.request.method", "url.path", "http.route",
                          "http.response.status_code", "http.response.body.size", "loupe.ratio",
                          "loupe.truncated", "loupe.complete", "user_agent.original"));
  EXPECT_EQ(span.attributes(5).value().double_value(), 0.25);
  EXPECT_EQ(span.dropped_attributes_count(), 0u);
  // UNSET with no message: no Status at all, which means UNSET.
  EXPECT_FALSE(span.has_status());
}

TEST(EncodeTraceRequestTest, ClientSpanWithParentAndErrorStatus) {
  const std::vector<Span> spans = {
      otlp_samples::ClientSpan(otlp_samples::ProcessResource("curl", 4130))};
  const ExportTraceServiceRequest request = ParseTraces(EncodeTraceRequest(spans));
  ASSERT_EQ(request.resource_spans_size(), 1);
  ASSERT_EQ(request.resource_spans(0).scope_spans_size(), 1);
  ASSERT_EQ(request.resource_spans(0).scope_spans(0).spans_size(), 1);
  const trace_pb::Span& span = request.resource_spans(0).scope_spans(0).spans(0);
  EXPECT_EQ(span.span_id(), Bytes({0xf1, 0xe2, 0xd3, 0xc4, 0xb5, 0xa6, 0x97, 0x88}));
  EXPECT_EQ(span.parent_span_id(), Bytes({0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78}));
  EXPECT_EQ(static_cast<int>(span.kind()), 3);  // SPAN_KIND_CLIENT
  ASSERT_TRUE(span.has_status());
  EXPECT_EQ(static_cast<int>(span.status().code()), 2);  // STATUS_CODE_ERROR
  EXPECT_EQ(span.status().message(), "HTTP 503");
  EXPECT_EQ(Typed(span.attributes()),
            (std::map<std::string, std::string>{{"http.request.method", "string:POST"},
                                                {"server.address", "string:10.0.0.7"},
                                                {"server.port", "int:8080"},
                                                {"http.response.status_code", "int:503"}}));
}

TEST(EncodeTraceRequestTest, StatusOkAndUnsetWithMessage) {
  auto resource = otlp_samples::ProcessResource("nginx", 1);
  Span ok = otlp_samples::ServerSpan(resource);
  ok.status = StatusCode::kOk;
  Span unset_with_message = otlp_samples::ServerSpan(resource);
  unset_with_message.status_message = "kept";
  const ExportTraceServiceRequest request =
      ParseTraces(EncodeTraceRequest(std::vector<Span>{ok, unset_with_message}));
  ASSERT_EQ(request.resource_spans_size(), 1);
  const auto& spans = request.resource_spans(0).scope_spans(0).spans();
  ASSERT_EQ(spans.size(), 2);
  ASSERT_TRUE(spans[0].has_status());
  EXPECT_EQ(static_cast<int>(spans[0].status().code()), 1);  // STATUS_CODE_OK
  EXPECT_EQ(spans[0].status().message(), "");
  ASSERT_TRUE(spans[1].has_status());
  EXPECT_EQ(static_cast<int>(spans[1].status().code()), 0);  // STATUS_CODE_UNSET
  EXPECT_EQ(spans[1].status().message(), "kept");
}

TEST(EncodeTraceRequestTest, OneResourceSpansPerDistinctResourceInFirstSeenOrder) {
  auto nginx = otlp_samples::ProcessResource("nginx", 3988);
  auto curl = otlp_samples::ProcessResource("curl", 4130);
  // Another object with nginx's attributes in another order: the same
  // resource, since OTLP attributes are a map.
  auto nginx_again = std::make_shared<Resource>();
  nginx_again->attributes.Set("host.name", "node-1");
  nginx_again->attributes.Set("process.pid", int64_t{3988});
  nginx_again->attributes.Set("service.name", "nginx");
  // Same keys as nginx but another pid: a different resource.
  auto nginx_other_pid = otlp_samples::ProcessResource("nginx", 3989);

  std::vector<Span> spans;
  auto named = [](Span span, const char* name) {
    span.name = name;
    return span;
  };
  spans.push_back(named(otlp_samples::ServerSpan(nginx), "s1"));
  spans.push_back(named(otlp_samples::ClientSpan(curl), "c1"));
  spans.push_back(named(otlp_samples::ServerSpan(nginx_again), "s2"));
  spans.push_back(named(otlp_samples::ServerSpan(nullptr), "orphan"));
  spans.push_back(named(otlp_samples::ServerSpan(nginx_other_pid), "s3"));
  spans.push_back(named(otlp_samples::ClientSpan(curl), "c2"));
  spans.push_back(named(otlp_samples::ServerSpan(nginx), "s4"));

  const ExportTraceServiceRequest request = ParseTraces(EncodeTraceRequest(spans));
  ASSERT_EQ(request.resource_spans_size(), 4);
  auto names = [&](int i) {
    std::vector<std::string> out;
    EXPECT_EQ(request.resource_spans(i).scope_spans_size(), 1);
    for (const auto& s : request.resource_spans(i).scope_spans(0).spans()) out.push_back(s.name());
    return out;
  };
  auto pid = [&](int i) {
    for (const auto& kv : request.resource_spans(i).resource().attributes()) {
      if (kv.key() == "process.pid") return kv.value().int_value();
    }
    return int64_t{-1};
  };
  EXPECT_EQ(pid(0), 3988);
  EXPECT_THAT(names(0), ElementsAre("s1", "s2", "s4"));
  EXPECT_EQ(pid(1), 4130);
  EXPECT_THAT(names(1), ElementsAre("c1", "c2"));
  // No resource known: an empty Resource.
  EXPECT_THAT(request.resource_spans(2).resource().attributes(), IsEmpty());
  EXPECT_THAT(names(2), ElementsAre("orphan"));
  EXPECT_EQ(pid(3), 3989);
  EXPECT_THAT(names(3), ElementsAre("s3"));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(request.resource_spans(i).scope_spans(0).scope().name(), "loupe");
  }
}

TEST(EncodeMetricsRequestTest, EmptySnapshotIsAnEmptyRequest) {
  EXPECT_EQ(EncodeMetricsRequest(MetricsSnapshot{}), "");
  // Resources whose metrics have no points send nothing either.
  MetricsSnapshot idle;
  idle.resources.emplace_back();
  idle.resources[0].resource = otlp_samples::ProcessResource("nginx", 1);
  idle.resources[0].metrics.emplace_back();
  idle.resources[0].metrics[0].name = "http.server.request.duration";
  EXPECT_EQ(EncodeMetricsRequest(idle), "");
}

TEST(EncodeMetricsRequestTest, HistogramsEveryField) {
  const ExportMetricsServiceRequest request =
      ParseMetrics(EncodeMetricsRequest(otlp_samples::Snapshot(Temporality::kCumulative)));
  ASSERT_EQ(request.resource_metrics_size(), 2);

  const metrics_pb::ResourceMetrics& nginx = request.resource_metrics(0);
  EXPECT_EQ(Typed(nginx.resource().attributes()),
            (std::map<std::string, std::string>{{"service.name", "string:nginx"},
                                                {"process.pid", "int:3988"},
                                                {"host.name", "string:node-1"}}));
  ASSERT_EQ(nginx.scope_metrics_size(), 1);
  EXPECT_EQ(nginx.scope_metrics(0).scope().name(), "loupe");
  EXPECT_EQ(nginx.scope_metrics(0).scope().version(), LOUPE_VERSION);
  ASSERT_EQ(nginx.scope_metrics(0).metrics_size(), 2);

  const metrics_pb::Metric& duration = nginx.scope_metrics(0).metrics(0);
  EXPECT_EQ(duration.name(), "http.server.request.duration");
  EXPECT_EQ(duration.description(), "Duration of HTTP server requests.");
  EXPECT_EQ(duration.unit(), "s");
  ASSERT_TRUE(duration.has_histogram());
  // AGGREGATION_TEMPORALITY_CUMULATIVE is 2 in the specification.
  EXPECT_EQ(static_cast<int>(duration.histogram().aggregation_temporality()), 2);
  ASSERT_EQ(duration.histogram().data_points_size(), 2);
  const metrics_pb::HistogramDataPoint& ok = duration.histogram().data_points(0);
  EXPECT_EQ(Typed(ok.attributes()),
            (std::map<std::string, std::string>{{"http.request.method", "string:GET"},
                                                {"http.route", "string:/api/items/{id}"},
                                                {"http.response.status_code", "int:200"}}));
  EXPECT_EQ(ok.start_time_unix_nano(), 1'795'293'080'000'000'001ull);
  EXPECT_EQ(ok.time_unix_nano(), 1'795'293'140'000'000'000ull);
  EXPECT_EQ(ok.count(), 7u);
  ASSERT_TRUE(ok.has_sum());
  EXPECT_EQ(ok.sum(), 0.0625);
  EXPECT_THAT(ok.bucket_counts(), ElementsAre(3, 2, 1, 1, 0, 0));
  EXPECT_THAT(ok.explicit_bounds(), ElementsAre(0.005, 0.01, 0.025, 0.05, 0.1));
  ASSERT_TRUE(ok.has_min());
  ASSERT_TRUE(ok.has_max());
  EXPECT_EQ(ok.min(), 0.001);
  EXPECT_EQ(ok.max(), 0.03125);
  EXPECT_EQ(ok.flags(), 0u);
  const metrics_pb::HistogramDataPoint& slow = duration.histogram().data_points(1);
  EXPECT_EQ(slow.count(), 1u);
  EXPECT_EQ(slow.sum(), 12.5);
  EXPECT_THAT(slow.bucket_counts(), ElementsAre(0, 0, 0, 0, 0, 1));
  EXPECT_EQ(slow.min(), 12.5);
  EXPECT_EQ(slow.max(), 12.5);

  const metrics_pb::Metric& body = nginx.scope_metrics(0).metrics(1);
  EXPECT_EQ(body.name(), "http.server.response.body.size");
  EXPECT_EQ(body.unit(), "By");
  ASSERT_EQ(body.histogram().data_points_size(), 1);
  const metrics_pb::HistogramDataPoint& idle = body.histogram().data_points(0);
  EXPECT_EQ(idle.count(), 0u);
  EXPECT_THAT(idle.bucket_counts(), ElementsAre(0, 0, 0));
  EXPECT_THAT(idle.explicit_bounds(), ElementsAre(100.0, 1000.0));
  // Nothing counted: min and max are undefined and stay absent.
  EXPECT_FALSE(idle.has_min());
  EXPECT_FALSE(idle.has_max());

  const metrics_pb::ResourceMetrics& curl = request.resource_metrics(1);
  EXPECT_EQ(Typed(curl.resource().attributes()).at("service.name"), "string:curl");
  ASSERT_EQ(curl.scope_metrics_size(), 1);
  ASSERT_EQ(curl.scope_metrics(0).metrics_size(), 1);
  const metrics_pb::Metric& client = curl.scope_metrics(0).metrics(0);
  EXPECT_EQ(client.name(), "http.client.request.duration");
  ASSERT_EQ(client.histogram().data_points_size(), 1);
  const metrics_pb::HistogramDataPoint& call = client.histogram().data_points(0);
  EXPECT_EQ(Typed(call.attributes()),
            (std::map<std::string, std::string>{{"http.request.method", "string:POST"},
                                                {"server.address", "string:10.0.0.7"},
                                                {"server.port", "int:8080"}}));
  EXPECT_EQ(call.count(), 2u);
  EXPECT_EQ(call.sum(), 0.5);
  EXPECT_EQ(call.min(), 0.125);
  EXPECT_EQ(call.max(), 0.375);
}

TEST(EncodeMetricsRequestTest, UnknownMinMaxStayAbsent) {
  MetricsSnapshot snapshot = otlp_samples::Snapshot(Temporality::kDelta);
  snapshot.resources[0].metrics[0].points[0].has_min_max = false;
  const ExportMetricsServiceRequest request = ParseMetrics(EncodeMetricsRequest(snapshot));
  ASSERT_EQ(request.resource_metrics_size(), 2);
  const auto& points = request.resource_metrics(0).scope_metrics(0).metrics(0).histogram();
  ASSERT_EQ(points.data_points_size(), 2);
  EXPECT_EQ(points.data_points(0).count(), 7u);
  EXPECT_TRUE(points.data_points(0).has_sum());
  EXPECT_FALSE(points.data_points(0).has_min());
  EXPECT_FALSE(points.data_points(0).has_max());
  EXPECT_TRUE(points.data_points(1).has_min());
  EXPECT_EQ(points.data_points(1).max(), 12.5);
}

TEST(EncodeMetricsRequestTest, DeltaTemporality) {
  const ExportMetricsServiceRequest request =
      ParseMetrics(EncodeMetricsRequest(otlp_samples::Snapshot(Temporality::kDelta)));
  ASSERT_EQ(request.resource_metrics_size(), 2);
  for (const auto& rm : request.resource_metrics()) {
    for (const auto& metric : rm.scope_metrics(0).metrics()) {
      // AGGREGATION_TEMPORALITY_DELTA is 1 in the specification.
      EXPECT_EQ(static_cast<int>(metric.histogram().aggregation_temporality()), 1) << metric.name();
    }
  }
}

TEST(EncodeMetricsRequestTest, EqualResourcesShareOneResourceMetricsAndPointTimeDefaults) {
  MetricsSnapshot snapshot = otlp_samples::Snapshot(Temporality::kCumulative);
  // A third entry for a resource equal to the first one, with a point that
  // has no time of its own: it takes the snapshot's.
  ResourceMetrics again;
  again.resource = otlp_samples::ProcessResource("nginx", 3988);
  MetricData metric = snapshot.resources[0].metrics[0];
  metric.name = "http.server.request.body.size";
  metric.points.resize(1);
  metric.points[0].time_unix_ns = 0;
  again.metrics.push_back(metric);
  snapshot.resources.push_back(again);
  snapshot.time_unix_ns = 1'795'293'199'000'000'000ull;

  const ExportMetricsServiceRequest request = ParseMetrics(EncodeMetricsRequest(snapshot));
  ASSERT_EQ(request.resource_metrics_size(), 2);
  const auto& nginx_metrics = request.resource_metrics(0).scope_metrics(0).metrics();
  ASSERT_EQ(nginx_metrics.size(), 3);
  EXPECT_EQ(nginx_metrics[2].name(), "http.server.request.body.size");
  EXPECT_EQ(nginx_metrics[2].histogram().data_points(0).time_unix_nano(),
            1'795'293'199'000'000'000ull);
}

TEST(EncodeMetricsRequestTest, SumsEveryField) {
  const ExportMetricsServiceRequest request = ParseMetrics(
      EncodeMetricsRequest(otlp_samples::ServiceGraphSnapshot(Temporality::kCumulative)));
  ASSERT_EQ(request.resource_metrics_size(), 1);
  const metrics_pb::ResourceMetrics& agent = request.resource_metrics(0);
  EXPECT_EQ(Typed(agent.resource().attributes()),
            (std::map<std::string, std::string>{{"service.name", "string:loupe"},
                                                {"host.name", "string:node-1"}}));
  ASSERT_EQ(agent.scope_metrics_size(), 1);
  EXPECT_EQ(agent.scope_metrics(0).scope().name(), "loupe");
  ASSERT_EQ(agent.scope_metrics(0).metrics_size(), 2);

  const metrics_pb::Metric& total = agent.scope_metrics(0).metrics(0);
  EXPECT_EQ(total.name(), "traces_service_graph_request_total");
  EXPECT_EQ(total.description(), "Total count of requests between two nodes.");
  EXPECT_EQ(total.unit(), "{request}");
  ASSERT_EQ(total.data_case(), metrics_pb::Metric::kSum);
  EXPECT_EQ(static_cast<int>(total.sum().aggregation_temporality()), 2);  // CUMULATIVE
  EXPECT_TRUE(total.sum().is_monotonic());
  ASSERT_EQ(total.sum().data_points_size(), 2);
  const metrics_pb::NumberDataPoint& shop_db = total.sum().data_points(0);
  EXPECT_EQ(Typed(shop_db.attributes()),
            (std::map<std::string, std::string>{{"client", "string:shop"},
                                                {"server", "string:db"}}));
  EXPECT_EQ(shop_db.start_time_unix_nano(), 1'795'293'080'000'000'001ull);
  EXPECT_EQ(shop_db.time_unix_nano(), 1'795'293'140'000'000'000ull);
  ASSERT_EQ(shop_db.value_case(), metrics_pb::NumberDataPoint::kAsDouble);
  EXPECT_EQ(shop_db.as_double(), 9007199254740991.0);  // 2^53 - 1: still exact
  EXPECT_EQ(shop_db.flags(), 0u);
  const metrics_pb::NumberDataPoint& web_shop = total.sum().data_points(1);
  EXPECT_EQ(Typed(web_shop.attributes()),
            (std::map<std::string, std::string>{{"client", "string:web"},
                                                {"server", "string:shop"}}));
  EXPECT_EQ(web_shop.as_double(), 1.0);

  const metrics_pb::Metric& failed = agent.scope_metrics(0).metrics(1);
  EXPECT_EQ(failed.name(), "traces_service_graph_request_failed_total");
  ASSERT_TRUE(failed.has_sum());
  ASSERT_EQ(failed.sum().data_points_size(), 2);
  EXPECT_EQ(failed.sum().data_points(0).as_double(), 2.0);
  // A zero is sent (the oneof says which arm), not left out.
  EXPECT_EQ(failed.sum().data_points(1).value_case(), metrics_pb::NumberDataPoint::kAsDouble);
  EXPECT_EQ(failed.sum().data_points(1).as_double(), 0.0);
}

TEST(EncodeMetricsRequestTest, DeltaAndNonMonotonicSums) {
  MetricsSnapshot snapshot = otlp_samples::ServiceGraphSnapshot(Temporality::kDelta);
  snapshot.resources[0].metrics[1].monotonic = false;
  snapshot.resources[0].metrics[1].sum_points[1].time_unix_ns = 0;  // takes the snapshot's
  snapshot.time_unix_ns = 1'795'293'199'000'000'000ull;
  const ExportMetricsServiceRequest request = ParseMetrics(EncodeMetricsRequest(snapshot));
  ASSERT_EQ(request.resource_metrics_size(), 1);
  const auto& metrics = request.resource_metrics(0).scope_metrics(0).metrics();
  ASSERT_EQ(metrics.size(), 2);
  EXPECT_EQ(static_cast<int>(metrics[0].sum().aggregation_temporality()), 1);  // DELTA
  EXPECT_TRUE(metrics[0].sum().is_monotonic());
  EXPECT_EQ(static_cast<int>(metrics[1].sum().aggregation_temporality()), 1);
  EXPECT_FALSE(metrics[1].sum().is_monotonic());
  EXPECT_EQ(metrics[1].sum().data_points(1).time_unix_nano(), 1'795'293'199'000'000'000ull);

  // A sum with no points is left out like a histogram with none.
  snapshot.resources[0].metrics[0].sum_points.clear();
  const ExportMetricsServiceRequest fewer = ParseMetrics(EncodeMetricsRequest(snapshot));
  ASSERT_EQ(fewer.resource_metrics(0).scope_metrics(0).metrics_size(), 1);
  snapshot.resources[0].metrics[1].sum_points.clear();
  EXPECT_EQ(EncodeMetricsRequest(snapshot), "");
}

TEST(EncodeMetricsRequestTest, ServiceGraphFromARealRecorder) {
  MetricsRecorder recorder;
  ServiceGraphEdge edge;
  edge.client = "shop";
  edge.server = "db";
  edge.client_seconds = 0.3;
  edge.server_seconds = 0.25;
  recorder.RecordServiceGraphEdge(edge);
  edge.failed = true;
  recorder.RecordServiceGraphEdge(edge);
  const ExportMetricsServiceRequest request =
      ParseMetrics(EncodeMetricsRequest(recorder.CollectCumulative(1'795'293'140'000'000'000ull)));
  ASSERT_EQ(request.resource_metrics_size(), 1);
  EXPECT_EQ(Typed(request.resource_metrics(0).resource().attributes()),
            (std::map<std::string, std::string>{{"service.name", "string:loupe"}}));
  const auto& metrics = request.resource_metrics(0).scope_metrics(0).metrics();
  ASSERT_EQ(metrics.size(), 4);
  const std::map<std::string, std::string> pair = {{"client", "string:shop"},
                                                   {"server", "string:db"}};
  EXPECT_EQ(metrics[0].name(), "traces_service_graph_request_total");
  ASSERT_TRUE(metrics[0].has_sum());
  EXPECT_TRUE(metrics[0].sum().is_monotonic());
  ASSERT_EQ(metrics[0].sum().data_points_size(), 1);
  EXPECT_EQ(Typed(metrics[0].sum().data_points(0).attributes()), pair);
  EXPECT_EQ(metrics[0].sum().data_points(0).as_double(), 2.0);
  EXPECT_EQ(metrics[1].name(), "traces_service_graph_request_failed_total");
  ASSERT_TRUE(metrics[1].has_sum());
  EXPECT_EQ(metrics[1].sum().data_points(0).as_double(), 1.0);
  for (int i : {2, 3}) {
    SCOPED_TRACE(metrics[i].name());
    ASSERT_TRUE(metrics[i].has_histogram());
    EXPECT_EQ(metrics[i].unit(), "s");
    ASSERT_EQ(metrics[i].histogram().data_points_size(), 1);
    const metrics_pb::HistogramDataPoint& p = metrics[i].histogram().data_points(0);
    EXPECT_EQ(Typed(p.attributes()), pair);
    EXPECT_EQ(p.count(), 2u);
    EXPECT_THAT(p.explicit_bounds(), ElementsAre(0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8));
  }
  EXPECT_EQ(metrics[2].name(), "traces_service_graph_request_server_seconds");
  EXPECT_THAT(metrics[2].histogram().data_points(0).bucket_counts(),
              ElementsAre(0, 0, 2, 0, 0, 0, 0, 0, 0));
  EXPECT_EQ(metrics[3].name(), "traces_service_graph_request_client_seconds");
  EXPECT_THAT(metrics[3].histogram().data_points(0).bucket_counts(),
              ElementsAre(0, 0, 2, 0, 0, 0, 0, 0, 0));
}

TEST(EncodeMetricsRequestTest, ObservedCountersAndLevelsFromADeltaReader) {
  constexpr uint64_t kT = 1'795'293'100'000'000'000ull;
  constexpr uint64_t kS = 1'000'000'000ull;
  MetricsRecorder recorder;
  auto process = std::make_shared<Resource>();
  process->attributes.Set("service.name", "shop");
  process->attributes.Set("process.pid", int64_t{10});
  Attributes user;
  user.Set("cpu.mode", "user");
  const ObservedValue first[] = {
      {ObservedInstrument::kProcessCpuTime, &user, 1.5, kT - 100 * kS},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, 4096, 0}};
  recorder.RecordObserved(process, first, kT);
  DeltaReader reader;
  reader.Collect(recorder, kT + 10 * kS);
  const ObservedValue later[] = {
      {ObservedInstrument::kProcessCpuTime, &user, 2.0, kT - 100 * kS},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, 8192, 0}};
  recorder.RecordObserved(process, later, kT + 15 * kS);
  const ExportMetricsServiceRequest request =
      ParseMetrics(EncodeMetricsRequest(reader.Collect(recorder, kT + 20 * kS)));
  ASSERT_EQ(request.resource_metrics_size(), 1);
  const auto& metrics = request.resource_metrics(0).scope_metrics(0).metrics();
  ASSERT_EQ(metrics.size(), 2);

  // The CPU counter: its change since the previous collection, DELTA.
  EXPECT_EQ(metrics[0].name(), "process.cpu.time");
  EXPECT_EQ(metrics[0].unit(), "s");
  ASSERT_TRUE(metrics[0].has_sum());
  EXPECT_EQ(static_cast<int>(metrics[0].sum().aggregation_temporality()), 1);  // DELTA
  EXPECT_TRUE(metrics[0].sum().is_monotonic());
  ASSERT_EQ(metrics[0].sum().data_points_size(), 1);
  const metrics_pb::NumberDataPoint& cpu = metrics[0].sum().data_points(0);
  EXPECT_EQ(Typed(cpu.attributes()),
            (std::map<std::string, std::string>{{"cpu.mode", "string:user"}}));
  EXPECT_EQ(cpu.as_double(), 0.5);
  EXPECT_EQ(cpu.start_time_unix_nano(), kT + 10 * kS);
  EXPECT_EQ(cpu.time_unix_nano(), kT + 20 * kS);

  // Memory in use: a level, CUMULATIVE even from a delta reader.
  EXPECT_EQ(metrics[1].name(), "process.memory.usage");
  EXPECT_EQ(metrics[1].unit(), "By");
  ASSERT_TRUE(metrics[1].has_sum());
  EXPECT_EQ(static_cast<int>(metrics[1].sum().aggregation_temporality()), 2);  // CUMULATIVE
  EXPECT_FALSE(metrics[1].sum().is_monotonic());
  ASSERT_EQ(metrics[1].sum().data_points_size(), 1);
  EXPECT_EQ(metrics[1].sum().data_points(0).as_double(), 8192.0);
  EXPECT_EQ(metrics[1].sum().data_points(0).start_time_unix_nano(), kT);
  EXPECT_TRUE(metrics[1].sum().data_points(0).attributes().empty());
}

// ---- The span encoder against the generated messages ----------------------
// EncodeTraceRequest writes the wire format directly (see otlp_encoder.cc
// for why). Here the same spans are built with the generated messages and
// serialized by protobuf; the bytes must be identical.

bool SameSet(const Attributes& a, const Attributes& b) {
  if (a.size() != b.size()) return false;
  for (const Attribute& x : a.items()) {
    const AttributeValue* y = b.Find(x.key);
    if (y == nullptr || !(*y == x.value)) return false;
  }
  return true;
}

void ReferenceAttributes(const Attributes& attributes,
                         google::protobuf::RepeatedPtrField<common_pb::KeyValue>* out) {
  for (const Attribute& a : attributes.items()) {
    common_pb::KeyValue* kv = out->Add();
    kv->set_key(a.key);
    common_pb::AnyValue* v = kv->mutable_value();
    if (const auto* s = std::get_if<std::string>(&a.value)) v->set_string_value(*s);
    if (const auto* i = std::get_if<int64_t>(&a.value)) v->set_int_value(*i);
    if (const auto* d = std::get_if<double>(&a.value)) v->set_double_value(*d);
    if (const auto* b = std::get_if<bool>(&a.value)) v->set_bool_value(*b);
  }
}

std::string ReferenceTraceRequest(const std::vector<Span>& spans) {
  ExportTraceServiceRequest request;
  struct Group {
    const Resource* resource;
    const Attributes* attributes;
    trace_pb::ScopeSpans* scope;
  };
  std::vector<Group> groups;
  const Attributes none;
  for (const Span& span : spans) {
    const Attributes& attributes = span.resource ? span.resource->attributes : none;
    trace_pb::ScopeSpans* scope = nullptr;
    // The same Resource object, or equal attributes (a NaN value is equal
    // to nothing, not even itself, so only the same object matches it).
    for (const Group& g : groups) {
      if (g.resource == span.resource.get() || SameSet(*g.attributes, attributes)) {
        scope = g.scope;
        break;
      }
    }
    if (scope == nullptr) {
      trace_pb::ResourceSpans* rs = request.add_resource_spans();
      ReferenceAttributes(attributes, rs->mutable_resource()->mutable_attributes());
      scope = rs->add_scope_spans();
      scope->mutable_scope()->set_name("loupe");
      scope->mutable_scope()->set_version(LOUPE_VERSION);
      groups.push_back(Group{span.resource.get(), &attributes, scope});
    }
    trace_pb::Span* out = scope->add_spans();
    out->set_trace_id(span.trace_id.data(), span.trace_id.size());
    out->set_span_id(span.span_id.data(), span.span_id.size());
    if (!IsZero(span.parent_span_id)) {
      out->set_parent_span_id(span.parent_span_id.data(), span.parent_span_id.size());
    }
    out->set_name(span.name);
    out->set_kind(span.kind == SpanKind::kServer ? trace_pb::Span::SPAN_KIND_SERVER
                                                 : trace_pb::Span::SPAN_KIND_CLIENT);
    out->set_start_time_unix_nano(span.start_unix_ns);
    out->set_end_time_unix_nano(span.end_unix_ns);
    ReferenceAttributes(span.attributes, out->mutable_attributes());
    if (span.status != StatusCode::kUnset || !span.status_message.empty()) {
      out->mutable_status()->set_code(
          span.status == StatusCode::kOk      ? trace_pb::Status::STATUS_CODE_OK
          : span.status == StatusCode::kError ? trace_pb::Status::STATUS_CODE_ERROR
                                              : trace_pb::Status::STATUS_CODE_UNSET);
      out->mutable_status()->set_message(span.status_message);
    }
  }
  return request.SerializeAsString();
}

void SetAny(Attributes& attributes, const std::string& key, const AttributeValue& value) {
  std::visit([&](const auto& v) { attributes.Set(key, v); }, value);
}

std::string Hex(const std::string& bytes);

// "" when equal, else where and how they differ (the whole hex of a random
// batch is too long to read).
std::string FirstDifference(const std::string& ours, const std::string& reference) {
  if (ours == reference) return "";
  size_t i = 0;
  while (i < ours.size() && i < reference.size() && ours[i] == reference[i]) ++i;
  auto around = [i](const std::string& s) {
    const size_t from = i < 16 ? 0 : i - 16;
    return Hex(s.substr(from, 48));
  };
  return "sizes " + std::to_string(ours.size()) + " vs " + std::to_string(reference.size()) +
         ", first difference at byte " + std::to_string(i) + ": ours ..." + around(ours) +
         " reference ..." + around(reference);
}

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xf];
  }
  return out;
}

TEST(EncodeTraceRequestTest, SameBytesAsTheGeneratedMessagesForTheSamples) {
  auto nginx = otlp_samples::ProcessResource("nginx", 3988);
  std::vector<Span> spans = {otlp_samples::ServerSpan(nginx),
                             otlp_samples::ClientSpan(otlp_samples::ProcessResource("curl", 1)),
                             otlp_samples::ServerSpan(nullptr), otlp_samples::ClientSpan(nginx)};
  EXPECT_EQ(Hex(EncodeTraceRequest(spans)), Hex(ReferenceTraceRequest(spans)));
}

// Random spans over the corners of the encoding: empty and long strings
// (lengths needing two-byte varints), zero, negative and huge ints, NaN and
// -0.0, false, empty keys, zero times and ids, every status, resources that
// are equal in another attribute order, and no resource.
TEST(EncodeTraceRequestTest, SameBytesAsTheGeneratedMessagesForRandomSpans) {
  std::mt19937_64 random(20261121);
  auto pick = [&](uint64_t n) { return random() % n; };
  auto text = [&]() {
    static const std::string kTexts[] = {"",
                                         "a",
                                         "GET",
                                         "/api/items/{id}",
                                         std::string(127, 'x'),
                                         std::string(128, 'y'),
                                         std::string(300, 'z'),
                                         "\xc3\xa9t\xc3\xa9 \xe2\x82\xac"};
    return kTexts[pick(std::size(kTexts))];
  };
  auto value = [&]() -> AttributeValue {
    switch (pick(8)) {
      case 0:
        return text();
      case 1:
        return int64_t{0};
      case 2:
        return static_cast<int64_t>(random());
      case 3:
        return int64_t{-1};
      case 4:
        return std::numeric_limits<double>::quiet_NaN();
      case 5:
        return pick(2) ? -0.0 : 0.125;
      case 6:
        return false;
      default:
        return true;
    }
  };
  std::vector<std::shared_ptr<Resource>> resources;
  for (int r = 0; r < 5; ++r) {
    auto resource = std::make_shared<Resource>();
    const int n = static_cast<int>(pick(5));
    for (int k = 0; k < n; ++k) SetAny(resource->attributes, "r" + std::to_string(k), value());
    resources.push_back(resource);
  }
  // The same attributes as resources[1], reversed.
  auto reversed = std::make_shared<Resource>();
  for (auto it = resources[1]->attributes.items().rbegin();
       it != resources[1]->attributes.items().rend(); ++it) {
    SetAny(reversed->attributes, it->key, it->value);
  }
  resources.push_back(reversed);
  resources.push_back(nullptr);

  for (int round = 0; round < 200; ++round) {
    std::vector<Span> spans(1 + pick(40));
    for (Span& span : spans) {
      for (auto& b : span.trace_id) b = static_cast<uint8_t>(pick(4) == 0 ? 0 : random());
      for (auto& b : span.span_id) b = static_cast<uint8_t>(random());
      if (pick(2)) {
        for (auto& b : span.parent_span_id) b = static_cast<uint8_t>(random());
      }
      span.name = text();
      span.kind = pick(2) ? SpanKind::kServer : SpanKind::kClient;
      span.start_unix_ns = pick(5) == 0 ? 0 : random();
      span.end_unix_ns = pick(5) == 0 ? 0 : random();
      span.status = static_cast<StatusCode>(pick(3));
      span.status_message = pick(3) == 0 ? text() : "";
      const int n = static_cast<int>(pick(14));
      for (int k = 0; k < n; ++k) {
        SetAny(span.attributes, pick(10) == 0 ? std::string() : "k" + std::to_string(k), value());
      }
      span.resource = resources[pick(resources.size())];
    }
    ASSERT_EQ(FirstDifference(EncodeTraceRequest(spans), ReferenceTraceRequest(spans)), "")
        << "round " << round;
  }
}

TEST(EncodeTraceRequestTest, IllFormedUtf8BecomesReplacementCharacters) {
  Span span = otlp_samples::ServerSpan(nullptr);
  span.name = "GET /caf\xe9";  // Latin-1 é: a lone continuation-less lead
  span.attributes = Attributes();
  span.attributes.Set("url.path", "/a\xff\xfe/b");     // never-valid bytes
  span.attributes.Set("k\xc3", "truncated \xe2\x82");  // cut-off sequences
  span.attributes.Set("ok", "\xc3\xa9t\xc3\xa9");      // valid, kept as is
  span.attributes.Set("surrogate", "\xed\xa0\x80");    // U+D800 is not UTF-8
  span.status = StatusCode::kError;
  span.status_message = "bad \x80";
  const ExportTraceServiceRequest request =
      ParseTraces(EncodeTraceRequest(std::vector<Span>{span}));
  ASSERT_EQ(request.resource_spans_size(), 1);
  const trace_pb::Span& out = request.resource_spans(0).scope_spans(0).spans(0);
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  EXPECT_EQ(out.name(), "GET /caf" + r);
  EXPECT_EQ(Typed(out.attributes()),
            (std::map<std::string, std::string>{{"url.path", "string:/a" + r + r + "/b"},
                                                {"k" + r, "string:truncated " + r},
                                                {"ok", "string:\xc3\xa9t\xc3\xa9"},
                                                {"surrogate", "string:" + r + r + r}}));
  EXPECT_EQ(out.status().message(), "bad " + r);

  MetricsSnapshot snapshot = otlp_samples::Snapshot(Temporality::kCumulative);
  snapshot.resources[0].metrics[0].points[0].attributes.Set("http.route", "/\xff");
  const ExportMetricsServiceRequest metrics = ParseMetrics(EncodeMetricsRequest(snapshot));
  ASSERT_GE(metrics.resource_metrics_size(), 1);
  EXPECT_EQ(Typed(metrics.resource_metrics(0)
                      .scope_metrics(0)
                      .metrics(0)
                      .histogram()
                      .data_points(0)
                      .attributes())
                .at("http.route"),
            "string:/" + r);
}

// ---- Field numbers and wire types, read without our .proto files ----------

// The one field with this number (the test fails if it is absent or repeated
// where it should not be).
const UnknownField* Field(const UnknownFieldSet& set, int number) {
  const UnknownField* found = nullptr;
  for (int i = 0; i < set.field_count(); ++i) {
    if (set.field(i).number() != number) continue;
    EXPECT_EQ(found, nullptr) << "field " << number << " appears twice";
    found = &set.field(i);
  }
  EXPECT_NE(found, nullptr) << "field " << number << " missing";
  return found;
}

std::vector<const UnknownField*> Fields(const UnknownFieldSet& set, int number) {
  std::vector<const UnknownField*> out;
  for (int i = 0; i < set.field_count(); ++i) {
    if (set.field(i).number() == number) out.push_back(&set.field(i));
  }
  return out;
}

// UnknownFieldSet can be neither copied nor moved; this handle can.
struct Wire {
  std::shared_ptr<UnknownFieldSet> set = std::make_shared<UnknownFieldSet>();
  operator const UnknownFieldSet&() const { return *set; }  // NOLINT: implicit on purpose
};

Wire Nested(const UnknownField* field) {
  Wire wire;
  if (field == nullptr) return wire;
  EXPECT_EQ(field->type(), UnknownField::TYPE_LENGTH_DELIMITED) << field->number();
  EXPECT_TRUE(wire.set->ParseFromString(field->length_delimited()));
  return wire;
}

double AsDouble(const UnknownField* field) {
  if (field == nullptr) return -1;
  EXPECT_EQ(field->type(), UnknownField::TYPE_FIXED64) << field->number();
  double d;
  const uint64_t bits = field->fixed64();
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::set<int> Numbers(const UnknownFieldSet& set) {
  std::set<int> out;
  for (int i = 0; i < set.field_count(); ++i) out.insert(set.field(i).number());
  return out;
}

// Numbers from opentelemetry-proto v1.5.0 (trace.proto, common.proto,
// resource.proto, collector/trace/v1/trace_service.proto).
TEST(OtlpWireFormatTest, TraceFieldNumbersMatchTheSpecification) {
  const std::vector<Span> spans = {
      otlp_samples::ClientSpan(otlp_samples::ProcessResource("curl", 4130))};
  Wire request;
  ASSERT_TRUE(request.set->ParseFromString(EncodeTraceRequest(spans)));
  EXPECT_EQ(Numbers(request), std::set<int>{1});  // resource_spans
  const Wire resource_spans = Nested(Field(request, 1));
  EXPECT_EQ(Numbers(resource_spans), (std::set<int>{1, 2}));  // resource, scope_spans
  const Wire resource = Nested(Field(resource_spans, 1));
  EXPECT_EQ(Numbers(resource), std::set<int>{1});  // attributes
  const Wire scope_spans = Nested(Field(resource_spans, 2));
  EXPECT_EQ(Numbers(scope_spans), (std::set<int>{1, 2}));  // scope, spans
  const Wire scope = Nested(Field(scope_spans, 1));
  EXPECT_EQ(Field(scope, 1)->length_delimited(), "loupe");        // name
  EXPECT_EQ(Field(scope, 2)->length_delimited(), LOUPE_VERSION);  // version
  const Wire span = Nested(Field(scope_spans, 2));
  // trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8,
  // attributes 9, status 15.
  EXPECT_EQ(Numbers(span), (std::set<int>{1, 2, 4, 5, 6, 7, 8, 9, 15}));
  EXPECT_EQ(Field(span, 1)->length_delimited().size(), 16u);
  EXPECT_EQ(Field(span, 2)->length_delimited().size(), 8u);
  EXPECT_EQ(Field(span, 4)->length_delimited().size(), 8u);
  EXPECT_EQ(Field(span, 5)->length_delimited(), "POST");
  EXPECT_EQ(Field(span, 6)->type(), UnknownField::TYPE_VARINT);
  EXPECT_EQ(Field(span, 6)->varint(), 3u);  // SPAN_KIND_CLIENT
  EXPECT_EQ(Field(span, 7)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Field(span, 7)->fixed64(), 1'795'293'080'123'500'000ull);
  EXPECT_EQ(Field(span, 8)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Field(span, 8)->fixed64(), 1'795'293'080'124'000'001ull);
  const std::vector<const UnknownField*> attributes = Fields(span, 9);
  ASSERT_EQ(attributes.size(), 4u);
  // KeyValue{key 1, value 2}; AnyValue{string_value 1, int_value 3}.
  const Wire method = Nested(attributes[0]);
  EXPECT_EQ(Field(method, 1)->length_delimited(), "http.request.method");
  EXPECT_EQ(Field(Nested(Field(method, 2)), 1)->length_delimited(), "POST");
  const Wire port = Nested(attributes[2]);
  EXPECT_EQ(Field(port, 1)->length_delimited(), "server.port");
  const Wire port_value = Nested(Field(port, 2));
  EXPECT_EQ(Numbers(port_value), std::set<int>{3});
  EXPECT_EQ(Field(port_value, 3)->varint(), 8080u);
  // Status{message 2, code 3}; field 1 is reserved.
  const Wire status = Nested(Field(span, 15));
  EXPECT_EQ(Numbers(status), (std::set<int>{2, 3}));
  EXPECT_EQ(Field(status, 2)->length_delimited(), "HTTP 503");
  EXPECT_EQ(Field(status, 3)->varint(), 2u);  // STATUS_CODE_ERROR
}

TEST(OtlpWireFormatTest, AttributeValueArmsMatchTheSpecification) {
  Span span = otlp_samples::ServerSpan(nullptr);
  span.attributes = Attributes();
  span.attributes.Set("s", "x");
  span.attributes.Set("b", true);
  span.attributes.Set("i", int64_t{-5});
  span.attributes.Set("d", 1.5);
  Wire request;
  ASSERT_TRUE(request.set->ParseFromString(EncodeTraceRequest(std::vector<Span>{span})));
  const Wire s = Nested(Field(Nested(Field(Nested(Field(request, 1)), 2)), 2));
  const std::vector<const UnknownField*> kvs = Fields(s, 9);
  ASSERT_EQ(kvs.size(), 4u);
  // AnyValue: string_value 1, bool_value 2, int_value 3 (int64 varint, two's
  // complement for negatives), double_value 4 (fixed64).
  const Wire sv = Nested(Field(Nested(kvs[0]), 2));
  EXPECT_EQ(Field(sv, 1)->length_delimited(), "x");
  const Wire bv = Nested(Field(Nested(kvs[1]), 2));
  EXPECT_EQ(Field(bv, 2)->varint(), 1u);
  const Wire iv = Nested(Field(Nested(kvs[2]), 2));
  EXPECT_EQ(static_cast<int64_t>(Field(iv, 3)->varint()), -5);
  const Wire dv = Nested(Field(Nested(kvs[3]), 2));
  EXPECT_EQ(AsDouble(Field(dv, 4)), 1.5);
}

// Numbers from opentelemetry-proto v1.5.0 (metrics.proto,
// collector/metrics/v1/metrics_service.proto).
TEST(OtlpWireFormatTest, MetricFieldNumbersMatchTheSpecification) {
  MetricsSnapshot snapshot = otlp_samples::Snapshot(Temporality::kDelta);
  snapshot.resources.resize(1);
  snapshot.resources[0].metrics.resize(1);
  snapshot.resources[0].metrics[0].points.resize(1);
  Wire request;
  ASSERT_TRUE(request.set->ParseFromString(EncodeMetricsRequest(snapshot)));
  EXPECT_EQ(Numbers(request), std::set<int>{1});  // resource_metrics
  const Wire rm = Nested(Field(request, 1));
  EXPECT_EQ(Numbers(rm), (std::set<int>{1, 2}));  // resource, scope_metrics
  const Wire sm = Nested(Field(rm, 2));
  EXPECT_EQ(Numbers(sm), (std::set<int>{1, 2}));  // scope, metrics
  EXPECT_EQ(Field(Nested(Field(sm, 1)), 1)->length_delimited(), "loupe");
  const Wire metric = Nested(Field(sm, 2));
  // name 1, description 2, unit 3, histogram 9.
  EXPECT_EQ(Numbers(metric), (std::set<int>{1, 2, 3, 9}));
  EXPECT_EQ(Field(metric, 1)->length_delimited(), "http.server.request.duration");
  EXPECT_EQ(Field(metric, 3)->length_delimited(), "s");
  const Wire histogram = Nested(Field(metric, 9));
  EXPECT_EQ(Numbers(histogram), (std::set<int>{1, 2}));  // data_points, temporality
  EXPECT_EQ(Field(histogram, 2)->varint(), 1u);          // DELTA
  const Wire point = Nested(Field(histogram, 1));
  // attributes 9, start 2, time 3, count 4, sum 5, bucket_counts 6,
  // explicit_bounds 7, min 11, max 12 (flags 10 is zero, so not written).
  EXPECT_EQ(Numbers(point), (std::set<int>{2, 3, 4, 5, 6, 7, 9, 11, 12}));
  EXPECT_EQ(Fields(point, 9).size(), 3u);
  EXPECT_EQ(Field(point, 2)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Field(point, 2)->fixed64(), 1'795'293'080'000'000'001ull);
  EXPECT_EQ(Field(point, 3)->fixed64(), 1'795'293'140'000'000'000ull);
  EXPECT_EQ(Field(point, 4)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Field(point, 4)->fixed64(), 7u);
  EXPECT_EQ(AsDouble(Field(point, 5)), 0.0625);
  EXPECT_EQ(AsDouble(Field(point, 11)), 0.001);
  EXPECT_EQ(AsDouble(Field(point, 12)), 0.03125);
  // Repeated scalars are packed in proto3: one length-delimited run of
  // little-endian fixed64 counts and doubles.
  const std::string counts = Field(point, 6)->length_delimited();
  ASSERT_EQ(counts.size(), 6 * 8u);
  std::vector<uint64_t> decoded(6);
  std::memcpy(decoded.data(), counts.data(), counts.size());
  EXPECT_THAT(decoded, ElementsAre(3, 2, 1, 1, 0, 0));
  const std::string bounds = Field(point, 7)->length_delimited();
  ASSERT_EQ(bounds.size(), 5 * 8u);
  std::vector<double> decoded_bounds(5);
  std::memcpy(decoded_bounds.data(), bounds.data(), bounds.size());
  EXPECT_THAT(decoded_bounds, ElementsAre(0.005, 0.01, 0.025, 0.05, 0.1));
}

// Numbers from opentelemetry-proto v1.5.0 metrics.proto: Metric.sum 7;
// Sum{data_points 1, aggregation_temporality 2, is_monotonic 3};
// NumberDataPoint{start_time_unix_nano 2, time_unix_nano 3, as_double 4,
// as_int 6, attributes 7}.
TEST(OtlpWireFormatTest, SumFieldNumbersMatchTheSpecification) {
  Wire request;
  ASSERT_TRUE(request.set->ParseFromString(
      EncodeMetricsRequest(otlp_samples::ServiceGraphSnapshot(Temporality::kCumulative))));
  const Wire sm = Nested(Field(Nested(Field(request, 1)), 2));
  const std::vector<const UnknownField*> metrics = Fields(sm, 2);
  ASSERT_EQ(metrics.size(), 2u);
  const Wire metric = Nested(metrics[0]);
  // name 1, description 2, unit 3, sum 7.
  EXPECT_EQ(Numbers(metric), (std::set<int>{1, 2, 3, 7}));
  EXPECT_EQ(Field(metric, 3)->length_delimited(), "{request}");
  const Wire sum = Nested(Field(metric, 7));
  EXPECT_EQ(Numbers(sum), (std::set<int>{1, 2, 3}));
  EXPECT_EQ(Field(sum, 2)->type(), UnknownField::TYPE_VARINT);
  EXPECT_EQ(Field(sum, 2)->varint(), 2u);  // CUMULATIVE
  EXPECT_EQ(Field(sum, 3)->type(), UnknownField::TYPE_VARINT);
  EXPECT_EQ(Field(sum, 3)->varint(), 1u);  // is_monotonic
  const std::vector<const UnknownField*> points = Fields(sum, 1);
  ASSERT_EQ(points.size(), 2u);
  const Wire point = Nested(points[0]);
  EXPECT_EQ(Numbers(point), (std::set<int>{2, 3, 4, 7}));
  EXPECT_EQ(Fields(point, 7).size(), 2u);
  const Wire client = Nested(Fields(point, 7)[0]);
  EXPECT_EQ(Field(client, 1)->length_delimited(), "client");
  EXPECT_EQ(Field(Nested(Field(client, 2)), 1)->length_delimited(), "shop");
  EXPECT_EQ(Field(point, 2)->type(), UnknownField::TYPE_FIXED64);
  EXPECT_EQ(Field(point, 2)->fixed64(), 1'795'293'080'000'000'001ull);
  EXPECT_EQ(Field(point, 3)->fixed64(), 1'795'293'140'000'000'000ull);
  EXPECT_EQ(AsDouble(Field(point, 4)), 9007199254740991.0);
  // The failed counter's zero is on the wire too.
  const Wire failed_sum = Nested(Field(Nested(metrics[1]), 7));
  const Wire zero = Nested(Fields(failed_sum, 1)[1]);
  EXPECT_EQ(Numbers(zero), (std::set<int>{2, 3, 4, 7}));
  EXPECT_EQ(AsDouble(Field(zero, 4)), 0.0);
}


// ---- Logs --------------------------------------------------------------------

LogRecord SampleOomRecord(std::shared_ptr<const Resource> resource) {
  LogRecord r;
  r.time_unix_ns = 1'700'000'000'123'456'789ull;
  r.observed_time_unix_ns = 1'700'000'000'223'456'789ull;
  r.severity = Severity::kWarn;
  r.severity_text = "WARN";
  r.event_name = "loupe.oom_kill";
  r.body = "OOMKILL app[42] cgroup";
  r.attributes.Set("process.pid", int64_t{42});
  r.attributes.Set("loupe.oom.kind", "cgroup");
  AttributeList& list = r.lists.emplace_back();
  list.key = "loupe.oom.memory_trend";
  list.items.emplace_back().Set("usage_bytes", int64_t{1000});
  list.items.emplace_back().Set("usage_bytes", int64_t{2000});
  r.resource = std::move(resource);
  return r;
}

TEST(EncodeLogsRequestTest, EveryFieldRoundTrips) {
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "app");
  const LogRecord in = SampleOomRecord(resource);
  ::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest request;
  ASSERT_TRUE(request.ParseFromString(EncodeLogsRequest(std::span<const LogRecord>(&in, 1))));
  ASSERT_EQ(request.resource_logs_size(), 1);
  const auto& rl = request.resource_logs(0);
  EXPECT_EQ(Typed(rl.resource().attributes()),
            (std::map<std::string, std::string>{{"service.name", "string:app"}}));
  ASSERT_EQ(rl.scope_logs_size(), 1);
  EXPECT_EQ(rl.scope_logs(0).scope().name(), "loupe");
  EXPECT_EQ(rl.scope_logs(0).scope().version(), LOUPE_VERSION);
  ASSERT_EQ(rl.scope_logs(0).log_records_size(), 1);
  const auto& out = rl.scope_logs(0).log_records(0);
  EXPECT_EQ(out.time_unix_nano(), in.time_unix_ns);
  EXPECT_EQ(out.observed_time_unix_nano(), in.observed_time_unix_ns);
  EXPECT_EQ(out.severity_number(), ::opentelemetry::proto::logs::v1::SEVERITY_NUMBER_WARN);
  EXPECT_EQ(out.severity_text(), "WARN");
  EXPECT_EQ(out.event_name(), "loupe.oom_kill");
  EXPECT_EQ(out.body().string_value(), in.body);
  EXPECT_TRUE(out.trace_id().empty());
  ASSERT_EQ(out.attributes_size(), 3);
  EXPECT_EQ(Typed(out.attributes()).at("process.pid"), "int:42");
  EXPECT_EQ(Typed(out.attributes()).at("loupe.oom.kind"), "string:cgroup");
  const common_pb::KeyValue& trend = out.attributes(2);
  EXPECT_EQ(trend.key(), "loupe.oom.memory_trend");
  ASSERT_EQ(trend.value().array_value().values_size(), 2);
  EXPECT_EQ(Typed(trend.value().array_value().values(1).kvlist_value().values()),
            (std::map<std::string, std::string>{{"usage_bytes", "int:2000"}}));
}

TEST(EncodeLogsRequestTest, FieldNumbersFollowTheSpecification) {
  const LogRecord in = SampleOomRecord(nullptr);
  // ExportLogsServiceRequest.resource_logs = 1 -> ResourceLogs.scope_logs = 2
  // -> ScopeLogs.log_records = 2 -> LogRecord.
  auto child = [](const std::string& bytes, int number) {
    UnknownFieldSet set;
    EXPECT_TRUE(set.ParseFromString(bytes));
    for (int i = 0; i < set.field_count(); ++i) {
      if (set.field(i).number() == number &&
          set.field(i).type() == UnknownField::TYPE_LENGTH_DELIMITED) {
        return set.field(i).length_delimited();
      }
    }
    ADD_FAILURE() << "no field " << number;
    return std::string();
  };
  const std::string request = EncodeLogsRequest(std::span<const LogRecord>(&in, 1));
  UnknownFieldSet record;
  ASSERT_TRUE(record.ParseFromString(child(child(child(request, 1), 2), 2)));
  std::map<int, UnknownField::Type> types;
  for (int i = 0; i < record.field_count(); ++i) {
    types[record.field(i).number()] = record.field(i).type();
  }
  EXPECT_EQ(types, (std::map<int, UnknownField::Type>{
                       {1, UnknownField::TYPE_FIXED64},            // time_unix_nano
                       {2, UnknownField::TYPE_VARINT},             // severity_number
                       {3, UnknownField::TYPE_LENGTH_DELIMITED},   // severity_text
                       {5, UnknownField::TYPE_LENGTH_DELIMITED},   // body
                       {6, UnknownField::TYPE_LENGTH_DELIMITED},   // attributes
                       {11, UnknownField::TYPE_FIXED64},           // observed_time_unix_nano
                       {12, UnknownField::TYPE_LENGTH_DELIMITED},  // event_name
                   }));
  for (int i = 0; i < record.field_count(); ++i) {
    if (record.field(i).number() == 2) {
      EXPECT_EQ(record.field(i).varint(), 13u);  // SEVERITY_NUMBER_WARN
    } else if (record.field(i).number() == 12) {
      EXPECT_EQ(record.field(i).length_delimited(), "loupe.oom_kill");
    }
  }
}

TEST(EncodeLogsRequestTest, NoRecordsIsAnEmptyRequest) {
  EXPECT_EQ(EncodeLogsRequest({}), "");
}

}  // namespace
}  // namespace loupe
