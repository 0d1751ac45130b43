// The RED metric model (decoders/model/metrics.h): what a finished span
// records, where the points land, how series are bounded, and how
// cumulative and delta collections relate.
#include "decoders/model/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <variant>
#include <vector>

// Counts heap allocations so that the recording path can be shown to make
// none in steady state. Only counted while g_count_allocations is set.
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<uint64_t> g_allocations{0};
}  // namespace

// GCC 12 pairs the inlined free() below with the operator new calls it
// replaces and flags a mismatch that is not one: both sides are these.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace loupe {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 1'700'000'000 * kSecond;

// A clock the tests move by hand (series start times).
std::atomic<uint64_t> g_now{kT0};
uint64_t TestNow() { return g_now.load(); }

MetricsOptions TestOptions(size_t max_series = 2000) {
  MetricsOptions o;
  o.max_series = max_series;
  o.now_unix_ns = &TestNow;
  return o;
}

std::shared_ptr<const Resource> MakeResource(const std::string& service, int64_t pid) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", service);
  r->attributes.Set("process.pid", pid);
  r->attributes.Set("host.name", "node-1");
  return r;
}

struct SpanSpec {
  SpanKind kind = SpanKind::kServer;
  std::string method = "GET";
  int64_t status = 200;
  std::string route = "/api/items/{id}";
  uint64_t duration_ns = 3 * kMs;
  uint64_t end_ns = kT0;
  int64_t request_body = -1;  // -1: attribute absent
  int64_t response_body = -1;
  std::shared_ptr<const Resource> resource;
};

// A span shaped like the HTTP/1 decoder's (decoders/http1/http1_decoder.cc).
Span MakeSpan(const SpanSpec& s) {
  Span span;
  span.kind = s.kind;
  span.name = s.method + " " + s.route;
  span.start_unix_ns = s.end_ns - s.duration_ns;
  span.end_unix_ns = s.end_ns;
  Attributes& a = span.attributes;
  a.Set("http.request.method", s.method);
  a.Set("url.path", "/api/items/7");
  a.Set("http.route", s.route);
  a.Set("http.response.status_code", s.status);
  a.Set("server.address", "127.0.0.1");
  a.Set("server.port", int64_t{8080});
  if (s.kind == SpanKind::kServer) {
    a.Set("client.address", "127.0.0.1");
    a.Set("client.port", int64_t{40512});
  }
  a.Set("network.peer.address", "127.0.0.1");
  a.Set("network.peer.port", int64_t{40512});
  a.Set("network.protocol.version", "1.1");
  if (s.request_body >= 0) a.Set("http.request.body.size", s.request_body);
  if (s.response_body >= 0) a.Set("http.response.body.size", s.response_body);
  const bool error = s.status >= 500 || (s.kind == SpanKind::kClient && s.status >= 400);
  if (error) {
    span.status = StatusCode::kError;
    a.Set("error.type", std::to_string(s.status));
  }
  span.resource = s.resource ? s.resource : MakeResource("shop", 100);
  return span;
}

}  // namespace

// Readable failures.
void PrintTo(const Attributes& attributes, std::ostream* os) {
  *os << "{";
  for (const Attribute& a : attributes.items()) {
    *os << a.key << "=";
    std::visit([os](const auto& v) { *os << v; }, a.value);
    *os << " ";
  }
  *os << "}";
}

