// A real Prometheus server (Debian's prometheus package) scraping Loupe's
// /metrics, and its query API as the judge of what it understood.
//
//   InProcessEndpointIsScrapedAndUnderstood: MetricsHttpServer in this
//     process, fed with spans whose counts are known; needs neither root nor
//     the agent. Proves the exposition parses in Prometheus as intended.
//   AgentCountsEveryRequest: everything real: nginx, the agent (as root,
//     with --metrics-listen), curl as the client. Counts per status code on
//     both sides must equal the requests sent, exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "decoders/model/metrics.h"
#include "exporters/prometheus/metrics_http_server.h"
#include "tests/exporters/prometheus/http_get.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// One instant-vector sample from /api/v1/query.
struct PromSample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

class PrometheusServer {
 public:
  // nullptr (with *error) when Prometheus is missing or does not come up.
  static std::unique_ptr<PrometheusServer> Start(const std::string& job, const std::string& target,
                                                 std::string* error) {
    const std::string binary = FindProgram({"/usr/bin/prometheus"});
    if (binary.empty()) {
      *error = "prometheus is not installed (apt-get install prometheus)";
      return nullptr;
    }
    auto p = std::unique_ptr<PrometheusServer>(new PrometheusServer());
    p->dir_ = MakeTempDir("loupe-it-prometheus");
    std::string config =
        ReadFileOrEmpty(std::string(LOUPE_SOURCE_DIR) + "/tests/integration/prometheus.yml.in");
    for (auto [key, value] :
         {std::pair<std::string, std::string>{"@JOB@", job}, {"@TARGET@", target}}) {
      for (size_t at; (at = config.find(key)) != std::string::npos;) {
        config.replace(at, key.size(), value);
      }
    }
    WriteFile(p->dir_ + "/prometheus.yml", config);
    p->port_ = PickFreePort();
    p->process_ = Subprocess::Start(
        {binary, "--config.file=" + p->dir_ + "/prometheus.yml",
         "--storage.tsdb.path=" + p->dir_ + "/data",
         "--web.listen-address=127.0.0.1:" + std::to_string(p->port_), "--log.level=warn"},
        p->dir_ + "/prometheus.stdout", p->dir_ + "/prometheus.log");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (HttpGet(p->port_, "/-/ready").status == 200) return p;
      if (!p->process_->running()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    *error = "prometheus did not become ready: " + ReadFileOrEmpty(p->dir_ + "/prometheus.log");
    return nullptr;
  }

  ~PrometheusServer() {
    if (process_ && process_->running()) {
      process_->Signal(SIGTERM);
      process_->Wait(std::chrono::seconds(20));
    }
  }

  // The samples of an instant query; ADD_FAILURE (and empty) on API errors.
  std::vector<PromSample> Query(const std::string& promql) const {
    const HttpResponse r = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(promql));
    std::vector<PromSample> out;
    if (r.status != 200) {
      ADD_FAILURE() << promql << ": HTTP " << r.status << " " << r.error << " " << r.body;
      return out;
    }
    const Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || j.value("status", "") != "success" ||
        j["data"].value("resultType", "") != "vector") {
      ADD_FAILURE() << promql << ": " << r.body;
      return out;
    }
    for (const Json& item : j["data"]["result"]) {
      PromSample s;
      for (const auto& [k, v] : item["metric"].items()) s.labels[k] = v.get<std::string>();
      s.value = std::stod(item["value"][1].get<std::string>());
      out.push_back(std::move(s));
    }
    return out;
  }

  // label value -> sample value, for a query aggregated `by (label)`.
  std::map<std::string, double> QueryBy(const std::string& promql, const std::string& label) const {
    std::map<std::string, double> out;
    for (const PromSample& s : Query(promql)) {
      auto it = s.labels.find(label);
      out[it == s.labels.end() ? "" : it->second] = s.value;
    }
    return out;
  }

  // Polls until `done` holds for the query's result (scrapes are 1 s apart).
  bool WaitFor(const std::function<bool()>& done, std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return done();
  }

  std::string Log() const { return ReadFileOrEmpty(dir_ + "/prometheus.log"); }

 private:
  PrometheusServer() = default;
  std::unique_ptr<Subprocess> process_;
  std::string dir_;
  uint16_t port_ = 0;
};

