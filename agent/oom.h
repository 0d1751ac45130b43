// OOM kills: the kernel's LOUPE_EV_OOM_KILL event (decoders/events.h,
// OomEvent) completed with what the memory cgroup files and /proc say right
// after it, a verdict on cgroup vs global OOM, and two renderings (one JSON
// object, one console line). docs/oom.md describes every field.
//
// The facts are read when Report() is called, so call it as soon as the
// event arrives: the victim is dying, and a container's cgroup is removed
// shortly after its last process exits.
#ifndef LOUPE_AGENT_OOM_H_
#define LOUPE_AGENT_OOM_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "agent/memory_history.h"
#include "decoders/events.h"
#include "decoders/model/log_record.h"

namespace loupe {

// Usage within this much of a limit counts as "at the limit" (the kernel
// side uses the same margin, LOUPE_OOM_LIMIT_SLACK_PAGES of 4 KiB pages).
inline constexpr uint64_t kOomLimitSlackBytes = 1ull << 20;

// The memory controller's hierarchy: where its directories are on disk.
struct MemoryHierarchy {
  int version = 0;   // 1 (the v1 "memory" hierarchy) or 2 (unified)
  std::string root;  // e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup/unified
  bool operator==(const MemoryHierarchy&) const = default;
};

// The hierarchy that holds the memory controller under `cgroup_root` (the
// cgroup mount point, /sys/fs/cgroup): <root>/memory for v1, else the v2
// hierarchy at <root> or <root>/unified whose cgroup.controllers lists
// "memory". nullopt when there is none.
std::optional<MemoryHierarchy> FindMemoryHierarchy(const std::string& cgroup_root);

// The path (relative to hierarchy.root, "/" for the root itself) of the
// cgroup directory whose inode number is `id` (a kernfs node id, as the
// kernel reports cgroup ids on 64-bit machines). Breadth-first, bounded to
// kMaxCgroupWalkDirs directories and kMaxCgroupDepth levels.
inline constexpr size_t kMaxCgroupWalkDirs = 20000;
inline constexpr int kMaxCgroupDepth = 32;
std::optional<std::string> FindCgroupById(const MemoryHierarchy& hierarchy, uint64_t id);

// The memory cgroup path of process `pid` from <proc_root>/<pid>/cgroup
// (the line of the memory controller for v1, the "0::" line for v2).
std::optional<std::string> ReadProcessMemoryCgroup(const std::string& proc_root, uint32_t pid,
                                                   int version);

// What the memory controller's files say about one cgroup. A field is
// nullopt when its file is missing or unreadable.
struct CgroupMemory {
  int version = 0;
  std::string path;                     // relative to the hierarchy root
  std::optional<uint64_t> limit_bytes;  // nullopt: no limit, or its file unreadable
  bool unlimited = false;  // the limit file says "max" (v2) or ~8 EiB (v1's default)
  std::optional<uint64_t> usage_bytes;  // v1 memory.usage_in_bytes, v2 memory.current
  std::optional<uint64_t> peak_bytes;   // v1 memory.max_usage_in_bytes, v2 memory.peak (5.19+)
  std::optional<uint64_t> failcnt;      // v1 memory.failcnt: charges that hit the limit
  std::optional<uint64_t> oom_events;   // v2 memory.events "oom": cgroup OOMs
  std::optional<uint64_t> oom_kill_events;  // v2 memory.events / v1 memory.oom_control oom_kill
  // The files show the limit reached, now or earlier: usage or peak within
  // kOomLimitSlackBytes of the limit, a non-zero failcnt, or a non-zero
  // "oom" count. Peak, failcnt and the counts are sticky: a cgroup that once
  // hit its limit keeps saying so.
  bool LimitReached() const;
  bool operator==(const CgroupMemory&) const = default;
};

CgroupMemory ReadCgroupMemory(const MemoryHierarchy& hierarchy, const std::string& path);

struct ProcessRss {
  uint32_t pid = 0;
  std::string comm;
  uint64_t rss_bytes = 0;  // /proc/PID/statm resident pages x page size
  bool operator==(const ProcessRss&) const = default;
};

// The `count` processes with the largest RSS among those listed in
// cgroup.procs of `path` and of the cgroups below it (at most
// kMaxCgroupWalkDirs / 20 cgroups and kMaxOomProcesses processes read).
inline constexpr size_t kMaxOomProcesses = 65536;
std::vector<ProcessRss> LargestProcesses(const MemoryHierarchy& hierarchy,
                                         const std::string& path, const std::string& proc_root,
                                         uint64_t page_size, size_t count);

// How the cgroup-vs-global verdict was reached.
enum class OomKindSource : uint8_t {
  kNone = 0,         // undecided: kind is kUnknown
  kKernel = 1,       // the kernel side's verdict (OomEvent::kind)
  kCgroupFiles = 2,  // the cgroup files read after the kill
};
std::string_view OomKindSourceName(OomKindSource source);  // "none" / "kernel" / "cgroup_files"

struct OomClassification {
  OomKind kind = OomKind::kUnknown;
  OomKindSource source = OomKindSource::kNone;
  bool operator==(const OomClassification&) const = default;
};

// The verdict, in this order:
//   1. the kernel found a memory cgroup in OOM          -> cgroup (kernel)
//   2. the kernel said global                            -> global (kernel);
//      it looked at the moment of the kill, while the files after it only
//      show sticky history (a container that sits at its limit with page
//      cache would otherwise turn every global OOM into a cgroup one)
//   3. the kernel could not say, and `cgroup` (the victim's memory cgroup,
//      or the nearest ancestor at its limit) has reached its limit
//                                                        -> cgroup (files)
//   4. the kernel could not say, the cgroup is known and its limit was
//      not reached (or it has none)                      -> global (files)
//   5. otherwise                                         -> unknown
OomClassification ClassifyOom(OomKind kernel_kind, const std::optional<CgroupMemory>& cgroup);

// One OOM kill, as reported.
struct OomKill {
  uint64_t ts_ns = 0;          // CLOCK_MONOTONIC of the kill
  uint64_t time_unix_ns = 0;   // the same on the wall clock
  // The victim, from the tracepoint (kB as in the kernel's log line).
  uint32_t victim_pid = 0;
  std::string victim_comm;     // from /proc/PID/comm when the kernel gave none
  uint32_t victim_uid = 0;
  uint64_t total_vm_kb = 0;
  uint64_t anon_rss_kb = 0;
  uint64_t file_rss_kb = 0;
  uint64_t shmem_rss_kb = 0;
  uint64_t pgtables_kb = 0;
  int16_t oom_score_adj = 0;
  // The verdict.
  OomKind kind = OomKind::kUnknown;
  OomKindSource kind_source = OomKindSource::kNone;
  // The task that ran the OOM killer.
  uint32_t trigger_pid = 0;  // tgid
  uint32_t trigger_tid = 0;
  std::string trigger_comm;
  // The kernel side's memory cgroup facts, taken at the kill.
  uint64_t oom_memcg_id = 0;
  uint64_t trigger_memcg_id = 0;
  uint8_t kernel_flags = 0;                 // enum loupe_oom_flags
  uint64_t kernel_memcg_usage_bytes = 0;    // of oom_memcg_id; 0 unless kernel said cgroup
  uint64_t kernel_memcg_limit_bytes = 0;
  // Read after the kill.
  std::string victim_cgroup;           // from /proc/PID/cgroup if the victim was still there
  std::optional<CgroupMemory> cgroup;  // the cgroup in OOM, else the victim's
  // Largest RSS in `cgroup` and below, largest first; the victim left out.
  std::vector<ProcessRss> top_processes;
  // Who the victim was, named by the pipeline from its process's resource
  // and the node's pods ("" when unknown).
  std::string service_name;
  std::string container_id;
  std::string k8s_namespace;
  std::string k8s_pod;
  std::string k8s_container;
  std::string k8s_workload_kind;  // "deployment", "statefulset", "daemonset", "cronjob", "job"
  std::string k8s_workload;
  // The memory of the victim's container before the kill, oldest first,
  // from the resource sampler (empty when it was not sampled).
  std::vector<MemorySample> memory_trend;
  // Whether the victim's exit was seen; then how many requests it was
  // serving (its open server spans, ended with the status OOMKilled).
  bool exit_seen = false;
  uint64_t requests_in_flight = 0;
};

// "tp_details", "memcg_v1", "by_oom_lock", "by_limit", "remote_charge".
std::vector<std::string_view> OomFlagNames(uint8_t flags);

// One JSON object, no newline. Keys:
//   time_unix_nano           integer
//   kind                     "cgroup" / "global" / "unknown"
//   kind_source              "kernel" / "cgroup_files" / "none"
//   victim                   {pid, comm, uid, oom_score_adj, total_vm_kb, anon_rss_kb,
//                             file_rss_kb, shmem_rss_kb, pgtables_kb, cgroup}
//                            cgroup: its memory cgroup path, null if unknown
//   trigger                  {pid, tid, comm}
//   kernel                   {oom_memcg_id, trigger_memcg_id, memcg_usage_bytes,
//                             memcg_limit_bytes, flags: [names]}
//   cgroup                   {path, version, limit_bytes, unlimited, usage_bytes,
//                             peak_bytes, failcnt, oom_events, oom_kill_events}
//                            or null; a value whose file is missing is null
//                            (limit_bytes also when unlimited is true)
//   top_processes            [{pid, comm, rss_bytes}], largest first
//   service_name             string, null if unknown
//   container                {id, k8s_namespace_name, k8s_pod_name, k8s_container_name,
//                             k8s_workload_kind, k8s_workload}
//                            (each null if unknown), or null without a container id
//   memory_trend             [{time_unix_nano, usage_bytes, working_set_bytes,
//                             limit_bytes}], oldest first
//   requests_in_flight       integer: server requests the victim was serving (their
//                            spans end with the status OOMKilled); null when its
//                            exit was not seen
std::string OomKillJson(const OomKill& kill);

// The OTLP log record of a kill: event name "loupe.oom_kill", severity
// WARN, the console line as body, and every fact as an attribute
// (docs/oom.md lists them). `resource` is the victim process's.
LogRecord OomKillLogRecord(const OomKill& kill, std::shared_ptr<const Resource> resource,
                           uint64_t observed_unix_ns);

// One line for the console, no newline:
//   OOMKILL <comm>[<pid>] <kind>[ <cgroup path>][ limit <size>][ usage <size>][ peak <size>]
//   rss anon <size> file <size> shmem <size> oom_score_adj <n> trigger <comm>[<pid>]
//   [ top <comm>[<pid>] <size>, ...][ pod <namespace>/<pod> container <name>]
//   [ service <name>][ serving <n> requests]
// limit and usage are the kernel's at the kill when it found the cgroup in
// OOM, else the files'; "limit none" for a cgroup without one.
std::string OomKillConsoleLine(const OomKill& kill);

// "0 B", "512 B", "1.5 KiB", "64.0 MiB", "2.0 GiB".
std::string FormatBytes(uint64_t bytes);

struct OomReporterOptions {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string proc_root = "/proc";
  size_t recent_capacity = 64;  // kills kept for Recent()
  size_t top_processes = 5;
  uint64_t page_size = 0;       // 0: this host's (sysconf)
  // ts_ns + this = time_unix_ns. Unset: CLOCK_REALTIME - CLOCK_MONOTONIC at
  // construction. A replay passes the recording's offset.
  std::optional<int64_t> realtime_offset_ns;
  // false: nothing is read from cgroup files or /proc (replays, where the
  // host is not the one the event came from).
  bool read_host_facts = true;
};

// Thread-safe: Report() from the decoding thread, Recent() from an HTTP
// handler.
class OomReporter {
 public:
  explicit OomReporter(OomReporterOptions options = {});

  // Completes `event` with the host facts read now and classifies it.
  OomKill Investigate(const OomEvent& event);
  // Keeps `kill` among the recent kills.
  void Record(const OomKill& kill);
  // Investigate, then Record.
  OomKill Report(const OomEvent& event);
  // The last recent_capacity kills, oldest first.
  std::vector<OomKill> Recent() const;
  // Kills reported since construction.
  uint64_t total() const;

 private:
  std::optional<std::string> LocateCgroup(const MemoryHierarchy& hierarchy, uint64_t id);

  const OomReporterOptions options_;
  const int64_t realtime_offset_ns_;
  const uint64_t page_size_;

  mutable std::mutex mu_;
  std::deque<OomKill> recent_ ABSL_GUARDED_BY(mu_);
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  // memcg id -> absolute directory, checked against its inode before use.
  absl::flat_hash_map<uint64_t, std::string> cgroup_paths_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loupe

#endif  // LOUPE_AGENT_OOM_H_