namespace {

const MetricData* FindMetric(const ResourceMetrics& rm, const std::string& name) {
  for (const MetricData& m : rm.metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

// The only point of `name` in a snapshot with one resource (a copy: callers
// pass temporaries).
HistogramPoint OnlyPoint(const MetricsSnapshot& s, const std::string& name) {
  const HistogramPoint kNone;
  EXPECT_EQ(s.resources.size(), 1u);
  if (s.resources.size() != 1) return kNone;
  const MetricData* m = FindMetric(s.resources[0], name);
  EXPECT_NE(m, nullptr) << name;
  if (m == nullptr) return kNone;
  EXPECT_EQ(m->points.size(), 1u) << name;
  return m->points.empty() ? kNone : m->points[0];
}

std::vector<uint64_t> OneIn(size_t bucket, size_t buckets) {
  std::vector<uint64_t> v(buckets, 0);
  v[bucket] = 1;
  return v;
}

TEST(MetricsBuckets, DurationBoundsAreTheConventionsAdvice) {
  EXPECT_THAT(DurationBucketsSeconds(), ElementsAre(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                                                    0.75, 1, 2.5, 5, 7.5, 10));
}

TEST(MetricsBuckets, BodySizeBoundsArePowersOfFourFromZeroTo64MiB) {
  const std::vector<double>& b = BodySizeBucketsBytes();
  ASSERT_GE(b.size(), 3u);
  EXPECT_EQ(b.front(), 0);
  EXPECT_EQ(b[1], 64);
  for (size_t i = 2; i < b.size(); ++i) EXPECT_EQ(b[i], b[i - 1] * 4) << i;
  EXPECT_EQ(b.back(), 64.0 * 1024 * 1024);
}

TEST(MetricsRecorder, DurationBucketUpperBoundIsInclusive) {
  const std::vector<double>& bounds = DurationBucketsSeconds();
  const size_t buckets = bounds.size() + 1;
  struct Case {
    uint64_t duration_ns;
    size_t bucket;
  };
  const std::vector<Case> cases = {
      {0, 0},                  // zero: first bucket
      {5 * kMs, 0},            // exactly 0.005: le="0.005"
      {5 * kMs + 1, 1},        // just above: next bucket
      {75 * kMs, 4},           // exactly 0.075
      {1 * kSecond, 9},        // exactly 1
      {10 * kSecond, 13},      // exactly the last bound
      {10 * kSecond + 1, 14},  // above every bound: +Inf
      {3600 * kSecond, 14},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.duration_ns);
    MetricsRecorder recorder(TestOptions());
    SpanSpec s;
    s.duration_ns = c.duration_ns;
    s.end_ns = kT0 + 3600 * kSecond;
    recorder.Record(MakeSpan(s));
    const HistogramPoint p =
        OnlyPoint(recorder.CollectCumulative(kT0 + 4000 * kSecond), "http.server.request.duration");
    EXPECT_EQ(p.bucket_counts, OneIn(c.bucket, buckets));
    EXPECT_DOUBLE_EQ(p.sum, static_cast<double>(c.duration_ns) / 1e9);
  }
}

TEST(MetricsRecorder, BodySizeBucketsIncludeTheirUpperBound) {
  const size_t buckets = BodySizeBucketsBytes().size() + 1;
  struct Case {
    int64_t bytes;
    size_t bucket;
  };
  for (const Case& c : std::vector<Case>{
           {0, 0}, {1, 1}, {64, 1}, {65, 2}, {4096, 4}, {64 << 20, 11}, {(64 << 20) + 1, 12}}) {
    SCOPED_TRACE(c.bytes);
    MetricsRecorder recorder(TestOptions());
    SpanSpec s;
    s.response_body = c.bytes;
    recorder.Record(MakeSpan(s));
    const HistogramPoint p =
        OnlyPoint(recorder.CollectCumulative(kT0), "http.server.response.body.size");
    EXPECT_EQ(p.bucket_counts, OneIn(c.bucket, buckets));
    EXPECT_EQ(p.sum, static_cast<double>(c.bytes));
  }
}

TEST(MetricsRecorder, CountSumMinMax) {
  MetricsRecorder recorder(TestOptions());
  for (uint64_t ms : {7, 2, 40, 11}) {
    SpanSpec s;
    s.duration_ns = ms * kMs;
    recorder.Record(MakeSpan(s));
  }
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0 + kSecond);
  const HistogramPoint p = OnlyPoint(snap, "http.server.request.duration");
  EXPECT_EQ(p.count, 4u);
  EXPECT_DOUBLE_EQ(p.sum, 0.060);
  EXPECT_DOUBLE_EQ(p.min, 0.002);
  EXPECT_DOUBLE_EQ(p.max, 0.040);
  EXPECT_TRUE(p.has_min_max);
  // 2 ms in (0, 5ms], 7 in (5, 10], 11 in (10, 25], 40 in (25, 50].
  EXPECT_THAT(p.bucket_counts, ElementsAre(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  const MetricData* m = FindMetric(snap.resources[0], "http.server.request.duration");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->unit, "s");
  EXPECT_FALSE(m->description.empty());
  EXPECT_EQ(m->temporality, Temporality::kCumulative);
  ASSERT_NE(m->bounds, nullptr);
  EXPECT_EQ(*m->bounds, DurationBucketsSeconds());
  EXPECT_EQ(recorder.stats().points_recorded, 4u);
  EXPECT_EQ(recorder.stats().series, 1u);
}

TEST(MetricsRecorder, ServerAttributesFollowTheConventions) {
  MetricsRecorder recorder(TestOptions());
  SpanSpec s;
  s.status = 503;
  recorder.Record(MakeSpan(s));
  const HistogramPoint p =
      OnlyPoint(recorder.CollectCumulative(kT0), "http.server.request.duration");
  // Schema order; no server.address (Opt-In for servers), url.scheme
  // (Required for servers), error.type from the failed span; nothing from
  // the span's high-cardinality attributes (url.path, client.*, peer).
  Attributes want;
  want.Set("http.request.method", "GET");
  want.Set("http.response.status_code", int64_t{503});
  want.Set("http.route", "/api/items/{id}");
  want.Set("url.scheme", "http");
  want.Set("server.port", int64_t{8080});
  want.Set("network.protocol.version", "1.1");
  want.Set("error.type", "503");
  EXPECT_EQ(p.attributes, want);
}

TEST(MetricsRecorder, ClientAttributesFollowTheConventions) {
  MetricsRecorder recorder(TestOptions());
  SpanSpec s;
  s.kind = SpanKind::kClient;
  s.status = 200;
  recorder.Record(MakeSpan(s));
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  const HistogramPoint p = OnlyPoint(snap, "http.client.request.duration");
  Attributes want;
  want.Set("http.request.method", "GET");
  want.Set("http.response.status_code", int64_t{200});
  want.Set("http.route", "/api/items/{id}");
  want.Set("server.address", "127.0.0.1");
  want.Set("server.port", int64_t{8080});
  want.Set("network.protocol.version", "1.1");
  EXPECT_EQ(p.attributes, want);
  EXPECT_EQ(FindMetric(snap.resources[0], "http.server.request.duration"), nullptr);
}

TEST(MetricsRecorder, ErrorTypeOnlyForFailedSpans) {
  MetricsRecorder recorder(TestOptions());
  // A 404 is not a server error: no error.type even if a span carried one.
  Span ok = MakeSpan(SpanSpec{.status = 404});
  ok.attributes.Set("error.type", "404");
  recorder.Record(ok);
  // A failed span without error.type gets _OTHER.
  Span failed = MakeSpan(SpanSpec{.status = 500});
  Attributes without;
  for (const Attribute& a : failed.attributes.items()) {
    if (a.key == "error.type") continue;
    std::visit([&](const auto& v) { without.Set(a.key, v); }, a.value);
  }
  failed.attributes = without;
  ASSERT_EQ(failed.status, StatusCode::kError);
  recorder.Record(failed);
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  const MetricData* m = FindMetric(snap.resources[0], "http.server.request.duration");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->points.size(), 2u);
  EXPECT_EQ(m->points[0].attributes.Find("error.type"), nullptr);
  ASSERT_NE(m->points[1].attributes.FindString("error.type"), nullptr);
  EXPECT_EQ(*m->points[1].attributes.FindString("error.type"), "_OTHER");
}

TEST(MetricsRecorder, EachAttributeSetIsItsOwnSeries) {
  MetricsRecorder recorder(TestOptions());
  recorder.Record(MakeSpan({.method = "GET", .status = 200}));
  recorder.Record(MakeSpan({.method = "GET", .status = 200}));
  recorder.Record(MakeSpan({.method = "POST", .status = 200}));
  recorder.Record(MakeSpan({.method = "GET", .status = 404}));
  recorder.Record(MakeSpan({.method = "GET", .status = 200, .route = "/health"}));
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  const MetricData* m = FindMetric(snap.resources[0], "http.server.request.duration");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->points.size(), 4u);
  // In order of creation.
  EXPECT_EQ(m->points[0].count, 2u);
  EXPECT_EQ(*m->points[1].attributes.FindString("http.request.method"), "POST");
  EXPECT_EQ(*m->points[2].attributes.FindInt("http.response.status_code"), 404);
  EXPECT_EQ(*m->points[3].attributes.FindString("http.route"), "/health");
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(m->points[i].count, 1u);
  EXPECT_EQ(recorder.stats().series, 4u);
}

TEST(MetricsRecorder, ResourcesAreSeparateAndIdentifiedByValue) {
  MetricsRecorder recorder(TestOptions());
  auto nginx = MakeResource("nginx", 10);
  auto nginx_reread = MakeResource("nginx", 10);    // same values, new object
  auto other_order = std::make_shared<Resource>();  // same values, other order
  other_order->attributes.Set("host.name", "node-1");
  other_order->attributes.Set("process.pid", int64_t{10});
  other_order->attributes.Set("service.name", "nginx");
  auto curl = MakeResource("curl", 11);
  recorder.Record(MakeSpan({.resource = nginx}));
  recorder.Record(MakeSpan({.kind = SpanKind::kClient, .resource = curl}));
  recorder.Record(MakeSpan({.resource = nginx_reread}));
  recorder.Record(MakeSpan({.resource = other_order}));
  nginx.reset();  // the recorder keeps what it needs
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 2u);
  EXPECT_EQ(snap.resources[0].resource->service_name(), "nginx");
  EXPECT_EQ(snap.resources[1].resource->service_name(), "curl");
  ASSERT_EQ(snap.resources[0].metrics.size(), 1u);
  EXPECT_EQ(snap.resources[0].metrics[0].name, "http.server.request.duration");
  EXPECT_EQ(snap.resources[0].metrics[0].points[0].count, 3u);
  ASSERT_EQ(snap.resources[1].metrics.size(), 1u);
  EXPECT_EQ(snap.resources[1].metrics[0].name, "http.client.request.duration");
  EXPECT_EQ(recorder.stats().resources, 2u);
}

