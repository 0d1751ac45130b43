// CPU and memory of processes and containers, read from procfs and cgroupfs
// and recorded as observed instruments of the metric model
// (decoders/model/metrics.h, ObservedInstrument).
//
// The readers are pure functions of a directory tree: the root of /proc,
// a cgroup directory. Tests point them at fake trees. They never throw, and
// the per-tick ones (ReadProcessUsage, ReadCgroup*Usage) never allocate:
// paths and file contents live in stack buffers. A file a kernel lacks
// leaves its field empty (std::optional); a process or cgroup that
// disappeared reads as ReadStatus::kGone.
//
// Sources (Documentation/filesystems/proc.rst, admin-guide/cgroup-v2.rst,
// admin-guide/cgroup-v1/{memory,cpuacct}.rst, scheduler/sched-bwc.rst):
//   process   /proc/PID/stat: utime, stime (clock ticks), minflt, majflt,
//             num_threads, starttime, vsize, rss (pages; the same count as
//             statm's resident, so statm is not read)
//   cgroup v2 memory.current, memory.max ("max": unlimited), memory.stat
//             (anon, file, active_file, inactive_file), memory.events
//             (oom_kill), cpu.stat (usage_usec, user_usec, system_usec,
//             nr_periods, nr_throttled, throttled_usec)
//   cgroup v1 memory: memory.usage_in_bytes, memory.limit_in_bytes (the
//             "unlimited" value is PAGE_COUNTER_MAX pages, ~2^63),
//             memory.stat (total_rss, total_cache, total_active_file,
//             total_inactive_file; the per-cgroup names without total_ when
//             the hierarchical ones are absent), memory.oom_control
//             (oom_kill, 4.13+)
//             cpuacct: cpuacct.usage, cpuacct.usage_user, cpuacct.usage_sys
//             (ns, 4.7+), else cpuacct.stat (user, system in USER_HZ ticks)
//             cpu: cpu.stat (nr_periods, nr_throttled, throttled_time ns)
// Working set = usage - inactive_file, at least 0: what cAdvisor reports as
// container_memory_working_set_bytes and the kubelet evicts on.
//
// Cost (bench/resource_usage_benchmark.cc, Release, a 2-vCPU VM whose
// system calls are slow, ~1.3 us each): a process is one open/read/close of
// /proc/PID/stat, whose kernel side walks the process's threads, plus one
// RecordObserved of 7 values under the recorder's lock: ~8.5 us per process
// on the real /proc (~0.2 us of it recording), ~5 us on a fake tree. A v2
// container is 5 files (~18 us on a fake tree), a v1 one 8 (~28 us fake,
// ~70 us for this machine's own v1 cgroup). So 4096 processes take ~35 ms
// a tick: 0.35% of one CPU at a 10 s interval. ResourceSampler bounds a
// tick to max_processes_per_tick and max_containers_per_tick entries; the
// rest wait for a later tick (a rotating window) and are counted as
// skipped. Nothing is allocated per tick for entries already seen.
#ifndef LOUPE_AGENT_RESOURCE_USAGE_H_
#define LOUPE_AGENT_RESOURCE_USAGE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "agent/memory_history.h"
#include "decoders/model/metrics.h"
#include "decoders/model/span.h"

