// OOM kills for real: a memory cgroup limited to 32 MiB, a victim
// (oom_victim.cc) that joins it before exec and touches memory until the
// kernel kills it, and Loupe's kernel programs (the agent's BpfCapture,
// loaded in this process) reporting the kill through oom:mark_victim; then
// OomReporter completes the event from the cgroup files, as the agent will.
// The v1 memory hierarchy is tested where it is mounted, the v2 one where the
// memory controller is available to it; a case that cannot run here is
// skipped with the reason. Run as root.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/bpf_capture.h"
#include "agent/oom.h"
#include "agent/system.h"
#include "decoders/events.h"
#include "tests/exporters/prometheus/http_get.h"
#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kLimitBytes = 32 * kMiB;

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

uint64_t InodeOf(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// A memory cgroup made for one test, removed (once empty) at the end.
struct TestCgroup {
  std::string hierarchy_root;  // /sys/fs/cgroup/memory, /sys/fs/cgroup/unified, ...
  std::string relative;        // /loupe-oom-test-<pid>-<n>
  std::string dir() const { return hierarchy_root + relative; }
  ~TestCgroup() {
    if (relative.empty()) return;
    // The victim is reaped by then; its memory may take a moment to leave.
    for (int i = 0; i < 50 && rmdir(dir().c_str()) != 0 && errno == EBUSY; ++i) usleep(100'000);
  }
};

// The v2 hierarchy that can give a cgroup the memory controller, or "".
std::string V2MemoryRoot() {
  for (const std::string& root : {std::string("/sys/fs/cgroup/unified"), std::string("/sys/fs/cgroup")}) {
    const std::string controllers = ReadFileOrEmpty(root + "/cgroup.controllers");
    if (controllers.find("memory") != std::string::npos) return root;
  }
  return "";
}

// Runs oom_victim with `args` inside `procs_file`'s cgroup: the child moves
// itself there, then execs, so that every page the victim touches is
// charged to it. A non-empty `oom_score_adj` is set before exec too.
pid_t StartVictim(const std::string& procs_file, const std::vector<std::string>& args,
                  const std::string& oom_score_adj = "") {
  // Everything is prepared before fork: the child only makes syscalls.
  std::vector<char*> argv = {const_cast<char*>("oom_victim")};
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  char text[32];
  const int n = std::snprintf(text, sizeof(text), "%d\n", static_cast<int>(getpid()));
  int fd = open(procs_file.c_str(), O_WRONLY);
  if (fd < 0 || write(fd, text, static_cast<size_t>(n)) != n) _exit(126);
  close(fd);
  if (!oom_score_adj.empty()) {
    fd = open("/proc/self/oom_score_adj", O_WRONLY);
    if (fd < 0 || write(fd, oom_score_adj.data(), oom_score_adj.size()) < 0) _exit(125);
    close(fd);
  }
  execv(LOUPE_OOM_VICTIM, argv.data());
  _exit(127);
}

// Anonymous resident bytes of `pid` (RssAnon in /proc/PID/status), 0 when
// gone. Not statm: right after fork the child's RSS is the test's own.
uint64_t AnonBytes(pid_t pid) {
  const std::string status = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status");
  const size_t at = status.find("\nRssAnon:");
  unsigned long kb = 0;
  if (at == std::string::npos || std::sscanf(status.c_str() + at, "\nRssAnon: %lu", &kb) != 1) {
    return 0;
  }
  return static_cast<uint64_t>(kb) * 1024;
}

// A v1 memory cgroup limited to kLimitBytes (memory+swap too), or nullptr
// with the reason in *skip.
std::unique_ptr<TestCgroup> MakeV1Cgroup(const std::string& name, std::string* skip) {
  const std::string root = "/sys/fs/cgroup/memory";
  if (!Exists(root + "/memory.limit_in_bytes")) {
    *skip = "no cgroup v1 memory hierarchy at " + root;
    return nullptr;
  }
  auto cgroup = std::make_unique<TestCgroup>();
  cgroup->hierarchy_root = root;
  cgroup->relative = "/loupe-oom-test-" + std::to_string(getpid()) + "-" + name;
  EXPECT_EQ(mkdir(cgroup->dir().c_str(), 0755), 0)
      << cgroup->dir() << ": " << std::strerror(errno);
  WriteFile(cgroup->dir() + "/memory.limit_in_bytes", std::to_string(kLimitBytes));
  // memory+swap no higher than memory: the victim cannot escape to swap.
  if (Exists(cgroup->dir() + "/memory.memsw.limit_in_bytes")) {
    WriteFile(cgroup->dir() + "/memory.memsw.limit_in_bytes", std::to_string(kLimitBytes));
  }
  EXPECT_EQ(ReadFileOrEmpty(cgroup->dir() + "/memory.limit_in_bytes"),
            std::to_string(kLimitBytes) + "\n");
  return cgroup;
}

class OomIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    std::string events_dir;
    bool mounted = false;
    ASSERT_TRUE(EnsureTracefs(&events_dir, &mounted).ok());
    ASSERT_TRUE(Exists(events_dir + "/oom/mark_victim"))
        << "this kernel has no oom:mark_victim tracepoint";
    CaptureOptions options;
    options.self_tgid = static_cast<uint32_t>(getpid());
    options.pids = {static_cast<uint32_t>(getpid())};  // quiet sockets; OOM kills are host-wide
    options.tracefs_events_dir = events_dir;
    auto capture = BpfCapture::Start(options, [this](std::span<const uint8_t> raw) {
      if (IsOomEvent(raw)) raw_oom_events_.emplace_back(raw.begin(), raw.end());
    });
    ASSERT_TRUE(capture.ok()) << capture.status();
    capture_ = std::move(*capture);
    bool attached = false;
    for (const HookStatus& hook : capture_->hooks()) {
      if (hook.tracepoint == "oom/mark_victim") attached = hook.attached;
    }
    ASSERT_TRUE(attached) << "the oom/mark_victim program did not attach";
  }

  // Polls the ring buffer until the kill of `victim` is reported.
  std::optional<OomEvent> WaitForKill(pid_t victim, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      capture_->Poll(100);
      for (const std::vector<uint8_t>& raw : raw_oom_events_) {
        absl::StatusOr<OomEvent> event = ParseOomEvent(raw);
        EXPECT_TRUE(event.ok()) << event.status();
        if (event.ok() && event->victim_pid == static_cast<uint32_t>(victim)) return *event;
      }
    }
    return std::nullopt;
  }

  // The whole story for one cgroup whose limit is already set.
  void KillAndCheck(const TestCgroup& cgroup, int version) {
    const uint64_t before_ns = MonotonicNs();
    const pid_t victim = StartVictim(cgroup.dir() + "/cgroup.procs", {"--max-mib", "256"});
    ASSERT_GT(victim, 0);
    std::optional<OomEvent> event = WaitForKill(victim, std::chrono::seconds(30));
    // Read the facts at once, as the agent does (the victim is a zombie
    // until it is reaped below).
    OomReporter reporter;
    std::optional<OomKill> kill;
    if (event) kill = reporter.Report(*event);
    int status = 0;
    ASSERT_EQ(waitpid(victim, &status, 0), victim);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "oom_victim was not killed by the OOM killer (status " << status << ")";
    ASSERT_TRUE(event) << "no OOM-kill event for pid " << victim;

    // The kernel side.
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    EXPECT_EQ(event->victim_pid, static_cast<uint32_t>(victim));
    EXPECT_EQ(event->victim_comm, "oom_victim");
    EXPECT_EQ(event->victim_uid, 0u);
    EXPECT_GE(event->anon_rss_kb, 20u * 1024) << "the victim had touched ~32 MiB";
    EXPECT_LE(event->anon_rss_kb, 40u * 1024);
    EXPECT_GE(event->total_vm_kb, event->anon_rss_kb);
    EXPECT_EQ(event->kind, OomKind::kCgroup);
    EXPECT_EQ(event->oom_memcg_id, InodeOf(cgroup.dir()));
    // The victim's own allocation ran the OOM killer.
    EXPECT_EQ(event->header.tgid, static_cast<uint32_t>(victim));
    EXPECT_EQ(event->trigger_comm, "oom_victim");
    EXPECT_EQ(event->trigger_memcg_id, event->oom_memcg_id);
    EXPECT_EQ(event->memcg_limit_pages * page, kLimitBytes);
    EXPECT_GE(event->memcg_usage_pages * page + kOomLimitSlackBytes, kLimitBytes);
    EXPECT_GE(event->header.ts_ns, before_ns);
    EXPECT_LE(event->header.ts_ns, MonotonicNs());
    EXPECT_NE(event->flags & LOUPE_OOM_F_TP_DETAILS, 0);
    EXPECT_EQ((event->flags & LOUPE_OOM_F_MEMCG_V1) != 0, version == 1);
    // Usage at the limit is seen on both versions; the OOM lock only on v1.
    EXPECT_NE(event->flags & LOUPE_OOM_F_BY_LIMIT, 0);
    EXPECT_EQ((event->flags & LOUPE_OOM_F_BY_OOM_LOCK) != 0, version == 1);
    std::vector<std::string> flags;
    for (std::string_view f : OomFlagNames(event->flags)) flags.emplace_back(f);
    std::printf("kernel flags: %s\n", ::testing::PrintToString(flags).c_str());

    // What the reporter made of it.
    ASSERT_TRUE(kill);
    EXPECT_EQ(kill->kind, OomKind::kCgroup);
    EXPECT_EQ(kill->kind_source, OomKindSource::kKernel);
    ASSERT_TRUE(kill->cgroup.has_value());
    EXPECT_EQ(kill->cgroup->version, version);
    EXPECT_EQ(kill->cgroup->path, cgroup.relative);
    EXPECT_EQ(kill->cgroup->limit_bytes, kLimitBytes);
    EXPECT_EQ(kill->kernel_memcg_limit_bytes, kLimitBytes);
    EXPECT_GE(kill->kernel_memcg_usage_bytes + kOomLimitSlackBytes, kLimitBytes);
    ASSERT_TRUE(kill->cgroup->peak_bytes.has_value() || version == 2)
        << "v1 always has max_usage_in_bytes";
    if (kill->cgroup->peak_bytes) {
      EXPECT_GE(*kill->cgroup->peak_bytes + kOomLimitSlackBytes, kLimitBytes);
    }
    EXPECT_TRUE(kill->cgroup->LimitReached());
    ASSERT_TRUE(kill->cgroup->oom_kill_events.has_value());
    EXPECT_GE(*kill->cgroup->oom_kill_events, 1u);
    // The zombie still shows its cgroup, and is left out of the largest
    // processes (it was alone in the cgroup).
    // Read from /proc/PID/cgroup of the zombie: once the exit has passed
    // cgroup_exit() it reads "/" (timing), never another cgroup.
    EXPECT_TRUE(kill->victim_cgroup == cgroup.relative || kill->victim_cgroup == "/" ||
                kill->victim_cgroup.empty())
        << kill->victim_cgroup;
    EXPECT_TRUE(kill->top_processes.empty());

    const std::string line = OomKillConsoleLine(*kill);
    std::printf("%s\n", line.c_str());
    EXPECT_THAT(line, HasSubstr("OOMKILL oom_victim[" + std::to_string(victim) + "] cgroup " +
                                cgroup.relative + " limit 32.0 MiB usage "));
    const Json json = Json::parse(OomKillJson(*kill));
    EXPECT_EQ(json["kind"], "cgroup");
    EXPECT_EQ(json["victim"]["pid"], victim);
    EXPECT_EQ(json["victim"]["comm"], "oom_victim");
    EXPECT_EQ(json["cgroup"]["path"], cgroup.relative);
    EXPECT_EQ(json["cgroup"]["limit_bytes"], kLimitBytes);
    EXPECT_EQ(reporter.Recent().size(), 1u);
  }

  std::unique_ptr<BpfCapture> capture_;
  std::vector<std::vector<uint8_t>> raw_oom_events_;
};

