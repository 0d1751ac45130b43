// CPU and memory sampling (agent/resource_usage.h): what one process or
// container costs per tick.
//
//   BM_ReadProcessUsage/fake   ReadProcessUsage over 1000 fake
//                              /proc/PID/stat files (open, read, parse,
//                              close; tmpfs or disk, no procfs generation)
//   BM_ReadProcessUsage/real   the same over every process of this
//                              machine's /proc (the kernel formats stat,
//                              walking each process's threads)
//   BM_SamplerTick/fake, /real a whole ResourceSampler::Sample over the same,
//                              recording 7 values per process into a
//                              MetricsRecorder (steady state: series exist)
//   BM_RecordObserved          the recording alone: 7 values of one process
//   BM_ReadCgroup/v2fake, /v1fake, /own   one container's cgroup files
//
// The per_process / per_container counters are the time per entry (shown
// as e.g. "2.1u" for 2.1 us). Run a Release build:
//   resource_usage_benchmark --benchmark_repetitions=5
#include <dirent.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "agent/resource_usage.h"
#include "benchmark/benchmark.h"
#include "decoders/model/metrics.h"

namespace loupe {
namespace {

constexpr size_t kFakeProcesses = 1000;

uint64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// A temporary tree, filled once and removed at exit.
struct FakeTree {
  std::string root;
  explicit FakeTree(const std::function<void(const FakeTree&)>& fill) {
    std::string pattern = (std::filesystem::temp_directory_path() / "loupe-usage-bench-XXXXXX");
    root = mkdtemp(pattern.data());
    fill(*this);
  }
  ~FakeTree() { std::filesystem::remove_all(root); }
  void Write(const std::string& relative, const std::string& contents) const {
    const std::filesystem::path path = std::filesystem::path(root) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << contents;
  }
};

// A fake /proc with kFakeProcesses stat files shaped like a real one.
const FakeTree& FakeProc() {
  static const FakeTree tree([](const FakeTree& t) {
    t.Write("stat", "cpu 1 2 3\nbtime 1700000000\n");
    for (size_t i = 0; i < kFakeProcesses; ++i) {
      const size_t pid = 1000 + i;
      std::ostringstream s;
      s << pid << " (worker-" << i << ") S 1 " << pid << " " << pid
        << " 0 -1 4194560 183456 2210 12 0 53170 11021 12 4 20 0 17 0 1234567 2463440896 "
           "31337 18446744073709551615 94245 94246 140726 0 0 0 0 4096 16387 0 0 0 17 1 0 0 0 "
           "0 0 94247 94248 94249 140727 140728 140729 140730 0\n";
      t.Write(std::to_string(pid) + "/stat", s.str());
    }
  });
  return tree;
}

std::vector<uint32_t> FakePids() {
  std::vector<uint32_t> pids;
  for (size_t i = 0; i < kFakeProcesses; ++i) pids.push_back(static_cast<uint32_t>(1000 + i));
  return pids;
}

std::vector<uint32_t> RealPids() {
  std::vector<uint32_t> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const unsigned long pid = std::strtoul(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0') pids.push_back(static_cast<uint32_t>(pid));
  }
  closedir(dir);
  return pids;
}

std::shared_ptr<const Resource> ProcessResource(uint32_t pid) {
  auto r = std::make_shared<Resource>();
  r->attributes.Set("service.name", "worker");
  r->attributes.Set("process.pid", static_cast<int64_t>(pid));
  r->attributes.Set("host.name", "node-17.example.internal");
  r->attributes.Set("service.instance.id", "node-17.example.internal:" + std::to_string(pid));
  r->attributes.Set("telemetry.sdk.name", "loupe");
  return r;
}

void PerEntry(benchmark::State& state, size_t entries, const char* name) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * entries));
  state.counters[name] =
      benchmark::Counter(static_cast<double>(state.iterations() * entries),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["entries"] = static_cast<double>(entries);
}

void BM_ReadProcessUsage(benchmark::State& state, bool real) {
  const std::string root = real ? "/proc" : FakeProc().root;
  const std::vector<uint32_t> pids = real ? RealPids() : FakePids();
  size_t ok = 0;
  for (auto _ : state) {
    for (uint32_t pid : pids) {
      const ProcessUsage u = ReadProcessUsage(root, pid);
      ok += u.status == ReadStatus::kOk ? 1 : 0;
      benchmark::DoNotOptimize(u);
    }
  }
  PerEntry(state, pids.size(), "per_process");
  state.counters["readable"] =
      static_cast<double>(ok) / static_cast<double>(std::max<uint64_t>(state.iterations(), 1));
}
BENCHMARK_CAPTURE(BM_ReadProcessUsage, fake, false);
BENCHMARK_CAPTURE(BM_ReadProcessUsage, real, true);

