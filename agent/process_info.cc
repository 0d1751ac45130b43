#include "agent/process_info.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/cgroup.h"
#include "agent/kubernetes.h"

namespace loupe {

namespace {

// /proc/PID/environ can be large; the variables we want are usually early.
constexpr size_t kMaxEnvironBytes = 256 * 1024;
// /proc/PID/status is about 1.5 KiB, /proc/PID/stat under 1 KiB (its comm
// is at most 64 bytes).
constexpr size_t kMaxStatusBytes = 16 * 1024;
constexpr size_t kMaxStatBytes = 4 * 1024;
// One line per hierarchy, each at most a path.
constexpr size_t kMaxCgroupFileBytes = 64 * 1024;
// /proc/stat holds a line per CPU and an "intr" line with a count per
// interrupt before btime; megabytes only on the largest machines.
constexpr size_t kMaxProcStatBytes = 4 * 1024 * 1024;
// Process-wide caches: host facts per proc root (tests use many), names per uid.
constexpr size_t kMaxCachedProcRoots = 16;
constexpr size_t kMaxCachedUserNames = 1024;
// getpwuid_r's buffer grows on ERANGE up to this.
constexpr size_t kMaxPasswdBufferBytes = 1024 * 1024;

bool ParseU64(std::string_view text, uint64_t* value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

// The effective uid: the second of the four ids on status's "Uid:" line
// (real, effective, saved, file system), the one ps(1) shows as USER.
bool EffectiveUidFromStatus(std::string_view status, uint32_t* uid) {
  const absl::string_view text(status.data(), status.size());
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, "Uid:")) continue;
    std::vector<absl::string_view> ids =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint64_t value = 0;
    if (ids.size() < 2 || !ParseU64(std::string_view(ids[1].data(), ids[1].size()), &value) ||
        value > UINT32_MAX) {
      return false;
    }
    *uid = static_cast<uint32_t>(value);
    return true;
  }
  return false;
}

// The user name of a uid through the agent's NSS configuration, else the
// number. Cached: NSS may ask a directory server, and a host runs many
// processes of few users.
std::string OwnerName(uint32_t uid) {
  static std::mutex mu;
  static auto* names = new absl::flat_hash_map<uint32_t, std::string>();  // guarded by mu
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = names->find(uid);
    if (it != names->end()) return it->second;
  }
  std::string name = absl::StrCat(uid);
  std::vector<char> buffer(16 * 1024);
  while (true) {
    struct passwd pw;
    struct passwd* result = nullptr;
    const int err = getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &result);
    if (err == ERANGE && buffer.size() < kMaxPasswdBufferBytes) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (err == 0 && result != nullptr && result->pw_name != nullptr && result->pw_name[0] != '\0') {
      name = result->pw_name;
    }
    break;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (names->size() >= kMaxCachedUserNames) names->clear();
  names->emplace(uid, name);
  return name;
}

// Facts of the host a proc root shows that do not change while it runs.
struct HostFacts {
  uint64_t boot_time_unix_s = 0;  // /proc/stat btime
  CgroupMounts mounts;
};

uint64_t BootTimeFromProcStat(std::string_view proc_stat) {
  const absl::string_view text(proc_stat.data(), proc_stat.size());
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    line = absl::StripAsciiWhitespace(line);
    uint64_t value = 0;
    return ParseU64(std::string_view(line.data(), line.size()), &value) ? value : 0;
  }
  return 0;
}

HostFacts CachedHostFacts(const std::string& proc_root) {
  static std::mutex mu;
  static auto* cache = new absl::flat_hash_map<std::string, HostFacts>();  // guarded by mu
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(proc_root);
    if (it != cache->end()) return it->second;
  }
  HostFacts facts;
  std::string proc_stat;
  if (ReadBoundedFile(absl::StrCat(proc_root, "/stat"), kMaxProcStatBytes, &proc_stat)) {
    facts.boot_time_unix_s = BootTimeFromProcStat(proc_stat);
  }
  facts.mounts = ReadCgroupMounts(proc_root);
  // Without a boot time nothing was learned (no proc there yet): ask again
  // next time.
  if (facts.boot_time_unix_s != 0) {
    std::lock_guard<std::mutex> lock(mu);
    if (cache->size() >= kMaxCachedProcRoots) cache->clear();
    cache->emplace(proc_root, facts);
  }
  return facts;
}

