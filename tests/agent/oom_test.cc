// OomReporter and its parts on fake cgroup and /proc trees: classification,
// cgroup lookup by inode, cgroup files, largest processes, renderings.
#include "agent/oom.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace loupe {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

class TempTree {
 public:
  explicit TempTree(const std::string& name)
      : root_("/tmp/loupe-oom-test-" + name + "-" + std::to_string(getpid())) {
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
  }
  ~TempTree() { std::filesystem::remove_all(root_); }
  const std::string& root() const { return root_; }
  std::string Dir(const std::string& relative) const {
    std::filesystem::create_directories(root_ + relative);
    return root_ + relative;
  }
  void Write(const std::string& relative, const std::string& content) const {
    std::filesystem::create_directories(std::filesystem::path(root_ + relative).parent_path());
    std::ofstream(root_ + relative) << content;
  }
  uint64_t Inode(const std::string& relative) const {
    struct stat st {};
    EXPECT_EQ(stat((root_ + relative).c_str(), &st), 0) << relative;
    return st.st_ino;
  }

 private:
  std::string root_;
};

// A fake process under <proc>/<pid>: comm, statm (resident pages) and cgroup.
void FakeProcess(const TempTree& proc, uint32_t pid, const std::string& comm,
                 uint64_t resident_pages, const std::string& cgroup_file = "") {
  const std::string dir = "/" + std::to_string(pid);
  proc.Write(dir + "/comm", comm + "\n");
  proc.Write(dir + "/statm", "9999 " + std::to_string(resident_pages) + " 10 1 0 500 0\n");
  if (!cgroup_file.empty()) proc.Write(dir + "/cgroup", cgroup_file);
}

// --- classification ---------------------------------------------------------

CgroupMemory V1(std::optional<uint64_t> limit, std::optional<uint64_t> usage,
                std::optional<uint64_t> peak, uint64_t failcnt) {
  CgroupMemory m;
  m.version = 1;
  m.path = "/job";
  m.limit_bytes = limit;
  m.unlimited = !limit;
  m.usage_bytes = usage;
  m.peak_bytes = peak;
  m.failcnt = failcnt;
  return m;
}

CgroupMemory V2(std::optional<uint64_t> limit, uint64_t usage, std::optional<uint64_t> peak,
                uint64_t oom_events) {
  CgroupMemory m;
  m.version = 2;
  m.path = "/job";
  m.limit_bytes = limit;
  m.unlimited = !limit;
  m.usage_bytes = usage;
  m.peak_bytes = peak;
  m.oom_events = oom_events;
  return m;
}