void BM_SamplerTick(benchmark::State& state, bool real) {
  const std::vector<uint32_t> pids = real ? RealPids() : FakePids();
  std::vector<ResourceSampler::Process> processes;
  for (uint32_t pid : pids) processes.push_back({pid, ProcessResource(pid)});
  MetricsRecorder recorder;
  ResourceSamplerOptions options;
  options.proc_root = real ? "/proc" : FakeProc().root;
  ResourceSampler sampler(recorder, options);
  sampler.Sample(processes, {}, RealtimeNs());  // series made
  uint64_t now = RealtimeNs();
  for (auto _ : state) {
    now += 1'000'000'000;
    sampler.Sample(processes, {}, now);
  }
  PerEntry(state, processes.size(), "per_process");
  state.counters["series"] = static_cast<double>(recorder.stats().series);
}
BENCHMARK_CAPTURE(BM_SamplerTick, fake, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplerTick, real, true)->Unit(benchmark::kMicrosecond);

void BM_RecordObserved(benchmark::State& state) {
  MetricsRecorder recorder;
  std::vector<std::shared_ptr<const Resource>> resources;
  for (uint32_t pid = 1; pid <= kFakeProcesses; ++pid) resources.push_back(ProcessResource(pid));
  Attributes user, system, major, minor;
  user.Set("cpu.mode", "user");
  system.Set("cpu.mode", "system");
  major.Set("system.paging.fault.type", "major");
  minor.Set("system.paging.fault.type", "minor");
  uint64_t now = RealtimeNs();
  size_t i = 0;
  for (auto _ : state) {
    const double t = static_cast<double>(now % 1000);
    const ObservedValue values[] = {{ObservedInstrument::kProcessCpuTime, &user, t, 0},
                                    {ObservedInstrument::kProcessCpuTime, &system, t, 0},
                                    {ObservedInstrument::kProcessMemoryUsage, nullptr, 1e8, 0},
                                    {ObservedInstrument::kProcessMemoryVirtual, nullptr, 2e9, 0},
                                    {ObservedInstrument::kProcessPagingFaults, &major, 3, 0},
                                    {ObservedInstrument::kProcessPagingFaults, &minor, t, 0},
                                    {ObservedInstrument::kProcessThreadCount, nullptr, 17, 0}};
    recorder.RecordObserved(resources[i], values, now);
    if (++i == resources.size()) {
      i = 0;
      now += 1'000'000'000;
    }
  }
  PerEntry(state, 1, "per_process");
}
BENCHMARK(BM_RecordObserved);

// ---- Cgroups ----------------------------------------------------------------