// Every histogram series of `family` matching `selector`, as Prometheus
// stored them: buckets never decrease with le and the le="+Inf" bucket is
// the _count of the same series. Returns the number of series checked.
size_t ExpectConsistentHistograms(const PrometheusServer& prom, const std::string& family,
                                  const std::string& selector) {
  std::map<std::string, std::vector<std::pair<double, double>>> buckets;  // series -> (le, value)
  std::map<std::string, double> counts;
  auto series_key = [](std::map<std::string, std::string> labels) {
    labels.erase("le");
    labels.erase("__name__");
    std::string key;
    for (const auto& [k, v] : labels) key += k + "=" + v + ",";
    return key;
  };
  for (const PromSample& s : prom.Query(family + "_bucket" + selector)) {
    const std::string le = s.labels.at("le");
    const double bound = le == "+Inf" ? HUGE_VAL : std::stod(le);
    buckets[series_key(s.labels)].emplace_back(bound, s.value);
  }
  for (const PromSample& s : prom.Query(family + "_count" + selector)) {
    counts[series_key(s.labels)] = s.value;
  }
  EXPECT_EQ(buckets.size(), counts.size()) << family << selector;
  for (auto& [series, list] : buckets) {
    SCOPED_TRACE(family + "{" + series + "}");
    std::sort(list.begin(), list.end());
    EXPECT_EQ(list.back().first, HUGE_VAL) << "no +Inf bucket";
    for (size_t i = 1; i < list.size(); ++i) EXPECT_LE(list[i - 1].second, list[i].second);
    auto count = counts.find(series);
    if (count == counts.end()) {
      ADD_FAILURE() << "bucket series without _count";
      continue;
    }
    EXPECT_EQ(list.back().second, count->second);
  }
  return buckets.size();
}

std::shared_ptr<const Resource> ProcessResource(const std::string& service, int64_t pid) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", service);
  r->attributes.Set("process.pid", pid);
  r->attributes.Set("host.name", "it-host");
  r->attributes.Set("service.instance.id", "it-host:" + std::to_string(pid));
  return r;
}

Span HttpSpan(SpanKind kind, const std::string& route, int64_t status, uint64_t duration_ns,
              int64_t body, const std::shared_ptr<const Resource>& resource) {
  Span span;
  span.kind = kind;
  span.end_unix_ns = UnixNowNs();
  span.start_unix_ns = span.end_unix_ns - duration_ns;
  span.attributes.Set("http.request.method", "GET");
  span.attributes.Set("http.route", route);
  span.attributes.Set("http.response.status_code", status);
  span.attributes.Set("server.address", "127.0.0.1");
  span.attributes.Set("server.port", int64_t{8080});
  span.attributes.Set("network.protocol.version", "1.1");
  span.attributes.Set("http.response.body.size", body);
  if (status >= 500 || (kind == SpanKind::kClient && status >= 400)) {
    span.status = StatusCode::kError;
    span.attributes.Set("error.type", std::to_string(status));
  }
  span.resource = resource;
  return span;
}

