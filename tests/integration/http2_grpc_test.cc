// End to end over HTTP/2, everything real: the loupe agent (as root, with
// its BPF programs) watching
//
//   - gRPC: tests/grpc_service's grpc_test_server and grpc_test_client
//     (Debian's libgrpc++, cleartext): unary calls that succeed, end
//     NOT_FOUND and end INTERNAL; server, client and bidirectional
//     streaming; and K unary calls in flight at once on one channel (so
//     concurrent streams of one connection);
//   - plain HTTP/2: nginx from Debian speaking h2c with prior knowledge
//     (nginx_h2c.conf.in) to curl --http2-prior-knowledge (200, 404, 500,
//     a PUT with a body, a static file far longer than the payload prefix
//     sent with sendfile(2)), to nghttp (three requests multiplexed on one
//     connection, plus its PRIORITY-only anchor streams) and to h2load
//     (-n 200 -c 4 -m 10).
//
// One agent run covers every scenario; each TEST asserts on the spans of one
// scenario, stream by stream. gRPC scenarios are told apart by the client's
// process (CLIENT spans) and by the client's wall-clock window (SERVER
// spans: scenarios run one after another with a pause between them); HTTP/2
// scenarios by their unique URL path. The RED metrics the agent serves on
// /metrics are checked in TESTs of their own (RpcServerDurationMetric...),
// so that a failure there is attributable to the metrics, not the spans.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/exporters/prometheus/http_get.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::SizeIs;

// Spans are stamped from CLOCK_MONOTONIC plus an offset fixed at agent start;
// the window checks allow this much slack for that conversion.
constexpr uint64_t kClockSlackNs = 5'000'000;
// Pause between scenarios, so that windows (with their slack) never overlap.
constexpr auto kScenarioGap = std::chrono::milliseconds(40);

constexpr char kGrpcService[] = "loupe.test.Echo";

// Scenario sizes.
constexpr int kUnaryOkCalls = 3;         // sequential, one connection
constexpr int kConcurrentCalls = 8;      // at once, one channel
constexpr int kConcurrentDelayMs = 200;  // each held this long by the server
constexpr int kServerStreamMessages = 10;
constexpr int kClientStreamMessages = 7;
constexpr int kBidiMessages = 5;
constexpr int kH2loadRequests = 200;
constexpr int kH2loadClients = 4;
constexpr size_t kBigFileBytes = 300'000;
// Successful Unary calls in the whole run: what rpc.server.duration counts.
constexpr int kUnaryOkTotal = kUnaryOkCalls + kConcurrentCalls;

struct Window {
  uint64_t before_ns = 0;
  uint64_t after_ns = 0;
  pid_t client_pid = 0;
  int exit_status = -1;
  std::string output;  // the client's stdout
};

// One call as grpc_test_client reported it.
struct GrpcCall {
  std::string method;  // "/loupe.test.Echo/Unary"
  int status = -1;
  int sent = -1;
  int received = -1;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
};

struct RunResult {
  bool ok = false;
  std::string error;
  uint16_t grpc_port = 0;
  uint16_t nginx_port = 0;
  pid_t grpc_server_pid = 0;
  pid_t nginx_master = 0;
  std::set<pid_t> nginx_workers;
  int loupe_exit = -1;
  std::vector<Json> spans;
  std::map<std::string, Window> windows;
  std::map<std::string, std::vector<GrpcCall>> grpc_calls;
  std::string metrics;  // /metrics as scraped before the agent stopped
  int metrics_status = 0;
  int64_t parse_errors = -1;
  int64_t spans_stat = -1;
  std::string loupe_log;
  std::string dir;
  std::string recording;
};

RunResult* g_run = nullptr;

