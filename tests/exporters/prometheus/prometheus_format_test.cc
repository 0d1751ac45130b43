// The Prometheus text exposition of the metric model: names, labels,
// escaping, resources, and the exact text for small snapshots.
#include "exporters/prometheus/prometheus_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace loupe {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::shared_ptr<const Resource> ShopResource() {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", "shop");
  r->attributes.Set("process.pid", int64_t{1});
  r->attributes.Set("host.name", "h");
  r->attributes.Set("service.instance.id", "h:1");
  return r;
}

HistogramPoint Point(Attributes attributes, uint64_t count, double sum,
                     std::vector<uint64_t> buckets) {
  HistogramPoint p;
  p.attributes = std::move(attributes);
  p.count = count;
  p.sum = sum;
  p.bucket_counts = std::move(buckets);
  return p;
}

MetricData Duration(std::vector<HistogramPoint> points) {
  MetricData m;
  m.name = "http.server.request.duration";
  m.description = "Duration of HTTP server requests.";
  m.unit = "s";
  m.bounds = std::make_shared<const std::vector<double>>(std::vector<double>{0.1, 1});
  m.points = std::move(points);
  return m;
}

SelfMetric Self(std::string name, std::string help, SelfMetric::Type type,
                std::vector<std::pair<std::string, std::string>> labels, double value) {
  SelfMetric m;
  m.name = std::move(name);
  m.help = std::move(help);
  m.type = type;
  m.labels = std::move(labels);
  m.value = value;
  return m;
}

TEST(PrometheusNames, MetricNamesFollowTheCompatibilitySpec) {
  EXPECT_EQ(PrometheusMetricName("http.server.request.duration", "s"),
            "http_server_request_duration_seconds");
  EXPECT_EQ(PrometheusMetricName("http.server.request.body.size", "By"),
            "http_server_request_body_size_bytes");
  EXPECT_EQ(PrometheusMetricName("http.client.response.body.size", "By"),
            "http_client_response_body_size_bytes");
  // Unit already in the name, annotations, dimensionless, per-units.
  EXPECT_EQ(PrometheusMetricName("process.cpu.time_seconds", "s"), "process_cpu_time_seconds");
  EXPECT_EQ(PrometheusMetricName("http.requests", "{request}"), "http_requests");
  EXPECT_EQ(PrometheusMetricName("cpu.utilization", "1"), "cpu_utilization");
  EXPECT_EQ(PrometheusMetricName("net.rate", "By/s"), "net_rate_bytes_per_second");
  EXPECT_EQ(PrometheusMetricName("latency", "ms"), "latency_milliseconds");
  EXPECT_EQ(PrometheusMetricName("http.requests", "{request}", /*counter=*/true),
            "http_requests_total");
  EXPECT_EQ(PrometheusMetricName("loupe_events_lost_total", "", true), "loupe_events_lost_total");
  // Invalid characters, runs of underscores, leading digit; colons are legal.
  EXPECT_EQ(PrometheusMetricName("a..b--c", ""), "a_b_c");
  EXPECT_EQ(PrometheusMetricName("9lives", ""), "_9lives");
  EXPECT_EQ(PrometheusMetricName("job:rate", ""), "job:rate");
  EXPECT_EQ(PrometheusMetricName("ünïcode", ""), "_n_code");
}

TEST(PrometheusNames, ServiceGraphNamesStayAsTempoWritesThem) {
  // Already Prometheus names: no second _total, no _seconds_seconds.
  EXPECT_EQ(PrometheusMetricName("traces_service_graph_request_total", "{request}", true),
            "traces_service_graph_request_total");
  EXPECT_EQ(PrometheusMetricName("traces_service_graph_request_failed_total", "{request}", true),
            "traces_service_graph_request_failed_total");
  EXPECT_EQ(PrometheusMetricName("traces_service_graph_request_server_seconds", "s"),
            "traces_service_graph_request_server_seconds");
  EXPECT_EQ(PrometheusMetricName("traces_service_graph_request_client_seconds", "s"),
            "traces_service_graph_request_client_seconds");
}