std::string Basename(std::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

bool ReadBoundedFile(const std::string& path, size_t max_bytes, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->resize(max_bytes);
  in.read(out->data(), static_cast<std::streamsize>(max_bytes));
  out->resize(static_cast<size_t>(in.gcount()));
  return !in.bad();
}

std::string ServiceNameFromEnviron(std::string_view environ_block) {
  // absl's string_view is not std::string_view in Debian's abseil build.
  const absl::string_view block(environ_block.data(), environ_block.size());
  std::string from_attributes;
  for (absl::string_view var : absl::StrSplit(block, '\0', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&var, "OTEL_SERVICE_NAME=")) {
      if (!var.empty()) return std::string(var);
    } else if (absl::ConsumePrefix(&var, "OTEL_RESOURCE_ATTRIBUTES=")) {
      // W3C-baggage-like list: key=value pairs separated by commas, blanks
      // around keys and values ignored, values percent-encoded (OTel SDK
      // specification, "Specifying resource information via an environment
      // variable").
      for (absl::string_view kv : absl::StrSplit(var, ',', absl::SkipEmpty())) {
        const size_t eq = kv.find('=');
        if (eq == absl::string_view::npos) continue;
        if (absl::StripAsciiWhitespace(kv.substr(0, eq)) != "service.name") continue;
        from_attributes = PercentDecode(absl::StripAsciiWhitespace(kv.substr(eq + 1)));
      }
    }
  }
  return from_attributes;
}

std::string CmdlineFromProc(std::string_view raw) {
  // Arguments end with NUL; a process that rewrote its arguments
  // (setproctitle) may leave a run of NULs or none at all.
  while (!raw.empty() && raw.back() == '\0') raw.remove_suffix(1);
  std::string out(raw.substr(0, kMaxCmdlineBytes + 1));
  for (char& c : out) {
    if (c == '\0') c = ' ';
  }
  if (out.size() <= kMaxCmdlineBytes) return out;
  out.resize(kMaxCmdlineBytes - kCmdlineCutMarker.size());
  // Back off to a character boundary: drop a trailing incomplete UTF-8
  // sequence (a lead byte and fewer continuation bytes than it announces).
  size_t continuation = 0;
  while (continuation < 3 && continuation < out.size() &&
         (static_cast<unsigned char>(out[out.size() - 1 - continuation]) & 0xC0) == 0x80) {
    ++continuation;
  }
  if (continuation < out.size()) {
    const auto lead = static_cast<unsigned char>(out[out.size() - 1 - continuation]);
    const size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (length > continuation + 1) out.resize(out.size() - 1 - continuation);
  }
  out.append(kCmdlineCutMarker);
  return out;
}

uint64_t StartTimeFromStat(std::string_view stat_line, uint64_t boot_time_unix_s,
                           long clock_ticks_per_second) {
  if (boot_time_unix_s == 0 || clock_ticks_per_second <= 0) return 0;
  // proc(5): "pid (comm) state ppid ...", where comm may hold spaces and
  // parentheses; the fields after the last ')' start at field 3 (state).
  const size_t paren = stat_line.rfind(')');
  if (paren == std::string_view::npos) return 0;
  const std::string_view rest = stat_line.substr(paren + 1);
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(rest.data(), rest.size()), absl::ByAnyChar(" \n"), absl::SkipEmpty());
  constexpr size_t kStartTimeField = 22 - 3;  // field 22, starttime, in clock ticks after boot
  uint64_t ticks = 0;
  if (fields.size() <= kStartTimeField ||
      !ParseU64(std::string_view(fields[kStartTimeField].data(), fields[kStartTimeField].size()),
                &ticks)) {
    return 0;
  }
  const auto hz = static_cast<uint64_t>(clock_ticks_per_second);
  return boot_time_unix_s * 1'000'000'000 + ticks / hz * 1'000'000'000 +
         ticks % hz * 1'000'000'000 / hz;
}

