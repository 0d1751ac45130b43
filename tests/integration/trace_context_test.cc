// End to end, everything real: the loupe agent (as root, with its BPF
// programs) links the spans of one request across processes on this node.
//
//   curl -> nginx (reverse proxy, nginx_proxy.conf.in)
//        -> trace_service backend -> PostgreSQL 15 (one query on the request
//                                    thread, its id in a column alias)
//                                 -> trace_service leaf (GET /leaf/<id>, a
//                                    fresh connection, no trace headers)
//
// and trace_service's event loop, which calls the leaf while two requests
// are open on its only thread (see tests/trace_services/trace_service.cc),
// and curl calling a leaf in another network namespace (two pods on a node).
// PostgreSQL, nginx and the services run for the whole suite; each test runs
// its own agent, restricted with --pid to the services it is about (but the
// namespace test, which traces the host), so curl,
// wrk and this process are not traced: the nginx SERVER span is a root (or
// the child of the curl's traceparent), and the graph metrics count exactly
// the test's requests.
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/exporters/prometheus/http_get.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

constexpr int kChainRequests = 5;
constexpr auto kSpanWait = std::chrono::seconds(10);
// Parent and child are stamped by the same clock conversion; a child may
// still appear to start or end this much outside its parent.
constexpr uint64_t kNestingSlackNs = 1'000'000;
constexpr double kMinLinkedShare = 0.8;
constexpr const char* kBackendService = "trace-backend";
constexpr const char* kLeafService = "trace-leaf";
constexpr const char* kEventLoopService = "trace-eventloop";

// Everything the tests talk to, started once.
struct Services {
  std::string skip;   // a program is missing
  std::string error;  // something did not start
  std::string dir;
  std::string curl;
  PostgresServer postgres;
  std::unique_ptr<Subprocess> leaf;
  std::unique_ptr<Subprocess> backend;
  std::unique_ptr<Subprocess> eventloop;
  std::unique_ptr<NginxServer> nginx;
  uint16_t leaf_port = 0;
  uint16_t backend_port = 0;
  uint16_t eventloop_port = 0;
};

Services* g_services = nullptr;

// Starts trace_service in `mode`; nullptr (with *error set) unless it listens.
// `prefix` runs it through another command (ip netns exec NS).
std::unique_ptr<Subprocess> StartService(const std::string& dir, const std::string& name,
                                         const std::string& service_name,
                                         std::vector<std::string> args, std::string* error,
                                         std::vector<std::string> prefix = {}) {
  std::vector<std::string> argv = std::move(prefix);
  argv.push_back(LOUPE_TRACE_SERVICE);
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string out = dir + "/" + name + ".out";
  const std::string err = dir + "/" + name + ".err";
  auto process = Subprocess::Start(argv, out, err, {"OTEL_SERVICE_NAME=" + service_name});
  if (!WaitForFileContaining(out, "listening on", std::chrono::seconds(10))) {
    *error = name + " did not start: " + ReadFileOrEmpty(err);
    return nullptr;
  }
  return process;
}

void StartServices(Services& s) {
  s.curl = FindProgram({"/usr/bin/curl"});
  if (s.curl.empty()) {
    s.skip = "curl is not installed (apt-get install curl)";
    return;
  }
  if (FindProgram({"/usr/sbin/nginx", "/usr/bin/nginx"}).empty()) {
    s.skip = "nginx is not installed (apt-get install nginx)";
    return;
  }
  if (FindProgram({kPgBin + "/postgres"}).empty()) {
    s.skip = "PostgreSQL 15 is not installed (apt-get install postgresql-15)";
    return;
  }
  s.dir = MakeTempDir("loupe-it-trace-context");
  s.error = s.postgres.Start(s.dir);
  if (!s.error.empty()) return;

  s.leaf_port = PickFreePort();
  s.leaf = StartService(s.dir, "leaf", kLeafService,
                        {"--mode", "leaf", "--port", std::to_string(s.leaf_port)}, &s.error);
  if (!s.leaf) return;
  s.backend_port = PickFreePort();
  s.backend = StartService(s.dir, "backend", kBackendService,
                           {"--mode", "backend", "--port", std::to_string(s.backend_port),
                            "--leaf-port", std::to_string(s.leaf_port), "--pg",
                            s.postgres.conninfo()},
                           &s.error);
  if (!s.backend) return;
  s.eventloop_port = PickFreePort();
  s.eventloop = StartService(s.dir, "eventloop", kEventLoopService,
                             {"--mode", "eventloop", "--port", std::to_string(s.eventloop_port),
                              "--leaf-port", std::to_string(s.leaf_port), "--batch", "2"},
                             &s.error);
  if (!s.eventloop) return;
  s.nginx = NginxServer::StartWithTemplate(
      "nginx_proxy.conf.in", {{"@BACKEND_PORT@", std::to_string(s.backend_port)}}, {}, &s.error);
}

