#include "agent/oom.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "agent/process_info.h"
#include "exporters/jsonl_exporter.h"

namespace loupe {

namespace {

// The small files read here (limits, counters, cgroup.procs of one cgroup,
// /proc/PID/cgroup) fit easily; a larger one is cut.
constexpr size_t kMaxFileBytes = 1 << 20;
// cgroups below the OOM cgroup whose processes are read.
constexpr size_t kMaxProcessCgroups = kMaxCgroupWalkDirs / 20;
// v1 reports "no limit" as PAGE_COUNTER_MAX pages in bytes (LONG_MAX
// rounded down to a page, 9223372036854771712 with 4 KiB pages).
constexpr uint64_t kV1UnlimitedAtLeast = 1ull << 62;

bool ReadSmallFile(const std::string& path, std::string* out) {
  return ReadBoundedFile(path, kMaxFileBytes, out);
}

std::optional<uint64_t> ParseU64(absl::string_view text) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) return std::nullopt;
  return value;
}

std::optional<uint64_t> ReadU64File(const std::string& path) {
  std::string text;
  if (!ReadSmallFile(path, &text)) return std::nullopt;
  return ParseU64(text);
}

// The value of `key` in a "key value" per line file (memory.events,
// memory.oom_control).
std::optional<uint64_t> ReadKeyedValue(const std::string& path, absl::string_view key) {
  std::string text;
  if (!ReadSmallFile(path, &text)) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    if (kv.first == key) return ParseU64(kv.second);
  }
  return std::nullopt;
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// `relative` is "/" or "/a/b".
std::string JoinCgroup(const std::string& root, const std::string& relative) {
  if (relative.empty() || relative == "/") return root;
  return root + relative;
}

std::string ParentCgroup(const std::string& relative) {
  const size_t slash = relative.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return relative.substr(0, slash);
}

bool ControllersListMemory(const std::string& path) {
  std::string text;
  if (!ReadSmallFile(path, &text)) return false;
  for (absl::string_view word : absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (word == "memory") return true;
  }
  return false;
}

// Subdirectories of `dir` (names), without following symlinks.
std::vector<std::string> Subdirectories(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* entry = readdir(d)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (entry->d_type == DT_DIR) {
      out.emplace_back(name);
    } else if (entry->d_type == DT_UNKNOWN) {
      struct stat st {};
      if (fstatat(dirfd(d), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        out.emplace_back(name);
      }
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());  // a stable walk order
  return out;
}

std::optional<uint64_t> InodeOf(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::string ReadComm(const std::string& proc_root, uint32_t pid) {
  std::string comm;
  if (!ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/comm"), &comm)) return "";
  while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
  return comm;
}

// Debian's abseil has its own string_view, which StrCat takes.
absl::string_view AbslView(std::string_view text) { return {text.data(), text.size()}; }

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void AppendKey(std::string& out, std::string_view key) {
  AppendJsonString(out, key);
  out.push_back(':');
}

void AppendOptional(std::string& out, const std::optional<uint64_t>& value) {
  if (value) {
    absl::StrAppend(&out, *value);
  } else {
    out.append("null");
  }
}

}  // namespace

std::optional<MemoryHierarchy> FindMemoryHierarchy(const std::string& cgroup_root) {
  if (IsFile(cgroup_root + "/memory/memory.limit_in_bytes")) {
    return MemoryHierarchy{1, cgroup_root + "/memory"};
  }
  if (IsFile(cgroup_root + "/memory.limit_in_bytes")) return MemoryHierarchy{1, cgroup_root};
  for (const std::string& candidate : {cgroup_root, cgroup_root + "/unified"}) {
    if (ControllersListMemory(candidate + "/cgroup.controllers")) {
      return MemoryHierarchy{2, candidate};
    }
  }
  return std::nullopt;
}

std::optional<std::string> FindCgroupById(const MemoryHierarchy& hierarchy, uint64_t id) {
  if (id == 0) return std::nullopt;
  if (InodeOf(hierarchy.root) == id) return std::string("/");
  // Breadth first: OOM cgroups (containers, services) sit a few levels down.
  std::deque<std::pair<std::string, int>> queue = {{"", 0}};
  size_t visited = 0;
  while (!queue.empty() && visited < kMaxCgroupWalkDirs) {
    auto [relative, depth] = std::move(queue.front());
    queue.pop_front();
    if (depth >= kMaxCgroupDepth) continue;
    for (const std::string& name : Subdirectories(hierarchy.root + relative)) {
      if (++visited > kMaxCgroupWalkDirs) break;
      std::string child = relative + "/" + name;
      if (InodeOf(hierarchy.root + child) == id) return child;
      queue.emplace_back(std::move(child), depth + 1);
    }
  }
  return std::nullopt;
}

std::optional<std::string> ReadProcessMemoryCgroup(const std::string& proc_root, uint32_t pid,
                                                   int version) {
  std::string text;
  if (!ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/cgroup"), &text)) return std::nullopt;
  // "hierarchy-id:controller,list:/path" per line (cgroups(7)); v2's
  // line is "0::/path".
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3 || parts[2].empty()) continue;
    bool match = false;
    if (version == 2) {
      match = parts[0] == "0" && parts[1].empty();
    } else {
      for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
        if (controller == "memory") match = true;
      }
    }
    if (match) return std::string(parts[2]);
  }
  return std::nullopt;
}