std::string FormatIso8601(uint64_t unix_ns) {
  const auto seconds = static_cast<time_t>(unix_ns / 1'000'000'000);
  const auto millis = static_cast<unsigned>(unix_ns % 1'000'000'000 / 1'000'000);
  struct tm tm;
  if (gmtime_r(&seconds, &tm) == nullptr) return "";
  char text[64];
  const int n = std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, millis);
  return n > 0 ? std::string(text, static_cast<size_t>(n)) : "";
}

ProcessInfo ReadProcessInfo(const std::string& proc_root, uint32_t tgid, std::string comm) {
  ProcessInfo info;
  info.tgid = tgid;
  info.comm = std::move(comm);
  const std::string dir = absl::StrCat(proc_root, "/", tgid);
  char exe[4096];
  const ssize_t n = readlink(absl::StrCat(dir, "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n > 0) {
    info.exe_path.assign(exe, static_cast<size_t>(n));
    // A replaced binary reads as "/usr/sbin/nginx (deleted)".
    if (absl::EndsWith(info.exe_path, " (deleted)")) info.exe_path.resize(info.exe_path.size() - 10);
    info.from_proc = true;
  }
  std::string comm_file;
  if (ReadBoundedFile(absl::StrCat(dir, "/comm"), 64, &comm_file)) {
    comm_file = std::string(absl::StripTrailingAsciiWhitespace(comm_file));
    if (!comm_file.empty()) {
      info.comm = comm_file;
      info.from_proc = true;
    }
  }
  std::string environ_block;
  if (ReadBoundedFile(absl::StrCat(dir, "/environ"), kMaxEnvironBytes, &environ_block)) {
    info.service_name = ServiceNameFromEnviron(environ_block);
  }
  std::string text;
  if (ReadBoundedFile(absl::StrCat(dir, "/cmdline"), kMaxCmdlineBytes + 2, &text)) {
    info.cmdline = CmdlineFromProc(text);
  }
  if (ReadBoundedFile(absl::StrCat(dir, "/status"), kMaxStatusBytes, &text) &&
      EffectiveUidFromStatus(text, &info.uid)) {
    info.owner = OwnerName(info.uid);
  }
  const HostFacts host = CachedHostFacts(proc_root);
  if (ReadBoundedFile(absl::StrCat(dir, "/stat"), kMaxStatBytes, &text)) {
    info.start_time_unix_ns =
        StartTimeFromStat(text, host.boot_time_unix_s, sysconf(_SC_CLK_TCK));
  }
  if (ReadBoundedFile(absl::StrCat(dir, "/cgroup"), kMaxCgroupFileBytes, &text)) {
    const ProcCgroups cgroups = ParseProcCgroups(text);
    info.cgroup_path = cgroups.primary();
    if (!cgroups.unified.empty()) info.cgroup_id = CgroupId(host.mounts.unified, cgroups.unified);
    CgroupIdentity identity = IdentityFromCgroups(cgroups);
    info.container_id = std::move(identity.container_id);
    info.container_runtime = std::move(identity.runtime);
    info.pod_uid = std::move(identity.pod_uid);
    info.pod_qos = std::move(identity.qos);
    info.systemd_unit = std::move(identity.systemd_unit);
  }
  return info;
}

std::shared_ptr<const Resource> MakeAgentResource(const std::string& host_name,
                                                  const ExtraAttributes& extra) {
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "loupe");
  resource->attributes.Set("process.pid", static_cast<int64_t>(getpid()));
  resource->attributes.Set("host.name", host_name);
  resource->attributes.Set("service.instance.id", absl::StrCat(host_name, ":loupe"));
  resource->attributes.Set("telemetry.sdk.name", "loupe");
  resource->attributes.Set("telemetry.sdk.language", "cpp");
  for (const auto& [key, value] : extra) {
    if (resource->attributes.Find(key) == nullptr) resource->attributes.Set(key, value);
  }
  return resource;
}

std::shared_ptr<const Resource> MakeProcessResource(const ProcessInfo& info,
                                                    const std::string& host_name,
                                                    const ExtraAttributes& extra,
                                                    const PodCache* pods) {
  auto resource = std::make_shared<Resource>();
  std::string exe_name = info.exe_path.empty() ? info.comm : Basename(info.exe_path);
  if (exe_name.empty()) exe_name = "unknown";
  std::optional<PodCache::ContainerMatch> k8s;
  if (pods != nullptr && !info.container_id.empty()) k8s = pods->LookupContainer(info.container_id);
  // service.name: the process's own OTEL_SERVICE_NAME, else its pod's
  // name label or workload, else its executable.
  std::string service = info.service_name;
  if (service.empty() && k8s) service = PodCache::ServiceNameFor(*k8s->pod, k8s->container_name);
  resource->attributes.Set("service.name", service.empty() ? exe_name : service);
  resource->attributes.Set("process.pid", static_cast<int64_t>(info.tgid));
  resource->attributes.Set("process.executable.name", exe_name);
  if (!info.exe_path.empty()) resource->attributes.Set("process.executable.path", info.exe_path);
  if (!info.comm.empty()) resource->attributes.Set("process.command", info.comm);
  // Process and container facts (semantic conventions: process, container,
  // k8s), each only when known.
  // info.cmdline stays in the agent: command lines carry secrets (passwords
  // and queries given as arguments), which must not leave it.
  if (!info.owner.empty()) resource->attributes.Set("process.owner", info.owner);
  if (info.start_time_unix_ns != 0) {
    resource->attributes.Set("process.creation.time", FormatIso8601(info.start_time_unix_ns));
  }
  if (!info.container_id.empty()) resource->attributes.Set("container.id", info.container_id);
  if (!info.container_runtime.empty()) {
    resource->attributes.Set("container.runtime", info.container_runtime);
  }
  if (!info.pod_uid.empty()) resource->attributes.Set("k8s.pod.uid", info.pod_uid);
  if (k8s) {
    const PodMetadata& pod = *k8s->pod;
    auto set = [&](std::string_view key, const std::string& value) {
      if (!value.empty()) resource->attributes.Set(key, value);
    };
    set("k8s.namespace.name", pod.namespace_name);
    set("k8s.pod.name", pod.pod_name);
    set("k8s.pod.uid", pod.pod_uid);
    set("k8s.container.name", k8s->container_name);
    set("k8s.node.name", pod.node_name);
    set("k8s.replicaset.name", pod.replicaset);
    set("k8s.deployment.name", pod.deployment);
    set("k8s.statefulset.name", pod.statefulset);
    set("k8s.daemonset.name", pod.daemonset);
    set("k8s.job.name", pod.job);
    set("k8s.cronjob.name", pod.cronjob);
  }
  if (!info.cgroup_path.empty()) resource->attributes.Set("loupe.cgroup.path", info.cgroup_path);
  if (info.cgroup_id != 0) {
    resource->attributes.Set("loupe.cgroup.id", static_cast<int64_t>(info.cgroup_id));
  }
  resource->attributes.Set("host.name", host_name);
  // Unique per observed process on this host (semantic conventions: unique
  // per service.name instance).
  resource->attributes.Set("service.instance.id", absl::StrCat(host_name, ":", info.tgid));
  resource->attributes.Set("telemetry.sdk.name", "loupe");
  resource->attributes.Set("telemetry.sdk.language", "cpp");
  for (const auto& [key, value] : extra) {
    if (resource->attributes.Find(key) == nullptr) resource->attributes.Set(key, value);
  }
  return resource;
}

ProcessTable::ProcessTable(std::string host_name, Resolver resolver, size_t max_entries,
                           ExtraAttributes extra)
    : host_name_(std::move(host_name)),
      extra_(std::move(extra)),
      resolver_(std::move(resolver)),
      max_entries_(max_entries) {}

ProcessTable::Entry& ProcessTable::Insert(ProcessInfo info) {
  const uint32_t tgid = info.tgid;
  auto it = entries_.find(tgid);
  if (it == entries_.end()) {
    while (entries_.size() >= max_entries_ && !order_.empty()) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(tgid);
    it = entries_.emplace(tgid, Entry{}).first;
  }
  Entry& entry = it->second;
  if (pods_ != nullptr) entry.pods_generation = pods_->generation();
  entry.resource = MakeProcessResource(info, host_name_, extra_, pods_);
  entry.awaiting_pod = pods_ != nullptr && !info.container_id.empty() &&
                       entry.resource->attributes.Find("k8s.pod.name") == nullptr;
  entry.info = std::move(info);
  return entry;
}

void ProcessTable::Observe(uint32_t tgid, const std::string& comm) {
  auto it = entries_.find(tgid);
  if (it != entries_.end()) return;
  if (!resolver_) return;
  Entry& entry = Insert(resolver_(tgid, comm));
  if (observer_) observer_(entry.info);
}

void ProcessTable::Add(const ProcessInfo& info) { Insert(info); }

void ProcessTable::Forget(uint32_t tgid) {
  if (entries_.erase(tgid) == 0) return;
  // Linear, but exits are rare next to the events that resolve processes.
  if (auto it = std::find(order_.begin(), order_.end(), tgid); it != order_.end()) {
    order_.erase(it);
  }
}

std::shared_ptr<const Resource> ProcessTable::ForProcess(uint32_t tgid) {
  auto it = entries_.find(tgid);
  if (it != entries_.end()) {
    Entry& entry = it->second;
    // One branch on the hot path; the pod list changes rarely.
    if (entry.awaiting_pod && pods_->generation() != entry.pods_generation) {
      ProcessInfo info = entry.info;
      return Insert(std::move(info)).resource;
    }
    return entry.resource;
  }
  ProcessInfo info;
  info.tgid = tgid;
  if (resolver_) {
    Entry& entry = Insert(resolver_(tgid, ""));
    if (observer_) observer_(entry.info);
    return entry.resource;
  }
  return Insert(info).resource;
}

}  // namespace loupe
