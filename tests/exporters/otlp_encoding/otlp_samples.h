// Known spans and known metrics snapshots, for the encoder's unit tests and
// the wire-compatibility test against an independent receiver. The values are
// chosen to catch lossy encodings: times above 2^53 (a double loses their low
// digits), ids whose bytes are all different, an int, a negative int, a
// double, a bool and a non-ASCII string among the attributes.
#ifndef LOUPE_TESTS_EXPORTERS_OTLP_ENCODING_OTLP_SAMPLES_H_
#define LOUPE_TESTS_EXPORTERS_OTLP_ENCODING_OTLP_SAMPLES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "decoders/model/metrics.h"
#include "decoders/model/span.h"

namespace loupe::otlp_samples {

inline std::shared_ptr<Resource> ProcessResource(const std::string& service, int64_t pid) {
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", service);
  resource->attributes.Set("process.pid", pid);
  resource->attributes.Set("host.name", "node-1");
  return resource;
}

inline TraceId SampleTraceId() {
  TraceId id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(0xa0 + i);
  return id;  // a0a1a2...af
}

// An nginx server span: root (no parent), OK, one attribute of each type.
inline Span ServerSpan(std::shared_ptr<const Resource> resource) {
  Span span;
  span.trace_id = SampleTraceId();
  span.span_id = {0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78};
  span.name = "GET /api/items/{id}";
  span.kind = SpanKind::kServer;
  span.start_unix_ns = 1'795'293'080'123'456'789ull;
  span.end_unix_ns = 1'795'293'080'124'691'356ull;
  span.status = StatusCode::kUnset;
  span.attributes.Set("http.request.method", "GET");
  span.attributes.Set("url.path", "/api/items/42");
  span.attributes.Set("http.route", "/api/items/{id}");
  span.attributes.Set("http.response.status_code", int64_t{200});
  span.attributes.Set("http.response.body.size", int64_t{-1});
  span.attributes.Set("loupe.ratio", 0.25);
  span.attributes.Set("loupe.truncated", true);
  span.attributes.Set("loupe.complete", false);
  span.attributes.Set("user_agent.original", "curl/7.88 \xc3\xa9t\xc3\xa9");  // "été"
  span.resource = std::move(resource);
  return span;
}

// A client span of the same trace, child of the server span, failed.
inline Span ClientSpan(std::shared_ptr<const Resource> resource) {
  Span span;
  span.trace_id = SampleTraceId();
  span.span_id = {0xf1, 0xe2, 0xd3, 0xc4, 0xb5, 0xa6, 0x97, 0x88};
  span.parent_span_id = {0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67, 0x78};
  span.name = "POST";
  span.kind = SpanKind::kClient;
  span.start_unix_ns = 1'795'293'080'123'500'000ull;
  span.end_unix_ns = 1'795'293'080'124'000'001ull;
  span.status = StatusCode::kError;
  span.status_message = "HTTP 503";
  span.attributes.Set("http.request.method", "POST");
  span.attributes.Set("server.address", "10.0.0.7");
  span.attributes.Set("server.port", int64_t{8080});
  span.attributes.Set("http.response.status_code", int64_t{503});
  span.resource = std::move(resource);
  return span;
}

inline std::shared_ptr<const std::vector<double>> DurationBounds() {
  return std::make_shared<const std::vector<double>>(
      std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1});
}