bool CgroupMemory::LimitReached() const {
  if (oom_events && *oom_events > 0) return true;
  if (!limit_bytes) return false;
  const auto near = [&](const std::optional<uint64_t>& v) {
    return v && *v + kOomLimitSlackBytes >= *limit_bytes;
  };
  return near(usage_bytes) || near(peak_bytes) || (failcnt && *failcnt > 0);
}

CgroupMemory ReadCgroupMemory(const MemoryHierarchy& hierarchy, const std::string& path) {
  CgroupMemory m;
  m.version = hierarchy.version;
  m.path = path.empty() ? "/" : path;
  const std::string dir = JoinCgroup(hierarchy.root, path) + "/";
  if (hierarchy.version == 1) {
    m.limit_bytes = ReadU64File(dir + "memory.limit_in_bytes");
    if (m.limit_bytes && *m.limit_bytes >= kV1UnlimitedAtLeast) {
      m.limit_bytes.reset();
      m.unlimited = true;
    }
    m.usage_bytes = ReadU64File(dir + "memory.usage_in_bytes");
    m.peak_bytes = ReadU64File(dir + "memory.max_usage_in_bytes");
    m.failcnt = ReadU64File(dir + "memory.failcnt");
    m.oom_kill_events = ReadKeyedValue(dir + "memory.oom_control", "oom_kill");
  } else {
    std::string max;
    if (ReadSmallFile(dir + "memory.max", &max)) {
      if (absl::StripAsciiWhitespace(max) == "max") {
        m.unlimited = true;
      } else {
        m.limit_bytes = ParseU64(max);
      }
    }
    m.usage_bytes = ReadU64File(dir + "memory.current");
    m.peak_bytes = ReadU64File(dir + "memory.peak");
    m.oom_events = ReadKeyedValue(dir + "memory.events", "oom");
    m.oom_kill_events = ReadKeyedValue(dir + "memory.events", "oom_kill");
  }
  return m;
}

std::vector<ProcessRss> LargestProcesses(const MemoryHierarchy& hierarchy,
                                         const std::string& path, const std::string& proc_root,
                                         uint64_t page_size, size_t count) {
  std::vector<uint32_t> pids;
  std::deque<std::string> cgroups = {path.empty() || path == "/" ? std::string() : path};
  size_t cgroups_read = 0;
  while (!cgroups.empty() && cgroups_read < kMaxProcessCgroups && pids.size() < kMaxOomProcesses) {
    const std::string relative = std::move(cgroups.front());
    cgroups.pop_front();
    ++cgroups_read;
    const std::string dir = hierarchy.root + relative;
    std::string procs;
    if (ReadSmallFile(dir + "/cgroup.procs", &procs)) {
      for (absl::string_view line : absl::StrSplit(procs, '\n', absl::SkipEmpty())) {
        uint32_t pid = 0;
        if (absl::SimpleAtoi(line, &pid) && pid != 0) pids.push_back(pid);
        if (pids.size() >= kMaxOomProcesses) break;
      }
    }
    for (const std::string& name : Subdirectories(dir)) cgroups.push_back(relative + "/" + name);
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());

  std::vector<ProcessRss> out;
  for (uint32_t pid : pids) {
    std::string statm;
    if (!ReadSmallFile(absl::StrCat(proc_root, "/", pid, "/statm"), &statm)) continue;
    // "size resident shared text lib data dt", in pages (proc(5)).
    std::vector<absl::string_view> fields =
        absl::StrSplit(statm, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    uint64_t resident = 0;
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &resident)) continue;
    out.push_back(ProcessRss{pid, ReadComm(proc_root, pid), resident * page_size});
  }
  const size_t keep = std::min(count, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(),
                    [](const ProcessRss& a, const ProcessRss& b) {
                      if (a.rss_bytes != b.rss_bytes) return a.rss_bytes > b.rss_bytes;
                      return a.pid < b.pid;
                    });
  out.resize(keep);
  return out;
}

