// Least privilege, for real: the agent as root under setpriv(1) with the
// capability set of packaging/systemd/loupe.service (read from the unit, so
// the two cannot drift) and with one capability taken away at a time;
// nginx and curl on loopback. See agent/privileges.h.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/privileges.h"
#include "tests/integration/test_support.h"
#include "tests/packaging/lingering_client.h"
#include "tests/packaging/unit_file.h"

namespace loupe::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

const CapabilityMask kKept = CapabilityBit(kCapSysPtrace) | CapabilityBit(kCapDacReadSearch);

// The unit's capabilities, by name and as a mask.
struct UnitCaps {
  std::vector<std::string> names;
  CapabilityMask mask = 0;
};

UnitCaps ReadUnitCaps() {
  UnitCaps caps;
  std::string error;
  const std::optional<UnitFile> unit = ParseUnitFile(
      ReadFileOrEmpty(std::string(LOUPE_SOURCE_DIR) + "/packaging/systemd/loupe.service"),
      &error);
  EXPECT_TRUE(unit) << error;
  if (!unit) return caps;
  caps.names = UnitCapabilities(*unit, &error);
  EXPECT_FALSE(caps.names.empty()) << error;
  for (const std::string& name : caps.names) {
    // systemd ignores a name it does not know without failing the unit.
    const std::optional<int> cap = CapabilityFromName(name);
    EXPECT_TRUE(cap) << "unknown capability in the unit: " << name;
    if (cap) caps.mask |= CapabilityBit(*cap);
  }
  return caps;
}

std::vector<std::string> Without(std::vector<std::string> names,
                                 const std::set<std::string>& removed) {
  std::erase_if(names, [&](const std::string& n) { return removed.contains(n); });
  return names;
}

// The Cap* masks and NoNewPrivs of /proc/<pid>/task/<tid>/status.
struct TaskStatus {
  CapabilityMask eff = ~CapabilityMask{0}, prm = ~CapabilityMask{0}, bnd = ~CapabilityMask{0},
                 amb = ~CapabilityMask{0}, inh = ~CapabilityMask{0};
  bool no_new_privs = false;
};

TaskStatus ReadStatus(const std::string& path) {
  TaskStatus s;
  std::istringstream in(ReadFileOrEmpty(path));
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon), value = line.substr(colon + 1);
    if (key == "NoNewPrivs") s.no_new_privs = value.find('1') != std::string::npos;
    const auto mask = ParseCapabilityHex(value);
    if (!mask) continue;
    if (key == "CapEff") s.eff = *mask;
    if (key == "CapPrm") s.prm = *mask;
    if (key == "CapBnd") s.bnd = *mask;
    if (key == "CapAmb") s.amb = *mask;
    if (key == "CapInh") s.inh = *mask;
  }
  return s;
}

// The agent started through setpriv, writing JSON lines into `dir`.
class PrivilegedAgent {
 public:
  PrivilegedAgent(const std::string& dir, const std::vector<std::string>& setpriv,
                  const std::vector<std::string>& flags)
      : dir_(dir), metrics_port_(PickFreePort()) {
    std::vector<std::string> argv = setpriv;
    argv.insert(argv.end(), {LoupeBinary(), "--jsonl", dir + "/spans.jsonl", "--no-console",
                             "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_),
                             "--stats-interval", "0"});
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = Subprocess::Start(argv, dir + "/loupe.stdout", dir + "/loupe.log");
  }
  // True once "ready:" is logged; false if the agent exited or never got there.
  bool WaitReady() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Log().find("ready:") != std::string::npos) return true;
      if (!process_->running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  int Stop() {
    process_->Signal(SIGTERM);
    return process_->Wait(std::chrono::seconds(30)).value_or(-1);
  }
  pid_t pid() const { return process_->pid(); }
  std::string Log() const { return ReadFileOrEmpty(dir_ + "/loupe.log"); }
  std::string Metrics() const {
    std::string out;
    RunCommand({"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(metrics_port_) +
                                           "/metrics"},
               &out);
    return out;
  }
  std::vector<Json> Spans() const {
    std::vector<Json> spans;
    std::istringstream in(ReadFileOrEmpty(dir_ + "/spans.jsonl"));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) spans.push_back(Json::parse(line));
    }
    return spans;
  }

 private:
  std::string dir_;
  uint16_t metrics_port_;
  std::unique_ptr<Subprocess> process_;
};

// The one span of `kind` for GET /page.txt; nullptr if none or several.
// (Other processes' traffic is on other ports, filtered out by --port.)
const Json* FindSpan(const std::vector<Json>& spans, const std::string& kind) {
  const Json* found = nullptr;
  for (const Json& s : spans) {
    if (s["kind"] != kind || s["attributes"].value("url.path", "") != "/page.txt") continue;
    if (found != nullptr) return nullptr;
    found = &s;
  }
  return found;
}

class PrivilegesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    ASSERT_FALSE(FindProgram({"/usr/bin/setpriv"}).empty()) << "setpriv (util-linux) is needed";
    // The unit's set cannot mount tracefs; another test may have unmounted it.
    struct stat st {};
    if (stat("/sys/kernel/tracing/events", &st) != 0 &&
        stat("/sys/kernel/debug/tracing/events", &st) != 0) {
      ASSERT_EQ(RunCommand({"/bin/mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"}), 0);
    }
    caps_ = ReadUnitCaps();
    ASSERT_FALSE(caps_.names.empty());
    std::string error;
    nginx_ = NginxServer::Start({{"page.txt", std::string(120, 'p')}}, &error);
    ASSERT_TRUE(nginx_) << error;
  }

  // curl with its own OTEL_SERVICE_NAME, as root with every capability:
  // reading its environment takes CAP_SYS_PTRACE.
  void Curl(const std::string& service_name) {
    SilentListener silent;
    ASSERT_NE(silent.port(), 0);
    std::string status;
    ASSERT_EQ(RunCommand(LingeringCurlArgv(service_name, nginx_->url("/page.txt"), silent),
                         &status),
              kLingeringCurlExit);
    ASSERT_EQ(status, "200\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }

  std::vector<std::string> Flags() const { return {"--port", std::to_string(nginx_->port())}; }

  UnitCaps caps_;
  std::unique_ptr<NginxServer> nginx_;
};

TEST_F(PrivilegesTest, WithTheUnitsCapabilitiesItTracesAndKeepsOnlyWhatItNeeds) {
  // Exactly what the unit grants: CAP_BPF CAP_PERFMON CAP_SYS_PTRACE
  // CAP_DAC_READ_SEARCH CAP_SETPCAP, no_new_privs.
  ASSERT_EQ(caps_.mask, kKept | CapabilityBit(kCapBpf) | CapabilityBit(kCapPerfmon) |
                            CapabilityBit(kCapSetpcap));
  PrivilegedAgent agent(nginx_->dir(), SetprivArgv(caps_.names, std::nullopt, true), Flags());
  ASSERT_TRUE(agent.WaitReady()) << agent.Log();
  const std::string log = agent.Log();
  EXPECT_THAT(log, HasSubstr("privileges: kept CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE; dropped "
                             "CAP_SETPCAP, CAP_PERFMON, CAP_BPF; no_new_privs set on all"));
  // Nothing the unit grants leaves a feature off.
  EXPECT_THAT(log, AllOf(Not(HasSubstr("without CAP_")), Not(HasSubstr("RLIMIT_MEMLOCK")),
                         Not(HasSubstr("kernel counters are off")),
                         Not(HasSubstr("dropping capabilities failed"))));

  // The process, and every one of its threads, kept exactly that.
  const std::string proc = "/proc/" + std::to_string(agent.pid());
  const TaskStatus leader = ReadStatus(proc + "/status");
  EXPECT_EQ(leader.eff, kKept);
  EXPECT_EQ(leader.prm, kKept);
  EXPECT_EQ(leader.bnd, kKept);
  EXPECT_EQ(leader.amb, 0u);
  EXPECT_EQ(leader.inh, 0u);
  EXPECT_TRUE(leader.no_new_privs);
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task")) {
    SCOPED_TRACE(task.path().string());
    const TaskStatus t = ReadStatus(task.path().string() + "/status");
    // The metrics server's threads hold less still (nothing).
    EXPECT_EQ(t.prm & ~kKept, 0u);
    EXPECT_EQ(t.bnd & ~kKept, 0u);
    EXPECT_EQ(t.amb, 0u);
    EXPECT_TRUE(t.no_new_privs);
    ++threads;
  }
  EXPECT_GE(threads, 4);  // main, reader, decoder, metrics server

  Curl("privileged-client");
  // Kernel counters are still read after CAP_BPF is gone.
  const std::vector<MetricSample> metrics = ParsePrometheusText(agent.Metrics());
  EXPECT_GT(SumSamples(metrics, "loupe_kernel_events_emitted_total").value_or(0), 0);
  EXPECT_EQ(agent.Stop(), 0);

  const std::vector<Json> spans = agent.Spans();
  const Json* client = FindSpan(spans, "CLIENT");
  const Json* server = FindSpan(spans, "SERVER");
  ASSERT_TRUE(client && server) << ReadFileOrEmpty(nginx_->dir() + "/spans.jsonl");
  for (const Json* s : {client, server}) {
    SCOPED_TRACE(s->dump());
    EXPECT_EQ((*s)["name"], "GET /page.txt");
    EXPECT_EQ((*s)["attributes"]["http.request.method"], "GET");
    EXPECT_EQ((*s)["attributes"]["url.path"], "/page.txt");
    EXPECT_EQ((*s)["attributes"]["http.response.status_code"], 200);
    EXPECT_EQ((*s)["attributes"]["server.port"], nginx_->port());
  }
  // Read after the drop: curl's environment (root, every capability) and
  // both executables need CAP_SYS_PTRACE, kept.
  EXPECT_EQ((*client)["resource"]["service.name"], "privileged-client");
  EXPECT_EQ((*client)["resource"]["process.executable.path"], "/usr/bin/curl");
  EXPECT_EQ((*server)["resource"]["process.executable.path"], "/usr/sbin/nginx");
}

