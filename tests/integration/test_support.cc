#include "tests/integration/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace loupe::testing {

namespace {

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> MergedEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& kv : extra) env.push_back(kv);
  return env;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

std::unique_ptr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                              const std::string& stdout_path,
                                              const std::string& stderr_path,
                                              const std::vector<std::string>& env) {
  std::vector<std::string> args = argv;
  std::vector<std::string> envs = MergedEnv(env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(envs);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (!stdout_path.empty()) {
      int fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) dup2(fd, STDOUT_FILENO);
    }
    if (!stderr_path.empty()) {
      int fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) dup2(fd, STDERR_FILENO);
    }
    // Children must not inherit a blocked signal mask from gtest threads.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(c_args[0], c_args.data(), c_env.data());
    _exit(127);
  }
  return std::unique_ptr<Subprocess>(new Subprocess(pid));
}

Subprocess::~Subprocess() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(5));
  }
}

void Subprocess::Signal(int sig) {
  if (!status_) kill(pid_, sig);
}

bool Subprocess::running() {
  if (status_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = DecodeStatus(status);
    return false;
  }
  return true;
}

std::optional<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

int RunCommand(const std::vector<std::string>& argv, std::string* output,
               const std::vector<std::string>& env, std::chrono::milliseconds timeout) {
  std::string out_path;
  if (output != nullptr) {
    char tmpl[] = "/tmp/loupe-cmd-XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    out_path = tmpl;
  }
  auto p = Subprocess::Start(argv, out_path, "", env);
  std::optional<int> status = p->Wait(timeout);
  if (output != nullptr) {
    *output = ReadFileOrEmpty(out_path);
    unlink(out_path.c_str());
  }
  return status.value_or(-1);
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  // Servers started by tests may drop privileges (nginx workers).
  chmod(tmpl.c_str(), 0755);
  return tmpl;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

bool WaitForFileContaining(const std::string& path, const std::string& needle,
                           std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ReadFileOrEmpty(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool WaitForTcpPort(uint16_t port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

uint16_t PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

uint64_t UnixNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool IsRoot() { return geteuid() == 0; }

std::string FindProgram(const std::vector<std::string>& candidates) {
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

std::string PostgresServer::Start(const std::string& dir) {
  dir_ = dir;
  runuser_ = FindProgram({"/usr/sbin/runuser", "/sbin/runuser"});
  if (FindProgram({kPgBin + "/postgres"}).empty()) {
    return "PostgreSQL 15 is not installed (apt-get install postgresql-15)";
  }
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr || runuser_.empty()) return "the postgres user and runuser are needed";
  // initdb refuses to run as root: the cluster belongs to postgres.
  if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) return "chown failed";
  std::string out;
  if (RunCommand({runuser_, "-u", "postgres", "--", kPgBin + "/initdb", "-D", dir + "/data", "-U",
                  "loupe", "-A", "trust", "--no-sync"},
                 &out, {}, std::chrono::seconds(120)) != 0) {
    return "initdb failed: " + out;
  }
  port_ = PickFreePort();
  if (RunCommand({runuser_, "-u", "postgres", "--", kPgBin + "/pg_ctl", "-D", dir + "/data", "-l",
                  dir + "/postgres.log", "-w", "-o",
                  "-k " + dir + " -p " + std::to_string(port_) + " -c listen_addresses=127.0.0.1",
                  "start"},
                 &out, {}, std::chrono::seconds(60)) != 0) {
    return "pg_ctl start failed: " + out + ReadFileOrEmpty(dir + "/postgres.log");
  }
  started_ = true;
  return "";
}

void PostgresServer::Stop() {
  if (!started_) return;
  started_ = false;
  RunCommand({runuser_, "-u", "postgres", "--", kPgBin + "/pg_ctl", "-D", dir_ + "/data", "-m",
              "fast", "stop"},
             nullptr, {}, std::chrono::seconds(60));
}

std::vector<std::string> PostgresServer::Connection(const std::string& program) const {
  return {kPgBin + "/" + program, "-h", "127.0.0.1", "-p", std::to_string(port_), "-U", "loupe"};
}

std::string PostgresServer::conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=loupe dbname=postgres";
}

std::multiset<std::string> CanonicalSpans(const std::vector<Json>& spans) {
  std::map<std::string, std::string> identity;  // span id -> kind@start
  for (const Json& s : spans) {
    identity[s.value("span_id", "")] =
        s.value("kind", "") + "@" + std::to_string(s.value("start_time_unix_nano", uint64_t{0}));
  }
  std::multiset<std::string> out;
  for (Json s : spans) {
    const std::string parent = s.value("parent_span_id", "");
    s["parent_span_id"] = parent.empty() ? "" : identity[parent];
    s.erase("trace_id");
    s.erase("span_id");
    out.insert(s.dump());
  }
  return out;
}

std::string LoupeBinary() { return std::string(LOUPE_BINARY_DIR) + "/agent/loupe"; }

std::unique_ptr<LoupeProcess> LoupeProcess::Start(const std::string& dir,
                                                  const std::vector<std::string>& flags,
                                                  const std::vector<std::string>& env) {
  auto lp = std::unique_ptr<LoupeProcess>(new LoupeProcess());
  lp->jsonl_path_ = dir + "/spans.jsonl";
  lp->log_path_ = dir + "/loupe.log";
  std::vector<std::string> argv = {LoupeBinary(), "--jsonl", lp->jsonl_path_, "--no-console"};
  // Not the default 0.0.0.0:9464: a developer's own agent may hold it.
  if (std::find(flags.begin(), flags.end(), "--metrics-listen") == flags.end()) {
    argv.insert(argv.end(), {"--metrics-listen", "127.0.0.1:0"});
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  lp->process_ = Subprocess::Start(argv, dir + "/loupe.stdout", lp->log_path_, env);
  if (!WaitForFileContaining(lp->log_path_, "ready:", std::chrono::seconds(60))) {
    return nullptr;
  }
  return lp;
}

int LoupeProcess::Stop() {
  process_->Signal(SIGTERM);
  return process_->Wait(std::chrono::seconds(30)).value_or(-1);
}

std::vector<Json> LoupeProcess::Spans() const {
  std::vector<Json> spans;
  std::istringstream in(ReadFileOrEmpty(jsonl_path_));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) spans.push_back(Json::parse(line));
  }
  return spans;
}

int64_t LoupeProcess::FinalStat(const std::string& key) const {
  const std::string log = Log();
  const size_t line_start = log.rfind("stats:");
  if (line_start == std::string::npos) return -1;
  const size_t line_end = log.find('\n', line_start);
  const std::string line = log.substr(line_start, line_end - line_start);
  const std::string needle = " " + key + "=";
  const size_t at = line.find(needle);
  if (at == std::string::npos) return -1;
  return std::strtoll(line.c_str() + at + needle.size(), nullptr, 10);
}

std::unique_ptr<NginxServer> NginxServer::Start(
    const std::vector<std::pair<std::string, std::string>>& files, std::string* error) {
  return StartWithTemplate("nginx.conf.in", {}, files, error);
}

std::unique_ptr<NginxServer> NginxServer::StartWithTemplate(
    const std::string& template_name,
    const std::vector<std::pair<std::string, std::string>>& substitutions,
    const std::vector<std::pair<std::string, std::string>>& files, std::string* error) {
  const std::string nginx = FindProgram({"/usr/sbin/nginx", "/usr/bin/nginx"});
  if (nginx.empty()) {
    *error = "nginx is not installed (apt-get install nginx)";
    return nullptr;
  }
  auto server = std::unique_ptr<NginxServer>(new NginxServer());
  server->dir_ = MakeTempDir("loupe-it-nginx");
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
  server->port_ = PickFreePort();
  std::string conf =
      ReadFileOrEmpty(std::string(LOUPE_SOURCE_DIR) + "/tests/integration/" + template_name);
  std::vector<std::pair<std::string, std::string>> all = substitutions;
  all.emplace_back("@PREFIX@", server->dir_);
  all.emplace_back("@PORT@", std::to_string(server->port_));
  for (const auto& [key, value] : all) {
    for (size_t at; (at = conf.find(key)) != std::string::npos;) conf.replace(at, key.size(), value);
  }
  WriteFile(server->dir_ + "/nginx.conf", conf);
  server->process_ =
      Subprocess::Start({nginx, "-p", server->dir_, "-c", server->dir_ + "/nginx.conf"},
                        server->dir_ + "/nginx.stdout", server->dir_ + "/nginx.stderr");
  if (!WaitForTcpPort(server->port_, std::chrono::seconds(20))) {
    *error = "nginx did not start: " + ReadFileOrEmpty(server->dir_ + "/nginx.stderr") +
             ReadFileOrEmpty(server->dir_ + "/error.log");
    return nullptr;
  }
  return server;
}

NginxServer::~NginxServer() { Stop(); }

std::string NginxServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::vector<pid_t> NginxServer::Workers() const {
  const std::string master = std::to_string(process_->pid());
  std::istringstream children(
      ReadFileOrEmpty("/proc/" + master + "/task/" + master + "/children"));
  std::vector<pid_t> out;
  for (pid_t child; children >> child;) out.push_back(child);
  return out;
}

void NginxServer::Stop() {
  if (process_ && process_->running()) {
    process_->Signal(SIGQUIT);
    process_->Wait(std::chrono::seconds(10));
  }
}

namespace {

// A label value up to its closing quote, with \\, \" and \n unescaped;
// `at` ends past the quote.
std::optional<std::string> LabelValue(const std::string& line, size_t* at) {
  std::string out;
  for (size_t i = *at; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"') {
      *at = i + 1;
      return out;
    }
    if (c == '\\' && i + 1 < line.size()) {
      const char next = line[++i];
      out.push_back(next == 'n' ? '\n' : next);
    } else {
      out.push_back(c);
    }
  }
  return std::nullopt;
}

std::optional<MetricSample> ParseSample(const std::string& line) {
  MetricSample sample;
  size_t at = line.find_first_of("{ ");
  if (at == std::string::npos || at == 0) return std::nullopt;
  sample.name = line.substr(0, at);
  if (line[at] == '{') {
    ++at;
    while (at < line.size() && line[at] != '}') {
      const size_t eq = line.find("=\"", at);
      if (eq == std::string::npos) return std::nullopt;
      const std::string key = line.substr(at, eq - at);
      at = eq + 2;
      std::optional<std::string> value = LabelValue(line, &at);
      if (!value) return std::nullopt;
      sample.labels[key] = std::move(*value);
      if (at < line.size() && line[at] == ',') ++at;
    }
    if (at >= line.size()) return std::nullopt;
    ++at;  // '}'
  }
  const char* start = line.c_str() + at;
  char* end = nullptr;
  sample.value = std::strtod(start, &end);
  if (end == start) return std::nullopt;
  return sample;
}

}  // namespace