const FakeTree& FakeCgroups() {
  static const FakeTree tree([](const FakeTree& t) {
    const std::string v2 = "unified/kubepods/burstable/pod1/ctr";
    t.Write(v2 + "/memory.current", "104857600\n");
    t.Write(v2 + "/memory.max", "536870912\n");
    std::string stat;
    for (const char* key : {"anon",
                            "file",
                            "kernel",
                            "kernel_stack",
                            "pagetables",
                            "sec_pagetables",
                            "percpu",
                            "sock",
                            "vmalloc",
                            "shmem",
                            "zswap",
                            "zswapped",
                            "file_mapped",
                            "file_dirty",
                            "file_writeback",
                            "swapcached",
                            "anon_thp",
                            "file_thp",
                            "shmem_thp",
                            "inactive_anon",
                            "active_anon",
                            "inactive_file",
                            "active_file",
                            "unevictable",
                            "slab_reclaimable",
                            "slab_unreclaimable",
                            "slab",
                            "workingset_refault_anon",
                            "workingset_refault_file",
                            "workingset_activate_anon",
                            "workingset_activate_file",
                            "workingset_restore_anon",
                            "workingset_restore_file",
                            "workingset_nodereclaim",
                            "pgscan",
                            "pgsteal",
                            "pgscan_kswapd",
                            "pgscan_direct",
                            "pgsteal_kswapd",
                            "pgsteal_direct",
                            "pgfault",
                            "pgmajfault",
                            "pgrefill",
                            "pgactivate",
                            "pgdeactivate",
                            "pglazyfree",
                            "pglazyfreed",
                            "thp_fault_alloc",
                            "thp_collapse_alloc"}) {
      stat += std::string(key) + " 12345678\n";
    }
    t.Write(v2 + "/memory.stat", stat);
    t.Write(v2 + "/memory.events", "low 0\nhigh 0\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n");
    t.Write(v2 + "/cpu.stat",
            "usage_usec 7500000\nuser_usec 5000000\nsystem_usec 2500000\n"
            "core_sched.force_idle_usec 0\nnr_periods 1000\nnr_throttled 40\n"
            "throttled_usec 1200000\nnr_bursts 0\nburst_usec 0\n");
    const std::string v1 = "/docker/abc";
    t.Write("memory" + v1 + "/memory.usage_in_bytes", "256114688\n");
    t.Write("memory" + v1 + "/memory.limit_in_bytes", "9223372036854771712\n");
    std::string v1_stat;
    for (const char* key : {"cache",
                            "rss",
                            "rss_huge",
                            "shmem",
                            "mapped_file",
                            "dirty",
                            "writeback",
                            "swap",
                            "pgpgin",
                            "pgpgout",
                            "pgfault",
                            "pgmajfault",
                            "inactive_anon",
                            "active_anon",
                            "inactive_file",
                            "active_file",
                            "unevictable",
                            "hierarchical_memory_limit",
                            "hierarchical_memsw_limit",
                            "total_cache",
                            "total_rss",
                            "total_rss_huge",
                            "total_shmem",
                            "total_mapped_file",
                            "total_dirty",
                            "total_writeback",
                            "total_swap",
                            "total_pgpgin",
                            "total_pgpgout",
                            "total_pgfault",
                            "total_pgmajfault",
                            "total_inactive_anon",
                            "total_active_anon",
                            "total_inactive_file",
                            "total_active_file",
                            "total_unevictable"}) {
      v1_stat += std::string(key) + " 12345678\n";
    }
    t.Write("memory" + v1 + "/memory.stat", v1_stat);
    t.Write("memory" + v1 + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    t.Write("cpuacct" + v1 + "/cpuacct.usage", "9000000000\n");
    t.Write("cpuacct" + v1 + "/cpuacct.usage_user", "6000000000\n");
    t.Write("cpuacct" + v1 + "/cpuacct.usage_sys", "3000000000\n");
    t.Write("cpu" + v1 + "/cpu.stat",
            "nr_periods 8006\nnr_throttled 675\nthrottled_time 1921546352\n");
  });
  return tree;
}

// This process's own cgroup on this machine (v1 controllers under
// /sys/fs/cgroup/<controller>, else v2 at /sys/fs/cgroup).
CgroupLocation OwnCgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  CgroupLocation location;
  std::string unified, memory, cpu, cpuacct;
  while (std::getline(in, line)) {
    const size_t a = line.find(':');
    const size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controllers.empty()) unified = path;
    std::stringstream list(controllers);
    std::string c;
    while (std::getline(list, c, ',')) {
      if (c == "memory") memory = path;
      if (c == "cpu") cpu = path;
      if (c == "cpuacct") cpuacct = path;
    }
  }
  if (!memory.empty() && std::filesystem::exists("/sys/fs/cgroup/memory")) {
    location.version = CgroupVersion::kV1;
    location.memory = {"/sys/fs/cgroup/memory", memory};
    location.cpu = {"/sys/fs/cgroup/cpu", cpu};
    location.cpuacct = {"/sys/fs/cgroup/cpuacct", cpuacct};
  } else {
    location.version = CgroupVersion::kV2;
    location.unified = {"/sys/fs/cgroup", unified};
  }
  return location;
}

void BM_ReadCgroup(benchmark::State& state, int which) {
  CgroupLocation location;
  const std::string& root = FakeCgroups().root;
  if (which == 0) {
    location.version = CgroupVersion::kV2;
    location.unified = {root + "/unified", "/kubepods/burstable/pod1/ctr"};
  } else if (which == 1) {
    location.version = CgroupVersion::kV1;
    location.memory = {root + "/memory", "/docker/abc"};
    location.cpu = {root + "/cpu", "/docker/abc"};
    location.cpuacct = {root + "/cpuacct", "/docker/abc"};
  } else {
    location = OwnCgroup();
  }
  if (ReadCgroupUsage(location).status != ReadStatus::kOk) {
    state.SkipWithError("cgroup not readable here");
    return;
  }
  for (auto _ : state) {
    const CgroupUsage u = ReadCgroupUsage(location);
    benchmark::DoNotOptimize(u);
  }
  PerEntry(state, 1, "per_container");
}
BENCHMARK_CAPTURE(BM_ReadCgroup, v2fake, 0);
BENCHMARK_CAPTURE(BM_ReadCgroup, v1fake, 1);
BENCHMARK_CAPTURE(BM_ReadCgroup, own, 2);

}  // namespace
}  // namespace loupe

BENCHMARK_MAIN();