TEST(PrometheusNames, LabelNames) {
  EXPECT_EQ(PrometheusLabelName("http.response.status_code"), "http_response_status_code");
  EXPECT_EQ(PrometheusLabelName("otel.metric.overflow"), "otel_metric_overflow");
  EXPECT_EQ(PrometheusLabelName("k8s.pod.name"), "k8s_pod_name");
  EXPECT_EQ(PrometheusLabelName("0day"), "key_0day");
  EXPECT_EQ(PrometheusLabelName("__name__"), "key__name__");
  EXPECT_EQ(PrometheusLabelName("_private"), "_private");
  EXPECT_EQ(PrometheusLabelName("a:b-c"), "a_b_c");
}

TEST(PrometheusNames, LabelValues) {
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("GET"))), "GET");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(int64_t{-404})), "-404");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(true)), "true");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(false)), "false");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(0.1)), "0.1");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(1e21)), "1e+21");
  // Valid UTF-8 stays; invalid bytes, overlong forms and surrogates become
  // U+FFFD one byte at a time.
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("/caf\xC3\xA9"))), "/caf\xC3\xA9");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("a\xFFz"))), "a\xEF\xBF\xBDz");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("\xC0\xAF"))),
            "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("\xED\xA0\x80"))),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(PrometheusLabelValue(AttributeValue(std::string("\xE2\x82"))),
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(PrometheusText, ExactExposition) {
  MetricsSnapshot snapshot;
  ResourceMetrics rm;
  rm.resource = ShopResource();
  Attributes get;
  get.Set("http.request.method", "GET");
  get.Set("http.response.status_code", int64_t{200});
  Attributes overflow;
  overflow.Set("otel.metric.overflow", true);
  rm.metrics.push_back(
      Duration({Point(get, 3, 0.35, {1, 2, 0}), Point(overflow, 1, 5, {0, 0, 1})}));
  snapshot.resources.push_back(rm);
  const std::vector<SelfMetric> self = {
      Self("loupe_events_lost_total", "Events lost.", SelfMetric::Type::kCounter,
           {{"reason", "ringbuf_full"}}, 3),
      Self("loupe_connections_open", "Open connections\\ tracked\nnow.", SelfMetric::Type::kGauge,
           {}, 5),
      Self("loupe_events_lost_total", "Events lost.", SelfMetric::Type::kCounter,
           {{"reason", "queue_full"}}, 0),
  };
  const std::string want =
      "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n"
      "# TYPE http_server_request_duration_seconds histogram\n"
      "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_"
      "code=\"200\",service_instance_id=\"h:1\",service_name=\"shop\"} 3\n"
      "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_response_status_"
      "code=\"200\",service_instance_id=\"h:1\",service_name=\"shop\"} 0.35\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_"
      "status_code=\"200\",service_instance_id=\"h:1\",service_name=\"shop\",le=\"0.1\"} 1\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_"
      "status_code=\"200\",service_instance_id=\"h:1\",service_name=\"shop\",le=\"1\"} 3\n"
      "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_"
      "status_code=\"200\",service_instance_id=\"h:1\",service_name=\"shop\",le=\"+Inf\"} 3\n"
      "http_server_request_duration_seconds_count{otel_metric_overflow=\"true\",service_instance_"
      "id=\"h:1\",service_name=\"shop\"} 1\n"
      "http_server_request_duration_seconds_sum{otel_metric_overflow=\"true\",service_instance_id="
      "\"h:1\",service_name=\"shop\"} 5\n"
      "http_server_request_duration_seconds_bucket{otel_metric_overflow=\"true\",service_instance_"
      "id=\"h:1\",service_name=\"shop\",le=\"0.1\"} 0\n"
      "http_server_request_duration_seconds_bucket{otel_metric_overflow=\"true\",service_instance_"
      "id=\"h:1\",service_name=\"shop\",le=\"1\"} 0\n"
      "http_server_request_duration_seconds_bucket{otel_metric_overflow=\"true\",service_instance_"
      "id=\"h:1\",service_name=\"shop\",le=\"+Inf\"} 1\n"
      "# HELP loupe_connections_open Open connections\\\\ tracked\\nnow.\n"
      "# TYPE loupe_connections_open gauge\n"
      "loupe_connections_open 5\n"
      "# HELP loupe_events_lost_total Events lost.\n"
      "# TYPE loupe_events_lost_total counter\n"
      "loupe_events_lost_total{reason=\"ringbuf_full\"} 3\n"
      "loupe_events_lost_total{reason=\"queue_full\"} 0\n"
      "# HELP target_info Target metadata\n"
      "# TYPE target_info gauge\n"
      "target_info{host_name=\"h\",process_pid=\"1\",service_instance_id=\"h:1\",service_name="
      "\"shop\"} 1\n";
  EXPECT_EQ(RenderPrometheusText(snapshot, self), want);
}