TEST(ClassifyOomTest, Table) {
  CgroupMemory limit_unreadable = V1(std::nullopt, 10 * kMiB, std::nullopt, 0);
  limit_unreadable.unlimited = false;
  struct Row {
    const char* name;
    OomKind kernel;
    std::optional<CgroupMemory> cgroup;
    OomClassification want;
  };
  const std::vector<Row> rows = {
      {"kernel found the cgroup", OomKind::kCgroup, std::nullopt,
       {OomKind::kCgroup, OomKindSource::kKernel}},
      {"kernel cgroup wins over files", OomKind::kCgroup, V2(std::nullopt, kMiB, std::nullopt, 0),
       {OomKind::kCgroup, OomKindSource::kKernel}},
      {"kernel global wins over sticky history", OomKind::kGlobal,
       V1(64 * kMiB, 64 * kMiB, 64 * kMiB, 9), {OomKind::kGlobal, OomKindSource::kKernel}},
      {"global: kernel says so, nothing read", OomKind::kGlobal, std::nullopt,
       {OomKind::kGlobal, OomKindSource::kKernel}},
      {"v1 usage at the limit", OomKind::kUnknown, V1(32 * kMiB, 32 * kMiB - 4096, 32 * kMiB, 0),
       {OomKind::kCgroup, OomKindSource::kCgroupFiles}},
      {"v1 peak at the limit, usage fell after the kill", OomKind::kUnknown,
       V1(32 * kMiB, 1 * kMiB, 32 * kMiB, 0), {OomKind::kCgroup, OomKindSource::kCgroupFiles}},
      {"v1 failcnt only", OomKind::kUnknown, V1(32 * kMiB, 1 * kMiB, std::nullopt, 3),
       {OomKind::kCgroup, OomKindSource::kCgroupFiles}},
      {"v2 peak at the limit", OomKind::kUnknown, V2(64 * kMiB, 2 * kMiB, 64 * kMiB, 0),
       {OomKind::kCgroup, OomKindSource::kCgroupFiles}},
      {"v2 oom event counted", OomKind::kUnknown, V2(64 * kMiB, 2 * kMiB, std::nullopt, 1),
       {OomKind::kCgroup, OomKindSource::kCgroupFiles}},
      {"global: limit far away", OomKind::kUnknown, V2(1024 * kMiB, 100 * kMiB, 200 * kMiB, 0),
       {OomKind::kGlobal, OomKindSource::kCgroupFiles}},
      {"global: no limit at all", OomKind::kUnknown, V1(std::nullopt, 900 * kMiB, 950 * kMiB, 0),
       {OomKind::kGlobal, OomKindSource::kCgroupFiles}},
      {"nothing known", OomKind::kUnknown, std::nullopt, {OomKind::kUnknown, OomKindSource::kNone}},
      {"limit file unreadable", OomKind::kUnknown, limit_unreadable,
       {OomKind::kUnknown, OomKindSource::kNone}},
  };
  for (const Row& row : rows) {
    EXPECT_EQ(ClassifyOom(row.kernel, row.cgroup), row.want) << row.name;
  }
}

TEST(ClassifyOomTest, LimitSlackIsOneMebibyte) {
  EXPECT_TRUE(V2(64 * kMiB, 63 * kMiB, std::nullopt, 0).LimitReached());
  EXPECT_FALSE(V2(64 * kMiB, 63 * kMiB - 1, std::nullopt, 0).LimitReached());
  EXPECT_TRUE(V2(64 * kMiB, 70 * kMiB, std::nullopt, 0).LimitReached());  // limit lowered
}

// --- cgroup files ------------------------------------------------------------

TEST(CgroupLookupTest, FindsTheDirectoryWhoseInodeIsTheId) {
  TempTree tree("lookup");
  tree.Dir("/kubepods/burstable/pod1234/abcdef");
  tree.Dir("/kubepods/besteffort");
  tree.Dir("/system.slice/nginx.service");
  const MemoryHierarchy h{1, tree.root()};
  EXPECT_EQ(FindCgroupById(h, tree.Inode("/kubepods/burstable/pod1234/abcdef")),
            "/kubepods/burstable/pod1234/abcdef");
  EXPECT_EQ(FindCgroupById(h, tree.Inode("/system.slice/nginx.service")),
            "/system.slice/nginx.service");
  EXPECT_EQ(FindCgroupById(h, tree.Inode("/kubepods")), "/kubepods");
  EXPECT_EQ(FindCgroupById(h, tree.Inode("")), "/");
  EXPECT_EQ(FindCgroupById(h, 0), std::nullopt);
  // A file's inode is not a cgroup.
  tree.Write("/kubepods/cgroup.procs", "1\n");
  EXPECT_EQ(FindCgroupById(h, tree.Inode("/kubepods/cgroup.procs")), std::nullopt);
}