TEST(MetricsRecorder, BodySizesOnlyWhenTheSpanHasThem) {
  MetricsRecorder recorder(TestOptions());
  recorder.Record(MakeSpan({.method = "POST", .request_body = 16, .response_body = 8}));
  recorder.Record(MakeSpan({.method = "GET", .response_body = 1234}));
  recorder.Record(MakeSpan({.method = "HEAD"}));
  recorder.Record(MakeSpan({.kind = SpanKind::kClient, .method = "POST", .request_body = 300000}));
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  const ResourceMetrics& rm = snap.resources[0];
  std::vector<std::string> names;
  for (const MetricData& m : rm.metrics) names.push_back(m.name);
  EXPECT_THAT(names, ElementsAre("http.server.request.duration", "http.server.request.body.size",
                                 "http.server.response.body.size", "http.client.request.duration",
                                 "http.client.request.body.size"));
  EXPECT_EQ(FindMetric(rm, "http.server.request.duration")->points.size(), 3u);
  const MetricData* req = FindMetric(rm, "http.server.request.body.size");
  ASSERT_EQ(req->points.size(), 1u);
  EXPECT_EQ(req->unit, "By");
  EXPECT_EQ(*req->bounds, BodySizeBucketsBytes());
  EXPECT_EQ(req->points[0].sum, 16);
  EXPECT_EQ(*req->points[0].attributes.FindString("http.request.method"), "POST");
  const MetricData* resp = FindMetric(rm, "http.server.response.body.size");
  ASSERT_EQ(resp->points.size(), 2u);
  EXPECT_EQ(resp->points[0].sum, 8);
  EXPECT_EQ(resp->points[1].sum, 1234);
  EXPECT_EQ(FindMetric(rm, "http.client.request.body.size")->points[0].sum, 300000);
  // 3 durations, 2 server bodies... one span of each kind per measurement.
  EXPECT_EQ(recorder.stats().points_recorded, 4u + 1u + 2u + 1u);
  EXPECT_EQ(recorder.stats().series, 3u + 1u + 2u + 1u + 1u);
}

TEST(MetricsRecorder, SpansOfOtherProtocolsAreIgnored) {
  MetricsRecorder recorder(TestOptions());
  Span span;
  span.kind = SpanKind::kClient;
  span.attributes.Set("db.system", "postgresql");
  span.resource = MakeResource("app", 1);
  recorder.Record(span);
  Span no_resource = MakeSpan({});
  no_resource.resource = nullptr;  // tolerated: an empty resource
  recorder.Record(no_resource);
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  EXPECT_TRUE(snap.resources[0].resource->attributes.empty());
  EXPECT_EQ(recorder.stats().points_recorded, 1u);
}

TEST(MetricsRecorder, OverflowAtTheBoundPerResource) {
  constexpr size_t kMax = 5;
  MetricsRecorder recorder(TestOptions(kMax));
  auto a = MakeResource("a", 1);
  auto b = MakeResource("b", 2);
  // Exactly kMax attribute sets fit (across resources: 3 in a, 2 in b).
  for (int i = 0; i < 3; ++i)
    recorder.Record(MakeSpan({.route = "/r" + std::to_string(i), .resource = a}));
  for (int i = 3; i < 5; ++i)
    recorder.Record(MakeSpan({.route = "/r" + std::to_string(i), .resource = b}));
  EXPECT_EQ(recorder.stats().overflow_points, 0u);
  EXPECT_EQ(recorder.stats().series, kMax);
  // Known series keep counting...
  recorder.Record(MakeSpan({.route = "/r0", .resource = a}));
  // ...new ones overflow into their resource's overflow series, body sizes
  // included.
  recorder.Record(MakeSpan({.route = "/new1", .resource = a}));
  recorder.Record(MakeSpan({.route = "/new2", .response_body = 10, .resource = a}));
  recorder.Record(MakeSpan({.route = "/new3", .resource = b}));
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.overflow_points, 4u);
  EXPECT_EQ(stats.dropped_points, 0u);
  // 5 regular + 2 overflow durations + 1 overflow body size.
  EXPECT_EQ(stats.series, kMax + 3);

  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 2u);
  const MetricData* da = FindMetric(snap.resources[0], "http.server.request.duration");
  ASSERT_NE(da, nullptr);
  ASSERT_EQ(da->points.size(), 4u);
  EXPECT_EQ(da->points[0].count, 2u);  // /r0
  const HistogramPoint& overflow_a = da->points.back();
  Attributes overflow;
  overflow.Set("otel.metric.overflow", true);
  EXPECT_EQ(overflow_a.attributes, overflow);
  EXPECT_EQ(overflow_a.count, 2u);
  const MetricData* db = FindMetric(snap.resources[1], "http.server.request.duration");
  ASSERT_EQ(db->points.size(), 3u);
  EXPECT_EQ(db->points.back().attributes, overflow);
  EXPECT_EQ(db->points.back().count, 1u);
  const MetricData* body = FindMetric(snap.resources[0], "http.server.response.body.size");
  ASSERT_NE(body, nullptr);
  ASSERT_EQ(body->points.size(), 1u);
  EXPECT_EQ(body->points[0].attributes, overflow);
}

TEST(MetricsRecorder, OverflowSeriesAreBoundedToo) {
  // One regular series and at most one overflow series: a third resource's
  // new attribute set has nowhere to go and is dropped, counted.
  MetricsRecorder recorder(TestOptions(1));
  recorder.Record(MakeSpan({.resource = MakeResource("a", 1)}));
  recorder.Record(MakeSpan({.route = "/x", .resource = MakeResource("b", 2)}));
  recorder.Record(MakeSpan({.route = "/y", .response_body = 5, .resource = MakeResource("c", 3)}));
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.overflow_points, 1u);
  EXPECT_EQ(stats.dropped_points, 2u);
  EXPECT_EQ(stats.points_recorded, 4u);
  EXPECT_EQ(recorder.CollectCumulative(kT0).resources.size(), 2u);
}

TEST(MetricsRecorder, IdleSeriesMakeRoomWhenFull) {
  MetricsOptions options = TestOptions(2);
  options.idle_series_ns = 60 * kSecond;
  MetricsRecorder recorder(options);
  auto gone = MakeResource("exited", 1);
  auto live = MakeResource("live", 2);
  recorder.Record(MakeSpan({.route = "/a", .end_ns = kT0, .resource = gone}));
  recorder.Record(MakeSpan({.route = "/b", .end_ns = kT0 + 50 * kSecond, .resource = live}));
  // Full, and nothing idle long enough yet: overflow.
  recorder.Record(MakeSpan({.route = "/c", .end_ns = kT0 + 59 * kSecond, .resource = live}));
  EXPECT_EQ(recorder.stats().overflow_points, 1u);
  // 61 s after /a's last point it goes, with its resource.
  recorder.Record(MakeSpan({.route = "/d", .end_ns = kT0 + 61 * kSecond, .resource = live}));
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.series_evicted, 1u);
  EXPECT_EQ(stats.overflow_points, 1u);
  EXPECT_EQ(stats.resources, 1u);
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0 + 62 * kSecond);
  ASSERT_EQ(snap.resources.size(), 1u);
  EXPECT_EQ(snap.resources[0].resource->service_name(), "live");
  const MetricData* m = FindMetric(snap.resources[0], "http.server.request.duration");
  ASSERT_EQ(m->points.size(), 3u);  // /b, /d, overflow
  EXPECT_EQ(*m->points[0].attributes.FindString("http.route"), "/b");
  EXPECT_EQ(*m->points[1].attributes.FindString("http.route"), "/d");
  // The exited process coming back is a new series with a new start (and
  // everything idle since goes, except /b which saw a point recently).
  recorder.Record(MakeSpan({.route = "/b", .end_ns = kT0 + 190 * kSecond, .resource = live}));
  g_now = kT0 + 70 * kSecond;
  recorder.Record(MakeSpan({.route = "/a", .end_ns = kT0 + 200 * kSecond, .resource = gone}));
  const MetricsSnapshot later = recorder.CollectCumulative(kT0 + 201 * kSecond);
  ASSERT_EQ(later.resources.size(), 2u);
  EXPECT_EQ(later.resources[0].resource->service_name(), "live");
  EXPECT_EQ(FindMetric(later.resources[0], "http.server.request.duration")->points.size(), 1u);
  EXPECT_EQ(recorder.stats().series_evicted, 1u + 2u);
  const HistogramPoint& again =
      FindMetric(later.resources[1], "http.server.request.duration")->points[0];
  EXPECT_EQ(again.count, 1u);
  EXPECT_EQ(again.start_unix_ns, kT0 + 70 * kSecond);
  g_now = kT0;
}