// The spans written so far: complete lines only (the agent may be halfway
// through one), anything unparsable skipped.
std::vector<Json> ReadSpans(const std::string& path) {
  std::vector<Json> spans;
  const std::string content = ReadFileOrEmpty(path);
  size_t start = 0;
  for (size_t end; (end = content.find('\n', start)) != std::string::npos; start = end + 1) {
    Json span = Json::parse(content.substr(start, end - start), nullptr, false);
    if (!span.is_discarded()) spans.push_back(std::move(span));
  }
  return spans;
}

std::string StringField(const Json& object, const std::string& key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string ServiceOf(const Json& span) { return StringField(span["resource"], "service.name"); }
std::string Attribute(const Json& span, const std::string& key) {
  return StringField(span["attributes"], key);
}
uint64_t StartNs(const Json& span) { return span["start_time_unix_nano"].get<uint64_t>(); }
uint64_t EndNs(const Json& span) { return span["end_time_unix_nano"].get<uint64_t>(); }

// The hops of one request through the chain.
enum Role : size_t {
  kNginxServer,
  kNginxClient,
  kBackendServer,
  kBackendSql,
  kBackendHttp,
  kLeafServer,
  kRoleCount
};
constexpr std::array<const char*, kRoleCount> kRoleNames = {
    "nginx SERVER", "nginx CLIENT", "backend SERVER", "backend CLIENT postgresql",
    "backend CLIENT http", "leaf SERVER"};
// child -> parent, as the linker should set them.
constexpr std::array<std::pair<Role, Role>, 5> kParentOf = {{{kNginxClient, kNginxServer},
                                                            {kBackendServer, kNginxClient},
                                                            {kBackendSql, kBackendServer},
                                                            {kBackendHttp, kBackendServer},
                                                            {kLeafServer, kBackendHttp}}};

// The column alias trace_service puts in its query (kept by SQL sanitizing).
std::string SqlMarker(const std::string& id) { return "\"req-" + id + "\""; }

bool IsRole(const Json& s, Role role, const std::string& id) {
  const std::string kind = StringField(s, "kind");
  const std::string service = ServiceOf(s);
  const std::string path = Attribute(s, "url.path");
  switch (role) {
    case kNginxServer:
      return kind == "SERVER" && service == "nginx" && path == "/api/" + id;
    case kNginxClient:
      return kind == "CLIENT" && service == "nginx" && path == "/api/" + id;
    case kBackendServer:
      return kind == "SERVER" && service == kBackendService && path == "/api/" + id;
    case kBackendSql:
      return kind == "CLIENT" && service == kBackendService &&
             Attribute(s, "db.system.name") == "postgresql" &&
             Attribute(s, "db.query.text").find(SqlMarker(id)) != std::string::npos;
    case kBackendHttp:
      return kind == "CLIENT" && service == kBackendService && path == "/leaf/" + id;
    case kLeafServer:
      return kind == "SERVER" && service == kLeafService && path == "/leaf/" + id;
    case kRoleCount:
      break;
  }
  return false;
}

using Chain = std::array<std::vector<Json>, kRoleCount>;

Chain FindChain(const std::vector<Json>& spans, const std::string& id) {
  Chain chain;
  for (const Json& s : spans) {
    for (size_t role = 0; role < kRoleCount; ++role) {
      if (IsRole(s, static_cast<Role>(role), id)) chain[role].push_back(s);
    }
  }
  return chain;
}

bool Complete(const Chain& chain) {
  for (const auto& spans : chain) {
    if (spans.empty()) return false;
  }
  return true;
}

// The request id a span names (url.path /api/<id> or /leaf/<id>, or the
// query's column alias), or "".
std::string RequestIdOf(const Json& s) {
  static const std::regex kPath("^/(api|leaf)/([A-Za-z0-9_-]+)$");
  static const std::regex kSql("\"req-([A-Za-z0-9_-]+)\"");
  std::smatch m;
  const std::string path = Attribute(s, "url.path");
  if (std::regex_match(path, m, kPath)) return m[2];
  const std::string sql = Attribute(s, "db.query.text");
  if (std::regex_search(sql, m, kSql)) return m[1];
  return "";
}

std::string RandomHex(size_t digits) {
  static std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  while (out.size() < digits) out.push_back(kHex[rng() & 0xf]);
  return out;
}

// One line per span: enough to see the links; the JSON lines file has the
// rest.
std::string Summary(const Json& s) {
  std::string out = StringField(s, "kind") + " " + ServiceOf(s) + " " + StringField(s, "name");
  if (const std::string path = Attribute(s, "url.path"); !path.empty()) out += " " + path;
  if (const std::string sql = Attribute(s, "db.query.text"); !sql.empty()) out += " [" + sql + "]";
  return out + " trace=" + StringField(s, "trace_id") + " span=" + StringField(s, "span_id") +
         " parent=" + StringField(s, "parent_span_id") + " start=" + std::to_string(StartNs(s)) +
         " end=" + std::to_string(EndNs(s));
}

std::string ChainDump(const Chain& chain) {
  std::string out;
  for (size_t role = 0; role < kRoleCount; ++role) {
    for (const Json& s : chain[role]) {
      out += std::string(kRoleNames[role]) + ": " + Summary(s) + "\n";
    }
  }
  return out;
}

std::vector<MetricSample> Scrape(uint16_t port) {
  return ParsePrometheusText(HttpGet(port, "/metrics").body);
}

double Sample(const std::vector<MetricSample>& samples, const std::string& name,
              const std::map<std::string, std::string>& labels = {}) {
  return SumSamples(samples, name, labels).value_or(0);
}

// Scrapes until `done` holds for a scrape or the span wait is over; returns
// the last scrape.
std::vector<MetricSample> ScrapeUntil(
    uint16_t port, const std::function<bool(const std::vector<MetricSample>&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpanWait;
  std::vector<MetricSample> samples = Scrape(port);
  while (!done(samples) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    samples = Scrape(port);
  }
  return samples;
}

class TraceContextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!IsRoot()) return;
    g_services = new Services();
    StartServices(*g_services);
  }
  static void TearDownTestSuite() {
    delete g_services;
    g_services = nullptr;
  }

  void SetUp() override {
    if (!IsRoot()) GTEST_SKIP() << "integration tests load BPF programs: run them as root";
    ASSERT_NE(g_services, nullptr);
    if (!g_services->skip.empty()) GTEST_SKIP() << g_services->skip;
    ASSERT_EQ(g_services->error, "");
  }

  void TearDown() override {
    if (!agent_) return;
    const bool alive = agent_->running();
    EXPECT_TRUE(alive) << "the agent died:\n" << agent_->Log();
    EXPECT_EQ(agent_->Stop(), 0) << agent_->Log();
    if (HasFailure()) {
      std::printf("spans in %s; agent log:\n%s\n", agent_->jsonl_path().c_str(),
                  agent_->Log().c_str());
    }
  }

  // Starts this test's agent, tracing only `pids`, with /metrics on a port
  // of its own.
  void StartAgent(const std::vector<pid_t>& pids) {
    std::string pid_list;
    for (pid_t pid : pids) pid_list += (pid_list.empty() ? "" : ",") + std::to_string(pid);
    metrics_port_ = PickFreePort();
    agent_ = LoupeProcess::Start(
        MakeTempDir("loupe-it-trace-context-agent"),
        {"--pid", pid_list, "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_)});
    ASSERT_NE(agent_, nullptr) << "loupe did not become ready";
    ASSERT_TRUE(WaitForTcpPort(metrics_port_, std::chrono::seconds(10))) << agent_->Log();
  }

  void StartChainAgent() {
    std::vector<pid_t> pids = {g_services->nginx->master_pid(), g_services->backend->pid(),
                               g_services->leaf->pid()};
    for (pid_t worker : g_services->nginx->Workers()) pids.push_back(worker);
    StartAgent(pids);
  }

  // curl's stdout followed by the status code on a line of its own.
  static std::string Curl(const std::string& url, const std::vector<std::string>& headers = {}) {
    std::vector<std::string> argv = {g_services->curl, "-sS", "--max-time", "10", "-w",
                                     "\n%{http_code}"};
    for (const std::string& h : headers) argv.insert(argv.end(), {"-H", h});
    argv.push_back(url);
    std::string out;
    RunCommand(argv, &out, {}, std::chrono::seconds(15));
    return out;
  }

  // Reads the spans until every id's chain is complete, or the wait is
  // over; then once more a moment later, so that "exactly one" is not
  // decided while a duplicate may still be on its way.
  std::vector<Json> WaitForChains(const std::vector<std::string>& ids) const {
    const auto deadline = std::chrono::steady_clock::now() + kSpanWait;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::vector<Json> spans = ReadSpans(agent_->jsonl_path());
      bool all = true;
      for (const std::string& id : ids) all = all && Complete(FindChain(spans, id));
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return ReadSpans(agent_->jsonl_path());
  }

  // One request's chain: each hop exactly once, all in one trace that holds
  // nothing else, each child inside its parent. With `traceparent`
  // (trace id, span id) the trace is the caller's and the nginx SERVER span
  // the caller's child, else the nginx SERVER span is the root. One failure
  // per request, listing what is wrong.
  static void ExpectLinkedChain(const std::vector<Json>& spans, const std::string& id,
                                const std::optional<std::pair<std::string, std::string>>&
                                    traceparent = std::nullopt) {
    const Chain chain = FindChain(spans, id);
    for (size_t role = 0; role < kRoleCount; ++role) {
      ASSERT_EQ(chain[role].size(), 1u)
          << "request " << id << ": " << kRoleNames[role] << " spans; the chain:\n"
          << ChainDump(chain);
    }
    auto span = [&chain](Role role) -> const Json& { return chain[role].front(); };
    std::vector<std::string> problems;
    const std::string trace_id =
        traceparent ? traceparent->first : StringField(span(kNginxServer), "trace_id");
    for (size_t role = 0; role < kRoleCount; ++role) {
      if (StringField(chain[role].front(), "trace_id") != trace_id) {
        problems.push_back(std::string(kRoleNames[role]) + " is not in trace " + trace_id);
      }
    }
    const std::string root_parent = traceparent ? traceparent->second : std::string();
    if (StringField(span(kNginxServer), "parent_span_id") != root_parent) {
      problems.push_back("nginx SERVER's parent is not '" + root_parent + "'");
    }
    for (const auto& [child, parent] : kParentOf) {
      const std::string relation =
          std::string(kRoleNames[child]) + " / " + kRoleNames[parent] + ": ";
      if (StringField(span(child), "parent_span_id") != StringField(span(parent), "span_id")) {
        problems.push_back(relation + "not child and parent");
      }
      if (StartNs(span(child)) + kNestingSlackNs < StartNs(span(parent))) {
        problems.push_back(relation + "the child starts first");
      }
      if (EndNs(span(child)) > EndNs(span(parent)) + kNestingSlackNs) {
        problems.push_back(relation + "the child ends last");
      }
    }
    size_t in_trace = 0;
    for (const Json& s : spans) in_trace += StringField(s, "trace_id") == trace_id ? 1 : 0;
    if (in_trace != kRoleCount) {
      problems.push_back("trace " + trace_id + " has " + std::to_string(in_trace) + " spans, not " +
                         std::to_string(kRoleCount));
    }
    std::string list;
    for (const std::string& p : problems) list += "  " + p + "\n";
    EXPECT_TRUE(problems.empty()) << "request " << id << ":\n" << list << "the chain:\n"
                                  << ChainDump(chain);
  }

  std::unique_ptr<LoupeProcess> agent_;
  uint16_t metrics_port_ = 0;
};

TEST_F(TraceContextTest, ChainWithoutHeaders) {
  ASSERT_NO_FATAL_FAILURE(StartChainAgent());
  std::vector<std::string> ids;
  for (int i = 0; i < kChainRequests; ++i) {
    const std::string id = "plain-" + std::to_string(i) + "-" + RandomHex(6);
    ids.push_back(id);
    EXPECT_EQ(Curl(g_services->nginx->url("/api/" + id)), "backend " + id + "\n\n200");
  }
  const std::vector<Json> spans = WaitForChains(ids);
  for (const std::string& id : ids) ExpectLinkedChain(spans, id);

  // The service graph: one edge per pair of linked CLIENT and SERVER spans.
  // PostgreSQL only gives CLIENT spans (its backends are not decoded, nor
  // traced here), so the backend has no edge to it.
  const std::string total = "traces_service_graph_request_total";
  const std::map<std::string, std::string> to_backend = {{"client", "nginx"},
                                                         {"server", kBackendService}};
  const std::map<std::string, std::string> to_leaf = {{"client", kBackendService},
                                                      {"server", kLeafService}};
  const std::vector<MetricSample> m = ScrapeUntil(metrics_port_, [&](const auto& samples) {
    return Sample(samples, total, to_backend) >= kChainRequests &&
           Sample(samples, total, to_leaf) >= kChainRequests;
  });
  EXPECT_EQ(Sample(m, total, to_backend), kChainRequests);
  EXPECT_EQ(Sample(m, total, to_leaf), kChainRequests);
  EXPECT_EQ(Sample(m, total, {{"client", kBackendService}}), kChainRequests)
      << "an edge from the backend to something else than the leaf";
  EXPECT_EQ(Sample(m, total), 2 * kChainRequests) << "edges other than the chain's";
  EXPECT_EQ(Sample(m, "traces_service_graph_request_failed_total"), 0);
  for (const auto& edge : {to_backend, to_leaf}) {
    SCOPED_TRACE(edge.at("client") + " -> " + edge.at("server"));
    EXPECT_EQ(Sample(m, "traces_service_graph_request_server_seconds_count", edge),
              kChainRequests);
    EXPECT_EQ(Sample(m, "traces_service_graph_request_client_seconds_count", edge),
              kChainRequests);
  }
}

TEST_F(TraceContextTest, ChainWithTraceparent) {
  ASSERT_NO_FATAL_FAILURE(StartChainAgent());
  std::map<std::string, std::pair<std::string, std::string>> contexts;  // id -> trace, span
  for (int i = 0; i < kChainRequests; ++i) {
    const std::string id = "w3c-" + std::to_string(i) + "-" + RandomHex(6);
    const auto& [trace_id, span_id] = contexts[id] = {RandomHex(32), RandomHex(16)};
    EXPECT_EQ(Curl(g_services->nginx->url("/api/" + id),
                   {"traceparent: 00-" + trace_id + "-" + span_id + "-01"}),
              "backend " + id + "\n\n200");
  }
  std::vector<std::string> ids;
  for (const auto& [id, context] : contexts) ids.push_back(id);
  const std::vector<Json> spans = WaitForChains(ids);
  for (const auto& [id, context] : contexts) ExpectLinkedChain(spans, id, context);
}

TEST_F(TraceContextTest, ConcurrentLoadNoCrossLinks) {
  const std::string wrk = FindProgram({"/usr/bin/wrk"});
  if (wrk.empty()) GTEST_SKIP() << "wrk is not installed (apt-get install wrk)";
  ASSERT_NO_FATAL_FAILURE(StartChainAgent());
  // Every request its own path: /api/w<counter>-<thread>.
  const std::string script = g_services->dir + "/unique_paths.lua";
  WriteFile(script,
            "local threads = 0\n"
            "function setup(thread)\n"
            "  threads = threads + 1\n"
            "  thread:set(\"thread_id\", threads)\n"
            "end\n"
            "local counter = 0\n"
            "function request()\n"
            "  counter = counter + 1\n"
            "  return wrk.format(\"GET\", \"/api/w\" .. counter .. \"-\" .. thread_id)\n"
            "end\n");
  std::string out;
  ASSERT_EQ(RunCommand({wrk, "-t", "2", "-c", "16", "-d", "3s", "-s", script,
                        g_services->nginx->url("/")},
                       &out, {}, std::chrono::seconds(30)),
            0)
      << out;
  EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;

  // Wait until the spans stop coming.
  std::vector<Json> spans = ReadSpans(agent_->jsonl_path());
  const auto deadline = std::chrono::steady_clock::now() + kSpanWait;
  for (size_t last = 0; spans.size() != last && std::chrono::steady_clock::now() < deadline;) {
    last = spans.size();
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    spans = ReadSpans(agent_->jsonl_path());
  }

  std::map<std::string, std::set<std::string>> ids_by_trace;
  std::map<std::string, std::vector<const Json*>> by_trace;
  std::map<std::string, const Json*> by_span_id;
  std::map<std::string, const Json*> backend_servers;  // by request id
  std::map<std::string, std::string> leaf_call_parents;  // request id -> parent span id
  for (const Json& s : spans) {
    const std::string id = RequestIdOf(s);
    const std::string trace_id = StringField(s, "trace_id");
    by_trace[trace_id].push_back(&s);
    by_span_id[StringField(s, "span_id")] = &s;
    if (id.empty()) continue;
    ids_by_trace[trace_id].insert(id);
    if (IsRole(s, kBackendServer, id)) {
      EXPECT_TRUE(backend_servers.emplace(id, &s).second) << "request id seen twice: " << id;
    }
    if (IsRole(s, kBackendHttp, id)) leaf_call_parents[id] = StringField(s, "parent_span_id");
  }
  ASSERT_GE(backend_servers.size(), 50u) << "too few requests made it through:\n" << out;

  // No trace holds two requests, and no span is the child of another
  // request's span.
  size_t mixed = 0;
  for (const auto& [trace_id, ids] : ids_by_trace) {
    if (ids.size() <= 1) continue;
    if (++mixed > 5) continue;  // enough examples
    std::string dump;
    for (const Json* s : by_trace[trace_id]) dump += Summary(*s) + "\n";
    ADD_FAILURE() << "trace " << trace_id << " mixes " << ids.size() << " requests:\n" << dump;
  }
  EXPECT_EQ(mixed, 0u) << "traces mixing requests, of " << ids_by_trace.size();
  size_t cross_parents = 0;
  for (const Json& s : spans) {
    const auto parent = by_span_id.find(StringField(s, "parent_span_id"));
    if (parent == by_span_id.end()) continue;
    const std::string id = RequestIdOf(s);
    const std::string parent_id = RequestIdOf(*parent->second);
    if (id.empty() || parent_id.empty() || id == parent_id) continue;
    if (++cross_parents <= 5) {
      ADD_FAILURE() << "the child of another request's span:\n  " << Summary(s) << "\n  "
                    << Summary(*parent->second);
    }
  }
  EXPECT_EQ(cross_parents, 0u);

  // And the linking did happen.
  size_t linked = 0;
  for (const auto& [id, server] : backend_servers) {
    const auto call = leaf_call_parents.find(id);
    linked += call != leaf_call_parents.end() && call->second == StringField(*server, "span_id");
  }
  EXPECT_GE(static_cast<double>(linked),
            kMinLinkedShare * static_cast<double>(backend_servers.size()))
      << linked << " of " << backend_servers.size()
      << " backend SERVER spans are the parent of their leaf call";
}

TEST_F(TraceContextTest, EventLoopNoFalseLinks) {
  ASSERT_NO_FATAL_FAILURE(StartAgent({g_services->eventloop->pid(), g_services->leaf->pid()}));
  // The event loop answers neither before it holds both.
  const std::string base = "http://127.0.0.1:" + std::to_string(g_services->eventloop_port);
  std::string first;
  std::thread other([&] { first = Curl(base + "/api/loop-a"); });
  const std::string second = Curl(base + "/api/loop-b");
  other.join();
  EXPECT_TRUE(first.ends_with("\n200")) << first;
  EXPECT_TRUE(second.ends_with("\n200")) << second;

  auto leaf_call = [](const Json& s) {
    return StringField(s, "kind") == "CLIENT" && ServiceOf(s) == kEventLoopService &&
           Attribute(s, "url.path").starts_with("/leaf/batch-");
  };
  auto leaf_server = [](const Json& s) {
    return StringField(s, "kind") == "SERVER" && ServiceOf(s) == kLeafService &&
           Attribute(s, "url.path").starts_with("/leaf/batch-");
  };
  auto loop_server = [](const Json& s) {
    return StringField(s, "kind") == "SERVER" && ServiceOf(s) == kEventLoopService;
  };
  std::vector<Json> spans;
  std::vector<const Json*> calls, leaves, servers;
  const auto deadline = std::chrono::steady_clock::now() + kSpanWait;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spans = ReadSpans(agent_->jsonl_path());
    calls.clear();
    leaves.clear();
    servers.clear();
    for (const Json& s : spans) {
      if (leaf_call(s)) calls.push_back(&s);
      if (leaf_server(s)) leaves.push_back(&s);
      if (loop_server(s)) servers.push_back(&s);
    }
  } while ((calls.empty() || leaves.empty() || servers.size() < 2) &&
           std::chrono::steady_clock::now() < deadline);
  std::string dump;
  for (const Json& s : spans) dump += Summary(s) + "\n";
  ASSERT_EQ(calls.size(), 1u) << dump;
  ASSERT_EQ(leaves.size(), 1u) << dump;
  EXPECT_EQ(servers.size(), 2u) << dump;

  const Json& call = *calls[0];
  const Json& leaf = *leaves[0];
  std::vector<std::string> problems;
  if (!StringField(call, "parent_span_id").empty()) {
    problems.push_back("the leaf call was linked to one of the two open requests");
  }
  for (const Json* s : servers) {
    if (StringField(*s, "trace_id") == StringField(call, "trace_id")) {
      problems.push_back("a request shares the leaf call's trace: " + Attribute(*s, "url.path"));
    }
  }
  if (StringField(leaf, "parent_span_id") != StringField(call, "span_id") ||
      StringField(leaf, "trace_id") != StringField(call, "trace_id")) {
    problems.push_back("the leaf SERVER is not the child of the leaf call");
  }
  std::string list;
  for (const std::string& p : problems) list += "  " + p + "\n";
  EXPECT_TRUE(problems.empty()) << list << "the spans:\n" << dump;

  const std::vector<MetricSample> m = ScrapeUntil(metrics_port_, [](const auto& samples) {
    return Sample(samples, "loupe_context_ambiguous_total") >= 1;
  });
  EXPECT_GE(Sample(m, "loupe_context_ambiguous_total"), 1);
}