std::string_view OomKindSourceName(OomKindSource source) {
  switch (source) {
    case OomKindSource::kKernel:
      return "kernel";
    case OomKindSource::kCgroupFiles:
      return "cgroup_files";
    case OomKindSource::kNone:
      break;
  }
  return "none";
}

OomClassification ClassifyOom(OomKind kernel_kind, const std::optional<CgroupMemory>& cgroup) {
  if (kernel_kind == OomKind::kCgroup) return {OomKind::kCgroup, OomKindSource::kKernel};
  if (kernel_kind == OomKind::kGlobal) return {OomKind::kGlobal, OomKindSource::kKernel};
  if (!cgroup) return {OomKind::kUnknown, OomKindSource::kNone};
  if (cgroup->LimitReached()) return {OomKind::kCgroup, OomKindSource::kCgroupFiles};
  // The limit is known to be absent or not reached; a cgroup whose limit
  // file could not be read says nothing.
  if (cgroup->unlimited || cgroup->limit_bytes) {
    return {OomKind::kGlobal, OomKindSource::kCgroupFiles};
  }
  return {OomKind::kUnknown, OomKindSource::kNone};
}

std::vector<std::string_view> OomFlagNames(uint8_t flags) {
  static constexpr std::pair<uint8_t, std::string_view> kNames[] = {
      {LOUPE_OOM_F_TP_DETAILS, "tp_details"},   {LOUPE_OOM_F_MEMCG_V1, "memcg_v1"},
      {LOUPE_OOM_F_BY_OOM_LOCK, "by_oom_lock"}, {LOUPE_OOM_F_BY_LIMIT, "by_limit"},
      {LOUPE_OOM_F_REMOTE_CHARGE, "remote_charge"},
  };
  std::vector<std::string_view> out;
  for (const auto& [bit, name] : kNames) {
    if (flags & bit) out.push_back(name);
  }
  return out;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]);
  return buf;
}