TEST(MetricsRecorder, CumulativeStartIsSeriesCreation) {
  MetricsRecorder recorder(TestOptions());
  g_now = kT0 + 5 * kSecond;
  recorder.Record(MakeSpan({.route = "/first"}));
  g_now = kT0 + 9 * kSecond;
  recorder.Record(MakeSpan({.route = "/second"}));
  recorder.Record(MakeSpan({.route = "/first"}));
  g_now = kT0;
  for (uint64_t at : {kT0 + 10 * kSecond, kT0 + 20 * kSecond}) {
    const MetricsSnapshot snap = recorder.CollectCumulative(at);
    EXPECT_EQ(snap.time_unix_ns, at);
    const MetricData* m = FindMetric(snap.resources[0], "http.server.request.duration");
    ASSERT_EQ(m->points.size(), 2u);
    EXPECT_EQ(m->points[0].start_unix_ns, kT0 + 5 * kSecond);
    EXPECT_EQ(m->points[0].time_unix_ns, at);
    EXPECT_EQ(m->points[0].count, 2u);
    EXPECT_EQ(m->points[1].start_unix_ns, kT0 + 9 * kSecond);
  }
}

TEST(DeltaReader, DeltasBetweenCollections) {
  MetricsRecorder recorder(TestOptions());
  DeltaReader reader;
  g_now = kT0 + 1 * kSecond;
  recorder.Record(MakeSpan({.route = "/a", .duration_ns = 3 * kMs}));
  recorder.Record(MakeSpan({.route = "/a", .duration_ns = 30 * kMs}));

  // First collection: everything so far, from the series' start.
  MetricsSnapshot d1 = reader.Collect(recorder, kT0 + 10 * kSecond);
  {
    const HistogramPoint p = OnlyPoint(d1, "http.server.request.duration");
    EXPECT_EQ(FindMetric(d1.resources[0], "http.server.request.duration")->temporality,
              Temporality::kDelta);
    EXPECT_EQ(p.start_unix_ns, kT0 + 1 * kSecond);
    EXPECT_EQ(p.time_unix_ns, kT0 + 10 * kSecond);
    EXPECT_EQ(p.count, 2u);
    EXPECT_DOUBLE_EQ(p.sum, 0.033);
    EXPECT_TRUE(p.has_min_max);
    EXPECT_DOUBLE_EQ(p.min, 0.003);
    EXPECT_DOUBLE_EQ(p.max, 0.030);
  }
  // Nothing new: nothing reported.
  EXPECT_TRUE(reader.Collect(recorder, kT0 + 20 * kSecond).resources.empty());

  // New points on /a and a new series /b.
  recorder.Record(MakeSpan({.route = "/a", .duration_ns = 7 * kMs}));
  recorder.Record(MakeSpan({.route = "/a", .duration_ns = 8 * kMs}));
  g_now = kT0 + 25 * kSecond;
  recorder.Record(MakeSpan({.route = "/b", .duration_ns = 2 * kSecond}));
  MetricsSnapshot d3 = reader.Collect(recorder, kT0 + 30 * kSecond);
  ASSERT_EQ(d3.resources.size(), 1u);
  const MetricData* m = FindMetric(d3.resources[0], "http.server.request.duration");
  ASSERT_EQ(m->points.size(), 2u);
  const HistogramPoint& a = m->points[0];
  EXPECT_EQ(a.start_unix_ns, kT0 + 20 * kSecond);  // the previous collection
  EXPECT_EQ(a.count, 2u);
  EXPECT_DOUBLE_EQ(a.sum, 0.015);
  EXPECT_TRUE(a.has_min_max);
  EXPECT_DOUBLE_EQ(a.min, 0.007);  // not 0.003: since the previous collection
  EXPECT_DOUBLE_EQ(a.max, 0.008);
  EXPECT_THAT(a.bucket_counts, ElementsAre(0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  const HistogramPoint& b = m->points[1];
  EXPECT_EQ(b.start_unix_ns, kT0 + 25 * kSecond);  // created since
  EXPECT_EQ(b.count, 1u);
  EXPECT_DOUBLE_EQ(b.min, 2.0);

  // The cumulative view is untouched by delta readers.
  const MetricsSnapshot cumulative = recorder.CollectCumulative(kT0 + 31 * kSecond);
  const MetricData* c = FindMetric(cumulative.resources[0], "http.server.request.duration");
  EXPECT_EQ(c->points[0].count, 4u);
  EXPECT_DOUBLE_EQ(c->points[0].min, 0.003);
  EXPECT_THAT(c->points[0].bucket_counts, ElementsAre(1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  g_now = kT0;
}

TEST(DeltaReader, ReadersAreIndependent) {
  MetricsRecorder recorder(TestOptions());
  DeltaReader fast, slow;
  recorder.Record(MakeSpan({.duration_ns = 1 * kMs}));
  EXPECT_EQ(OnlyPoint(fast.Collect(recorder, kT0 + 1), "http.server.request.duration").count, 1u);
  recorder.Record(MakeSpan({.duration_ns = 100 * kMs}));
  const HistogramPoint f =
      OnlyPoint(fast.Collect(recorder, kT0 + 2), "http.server.request.duration");
  EXPECT_EQ(f.count, 1u);
  EXPECT_DOUBLE_EQ(f.min, 0.1);
  recorder.Record(MakeSpan({.duration_ns = 50 * kMs}));
  const HistogramPoint s =
      OnlyPoint(slow.Collect(recorder, kT0 + 3), "http.server.request.duration");
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.min, 0.001);
  EXPECT_DOUBLE_EQ(s.max, 0.1);
  const HistogramPoint f3 =
      OnlyPoint(fast.Collect(recorder, kT0 + 4), "http.server.request.duration");
  EXPECT_EQ(f3.count, 1u);
  EXPECT_DOUBLE_EQ(f3.min, 0.05);
  EXPECT_DOUBLE_EQ(f3.max, 0.05);
}

TEST(DeltaReader, ReadersBeyondTheMinMaxSlotsGetNoMinMax) {
  MetricsRecorder recorder(TestOptions());
  std::vector<DeltaReader> readers(MetricsRecorder::kMaxDeltaReadersWithMinMax + 1);
  recorder.Record(MakeSpan({}));
  for (DeltaReader& r : readers) r.Collect(recorder, kT0 + 1);
  recorder.Record(MakeSpan({}));
  for (size_t i = 0; i < readers.size(); ++i) {
    const HistogramPoint p =
        OnlyPoint(readers[i].Collect(recorder, kT0 + 2), "http.server.request.duration");
    EXPECT_EQ(p.count, 1u);
    EXPECT_EQ(p.has_min_max, i < readers.size() - 1) << i;
  }
  // A slot handed back is taken by the next reader that asks (from its
  // following collection on).
  readers.front() = DeltaReader();
  recorder.Record(MakeSpan({}));
  EXPECT_FALSE(OnlyPoint(readers.back().Collect(recorder, kT0 + 3), "http.server.request.duration")
                   .has_min_max);
  recorder.Record(MakeSpan({}));
  EXPECT_TRUE(OnlyPoint(readers.back().Collect(recorder, kT0 + 4), "http.server.request.duration")
                  .has_min_max);
}

TEST(DeltaReader, ReaderOutlivingItsRecorder) {
  DeltaReader reader;
  {
    MetricsRecorder recorder(TestOptions());
    recorder.Record(MakeSpan({}));
    reader.Collect(recorder, kT0);
  }
  MetricsRecorder other(TestOptions());
  other.Record(MakeSpan({}));
  // A different recorder: starts afresh (everything is new).
  EXPECT_EQ(OnlyPoint(reader.Collect(other, kT0 + 1), "http.server.request.duration").count, 1u);
}

TEST(MetricsRecorder, NoAllocationPerPointInSteadyState) {
  MetricsRecorder recorder(TestOptions());
  std::vector<Span> spans;
  for (int i = 0; i < 50; ++i) {
    spans.push_back(MakeSpan({.kind = i % 2 ? SpanKind::kClient : SpanKind::kServer,
                              .status = 200 + i % 3,
                              .route = "/route/" + std::to_string(i % 10),
                              .request_body = 10,
                              .response_body = 1000,
                              .resource = MakeResource("svc", i % 4)}));
  }
  for (const Span& s : spans) recorder.Record(s);  // creates every series
  g_allocations = 0;
  g_count_allocations = true;
  for (int round = 0; round < 20; ++round) {
    for (const Span& s : spans) recorder.Record(s);
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocations.load(), 0u);
  EXPECT_EQ(recorder.stats().points_recorded, 21u * 50u * 3u);
}

TEST(MetricsRecorder, ConcurrentRecordAndCollect) {
  MetricsRecorder recorder(TestOptions(64));
  constexpr int kSpans = 20000;
  std::atomic<bool> done{false};
  uint64_t delta_total = 0;
  DeltaReader delta;
  std::thread delta_thread([&] {
    uint64_t t = kT0;
    while (!done.load()) {
      for (const ResourceMetrics& rm : delta.Collect(recorder, ++t).resources) {
        for (const MetricData& m : rm.metrics) {
          if (m.name != "http.server.request.duration") continue;
          for (const HistogramPoint& p : m.points) delta_total += p.count;
        }
      }
    }
  });
  std::thread cumulative_thread([&] {
    uint64_t last = 0;
    while (!done.load()) {
      uint64_t total = 0;
      for (const ResourceMetrics& rm : recorder.CollectCumulative(kT0).resources) {
        const MetricData* m = FindMetric(rm, "http.server.request.duration");
        if (m == nullptr) continue;
        for (const HistogramPoint& p : m->points) {
          uint64_t in_buckets = 0;
          for (uint64_t c : p.bucket_counts) in_buckets += c;
          EXPECT_EQ(in_buckets, p.count);  // never a torn point
          total += p.count;
        }
      }
      EXPECT_GE(total, last);  // cumulative never goes back
      last = total;
      recorder.stats();
    }
  });
  for (int i = 0; i < kSpans; ++i) {
    recorder.Record(MakeSpan(
        {.route = "/r" + std::to_string(i % 100), .resource = MakeResource("svc", i % 3)}));
  }
  done = true;
  delta_thread.join();
  cumulative_thread.join();
  // What the delta reader has not seen yet.
  for (const ResourceMetrics& rm : delta.Collect(recorder, kT0 + kSpans * 10).resources) {
    const MetricData* m = FindMetric(rm, "http.server.request.duration");
    if (m == nullptr) continue;
    for (const HistogramPoint& p : m->points) delta_total += p.count;
  }
  EXPECT_EQ(delta_total, static_cast<uint64_t>(kSpans));
  EXPECT_EQ(recorder.stats().points_recorded, static_cast<uint64_t>(kSpans));
  EXPECT_GT(recorder.stats().overflow_points, 0u);  // 300 attribute sets, 64 fit
}

}  // namespace
}  // namespace loupe

namespace loupe {
namespace {

// A span shaped like the HTTP/2 decoder's gRPC spans.
Span MakeRpcSpan(SpanKind kind, const std::string& method, int64_t grpc_status,
                 uint64_t duration_ns) {
  Span span;
  span.kind = kind;
  span.name = "loupe.test.Echo/" + method;
  span.end_unix_ns = kT0;
  span.start_unix_ns = kT0 - duration_ns;
  Attributes& a = span.attributes;
  a.Set("rpc.system", "grpc");
  a.Set("rpc.service", "loupe.test.Echo");
  a.Set("rpc.method", method);
  a.Set("rpc.grpc.status_code", grpc_status);
  a.Set("server.address", "127.0.0.1");
  a.Set("server.port", int64_t{50051});
  a.Set("network.peer.address", "127.0.0.1");
  a.Set("network.protocol.version", "2");
  if (grpc_status != 0 && (kind == SpanKind::kClient || grpc_status == 13)) {
    span.status = StatusCode::kError;
  }
  span.resource = MakeResource("echo", 300);
  return span;
}

TEST(MetricsRecorder, RpcSpansFeedRpcDurationInMilliseconds) {
  EXPECT_EQ(RpcDurationBucketsMilliseconds(),
            (std::vector<double>{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000,
                                 7500, 10000}));
  MetricsRecorder recorder(TestOptions());
  recorder.Record(MakeRpcSpan(SpanKind::kServer, "Unary", 0, 7 * kMs));
  const HistogramPoint p = OnlyPoint(recorder.CollectCumulative(kT0), "rpc.server.duration");
  EXPECT_EQ(p.count, 1u);
  EXPECT_DOUBLE_EQ(p.sum, 7.0);  // milliseconds
  EXPECT_EQ(p.bucket_counts, OneIn(2, 16));  // (5, 10]
  Attributes expected;
  expected.Set("rpc.system", "grpc");
  expected.Set("rpc.service", "loupe.test.Echo");
  expected.Set("rpc.method", "Unary");
  expected.Set("rpc.grpc.status_code", int64_t{0});
  expected.Set("server.port", int64_t{50051});
  expected.Set("network.protocol.version", "2");
  EXPECT_EQ(p.attributes, expected);  // no server.address on the server side, no error.type
  const MetricsSnapshot s = recorder.CollectCumulative(kT0);
  const MetricData* m = FindMetric(s.resources[0], "rpc.server.duration");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->unit, "ms");
  // HTTP instruments stay absent: an RPC span is not an HTTP measurement.
  EXPECT_EQ(FindMetric(s.resources[0], "http.server.request.duration"), nullptr);
}

TEST(MetricsRecorder, RpcClientFailuresCarryErrorTypeAndStatus) {
  MetricsRecorder recorder(TestOptions());
  recorder.Record(MakeRpcSpan(SpanKind::kClient, "Unary", 0, 2 * kMs));
  recorder.Record(MakeRpcSpan(SpanKind::kClient, "Unary", 5, 2 * kMs));
  recorder.Record(MakeRpcSpan(SpanKind::kClient, "Unary", 5, 2 * kMs));
  const MetricsSnapshot s = recorder.CollectCumulative(kT0);
  ASSERT_EQ(s.resources.size(), 1u);
  const MetricData* m = FindMetric(s.resources[0], "rpc.client.duration");
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->points.size(), 2u);
  std::map<int64_t, uint64_t> by_status;
  for (const HistogramPoint& p : m->points) {
    const int64_t status = *p.attributes.FindInt("rpc.grpc.status_code");
    by_status[status] += p.count;
    EXPECT_EQ(*p.attributes.FindString("server.address"), "127.0.0.1");
    if (status == 0) {
      EXPECT_EQ(p.attributes.Find("error.type"), nullptr);
    } else {
      EXPECT_EQ(*p.attributes.FindString("error.type"), "_OTHER");
    }
  }
  EXPECT_EQ(by_status[0], 1u);
  EXPECT_EQ(by_status[5], 2u);
}

}  // namespace
}  // namespace loupe