TEST(CgroupLookupTest, FindsTheMemoryHierarchy) {
  TempTree hybrid("hier-v1");
  hybrid.Write("/memory/memory.limit_in_bytes", "9223372036854771712\n");
  hybrid.Write("/unified/cgroup.controllers", "hugetlb\n");
  EXPECT_EQ(FindMemoryHierarchy(hybrid.root()), (MemoryHierarchy{1, hybrid.root() + "/memory"}));

  TempTree v2("hier-v2");
  v2.Write("/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
  EXPECT_EQ(FindMemoryHierarchy(v2.root()), (MemoryHierarchy{2, v2.root()}));

  TempTree hybrid_v2("hier-unified");
  hybrid_v2.Write("/unified/cgroup.controllers", "cpu memory\n");
  EXPECT_EQ(FindMemoryHierarchy(hybrid_v2.root()),
            (MemoryHierarchy{2, hybrid_v2.root() + "/unified"}));

  TempTree none("hier-none");
  none.Write("/unified/cgroup.controllers", "hugetlb memory_recursiveprot\n");
  EXPECT_EQ(FindMemoryHierarchy(none.root()), std::nullopt);
}

TEST(CgroupFilesTest, ReadsV1Files) {
  TempTree tree("v1files");
  tree.Write("/job/memory.limit_in_bytes", "33554432\n");
  tree.Write("/job/memory.usage_in_bytes", "1048576\n");
  tree.Write("/job/memory.max_usage_in_bytes", "33554432\n");
  tree.Write("/job/memory.failcnt", "57\n");
  tree.Write("/job/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  tree.Write("/free/memory.limit_in_bytes", "9223372036854771712\n");
  const MemoryHierarchy h{1, tree.root()};
  CgroupMemory job = ReadCgroupMemory(h, "/job");
  EXPECT_EQ(job.version, 1);
  EXPECT_EQ(job.path, "/job");
  EXPECT_EQ(job.limit_bytes, 32 * kMiB);
  EXPECT_FALSE(job.unlimited);
  EXPECT_EQ(job.usage_bytes, kMiB);
  EXPECT_EQ(job.peak_bytes, 32 * kMiB);
  EXPECT_EQ(job.failcnt, 57u);
  EXPECT_EQ(job.oom_events, std::nullopt);
  EXPECT_EQ(job.oom_kill_events, 1u);
  EXPECT_TRUE(job.LimitReached());

  CgroupMemory free = ReadCgroupMemory(h, "/free");
  EXPECT_EQ(free.limit_bytes, std::nullopt);
  EXPECT_TRUE(free.unlimited);
  EXPECT_EQ(free.usage_bytes, std::nullopt);  // no file
}

TEST(CgroupFilesTest, ReadsV2Files) {
  TempTree tree("v2files");
  tree.Write("/app/memory.max", "67108864\n");
  tree.Write("/app/memory.current", "2097152\n");
  tree.Write("/app/memory.peak", "67108864\n");
  tree.Write("/app/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n");
  tree.Write("/open/memory.max", "max\n");
  const MemoryHierarchy h{2, tree.root()};
  CgroupMemory app = ReadCgroupMemory(h, "/app");
  EXPECT_EQ(app.limit_bytes, 64 * kMiB);
  EXPECT_EQ(app.usage_bytes, 2 * kMiB);
  EXPECT_EQ(app.peak_bytes, 64 * kMiB);
  EXPECT_EQ(app.oom_events, 1u);
  EXPECT_EQ(app.oom_kill_events, 1u);
  EXPECT_EQ(app.failcnt, std::nullopt);
  CgroupMemory open = ReadCgroupMemory(h, "/open");
  EXPECT_TRUE(open.unlimited);
  EXPECT_EQ(open.limit_bytes, std::nullopt);
}

TEST(CgroupFilesTest, ReadsTheMemoryCgroupOfAProcess) {
  TempTree proc("proccg");
  proc.Write("/10/cgroup",
             "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice\n");
  proc.Write("/11/cgroup", "0::/kubepods.slice/pod.slice/cri-containerd-1.scope\n");
  EXPECT_EQ(ReadProcessMemoryCgroup(proc.root(), 10, 1), "/process_api/abc");
  EXPECT_EQ(ReadProcessMemoryCgroup(proc.root(), 10, 2), "/user.slice");
  EXPECT_EQ(ReadProcessMemoryCgroup(proc.root(), 11, 2),
            "/kubepods.slice/pod.slice/cri-containerd-1.scope");
  EXPECT_EQ(ReadProcessMemoryCgroup(proc.root(), 11, 1), std::nullopt);
  EXPECT_EQ(ReadProcessMemoryCgroup(proc.root(), 12, 2), std::nullopt);  // gone
}

TEST(LargestProcessesTest, PicksTheLargestInTheCgroupAndBelow) {
  TempTree cg("top-cg");
  TempTree proc("top-proc");
  cg.Write("/pod/cgroup.procs", "100\n101\n");
  cg.Write("/pod/app/cgroup.procs", "200\n201\n202\n");
  cg.Write("/pod/sidecar/cgroup.procs", "300\n999\n");  // 999 has exited
  cg.Write("/other/cgroup.procs", "400\n");
  FakeProcess(proc, 100, "pause", 10);
  FakeProcess(proc, 101, "init", 100);
  FakeProcess(proc, 200, "java", 50000);
  FakeProcess(proc, 201, "java", 20000);
  FakeProcess(proc, 202, "sh", 200);
  FakeProcess(proc, 300, "envoy", 20000);
  FakeProcess(proc, 400, "huge", 900000);
  const MemoryHierarchy h{2, cg.root()};
  const std::vector<ProcessRss> top = LargestProcesses(h, "/pod", proc.root(), 4096, 3);
  const std::vector<ProcessRss> want = {
      {200, "java", 50000ull * 4096},
      {201, "java", 20000ull * 4096},  // ties: lower pid first
      {300, "envoy", 20000ull * 4096},
  };
  EXPECT_EQ(top, want);
  EXPECT_EQ(LargestProcesses(h, "/pod", proc.root(), 4096, 10).size(), 6u);
  EXPECT_TRUE(LargestProcesses(h, "/missing", proc.root(), 4096, 5).empty());
}

// --- renderings --------------------------------------------------------------

OomKill SampleCgroupKill() {
  OomKill k;
  k.ts_ns = 5'000'000'000;
  k.time_unix_ns = 1'700'000'000'123'456'789;
  k.victim_pid = 1234;
  k.victim_comm = "nginx";
  k.victim_uid = 101;
  k.total_vm_kb = 80000;
  k.anon_rss_kb = 61542;  // 60.1 MiB
  k.file_rss_kb = 1229;
  k.shmem_rss_kb = 0;
  k.pgtables_kb = 200;
  k.oom_score_adj = -998;
  k.kind = OomKind::kCgroup;
  k.kind_source = OomKindSource::kKernel;
  k.trigger_pid = 1234;
  k.trigger_tid = 1236;
  k.trigger_comm = "nginx";
  k.oom_memcg_id = 4711;
  k.trigger_memcg_id = 4711;
  k.kernel_flags = LOUPE_OOM_F_TP_DETAILS | LOUPE_OOM_F_BY_LIMIT;
  k.kernel_memcg_usage_bytes = 64 * kMiB;
  k.kernel_memcg_limit_bytes = 64 * kMiB;
  k.victim_cgroup = "/kubepods/pod1/c1";
  CgroupMemory c;
  c.version = 2;
  c.path = "/kubepods/pod1/c1";
  c.limit_bytes = 64 * kMiB;
  c.usage_bytes = 3 * kMiB;
  c.peak_bytes = 64 * kMiB;
  c.oom_events = 1;
  c.oom_kill_events = 1;
  k.cgroup = c;
  k.top_processes = {{1240, "nginx", 2 * kMiB}, {1, "tini", 512 * 1024}};
  return k;
}

TEST(OomRenderTest, FormatBytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(64 * kMiB), "64.0 MiB");
  EXPECT_EQ(FormatBytes(3ull << 30), "3.0 GiB");
}

TEST(OomRenderTest, CgroupKillJson) {
  EXPECT_EQ(
      OomKillJson(SampleCgroupKill()),
      R"({"time_unix_nano":1700000000123456789,"kind":"cgroup","kind_source":"kernel",)"
      R"("victim":{"pid":1234,"comm":"nginx","uid":101,"oom_score_adj":-998,)"
      R"("total_vm_kb":80000,"anon_rss_kb":61542,"file_rss_kb":1229,"shmem_rss_kb":0,)"
      R"("pgtables_kb":200,"cgroup":"/kubepods/pod1/c1"},)"
      R"("trigger":{"pid":1234,"tid":1236,"comm":"nginx"},)"
      R"("kernel":{"oom_memcg_id":4711,"trigger_memcg_id":4711,"memcg_usage_bytes":67108864,)"
      R"("memcg_limit_bytes":67108864,"flags":["tp_details","by_limit"]},)"
      R"("cgroup":{"path":"/kubepods/pod1/c1","version":2,"limit_bytes":67108864,)"
      R"("unlimited":false,"usage_bytes":3145728,"peak_bytes":67108864,"failcnt":null,)"
      R"("oom_events":1,"oom_kill_events":1},)"
      R"("top_processes":[{"pid":1240,"comm":"nginx","rss_bytes":2097152},)"
      R"({"pid":1,"comm":"tini","rss_bytes":524288}],)"
      R"("service_name":null,"container":null,"memory_trend":[],"requests_in_flight":null})");
}

TEST(OomRenderTest, CgroupKillConsoleLine) {
  EXPECT_EQ(OomKillConsoleLine(SampleCgroupKill()),
            "OOMKILL nginx[1234] cgroup /kubepods/pod1/c1 limit 64.0 MiB usage 64.0 MiB "
            "peak 64.0 MiB rss anon 60.1 MiB file 1.2 MiB shmem 0 B oom_score_adj -998 "
            "trigger nginx[1234] top nginx[1240] 2.0 MiB, tini[1] 512.0 KiB");
}

OomKill SampleGlobalKill() {
  OomKill k;
  k.time_unix_ns = 42;
  k.victim_pid = 77;
  k.victim_comm = "java\"x";  // escaped in JSON
  k.anon_rss_kb = 4 * 1024 * 1024;
  k.kind = OomKind::kGlobal;
  k.kind_source = OomKindSource::kKernel;
  k.trigger_pid = 9;
  k.trigger_tid = 9;
  k.trigger_comm = "kworker/0:1";
  k.kernel_flags = LOUPE_OOM_F_TP_DETAILS;
  return k;
}

TEST(OomRenderTest, GlobalKillJsonAndConsoleLine) {
  EXPECT_EQ(OomKillJson(SampleGlobalKill()),
            R"({"time_unix_nano":42,"kind":"global","kind_source":"kernel",)"
            R"("victim":{"pid":77,"comm":"java\"x","uid":0,"oom_score_adj":0,)"
            R"("total_vm_kb":0,"anon_rss_kb":4194304,"file_rss_kb":0,"shmem_rss_kb":0,)"
            R"("pgtables_kb":0,"cgroup":null},)"
            R"("trigger":{"pid":9,"tid":9,"comm":"kworker/0:1"},)"
            R"("kernel":{"oom_memcg_id":0,"trigger_memcg_id":0,"memcg_usage_bytes":0,)"
            R"("memcg_limit_bytes":0,"flags":["tp_details"]},"cgroup":null,"top_processes":[],)"
            R"("service_name":null,"container":null,"memory_trend":[],"requests_in_flight":null})");
  EXPECT_EQ(OomKillConsoleLine(SampleGlobalKill()),
            "OOMKILL java\"x[77] global rss anon 4.0 GiB file 0 B shmem 0 B oom_score_adj 0 "
            "trigger kworker/0:1[9]");
}