std::vector<MetricSample> ParsePrometheusText(const std::string& text) {
  std::vector<MetricSample> samples;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (std::optional<MetricSample> sample = ParseSample(line)) samples.push_back(*sample);
  }
  return samples;
}

std::optional<double> SumSamples(const std::vector<MetricSample>& samples,
                                 const std::string& name,
                                 const std::map<std::string, std::string>& labels) {
  std::optional<double> sum;
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    const bool match = std::all_of(labels.begin(), labels.end(), [&s](const auto& kv) {
      const auto it = s.labels.find(kv.first);
      return it != s.labels.end() && it->second == kv.second;
    });
    if (match) sum = sum.value_or(0) + s.value;
  }
  return sum;
}

namespace {
std::string ReceiverDir() { return std::string(LOUPE_SOURCE_DIR) + "/tests/otlp_receiver"; }
std::string Node() { return FindProgram({"/usr/bin/node", "/usr/local/bin/node"}); }
}  // namespace

std::string OtlpReceiverProcess::Prerequisites() {
  if (Node().empty()) return "node is not installed (Debian: apt-get install nodejs npm)";
  struct stat st {};
  if (stat((ReceiverDir() + "/node_modules/@grpc/grpc-js").c_str(), &st) != 0) {
    return "the OTLP test receiver's packages are missing: run `npm ci --prefix " +
           ReceiverDir() + "` (scripts/test.sh does) first";
  }
  return "";
}