// Two network namespaces joined by a veth pair stand in for two pods on one
// node (containers cannot run here): curl in one calls the leaf in the other
// by its namespace address. The agent sees both ends (tracepoints are not
// per namespace) and joins them as it does over loopback.
class NetworkNamespaces {
 public:
  // "" on success, else what failed.
  std::string Create(const std::string& ip, const std::string& tag) {
    ip_ = ip;
    a_ = "loupe-a-" + tag;
    b_ = "loupe-b-" + tag;
    const std::string va = "lpa" + tag, vb = "lpb" + tag;
    // Left over by a crashed run with the same pid: gone first.
    RunCommand({ip_, "netns", "del", a_});
    RunCommand({ip_, "netns", "del", b_});
    const std::vector<std::vector<std::string>> steps = {
        {"ip", "netns", "add", a_},
        {"ip", "netns", "add", b_},
        {"ip", "link", "add", va, "type", "veth", "peer", "name", vb},
        {"ip", "link", "set", va, "netns", a_},
        {"ip", "link", "set", vb, "netns", b_},
        {"ip", "-n", a_, "addr", "add", std::string(kAddressA) + "/24", "dev", va},
        {"ip", "-n", b_, "addr", "add", std::string(kAddressB) + "/24", "dev", vb},
        {"ip", "-n", a_, "link", "set", va, "up"},
        {"ip", "-n", b_, "link", "set", vb, "up"},
        {"ip", "-n", a_, "link", "set", "lo", "up"},
        {"ip", "-n", b_, "link", "set", "lo", "up"}};
    for (std::vector<std::string> argv : steps) {
      argv[0] = ip_;  // RunCommand does not search PATH
      std::string out;
      if (RunCommand(argv, &out) != 0) return argv[1] + " " + argv[2] + " failed: " + out;
    }
    return "";
  }
  ~NetworkNamespaces() {
    // Deleting a namespace deletes its end of the veth pair, and the pair.
    if (!a_.empty()) RunCommand({ip_, "netns", "del", a_});
    if (!b_.empty()) RunCommand({ip_, "netns", "del", b_});
  }
  const std::string& ip() const { return ip_; }
  const std::string& a() const { return a_; }
  const std::string& b() const { return b_; }
  static constexpr const char* kAddressA = "10.231.7.1";
  static constexpr const char* kAddressB = "10.231.7.2";