std::string OomKillJson(const OomKill& k) {
  std::string out = "{";
  AppendKey(out, "time_unix_nano");
  absl::StrAppend(&out, k.time_unix_ns, ",");
  AppendKey(out, "kind");
  AppendJsonString(out, OomKindName(k.kind));
  out.push_back(',');
  AppendKey(out, "kind_source");
  AppendJsonString(out, OomKindSourceName(k.kind_source));

  out.append(",\"victim\":{");
  AppendKey(out, "pid");
  absl::StrAppend(&out, k.victim_pid, ",");
  AppendKey(out, "comm");
  AppendJsonString(out, k.victim_comm);
  absl::StrAppend(&out, ",\"uid\":", k.victim_uid, ",\"oom_score_adj\":", k.oom_score_adj,
                  ",\"total_vm_kb\":", k.total_vm_kb, ",\"anon_rss_kb\":", k.anon_rss_kb,
                  ",\"file_rss_kb\":", k.file_rss_kb, ",\"shmem_rss_kb\":", k.shmem_rss_kb,
                  ",\"pgtables_kb\":", k.pgtables_kb, ",");
  AppendKey(out, "cgroup");
  if (k.victim_cgroup.empty()) {
    out.append("null");
  } else {
    AppendJsonString(out, k.victim_cgroup);
  }

  absl::StrAppend(&out, "},\"trigger\":{\"pid\":", k.trigger_pid, ",\"tid\":", k.trigger_tid,
                  ",");
  AppendKey(out, "comm");
  AppendJsonString(out, k.trigger_comm);

  absl::StrAppend(&out, "},\"kernel\":{\"oom_memcg_id\":", k.oom_memcg_id,
                  ",\"trigger_memcg_id\":", k.trigger_memcg_id,
                  ",\"memcg_usage_bytes\":", k.kernel_memcg_usage_bytes,
                  ",\"memcg_limit_bytes\":", k.kernel_memcg_limit_bytes, ",\"flags\":[");
  bool first = true;
  for (std::string_view name : OomFlagNames(k.kernel_flags)) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(out, name);
  }
  out.append("]},");

  AppendKey(out, "cgroup");
  if (!k.cgroup) {
    out.append("null");
  } else {
    const CgroupMemory& c = *k.cgroup;
    out.push_back('{');
    AppendKey(out, "path");
    AppendJsonString(out, c.path);
    absl::StrAppend(&out, ",\"version\":", c.version, ",\"limit_bytes\":");
    AppendOptional(out, c.limit_bytes);
    absl::StrAppend(&out, ",\"unlimited\":", c.unlimited ? "true" : "false", ",\"usage_bytes\":");
    AppendOptional(out, c.usage_bytes);
    out.append(",\"peak_bytes\":");
    AppendOptional(out, c.peak_bytes);
    out.append(",\"failcnt\":");
    AppendOptional(out, c.failcnt);
    out.append(",\"oom_events\":");
    AppendOptional(out, c.oom_events);
    out.append(",\"oom_kill_events\":");
    AppendOptional(out, c.oom_kill_events);
    out.push_back('}');
  }

  out.append(",\"top_processes\":[");
  first = true;
  for (const ProcessRss& p : k.top_processes) {
    if (!first) out.push_back(',');
    first = false;
    absl::StrAppend(&out, "{\"pid\":", p.pid, ",");
    AppendKey(out, "comm");
    AppendJsonString(out, p.comm);
    absl::StrAppend(&out, ",\"rss_bytes\":", p.rss_bytes, "}");
  }
  out.append("],");
  const auto string_or_null = [&out](const std::string& value) {
    if (value.empty()) {
      out.append("null");
    } else {
      AppendJsonString(out, value);
    }
  };
  AppendKey(out, "service_name");
  string_or_null(k.service_name);
  out.push_back(',');
  AppendKey(out, "container");
  if (k.container_id.empty()) {
    out.append("null");
  } else {
    out.push_back('{');
    const std::pair<std::string_view, const std::string*> fields[] = {
        {"id", &k.container_id},
        {"k8s_namespace_name", &k.k8s_namespace},
        {"k8s_pod_name", &k.k8s_pod},
        {"k8s_container_name", &k.k8s_container},
        {"k8s_workload_kind", &k.k8s_workload_kind},
        {"k8s_workload", &k.k8s_workload},
    };
    first = true;
    for (const auto& [key, value] : fields) {
      if (!first) out.push_back(',');
      first = false;
      AppendKey(out, key);
      string_or_null(*value);
    }
    out.push_back('}');
  }
  out.append(",\"memory_trend\":[");
  first = true;
  for (const MemorySample& m : k.memory_trend) {
    if (!first) out.push_back(',');
    first = false;
    absl::StrAppend(&out, "{\"time_unix_nano\":", m.time_unix_ns,
                    ",\"usage_bytes\":", m.usage_bytes, ",\"working_set_bytes\":");
    AppendOptional(out, m.working_set_bytes);
    out.append(",\"limit_bytes\":");
    AppendOptional(out, m.limit_bytes);
    out.push_back('}');
  }
  out.append("],\"requests_in_flight\":");
  if (k.exit_seen) {
    absl::StrAppend(&out, k.requests_in_flight);
  } else {
    out.append("null");
  }
  out.push_back('}');
  return out;
}