TEST_F(OomIntegrationTest, CgroupV1MemoryLimit) {
  std::string skip;
  std::unique_ptr<TestCgroup> cgroup = MakeV1Cgroup("v1", &skip);
  if (!cgroup) GTEST_SKIP() << skip;
  KillAndCheck(*cgroup, 1);
}

// The usual case in a busy container: the task that runs out is not the one
// killed. A hog holds 24 MiB (and volunteers with oom_score_adj 500); an
// allocator that wants 16 MiB more triggers the OOM and survives it.
TEST_F(OomIntegrationTest, TriggerIsNotTheVictim) {
  std::string skip;
  std::unique_ptr<TestCgroup> cgroup = MakeV1Cgroup("trigger", &skip);
  if (!cgroup) GTEST_SKIP() << skip;
  const std::string procs = cgroup->dir() + "/cgroup.procs";
  const pid_t hog = StartVictim(procs, {"--max-mib", "24", "--hold"}, "500");
  ASSERT_GT(hog, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (AnonBytes(hog) < 24 * kMiB && std::chrono::steady_clock::now() < deadline) {
    usleep(20'000);
  }
  ASSERT_GE(AnonBytes(hog), 24 * kMiB) << "the hog did not grow";
  const pid_t allocator = StartVictim(procs, {"--max-mib", "16", "--hold"});
  ASSERT_GT(allocator, 0);

  std::optional<OomEvent> event = WaitForKill(hog, std::chrono::seconds(30));
  OomReporter reporter;
  std::optional<OomKill> kill;
  if (event) kill = reporter.Report(*event);
  int status = 0;
  ASSERT_EQ(waitpid(hog, &status, 0), hog);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  const bool allocator_alive = ::kill(allocator, 0) == 0;
  ::kill(allocator, SIGKILL);
  ASSERT_EQ(waitpid(allocator, &status, 0), allocator);
  ASSERT_TRUE(event) << "no OOM-kill event for the hog, pid " << hog;
  EXPECT_TRUE(allocator_alive) << "the allocator should have survived the hog's death";

  EXPECT_EQ(event->victim_pid, static_cast<uint32_t>(hog));
  EXPECT_EQ(event->oom_score_adj, 500);
  EXPECT_GE(event->anon_rss_kb, 23u * 1024);
  EXPECT_EQ(event->header.tgid, static_cast<uint32_t>(allocator));
  EXPECT_EQ(event->kind, OomKind::kCgroup);
  EXPECT_EQ(event->oom_memcg_id, InodeOf(cgroup->dir()));
  EXPECT_EQ(event->trigger_memcg_id, event->oom_memcg_id);

  ASSERT_TRUE(kill);
  std::printf("%s\n", OomKillConsoleLine(*kill).c_str());
  EXPECT_EQ(kill->trigger_pid, static_cast<uint32_t>(allocator));
  EXPECT_EQ(kill->kind, OomKind::kCgroup);
  ASSERT_TRUE(kill->cgroup.has_value());
  EXPECT_EQ(kill->cgroup->path, cgroup->relative);
  // What is left in the cgroup: the allocator, not the victim.
  ASSERT_EQ(kill->top_processes.size(), 1u);
  EXPECT_EQ(kill->top_processes[0].pid, static_cast<uint32_t>(allocator));
  EXPECT_EQ(kill->top_processes[0].comm, "oom_victim");
  EXPECT_GT(kill->top_processes[0].rss_bytes, 4 * kMiB);
}

// A limit on a parent (a pod) and the victim in a child without one (a
// container): the kernel names the parent as the cgroup in OOM and the
// child as the one charged; the report keeps both.
TEST_F(OomIntegrationTest, LimitOnTheParentCgroup) {
  std::string skip;
  std::unique_ptr<TestCgroup> parent = MakeV1Cgroup("parent", &skip);
  if (!parent) GTEST_SKIP() << skip;
  TestCgroup child{parent->hierarchy_root, parent->relative + "/child"};
  ASSERT_EQ(mkdir(child.dir().c_str(), 0755), 0) << child.dir() << ": " << std::strerror(errno);

  const pid_t victim = StartVictim(child.dir() + "/cgroup.procs", {"--max-mib", "256"});
  ASSERT_GT(victim, 0);
  std::optional<OomEvent> event = WaitForKill(victim, std::chrono::seconds(30));
  OomReporter reporter;
  std::optional<OomKill> kill;
  if (event) kill = reporter.Report(*event);
  int status = 0;
  ASSERT_EQ(waitpid(victim, &status, 0), victim);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  ASSERT_TRUE(event) << "no OOM-kill event for pid " << victim;

  EXPECT_EQ(event->kind, OomKind::kCgroup);
  EXPECT_EQ(event->oom_memcg_id, InodeOf(parent->dir()));
  EXPECT_EQ(event->trigger_memcg_id, InodeOf(child.dir()));
  EXPECT_EQ(event->memcg_limit_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)),
            kLimitBytes);
  ASSERT_TRUE(kill);
  std::printf("%s\n", OomKillConsoleLine(*kill).c_str());
  ASSERT_TRUE(kill->cgroup.has_value());
  EXPECT_EQ(kill->cgroup->path, parent->relative);
  EXPECT_EQ(kill->cgroup->limit_bytes, kLimitBytes);
  EXPECT_TRUE(kill->victim_cgroup == child.relative || kill->victim_cgroup == "/" ||
              kill->victim_cgroup.empty())
      << kill->victim_cgroup;
}

