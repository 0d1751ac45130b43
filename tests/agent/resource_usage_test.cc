// CPU and memory readers (agent/resource_usage.h) on fake /proc and cgroup
// trees with exact numbers, the sampler's bookkeeping (gone processes,
// bounded ticks), and a live child process that burns CPU and touches
// memory.
#include "agent/resource_usage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace loupe {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kT0 = 1'700'000'000 * kSecond;
constexpr uint64_t kMiB = 1024 * 1024;

// A directory of its own under the test temp dir, removed at the end.
class TempTree {
 public:
  TempTree() {
    std::string pattern = ::testing::TempDir() + "loupe-usage-XXXXXX";
    root_ = mkdtemp(pattern.data());
  }
  ~TempTree() { std::filesystem::remove_all(root_); }
  const std::string& root() const { return root_; }
  std::string Write(const std::string& relative, const std::string& contents) const {
    const std::filesystem::path path = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << contents;
    return path.string();
  }
  std::string Dir(const std::string& relative) const {
    const std::filesystem::path path = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(path);
    return path.string();
  }

 private:
  std::string root_;
};

// A /proc/PID/stat line: pid, comm, then fields 3.. as the kernel writes
// them (proc(5)), with the fields under test set.
std::string StatLine(uint32_t pid, const std::string& comm, uint64_t minflt, uint64_t majflt,
                     uint64_t utime, uint64_t stime, uint64_t threads, uint64_t starttime,
                     uint64_t vsize, uint64_t rss_pages) {
  std::ostringstream s;
  s << pid << " (" << comm << ") S 1 " << pid << " " << pid << " 0 -1 4194560 " << minflt << " 11 "
    << majflt << " 0 " << utime << " " << stime << " 4 2 20 0 " << threads << " 0 " << starttime
    << " " << vsize << " " << rss_pages
    << " 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
  return s.str();
}

std::shared_ptr<const Resource> ProcessResource(const std::string& service, int64_t pid) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", service);
  r->attributes.Set("service.instance.id", "node-1:" + std::to_string(pid));
  r->attributes.Set("process.pid", pid);
  return r;
}

std::shared_ptr<const Resource> ContainerResource(const std::string& id) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", "app");
  r->attributes.Set("service.instance.id", id);
  r->attributes.Set("container.id", id);
  return r;
}

// The observed point of `name` (with attribute key=value, if given) of the
// resource whose service.instance.id is `instance`; nullptr when absent.
const SumPoint* Find(const MetricsSnapshot& snapshot, const std::string& instance,
                     const std::string& name, const std::string& key = "",
                     const std::string& value = "", const MetricData** metric = nullptr) {
  for (const ResourceMetrics& rm : snapshot.resources) {
    const std::string* id = rm.resource->attributes.FindString("service.instance.id");
    if (id == nullptr || *id != instance) continue;
    for (const MetricData& m : rm.metrics) {
      if (m.name != name) continue;
      for (const SumPoint& p : m.sum_points) {
        const std::string* v = key.empty() ? nullptr : p.attributes.FindString(key);
        if (key.empty() ? p.attributes.empty() : (v != nullptr && *v == value)) {
          if (metric != nullptr) *metric = &m;
          return &p;
        }
      }
    }
  }
  return nullptr;
}

size_t SeriesOf(const MetricsSnapshot& snapshot, const std::string& instance) {
  size_t n = 0;
  for (const ResourceMetrics& rm : snapshot.resources) {
    const std::string* id = rm.resource->attributes.FindString("service.instance.id");
    if (id == nullptr || *id != instance) continue;
    for (const MetricData& m : rm.metrics) n += m.point_count();
  }
  return n;
}

// ---- /proc/PID/stat -----------------------------------------------------------

TEST(ParseProcStat, ExactFieldsAfterTheLastParenthesis) {
  // A command name that looks like the end of the name field and the
  // start of the next: only the last ')' ends it.
  const std::string line =
      StatLine(4242, "a) (b c) S 9", 5000, 7, 250, 130, 3, 987654, 123456789, 2048);
  const ProcessUsage u = ParseProcStat(line, 100, 4096);
  ASSERT_EQ(u.status, ReadStatus::kOk);
  EXPECT_DOUBLE_EQ(u.user_seconds, 2.5);
  EXPECT_DOUBLE_EQ(u.system_seconds, 1.3);
  EXPECT_EQ(u.minor_faults, 5000u);
  EXPECT_EQ(u.major_faults, 7u);
  EXPECT_EQ(u.threads, 3u);
  EXPECT_EQ(u.start_ticks, 987654u);
  EXPECT_EQ(u.virtual_bytes, 123456789u);
  EXPECT_EQ(u.rss_bytes, 2048u * 4096u);

  // Other clock rates and page sizes.
  const ProcessUsage fast = ParseProcStat(line, 1000, 65536);
  EXPECT_DOUBLE_EQ(fast.user_seconds, 0.25);
  EXPECT_EQ(fast.rss_bytes, 2048u * 65536u);
}