LogRecord OomKillLogRecord(const OomKill& k, std::shared_ptr<const Resource> resource,
                           uint64_t observed_unix_ns) {
  LogRecord r;
  r.time_unix_ns = k.time_unix_ns;
  r.observed_time_unix_ns = observed_unix_ns;
  r.severity = Severity::kWarn;
  r.severity_text = "WARN";
  r.event_name = "loupe.oom_kill";
  r.body = OomKillConsoleLine(k);
  r.resource = std::move(resource);
  Attributes& a = r.attributes;
  const auto set_int = [&a](std::string_view key, uint64_t value) {
    a.Set(key, static_cast<int64_t>(value));
  };
  const auto set_optional = [&](std::string_view key, const std::optional<uint64_t>& value) {
    if (value) set_int(key, *value);
  };
  const auto set_string = [&a](std::string_view key, const std::string& value) {
    if (!value.empty()) a.Set(key, value);
  };
  set_int("process.pid", k.victim_pid);
  set_string("process.executable.name", k.victim_comm);
  set_int("process.user.id", k.victim_uid);
  a.Set("loupe.oom.kind", std::string(OomKindName(k.kind)));
  a.Set("loupe.oom.kind_source", std::string(OomKindSourceName(k.kind_source)));
  a.Set("loupe.oom.score_adj", static_cast<int64_t>(k.oom_score_adj));
  set_int("loupe.oom.total_vm_bytes", k.total_vm_kb * 1024);
  set_int("loupe.oom.anon_rss_bytes", k.anon_rss_kb * 1024);
  set_int("loupe.oom.file_rss_bytes", k.file_rss_kb * 1024);
  set_int("loupe.oom.shmem_rss_bytes", k.shmem_rss_kb * 1024);
  set_int("loupe.oom.pgtables_bytes", k.pgtables_kb * 1024);
  set_int("loupe.oom.trigger.pid", k.trigger_pid);
  set_string("loupe.oom.trigger.name", k.trigger_comm);
  if (k.cgroup) {
    set_string("loupe.oom.cgroup.path", k.cgroup->path);
    set_int("loupe.oom.cgroup.version", static_cast<uint64_t>(k.cgroup->version));
    set_optional("loupe.oom.cgroup.limit_bytes", k.cgroup->limit_bytes);
    set_optional("loupe.oom.cgroup.usage_bytes", k.cgroup->usage_bytes);
    set_optional("loupe.oom.cgroup.peak_bytes", k.cgroup->peak_bytes);
  } else {
    set_string("loupe.oom.cgroup.path", k.victim_cgroup);
  }
  if (k.kernel_memcg_limit_bytes != 0) {
    set_int("loupe.oom.kernel.memcg_limit_bytes", k.kernel_memcg_limit_bytes);
    set_int("loupe.oom.kernel.memcg_usage_bytes", k.kernel_memcg_usage_bytes);
  }
  set_string("container.id", k.container_id);
  set_string("k8s.namespace.name", k.k8s_namespace);
  set_string("k8s.pod.name", k.k8s_pod);
  set_string("k8s.container.name", k.k8s_container);
  if (!k.k8s_workload_kind.empty() && !k.k8s_workload.empty()) {
    a.Set(absl::StrCat("k8s.", k.k8s_workload_kind, ".name"), k.k8s_workload);
  }
  if (k.exit_seen) set_int("loupe.oom.requests_in_flight", k.requests_in_flight);
  if (!k.top_processes.empty()) {
    AttributeList& list = r.lists.emplace_back();
    list.key = "loupe.oom.top_processes";
    for (const ProcessRss& p : k.top_processes) {
      Attributes& item = list.items.emplace_back();
      item.Set("process.pid", static_cast<int64_t>(p.pid));
      item.Set("process.executable.name", p.comm);
      item.Set("rss_bytes", static_cast<int64_t>(p.rss_bytes));
    }
  }
  if (!k.memory_trend.empty()) {
    AttributeList& list = r.lists.emplace_back();
    list.key = "loupe.oom.memory_trend";
    for (const MemorySample& m : k.memory_trend) {
      Attributes& item = list.items.emplace_back();
      item.Set("time_unix_nano", static_cast<int64_t>(m.time_unix_ns));
      item.Set("usage_bytes", static_cast<int64_t>(m.usage_bytes));
      if (m.working_set_bytes) {
        item.Set("working_set_bytes", static_cast<int64_t>(*m.working_set_bytes));
      }
      if (m.limit_bytes) item.Set("limit_bytes", static_cast<int64_t>(*m.limit_bytes));
    }
  }
  return r;
}

