// Who a process is: the facts the resource of its spans is built from.
//
// Live, they are read from /proc the first time a process shows up; every
// resolution is also written to a recording, so a replay attributes spans
// exactly as the live run did.
#ifndef LOUPE_AGENT_PROCESS_INFO_H_
#define LOUPE_AGENT_PROCESS_INFO_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "decoders/model/span_assembler.h"

namespace loupe {

// Every field is "" or 0 when unknown: unreadable, or absent from a
// recording made before it existed (recording.h).
struct ProcessInfo {
  uint32_t tgid = 0;
  std::string comm;             // kernel task name (from the event, or /proc/PID/comm)
  std::string exe_path;         // /proc/PID/exe target, "" if unreadable
  std::string service_name;     // OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES
  bool from_proc = false;       // false: the process was gone before it could be read
  // Recording format 2 onwards.
  std::string cmdline;          // /proc/PID/cmdline, arguments joined by spaces (bounded)
  uint32_t uid = 0;             // effective uid (/proc/PID/status); meaningful only with an owner
  std::string owner;            // the uid's user name as the agent resolves it, else the number
  // /proc/PID/stat starttime (clock ticks after boot, 10 ms at USER_HZ 100)
  // plus /proc/stat btime (whole seconds, truncated): within about a second
  // of the real start time, and the same for every read on one boot.
  uint64_t start_time_unix_ns = 0;
  std::string cgroup_path;      // v2 path, else v1 memory path (ProcCgroups::primary())
  uint64_t cgroup_id = 0;       // v2 cgroup id (CgroupId()), 0 without a v2 path
  std::string container_id;     // CgroupIdentity from the cgroup paths
  std::string container_runtime;
  std::string pod_uid;          // Kubernetes pod UID
  std::string pod_qos;          // "guaranteed", "burstable", "besteffort"
  std::string systemd_unit;     // unit of a process outside containers, "nginx.service"
  bool operator==(const ProcessInfo&) const = default;
};

// The command line is cut to this many bytes; a cut one ends with
// kCmdlineCutMarker (within the bound).
inline constexpr size_t kMaxCmdlineBytes = 4096;
inline constexpr std::string_view kCmdlineCutMarker = " [...]";

// Reads at most `max_bytes` of a /proc or cgroup file into *out; false when
// it cannot be opened or read.
bool ReadBoundedFile(const std::string& path, size_t max_bytes, std::string* out);

// Reads /proc/<tgid>. A process that already exited yields from_proc=false
// and keeps the comm it was given. Every read is bounded, a missing or
// malformed file only leaves its fields unknown. User names, the boot time
// and the cgroup mounts are cached for the life of the agent (per proc_root).
ProcessInfo ReadProcessInfo(const std::string& proc_root, uint32_t tgid, std::string comm);

// "a b c" from /proc/PID/cmdline's NUL-terminated arguments, cut to
// kMaxCmdlineBytes on a UTF-8 character boundary, with the marker when cut.
// `raw` is the whole file or, when it is longer, at least its first
// kMaxCmdlineBytes + 2 bytes.
std::string CmdlineFromProc(std::string_view raw);

// Unix time in ns of a process start, from /proc/PID/stat and the boot time
// (/proc/stat btime, seconds). 0 when the stat line is malformed.
uint64_t StartTimeFromStat(std::string_view stat_line, uint64_t boot_time_unix_s,
                           long clock_ticks_per_second);

// "2026-11-21T20:54:46.140Z" (ISO 8601, UTC, milliseconds).
std::string FormatIso8601(uint64_t unix_ns);

// service.name from an environment block (NUL-separated KEY=VALUE):
// OTEL_SERVICE_NAME wins over service.name inside OTEL_RESOURCE_ATTRIBUTES,
// as in the OpenTelemetry SDK specification. "" when neither is set.
std::string ServiceNameFromEnviron(std::string_view environ_block);

using ExtraAttributes = std::vector<std::pair<std::string, std::string>>;

// The agent's own resource (service.name "loupe", host.name, process.pid),
// for telemetry that belongs to no traced process: the service graph.
std::shared_ptr<const Resource> MakeAgentResource(const std::string& host_name,
                                                  const ExtraAttributes& extra);

class PodCache;  // agent/kubernetes.h

// The resource of a process's spans. `extra` (OTEL_RESOURCE_ATTRIBUTES of
// the agent: cluster, environment, ...) is added where the process has no
// attribute of that name. With `pods` (in a Kubernetes cluster), a process
// in a known pod's container gets the k8s.* attributes, and service.name is
// chosen in this order: the process's OTEL_SERVICE_NAME / service.name in
// its OTEL_RESOURCE_ATTRIBUTES, the pod's app.kubernetes.io/name or app
// label, its workload's name, the executable name.
std::shared_ptr<const Resource> MakeProcessResource(const ProcessInfo& info,
                                                    const std::string& host_name,
                                                    const ExtraAttributes& extra = {},
                                                    const PodCache* pods = nullptr);

// Caches resources per tgid. Resolution happens through the resolver
// callback (live: /proc; replay: recorded infos); a bounded cache forgets
// the oldest entries first.
class ProcessTable : public ResourceProvider {
 public:
  using Resolver = std::function<ProcessInfo(uint32_t tgid, const std::string& comm_hint)>;
  using Observer = std::function<void(const ProcessInfo&)>;

  ProcessTable(std::string host_name, Resolver resolver, size_t max_entries = 8192,
               ExtraAttributes extra = {});

  // Called for every event of a process: resolves it on first sight (while
  // it is most likely still alive). `comm` may be empty.
  void Observe(uint32_t tgid, const std::string& comm);
  // Adds a known process (replay), replacing any cached one.
  void Add(const ProcessInfo& info);
  // Removes a process (it exited): a later event of the same tgid (a reused
  // pid) is resolved afresh.
  void Forget(uint32_t tgid);
  // Called with each resolution (the recorder writes it).
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // Pod metadata for processes resolved from now on (must outlive the table).
  void set_pods(const PodCache* pods) { pods_ = pods; }

  std::shared_ptr<const Resource> ForProcess(uint32_t tgid) override;
  size_t size() const { return entries_.size(); }
  // Calls f(info, resource) for every cached process.
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [tgid, entry] : entries_) f(entry.info, entry.resource);
  }

 private:
  struct Entry {
    ProcessInfo info;
    std::shared_ptr<const Resource> resource;
    // A process in a container whose pod was not known when it was named:
    // the pod list's generation then. Named again (without /proc) once the
    // list has changed, so a process seen before its pod still gets its
    // k8s.* attributes and service.name.
    bool awaiting_pod = false;
    uint64_t pods_generation = 0;
  };
  Entry& Insert(ProcessInfo info);

  std::string host_name_;
  ExtraAttributes extra_;
  Resolver resolver_;
  Observer observer_;
  const PodCache* pods_ = nullptr;
  size_t max_entries_;
  absl::flat_hash_map<uint32_t, Entry> entries_;
  std::deque<uint32_t> order_;  // insertion order, for eviction
};

}  // namespace loupe

#endif  // LOUPE_AGENT_PROCESS_INFO_H_