std::string Content(size_t n, char seed) {
  std::string s(n, 'x');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

std::string GrpcBinary(const std::string& name) {
  return std::string(LOUPE_BINARY_DIR) + "/tests/grpc_service/" + name;
}

// nginx from Debian with nginx_h2c.conf.in (cleartext HTTP/2, prior
// knowledge), in its own temporary directory; the same layout as
// NginxServer, which is tied to nginx.conf.in.
class H2cNginx {
 public:
  static std::unique_ptr<H2cNginx> Start(
      const std::vector<std::pair<std::string, std::string>>& files, std::string* error) {
    const std::string nginx = FindProgram({"/usr/sbin/nginx", "/usr/bin/nginx"});
    if (nginx.empty()) {
      *error = "nginx is not installed (apt-get install nginx)";
      return nullptr;
    }
    auto server = std::unique_ptr<H2cNginx>(new H2cNginx());
    server->dir_ = MakeTempDir("loupe-it-h2c");
    for (const char* sub : {"html", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
      const std::string path = server->dir_ + "/" + sub;
      mkdir(path.c_str(), 0777);
      chmod(path.c_str(), 0777);
    }
    for (const auto& [name, content] : files) {
      const std::filesystem::path path = server->dir_ + "/html/" + name;
      std::filesystem::create_directories(path.parent_path());
      chmod(path.parent_path().c_str(), 0755);
      WriteFile(path, content);
    }
    // WebDAV PUT target, writable by the workers (they drop privileges).
    const std::string uploads = server->dir_ + "/html/uploads";
    mkdir(uploads.c_str(), 0777);
    chmod(uploads.c_str(), 0777);
    server->port_ = PickFreePort();
    std::string conf =
        ReadFileOrEmpty(std::string(LOUPE_SOURCE_DIR) + "/tests/integration/nginx_h2c.conf.in");
    if (conf.empty()) {
      *error = "tests/integration/nginx_h2c.conf.in is missing";
      return nullptr;
    }
    for (auto [key, value] : {std::pair<std::string, std::string>{"@PREFIX@", server->dir_},
                              {"@PORT@", std::to_string(server->port_)}}) {
      for (size_t at; (at = conf.find(key)) != std::string::npos;) {
        conf.replace(at, key.size(), value);
      }
    }
    WriteFile(server->dir_ + "/nginx.conf", conf);
    server->process_ =
        Subprocess::Start({nginx, "-p", server->dir_, "-c", server->dir_ + "/nginx.conf"},
                          server->dir_ + "/nginx.stdout", server->dir_ + "/nginx.stderr");
    if (!WaitForTcpPort(server->port_, std::chrono::seconds(20))) {
      *error = "nginx (h2c) did not start: " + ReadFileOrEmpty(server->dir_ + "/nginx.stderr") +
               ReadFileOrEmpty(server->dir_ + "/error.log");
      return nullptr;
    }
    return server;
  }
  ~H2cNginx() { Stop(); }
  uint16_t port() const { return port_; }
  pid_t master_pid() const { return process_->pid(); }
  const std::string& dir() const { return dir_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<pid_t> Workers() const {
    const std::string master = std::to_string(process_->pid());
    std::istringstream children(
        ReadFileOrEmpty("/proc/" + master + "/task/" + master + "/children"));
    std::vector<pid_t> out;
    for (pid_t child; children >> child;) out.push_back(child);
    return out;
  }
  void Stop() {
    if (process_ && process_->running()) {
      process_->Signal(SIGQUIT);
      process_->Wait(std::chrono::seconds(10));
    }
  }

 private:
  H2cNginx() = default;
  std::unique_ptr<Subprocess> process_;
  std::string dir_;
  uint16_t port_ = 0;
};

std::vector<GrpcCall> ParseGrpcCalls(const std::string& output) {
  std::vector<GrpcCall> calls;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("method")) continue;
    GrpcCall c;
    c.method = j["method"];
    c.status = j["status"];
    c.sent = j["sent"];
    c.received = j["received"];
    c.start_ns = j["start_unix_nano"];
    c.end_ns = j["end_unix_nano"];
    calls.push_back(c);
  }
  std::sort(calls.begin(), calls.end(),
            [](const GrpcCall& a, const GrpcCall& b) { return a.start_ns < b.start_ns; });
  return calls;
}

RunResult RunEverything() {
  RunResult r;
  const std::string curl = FindProgram({"/usr/bin/curl"});
  const std::string nghttp = FindProgram({"/usr/bin/nghttp"});
  const std::string h2load = FindProgram({"/usr/bin/h2load"});
  if (curl.empty() || nghttp.empty() || h2load.empty()) {
    r.error = "curl, nghttp and h2load must be installed (apt-get install curl nghttp2-client)";
    return r;
  }
  for (const char* name : {"grpc_test_server", "grpc_test_client"}) {
    if (access(GrpcBinary(name).c_str(), X_OK) != 0) {
      r.error = GrpcBinary(name) + " is missing: build the tree (tests/grpc_service)";
      return r;
    }
  }
  const std::vector<std::pair<std::string, std::string>> files = {
      {"index.html", Content(1234, 1)},
      {"big.bin", Content(kBigFileBytes, 2)},
      {"load.txt", Content(777, 3)}};
  auto nginx = H2cNginx::Start(files, &r.error);
  if (!nginx) return r;
  r.nginx_port = nginx->port();
  r.nginx_master = nginx->master_pid();
  r.dir = nginx->dir();

  r.grpc_port = PickFreePort();
  auto grpc_server =
      Subprocess::Start({GrpcBinary("grpc_test_server"), "--port", std::to_string(r.grpc_port)},
                        r.dir + "/grpc_server.out", r.dir + "/grpc_server.err");
  r.grpc_server_pid = grpc_server->pid();
  if (!WaitForFileContaining(r.dir + "/grpc_server.out", "LISTENING", std::chrono::seconds(20))) {
    r.error = "grpc_test_server did not start: " + ReadFileOrEmpty(r.dir + "/grpc_server.err");
    return r;
  }

  const uint16_t metrics_port = PickFreePort();
  r.recording = r.dir + "/run.rec";
  auto loupe = LoupeProcess::Start(
      r.dir, {"--port", std::to_string(r.grpc_port) + "," + std::to_string(r.nginx_port),
              "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port), "--record",
              r.recording, "--stats-interval", "1"});
  if (!loupe) {
    r.error = "loupe did not become ready: " + ReadFileOrEmpty(r.dir + "/loupe.log");
    return r;
  }

  int next_output = 0;
  auto run = [&](const std::string& scenario, const std::vector<std::string>& argv) {
    std::this_thread::sleep_for(kScenarioGap);
    const std::string out = r.dir + "/client." + std::to_string(next_output++) + ".out";
    Window w;
    w.before_ns = UnixNowNs();
    auto p = Subprocess::Start(argv, out, r.dir + "/clients.err");
    w.client_pid = p->pid();
    w.exit_status = p->Wait(std::chrono::seconds(60)).value_or(-1);
    w.after_ns = UnixNowNs();
    w.output = ReadFileOrEmpty(out);
    r.windows[scenario] = w;
    std::this_thread::sleep_for(kScenarioGap);
  };
  // The client lingers so that the agent reads its /proc entry while it
  // lives (docs/spans.md: a process gone within a millisecond of its first
  // request is named from its kernel comm, which grpc_test_client exceeds).
  const std::string target = "127.0.0.1:" + std::to_string(r.grpc_port);
  auto grpc_run = [&](const std::string& scenario, std::vector<std::string> args) {
    std::vector<std::string> argv = {GrpcBinary("grpc_test_client"), "--target", target,
                                     "--linger-ms", "300"};
    argv.insert(argv.end(), args.begin(), args.end());
    run(scenario, argv);
    r.grpc_calls[scenario] = ParseGrpcCalls(r.windows[scenario].output);
  };
  auto curl_run = [&](const std::string& scenario, std::vector<std::string> args) {
    const std::string report = "%{http_version} %{http_code} %{size_download} %{size_upload}\\n";
    std::vector<std::string> argv = {curl, "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                                     "-w", report};
    argv.insert(argv.end(), args.begin(), args.end());
    run(scenario, argv);
  };

  grpc_run("grpc-unary", {"--scenario", "unary", "--calls", std::to_string(kUnaryOkCalls)});
  grpc_run("grpc-unary-fail", {"--scenario", "unary-fail"});
  grpc_run("grpc-unary-internal", {"--scenario", "unary-internal"});
  grpc_run("grpc-server-stream",
           {"--scenario", "server-stream", "--count", std::to_string(kServerStreamMessages)});
  grpc_run("grpc-client-stream",
           {"--scenario", "client-stream", "--count", std::to_string(kClientStreamMessages)});
  grpc_run("grpc-bidi", {"--scenario", "bidi", "--count", std::to_string(kBidiMessages)});
  grpc_run("grpc-concurrent",
           {"--scenario", "unary", "--concurrent", std::to_string(kConcurrentCalls), "--delay-ms",
            std::to_string(kConcurrentDelayMs)});

  WriteFile(r.dir + "/body.json", "{\"name\":\"lamp\"}\n");  // 16 bytes
  // curl 7.88.1 (Debian 12) cannot reuse a prior-knowledge connection for a
  // second URL (curl/curl#10634, fixed in 8.0): one URL per curl; nghttp
  // covers several requests on one connection.
  curl_run("h2-get", {nginx->url("/index.html")});
  curl_run("h2-404", {nginx->url("/missing-page")});
  curl_run("h2-500", {nginx->url("/fail")});
  // PUT (nginx's WebDAV module) reads the whole body before answering.
  curl_run("h2-put", {"-H", "Content-Type: application/json", "-T", r.dir + "/body.json",
                      nginx->url("/uploads/item.json")});
  curl_run("h2-big", {nginx->url("/big.bin")});
  run("h2-multiplexed", {nghttp, "-n", nginx->url("/api/items/201"), nginx->url("/api/items/202"),
                         nginx->url("/api/items/203")});
  run("h2load", {h2load, "-n", std::to_string(kH2loadRequests), "-c",
                 std::to_string(kH2loadClients), "-m", "10", nginx->url("/load.txt")});

  for (pid_t worker : nginx->Workers()) r.nginx_workers.insert(worker);

  // Let the agent see the last events and flush; then scrape /metrics
  // (waiting a little longer if the RPC histograms are not there yet).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto metrics_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (true) {
    const HttpResponse m = HttpGet(metrics_port, "/metrics");
    r.metrics_status = m.status;
    r.metrics = m.body;
    if (std::chrono::steady_clock::now() > metrics_deadline ||
        (m.status == 200 &&
         m.body.find("rpc_server_duration_milliseconds_count") != std::string::npos)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  const bool alive = loupe->running();
  r.loupe_exit = loupe->Stop();
  if (!alive) r.error = "loupe died during the run";
  r.spans = loupe->Spans();
  r.parse_errors = loupe->FinalStat("parse_errors");
  r.spans_stat = loupe->FinalStat("spans");
  r.loupe_log = loupe->Log();
  grpc_server->Signal(SIGTERM);
  grpc_server->Wait(std::chrono::seconds(10));
  nginx->Stop();
  r.ok = r.error.empty();
  return r;
}

bool IsServerErrorGrpcCode(int code) {
  // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
  // DATA_LOSS: the OpenTelemetry gRPC conventions' server-side errors.
  return code == 2 || code == 4 || code == 12 || code == 13 || code == 14 || code == 15;
}

uint64_t StartNs(const Json& s) { return s["start_time_unix_nano"].get<uint64_t>(); }
uint64_t EndNs(const Json& s) { return s["end_time_unix_nano"].get<uint64_t>(); }

// One sample line of the Prometheus text format.
struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<PromSample> ParsePrometheus(const std::string& text) {
  std::vector<PromSample> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    PromSample s;
    size_t at = line.find_first_of("{ ");
    if (at == std::string::npos) continue;
    s.name = line.substr(0, at);
    if (line[at] == '{') {
      ++at;
      while (at < line.size() && line[at] != '}') {
        const size_t eq = line.find('=', at);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        const std::string key = line.substr(at, eq - at);
        std::string value;
        size_t i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            ++i;
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
        }
        s.labels[key] = value;
        at = i + 1;
        if (at < line.size() && line[at] == ',') ++at;
      }
      at = line.find(' ', at);
      if (at == std::string::npos) continue;
    }
    s.value = std::strtod(line.c_str() + at + 1, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

class Http2GrpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!IsRoot()) return;
    g_run = new RunResult(RunEverything());
  }
  static void TearDownTestSuite() {
    delete g_run;
    g_run = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    ASSERT_TRUE(g_run != nullptr && g_run->ok) << (g_run ? g_run->error : "") << "\nagent log:\n"
                                               << (g_run ? g_run->loupe_log : "");
  }

  static const Window& W(const std::string& scenario) { return g_run->windows.at(scenario); }

  // --- gRPC ---

  // SERVER spans of grpc_test_server that began inside the scenario's
  // window, in start order.
  static std::vector<Json> GrpcServerSpans(const std::string& scenario) {
    const Window& w = W(scenario);
    std::vector<Json> out;
    for (const Json& s : g_run->spans) {
      if (s["kind"] != "SERVER" ||
          s["resource"].value("process.pid", 0) != g_run->grpc_server_pid) {
        continue;
      }
      if (StartNs(s) + kClockSlackNs >= w.before_ns && StartNs(s) <= w.after_ns + kClockSlackNs) {
        out.push_back(s);
      }
    }
    std::sort(out.begin(), out.end(),
              [](const Json& a, const Json& b) { return StartNs(a) < StartNs(b); });
    return out;
  }

  // CLIENT spans of the scenario's grpc_test_client process, in start order.
  static std::vector<Json> GrpcClientSpans(const std::string& scenario) {
    const Window& w = W(scenario);
    std::vector<Json> out;
    for (const Json& s : g_run->spans) {
      if (s["kind"] == "CLIENT" && s["resource"].value("process.pid", 0) == w.client_pid) {
        out.push_back(s);
      }
    }
    std::sort(out.begin(), out.end(),
              [](const Json& a, const Json& b) { return StartNs(a) < StartNs(b); });
    return out;
  }

  // The client ran and every call ended as the scenario intends (the
  // client checks status and message counts itself).
  static void ExpectClientRan(const std::string& scenario, size_t calls) {
    const Window& w = W(scenario);
    EXPECT_EQ(w.exit_status, 0) << scenario << ": " << w.output;
    EXPECT_THAT(g_run->grpc_calls.at(scenario), SizeIs(calls)) << w.output;
  }

  // What every gRPC span carries, on either side; `call` brackets it.
  static void ExpectGrpcSpan(const Json& s, const std::string& kind, const std::string& method,
                             int grpc_code, uint64_t not_before_ns, uint64_t not_after_ns,
                             pid_t pid) {
    SCOPED_TRACE(s.dump());
    EXPECT_EQ(s["kind"], kind);
    EXPECT_EQ(s["name"], std::string(kGrpcService) + "/" + method);
    EXPECT_THAT(s["trace_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{32}"));
    EXPECT_THAT(s["span_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{16}"));
    const Json& a = s["attributes"];
    EXPECT_EQ(a.value("rpc.system", ""), "grpc");
    EXPECT_EQ(a.value("rpc.service", ""), kGrpcService);
    EXPECT_EQ(a.value("rpc.method", ""), method);
    ASSERT_TRUE(a.contains("rpc.grpc.status_code"));
    EXPECT_TRUE(a["rpc.grpc.status_code"].is_number_integer());
    EXPECT_EQ(a["rpc.grpc.status_code"], grpc_code);
    EXPECT_EQ(a.value("network.protocol.version", ""), "2");
    EXPECT_EQ(a.value("server.address", ""), "127.0.0.1");
    EXPECT_EQ(a.value("server.port", 0), g_run->grpc_port);
    EXPECT_EQ(a.value("network.peer.address", ""), "127.0.0.1");
    if (kind == "CLIENT") {
      EXPECT_EQ(a.value("network.peer.port", 0), g_run->grpc_port);
    } else {
      EXPECT_GT(a.value("network.peer.port", 0), 0);
      EXPECT_NE(a.value("network.peer.port", 0), g_run->grpc_port);
    }
    const bool error = kind == "CLIENT" ? grpc_code != 0 : IsServerErrorGrpcCode(grpc_code);
    EXPECT_EQ(s["status_code"], error ? "ERROR" : "UNSET") << "grpc status " << grpc_code;
    EXPECT_LE(StartNs(s), EndNs(s));
    EXPECT_GE(StartNs(s) + kClockSlackNs, not_before_ns);
    EXPECT_LE(EndNs(s), not_after_ns + kClockSlackNs);
    EXPECT_EQ(s["resource"].value("process.pid", 0), pid);
    EXPECT_FALSE(s["resource"].value("host.name", "").empty());
  }

  static void ExpectMessageCounts(const Json& s, int request_messages, int response_messages,
                                  bool streaming) {
    SCOPED_TRACE(s.dump());
    const Json& a = s["attributes"];
    if (streaming) {
      ASSERT_TRUE(a.contains("rpc.grpc.request.messages"));
      ASSERT_TRUE(a.contains("rpc.grpc.response.messages"));
    }
    // Unary spans may leave the counts out; if present they must be right.
    if (a.contains("rpc.grpc.request.messages")) {
      EXPECT_TRUE(a["rpc.grpc.request.messages"].is_number_integer());
      EXPECT_EQ(a["rpc.grpc.request.messages"], request_messages);
    }
    if (a.contains("rpc.grpc.response.messages")) {
      EXPECT_TRUE(a["rpc.grpc.response.messages"].is_number_integer());
      EXPECT_EQ(a["rpc.grpc.response.messages"], response_messages);
    }
  }

  // Both sides of every call of a scenario whose calls ran one after
  // another: the i-th SERVER and CLIENT spans bracket the i-th call.
  static void ExpectSequentialGrpcCalls(const std::string& scenario, const std::string& method,
                                        int grpc_code, int request_messages, int response_messages,
                                        bool streaming) {
    const std::vector<GrpcCall>& calls = g_run->grpc_calls.at(scenario);
    const std::vector<Json> servers = GrpcServerSpans(scenario);
    const std::vector<Json> clients = GrpcClientSpans(scenario);
    ASSERT_THAT(servers, SizeIs(calls.size())) << scenario;
    ASSERT_THAT(clients, SizeIs(calls.size())) << scenario;
    const Window& w = W(scenario);
    for (size_t i = 0; i < calls.size(); ++i) {
      SCOPED_TRACE(scenario + " call " + std::to_string(i));
      EXPECT_EQ(calls[i].method, "/" + std::string(kGrpcService) + "/" + method);
      EXPECT_EQ(calls[i].status, grpc_code);
      ExpectGrpcSpan(servers[i], "SERVER", method, grpc_code, calls[i].start_ns, calls[i].end_ns,
                     g_run->grpc_server_pid);
      ExpectGrpcSpan(clients[i], "CLIENT", method, grpc_code, calls[i].start_ns, calls[i].end_ns,
                     w.client_pid);
      ExpectMessageCounts(servers[i], request_messages, response_messages, streaming);
      ExpectMessageCounts(clients[i], request_messages, response_messages, streaming);
      // The server's span nests in the client's (one clock; the client's
      // last read may return a hair before the server's write does).
      EXPECT_LE(StartNs(clients[i]), StartNs(servers[i]));
      EXPECT_LE(EndNs(servers[i]), EndNs(clients[i]) + 1'000'000);
    }
    EXPECT_EQ(clients.empty() ? "" : clients[0]["resource"].value("service.name", ""),
              "grpc_test_client");
    EXPECT_EQ(servers.empty() ? "" : servers[0]["resource"].value("service.name", ""),
              "grpc_test_server");
  }

  // --- plain HTTP/2 ---

  static std::vector<Json> SpansFor(const std::string& kind, const std::string& path) {
    std::vector<Json> out;
    for (const Json& s : g_run->spans) {
      if (s["kind"] == kind && s["attributes"].value("url.path", "") == path) out.push_back(s);
    }
    return out;
  }

  // Exactly one SERVER and one CLIENT span for `path`.
  static std::pair<Json, Json> OnePair(const std::string& path) {
    auto servers = SpansFor("SERVER", path);
    auto clients = SpansFor("CLIENT", path);
    EXPECT_THAT(servers, SizeIs(1)) << path;
    EXPECT_THAT(clients, SizeIs(1)) << path;
    if (servers.size() != 1 || clients.size() != 1) return {Json::object(), Json::object()};
    return {servers[0], clients[0]};
  }

  // One HTTP/2 exchange with nginx seen from both ends.
  static void ExpectH2Exchange(const Json& server, const Json& client, const std::string& scenario,
                               const std::string& method, const std::string& path,
                               const std::string& route, int status,
                               const std::string& client_service) {
    const Window& w = W(scenario);
    for (const Json* s : {&server, &client}) {
      SCOPED_TRACE(s->dump());
      EXPECT_THAT((*s)["trace_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{32}"));
      EXPECT_THAT((*s)["span_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{16}"));
      EXPECT_EQ((*s)["name"], method + " " + route);
      const Json& a = (*s)["attributes"];
      EXPECT_EQ(a.value("http.request.method", ""), method);
      EXPECT_EQ(a.value("url.path", ""), path);
      EXPECT_EQ(a.value("http.route", ""), route);
      EXPECT_EQ(a.value("http.response.status_code", 0), status);
      EXPECT_EQ(a.value("network.protocol.version", ""), "2");
      EXPECT_EQ(a.value("server.address", ""), "127.0.0.1");
      EXPECT_EQ(a.value("server.port", 0), g_run->nginx_port);
      EXPECT_EQ(a.value("network.peer.address", ""), "127.0.0.1");
      EXPECT_FALSE(a.contains("rpc.system"));
      EXPECT_LE(StartNs(*s), EndNs(*s));
      EXPECT_GE(StartNs(*s) + kClockSlackNs, w.before_ns);
      EXPECT_LE(EndNs(*s), w.after_ns + kClockSlackNs);
    }
    EXPECT_EQ(server["kind"], "SERVER");
    EXPECT_EQ(client["kind"], "CLIENT");
    EXPECT_LE(StartNs(client), StartNs(server));
    EXPECT_LE(EndNs(server), EndNs(client) + 1'000'000);
    EXPECT_EQ(server["attributes"].value("client.address", ""), "127.0.0.1");
    EXPECT_EQ(server["attributes"].value("client.port", 0),
              server["attributes"].value("network.peer.port", -1));
    EXPECT_EQ(client["attributes"].value("network.peer.port", 0), g_run->nginx_port);
    EXPECT_EQ(server["resource"].value("service.name", ""), "nginx");
    const pid_t worker = server["resource"].value("process.pid", 0);
    EXPECT_EQ(g_run->nginx_workers.count(worker), 1u) << worker;
    EXPECT_EQ(client["resource"].value("service.name", ""), client_service);
    EXPECT_EQ(client["resource"].value("process.pid", 0), w.client_pid);
    EXPECT_EQ(server["status_code"], status >= 500 ? "ERROR" : "UNSET");
    EXPECT_EQ(client["status_code"], status >= 400 ? "ERROR" : "UNSET");
    if (status >= 400) {
      EXPECT_EQ(client["attributes"].value("error.type", ""), std::to_string(status));
    } else {
      EXPECT_FALSE(client["attributes"].contains("error.type"));
    }
  }

  // curl's -w line: "2 <code> <bytes downloaded> <bytes uploaded>".
  static std::vector<int64_t> CurlReport(const std::string& scenario) {
    std::istringstream in(W(scenario).output);
    std::string version;
    int64_t code = 0, down = 0, up = 0;
    in >> version >> code >> down >> up;
    EXPECT_EQ(version, "2") << scenario << ": curl did not speak HTTP/2: " << W(scenario).output;
    return {code, down, up};
  }

  // --- metrics ---

  // The exposition lines of one metric family (for failure messages).
  static std::string MetricLines(const std::string& family) {
    std::string out;
    std::istringstream in(g_run->metrics);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(family, 0) == 0 && line.find("_bucket{") == std::string::npos) {
        out += line + "\n";
      }
    }
    return out;
  }

  // Sum of `metric` samples whose labels include all of `want`.
  static double SumSamples(const std::string& metric,
                           const std::map<std::string, std::string>& want) {
    double sum = 0;
    for (const PromSample& s : ParsePrometheus(g_run->metrics)) {
      if (s.name != metric) continue;
      bool match = true;
      for (const auto& [k, v] : want) {
        auto it = s.labels.find(k);
        match = match && it != s.labels.end() && it->second == v;
      }
      if (match) sum += s.value;
    }
    return sum;
  }
};