namespace loupe {
namespace {

TEST(MetricsRecorder, DatabaseClientSpansFeedOperationDuration) {
  MetricsRecorder recorder(TestOptions());
  auto db_span = [](SpanKind kind, const std::string& status, bool error) {
    Span span;
    span.kind = kind;
    span.name = "SELECT orders";
    span.end_unix_ns = kT0;
    span.start_unix_ns = kT0 - 20 * kMs;
    span.attributes.Set("db.system.name", "postgresql");
    span.attributes.Set("db.namespace", "shop");
    span.attributes.Set("db.operation.name", "SELECT");
    span.attributes.Set("db.collection.name", "orders");
    span.attributes.Set("db.query.text", "SELECT * FROM orders WHERE id = ?");
    if (!status.empty()) span.attributes.Set("db.response.status_code", status);
    span.attributes.Set("server.address", "127.0.0.1");
    span.attributes.Set("server.port", int64_t{5432});
    if (error) {
      span.status = StatusCode::kError;
      span.attributes.Set("error.type", status);
    }
    span.resource = MakeResource("api", 7);
    return span;
  };
  recorder.Record(db_span(SpanKind::kClient, "", false));
  recorder.Record(db_span(SpanKind::kClient, "42P01", true));
  recorder.Record(db_span(SpanKind::kServer, "", false));  // the database's own side: none
  const MetricsSnapshot s = recorder.CollectCumulative(kT0);
  ASSERT_EQ(s.resources.size(), 1u);
  const MetricData* m = FindMetric(s.resources[0], "db.client.operation.duration");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->unit, "s");
  EXPECT_EQ(*m->bounds, DbDurationBucketsSeconds());
  ASSERT_EQ(m->points.size(), 2u);
  uint64_t total = 0;
  for (const HistogramPoint& p : m->points) {
    total += p.count;
    EXPECT_EQ(*p.attributes.FindString("db.system.name"), "postgresql");
    EXPECT_EQ(*p.attributes.FindString("db.operation.name"), "SELECT");
    EXPECT_EQ(*p.attributes.FindString("db.collection.name"), "orders");
    EXPECT_EQ(p.attributes.Find("db.query.text"), nullptr);  // never a metric label
    if (const std::string* code = p.attributes.FindString("db.response.status_code")) {
      EXPECT_EQ(*code, "42P01");
      EXPECT_EQ(*p.attributes.FindString("error.type"), "42P01");
    }
  }
  EXPECT_EQ(total, 2u);
}

// ---- Service graph ------------------------------------------------------------

constexpr char kGraphTotal[] = "traces_service_graph_request_total";
constexpr char kGraphFailed[] = "traces_service_graph_request_failed_total";
constexpr char kGraphServer[] = "traces_service_graph_request_server_seconds";
constexpr char kGraphClient[] = "traces_service_graph_request_client_seconds";

ServiceGraphEdge Edge(const std::string& client, const std::string& server, bool failed = false,
                      double client_seconds = 0.05, double server_seconds = 0.04) {
  ServiceGraphEdge edge;
  edge.client = client;
  edge.server = server;
  edge.failed = failed;
  edge.client_seconds = client_seconds;
  edge.server_seconds = server_seconds;
  return edge;
}

Attributes Pair(const std::string& client, const std::string& server) {
  Attributes a;
  a.Set("client", client);
  a.Set("server", server);
  return a;
}

// The sum series of `name` whose attributes are `attributes` (nullptr: none).
const SumPoint* FindSum(const ResourceMetrics& rm, const std::string& name,
                        const Attributes& attributes) {
  const MetricData* m = FindMetric(rm, name);
  if (m == nullptr) return nullptr;
  for (const SumPoint& p : m->sum_points) {
    if (p.attributes == attributes) return &p;
  }
  return nullptr;
}

const HistogramPoint* FindHistogram(const ResourceMetrics& rm, const std::string& name,
                                    const Attributes& attributes) {
  const MetricData* m = FindMetric(rm, name);
  if (m == nullptr) return nullptr;
  for (const HistogramPoint& p : m->points) {
    if (p.attributes == attributes) return &p;
  }
  return nullptr;
}

TEST(ServiceGraph, BucketsAreTemposDefault) {
  EXPECT_THAT(ServiceGraphBucketsSeconds(), ElementsAre(0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8));
}

TEST(ServiceGraph, FourInstrumentsPerPair) {
  MetricsRecorder recorder(TestOptions());
  g_now = kT0 + 3 * kSecond;
  recorder.RecordServiceGraphEdge(Edge("shop", "db", false, 0.05, 0.04));
  recorder.RecordServiceGraphEdge(Edge("shop", "db", true, 0.3, 0.2));
  recorder.RecordServiceGraphEdge(Edge("shop", "db", false, 20, 12.8));
  recorder.RecordServiceGraphEdge(Edge("web", "shop", false, 0.1, 0.1));
  g_now = kT0;

  const MetricsSnapshot snap = recorder.CollectCumulative(kT0 + 10 * kSecond);
  ASSERT_EQ(snap.resources.size(), 1u);
  const ResourceMetrics& rm = snap.resources[0];
  // The agent's own resource by default: just service.name="loupe".
  Attributes loupe;
  loupe.Set("service.name", "loupe");
  EXPECT_EQ(rm.resource->attributes, loupe);

  std::vector<std::string> names;
  for (const MetricData& m : rm.metrics) names.push_back(m.name);
  EXPECT_THAT(names, ElementsAre(kGraphTotal, kGraphFailed, kGraphServer, kGraphClient));

  const MetricData* total = FindMetric(rm, kGraphTotal);
  ASSERT_NE(total, nullptr);
  EXPECT_EQ(total->type, MetricType::kSum);
  EXPECT_TRUE(total->monotonic);
  EXPECT_EQ(total->temporality, Temporality::kCumulative);
  EXPECT_EQ(total->unit, "{request}");
  EXPECT_TRUE(total->points.empty());
  EXPECT_EQ(total->point_count(), 2u);
  ASSERT_EQ(total->sum_points.size(), 2u);
  // Series in creation order; exactly `client` and `server`.
  EXPECT_EQ(total->sum_points[0].attributes, Pair("shop", "db"));
  EXPECT_EQ(total->sum_points[0].value, 3);
  EXPECT_EQ(total->sum_points[0].start_unix_ns, kT0 + 3 * kSecond);
  EXPECT_EQ(total->sum_points[0].time_unix_ns, kT0 + 10 * kSecond);
  EXPECT_EQ(total->sum_points[1].attributes, Pair("web", "shop"));
  EXPECT_EQ(total->sum_points[1].value, 1);

  const MetricData* failed = FindMetric(rm, kGraphFailed);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->type, MetricType::kSum);
  EXPECT_TRUE(failed->monotonic);
  ASSERT_EQ(failed->sum_points.size(), 2u);
  EXPECT_EQ(failed->sum_points[0].attributes, Pair("shop", "db"));
  EXPECT_EQ(failed->sum_points[0].value, 1);
  // Never failed, yet there at 0: failed / total is defined.
  EXPECT_EQ(failed->sum_points[1].attributes, Pair("web", "shop"));
  EXPECT_EQ(failed->sum_points[1].value, 0);

