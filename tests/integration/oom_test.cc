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

  Json kills;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const HttpResponse response = HttpGet(metrics_port, "/oom");
    if (response.status == 200) kills = Json::parse(response.body, nullptr, false);
  } while ((!kills.is_array() || kills.empty()) && std::chrono::steady_clock::now() < deadline);
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

}  // namespace
}  // namespace loupe::testing