TEST_F(Http2GrpcTest, AgentExitsCleanlyAndCountsSpans) {
  EXPECT_EQ(g_run->loupe_exit, 0);
  EXPECT_EQ(static_cast<size_t>(g_run->spans_stat), g_run->spans.size());
}

TEST_F(Http2GrpcTest, ValidHttp2IsNoParseError) {
  // Everything on the wire was well-formed HTTP/2 from real peers.
  EXPECT_EQ(g_run->parse_errors, 0) << g_run->loupe_log;
}

TEST_F(Http2GrpcTest, GrpcUnaryOk) {
  ExpectClientRan("grpc-unary", kUnaryOkCalls);
  ExpectSequentialGrpcCalls("grpc-unary", "Unary", 0, 1, 1, /*streaming=*/false);
  // Sequential calls of one channel share its connection.
  std::set<int64_t> peer_ports;
  for (const Json& s : GrpcServerSpans("grpc-unary")) {
    peer_ports.insert(s["attributes"].value("network.peer.port", 0));
  }
  EXPECT_THAT(peer_ports, SizeIs(1));
}

TEST_F(Http2GrpcTest, GrpcUnaryNotFoundIsAClientErrorOnly) {
  ExpectClientRan("grpc-unary-fail", 1);
  // NOT_FOUND (5): ERROR for the client, not for the server.
  ExpectSequentialGrpcCalls("grpc-unary-fail", "Unary", 5, 1, 0, /*streaming=*/false);
}