TEST(OomRenderTest, ConsoleLineFallsBackToTheCgroupFiles) {
  OomKill k = SampleGlobalKill();
  k.victim_comm = "";
  k.kind = OomKind::kCgroup;
  k.kind_source = OomKindSource::kCgroupFiles;
  CgroupMemory c;
  c.version = 1;
  c.path = "/batch";
  c.unlimited = true;
  c.usage_bytes = 10 * kMiB;
  k.cgroup = c;
  EXPECT_EQ(OomKillConsoleLine(k),
            "OOMKILL ?[77] cgroup /batch limit none usage 10.0 MiB rss anon 4.0 GiB file 0 B "
            "shmem 0 B oom_score_adj 0 trigger kworker/0:1[9]");
}

// --- the reporter ------------------------------------------------------------

OomEvent SampleEvent() {
  OomEvent ev;
  ev.header.type = LOUPE_EV_OOM_KILL;
  ev.header.ts_ns = 1'000;
  ev.header.tgid = 500;
  ev.header.tid = 501;
  ev.victim_pid = 500;
  ev.victim_comm = "leaky";
  ev.anon_rss_kb = 30000;
  ev.trigger_comm = "leaky";
  ev.flags = LOUPE_OOM_F_TP_DETAILS | LOUPE_OOM_F_MEMCG_V1 | LOUPE_OOM_F_BY_OOM_LOCK;
  return ev;
}