TEST_F(OomIntegrationTest, CgroupV2MemoryMax) {
  const std::string root = V2MemoryRoot();
  if (root.empty()) {
    GTEST_SKIP() << "the memory controller is not available to cgroup v2 here "
                    "(not in /sys/fs/cgroup/unified/cgroup.controllers nor "
                    "/sys/fs/cgroup/cgroup.controllers; it is bound to v1)";
  }
  if (ReadFileOrEmpty(root + "/cgroup.subtree_control").find("memory") == std::string::npos) {
    WriteFile(root + "/cgroup.subtree_control", "+memory");
  }
  TestCgroup cgroup{root, "/loupe-oom-test-" + std::to_string(getpid()) + "-v2"};
  ASSERT_EQ(mkdir(cgroup.dir().c_str(), 0755), 0) << cgroup.dir() << ": " << std::strerror(errno);
  WriteFile(cgroup.dir() + "/memory.max", std::to_string(kLimitBytes));
  if (Exists(cgroup.dir() + "/memory.swap.max")) WriteFile(cgroup.dir() + "/memory.swap.max", "0");
  KillAndCheck(cgroup, 2);
}

// The agent's /oom list once it holds a kill (it is published when the
// victim's exit is seen), or what it held after 10 s.
Json WaitForKills(uint16_t metrics_port) {
  Json kills;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const HttpResponse response = HttpGet(metrics_port, "/oom");
    if (response.status == 200) kills = Json::parse(response.body, nullptr, false);
  } while ((!kills.is_array() || kills.empty()) && std::chrono::steady_clock::now() < deadline);
  return kills;
}