TEST(PrometheusText, EscapingCollisionsAndResourcesWithoutInstanceId) {
  MetricsSnapshot snapshot;
  ResourceMetrics rm;
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "api");
  resource->attributes.Set("process.pid", int64_t{42});
  rm.resource = resource;
  Attributes odd;
  odd.Set("http.route", "/say/\"hi\"\\\n");
  odd.Set("a_b", "y");
  odd.Set("a.b", "x");
  MetricData m = Duration({Point(odd, 1, 0.5, {0, 1, 0})});
  rm.metrics.push_back(m);
  // Delta points are not for Prometheus.
  MetricData delta = Duration({Point(Attributes(), 7, 1, {7, 0, 0})});
  delta.name = "http.client.request.duration";
  delta.temporality = Temporality::kDelta;
  rm.metrics.push_back(delta);
  snapshot.resources.push_back(rm);
  const std::string want =
      "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n"
      "# TYPE http_server_request_duration_seconds histogram\n"
      "http_server_request_duration_seconds_count{a_b=\"x;y\",http_route=\"/say/"
      "\\\"hi\\\"\\\\\\n\",process_pid=\"42\",service_name=\"api\"} 1\n"
      "http_server_request_duration_seconds_sum{a_b=\"x;y\",http_route=\"/say/"
      "\\\"hi\\\"\\\\\\n\",process_pid=\"42\",service_name=\"api\"} 0.5\n"
      "http_server_request_duration_seconds_bucket{a_b=\"x;y\",http_route=\"/say/"
      "\\\"hi\\\"\\\\\\n\",process_pid=\"42\",service_name=\"api\",le=\"0.1\"} 0\n"
      "http_server_request_duration_seconds_bucket{a_b=\"x;y\",http_route=\"/say/"
      "\\\"hi\\\"\\\\\\n\",process_pid=\"42\",service_name=\"api\",le=\"1\"} 1\n"
      "http_server_request_duration_seconds_bucket{a_b=\"x;y\",http_route=\"/say/"
      "\\\"hi\\\"\\\\\\n\",process_pid=\"42\",service_name=\"api\",le=\"+Inf\"} 1\n"
      "# HELP target_info Target metadata\n"
      "# TYPE target_info gauge\n"
      "target_info{process_pid=\"42\",service_name=\"api\"} 1\n";
  EXPECT_EQ(RenderPrometheusText(snapshot, {}), want);
}

TEST(PrometheusText, ResourcesWithTheSameLabelsAreMergedNotRepeated) {
  // Two resources that differ only in an attribute that is not a series
  // label (an exe path re-read after exec): their series would collide, so
  // they are added up; target_info keeps both.
  MetricsSnapshot snapshot;
  for (const char* exe : {"/usr/bin/a", "/usr/bin/b"}) {
    ResourceMetrics rm;
    auto r = std::make_shared<Resource>();
    r->attributes.Set("service.name", "svc");
    r->attributes.Set("service.instance.id", "h:7");
    r->attributes.Set("process.executable.path", exe);
    rm.resource = r;
    Attributes a;
    a.Set("http.request.method", "GET");
    rm.metrics.push_back(Duration({Point(a, 2, 0.2, {2, 0, 0})}));
    snapshot.resources.push_back(rm);
  }
  const std::string text = RenderPrometheusText(snapshot, {});
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_count{http_request_method="
                              "\"GET\",service_instance_id=\"h:7\",service_name=\"svc\"} 4\n"));
  EXPECT_THAT(text,
              HasSubstr("http_server_request_duration_seconds_bucket{http_request_method=\"GET\","
                        "service_instance_id=\"h:7\",service_name=\"svc\",le=\"0.1\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_sum{http_request_method="
                              "\"GET\",service_instance_id=\"h:7\",service_name=\"svc\"} 0.4\n"));
  size_t counts = 0;
  for (size_t at = 0; (at = text.find("_count{", at)) != std::string::npos; ++at) ++counts;
  EXPECT_EQ(counts, 1u);
  EXPECT_THAT(text, HasSubstr("process_executable_path=\"/usr/bin/a\""));
  EXPECT_THAT(text, HasSubstr("process_executable_path=\"/usr/bin/b\""));
}