TEST(ParseProcStat, MalformedLines) {
  EXPECT_EQ(ParseProcStat("", 100, 4096).status, ReadStatus::kError);
  EXPECT_EQ(ParseProcStat("12 no parenthesis S 1 2 3", 100, 4096).status, ReadStatus::kError);
  // Cut before rss (field 24).
  const std::string full = StatLine(1, "x", 1, 2, 3, 4, 5, 6, 7, 8);
  const size_t vsize_at = full.find(" 7 8 ");
  ASSERT_NE(vsize_at, std::string::npos);
  EXPECT_EQ(ParseProcStat(full.substr(0, vsize_at + 2), 100, 4096).status, ReadStatus::kError);
  // A number that is not one.
  std::string bad = full;
  bad.replace(bad.find(" 3 4 "), 5, " 3x 4 ");
  EXPECT_EQ(ParseProcStat(bad, 100, 4096).status, ReadStatus::kError);
}

TEST(ReadProcessUsage, FakeTreeAndMissingProcesses) {
  TempTree tree;
  tree.Write("4242/stat",
             StatLine(4242, "my (weird) ) (name", 100, 2, 300, 50, 12, 5000, 1 << 30, 25600));
  tree.Write("77/stat", "");                    // reaped between open and read
  tree.Write("88/stat", "88 (x) S garbage\n");  // unparseable
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);

  const ProcessUsage u = ReadProcessUsage(tree.root(), 4242);
  ASSERT_EQ(u.status, ReadStatus::kOk);
  EXPECT_DOUBLE_EQ(u.user_seconds, 300.0 / static_cast<double>(ticks));
  EXPECT_DOUBLE_EQ(u.system_seconds, 50.0 / static_cast<double>(ticks));
  EXPECT_EQ(u.threads, 12u);
  EXPECT_EQ(u.major_faults, 2u);
  EXPECT_EQ(u.minor_faults, 100u);
  EXPECT_EQ(u.virtual_bytes, uint64_t{1} << 30);
  EXPECT_EQ(u.rss_bytes, 25600u * static_cast<uint64_t>(page));

  EXPECT_EQ(ReadProcessUsage(tree.root(), 99999).status, ReadStatus::kGone);
  EXPECT_EQ(ReadProcessUsage(tree.root(), 77).status, ReadStatus::kGone);
  EXPECT_EQ(ReadProcessUsage(tree.root(), 88).status, ReadStatus::kError);
  EXPECT_EQ(ReadProcessUsage(tree.root() + "/nonexistent", 4242).status, ReadStatus::kGone);
  EXPECT_EQ(ReadProcessUsage("", 4242).status, ReadStatus::kError);
}