std::string OomKillConsoleLine(const OomKill& k) {
  const auto name = [](const std::string& comm, uint32_t pid) {
    return absl::StrCat(comm.empty() ? "?" : comm, "[", pid, "]");
  };
  std::string out = absl::StrCat("OOMKILL ", name(k.victim_comm, k.victim_pid), " ",
                                 AbslView(OomKindName(k.kind)));
  const bool kernel_numbers = k.kernel_memcg_limit_bytes != 0;
  if (k.cgroup) {
    absl::StrAppend(&out, " ", k.cgroup->path);
  } else if (!k.victim_cgroup.empty()) {
    absl::StrAppend(&out, " ", k.victim_cgroup);
  }
  if (kernel_numbers) {
    absl::StrAppend(&out, " limit ", FormatBytes(k.kernel_memcg_limit_bytes), " usage ",
                    FormatBytes(k.kernel_memcg_usage_bytes));
  } else if (k.cgroup) {
    if (k.cgroup->limit_bytes) {
      absl::StrAppend(&out, " limit ", FormatBytes(*k.cgroup->limit_bytes));
    } else if (k.cgroup->unlimited) {
      out.append(" limit none");
    }
    if (k.cgroup->usage_bytes) absl::StrAppend(&out, " usage ", FormatBytes(*k.cgroup->usage_bytes));
  }
  if (k.cgroup && k.cgroup->peak_bytes) {
    absl::StrAppend(&out, " peak ", FormatBytes(*k.cgroup->peak_bytes));
  }
  absl::StrAppend(&out, " rss anon ", FormatBytes(k.anon_rss_kb * 1024), " file ",
                  FormatBytes(k.file_rss_kb * 1024), " shmem ", FormatBytes(k.shmem_rss_kb * 1024),
                  " oom_score_adj ", k.oom_score_adj, " trigger ",
                  name(k.trigger_comm, k.trigger_pid));
  if (!k.top_processes.empty()) {
    out.append(" top");
    bool first = true;
    for (const ProcessRss& p : k.top_processes) {
      absl::StrAppend(&out, first ? " " : ", ", name(p.comm, p.pid), " ", FormatBytes(p.rss_bytes));
      first = false;
    }
  }
  if (!k.k8s_pod.empty()) {
    absl::StrAppend(&out, " pod ", k.k8s_namespace, "/", k.k8s_pod);
    if (!k.k8s_container.empty()) absl::StrAppend(&out, " container ", k.k8s_container);
  } else if (!k.container_id.empty()) {
    absl::StrAppend(&out, " container ", k.container_id.substr(0, 12));
  }
  if (!k.service_name.empty()) absl::StrAppend(&out, " service ", k.service_name);
  if (k.exit_seen && k.requests_in_flight > 0) {
    absl::StrAppend(&out, " serving ", k.requests_in_flight,
                    k.requests_in_flight == 1 ? " request" : " requests");
  }
  return out;
}

OomReporter::OomReporter(OomReporterOptions options)
    : options_(std::move(options)),
      realtime_offset_ns_(options_.realtime_offset_ns
                              ? *options_.realtime_offset_ns
                              : ClockNs(CLOCK_REALTIME) - ClockNs(CLOCK_MONOTONIC)),
      page_size_(options_.page_size != 0 ? options_.page_size
                                         : static_cast<uint64_t>(sysconf(_SC_PAGESIZE))) {}

std::optional<std::string> OomReporter::LocateCgroup(const MemoryHierarchy& hierarchy,
                                                     uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cgroup_paths_.find(id);
    if (it != cgroup_paths_.end()) {
      const std::string& dir = it->second;
      // Still there, still this cgroup (kernfs ids are not reused on
      // 64-bit), and under the hierarchy being asked about.
      if (InodeOf(dir) == id && dir.compare(0, hierarchy.root.size(), hierarchy.root) == 0) {
        const std::string relative = dir.substr(hierarchy.root.size());
        return relative.empty() ? std::string("/") : relative;
      }
      cgroup_paths_.erase(it);
    }
  }
  std::optional<std::string> found = FindCgroupById(hierarchy, id);
  if (found) {
    std::lock_guard<std::mutex> lock(mu_);
    // Bounded: OOM kills are rare, and a full cache only costs a walk.
    if (cgroup_paths_.size() >= 1024) cgroup_paths_.clear();
    cgroup_paths_[id] = JoinCgroup(hierarchy.root, *found);
  }
  return found;
}