TEST(PrometheusText, NothingRecordedGivesOnlySelfMetrics) {
  EXPECT_EQ(RenderPrometheusText(MetricsSnapshot(), {}), "");
  const std::string text = RenderPrometheusText(
      MetricsSnapshot(), {Self("loupe_spans_produced_total", "Spans.", SelfMetric::Type::kCounter,
                               {}, 12345678901.0)});
  EXPECT_EQ(text,
            "# HELP loupe_spans_produced_total Spans.\n"
            "# TYPE loupe_spans_produced_total counter\n"
            "loupe_spans_produced_total 12345678901\n");
}

TEST(PrometheusText, ConflictingSelfMetricTypesKeepTheFirst) {
  const std::string text = RenderPrometheusText(
      MetricsSnapshot(), {Self("loupe_x", "first", SelfMetric::Type::kGauge, {}, 1),
                          Self("loupe_x", "second", SelfMetric::Type::kCounter, {{"a", "b"}}, 2),
                          Self("loupe_x", "dup", SelfMetric::Type::kGauge, {}, 3)});
  EXPECT_EQ(text, "# HELP loupe_x first\n# TYPE loupe_x gauge\nloupe_x 1\n");
}

// One sample line of the exposition: name{labels} value.
struct Sample {
  std::string name;
  std::string labels;  // without le
  std::string le;
  double value = 0;
};

std::vector<Sample> ParseSamples(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    s.name = line.substr(0, std::min(brace, space));
    if (brace != std::string::npos) {
      std::string labels = line.substr(brace + 1, line.rfind('}') - brace - 1);
      const size_t le = labels.find(",le=\"");
      if (le != std::string::npos) {
        s.le = labels.substr(le + 5, labels.size() - le - 6);
        labels.resize(le);
      }
      s.labels = labels;
    }
    s.value = std::stod(line.substr(space + 1));
    out.push_back(s);
  }
  return out;
}

Span RecordedSpan(const std::shared_ptr<const Resource>& resource, const std::string& route,
                  int64_t status, uint64_t duration_ns, int64_t response_body) {
  Span span;
  span.kind = SpanKind::kServer;
  span.end_unix_ns = 1'700'000'000'000'000'000ull;
  span.start_unix_ns = span.end_unix_ns - duration_ns;
  span.attributes.Set("http.request.method", "GET");
  span.attributes.Set("http.route", route);
  span.attributes.Set("http.response.status_code", status);
  span.attributes.Set("server.port", int64_t{8080});
  span.attributes.Set("network.protocol.version", "1.1");
  span.attributes.Set("http.response.body.size", response_body);
  if (status >= 500) {
    span.status = StatusCode::kError;
    span.attributes.Set("error.type", std::to_string(status));
  }
  span.resource = resource;
  return span;
}