 private:
  std::string ip_, a_, b_;
};

TEST_F(TraceContextTest, BothEndsInDifferentNetworkNamespaces) {
  const std::string ip = FindProgram({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
  if (ip.empty()) GTEST_SKIP() << "iproute2 is not installed (apt-get install iproute2)";
  NetworkNamespaces ns;
  const std::string error = ns.Create(ip, std::to_string(getpid() % 100000));
  ASSERT_EQ(error, "");
  const uint16_t port = PickFreePort();
  std::string start_error;
  auto leaf = StartService(g_services->dir, "ns-leaf", "trace-leaf-ns",
                           {"--mode", "leaf", "--port", std::to_string(port), "--listen",
                            NetworkNamespaces::kAddressB},
                           &start_error, {ip, "netns", "exec", ns.b()});
  ASSERT_NE(leaf, nullptr) << start_error;
  // The whole host is traced: curl runs in the other namespace, started by
  // `ip netns exec`, and its pid is not known beforehand.
  metrics_port_ = PickFreePort();
  agent_ = LoupeProcess::Start(MakeTempDir("loupe-it-trace-context-agent"),
                               {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_)});
  ASSERT_NE(agent_, nullptr) << "loupe did not become ready";
  ASSERT_TRUE(WaitForTcpPort(metrics_port_, std::chrono::seconds(10))) << agent_->Log();

  constexpr int kCalls = 3;
  const std::string base =
      "http://" + std::string(NetworkNamespaces::kAddressB) + ":" + std::to_string(port);
  const std::string run = RandomHex(6);
  for (int i = 0; i < kCalls; ++i) {
    std::string out;
    EXPECT_EQ(RunCommand({ip, "netns", "exec", ns.a(), g_services->curl, "-sS", "--max-time",
                          "10", base + "/leaf/ns-" + run + "-" + std::to_string(i)},
                         &out),
              0)
        << out;
  }
  auto find = [&](const std::vector<Json>& spans, const std::string& kind,
                  const std::string& path) -> const Json* {
    for (const Json& s : spans) {
      if (StringField(s, "kind") == kind && Attribute(s, "url.path") == path) return &s;
    }
    return nullptr;
  };
  std::vector<Json> spans;
  const auto deadline = std::chrono::steady_clock::now() + kSpanWait;
  auto all_there = [&] {
    for (int i = 0; i < kCalls; ++i) {
      const std::string path = "/leaf/ns-" + run + "-" + std::to_string(i);
      if (!find(spans, "CLIENT", path) || !find(spans, "SERVER", path)) return false;
    }
    return true;
  };
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spans = ReadSpans(agent_->jsonl_path());
  } while (!all_there() && std::chrono::steady_clock::now() < deadline);
  ASSERT_TRUE(all_there()) << agent_->Log();

  std::string client_service;
  for (int i = 0; i < kCalls; ++i) {
    const std::string path = "/leaf/ns-" + run + "-" + std::to_string(i);
    SCOPED_TRACE(path);
    const Json& client = *find(spans, "CLIENT", path);
    const Json& server = *find(spans, "SERVER", path);
    EXPECT_EQ(Attribute(client, "network.peer.address"), NetworkNamespaces::kAddressB);
    EXPECT_EQ(Attribute(server, "client.address"), NetworkNamespaces::kAddressA);
    EXPECT_EQ(ServiceOf(server), "trace-leaf-ns");
    EXPECT_EQ(StringField(client, "parent_span_id"), "");
    EXPECT_EQ(StringField(server, "parent_span_id"), StringField(client, "span_id"));
    EXPECT_EQ(StringField(server, "trace_id"), StringField(client, "trace_id"));
    client_service = ServiceOf(client);
  }
  const std::map<std::string, std::string> edge = {{"client", client_service},
                                                   {"server", "trace-leaf-ns"}};
  const std::vector<MetricSample> m = ScrapeUntil(metrics_port_, [&](const auto& samples) {
    return Sample(samples, "traces_service_graph_request_total", edge) >= kCalls;
  });
  EXPECT_EQ(Sample(m, "traces_service_graph_request_total", edge), kCalls);
  leaf->Signal(SIGTERM);
  leaf->Wait(std::chrono::seconds(5));
}

}  // namespace
}  // namespace loupe::testing