// The whole agent: the kill shows as an OOMKILL line in its log, in
// loupe_oom_kills_total on /metrics and in the /oom endpoint.
TEST(OomAgentTest, KillIsLoggedCountedAndListed) {
  ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  std::string skip;
  std::unique_ptr<TestCgroup> cgroup = MakeV1Cgroup("agent", &skip);
  if (!cgroup) GTEST_SKIP() << skip;
  const uint16_t metrics_port = PickFreePort();
  // --pid keeps the socket hooks quiet: OOM kills are reported host-wide.
  auto loupe = LoupeProcess::Start(
      MakeTempDir("loupe-it-oom-agent"),
      {"--pid", std::to_string(getpid()), "--metrics-listen",
       "127.0.0.1:" + std::to_string(metrics_port)});
  ASSERT_NE(loupe, nullptr) << "loupe did not become ready";
  ASSERT_TRUE(WaitForTcpPort(metrics_port, std::chrono::seconds(10))) << loupe->Log();

  const pid_t victim = StartVictim(cgroup->dir() + "/cgroup.procs", {"--max-mib", "256"});
  ASSERT_GT(victim, 0);
  int status = 0;
  ASSERT_EQ(waitpid(victim, &status, 0), victim);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  const Json kills = WaitForKills(metrics_port);
  ASSERT_TRUE(kills.is_array() && kills.size() == 1u) << kills.dump() << loupe->Log();
  const Json& kill = kills[0];
  EXPECT_EQ(kill["kind"], "cgroup");
  EXPECT_EQ(kill["victim"]["pid"], victim);
  EXPECT_EQ(kill["victim"]["comm"], "oom_victim");
  EXPECT_EQ(kill["cgroup"]["path"], cgroup->relative);
  EXPECT_EQ(kill["cgroup"]["limit_bytes"], kLimitBytes);

  // The counters are published by the decoding thread every 100 ms: the
  // kill may be listed before it is counted.
  std::vector<MetricSample> samples;
  const auto counted_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    samples = ParsePrometheusText(HttpGet(metrics_port, "/metrics").body);
  } while (SumSamples(samples, "loupe_oom_kills_total", {{"kind", "cgroup"}}) != 1.0 &&
           std::chrono::steady_clock::now() < counted_by &&
           (std::this_thread::sleep_for(std::chrono::milliseconds(100)), true));
  EXPECT_EQ(SumSamples(samples, "loupe_oom_kills_total", {{"kind", "cgroup"}}), 1.0);
  EXPECT_EQ(SumSamples(samples, "loupe_oom_kills_total", {{"kind", "global"}}), 0.0);
  EXPECT_EQ(loupe->Stop(), 0);
  EXPECT_THAT(loupe->Log(), HasSubstr("OOMKILL oom_victim[" + std::to_string(victim) + "] cgroup " +
                                          cgroup->relative + " limit 32.0 MiB"));
  EXPECT_EQ(loupe->FinalStat("invalid_events"), 0) << loupe->Log();
}


