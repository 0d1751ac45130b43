// Helpers for integration tests that run real programs: the loupe agent,
// nginx, curl. Nothing here fakes a peer.
#ifndef LOUPE_TESTS_INTEGRATION_TEST_SUPPORT_H_
#define LOUPE_TESTS_INTEGRATION_TEST_SUPPORT_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loupe::testing {

using Json = nlohmann::json;

class Subprocess {
 public:
  // Starts argv with stdout and stderr appended to the given files ("" keeps
  // the test's own). `env` entries ("K=V") are added to the environment.
  static std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv,
                                           const std::string& stdout_path,
                                           const std::string& stderr_path,
                                           const std::vector<std::string>& env = {});
  ~Subprocess();
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Exit status (or 128+signal) once exited; nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  std::optional<int> status_;
};

// Runs a command to completion; returns its exit status (-1 on timeout).
int RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr,
               const std::vector<std::string>& env = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30));

std::string MakeTempDir(const std::string& prefix);
std::string ReadFileOrEmpty(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);
bool WaitForFileContaining(const std::string& path, const std::string& needle,
                           std::chrono::milliseconds timeout);
bool WaitForTcpPort(uint16_t port, std::chrono::milliseconds timeout);
uint16_t PickFreePort();
uint64_t UnixNowNs();
bool IsRoot();
std::string FindProgram(const std::vector<std::string>& candidates);

// The agent under test, writing JSON lines.
class LoupeProcess {
 public:
  // Starts build/agent/loupe with `flags` plus --jsonl into `dir`, and waits
  // for its "ready" log line.
  static std::unique_ptr<LoupeProcess> Start(const std::string& dir,
                                             const std::vector<std::string>& flags,
                                             const std::vector<std::string>& env = {});
  // SIGTERM, wait; returns the exit status.
  int Stop();
  std::vector<Json> Spans() const;  // parsed JSON lines
  std::string Log() const { return ReadFileOrEmpty(log_path_); }
  const std::string& jsonl_path() const { return jsonl_path_; }
  bool running() { return process_->running(); }
  // The value of `key=` in the last "stats:" log line, or -1.
  int64_t FinalStat(const std::string& key) const;

 private:
  std::unique_ptr<Subprocess> process_;
  std::string jsonl_path_;
  std::string log_path_;
};

std::string LoupeBinary();

// Spans as comparable strings, ids left out (they are random in each run):
// a span's parent is named by what it is (kind and start time). Two runs
// over the same traffic (live and its replay) give the same multiset.
std::multiset<std::string> CanonicalSpans(const std::vector<Json>& spans);

// nginx from Debian on 127.0.0.1 with tests/integration/nginx.conf.in,
// serving files written under html/ of its own temporary directory.
class NginxServer {
 public:
  // nullptr (with *error set) when nginx is missing or does not start.
  static std::unique_ptr<NginxServer> Start(
      const std::vector<std::pair<std::string, std::string>>& files, std::string* error);
  // The same with another template under tests/integration/ (e.g.
  // "nginx_proxy.conf.in"), where each @KEY@ of `substitutions` is replaced
  // too; @PREFIX@ and @PORT@ are always filled in.
  static std::unique_ptr<NginxServer> StartWithTemplate(
      const std::string& template_name,
      const std::vector<std::pair<std::string, std::string>>& substitutions,
      const std::vector<std::pair<std::string, std::string>>& files, std::string* error);
  ~NginxServer();
  uint16_t port() const { return port_; }
  pid_t master_pid() const { return process_->pid(); }
  const std::string& dir() const { return dir_; }
  std::string url(const std::string& path) const;
  // The worker processes (children of the master), while it runs.
  std::vector<pid_t> Workers() const;
  void Stop();

 private:
  std::unique_ptr<Subprocess> process_;
  std::string dir_;
  uint16_t port_ = 0;
};

// One sample of a Prometheus text exposition (format 0.0.4).
struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// The samples of an exposition; comment lines and lines it cannot read are
// skipped.
std::vector<MetricSample> ParsePrometheusText(const std::string& text);

// The sum of the samples named `name` whose labels include all of `labels`;
// nullopt when there is none.
std::optional<double> SumSamples(const std::vector<MetricSample>& samples,
                                 const std::string& name,
                                 const std::map<std::string, std::string>& labels = {});

// A throw-away PostgreSQL 15 cluster (Debian's binaries in kPgBin) owned by
// the postgres user, trust authentication over TCP on 127.0.0.1.
inline const std::string kPgBin = "/usr/lib/postgresql/15/bin";
class PostgresServer {
 public:
  // "" on success, else what went wrong (PostgreSQL missing included).
  std::string Start(const std::string& dir);
  ~PostgresServer() { Stop(); }
  void Stop();
  uint16_t port() const { return port_; }
  // argv of a client program (psql, pgbench) connecting to this server.
  std::vector<std::string> Connection(const std::string& program) const;
  // libpq connection string.
  std::string conninfo() const;

 private:
  std::string dir_;
  std::string runuser_;
  uint16_t port_ = 0;
  bool started_ = false;
};

// tests/otlp_receiver/receiver.js: an OTLP/gRPC + OTLP/HTTP receiver in
// Node.js that shares no code with Loupe (it decodes with upstream .proto
// files). Fixed ports are picked at construction so that it can be started
// late, killed and started again where an exporter expects it; every
// incarnation appends to the same requests file.
class OtlpReceiverProcess {
 public:
  // "" when the receiver can run here, else what to do about it.
  static std::string Prerequisites();

  explicit OtlpReceiverProcess(std::vector<std::string> flags = {});
  ~OtlpReceiverProcess();
  // "" on success, else why not.
  std::string Start();
  void Stop(int sig);

  uint16_t grpc_port() const { return grpc_port_; }
  uint16_t http_port() const { return http_port_; }
  std::string grpc_endpoint() const { return "http://127.0.0.1:" + std::to_string(grpc_port_); }
  std::string http_base() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  std::string requests_path() const { return dir_ + "/requests.jsonl"; }

  // Every request recorded so far (complete lines only).
  std::vector<Json> Requests() const;
  // The last request once `expected_count` are recorded (waits up to 5 s).
  Json Last(size_t expected_count) const;
  // Spans of the trace requests with the given outcome ("ok", "failed", ...).
  std::vector<Json> Spans(const std::string& outcome = "ok") const;
  std::vector<std::string> SpanNames(const std::string& outcome) const;
  size_t CountOutcome(const std::string& outcome) const;

 private:
  std::vector<std::string> flags_;
  std::string dir_;
  uint16_t grpc_port_;
  uint16_t http_port_;
  int starts_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace loupe::testing

#endif  // LOUPE_TESTS_INTEGRATION_TEST_SUPPORT_H_