TEST(ReadBootTime, FromStatBtime) {
  TempTree tree;
  tree.Write("stat",
             "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 1 2 3\nctxt 99\nbtime 1700000123\n"
             "processes 5\n");
  EXPECT_EQ(ReadBootTimeUnixNs(tree.root()), 1700000123ull * kSecond);
  EXPECT_EQ(ReadBootTimeUnixNs(tree.root() + "/none"), 0u);
  // The real one: some time after 2020.
  EXPECT_GT(ReadBootTimeUnixNs("/proc"), 1'577'836'800ull * kSecond);
}

// ---- Cgroups ------------------------------------------------------------------

TEST(JoinCgroupDir, Slashes) {
  EXPECT_EQ(JoinCgroupDir("/sys/fs/cgroup", "/kubepods/pod1/abc"),
            "/sys/fs/cgroup/kubepods/pod1/abc");
  EXPECT_EQ(JoinCgroupDir("/sys/fs/cgroup/", "kubepods/"), "/sys/fs/cgroup/kubepods");
  EXPECT_EQ(JoinCgroupDir("/sys/fs/cgroup", "/"), "/sys/fs/cgroup");
  EXPECT_EQ(JoinCgroupDir("/sys/fs/cgroup", ""), "/sys/fs/cgroup");
  EXPECT_EQ(JoinCgroupDir("/", "/a"), "/a");
  EXPECT_EQ(JoinCgroupDir("/", ""), "/");
  EXPECT_EQ(JoinCgroupDir("", "/a"), "");
  EXPECT_EQ(JoinCgroupDir("/m", std::string(5000, 'x')), "");  // longer than PATH_MAX
}

// A v2 cgroup as a 6.x kernel writes it (fields we do not read included).
void WriteV2(const TempTree& tree, const std::string& dir, const std::string& max) {
  tree.Write(dir + "/memory.current", "104857600\n");
  tree.Write(dir + "/memory.max", max + "\n");
  tree.Write(dir + "/memory.stat",
             "anon 52428800\nfile 41943040\nkernel 4194304\nkernel_stack 65536\n"
             "shmem 0\nactive_anon 50331648\ninactive_anon 2097152\n"
             "active_file 10485760\ninactive_file 31457280\nunevictable 0\n"
             "pgfault 12345\npgmajfault 6\n");
  tree.Write(dir + "/memory.events",
             "low 0\nhigh 0\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n");
  tree.Write(dir + "/cpu.stat",
             "usage_usec 7500000\nuser_usec 5000000\nsystem_usec 2500000\n"
             "core_sched.force_idle_usec 0\nnr_periods 1000\nnr_throttled 40\n"
             "throttled_usec 1200000\nnr_bursts 0\nburst_usec 0\n");
}

TEST(ReadCgroupV2Usage, ExactValues) {
  TempTree tree;
  WriteV2(tree, "kubepods/pod1/ctr", "536870912");
  const CgroupUsage u = ReadCgroupV2Usage(tree.root() + "/kubepods/pod1/ctr");
  ASSERT_EQ(u.status, ReadStatus::kOk);
  EXPECT_EQ(u.memory_usage_bytes, 104857600u);
  EXPECT_EQ(u.memory_limit_bytes, 536870912u);
  EXPECT_FALSE(u.memory_unlimited);
  EXPECT_EQ(u.anon_bytes, 52428800u);
  EXPECT_EQ(u.file_bytes, 41943040u);
  EXPECT_EQ(u.active_file_bytes, 10485760u);
  EXPECT_EQ(u.inactive_file_bytes, 31457280u);
  EXPECT_EQ(u.working_set_bytes, 104857600u - 31457280u);
  EXPECT_EQ(u.cpu_seconds, 7.5);
  EXPECT_EQ(u.cpu_user_seconds, 5.0);
  EXPECT_EQ(u.cpu_system_seconds, 2.5);
  EXPECT_EQ(u.cpu_periods, 1000u);
  EXPECT_EQ(u.cpu_throttled_periods, 40u);
  EXPECT_EQ(u.cpu_throttled_seconds, 1.2);
  EXPECT_EQ(u.oom_kills, 2u);

  // The same through a location (mount + path).
  CgroupLocation location;
  location.version = CgroupVersion::kV2;
  location.unified = {tree.root(), "/kubepods/pod1/ctr"};
  EXPECT_EQ(ReadCgroupUsage(location).working_set_bytes, 104857600u - 31457280u);
}

TEST(ReadCgroupV2Usage, UnlimitedMissingFilesAndGone) {
  TempTree tree;
  WriteV2(tree, "a", "max");
  const CgroupUsage unlimited = ReadCgroupV2Usage(tree.root() + "/a");
  EXPECT_TRUE(unlimited.memory_unlimited);
  EXPECT_FALSE(unlimited.memory_limit_bytes.has_value());

  // Only cpu.stat (memory controller not enabled for this subtree), and a
  // kernel without throttling fields.
  tree.Write("cpu-only/cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n");
  const CgroupUsage cpu_only = ReadCgroupV2Usage(tree.root() + "/cpu-only");
  ASSERT_EQ(cpu_only.status, ReadStatus::kOk);
  EXPECT_FALSE(cpu_only.memory_usage_bytes.has_value());
  EXPECT_FALSE(cpu_only.working_set_bytes.has_value());
  EXPECT_FALSE(cpu_only.memory_limit_bytes.has_value());
  EXPECT_FALSE(cpu_only.memory_unlimited);
  EXPECT_FALSE(cpu_only.cpu_periods.has_value());
  EXPECT_FALSE(cpu_only.oom_kills.has_value());
  EXPECT_EQ(cpu_only.cpu_user_seconds, 6e-6);

  // More inactive file than usage (read at different moments): 0, not a
  // huge unsigned number.
  tree.Write("racy/memory.current", "1000\n");
  tree.Write("racy/memory.stat", "inactive_file 4096\n");
  EXPECT_EQ(ReadCgroupV2Usage(tree.root() + "/racy").working_set_bytes, 0u);

  // An existing directory with nothing readable, and one that is gone.
  tree.Dir("empty");
  EXPECT_EQ(ReadCgroupV2Usage(tree.root() + "/empty").status, ReadStatus::kError);
  EXPECT_EQ(ReadCgroupV2Usage(tree.root() + "/removed").status, ReadStatus::kGone);
  // No directory at all (an unmounted hierarchy): not read from "/".
  EXPECT_EQ(ReadCgroupV2Usage("").status, ReadStatus::kError);
}

// A v1 container's three controllers, as mounted by Docker's cgroupfs driver.
void WriteV1(const TempTree& tree, const std::string& path, bool modern_cpuacct) {
  tree.Write("memory" + path + "/memory.usage_in_bytes", "256114688\n");
  tree.Write("memory" + path + "/memory.limit_in_bytes", "9223372036854771712\n");
  // The per-cgroup counters differ from the hierarchical ones (a child
  // cgroup holds the rest): the total_* ones are read.
  tree.Write("memory" + path + "/memory.stat",
             "cache 1000\nrss 2000\nrss_huge 0\nshmem 0\nmapped_file 13238272\n"
             "inactive_anon 164503552\nactive_anon 57344\ninactive_file 3000\n"
             "active_file 4000\nunevictable 0\n"
             "hierarchical_memory_limit 9223372036854771712\n"
             "total_cache 85819392\ntotal_rss 164634624\ntotal_rss_huge 0\n"
             "total_inactive_file 45289472\ntotal_active_file 40529920\n");
  tree.Write("memory" + path + "/memory.oom_control",
             "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  tree.Write("cpuacct" + path + "/cpuacct.usage", "9000000000\n");
  if (modern_cpuacct) {
    tree.Write("cpuacct" + path + "/cpuacct.usage_user", "6000000000\n");
    tree.Write("cpuacct" + path + "/cpuacct.usage_sys", "3000000000\n");
  }
  tree.Write("cpuacct" + path + "/cpuacct.stat", "user 610\nsystem 290\n");
  tree.Write("cpu" + path + "/cpu.stat",
             "nr_periods 8006\nnr_throttled 675\nthrottled_time 1921546352\n"
             "nr_bursts 0\nburst_time 0\n");
}

TEST(ReadCgroupV1Usage, ExactValues) {
  TempTree tree;
  WriteV1(tree, "/docker/abc", true);
  const CgroupUsage u =
      ReadCgroupV1Usage(tree.root() + "/memory/docker/abc", tree.root() + "/cpu/docker/abc",
                        tree.root() + "/cpuacct/docker/abc");
  ASSERT_EQ(u.status, ReadStatus::kOk);
  EXPECT_EQ(u.memory_usage_bytes, 256114688u);
  EXPECT_TRUE(u.memory_unlimited);  // PAGE_COUNTER_MAX pages
  EXPECT_FALSE(u.memory_limit_bytes.has_value());
  EXPECT_EQ(u.anon_bytes, 164634624u);
  EXPECT_EQ(u.file_bytes, 85819392u);
  EXPECT_EQ(u.inactive_file_bytes, 45289472u);
  EXPECT_EQ(u.active_file_bytes, 40529920u);
  EXPECT_EQ(u.working_set_bytes, 256114688u - 45289472u);
  EXPECT_EQ(u.cpu_seconds, 9.0);
  EXPECT_EQ(u.cpu_user_seconds, 6.0);
  EXPECT_EQ(u.cpu_system_seconds, 3.0);
  EXPECT_EQ(u.cpu_periods, 8006u);
  EXPECT_EQ(u.cpu_throttled_periods, 675u);
  EXPECT_DOUBLE_EQ(*u.cpu_throttled_seconds, 1.921546352);
  EXPECT_EQ(u.oom_kills, 4u);
}

TEST(ReadCgroupV1Usage, OlderKernelsAndLimitsAndMissingControllers) {
  TempTree tree;
  WriteV1(tree, "/old", false);
  tree.Write("memory/old/memory.limit_in_bytes", "536870912\n");
  // Without usage_user/usage_sys: cpuacct.stat, in USER_HZ ticks.
  CgroupLocation location;
  location.version = CgroupVersion::kV1;
  location.memory = {tree.root() + "/memory", "/old"};
  location.cpu = {tree.root() + "/cpu", "/old"};
  location.cpuacct = {tree.root() + "/cpuacct", "/old"};
  const CgroupUsage u = ReadCgroupUsage(location);
  ASSERT_EQ(u.status, ReadStatus::kOk);
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  EXPECT_DOUBLE_EQ(*u.cpu_user_seconds, 610 / ticks);
  EXPECT_DOUBLE_EQ(*u.cpu_system_seconds, 290 / ticks);
  EXPECT_EQ(u.memory_limit_bytes, 536870912u);
  EXPECT_FALSE(u.memory_unlimited);

  // The plain counters stand in when there are no total_* ones.
  tree.Write("memory/flat/memory.usage_in_bytes", "10000\n");
  tree.Write("memory/flat/memory.stat", "rss 2000\ncache 5000\ninactive_file 3000\n");
  const CgroupUsage flat = ReadCgroupV1Usage(tree.root() + "/memory/flat", "", "");
  EXPECT_EQ(flat.anon_bytes, 2000u);
  EXPECT_EQ(flat.working_set_bytes, 7000u);
  EXPECT_FALSE(flat.cpu_seconds.has_value());
  EXPECT_FALSE(flat.oom_kills.has_value());  // memory.oom_control before 4.13 has no oom_kill

  // No controller mounted: nothing to read, but nothing says it is gone.
  CgroupLocation nowhere;
  nowhere.version = CgroupVersion::kV1;
  EXPECT_EQ(ReadCgroupUsage(nowhere).status, ReadStatus::kError);
  // Removed in every hierarchy: gone.
  location.memory.path = location.cpu.path = location.cpuacct.path = "/removed";
  EXPECT_EQ(ReadCgroupUsage(location).status, ReadStatus::kGone);
}

// ---- Sampler --------------------------------------------------------------------

TEST(ResourceSampler, RecordsProcessesAndForgetsGoneOnes) {
  TempTree tree;
  tree.Write("stat", "cpu 1 2 3\nbtime 1699999000\n");
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  // Started 12.5 s after boot.
  const uint64_t start_ticks = static_cast<uint64_t>(ticks) * 25 / 2;
  tree.Write("10/stat", StatLine(10, "nginx", 900, 3, static_cast<uint64_t>(ticks) * 2,
                                 static_cast<uint64_t>(ticks), 4, start_ticks, 50 * kMiB, 1000));
  tree.Write("11/stat", StatLine(11, "worker", 5, 0, 0, 0, 1, start_ticks, kMiB, 10));
  tree.Write("12/stat", StatLine(12, "worker", 5, 0, 0, 0, 1, start_ticks, kMiB, 10));

  MetricsRecorder recorder;
  ResourceSamplerOptions options;
  options.proc_root = tree.root();
  ResourceSampler sampler(recorder, options);
  const auto nginx = ProcessResource("nginx", 10);
  const auto w11 = ProcessResource("worker", 11);
  const auto w12 = ProcessResource("worker", 12);
  std::vector<ResourceSampler::Process> processes = {{10, nginx}, {11, w11}, {12, w12}};
  sampler.Sample(processes, {}, kT0);

  const MetricsSnapshot s1 = recorder.CollectCumulative(kT0 + kSecond);
  const MetricData* cpu = nullptr;
  const SumPoint* user = Find(s1, "node-1:10", "process.cpu.time", "cpu.mode", "user", &cpu);
  ASSERT_NE(user, nullptr);
  EXPECT_DOUBLE_EQ(user->value, 2.0);
  EXPECT_TRUE(cpu->monotonic);
  EXPECT_EQ(cpu->unit, "s");
  // The counter counts from the process's start: btime + starttime.
  EXPECT_EQ(user->start_unix_ns, 1'699'999'012'500'000'000ull);
  EXPECT_DOUBLE_EQ(Find(s1, "node-1:10", "process.cpu.time", "cpu.mode", "system")->value, 1.0);
  const MetricData* rss = nullptr;
  EXPECT_EQ(Find(s1, "node-1:10", "process.memory.usage", "", "", &rss)->value,
            1000.0 * static_cast<double>(page));
  EXPECT_FALSE(rss->monotonic);
  EXPECT_EQ(rss->unit, "By");
  EXPECT_EQ(Find(s1, "node-1:10", "process.memory.virtual")->value, 50.0 * kMiB);
  EXPECT_EQ(
      Find(s1, "node-1:10", "process.paging.faults", "system.paging.fault.type", "major")->value,
      3);
  EXPECT_EQ(
      Find(s1, "node-1:10", "process.paging.faults", "system.paging.fault.type", "minor")->value,
      900);
  EXPECT_EQ(Find(s1, "node-1:10", "process.thread.count")->value, 4);
  EXPECT_EQ(SeriesOf(s1, "node-1:10"), 7u);
  EXPECT_EQ(SeriesOf(s1, "node-1:11"), 7u);
  EXPECT_EQ(recorder.stats().series, 21u);

  // 11 exits (its stat goes away), 12 is no longer listed: both forgotten.
  std::filesystem::remove_all(tree.root() + "/11");
  processes.pop_back();
  tree.Write("10/stat", StatLine(10, "nginx", 950, 3, static_cast<uint64_t>(ticks) * 3,
                                 static_cast<uint64_t>(ticks), 4, start_ticks, 50 * kMiB, 2000));
  sampler.Sample(processes, {}, kT0 + 10 * kSecond);
  const MetricsSnapshot s2 = recorder.CollectCumulative(kT0 + 11 * kSecond);
  EXPECT_EQ(SeriesOf(s2, "node-1:11"), 0u);
  EXPECT_EQ(SeriesOf(s2, "node-1:12"), 0u);
  EXPECT_DOUBLE_EQ(Find(s2, "node-1:10", "process.cpu.time", "cpu.mode", "user")->value, 3.0);
  EXPECT_EQ(Find(s2, "node-1:10", "process.memory.usage")->value,
            2000.0 * static_cast<double>(page));
  EXPECT_EQ(s2.resources.size(), 1u);
  EXPECT_EQ(recorder.stats().series, 7u);
  EXPECT_EQ(recorder.stats().resources, 1u);

  const ResourceSamplerStats stats = sampler.stats();
  EXPECT_EQ(stats.ticks, 2u);
  EXPECT_EQ(stats.processes_sampled, 4u);
  EXPECT_EQ(stats.processes_gone, 2u);
  EXPECT_EQ(stats.series_forgotten, 14u);
  EXPECT_EQ(stats.processes_skipped, 0u);
}

TEST(ResourceSampler, ReusedPidForgetsTheOldProcess) {
  TempTree tree;
  tree.Write("20/stat", StatLine(20, "old", 1, 0, 500, 0, 1, 100, kMiB, 10));
  MetricsRecorder recorder;
  ResourceSamplerOptions options;
  options.proc_root = tree.root();
  ResourceSampler sampler(recorder, options);
  std::vector<ResourceSampler::Process> processes = {{20, ProcessResource("old", 20)}};
  sampler.Sample(processes, {}, kT0);
  ASSERT_EQ(SeriesOf(recorder.CollectCumulative(kT0), "node-1:20"), 7u);

  // A re-read of the same process (a new Resource object, equal values)
  // keeps its series.
  processes = {{20, ProcessResource("old", 20)}};
  sampler.Sample(processes, {}, kT0 + kSecond);
  EXPECT_EQ(sampler.stats().processes_gone, 0u);

  // Another program now runs as pid 20: the old one's series go.
  auto fresh = std::make_shared<Resource>();
  fresh->attributes.Set("service.name", "new");
  fresh->attributes.Set("service.instance.id", "node-1:20:b");
  fresh->attributes.Set("process.pid", int64_t{20});
  tree.Write("20/stat", StatLine(20, "new", 1, 0, 7, 0, 1, 900, kMiB, 10));
  processes = {{20, fresh}};
  sampler.Sample(processes, {}, kT0 + 2 * kSecond);
  const MetricsSnapshot s = recorder.CollectCumulative(kT0 + 3 * kSecond);
  EXPECT_EQ(SeriesOf(s, "node-1:20"), 0u);
  EXPECT_EQ(SeriesOf(s, "node-1:20:b"), 7u);
  EXPECT_EQ(sampler.stats().processes_gone, 1u);
}

TEST(ResourceSampler, BoundedTicksVisitEveryProcessInTurn) {
  TempTree tree;
  std::vector<ResourceSampler::Process> processes;
  for (uint32_t pid = 100; pid < 105; ++pid) {
    tree.Write(std::to_string(pid) + "/stat", StatLine(pid, "p", 1, 0, 1, 1, 1, 1, kMiB, 1));
    processes.push_back({pid, ProcessResource("p", pid)});
  }
  MetricsRecorder recorder;
  ResourceSamplerOptions options;
  options.proc_root = tree.root();
  options.max_processes_per_tick = 2;
  ResourceSampler sampler(recorder, options);

  sampler.Sample(processes, {}, kT0);
  ResourceSamplerStats stats = sampler.stats();
  EXPECT_EQ(stats.processes_sampled, 2u);
  EXPECT_EQ(stats.processes_skipped, 3u);
  size_t with_series = 0;
  MetricsSnapshot s = recorder.CollectCumulative(kT0);
  for (uint32_t pid = 100; pid < 105; ++pid) {
    with_series += SeriesOf(s, "node-1:" + std::to_string(pid)) > 0 ? 1 : 0;
  }
  EXPECT_EQ(with_series, 2u);

  // Two more ticks reach the rest; skipped processes are never forgotten.
  sampler.Sample(processes, {}, kT0 + kSecond);
  sampler.Sample(processes, {}, kT0 + 2 * kSecond);
  s = recorder.CollectCumulative(kT0 + 3 * kSecond);
  for (uint32_t pid = 100; pid < 105; ++pid) {
    EXPECT_EQ(SeriesOf(s, "node-1:" + std::to_string(pid)), 7u) << pid;
  }
  stats = sampler.stats();
  EXPECT_EQ(stats.processes_sampled, 6u);
  EXPECT_EQ(stats.processes_skipped, 9u);
  EXPECT_EQ(stats.processes_gone, 0u);
}

TEST(ResourceSampler, RecordsContainersOnV2AndV1) {
  TempTree tree;
  WriteV2(tree, "unified/kubepods/pod1/c2", "536870912");
  WriteV1(tree, "/docker/c1", true);
  ResourceSampler::Container v2;
  v2.key = "c2";
  v2.resource = ContainerResource("c2");
  v2.location.version = CgroupVersion::kV2;
  v2.location.unified = {tree.root() + "/unified", "/kubepods/pod1/c2"};
  ResourceSampler::Container v1;
  v1.key = "c1";
  v1.resource = ContainerResource("c1");
  v1.location.version = CgroupVersion::kV1;
  v1.location.memory = {tree.root() + "/memory", "/docker/c1"};
  v1.location.cpu = {tree.root() + "/cpu", "/docker/c1"};
  v1.location.cpuacct = {tree.root() + "/cpuacct", "/docker/c1"};
  std::vector<ResourceSampler::Container> containers = {v2, v1};

  MetricsRecorder recorder;
  ResourceSamplerOptions options;
  options.proc_root = tree.root();
  ResourceSampler sampler(recorder, options);
  sampler.Sample({}, containers, kT0);
  const MetricsSnapshot s = recorder.CollectCumulative(kT0 + kSecond);

  EXPECT_EQ(Find(s, "c2", "container.cpu.time", "cpu.mode", "user")->value, 5.0);
  EXPECT_EQ(Find(s, "c2", "container.cpu.time", "cpu.mode", "system")->value, 2.5);
  EXPECT_EQ(Find(s, "c2", "container.memory.usage")->value, 104857600.0);
  EXPECT_EQ(Find(s, "c2", "container.memory.working_set")->value, 104857600.0 - 31457280.0);
  EXPECT_EQ(Find(s, "c2", "container.memory.rss")->value, 52428800.0);
  EXPECT_EQ(Find(s, "c2", "loupe.container.memory.limit")->value, 536870912.0);
  EXPECT_EQ(Find(s, "c2", "loupe.container.cpu.periods")->value, 1000);
  EXPECT_EQ(Find(s, "c2", "loupe.container.cpu.throttled.periods")->value, 40);
  EXPECT_DOUBLE_EQ(Find(s, "c2", "loupe.container.cpu.throttled.time")->value, 1.2);
  EXPECT_EQ(Find(s, "c2", "loupe.container.memory.oom_kills")->value, 2);
  EXPECT_EQ(SeriesOf(s, "c2"), 10u);

  EXPECT_EQ(Find(s, "c1", "container.cpu.time", "cpu.mode", "user")->value, 6.0);
  EXPECT_EQ(Find(s, "c1", "container.memory.working_set")->value, 256114688.0 - 45289472.0);
  // Unlimited: no limit series at all.
  EXPECT_EQ(Find(s, "c1", "loupe.container.memory.limit"), nullptr);
  EXPECT_EQ(SeriesOf(s, "c1"), 9u);

  // The v2 container is removed: its series go at the next tick.
  std::filesystem::remove_all(tree.root() + "/unified/kubepods/pod1/c2");
  sampler.Sample({}, containers, kT0 + 10 * kSecond);
  const MetricsSnapshot after = recorder.CollectCumulative(kT0 + 11 * kSecond);
  EXPECT_EQ(SeriesOf(after, "c2"), 0u);
  EXPECT_EQ(SeriesOf(after, "c1"), 9u);
  EXPECT_EQ(sampler.stats().containers_gone, 1u);
  EXPECT_EQ(sampler.stats().containers_sampled, 3u);
}

// ---- Live ---------------------------------------------------------------------

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kSecond + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kSecond + static_cast<uint64_t>(ts.tv_nsec);
}

// The child: ~300 ms of its own CPU time in user space, then 64 MiB
// allocated and written, then it says so and waits to be told to exit.
// Only system calls after fork().
[[noreturn]] void BusyChild(int ready_fd, int exit_fd) {
  volatile uint64_t sink = 0;
  timespec cpu{};
  do {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<uint64_t>(i) * 2654435761u;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  } while (cpu.tv_sec == 0 && cpu.tv_nsec < 300'000'000);
  const size_t size = 64 * kMiB;
  void* memory = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) _exit(2);
  std::memset(memory, 0x5a, size);
  const char byte = 'r';
  if (write(ready_fd, &byte, 1) != 1) _exit(3);
  char ignored;
  while (read(exit_fd, &ignored, 1) < 0 && errno == EINTR) {
  }
  _exit(static_cast<int>(sink & 0));
}