  const MetricData* server = FindMetric(rm, kGraphServer);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->type, MetricType::kHistogram);
  EXPECT_EQ(server->unit, "s");
  EXPECT_EQ(*server->bounds, ServiceGraphBucketsSeconds());
  ASSERT_EQ(server->points.size(), 2u);
  const HistogramPoint& s = server->points[0];
  EXPECT_EQ(s.attributes, Pair("shop", "db"));
  EXPECT_EQ(s.count, 3u);
  EXPECT_DOUBLE_EQ(s.sum, 0.04 + 0.2 + 12.8);
  EXPECT_DOUBLE_EQ(s.min, 0.04);
  EXPECT_DOUBLE_EQ(s.max, 12.8);
  // 0.04 in (-inf, 0.1], 0.2 exactly a bound: (0.1, 0.2], 12.8 the last
  // bound: (6.4, 12.8].
  EXPECT_THAT(s.bucket_counts, ElementsAre(1, 1, 0, 0, 0, 0, 0, 1, 0));
  EXPECT_THAT(server->points[1].bucket_counts, ElementsAre(1, 0, 0, 0, 0, 0, 0, 0, 0));

  const MetricData* client = FindMetric(rm, kGraphClient);
  ASSERT_NE(client, nullptr);
  ASSERT_EQ(client->points.size(), 2u);
  const HistogramPoint& c = client->points[0];
  EXPECT_EQ(c.attributes, Pair("shop", "db"));
  EXPECT_EQ(c.count, 3u);
  EXPECT_DOUBLE_EQ(c.sum, 0.05 + 0.3 + 20);
  // 0.3 in (0.2, 0.4]; 20 s above every bound: +Inf.
  EXPECT_THAT(c.bucket_counts, ElementsAre(1, 0, 1, 0, 0, 0, 0, 0, 1));

  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.points_recorded, 3u + 4u + 3u + 3u);
  EXPECT_EQ(stats.series, 2u * 4u);
  EXPECT_EQ(stats.resources, 1u);
  EXPECT_EQ(stats.overflow_points, 0u);
}