TEST_F(PrivilegesTest, WithoutSysPtraceItSaysWhatIsOffAndStillTraces) {
  PrivilegedAgent agent(nginx_->dir(),
                        SetprivArgv(Without(caps_.names, {"CAP_SYS_PTRACE"}), std::nullopt, true),
                        Flags());
  ASSERT_TRUE(agent.WaitReady()) << agent.Log();
  const std::string log = agent.Log();
  EXPECT_THAT(log, AllOf(HasSubstr("WARN  loupe: process names from the environment are off"),
                         HasSubstr("without CAP_SYS_PTRACE loupe cannot read /proc/<pid>/exe"),
                         HasSubstr("privileges: kept CAP_DAC_READ_SEARCH; dropped")));
  Curl("hidden-client");
  EXPECT_EQ(agent.Stop(), 0);
  const std::vector<Json> spans = agent.Spans();
  const Json* client = FindSpan(spans, "CLIENT");
  ASSERT_TRUE(client) << agent.Log();
  EXPECT_EQ((*client)["attributes"]["url.path"], "/page.txt");
  EXPECT_EQ((*client)["attributes"]["http.response.status_code"], 200);
  // The environment and the executable were out of reach: the process name
  // stands in.
  EXPECT_EQ((*client)["resource"]["service.name"], "curl");
  EXPECT_FALSE((*client)["resource"].contains("process.executable.path"));
}

TEST_F(PrivilegesTest, WithoutBpfCapabilitiesItExitsNamingThem) {
  std::string command;
  for (const std::string& arg :
       SetprivArgv(Without(caps_.names, {"CAP_BPF", "CAP_PERFMON"}), std::nullopt, true)) {
    command += arg + " ";
  }
  command += LoupeBinary() + " --no-console --metrics-listen off 2>&1";
  std::string out;
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", command}, &out), 1);
  EXPECT_THAT(out, AllOf(HasSubstr("CAP_BPF"), HasSubstr("CAP_PERFMON"),
                         HasSubstr("CAP_SYS_ADMIN"), HasSubstr("has neither")));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST_F(PrivilegesTest, AMissingTracefsNeedsSysAdmin) {
  // In a mount namespace of its own, so nothing else loses tracefs.
  const std::string unshare = FindProgram({"/usr/bin/unshare"});
  ASSERT_FALSE(unshare.empty());
  // Stopped with SIGTERM once ready (exit 0 after a flush), or its own exit.
  const std::string log = nginx_->dir() + "/tracefs.log";
  auto run = [&](const std::vector<std::string>& caps, std::string* out) {
    std::string command =
        "umount /sys/kernel/tracing 2>/dev/null; "
        "if [ -d /sys/kernel/debug/tracing/events ]; then umount -l /sys/kernel/debug; fi; ";
    for (const std::string& arg : SetprivArgv(caps, std::nullopt, true)) command += arg + " ";
    command += LoupeBinary() + " --no-console --metrics-listen off --stats-interval 0 >" + log +
               " 2>&1 & p=$!; for i in $(seq 600); do grep -q 'ready:' " + log +
               " && break; kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
               "kill -TERM $p 2>/dev/null; wait $p; s=$?; cat " + log + "; exit $s";
    return RunCommand({unshare, "-m", "--propagation", "private", "/bin/sh", "-c", command}, out,
                      {}, std::chrono::seconds(90));
  };
  std::string out;
  EXPECT_EQ(run(caps_.names, &out), 1);
  EXPECT_THAT(out, HasSubstr("tracefs is not mounted and mounting it needs CAP_SYS_ADMIN"));
  // With CAP_SYS_ADMIN it mounts it, becomes ready, and drops CAP_SYS_ADMIN
  // with the rest.
  std::vector<std::string> with_admin = caps_.names;
  with_admin.push_back("CAP_SYS_ADMIN");
  EXPECT_EQ(run(with_admin, &out), 0) << out;
  EXPECT_THAT(out, AllOf(HasSubstr("mounted tracefs at /sys/kernel/tracing"), HasSubstr("ready:"),
                         HasSubstr("CAP_SYS_ADMIN")));
  EXPECT_THAT(out, HasSubstr("privileges: kept CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE; dropped"));
}

}  // namespace
}  // namespace loupe::testing