TEST(OomReporterTest, KernelCgroupOomWithTheVictimGone) {
  TempTree cg("rep-cg");
  TempTree proc("rep-proc");
  cg.Write("/memory/memory.limit_in_bytes", "9223372036854771712\n");
  cg.Write("/memory/jobs/j1/memory.limit_in_bytes", "33554432\n");
  cg.Write("/memory/jobs/j1/memory.usage_in_bytes", "524288\n");
  cg.Write("/memory/jobs/j1/memory.max_usage_in_bytes", "33554432\n");
  cg.Write("/memory/jobs/j1/memory.failcnt", "12\n");
  cg.Write("/memory/jobs/j1/cgroup.procs", "600\n");
  FakeProcess(proc, 600, "helper", 128);

  OomEvent ev = SampleEvent();
  ev.kind = OomKind::kCgroup;
  ev.oom_memcg_id = cg.Inode("/memory/jobs/j1");
  ev.trigger_memcg_id = ev.oom_memcg_id;
  ev.memcg_usage_pages = 8190;
  ev.memcg_limit_pages = 8192;

  OomReporterOptions options;
  options.cgroup_root = cg.root();
  options.proc_root = proc.root();
  options.page_size = 4096;
  options.realtime_offset_ns = 1'000'000;
  options.recent_capacity = 2;
  OomReporter reporter(options);
  const OomKill k = reporter.Report(ev);
  EXPECT_EQ(k.time_unix_ns, 1'001'000u);
  EXPECT_EQ(k.kind, OomKind::kCgroup);
  EXPECT_EQ(k.kind_source, OomKindSource::kKernel);
  EXPECT_EQ(k.victim_cgroup, "");  // gone before it could be read
  ASSERT_TRUE(k.cgroup.has_value());
  EXPECT_EQ(k.cgroup->path, "/jobs/j1");
  EXPECT_EQ(k.cgroup->limit_bytes, 32 * kMiB);
  EXPECT_EQ(k.cgroup->peak_bytes, 32 * kMiB);
  EXPECT_EQ(k.kernel_memcg_limit_bytes, 32 * kMiB);
  EXPECT_EQ(k.kernel_memcg_usage_bytes, 8190u * 4096);
  EXPECT_EQ(k.top_processes, (std::vector<ProcessRss>{{600, "helper", 128 * 4096}}));
  EXPECT_EQ(k.trigger_pid, 500u);
  EXPECT_EQ(k.trigger_tid, 501u);

  // The ring keeps the last two, oldest first.
  ev.victim_pid = 501;
  reporter.Report(ev);
  ev.victim_pid = 502;
  reporter.Report(ev);
  const std::vector<OomKill> recent = reporter.Recent();
  ASSERT_EQ(recent.size(), 2u);
  EXPECT_EQ(recent[0].victim_pid, 501u);
  EXPECT_EQ(recent[1].victim_pid, 502u);
  EXPECT_EQ(reporter.total(), 3u);
}