OomKill OomReporter::Report(const OomEvent& event) {
  OomKill k = Investigate(event);
  Record(k);
  return k;
}

void OomReporter::Record(const OomKill& kill) {
  std::lock_guard<std::mutex> lock(mu_);
  ++total_;
  recent_.push_back(kill);
  while (recent_.size() > options_.recent_capacity) recent_.pop_front();
}

OomKill OomReporter::Investigate(const OomEvent& event) {
  OomKill k;
  k.ts_ns = event.header.ts_ns;
  k.time_unix_ns = static_cast<uint64_t>(static_cast<int64_t>(event.header.ts_ns) +
                                         realtime_offset_ns_);
  k.victim_pid = event.victim_pid;
  k.victim_comm = event.victim_comm;
  k.victim_uid = event.victim_uid;
  k.total_vm_kb = event.total_vm_kb;
  k.anon_rss_kb = event.anon_rss_kb;
  k.file_rss_kb = event.file_rss_kb;
  k.shmem_rss_kb = event.shmem_rss_kb;
  k.pgtables_kb = event.pgtables_kb;
  k.oom_score_adj = event.oom_score_adj;
  k.trigger_pid = event.header.tgid;
  k.trigger_tid = event.header.tid;
  k.trigger_comm = event.trigger_comm;
  k.oom_memcg_id = event.oom_memcg_id;
  k.trigger_memcg_id = event.trigger_memcg_id;
  k.kernel_flags = event.flags;
  if (event.kind == OomKind::kCgroup) {
    k.kernel_memcg_usage_bytes = event.memcg_usage_pages * page_size_;
    k.kernel_memcg_limit_bytes = event.memcg_limit_pages * page_size_;
  }

  std::optional<MemoryHierarchy> hierarchy;
  if (options_.read_host_facts) hierarchy = FindMemoryHierarchy(options_.cgroup_root);
  if (hierarchy) {
    // The victim, if it is still there and still the same process.
    const std::string comm = ReadComm(options_.proc_root, event.victim_pid);
    const bool victim_present =
        !comm.empty() && (event.victim_comm.empty() || comm == event.victim_comm);
    if (victim_present) {
      if (k.victim_comm.empty()) k.victim_comm = comm;
      if (auto path = ReadProcessMemoryCgroup(options_.proc_root, event.victim_pid,
                                              hierarchy->version)) {
        k.victim_cgroup = *path;
      }
    }
    // The cgroup whose facts matter: the one in OOM as the kernel found it;
    // else, when the kernel could not tell, the victim's or its nearest
    // ancestor at its limit; else the victim's.
    std::optional<std::string> facts_path;
    if (event.oom_memcg_id != 0) facts_path = LocateCgroup(*hierarchy, event.oom_memcg_id);
    if (!facts_path && !k.victim_cgroup.empty()) {
      facts_path = k.victim_cgroup;
      if (event.kind == OomKind::kUnknown) {
        std::string candidate = k.victim_cgroup;
        for (int depth = 0; depth < kMaxCgroupDepth && candidate != "/"; ++depth) {
          if (ReadCgroupMemory(*hierarchy, candidate).LimitReached()) {
            facts_path = candidate;
            break;
          }
          candidate = ParentCgroup(candidate);
        }
      }
    }
    if (facts_path) {
      k.cgroup = ReadCgroupMemory(*hierarchy, *facts_path);
      // The victim may linger as a zombie: its numbers are above already.
      k.top_processes = LargestProcesses(*hierarchy, *facts_path, options_.proc_root, page_size_,
                                         options_.top_processes + 1);
      std::erase_if(k.top_processes,
                    [&](const ProcessRss& p) { return p.pid == event.victim_pid; });
      if (k.top_processes.size() > options_.top_processes) {
        k.top_processes.resize(options_.top_processes);
      }
    }
  }
  const OomClassification verdict = ClassifyOom(event.kind, k.cgroup);
  k.kind = verdict.kind;
  k.kind_source = verdict.source;
  return k;
}

std::vector<OomKill> OomReporter::Recent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::vector<OomKill>(recent_.begin(), recent_.end());
}

uint64_t OomReporter::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

}  // namespace loupe