TEST(ServiceGraph, DurationsThatAreNoneCountAsZero) {
  MetricsRecorder recorder(TestOptions());
  recorder.RecordServiceGraphEdge(Edge("a", "b", false, -1, std::nan("")));
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  for (const char* name : {kGraphServer, kGraphClient}) {
    const HistogramPoint* p = FindHistogram(snap.resources[0], name, Pair("a", "b"));
    ASSERT_NE(p, nullptr) << name;
    EXPECT_EQ(p->count, 1u);
    EXPECT_EQ(p->sum, 0);
    EXPECT_EQ(p->bucket_counts[0], 1u);
  }
}

TEST(ServiceGraph, ResourceIsTheAgentsOwnNotATracedProcess) {
  MetricsRecorder recorder(TestOptions());
  auto agent = std::make_shared<Resource>();
  agent->attributes.Set("service.name", "loupe");
  agent->attributes.Set("service.instance.id", "node-1");
  agent->attributes.Set("host.name", "node-1");
  recorder.SetServiceGraphResource(agent);
  recorder.Record(MakeSpan({.resource = MakeResource("shop", 100)}));
  recorder.RecordServiceGraphEdge(Edge("shop", "db"));
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 2u);
  EXPECT_EQ(snap.resources[0].resource->service_name(), "shop");
  EXPECT_EQ(FindMetric(snap.resources[0], kGraphTotal), nullptr);
  EXPECT_EQ(snap.resources[1].resource->attributes, agent->attributes);
  ASSERT_NE(FindSum(snap.resources[1], kGraphTotal, Pair("shop", "db")), nullptr);
  EXPECT_EQ(FindMetric(snap.resources[1], "http.server.request.duration"), nullptr);

  // nullptr: back to the default, for series made from then on.
  MetricsRecorder other(TestOptions());
  other.SetServiceGraphResource(agent);
  other.SetServiceGraphResource(nullptr);
  other.RecordServiceGraphEdge(Edge("a", "b"));
  const MetricsSnapshot s2 = other.CollectCumulative(kT0);
  ASSERT_EQ(s2.resources.size(), 1u);
  EXPECT_EQ(s2.resources[0].resource->service_name(), "loupe");
  EXPECT_EQ(s2.resources[0].resource->attributes.size(), 1u);
}

TEST(ServiceGraph, PairsBeyondMaxSeriesOverflow) {
  MetricsRecorder recorder(TestOptions(2));
  recorder.RecordServiceGraphEdge(Edge("a", "b"));
  recorder.RecordServiceGraphEdge(Edge("b", "c"));
  recorder.RecordServiceGraphEdge(Edge("c", "d", true));  // a third pair: overflow
  recorder.RecordServiceGraphEdge(Edge("d", "e"));        // and a fourth
  recorder.RecordServiceGraphEdge(Edge("a", "b"));        // known pairs keep counting
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.points_recorded, 3u + 3u + 4u + 3u + 3u);
  EXPECT_EQ(stats.overflow_points, 4u + 3u);
  EXPECT_EQ(stats.dropped_points, 0u);
  EXPECT_EQ(stats.series, 3u * 4u);  // two pairs and the overflow series
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0);
  ASSERT_EQ(snap.resources.size(), 1u);
  const ResourceMetrics& rm = snap.resources[0];
  Attributes overflow;
  overflow.Set("otel.metric.overflow", true);
  ASSERT_EQ(FindMetric(rm, kGraphTotal)->sum_points.size(), 3u);
  EXPECT_EQ(FindSum(rm, kGraphTotal, Pair("a", "b"))->value, 2);
  EXPECT_EQ(FindSum(rm, kGraphTotal, overflow)->value, 2);
  EXPECT_EQ(FindSum(rm, kGraphFailed, overflow)->value, 1);
  EXPECT_EQ(FindHistogram(rm, kGraphServer, overflow)->count, 2u);
  EXPECT_EQ(FindHistogram(rm, kGraphClient, overflow)->count, 2u);
  EXPECT_EQ(FindSum(rm, kGraphTotal, Pair("c", "d")), nullptr);

  // The RED tables are separate: a full service graph table does not
  // overflow HTTP series.
  recorder.Record(MakeSpan({}));
  EXPECT_EQ(recorder.stats().overflow_points, 7u);
}