TEST(PrometheusTest, InProcessEndpointIsScrapedAndUnderstood) {
  MetricsRecorder recorder;
  auto server = MetricsHttpServer::Start("127.0.0.1:0", recorder, nullptr, nullptr);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = "127.0.0.1:" + std::to_string((*server)->port());
  std::string error;
  auto prom = PrometheusServer::Start("loupe-inproc", target, &error);
  ASSERT_TRUE(prom) << error;

  const auto nginx = ProcessResource("nginx", 11);
  const auto curl = ProcessResource("curl", 12);
  const std::map<int64_t, int> sent = {{200, 5}, {404, 3}, {500, 2}};
  for (const auto& [status, n] : sent) {
    for (int i = 0; i < n; ++i) {
      // Durations across buckets, one exactly on a bound (25 ms).
      const uint64_t duration = (i == 0 ? 25'000'000 : 1'000'000 * (1 + 7 * i));
      recorder.Record(HttpSpan(SpanKind::kServer, "/items/{id}", status, duration, 100, nginx));
      recorder.Record(
          HttpSpan(SpanKind::kClient, "/items/{id}", status, duration + 5000, 100, curl));
    }
  }
  const std::map<std::string, double> want = {{"200", 5}, {"404", 3}, {"500", 2}};
  const std::string server_counts =
      "sum by (http_response_status_code) "
      "(http_server_request_duration_seconds_count{job=\"loupe-inproc\"})";
  const std::string client_counts =
      "sum by (http_response_status_code) "
      "(http_client_request_duration_seconds_count{job=\"loupe-inproc\"})";
  ASSERT_TRUE(prom->WaitFor(
      [&] { return prom->QueryBy(server_counts, "http_response_status_code") == want; },
      std::chrono::seconds(30)))
      << "Prometheus log:\n"
      << prom->Log() << "\nexposition:\n"
      << (*server)->RenderMetrics();
  EXPECT_EQ(prom->QueryBy(client_counts, "http_response_status_code"), want);

  // up, target_info per resource, labels as exposed.
  const auto up = prom->Query("up{job=\"loupe-inproc\"}");
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].value, 1);
  const auto info = prom->Query("target_info{job=\"loupe-inproc\"}");
  std::set<std::string> services;
  for (const PromSample& s : info) {
    services.insert(s.labels.at("service_name"));
    EXPECT_EQ(s.value, 1);
    EXPECT_EQ(s.labels.at("host_name"), "it-host");
  }
  EXPECT_EQ(services, (std::set<std::string>{"curl", "nginx"}));
  // Per status code the durations are 25 (exactly a bound), 8, 15, 22, 29
  // ms, cut to the number sent: 3 within 10 ms, 9 within 25 ms.
  EXPECT_EQ(
      prom->Query("sum(http_server_request_duration_seconds_bucket{le=\"0.01\"})").at(0).value, 3);
  EXPECT_EQ(
      prom->Query("sum(http_server_request_duration_seconds_bucket{le=\"0.025\"})").at(0).value, 9);
  // error.type only on the failures.
  EXPECT_EQ(prom->QueryBy("sum by (error_type) (http_server_request_duration_seconds_count)",
                          "error_type"),
            (std::map<std::string, double>{{"", 8}, {"500", 2}}));
  EXPECT_EQ(prom->Query("sum(http_server_response_body_size_bytes_sum)").at(0).value, 1000);
  // The join the README documents.
  EXPECT_EQ(prom->Query("sum(http_server_request_duration_seconds_count * on (service_name, "
                        "service_instance_id) group_left (host_name) target_info)")
                .at(0)
                .value,
            10);
  EXPECT_GE(ExpectConsistentHistograms(*prom, "http_server_request_duration_seconds",
                                       "{job=\"loupe-inproc\"}"),
            3u);
  EXPECT_GE(ExpectConsistentHistograms(*prom, "http_client_response_body_size_bytes",
                                       "{job=\"loupe-inproc\"}"),
            3u);

  // Cumulative across scrapes: more requests raise the counts.
  for (int i = 0; i < 4; ++i) {
    recorder.Record(HttpSpan(SpanKind::kServer, "/items/{id}", 200, 2'000'000, 100, nginx));
  }
  EXPECT_TRUE(prom->WaitFor(
      [&] { return prom->QueryBy(server_counts, "http_response_status_code")["200"] == 9; },
      std::chrono::seconds(30)));
  // The endpoint's own counter arrives as one.
  EXPECT_GE(prom->Query("loupe_prometheus_scrapes_total{job=\"loupe-inproc\"}").at(0).value, 2);
  EXPECT_THAT(prom->Log(), ::testing::Not(HasSubstr("level=error")));
}

