// End to end, everything real: the loupe agent (as root, with its BPF
// programs), nginx from Debian serving on loopback, curl as the client, plus
// a few hand-made clients in this process that exercise the syscall families
// curl does not use (write/read, writev/readv, sendmsg/recvmsg) and send
// garbage. One agent run covers every scenario; each TEST asserts on the
// spans of one scenario, told apart by its unique URL path.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::SizeIs;

// Spans are stamped from CLOCK_MONOTONIC plus an offset fixed at agent start;
// the window check allows this much slack for that conversion.
constexpr uint64_t kClockSlackNs = 5'000'000;

struct Window {
  uint64_t before_ns = 0;
  uint64_t after_ns = 0;
  pid_t client_pid = 0;
};

struct RunResult {
  bool ok = false;
  std::string error;
  uint16_t port = 0;
  pid_t nginx_master = 0;
  std::set<pid_t> nginx_workers;  // children of the master, read while it ran
  int loupe_exit = -1;
  std::vector<Json> spans;
  std::map<std::string, Window> windows;  // scenario -> wall-clock window
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

int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads one HTTP/1.1 response whose body is Content-Length delimited, with
// the given read function; returns the raw bytes.
std::string ReadResponse(const std::function<ssize_t(char*, size_t)>& read_fn) {
  std::string got;
  char buf[4096];
  size_t need = std::string::npos;
  while (got.size() < need) {
    ssize_t n = read_fn(buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    const size_t head_end = got.find("\r\n\r\n");
    if (need == std::string::npos && head_end != std::string::npos) {
      const size_t cl = got.find("Content-Length: ");
      const size_t len = cl == std::string::npos ? 0 : std::stoul(got.substr(cl + 16));
      need = head_end + 4 + len;
    }
  }
  return got;
}

std::string RequestFor(const std::string& path, uint16_t port) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUser-Agent: loupe-test\r\nAccept: */*\r\n\r\n";
}

// One exchange with write(2)/read(2).
void ClientWithWrite(uint16_t port, const std::string& path) {
  int fd = ConnectLoopback(port);
  const std::string req = RequestFor(path, port);
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  ReadResponse([fd](char* b, size_t n) { return read(fd, b, n); });
  close(fd);
}

// One exchange with writev(2)/readv(2), the request split over 3 iovecs.
void ClientWithWritev(uint16_t port, const std::string& path) {
  int fd = ConnectLoopback(port);
  const std::string req = RequestFor(path, port);
  std::string a = req.substr(0, 7), b = req.substr(7, 20), c = req.substr(27);
  iovec iov[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
  ASSERT_EQ(writev(fd, iov, 3), static_cast<ssize_t>(req.size()));
  ReadResponse([fd](char* buf, size_t n) {
    // Two small iovecs first, so the copy has to cross iovec boundaries.
    iovec in[3] = {{buf, 5}, {buf + 5, 11}, {buf + 16, n - 16}};
    return readv(fd, in, 3);
  });
  close(fd);
}

// One exchange with sendmsg(2)/recvmsg(2).
void ClientWithSendmsg(uint16_t port, const std::string& path) {
  int fd = ConnectLoopback(port);
  const std::string req = RequestFor(path, port);
  std::string a = req.substr(0, 4), b = req.substr(4);
  iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  ASSERT_EQ(sendmsg(fd, &msg, 0), static_cast<ssize_t>(req.size()));
  ReadResponse([fd](char* buf, size_t n) {
    iovec in[2] = {{buf, 3}, {buf + 3, n - 3}};
    msghdr m{};
    m.msg_iov = in;
    m.msg_iovlen = 2;
    return recvmsg(fd, &m, 0);
  });
  close(fd);
}

// A valid request followed by binary junk on the same connection: nginx
// answers the first and rejects the rest (400) before closing.
void ClientSendingGarbage(uint16_t port, const std::string& path) {
  int fd = ConnectLoopback(port);
  std::string payload = RequestFor(path, port);
  std::mt19937 rng(42);
  for (int i = 0; i < 3000; ++i) payload.push_back(static_cast<char>(rng() & 0xff));
  ASSERT_EQ(send(fd, payload.data(), payload.size(), 0), static_cast<ssize_t>(payload.size()));
  char buf[4096];
  while (recv(fd, buf, sizeof(buf), 0) > 0) {
  }
  close(fd);
}

RunResult RunEverything() {
  RunResult r;
  const std::string curl = FindProgram({"/usr/bin/curl"});
  if (curl.empty()) {
    r.error = "curl must be installed (apt-get install curl)";
    return r;
  }
  std::vector<std::pair<std::string, std::string>> files = {
      {"index.html", Content(1234, 1)}, {"big.bin", Content(300000, 2)},
      {"head.html", Content(555, 4)}};
  for (const char* f : {"via-write.txt", "via-writev.txt", "via-sendmsg.txt", "before-garbage.txt",
                        "after-garbage.txt"}) {
    files.emplace_back(f, Content(100, 3));
  }
  auto nginx = NginxServer::Start(files, &r.error);
  if (!nginx) return r;
  r.port = nginx->port();
  r.nginx_master = nginx->master_pid();
  r.dir = nginx->dir();

  r.recording = r.dir + "/run.rec";
  auto loupe = LoupeProcess::Start(
      r.dir, {"--port", std::to_string(r.port), "--record", r.recording, "--stats-interval", "1"});
  if (!loupe) {
    r.error = "loupe did not become ready: " + ReadFileOrEmpty(r.dir + "/loupe.log");
    return r;
  }
  const std::string base = "http://127.0.0.1:" + std::to_string(r.port);
  WriteFile(r.dir + "/body.json", "{\"name\":\"lamp\"}\n");  // 16 bytes

  auto curl_run = [&](const std::string& scenario, std::vector<std::string> args,
                      std::vector<std::string> env = {}) {
    Window w;
    w.before_ns = UnixNowNs();
    std::vector<std::string> argv = {curl, "-s", "-o", "/dev/null"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = Subprocess::Start(argv, "", "", env);
    w.client_pid = p->pid();
    p->Wait(std::chrono::seconds(30));
    w.after_ns = UnixNowNs();
    r.windows[scenario] = w;
  };
  auto local_run = [&](const std::string& scenario, const std::function<void()>& fn) {
    Window w;
    w.before_ns = UnixNowNs();
    w.client_pid = getpid();
    fn();
    w.after_ns = UnixNowNs();
    r.windows[scenario] = w;
  };

  curl_run("get", {base + "/index.html"});
  curl_run("404", {base + "/missing-page"});
  curl_run("post", {"-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                    "@" + r.dir + "/body.json", base + "/api/items"});
  curl_run("keepalive", {base + "/api/items/101", "-o", "/dev/null", base + "/api/items/102",
                         "-o", "/dev/null", base + "/api/items/103"});
  curl_run("500", {base + "/fail"});
  curl_run("big", {base + "/big.bin"});
  curl_run("head", {"-I", base + "/head.html?head=1"});
  // Two requests 300 ms apart keep curl alive long enough for the agent to
  // read its environment: a process that exits within a millisecond of its
  // first request is named from its kernel comm instead (see docs/spans.md).
  curl_run("service-name",
           {"--rate", "200/m", base + "/api/items/777?token=secret", "-o", "/dev/null",
            base + "/api/items/778"},
           {"OTEL_SERVICE_NAME=checkout"});
  local_run("write", [&] { ClientWithWrite(r.port, "/via-write.txt"); });
  local_run("writev", [&] { ClientWithWritev(r.port, "/via-writev.txt"); });
  local_run("sendmsg", [&] { ClientWithSendmsg(r.port, "/via-sendmsg.txt"); });
  local_run("garbage", [&] { ClientSendingGarbage(r.port, "/before-garbage.txt"); });
  curl_run("after-garbage", {base + "/after-garbage.txt"});

  // nginx's worker processes, while they exist.
  for (pid_t worker : nginx->Workers()) r.nginx_workers.insert(worker);

  // Let the agent see the last close events and flush.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const bool alive = loupe->running();
  r.loupe_exit = loupe->Stop();
  if (!alive) r.error = "loupe died during the run";
  r.spans = loupe->Spans();
  r.parse_errors = loupe->FinalStat("parse_errors");
  r.spans_stat = loupe->FinalStat("spans");
  r.loupe_log = loupe->Log();
  nginx->Stop();
  r.ok = r.error.empty();
  return r;
}

class Http1NginxTest : public ::testing::Test {
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
    ASSERT_TRUE(g_run != nullptr && g_run->ok)
        << (g_run ? g_run->error : "") << "\nagent log:\n" << (g_run ? g_run->loupe_log : "");
  }

  static std::vector<Json> SpansFor(const std::string& kind, const std::string& path) {
    std::vector<Json> out;
    for (const Json& s : g_run->spans) {
      if (s["kind"] == kind && s["attributes"].value("url.path", "") == path) out.push_back(s);
    }
    return out;
  }

  // Checks what every exchange shares: ids and the parent link, protocol, addresses, the
  // resources of both ends, and that both spans sit inside the client's
  // wall-clock window with the server span nested in the client span.
  static void ExpectExchange(const Json& server, const Json& client, const std::string& scenario,
                             const std::string& method, int status,
                             const std::string& client_service = "curl") {
    const Window& w = g_run->windows.at(scenario);
    // Both ends on this host: one trace, the client's span the root and the
    // server's its child (docs/traces.md).
    EXPECT_EQ(client["parent_span_id"], "");
    EXPECT_EQ(server["parent_span_id"], client["span_id"]);
    EXPECT_EQ(server["trace_id"], client["trace_id"]);
    for (const Json* s : {&server, &client}) {
      SCOPED_TRACE(s->dump());
      EXPECT_THAT((*s)["trace_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{32}"));
      EXPECT_NE((*s)["trace_id"], std::string(32, '0'));
      EXPECT_THAT((*s)["span_id"].get<std::string>(), ::testing::MatchesRegex("[0-9a-f]{16}"));
      const Json& a = (*s)["attributes"];
      EXPECT_EQ(a["http.request.method"], method);
      EXPECT_EQ(a["http.response.status_code"], status);
      EXPECT_EQ(a["network.protocol.version"], "1.1");
      EXPECT_EQ(a["server.address"], "127.0.0.1");
      EXPECT_EQ(a["server.port"], g_run->port);
      const uint64_t start = (*s)["start_time_unix_nano"];
      const uint64_t end = (*s)["end_time_unix_nano"];
      EXPECT_LE(start, end);
      EXPECT_GE(start + kClockSlackNs, w.before_ns);
      EXPECT_LE(end, w.after_ns + kClockSlackNs);
      EXPECT_EQ((*s)["resource"]["host.name"].get<std::string>().empty(), false);
    }
    EXPECT_EQ(server["kind"], "SERVER");
    EXPECT_EQ(client["kind"], "CLIENT");
    // Physical order on one clock: the client's write begins before the
    // server's read returns. At the end, the client's last read can return
    // a hair before the server's last write does (loopback delivers the
    // bytes inside the write), so the end is checked to within 1 ms.
    EXPECT_LE(client["start_time_unix_nano"].get<uint64_t>(),
              server["start_time_unix_nano"].get<uint64_t>());
    EXPECT_LE(server["end_time_unix_nano"].get<uint64_t>(),
              client["end_time_unix_nano"].get<uint64_t>() + 1'000'000);
    EXPECT_EQ(server["attributes"]["client.address"], "127.0.0.1");
    // The server span belongs to an nginx worker (a child of the master).
    EXPECT_EQ(server["resource"]["service.name"], "nginx");
    EXPECT_EQ(server["resource"]["process.executable.name"], "nginx");
    const pid_t worker = server["resource"]["process.pid"].get<pid_t>();
    EXPECT_NE(worker, g_run->nginx_master);
    EXPECT_EQ(g_run->nginx_workers.count(worker), 1u) << worker;
    EXPECT_EQ(client["resource"]["service.name"], client_service);
    EXPECT_EQ(client["resource"]["process.pid"], w.client_pid);
    // Status: 5xx is an error on both sides, 4xx only for the client.
    const std::string server_status = status >= 500 ? "ERROR" : "UNSET";
    const std::string client_status = status >= 400 ? "ERROR" : "UNSET";
    EXPECT_EQ(server["status_code"], server_status);
    EXPECT_EQ(client["status_code"], client_status);
    if (status >= 400) {
      EXPECT_EQ(client["attributes"]["error.type"], std::to_string(status));
    } else {
      EXPECT_FALSE(client["attributes"].contains("error.type"));
    }
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
};

TEST_F(Http1NginxTest, AgentExitsCleanlyAndCountsSpans) {
  EXPECT_EQ(g_run->loupe_exit, 0);
  EXPECT_EQ(static_cast<size_t>(g_run->spans_stat), g_run->spans.size());
  EXPECT_NE(g_run->loupe_log.find("stats:"), std::string::npos);
}

TEST_F(Http1NginxTest, StaticFileServedWithSendfile) {
  auto [server, client] = OnePair("/index.html");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "get", "GET", 200);
  EXPECT_EQ(server["name"], "GET /index.html");
  EXPECT_EQ(server["attributes"]["http.route"], "/index.html");
  EXPECT_EQ(server["attributes"]["http.response.body.size"], 1234);
  EXPECT_EQ(client["attributes"]["http.response.body.size"], 1234);
  EXPECT_EQ(client["attributes"]["network.peer.port"], g_run->port);
}

TEST_F(Http1NginxTest, NotFoundIsAClientErrorOnly) {
  auto [server, client] = OnePair("/missing-page");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "404", "GET", 404);
}

TEST_F(Http1NginxTest, PostWithBody) {
  auto [server, client] = OnePair("/api/items");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "post", "POST", 201);
  EXPECT_EQ(server["name"], "POST /api/items");
  EXPECT_EQ(server["attributes"]["http.request.body.size"], 16);
  EXPECT_EQ(client["attributes"]["http.request.body.size"], 16);
  EXPECT_EQ(server["attributes"]["http.response.body.size"], 8);  // "created\n"
}

TEST_F(Http1NginxTest, KeepAliveConnectionCarriesThreeExchanges) {
  std::set<int64_t> client_ports;
  for (const std::string id : {"101", "102", "103"}) {
    auto [server, client] = OnePair("/api/items/" + id);
    ASSERT_FALSE(server.empty());
    ExpectExchange(server, client, "keepalive", "GET", 200);
    EXPECT_EQ(server["name"], "GET /api/items/{id}");
    EXPECT_EQ(client["name"], "GET /api/items/{id}");
    EXPECT_EQ(server["attributes"]["http.route"], "/api/items/{id}");
    client_ports.insert(server["attributes"]["client.port"].get<int64_t>());
  }
  // One connection: the same client port for all three.
  EXPECT_THAT(client_ports, SizeIs(1));
}

TEST_F(Http1NginxTest, ServerErrorIsAnErrorOnBothSides) {
  auto [server, client] = OnePair("/fail");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "500", "GET", 500);
  EXPECT_EQ(server["attributes"]["error.type"], "500");
}

TEST_F(Http1NginxTest, BodyFarLongerThanThePayloadPrefix) {
  auto [server, client] = OnePair("/big.bin");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "big", "GET", 200);
  EXPECT_EQ(server["attributes"]["http.response.body.size"], 300000);
  EXPECT_EQ(client["attributes"]["http.response.body.size"], 300000);
}

TEST_F(Http1NginxTest, HeadHasNoBody) {
  // url.path carries no query string.
  auto [server, client] = OnePair("/head.html");
  ASSERT_FALSE(server.empty());
  ExpectExchange(server, client, "head", "HEAD", 200);
  EXPECT_FALSE(server["attributes"].contains("url.query"));  // off by default
  // The response announced 555 bytes but carried none; the exchange ended
  // without waiting for them (the next request on nothing would hang).
  EXPECT_EQ(client["attributes"].value("http.response.body.size", 0), 0);
}

TEST_F(Http1NginxTest, ServiceNameFromTheClientsEnvironment) {
  for (const std::string path : {"/api/items/777", "/api/items/778"}) {
    auto [server, client] = OnePair(path);
    ASSERT_FALSE(server.empty());
    ExpectExchange(server, client, "service-name", "GET", 200, "checkout");
    EXPECT_FALSE(client["attributes"].contains("url.query"));
  }
}

TEST_F(Http1NginxTest, EverySyscallFamilyIsCaptured) {
  // This test binary: service.name falls back to the executable's name.
  const std::string self_name = std::filesystem::read_symlink("/proc/self/exe").filename();
  for (const auto& [scenario, path] : std::vector<std::pair<std::string, std::string>>{
           {"write", "/via-write.txt"}, {"writev", "/via-writev.txt"},
           {"sendmsg", "/via-sendmsg.txt"}}) {
    SCOPED_TRACE(scenario);
    auto [server, client] = OnePair(path);
    ASSERT_FALSE(server.empty());
    ExpectExchange(server, client, scenario, "GET", 200, self_name);
    EXPECT_EQ(client["attributes"]["http.response.body.size"], 100);
  }
}

TEST_F(Http1NginxTest, GarbageIsCountedAndTheAgentKeepsWorking) {
  // The valid request before the junk is still decoded on both sides...
  auto [server, client] = OnePair("/before-garbage.txt");
  ASSERT_FALSE(server.empty());
  // ...the junk is counted as parse errors, not turned into spans...
  EXPECT_GE(g_run->parse_errors, 2) << g_run->loupe_log;
  for (const Json& s : g_run->spans) {
    EXPECT_EQ(s["attributes"]["http.request.method"].get<std::string>().find('\xff'),
              std::string::npos);
  }
  // ...and traffic after it is traced as usual.
  auto [after_server, after_client] = OnePair("/after-garbage.txt");
  ASSERT_FALSE(after_server.empty());
  ExpectExchange(after_server, after_client, "after-garbage", "GET", 200);
}

TEST_F(Http1NginxTest, NothingMissingOrDoubled) {
  // Every span belongs to one scenario above: 16 exchanges, each seen once
  // by nginx and once by its client.
  std::map<std::string, int> by_kind;
  for (const Json& s : g_run->spans) by_kind[s["kind"].get<std::string>()]++;
  EXPECT_EQ(by_kind["SERVER"], 16);
  EXPECT_EQ(by_kind["CLIENT"], 16);
}

TEST_F(Http1NginxTest, ReplayOfTheRecordingGivesTheSameSpans) {
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

}  // namespace
}  // namespace loupe::testing