// The value of attribute `key` in an OTLP KeyValue list as the receiver
// decoded it ({key, value: {stringValue|intValue|...}}), or null.
Json OtlpAttribute(const Json& attributes, const std::string& key) {
  for (const Json& kv : attributes) {
    if (kv.value("key", "") == key) return kv["value"];
  }
  return Json();
}

// Whether something listens on 127.0.0.1:`port` (/proc/net/tcp), without
// connecting to it: the victim serves exactly one connection.
bool Listening(uint16_t port) {
  char local[32];
  std::snprintf(local, sizeof(local), "0100007F:%04X 00000000:0000 0A", port);
  return ReadFileOrEmpty("/proc/net/tcp").find(local) != std::string::npos;
}

// The whole story of a container OOM-killed while serving a request: the
// victim runs in a cgroup named as Docker names a container's, serves one
// HTTP request on loopback and grows while the client waits. The agent, with
// OTLP to the independent receiver, must end the server span with
// OOMKilled, publish the kill as a loupe.oom_kill log record and on /oom
// with the container, the request in flight and the memory trend its
// sampler saw, and name the container in the console line.
TEST(OomAgentTest, ContainerKilledWhileServingIsFullyDiagnosed) {
  ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  const std::string missing = OtlpReceiverProcess::Prerequisites();
  ASSERT_TRUE(missing.empty()) << missing;
  const std::string root = "/sys/fs/cgroup/memory";
  if (!Exists(root + "/memory.limit_in_bytes")) GTEST_SKIP() << "no cgroup v1 memory hierarchy";
  // A parent without a limit; the limit sits on the container's own cgroup
  // (as a runtime sets it).
  TestCgroup parent{root, "/loupe-oom-test-" + std::to_string(getpid()) + "-ct"};
  ASSERT_EQ(mkdir(parent.dir().c_str(), 0755), 0) << std::strerror(errno);
  const std::string container_id(64, 'c');
  TestCgroup container{root, parent.relative + "/docker-" + container_id + ".scope"};
  ASSERT_EQ(mkdir(container.dir().c_str(), 0755), 0) << std::strerror(errno);
  WriteFile(container.dir() + "/memory.limit_in_bytes", std::to_string(kLimitBytes));
  if (Exists(container.dir() + "/memory.memsw.limit_in_bytes")) {
    WriteFile(container.dir() + "/memory.memsw.limit_in_bytes", std::to_string(kLimitBytes));
  }

  OtlpReceiverProcess receiver({"--protos", "otlp-grpc-exporter-base"});
  ASSERT_EQ(receiver.Start(), "");
  const uint16_t metrics_port = PickFreePort();
  const uint16_t serve_port = PickFreePort();
  auto loupe = LoupeProcess::Start(
      MakeTempDir("loupe-it-oom-serving"),
      {"--port", std::to_string(serve_port), "--resource-interval", "1", "--metrics-listen",
       "127.0.0.1:" + std::to_string(metrics_port)},
      {"OTEL_EXPORTER_OTLP_ENDPOINT=" + receiver.http_base(),
       "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_BSP_SCHEDULE_DELAY=200",
       "OTEL_METRICS_EXPORTER=prometheus"});
  ASSERT_NE(loupe, nullptr) << "loupe did not become ready";
  EXPECT_THAT(loupe->Log(), HasSubstr("exporting log records (OOM kills) over OTLP"));

  // About 100 ms per MiB: the 32 MiB limit is reached after ~3 s, long
  // enough for the 1 s sampler to see the container grow.
  const uint64_t started_ns = UnixNowNs();
  const pid_t victim = StartVictim(container.dir() + "/cgroup.procs",
                                   {"--serve", std::to_string(serve_port), "--step-ms", "100",
                                    "--max-mib", "256"});
  ASSERT_GT(victim, 0);
  const auto listen_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!Listening(serve_port) && std::chrono::steady_clock::now() < listen_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(Listening(serve_port));
  const std::string curl = FindProgram({"/usr/bin/curl"});
  // The server dies before answering: curl sees an empty reply (52).
  EXPECT_EQ(RunCommand({curl, "-s", "-o", "/dev/null", "--max-time", "60",
                        "http://127.0.0.1:" + std::to_string(serve_port) + "/grow?size=big"}),
            52);
  int status = 0;
  ASSERT_EQ(waitpid(victim, &status, 0), victim);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  const uint64_t killed_ns = UnixNowNs();

  // --- /oom ------------------------------------------------------------------
  const Json kills = WaitForKills(metrics_port);
  ASSERT_TRUE(kills.is_array() && kills.size() == 1u) << kills.dump() << loupe->Log();
  const Json& kill = kills[0];
  EXPECT_EQ(kill["kind"], "cgroup");
  EXPECT_EQ(kill["victim"]["pid"], victim);
  EXPECT_EQ(kill["cgroup"]["path"], container.relative);
  EXPECT_EQ(kill["service_name"], "oom_victim");
  ASSERT_TRUE(kill["container"].is_object()) << kill.dump();
  EXPECT_EQ(kill["container"]["id"], container_id);
  EXPECT_TRUE(kill["container"]["k8s_pod_name"].is_null()) << "no cluster here";
  // The one request it was serving, ended by the kill.
  EXPECT_EQ(kill["requests_in_flight"], 1) << kill.dump();
  // The sampler saw the container grow towards its limit.
  const Json& trend = kill["memory_trend"];
  ASSERT_TRUE(trend.is_array() && trend.size() >= 2u) << kill.dump() << loupe->Log();
  uint64_t previous_time = 0;
  for (const Json& sample : trend) {
    const uint64_t t = sample["time_unix_nano"].get<uint64_t>();
    EXPECT_GT(t, previous_time);
    EXPECT_GE(t, started_ns);
    EXPECT_LE(t, killed_ns);
    previous_time = t;
    EXPECT_LE(sample["usage_bytes"].get<uint64_t>(), kLimitBytes + kOomLimitSlackBytes);
    EXPECT_EQ(sample["limit_bytes"], kLimitBytes);
  }
  EXPECT_GT(trend.back()["usage_bytes"].get<uint64_t>(),
            trend.front()["usage_bytes"].get<uint64_t>() + (2u << 20))
      << trend.dump();

  // --- the console line ---------------------------------------------------
  // Published when the victim's exit was seen (with the request it served).
  const auto logged_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (loupe->Log().find("serving 1 request") == std::string::npos &&
         std::chrono::steady_clock::now() < logged_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(loupe->Log(), HasSubstr("OOMKILL oom_victim[" + std::to_string(victim) +
                                      "] cgroup " + container.relative));
  EXPECT_THAT(loupe->Log(), HasSubstr(" container " + container_id.substr(0, 12) +
                                      " service oom_victim serving 1 request"));

  EXPECT_EQ(loupe->Stop(), 0);

  // --- the OTLP log record (decoded by the independent receiver) ---------
  Json record;
  Json record_resource;
  Json logs_request;
  for (const Json& r : receiver.Requests()) {
    if (r.value("signal", "") != "logs") continue;
    EXPECT_EQ(r["outcome"], "ok") << r.dump();
    logs_request = r;
    for (const Json& rl : r["request"].value("resourceLogs", Json::array())) {
      for (const Json& sl : rl.value("scopeLogs", Json::array())) {
        EXPECT_EQ(sl["scope"]["name"], "loupe");
        for (const Json& lr : sl.value("logRecords", Json::array())) {
          record = lr;
          record_resource = rl["resource"];
        }
      }
    }
  }
  ASSERT_TRUE(record.is_object()) << "no log record reached the receiver";
  EXPECT_EQ(record["severityNumber"], "SEVERITY_NUMBER_WARN");
  EXPECT_EQ(record["severityText"], "WARN");
  EXPECT_THAT(record["body"]["stringValue"].get<std::string>(),
              HasSubstr("OOMKILL oom_victim[" + std::to_string(victim) + "]"));
  const uint64_t record_time = std::stoull(record["timeUnixNano"].get<std::string>());
  EXPECT_GE(record_time, started_ns);
  EXPECT_LE(record_time, killed_ns);
  const Json& attributes = record["attributes"];
  EXPECT_EQ(OtlpAttribute(attributes, "process.pid")["intValue"], std::to_string(victim));
  EXPECT_EQ(OtlpAttribute(attributes, "loupe.oom.kind")["stringValue"], "cgroup");
  EXPECT_EQ(OtlpAttribute(attributes, "loupe.oom.cgroup.path")["stringValue"],
            container.relative);
  EXPECT_EQ(OtlpAttribute(attributes, "loupe.oom.cgroup.limit_bytes")["intValue"],
            std::to_string(kLimitBytes));
  EXPECT_EQ(OtlpAttribute(attributes, "container.id")["stringValue"], container_id);
  EXPECT_EQ(OtlpAttribute(attributes, "loupe.oom.requests_in_flight")["intValue"], "1");
  const Json trend_attribute = OtlpAttribute(attributes, "loupe.oom.memory_trend");
  ASSERT_TRUE(trend_attribute.is_object()) << attributes.dump();
  EXPECT_EQ(trend_attribute["arrayValue"]["values"].size(), trend.size());
  EXPECT_EQ(OtlpAttribute(trend_attribute["arrayValue"]["values"][0]["kvlistValue"]["values"],
                          "usage_bytes")["intValue"],
            std::to_string(trend[0]["usage_bytes"].get<uint64_t>()));
  // The resource is the victim process's.
  EXPECT_EQ(OtlpAttribute(record_resource["attributes"], "service.name")["stringValue"],
            "oom_victim");
  EXPECT_EQ(OtlpAttribute(record_resource["attributes"], "container.id")["stringValue"],
            container_id);
  // event_name (field 12) postdates the receiver's upstream .proto files:
  // it arrives as an unknown field of the LogRecord, the string's bytes.
  std::string event_name_hex;
  for (const Json& f : logs_request["unknownFields"]) {
    if (f["field"] == 12) event_name_hex = f.value("hex", "");
  }
  std::string expected_hex;
  for (unsigned char c : std::string("loupe.oom_kill")) {
    char two[3];
    std::snprintf(two, sizeof(two), "%02x", c);
    expected_hex += two;
  }
  EXPECT_EQ(event_name_hex, expected_hex) << logs_request["unknownFields"].dump();

  // --- the server span, ended by the kill ---------------------------------
  std::vector<Json> servers;
  for (const Json& span : receiver.Spans()) {
    if (span["kind"] == "SPAN_KIND_SERVER") servers.push_back(span);
  }
  ASSERT_EQ(servers.size(), 1u) << loupe->Log();
  const Json& server = servers[0];
  EXPECT_EQ(server["name"], "GET /grow");
  EXPECT_EQ(server["status"]["code"], "STATUS_CODE_ERROR");
  EXPECT_EQ(server["status"]["message"], "OOMKilled");
  EXPECT_EQ(OtlpAttribute(server["attributes"], "error.type")["stringValue"], "OOMKilled");
  EXPECT_TRUE(OtlpAttribute(server["attributes"], "http.response.status_code").is_null());
  EXPECT_EQ(OtlpAttribute(server["__resource"]["attributes"], "container.id")["stringValue"],
            container_id);
  const uint64_t start = std::stoull(server["startTimeUnixNano"].get<std::string>());
  const uint64_t end = std::stoull(server["endTimeUnixNano"].get<std::string>());
  // It lasted from the request until the kill: the ~3 s of growth.
  EXPECT_GE(end - start, 1'000'000'000u);
  EXPECT_LE(end, killed_ns);
  EXPECT_EQ(loupe->FinalStat("invalid_events"), 0) << loupe->Log();
}

}  // namespace
}  // namespace loupe::testing