OtlpReceiverProcess::OtlpReceiverProcess(std::vector<std::string> flags)
    : flags_(std::move(flags)),
      dir_(MakeTempDir("loupe-otlp-receiver")),
      grpc_port_(PickFreePort()),
      http_port_(PickFreePort()) {}

OtlpReceiverProcess::~OtlpReceiverProcess() { Stop(SIGTERM); }

std::string OtlpReceiverProcess::Start() {
  if (std::string missing = Prerequisites(); !missing.empty()) return missing;
  const std::string out = dir_ + "/receiver.out." + std::to_string(++starts_);
  std::vector<std::string> argv = {Node(), ReceiverDir() + "/receiver.js", "--out",
                                   requests_path(), "--grpc-port", std::to_string(grpc_port_),
                                   "--http-port", std::to_string(http_port_)};
  argv.insert(argv.end(), flags_.begin(), flags_.end());
  process_ = Subprocess::Start(argv, out, dir_ + "/receiver.err");
  if (!WaitForFileContaining(out, "READY", std::chrono::seconds(20))) {
    return "receiver did not start: " + ReadFileOrEmpty(dir_ + "/receiver.err");
  }
  return "";
}

void OtlpReceiverProcess::Stop(int sig) {
  if (!process_) return;
  process_->Signal(sig);
  process_->Wait(std::chrono::seconds(5));
  process_.reset();
}