TEST(OomReporterTest, UndecidedKernelFallsBackToTheVictimsAncestorAtItsLimit) {
  TempTree cg("rep2-cg");
  TempTree proc("rep2-proc");
  cg.Write("/cgroup.controllers", "cpu memory\n");
  cg.Write("/pod/memory.max", "134217728\n");
  cg.Write("/pod/memory.current", "134000000\n");
  cg.Write("/pod/app/memory.max", "max\n");
  cg.Write("/pod/app/memory.current", "120000000\n");
  cg.Write("/pod/app/cgroup.procs", "700\n701\n");
  // Still there (a zombie not yet reaped): its cgroup can be read.
  FakeProcess(proc, 700, "leaky", 30000, "0::/pod/app\n");
  FakeProcess(proc, 701, "worker", 20);

  OomEvent ev = SampleEvent();
  ev.victim_pid = 700;
  ev.kind = OomKind::kUnknown;
  OomReporterOptions options;
  options.cgroup_root = cg.root();
  options.proc_root = proc.root();
  options.page_size = 4096;
  OomReporter reporter(options);
  const OomKill k = reporter.Report(ev);
  EXPECT_EQ(k.victim_cgroup, "/pod/app");
  ASSERT_TRUE(k.cgroup.has_value());
  EXPECT_EQ(k.cgroup->path, "/pod");
  EXPECT_EQ(k.kind, OomKind::kCgroup);
  EXPECT_EQ(k.kind_source, OomKindSource::kCgroupFiles);
  EXPECT_EQ(k.kernel_memcg_limit_bytes, 0u);
  // The victim is not among the largest processes left.
  EXPECT_EQ(k.top_processes, (std::vector<ProcessRss>{{701, "worker", 20 * 4096}}));

  // A recycled pid (another comm) is not the victim.
  ev.victim_comm = "other";
  EXPECT_EQ(reporter.Report(ev).victim_cgroup, "");
}