TEST(PrometheusText, FromARealRecorder) {
  MetricsRecorder recorder;
  auto nginx = std::make_shared<Resource>();
  nginx->attributes.Set("service.name", "nginx");
  nginx->attributes.Set("service.instance.id", "node-1:10");
  nginx->attributes.Set("process.pid", int64_t{10});
  recorder.Record(RecordedSpan(nginx, "/index.html", 200, 3'000'000, 1234));
  recorder.Record(RecordedSpan(nginx, "/index.html", 200, 20'000'000, 1234));
  recorder.Record(RecordedSpan(nginx, "/fail", 500, 10'000'000, 5));
  const std::string text = RenderPrometheusText(recorder.CollectCumulative(1), {});

  const std::string index_labels =
      "http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/index.html\","
      "network_protocol_version=\"1.1\",server_port=\"8080\",service_instance_id=\"node-1:10\","
      "service_name=\"nginx\",url_scheme=\"http\"";
  const std::string fail_labels =
      "error_type=\"500\",http_request_method=\"GET\",http_response_status_code=\"500\","
      "http_route=\"/fail\",network_protocol_version=\"1.1\",server_port=\"8080\","
      "service_instance_id=\"node-1:10\",service_name=\"nginx\",url_scheme=\"http\"";
  EXPECT_THAT(text,
              HasSubstr("# HELP http_server_request_duration_seconds Duration of HTTP server "
                        "requests.\n# TYPE http_server_request_duration_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE http_server_response_body_size_bytes histogram\n"));
  EXPECT_THAT(text,
              HasSubstr("http_server_request_duration_seconds_count{" + index_labels + "} 2\n"));
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_bucket{" + index_labels +
                              ",le=\"0.005\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_bucket{" + index_labels +
                              ",le=\"0.025\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_bucket{" + fail_labels +
                              ",le=\"0.005\"} 0\n"));
  // 10 ms is exactly a bound: counted in le="0.01".
  EXPECT_THAT(text, HasSubstr("http_server_request_duration_seconds_bucket{" + fail_labels +
                              ",le=\"0.01\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("http_server_response_body_size_bytes_bucket{" + index_labels +
                              ",le=\"1024\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("http_server_response_body_size_bytes_bucket{" + index_labels +
                              ",le=\"4096\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("http_server_response_body_size_bytes_sum{" + index_labels + "} 2468\n"));
  EXPECT_THAT(text, HasSubstr("http_server_response_body_size_bytes_bucket{" + fail_labels +
                              ",le=\"64\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("target_info{process_pid=\"10\",service_instance_id=\"node-1:10\","
                              "service_name=\"nginx\"} 1\n"));

  // Every histogram series: buckets never decrease, +Inf equals _count.
  std::map<std::string, std::vector<Sample>> buckets;
  std::map<std::string, double> counts;
  for (const Sample& s : ParseSamples(text)) {
    const std::string base = s.name.substr(0, s.name.rfind('_'));
    if (s.name.ends_with("_bucket")) buckets[base + "{" + s.labels].push_back(s);
    if (s.name.ends_with("_count")) counts[base + "{" + s.labels] = s.value;
  }
  ASSERT_EQ(buckets.size(), 4u);
  for (const auto& [series, samples] : buckets) {
    SCOPED_TRACE(series);
    ASSERT_FALSE(samples.empty());
    for (size_t i = 1; i < samples.size(); ++i) EXPECT_LE(samples[i - 1].value, samples[i].value);
    EXPECT_EQ(samples.back().le, "+Inf");
    EXPECT_EQ(samples.back().value, counts.at(series));
  }
}

SumPoint SumAt(Attributes attributes, double value) {
  SumPoint p;
  p.attributes = std::move(attributes);
  p.value = value;
  return p;
}

MetricData Sum(std::string name, std::string unit, bool monotonic, std::vector<SumPoint> points) {
  MetricData m;
  m.name = std::move(name);
  m.description = "A sum.";
  m.unit = std::move(unit);
  m.type = MetricType::kSum;
  m.monotonic = monotonic;
  m.sum_points = std::move(points);
  return m;
}

TEST(PrometheusText, SumsAreCountersOrGauges) {
  MetricsSnapshot snapshot;
  ResourceMetrics rm;
  rm.resource = ShopResource();
  Attributes ab;
  ab.Set("client", "a");
  ab.Set("server", "b");
  Attributes cb;
  cb.Set("client", "c");
  cb.Set("server", "b");
  // A monotonic sum without _total in its name gets it; a non-monotonic one
  // is a gauge named as it is (plus its unit).
  rm.metrics.push_back(Sum("http.requests", "{request}", true, {SumAt(ab, 3), SumAt(cb, 0)}));
  rm.metrics.push_back(Sum("queue.size", "By", false, {SumAt(Attributes(), 1.5)}));
  // Delta sums are not for Prometheus.
  MetricData delta = Sum("http.requests.delta", "{request}", true, {SumAt(ab, 7)});
  delta.temporality = Temporality::kDelta;
  rm.metrics.push_back(delta);
  snapshot.resources.push_back(rm);
  const std::string want =
      "# HELP http_requests_total A sum.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{client=\"a\",server=\"b\",service_instance_id=\"h:1\",service_name="
      "\"shop\"} 3\n"
      "http_requests_total{client=\"c\",server=\"b\",service_instance_id=\"h:1\",service_name="
      "\"shop\"} 0\n"
      "# HELP queue_size_bytes A sum.\n"
      "# TYPE queue_size_bytes gauge\n"
      "queue_size_bytes{service_instance_id=\"h:1\",service_name=\"shop\"} 1.5\n"
      "# HELP target_info Target metadata\n"
      "# TYPE target_info gauge\n"
      "target_info{host_name=\"h\",process_pid=\"1\",service_instance_id=\"h:1\",service_name="
      "\"shop\"} 1\n";
  EXPECT_EQ(RenderPrometheusText(snapshot, {}), want);

  // Two resources that end up with the same labels: their counters add up.
  MetricsSnapshot twice;
  twice.resources.push_back(rm);
  auto same_labels = std::make_shared<Resource>(*ShopResource());
  same_labels->attributes.Set("host.name", "other");
  ResourceMetrics again = rm;
  again.resource = same_labels;
  twice.resources.push_back(again);
  EXPECT_THAT(RenderPrometheusText(twice, {}),
              HasSubstr("http_requests_total{client=\"a\",server=\"b\",service_instance_id="
                        "\"h:1\",service_name=\"shop\"} 6\n"));
}

TEST(PrometheusText, ServiceGraphFromARealRecorder) {
  MetricsRecorder recorder;
  auto agent = std::make_shared<Resource>();
  agent->attributes.Set("service.name", "loupe");
  agent->attributes.Set("service.instance.id", "node-1");
  recorder.SetServiceGraphResource(agent);
  auto edge = [](std::string client, std::string server, bool failed, double client_seconds,
                 double server_seconds) {
    ServiceGraphEdge e;
    e.client = std::move(client);
    e.server = std::move(server);
    e.failed = failed;
    e.client_seconds = client_seconds;
    e.server_seconds = server_seconds;
    return e;
  };
  recorder.RecordServiceGraphEdge(edge("shop", "db", false, 0.15, 0.1));
  recorder.RecordServiceGraphEdge(edge("shop", "db", true, 0.5, 0.3));
  recorder.RecordServiceGraphEdge(edge("shop", "db", false, 30, 2));
  recorder.RecordServiceGraphEdge(edge("web", "shop", false, 0.05, 0.01));
  const std::string text = RenderPrometheusText(recorder.CollectCumulative(1), {});

  const std::string shop_db =
      "client=\"shop\",server=\"db\",service_instance_id=\"node-1\",service_name=\"loupe\"";
  const std::string web_shop =
      "client=\"web\",server=\"shop\",service_instance_id=\"node-1\",service_name=\"loupe\"";
  EXPECT_THAT(text, HasSubstr("# HELP traces_service_graph_request_total Total count of requests "
                              "between two nodes.\n"
                              "# TYPE traces_service_graph_request_total counter\n"
                              "traces_service_graph_request_total{" +
                              shop_db + "} 3\ntraces_service_graph_request_total{" + web_shop +
                              "} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE traces_service_graph_request_failed_total counter\n"
                              "traces_service_graph_request_failed_total{" +
                              shop_db + "} 1\ntraces_service_graph_request_failed_total{" +
                              web_shop + "} 0\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE traces_service_graph_request_server_seconds histogram\n"
                              "traces_service_graph_request_server_seconds_count{" +
                              shop_db + "} 3\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_server_seconds_sum{" + shop_db +
                              "} 2.4\n"));
  // 0.1 exactly a bound; 0.3 in (0.2, 0.4]; 2 in (1.6, 3.2].
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_server_seconds_bucket{" + shop_db +
                              ",le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_server_seconds_bucket{" + shop_db +
                              ",le=\"0.2\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_server_seconds_bucket{" + shop_db +
                              ",le=\"0.4\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_server_seconds_bucket{" + shop_db +
                              ",le=\"3.2\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE traces_service_graph_request_client_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_client_seconds_bucket{" + shop_db +
                              ",le=\"12.8\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_client_seconds_bucket{" + shop_db +
                              ",le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("traces_service_graph_request_client_seconds_count{" + web_shop +
                              "} 1\n"));
  EXPECT_THAT(text, HasSubstr("target_info{service_instance_id=\"node-1\",service_name=\"loupe\"}"
                              " 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("_total_total")));
  EXPECT_THAT(text, Not(HasSubstr("_seconds_seconds")));
  // Every sample is one of the four families (or target_info).
  for (const Sample& s : ParseSamples(text)) {
    if (s.name == "target_info") continue;
    EXPECT_TRUE(s.name == "traces_service_graph_request_total" ||
                s.name == "traces_service_graph_request_failed_total" ||
                s.name.starts_with("traces_service_graph_request_server_seconds_") ||
                s.name.starts_with("traces_service_graph_request_client_seconds_"))
        << s.name;
  }
}

}  // namespace
}  // namespace loupe