// Two resources; nginx has two series of the duration histogram and an
// (empty) body-size histogram with a zero-count point; curl has one series.
inline MetricsSnapshot Snapshot(Temporality temporality) {
  MetricsSnapshot snapshot;
  snapshot.time_unix_ns = 1'795'293'140'000'000'000ull;

  ResourceMetrics nginx;
  nginx.resource = ProcessResource("nginx", 3988);
  MetricData duration;
  duration.name = "http.server.request.duration";
  duration.description = "Duration of HTTP server requests.";
  duration.unit = "s";
  duration.temporality = temporality;
  duration.bounds = DurationBounds();
  HistogramPoint ok;
  ok.attributes.Set("http.request.method", "GET");
  ok.attributes.Set("http.route", "/api/items/{id}");
  ok.attributes.Set("http.response.status_code", int64_t{200});
  ok.start_unix_ns = 1'795'293'080'000'000'001ull;
  ok.time_unix_ns = 1'795'293'140'000'000'000ull;
  ok.count = 7;
  ok.sum = 0.0625;
  ok.min = 0.001;
  ok.max = 0.03125;
  ok.bucket_counts = {3, 2, 1, 1, 0, 0};
  duration.points.push_back(ok);
  HistogramPoint slow;
  slow.attributes.Set("http.request.method", "POST");
  slow.attributes.Set("http.response.status_code", int64_t{500});
  slow.start_unix_ns = 1'795'293'080'000'000'001ull;
  slow.time_unix_ns = 1'795'293'140'000'000'000ull;
  slow.count = 1;
  slow.sum = 12.5;
  slow.min = 12.5;
  slow.max = 12.5;
  slow.bucket_counts = {0, 0, 0, 0, 0, 1};
  duration.points.push_back(slow);
  nginx.metrics.push_back(duration);

  MetricData body;
  body.name = "http.server.response.body.size";
  body.description = "Size of HTTP server response bodies.";
  body.unit = "By";
  body.temporality = temporality;
  body.bounds = std::make_shared<const std::vector<double>>(std::vector<double>{100, 1000});
  HistogramPoint idle;
  idle.attributes.Set("http.request.method", "GET");
  idle.start_unix_ns = 1'795'293'080'000'000'001ull;
  idle.time_unix_ns = 1'795'293'140'000'000'000ull;
  idle.count = 0;
  idle.bucket_counts = {0, 0, 0};
  body.points.push_back(idle);
  nginx.metrics.push_back(body);
  snapshot.resources.push_back(nginx);

  ResourceMetrics curl;
  curl.resource = ProcessResource("curl", 4130);
  MetricData client;
  client.name = "http.client.request.duration";
  client.description = "Duration of HTTP client requests.";
  client.unit = "s";
  client.temporality = temporality;
  client.bounds = DurationBounds();
  HistogramPoint call;
  call.attributes.Set("http.request.method", "POST");
  call.attributes.Set("server.address", "10.0.0.7");
  call.attributes.Set("server.port", int64_t{8080});
  call.start_unix_ns = 1'795'293'080'000'000'001ull;
  call.time_unix_ns = 1'795'293'140'000'000'000ull;
  call.count = 2;
  call.sum = 0.5;
  call.min = 0.125;
  call.max = 0.375;
  call.bucket_counts = {0, 0, 0, 0, 0, 2};
  client.points.push_back(call);
  curl.metrics.push_back(client);
  snapshot.resources.push_back(curl);
  return snapshot;
}

// The agent's service graph counters: two monotonic sums, one with a point
// at 0 (a oneof member at 0 is still on the wire), and values that are
// exact integers as doubles.
inline MetricsSnapshot ServiceGraphSnapshot(Temporality temporality) {
  MetricsSnapshot snapshot;
  snapshot.time_unix_ns = 1'795'293'140'000'000'000ull;
  ResourceMetrics agent;
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "loupe");
  resource->attributes.Set("host.name", "node-1");
  agent.resource = resource;
  auto sum = [temporality](const char* name, const char* description, double shop_db,
                           double web_shop) {
    MetricData m;
    m.name = name;
    m.description = description;
    m.unit = "{request}";
    m.type = MetricType::kSum;
    m.temporality = temporality;
    m.monotonic = true;
    for (const auto& [client, server, value] :
         {std::tuple<const char*, const char*, double>{"shop", "db", shop_db},
          std::tuple<const char*, const char*, double>{"web", "shop", web_shop}}) {
      SumPoint p;
      p.attributes.Set("client", client);
      p.attributes.Set("server", server);
      p.start_unix_ns = 1'795'293'080'000'000'001ull;
      p.time_unix_ns = 1'795'293'140'000'000'000ull;
      p.value = value;
      m.sum_points.push_back(p);
    }
    return m;
  };
  agent.metrics.push_back(sum("traces_service_graph_request_total",
                              "Total count of requests between two nodes.", 9007199254740991.0,
                              1));
  agent.metrics.push_back(sum("traces_service_graph_request_failed_total",
                              "Total count of failed requests between two nodes.", 2, 0));
  snapshot.resources.push_back(agent);
  return snapshot;
}

}  // namespace loupe::otlp_samples

#endif  // LOUPE_TESTS_EXPORTERS_OTLP_ENCODING_OTLP_SAMPLES_H_