TEST(OomReporterTest, KernelCommMissingIsTakenFromProc) {
  TempTree cg("rep3-cg");
  TempTree proc("rep3-proc");
  cg.Write("/cgroup.controllers", "memory\n");
  cg.Write("/svc/memory.max", "max\n");
  FakeProcess(proc, 800, "postgres", 5, "0::/svc\n");
  OomEvent ev = SampleEvent();
  ev.victim_pid = 800;
  ev.victim_comm = "";
  ev.kind = OomKind::kGlobal;
  OomReporterOptions options;
  options.cgroup_root = cg.root();
  options.proc_root = proc.root();
  options.page_size = 4096;
  OomReporter reporter(options);
  const OomKill k = reporter.Report(ev);
  EXPECT_EQ(k.victim_comm, "postgres");
  EXPECT_EQ(k.victim_cgroup, "/svc");
  EXPECT_EQ(k.kind, OomKind::kGlobal);
  EXPECT_EQ(k.kind_source, OomKindSource::kKernel);
  ASSERT_TRUE(k.cgroup.has_value());
  EXPECT_TRUE(k.cgroup->unlimited);
}

TEST(OomReporterTest, ReplayReadsNothingFromTheHost) {
  OomReporterOptions options;
  options.read_host_facts = false;
  options.realtime_offset_ns = 0;
  options.page_size = 4096;
  OomReporter reporter(options);
  OomEvent ev = SampleEvent();
  ev.victim_pid = static_cast<uint32_t>(getpid());  // exists, but must not be read
  ev.victim_comm = "";
  const OomKill k = reporter.Report(ev);
  EXPECT_EQ(k.victim_comm, "");
  EXPECT_EQ(k.cgroup, std::nullopt);
  EXPECT_EQ(k.kind, OomKind::kUnknown);
  EXPECT_EQ(k.kind_source, OomKindSource::kNone);
}

}  // namespace
}  // namespace loupe