TEST_F(Http2GrpcTest, GrpcUnaryInternalIsAnErrorOnBothSides) {
  ExpectClientRan("grpc-unary-internal", 1);
  ExpectSequentialGrpcCalls("grpc-unary-internal", "Unary", 13, 1, 0, /*streaming=*/false);
}

TEST_F(Http2GrpcTest, GrpcServerStreaming) {
  ExpectClientRan("grpc-server-stream", 1);
  ExpectSequentialGrpcCalls("grpc-server-stream", "ServerStream", 0, 1, kServerStreamMessages,
                            /*streaming=*/true);
}

TEST_F(Http2GrpcTest, GrpcClientStreaming) {
  ExpectClientRan("grpc-client-stream", 1);
  ExpectSequentialGrpcCalls("grpc-client-stream", "ClientStream", 0, kClientStreamMessages, 1,
                            /*streaming=*/true);
}

TEST_F(Http2GrpcTest, GrpcBidiStreaming) {
  ExpectClientRan("grpc-bidi", 1);
  ExpectSequentialGrpcCalls("grpc-bidi", "BidiStream", 0, kBidiMessages, kBidiMessages,
                            /*streaming=*/true);
}

TEST_F(Http2GrpcTest, GrpcConcurrentCallsOnOneConnection) {
  const std::string scenario = "grpc-concurrent";
  ExpectClientRan(scenario, kConcurrentCalls);
  const Window& w = W(scenario);
  const std::vector<Json> servers = GrpcServerSpans(scenario);
  const std::vector<Json> clients = GrpcClientSpans(scenario);
  ASSERT_THAT(servers, SizeIs(kConcurrentCalls));
  ASSERT_THAT(clients, SizeIs(kConcurrentCalls));
  const std::vector<GrpcCall>& calls = g_run->grpc_calls.at(scenario);
  ASSERT_FALSE(calls.empty());
  uint64_t first_start = UINT64_MAX, last_end = 0;
  for (const GrpcCall& c : calls) {
    first_start = std::min(first_start, c.start_ns);
    last_end = std::max(last_end, c.end_ns);
  }
  std::set<int64_t> peer_ports;
  std::set<std::string> span_ids;
  constexpr uint64_t kHeldNs = kConcurrentDelayMs * 1'000'000ull;
  for (const Json& s : servers) {
    ExpectGrpcSpan(s, "SERVER", "Unary", 0, first_start, last_end, g_run->grpc_server_pid);
    ExpectMessageCounts(s, 1, 1, /*streaming=*/false);
    // Each stream's own duration: the server held every answer.
    EXPECT_GE(EndNs(s) - StartNs(s), kHeldNs) << s.dump();
    peer_ports.insert(s["attributes"].value("network.peer.port", 0));
    span_ids.insert(s["span_id"]);
  }
  for (const Json& s : clients) {
    ExpectGrpcSpan(s, "CLIENT", "Unary", 0, first_start, last_end, w.client_pid);
    ExpectMessageCounts(s, 1, 1, /*streaming=*/false);
    EXPECT_GE(EndNs(s) - StartNs(s), kHeldNs) << s.dump();
    span_ids.insert(s["span_id"]);
  }
  // One connection...
  EXPECT_THAT(peer_ports, SizeIs(1));
  // ...carrying all the streams at once: every span overlaps every other.
  uint64_t latest_start = 0, earliest_end = UINT64_MAX;
  for (const Json& s : servers) {
    latest_start = std::max(latest_start, StartNs(s));
    earliest_end = std::min(earliest_end, EndNs(s));
  }
  EXPECT_LT(latest_start, earliest_end);
  EXPECT_THAT(span_ids, SizeIs(2 * kConcurrentCalls));
}