namespace loupe {

enum class ReadStatus : uint8_t {
  kOk,
  kGone,   // the process or cgroup no longer exists
  kError,  // it exists but could not be read or parsed (permissions, hidepid)
};

// ---- Processes --------------------------------------------------------------

struct ProcessUsage {
  ReadStatus status = ReadStatus::kError;
  double user_seconds = 0;    // utime
  double system_seconds = 0;  // stime
  uint64_t minor_faults = 0;
  uint64_t major_faults = 0;
  uint64_t threads = 0;
  uint64_t rss_bytes = 0;      // resident pages x page size
  uint64_t virtual_bytes = 0;  // vsize
  uint64_t start_ticks = 0;    // starttime: clock ticks after boot
};

// /proc/PID/stat under `proc_root` ("/proc", or a fake tree).
ProcessUsage ReadProcessUsage(const std::string& proc_root, uint32_t pid);

// One /proc/PID/stat line. The command name (field 2) is in parentheses and
// may itself hold spaces and ')': the fields are counted from the last ')'.
// kError when malformed.
ProcessUsage ParseProcStat(std::string_view line, long ticks_per_second, long page_size);

// The boot time (Unix ns) from `proc_root`/stat's btime, whole seconds; 0
// when unreadable. A process started at btime + starttime / ticks.
uint64_t ReadBootTimeUnixNs(const std::string& proc_root);

// ---- Cgroups ----------------------------------------------------------------

enum class CgroupVersion : uint8_t { kV1, kV2 };

// Where a cgroup's files are: a hierarchy's mount directory and the cgroup's
// path in it, as /proc/PID/cgroup names it ("/kubepods/burstable/pod.../<id>").
struct CgroupDir {
  std::string mount;  // "" when the hierarchy (v1: the controller) is not mounted
  std::string path;
};

struct CgroupLocation {
  CgroupVersion version = CgroupVersion::kV2;
  CgroupDir unified;  // v2
  // v1: one hierarchy per controller; cpu and cpuacct are often co-mounted
  // (the same mount for both).
  CgroupDir memory;
  CgroupDir cpu;
  CgroupDir cpuacct;
};

struct CgroupUsage {
  ReadStatus status = ReadStatus::kError;
  std::optional<uint64_t> memory_usage_bytes;
  // Empty when unlimited (memory_unlimited) or unknown.
  std::optional<uint64_t> memory_limit_bytes;
  bool memory_unlimited = false;
  std::optional<uint64_t> anon_bytes;  // v2 anon, v1 total_rss
  std::optional<uint64_t> file_bytes;  // v2 file, v1 total_cache
  std::optional<uint64_t> active_file_bytes;
  std::optional<uint64_t> inactive_file_bytes;
  std::optional<uint64_t> working_set_bytes;  // usage - inactive_file, clamped at 0
  std::optional<double> cpu_seconds;          // v2 usage_usec, v1 cpuacct.usage
  std::optional<double> cpu_user_seconds;
  std::optional<double> cpu_system_seconds;
  std::optional<uint64_t> cpu_periods;  // nr_periods
  std::optional<uint64_t> cpu_throttled_periods;
  std::optional<double> cpu_throttled_seconds;
  std::optional<uint64_t> oom_kills;
};

// `dir` is the cgroup's directory (mount + path).
CgroupUsage ReadCgroupV2Usage(std::string_view dir);
// Each controller's directory; "" for a controller that is not mounted.
CgroupUsage ReadCgroupV1Usage(std::string_view memory_dir, std::string_view cpu_dir,
                              std::string_view cpuacct_dir);
// Either of the above.
CgroupUsage ReadCgroupUsage(const CgroupLocation& location);

// mount + "/" + path without doubled or trailing slashes; "" when mount is "".
std::string JoinCgroupDir(std::string_view mount, std::string_view path);

// ---- Sampler ----------------------------------------------------------------

struct ResourceSamplerOptions {
  std::string proc_root = "/proc";
  // Where each container's memory samples are kept for OOM reports, by
  // memory cgroup path; may be null.
  MemoryHistory* memory_history = nullptr;
  size_t max_processes_per_tick = 4096;
  size_t max_containers_per_tick = 1024;
};

struct ResourceSamplerStats {
  uint64_t ticks = 0;
  uint64_t processes_sampled = 0;  // read and recorded
  uint64_t processes_skipped = 0;  // over max_processes_per_tick, left for a later tick
  uint64_t processes_gone = 0;     // exited (read as gone, or no longer listed)
  uint64_t process_errors = 0;     // unreadable /proc/PID/stat
  uint64_t containers_sampled = 0;
  uint64_t containers_skipped = 0;
  uint64_t containers_gone = 0;
  uint64_t container_errors = 0;  // cgroups with nothing readable
  uint64_t series_forgotten = 0;  // observed series dropped for gone entries
  uint64_t last_tick_ns = 0;      // wall time of the newest tick (CLOCK_MONOTONIC)
  uint64_t total_tick_ns = 0;
};

// Reads the CPU and memory of the processes and containers it is given each
// tick and sets the observed instruments of `recorder`:
//   process:   process.cpu.time{cpu.mode=user|system}, process.memory.usage,
//              process.memory.virtual,
//              process.paging.faults{system.paging.fault.type=major|minor},
//              process.thread.count
//   container: container.cpu.time{cpu.mode=user|system},
//              container.memory.usage, .working_set, .rss,
//              loupe.container.memory.limit (when limited),
//              loupe.container.cpu.periods, .throttled.periods,
//              .throttled.time, loupe.container.memory.oom_kills
// Entries that were listed before and are not now, or read as gone, have
// their series forgotten (MetricsRecorder::ForgetObserved). Sample() is
// meant for one thread (the agent's timer); stats() may be read from any.
class ResourceSampler {
 public:
  struct Process {
    uint32_t pid = 0;  // tgid
    std::shared_ptr<const Resource> resource;
  };
  struct Container {
    // What identifies the cgroup across ticks (its id or path): the sampler
    // remembers entries by it to tell which are gone.
    std::string key;
    std::shared_ptr<const Resource> resource;
    CgroupLocation location;
  };

  explicit ResourceSampler(MetricsRecorder& recorder, ResourceSamplerOptions options = {});

  // One tick: reads up to the per-tick bounds of both lists (a window that
  // moves on each tick when a list is longer) and records what it read at
  // now_unix_ns (CLOCK_REALTIME). Allocates only for entries it has not
  // seen before.
  void Sample(std::span<const Process> processes, std::span<const Container> containers,
              uint64_t now_unix_ns);

  ResourceSamplerStats stats() const;

 private:
  struct TrackedProcess {
    std::shared_ptr<const Resource> resource;
    uint64_t seen_tick = 0;  // the tick that last listed it
  };
  struct TrackedContainer {
    std::shared_ptr<const Resource> resource;
    uint64_t seen_tick = 0;
  };

  void RecordProcess(const Process& process, const ProcessUsage& usage, uint64_t now_unix_ns);
  void RecordContainer(const Container& container, const CgroupUsage& usage, uint64_t now_unix_ns);

  MetricsRecorder& recorder_;
  const ResourceSamplerOptions options_;
  const long ticks_per_second_;
  const uint64_t boot_unix_ns_;
  uint64_t tick_ = 0;
  size_t process_cursor_ = 0;
  size_t container_cursor_ = 0;
  absl::flat_hash_map<uint32_t, TrackedProcess> processes_;
  absl::flat_hash_map<std::string, TrackedContainer> containers_;
  // Scratch for the resources to forget at the end of a tick.
  std::vector<std::shared_ptr<const Resource>> gone_;

  mutable std::mutex stats_mu_;
  ResourceSamplerStats stats_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace loupe

#endif  // LOUPE_AGENT_RESOURCE_USAGE_H_