TEST(PrometheusTest, AgentCountsEveryRequest) {
  ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  const std::string curl = FindProgram({"/usr/bin/curl"});
  ASSERT_FALSE(curl.empty()) << "apt-get install curl";
  std::string error;
  const std::string index(1234, 'i');
  auto nginx = NginxServer::Start({{"index.html", index}}, &error);
  ASSERT_TRUE(nginx) << error;
  const uint16_t metrics_port = PickFreePort();
  const std::string metrics_listen = "127.0.0.1:" + std::to_string(metrics_port);
  auto loupe = LoupeProcess::Start(nginx->dir(), {"--metrics-listen", metrics_listen});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  ASSERT_TRUE(WaitForTcpPort(metrics_port, std::chrono::seconds(10))) << loupe->Log();
  EXPECT_EQ(HttpGet(metrics_port, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(metrics_port, "/readyz").body, "ready");

  auto prom = PrometheusServer::Start("loupe", metrics_listen, &error);
  ASSERT_TRUE(prom) << error;

  // Known requests, each from its own curl process.
  const std::map<std::string, int> requests = {
      {"/index.html", 5}, {"/missing-page", 3}, {"/fail", 2}};
  for (const auto& [path, n] : requests) {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url(path)}), 0);
    }
  }
  const std::map<std::string, double> want = {{"200", 5}, {"404", 3}, {"500", 2}};
  // Only this nginx: the agent sees the whole host (Prometheus scraping it,
  // this test querying Prometheus, anything else running).
  const std::string port_selector =
      "{job=\"loupe\",server_port=\"" + std::to_string(nginx->port()) + "\"}";
  const std::string server_counts =
      "sum by (http_response_status_code) (http_server_request_duration_seconds_count" +
      port_selector + ")";
  const std::string client_counts =
      "sum by (http_response_status_code) (http_client_request_duration_seconds_count" +
      port_selector + ")";
  const bool arrived = prom->WaitFor(
      [&] {
        return prom->QueryBy(server_counts, "http_response_status_code") == want &&
               prom->QueryBy(client_counts, "http_response_status_code") == want;
      },
      std::chrono::seconds(30));
  // A few more scrapes: nothing counted late or twice.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(arrived);
  EXPECT_EQ(prom->QueryBy(server_counts, "http_response_status_code"), want)
      << "agent log:\n"
      << loupe->Log() << "\nPrometheus log:\n"
      << prom->Log();
  EXPECT_EQ(prom->QueryBy(client_counts, "http_response_status_code"), want);

  // error.type: 5xx on both sides, 4xx on the client only.
  EXPECT_EQ(prom->QueryBy("sum by (error_type) (http_server_request_duration_seconds_count" +
                              port_selector + ")",
                          "error_type"),
            (std::map<std::string, double>{{"", 8}, {"500", 2}}));
  EXPECT_EQ(prom->QueryBy("sum by (error_type) (http_client_request_duration_seconds_count" +
                              port_selector + ")",
                          "error_type"),
            (std::map<std::string, double>{{"", 5}, {"404", 3}, {"500", 2}}));
  // The static file's bytes, exactly, on both sides.
  const std::string body_200 = "{job=\"loupe\",server_port=\"" + std::to_string(nginx->port()) +
                               "\",http_response_status_code=\"200\"}";
  EXPECT_EQ(
      prom->Query("sum(http_server_response_body_size_bytes_sum" + body_200 + ")").at(0).value,
      5 * 1234);
  EXPECT_EQ(
      prom->Query("sum(http_client_response_body_size_bytes_sum" + body_200 + ")").at(0).value,
      5 * 1234);

  EXPECT_GE(
      ExpectConsistentHistograms(*prom, "http_server_request_duration_seconds", port_selector), 3u);
  EXPECT_GE(
      ExpectConsistentHistograms(*prom, "http_client_request_duration_seconds", port_selector), 3u);

  // Resources: nginx and curl each have their target_info.
  for (const std::string service : {"nginx", "curl"}) {
    const auto info = prom->Query("target_info{job=\"loupe\",service_name=\"" + service + "\"}");
    EXPECT_FALSE(info.empty()) << service;
    for (const PromSample& s : info) EXPECT_EQ(s.value, 1);
  }
  const auto up = prom->Query("up{job=\"loupe\"}");
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].value, 1);
  EXPECT_TRUE(loupe->running());
  EXPECT_EQ(loupe->Stop(), 0);
}