TEST_F(Http2GrpcTest, GrpcNothingMissingOrDoubled) {
  // Every gRPC call of the run, seen once by each side.
  size_t calls = 0;
  for (const auto& [scenario, list] : g_run->grpc_calls) calls += list.size();
  EXPECT_EQ(calls, static_cast<size_t>(kUnaryOkCalls + 5 + kConcurrentCalls));
  std::map<std::string, int> server_by_method, client_by_method;
  std::set<pid_t> grpc_clients;
  for (const auto& [scenario, w] : g_run->windows) {
    if (scenario.rfind("grpc-", 0) == 0) grpc_clients.insert(w.client_pid);
  }
  for (const Json& s : g_run->spans) {
    const pid_t pid = s["resource"].value("process.pid", 0);
    if (s["kind"] == "SERVER" && pid == g_run->grpc_server_pid) {
      server_by_method[s["name"].get<std::string>()]++;
    } else if (s["kind"] == "CLIENT" && grpc_clients.count(pid) == 1) {
      client_by_method[s["name"].get<std::string>()]++;
    }
  }
  const std::map<std::string, int> expected = {
      {"loupe.test.Echo/Unary", kUnaryOkCalls + 2 + kConcurrentCalls},
      {"loupe.test.Echo/ServerStream", 1},
      {"loupe.test.Echo/ClientStream", 1},
      {"loupe.test.Echo/BidiStream", 1}};
  EXPECT_EQ(server_by_method, expected);
  EXPECT_EQ(client_by_method, expected);
}