std::vector<Json> OtlpReceiverProcess::Requests() const {
  std::vector<Json> out;
  const std::string content = ReadFileOrEmpty(requests_path());
  size_t start = 0;
  while (start < content.size()) {
    const size_t end = content.find('\n', start);
    if (end == std::string::npos) break;  // a line still being written
    out.push_back(Json::parse(content.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

Json OtlpReceiverProcess::Last(size_t expected_count) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<Json> requests = Requests();
  while (requests.size() < expected_count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    requests = Requests();
  }
  return requests.size() == expected_count ? requests.back() : Json();
}

std::vector<Json> OtlpReceiverProcess::Spans(const std::string& outcome) const {
  std::vector<Json> spans;
  for (const Json& r : Requests()) {
    if (r.value("outcome", "") != outcome || r.value("signal", "") != "traces") continue;
    for (const Json& rs : r["request"].value("resourceSpans", Json::array())) {
      for (const Json& ss : rs.value("scopeSpans", Json::array())) {
        for (Json s : ss.value("spans", Json::array())) {
          // Carry the resource and scope along for assertions.
          s["__resource"] = rs.value("resource", Json::object());
          s["__scope"] = ss.value("scope", Json::object());
          spans.push_back(std::move(s));
        }
      }
    }
  }
  return spans;
}

std::vector<std::string> OtlpReceiverProcess::SpanNames(const std::string& outcome) const {
  std::vector<std::string> names;
  for (const Json& s : Spans(outcome)) names.push_back(s["name"]);
  return names;
}

size_t OtlpReceiverProcess::CountOutcome(const std::string& outcome) const {
  size_t n = 0;
  for (const Json& r : Requests()) n += r.value("outcome", "") == outcome ? 1 : 0;
  return n;
}

}  // namespace loupe::testing