TEST(ResourceSamplerLive, ChildBurningCpuAndTouching64MiB) {
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  const uint64_t forked_at = MonotonicNs();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    close(done[1]);
    BusyChild(ready[1], done[0]);
  }
  close(ready[1]);
  close(done[0]);
  pollfd pfd{ready[0], POLLIN, 0};
  ASSERT_EQ(poll(&pfd, 1, 60'000), 1) << "the child did not get ready in 60 s";
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);

  MetricsRecorder recorder;
  ResourceSampler sampler(recorder);  // the real /proc
  const std::vector<ResourceSampler::Process> processes = {
      {static_cast<uint32_t>(child), ProcessResource("busy", child)}};
  const std::string instance = "node-1:" + std::to_string(child);
  sampler.Sample(processes, {}, RealtimeNs());
  const double wall_seconds = static_cast<double>(MonotonicNs() - forked_at) / 1e9;
  const MetricsSnapshot s = recorder.CollectCumulative(RealtimeNs());
  const SumPoint* user = Find(s, instance, "process.cpu.time", "cpu.mode", "user");
  const SumPoint* system = Find(s, instance, "process.cpu.time", "cpu.mode", "system");
  const SumPoint* rss = Find(s, instance, "process.memory.usage");
  ASSERT_NE(user, nullptr);
  ASSERT_NE(system, nullptr);
  ASSERT_NE(rss, nullptr);
  EXPECT_GE(user->value, 0.2);
  EXPECT_LE(user->value + system->value, wall_seconds);
  EXPECT_GE(rss->value, 64.0 * kMiB);
  EXPECT_LT(rss->value, 200.0 * kMiB);
  EXPECT_GE(Find(s, instance, "process.paging.faults", "system.paging.fault.type", "minor")->value,
            64.0 * kMiB / static_cast<double>(sysconf(_SC_PAGESIZE)) / 2);
  EXPECT_EQ(Find(s, instance, "process.thread.count")->value, 1);
  // Started after boot and before the sample.
  EXPECT_GT(user->start_unix_ns, ReadBootTimeUnixNs("/proc"));
  EXPECT_LE(user->start_unix_ns, s.time_unix_ns);

  // Told to exit and reaped: the next tick reads it as gone.
  ASSERT_EQ(write(done[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(ready[0]);
  close(done[1]);
  sampler.Sample(processes, {}, RealtimeNs());
  EXPECT_EQ(SeriesOf(recorder.CollectCumulative(RealtimeNs()), instance), 0u);
  EXPECT_EQ(sampler.stats().processes_gone, 1u);
}

// This machine's own cgroup, wherever the hierarchies are: v2 at
// /sys/fs/cgroup (or /sys/fs/cgroup/unified), v1 per controller under
// /sys/fs/cgroup. Skipped where neither is mounted there.
TEST(ResourceSamplerLive, OwnCgroup) {
  std::ifstream in("/proc/self/cgroup");
  std::string line, unified, memory, cpu, cpuacct;
  while (std::getline(in, line)) {
    const size_t a = line.find(':');
    const size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) unified = path;
    std::stringstream list(controllers);
    std::string c;
    while (std::getline(list, c, ',')) {
      if (c == "memory") memory = path;
      if (c == "cpu") cpu = path;
      if (c == "cpuacct") cpuacct = path;
    }
  }
  CgroupUsage u;
  if (!memory.empty() && std::filesystem::exists("/sys/fs/cgroup/memory/memory.usage_in_bytes")) {
    CgroupLocation location;
    location.version = CgroupVersion::kV1;
    location.memory = {"/sys/fs/cgroup/memory", memory};
    location.cpu = {"/sys/fs/cgroup/cpu", cpu};
    location.cpuacct = {"/sys/fs/cgroup/cpuacct", cpuacct};
    u = ReadCgroupUsage(location);
  } else if (std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers")) {
    u = ReadCgroupV2Usage(JoinCgroupDir("/sys/fs/cgroup", unified));
  } else {
    GTEST_SKIP() << "no cgroup hierarchy mounted at /sys/fs/cgroup";
  }
  ASSERT_EQ(u.status, ReadStatus::kOk);
  ASSERT_TRUE(u.memory_usage_bytes.has_value());
  EXPECT_GT(*u.memory_usage_bytes, 1 * kMiB);  // this test binary at least
  ASSERT_TRUE(u.working_set_bytes.has_value());
  EXPECT_LE(*u.working_set_bytes, *u.memory_usage_bytes);
  ASSERT_TRUE(u.cpu_seconds.has_value());
  EXPECT_GT(*u.cpu_seconds, 0);
}

}  // namespace
}  // namespace loupe