TEST_F(Http2GrpcTest, GrpcServerSpansAreChildrenOfTheirClientCalls) {
  // Both ends on this host: every server span of the gRPC service is the
  // child of the client call on the same connection and HTTP/2 stream
  // (concurrent calls share one connection), same method, same trace.
  std::map<std::string, const Json*> by_span_id;
  for (const Json& s : g_run->spans) by_span_id[s["span_id"].get<std::string>()] = &s;
  int servers = 0;
  for (const Json& s : g_run->spans) {
    const pid_t pid = s["resource"].value("process.pid", 0);
    if (s["kind"] != "SERVER" || pid != g_run->grpc_server_pid) continue;
    ++servers;
    SCOPED_TRACE(s.dump());
    const auto parent = by_span_id.find(s["parent_span_id"].get<std::string>());
    ASSERT_NE(parent, by_span_id.end()) << "no parent";
    const Json& client = *parent->second;
    EXPECT_EQ(client["kind"], "CLIENT");
    EXPECT_EQ(client["name"], s["name"]);
    EXPECT_EQ(client["trace_id"], s["trace_id"]);
    EXPECT_EQ(client["attributes"].value("network.peer.port", 0),
              s["attributes"].value("server.port", -1));
    EXPECT_EQ(client["parent_span_id"], "");
  }
  EXPECT_EQ(servers, kUnaryOkCalls + 5 + kConcurrentCalls);
}