TEST(ServiceGraph, IdlePairsGoInSpanTime) {
  MetricsOptions options = TestOptions(1);
  options.idle_series_ns = 60 * kSecond;
  MetricsRecorder recorder(options);
  // Edges carry no time: they count as measured at the newest span end.
  recorder.Record(MakeSpan({.end_ns = kT0}));
  recorder.RecordServiceGraphEdge(Edge("a", "b"));
  recorder.Record(MakeSpan({.end_ns = kT0 + 59 * kSecond}));
  recorder.RecordServiceGraphEdge(Edge("c", "d"));  // not idle yet: overflow
  EXPECT_EQ(recorder.stats().overflow_points, 3u);
  recorder.Record(MakeSpan({.end_ns = kT0 + 61 * kSecond}));
  recorder.RecordServiceGraphEdge(Edge("e", "f"));  // a->b idle for 61 s: evicted
  const MetricsStats stats = recorder.stats();
  EXPECT_EQ(stats.series_evicted, 4u);
  EXPECT_EQ(stats.overflow_points, 3u);
  const MetricsSnapshot snap = recorder.CollectCumulative(kT0 + 62 * kSecond);
  ASSERT_EQ(snap.resources.size(), 2u);
  const ResourceMetrics& graph = snap.resources[1];
  EXPECT_EQ(graph.resource->service_name(), "loupe");
  EXPECT_EQ(FindSum(graph, kGraphTotal, Pair("a", "b")), nullptr);
  ASSERT_NE(FindSum(graph, kGraphTotal, Pair("e", "f")), nullptr);
  EXPECT_EQ(FindSum(graph, kGraphTotal, Pair("e", "f"))->value, 1);
}

TEST(DeltaReader, SumsReportChangesAndNewSeriesAtZero) {
  MetricsRecorder recorder(TestOptions());
  DeltaReader reader;
  g_now = kT0 + 1 * kSecond;
  recorder.RecordServiceGraphEdge(Edge("a", "b", false, 0.05, 0.5));
  recorder.RecordServiceGraphEdge(Edge("a", "b", false, 0.05, 0.5));

  const MetricsSnapshot d1 = reader.Collect(recorder, kT0 + 10 * kSecond);
  ASSERT_EQ(d1.resources.size(), 1u);
  {
    const MetricData* total = FindMetric(d1.resources[0], kGraphTotal);
    ASSERT_NE(total, nullptr);
    EXPECT_EQ(total->type, MetricType::kSum);
    EXPECT_EQ(total->temporality, Temporality::kDelta);
    EXPECT_TRUE(total->monotonic);
    ASSERT_EQ(total->sum_points.size(), 1u);
    EXPECT_EQ(total->sum_points[0].value, 2);
    EXPECT_EQ(total->sum_points[0].start_unix_ns, kT0 + 1 * kSecond);
    EXPECT_EQ(total->sum_points[0].time_unix_ns, kT0 + 10 * kSecond);
    // New to the reader: reported although 0.
    const SumPoint* failed = FindSum(d1.resources[0], kGraphFailed, Pair("a", "b"));
    ASSERT_NE(failed, nullptr);
    EXPECT_EQ(failed->value, 0);
    EXPECT_EQ(FindHistogram(d1.resources[0], kGraphServer, Pair("a", "b"))->count, 2u);
  }
  // Nothing new: nothing at all.
  EXPECT_TRUE(reader.Collect(recorder, kT0 + 20 * kSecond).resources.empty());

  recorder.RecordServiceGraphEdge(Edge("a", "b", false, 0.05, 0.5));
  const MetricsSnapshot d3 = reader.Collect(recorder, kT0 + 30 * kSecond);
  ASSERT_EQ(d3.resources.size(), 1u);
  {
    const SumPoint* total = FindSum(d3.resources[0], kGraphTotal, Pair("a", "b"));
    ASSERT_NE(total, nullptr);
    EXPECT_EQ(total->value, 1);
    EXPECT_EQ(total->start_unix_ns, kT0 + 20 * kSecond);  // the previous collection
    // Still 0 failures: an unchanged sum is left out.
    EXPECT_EQ(FindMetric(d3.resources[0], kGraphFailed), nullptr);
    const HistogramPoint* server = FindHistogram(d3.resources[0], kGraphServer, Pair("a", "b"));
    ASSERT_NE(server, nullptr);
    EXPECT_EQ(server->count, 1u);
    EXPECT_THAT(server->bucket_counts, ElementsAre(0, 0, 0, 1, 0, 0, 0, 0, 0));  // (0.4, 0.8]
  }

  recorder.RecordServiceGraphEdge(Edge("a", "b", true));
  const MetricsSnapshot d4 = reader.Collect(recorder, kT0 + 40 * kSecond);
  ASSERT_EQ(d4.resources.size(), 1u);
  EXPECT_EQ(FindSum(d4.resources[0], kGraphFailed, Pair("a", "b"))->value, 1);
  EXPECT_EQ(FindSum(d4.resources[0], kGraphTotal, Pair("a", "b"))->value, 1);

  // The cumulative view is untouched.
  const MetricsSnapshot cumulative = recorder.CollectCumulative(kT0 + 41 * kSecond);
  EXPECT_EQ(FindSum(cumulative.resources[0], kGraphTotal, Pair("a", "b"))->value, 4);
  EXPECT_EQ(FindSum(cumulative.resources[0], kGraphFailed, Pair("a", "b"))->value, 1);
  g_now = kT0;
}

TEST(ServiceGraph, NoAllocationPerEdgeInSteadyState) {
  MetricsRecorder recorder(TestOptions());
  std::vector<ServiceGraphEdge> edges;
  for (int i = 0; i < 20; ++i) {
    edges.push_back(Edge("client-" + std::to_string(i % 5), "a-server-name-longer-than-sso-" +
                                                               std::to_string(i % 4),
                         i % 3 == 0, 0.01 * i, 0.02 * i));
  }
  for (const ServiceGraphEdge& e : edges) recorder.RecordServiceGraphEdge(e);
  g_allocations = 0;
  g_count_allocations = true;
  for (int round = 0; round < 20; ++round) {
    for (const ServiceGraphEdge& e : edges) recorder.RecordServiceGraphEdge(e);
  }
  g_count_allocations = false;
  EXPECT_EQ(g_allocations.load(), 0u);
}

TEST(ServiceGraph, ConcurrentEdgesAndCollections) {
  MetricsRecorder recorder(TestOptions());
  constexpr int kEdges = 20000;
  std::atomic<bool> done{false};
  double delta_total = 0;
  double delta_failed = 0;
  DeltaReader delta;
  auto add = [&](const MetricsSnapshot& s) {
    for (const ResourceMetrics& rm : s.resources) {
      for (const MetricData& m : rm.metrics) {
        for (const SumPoint& p : m.sum_points) {
          if (m.name == kGraphTotal) delta_total += p.value;
          if (m.name == kGraphFailed) delta_failed += p.value;
        }
      }
    }
  };
  std::thread collector([&] {
    uint64_t t = kT0;
    while (!done.load()) {
      add(delta.Collect(recorder, ++t));
      // Cumulative: a pair's histogram count always equals its request total.
      for (const ResourceMetrics& rm : recorder.CollectCumulative(kT0).resources) {
        const MetricData* total = FindMetric(rm, kGraphTotal);
        if (total == nullptr) continue;
        for (const SumPoint& p : total->sum_points) {
          const HistogramPoint* h = FindHistogram(rm, kGraphServer, p.attributes);
          ASSERT_NE(h, nullptr);
          EXPECT_EQ(static_cast<double>(h->count), p.value);
        }
      }
    }
  });
  for (int i = 0; i < kEdges; ++i) {
    recorder.RecordServiceGraphEdge(Edge("c" + std::to_string(i % 7), "s", i % 4 == 0));
  }
  done = true;
  collector.join();
  add(delta.Collect(recorder, kT0 + kEdges * 10));
  EXPECT_EQ(delta_total, static_cast<double>(kEdges));
  EXPECT_EQ(delta_failed, static_cast<double>(kEdges / 4));
}

}  // namespace
}  // namespace loupe