// CPU and memory of the traced processes (docs/metrics.md, "CPU and
// memory"): nginx is sampled once the agent has seen its connections.
TEST(PrometheusTest, TracedProcessesCpuAndMemory) {
  ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  const std::string curl = FindProgram({"/usr/bin/curl"});
  ASSERT_FALSE(curl.empty()) << "apt-get install curl";
  std::string error;
  auto nginx = NginxServer::Start({{"index.html", "hello"}}, &error);
  ASSERT_TRUE(nginx) << error;
  const uint16_t metrics_port = PickFreePort();
  auto loupe = LoupeProcess::Start(
      nginx->dir(), {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port),
                     "--resource-interval", "1", "--port", std::to_string(nginx->port())});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  ASSERT_TRUE(WaitForTcpPort(metrics_port, std::chrono::seconds(10))) << loupe->Log();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", nginx->url("/index.html")}), 0);
  }
  const std::vector<pid_t> workers = nginx->Workers();
  ASSERT_EQ(workers.size(), 1u);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  // A process's series carry service.name and service.instance.id (host:pid).
  const std::map<std::string, std::string> worker = {
      {"service_name", "nginx"},
      {"service_instance_id", std::string(host) + ":" + std::to_string(workers[0])}};
  std::vector<MetricSample> samples;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    samples = ParsePrometheusText(HttpGet(metrics_port, "/metrics").body);
  } while (!SumSamples(samples, "process_memory_usage_bytes", worker) &&
           std::chrono::steady_clock::now() < deadline);
  // The worker's resident memory as /proc says it, within what a second of
  // sampling lag allows.
  const std::string statm = ReadFileOrEmpty("/proc/" + std::to_string(workers[0]) + "/statm");
  unsigned long pages = 0, resident = 0;
  ASSERT_EQ(std::sscanf(statm.c_str(), "%lu %lu", &pages, &resident), 2) << statm;
  const double rss = static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
  const std::optional<double> memory = SumSamples(samples, "process_memory_usage_bytes", worker);
  ASSERT_TRUE(memory) << loupe->Log();
  EXPECT_GT(*memory, 0.5 * rss);
  EXPECT_LT(*memory, 2.0 * rss);
  auto with = [&](std::map<std::string, std::string> labels,
                  std::map<std::string, std::string> more) {
    labels.insert(more.begin(), more.end());
    return labels;
  };
  const std::optional<double> user =
      SumSamples(samples, "process_cpu_time_seconds_total", with(worker, {{"cpu_mode", "user"}}));
  const std::optional<double> system = SumSamples(samples, "process_cpu_time_seconds_total",
                                                  with(worker, {{"cpu_mode", "system"}}));
  ASSERT_TRUE(user && system);
  EXPECT_GE(*user, 0.0);
  EXPECT_LT(*user + *system, 60.0) << "an idle test nginx used a minute of CPU?";
  EXPECT_GE(SumSamples(samples, "process_thread_count", worker).value_or(0), 1.0);
  EXPECT_TRUE(SumSamples(samples, "process_paging_faults_total",
                         with(worker, {{"system_paging_fault_type", "major"}})));
}

}  // namespace
}  // namespace loupe::testing