TEST_F(Http2GrpcTest, H2StaticFileServedWithSendfile) {
  const std::vector<int64_t> curl = CurlReport("h2-get");
  EXPECT_EQ(curl[0], 200);
  auto [server, client] = OnePair("/index.html");
  ASSERT_FALSE(server.empty());
  ExpectH2Exchange(server, client, "h2-get", "GET", "/index.html", "/index.html", 200, "curl");
  EXPECT_EQ(server["attributes"].value("http.response.body.size", -1), 1234);
  EXPECT_EQ(client["attributes"].value("http.response.body.size", -1), 1234);
  EXPECT_FALSE(server["attributes"].contains("http.request.body.size"));
}

TEST_F(Http2GrpcTest, H2NotFoundIsAClientErrorOnly) {
  const std::vector<int64_t> curl = CurlReport("h2-404");
  EXPECT_EQ(curl[0], 404);
  auto [server, client] = OnePair("/missing-page");
  ASSERT_FALSE(server.empty());
  ExpectH2Exchange(server, client, "h2-404", "GET", "/missing-page", "/missing-page", 404, "curl");
  // nginx's own error page: as many bytes as curl downloaded.
  EXPECT_EQ(client["attributes"].value("http.response.body.size", -1), curl[1]);
  EXPECT_EQ(server["attributes"].value("http.response.body.size", -1), curl[1]);
}

TEST_F(Http2GrpcTest, H2ServerErrorIsAnErrorOnBothSides) {
  const std::vector<int64_t> curl = CurlReport("h2-500");
  EXPECT_EQ(curl[0], 500);
  auto [server, client] = OnePair("/fail");
  ASSERT_FALSE(server.empty());
  ExpectH2Exchange(server, client, "h2-500", "GET", "/fail", "/fail", 500, "curl");
  EXPECT_EQ(server["attributes"].value("error.type", ""), "500");
  EXPECT_EQ(server["attributes"].value("http.response.body.size", -1), 5);  // "boom\n"
}

TEST_F(Http2GrpcTest, H2PutWithBody) {
  const std::vector<int64_t> curl = CurlReport("h2-put");
  EXPECT_EQ(curl[0], 201);
  EXPECT_EQ(curl[2], 16);
  auto [server, client] = OnePair("/uploads/item.json");
  ASSERT_FALSE(server.empty());
  ExpectH2Exchange(server, client, "h2-put", "PUT", "/uploads/item.json", "/uploads/item.json", 201,
                   "curl");
  EXPECT_EQ(server["attributes"].value("http.request.body.size", -1), 16);
  EXPECT_EQ(client["attributes"].value("http.request.body.size", -1), 16);
  // 201 Created without a body.
  EXPECT_EQ(server["attributes"].value("http.response.body.size", 0), 0);
  EXPECT_EQ(client["attributes"].value("http.response.body.size", 0), 0);
}

TEST_F(Http2GrpcTest, H2BodyFarLongerThanThePayloadPrefix) {
  // 300 kB in DATA frames whose payloads nginx sends with sendfile(2): only
  // the 9-byte frame headers are ever copied.
  const std::vector<int64_t> curl = CurlReport("h2-big");
  EXPECT_EQ(curl[0], 200);
  EXPECT_EQ(curl[1], static_cast<int64_t>(kBigFileBytes));
  auto [server, client] = OnePair("/big.bin");
  ASSERT_FALSE(server.empty());
  ExpectH2Exchange(server, client, "h2-big", "GET", "/big.bin", "/big.bin", 200, "curl");
  EXPECT_EQ(server["attributes"].value("http.response.body.size", -1),
            static_cast<int64_t>(kBigFileBytes));
  EXPECT_EQ(client["attributes"].value("http.response.body.size", -1),
            static_cast<int64_t>(kBigFileBytes));
}

TEST_F(Http2GrpcTest, H2ThreeStreamsMultiplexedOnOneConnection) {
  EXPECT_EQ(W("h2-multiplexed").exit_status, 0) << W("h2-multiplexed").output;
  std::set<int64_t> client_ports;
  for (const std::string id : {"201", "202", "203"}) {
    auto [server, client] = OnePair("/api/items/" + id);
    ASSERT_FALSE(server.empty());
    ExpectH2Exchange(server, client, "h2-multiplexed", "GET", "/api/items/" + id, "/api/items/{id}",
                     200, "nghttp");
    EXPECT_EQ(server["attributes"].value("http.response.body.size", -1), 14);
    client_ports.insert(server["attributes"].value("client.port", 0));
  }
  EXPECT_THAT(client_ports, SizeIs(1));
}

TEST_F(Http2GrpcTest, H2loadEveryRequestOnceOnEachSide) {
  const Window& w = W("h2load");
  EXPECT_EQ(w.exit_status, 0) << w.output;
  EXPECT_NE(w.output.find("200 succeeded"), std::string::npos) << w.output;
  const std::vector<Json> servers = SpansFor("SERVER", "/load.txt");
  const std::vector<Json> clients = SpansFor("CLIENT", "/load.txt");
  EXPECT_THAT(servers, SizeIs(kH2loadRequests));
  EXPECT_THAT(clients, SizeIs(kH2loadRequests));
  std::set<int64_t> connections;
  std::set<std::string> span_ids;
  int bad = 0;
  for (const std::vector<Json>* side : {&servers, &clients}) {
    for (const Json& s : *side) {
      const Json& a = s["attributes"];
      const bool good =
          s["name"] == "GET /load.txt" && a.value("http.response.status_code", 0) == 200 &&
          a.value("network.protocol.version", "") == "2" &&
          a.value("http.response.body.size", -1) == 777 &&
          a.value("server.port", 0) == g_run->nginx_port && s["status_code"] == "UNSET" &&
          StartNs(s) <= EndNs(s) && StartNs(s) + kClockSlackNs >= w.before_ns &&
          EndNs(s) <= w.after_ns + kClockSlackNs;
      if (!good && ++bad <= 3) ADD_FAILURE() << s.dump();
      span_ids.insert(s["span_id"]);
      if (s["kind"] == "SERVER") {
        connections.insert(a.value("client.port", 0));
        EXPECT_EQ(g_run->nginx_workers.count(s["resource"].value("process.pid", 0)), 1u);
      } else {
        EXPECT_EQ(s["resource"].value("process.pid", 0), w.client_pid);
        EXPECT_EQ(s["resource"].value("service.name", ""), "h2load");
      }
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_THAT(connections, SizeIs(kH2loadClients));
  EXPECT_THAT(span_ids, SizeIs(servers.size() + clients.size()));
}

TEST_F(Http2GrpcTest, H2NothingMissingOrDoubled) {
  // nginx's streams: 5 curl + 3 nghttp + h2load; nghttp's PRIORITY-only
  // anchor streams are no exchanges. Each seen once by nginx and once by
  // its client.
  std::map<std::string, int> by_kind;
  for (const Json& s : g_run->spans) {
    if (s["attributes"].value("server.port", 0) != g_run->nginx_port) continue;
    by_kind[s["kind"].get<std::string>()]++;
  }
  EXPECT_EQ(by_kind["SERVER"], 8 + kH2loadRequests);
  EXPECT_EQ(by_kind["CLIENT"], 8 + kH2loadRequests);
}

TEST_F(Http2GrpcTest, EverySpanIsHttp2) {
  // No connection preface mistaken for HTTP/1 ("PRI * HTTP/2.0"), no span of
  // another port, nothing unaccounted for.
  for (const Json& s : g_run->spans) {
    SCOPED_TRACE(s.dump());
    const Json& a = s["attributes"];
    EXPECT_EQ(a.value("network.protocol.version", ""), "2");
    EXPECT_NE(a.value("http.request.method", ""), "PRI");
    EXPECT_NE(a.value("http.request.method", ""), "_OTHER");
    const int64_t port = a.value("server.port", 0);
    EXPECT_TRUE(port == g_run->grpc_port || port == g_run->nginx_port);
  }
  const size_t grpc_calls = kUnaryOkCalls + 5 + kConcurrentCalls;
  EXPECT_EQ(g_run->spans.size(), 2 * (grpc_calls + 8 + kH2loadRequests));
}

TEST_F(Http2GrpcTest, ReplayOfTheRecordingGivesTheSameSpans) {
  const std::string out = g_run->dir + "/replayed.jsonl";
  std::string log;
  ASSERT_EQ(RunCommand({LoupeBinary(), "--replay", g_run->recording, "--jsonl", out}, &log), 0)
      << log;
  std::vector<Json> replayed;
  std::istringstream in(ReadFileOrEmpty(out));
  for (std::string line; std::getline(in, line);) replayed.push_back(Json::parse(line));
  ASSERT_EQ(replayed.size(), g_run->spans.size());
  EXPECT_EQ(CanonicalSpans(g_run->spans), CanonicalSpans(replayed));
}

// --- RED metrics (rpc.server.duration / rpc.client.duration, in ms) ---

TEST_F(Http2GrpcTest, RpcServerDurationMetric) {
  ASSERT_EQ(g_run->metrics_status, 200) << g_run->metrics.substr(0, 2000);
  const std::string metric = "rpc_server_duration_milliseconds_count";
  ASSERT_NE(g_run->metrics.find(metric), std::string::npos) << "no " << metric << " on /metrics:\n"
                                                            << MetricLines("rpc_");
  const std::string lines = MetricLines("rpc_server_duration_milliseconds");
  const std::map<std::string, std::string> unary = {{"rpc_system", "grpc"},
                                                    {"rpc_service", kGrpcService},
                                                    {"rpc_method", "Unary"},
                                                    {"service_name", "grpc_test_server"}};
  auto with_code = [&](const std::string& code) {
    auto labels = unary;
    labels["rpc_grpc_status_code"] = code;
    return labels;
  };
  EXPECT_EQ(SumSamples(metric, with_code("0")), kUnaryOkTotal) << lines;
  EXPECT_EQ(SumSamples(metric, with_code("5")), 1) << lines;
  EXPECT_EQ(SumSamples(metric, with_code("13")), 1) << lines;
  EXPECT_EQ(
      SumSamples(metric, {{"rpc_method", "ServerStream"}, {"service_name", "grpc_test_server"}}), 1)
      << lines;
}

TEST_F(Http2GrpcTest, RpcClientDurationMetric) {
  ASSERT_EQ(g_run->metrics_status, 200) << g_run->metrics.substr(0, 2000);
  const std::string metric = "rpc_client_duration_milliseconds_count";
  ASSERT_NE(g_run->metrics.find(metric), std::string::npos) << "no " << metric << " on /metrics:\n"
                                                            << MetricLines("rpc_");
  const std::string lines = MetricLines("rpc_client_duration_milliseconds");
  EXPECT_EQ(SumSamples(metric, {{"rpc_method", "Unary"}, {"rpc_grpc_status_code", "0"}}),
            kUnaryOkTotal)
      << lines;
  EXPECT_EQ(SumSamples(metric, {{"rpc_method", "Unary"}, {"rpc_grpc_status_code", "5"}}), 1)
      << lines;
}

}  // namespace
}  // namespace loupe::testing
