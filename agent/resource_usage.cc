#include "agent/resource_usage.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <utility>

namespace loupe {

namespace {

// Paths and files live on the stack: no allocation per read. PATH_MAX
// bounds any path the kernel would open; the files read here are under
// 2 KiB (a v2 memory.stat of a 6.x kernel, the longest, is ~1.5 KiB), so
// 8 KiB leaves room for fields kernels add.
constexpr size_t kMaxPath = 4096;
constexpr size_t kFileBuffer = 8192;
// v1's "no limit" is PAGE_COUNTER_MAX pages (LONG_MAX rounded down to a
// page): anything from 2^62 up is no limit in practice.
constexpr uint64_t kUnlimitedBytes = uint64_t{1} << 62;

using PathBuffer = std::array<char, kMaxPath>;
using FileBuffer = std::array<char, kFileBuffer>;

enum class FileRead : uint8_t { kOk, kMissing, kError };

long TicksPerSecond() {
  const long ticks = sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

long PageSize() {
  const long size = sysconf(_SC_PAGESIZE);
  return size > 0 ? size : 4096;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Appends `part` at `*at`; false when it does not fit (with the final NUL).
bool Append(PathBuffer& out, size_t* at, std::string_view part) {
  if (*at + part.size() + 1 > out.size()) return false;
  std::memcpy(out.data() + *at, part.data(), part.size());
  *at += part.size();
  out[*at] = '\0';
  return true;
}

std::string_view TrimSlashes(std::string_view s, bool leading) {
  if (leading) {
    while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  }
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return s;
}

// mount + "/" + path + "/" + name, NUL-terminated. A mount of "/" stays
// the root ("/" + ...); an empty or "/" path adds nothing.
bool BuildPath(std::string_view mount, std::string_view path, std::string_view name,
               PathBuffer& out) {
  size_t at = 0;
  out[0] = '\0';
  const std::string_view m = TrimSlashes(mount, false);
  const std::string_view p = TrimSlashes(path, true);
  if (!Append(out, &at, m)) return false;
  if (!p.empty() && !(Append(out, &at, "/") && Append(out, &at, p))) return false;
  if (!name.empty() && !(Append(out, &at, "/") && Append(out, &at, name))) return false;
  if (at == 0 && !mount.empty()) return Append(out, &at, "/");  // mount "/" itself
  return true;
}

// The whole of a small file; a file longer than the buffer is cut (the
// fields read here come well before that). ESRCH: the process exited
// between open and read.
FileRead ReadFile(const char* path, FileBuffer& buffer, std::string_view* contents) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ESRCH || errno == ENOTDIR ? FileRead::kMissing
                                                                 : FileRead::kError;
  size_t len = 0;
  FileRead result = FileRead::kOk;
  while (len < buffer.size()) {
    const ssize_t n = read(fd, buffer.data() + len, buffer.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = errno == ESRCH || errno == ENODEV ? FileRead::kMissing : FileRead::kError;
      break;
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  close(fd);
  *contents = std::string_view(buffer.data(), len);
  return result;
}

FileRead ReadFileAt(std::string_view mount, std::string_view path, std::string_view name,
                    FileBuffer& buffer, std::string_view* contents) {
  PathBuffer p;
  if (!BuildPath(mount, path, name, p)) return FileRead::kError;
  return ReadFile(p.data(), buffer, contents);
}

bool Exists(std::string_view mount, std::string_view path) {
  PathBuffer p;
  return BuildPath(mount, path, "", p) && access(p.data(), F_OK) == 0;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<uint64_t> ParseU64(std::string_view s) {
  s = Trim(s);
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Calls fn(key, value) for every "key value" line of a flat-keyed file
// (memory.stat, cpu.stat, memory.events, cpuacct.stat).
template <typename Fn>
void ForEachKeyValue(std::string_view text, Fn&& fn) {
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) continue;
    if (std::optional<uint64_t> v = ParseU64(line.substr(space + 1))) fn(line.substr(0, space), *v);
  }
}

double UsecToSeconds(uint64_t us) { return static_cast<double>(us) / 1e6; }
double NsToSeconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

void SetLimit(uint64_t bytes, CgroupUsage* u) {
  if (bytes >= kUnlimitedBytes) {
    u->memory_unlimited = true;
  } else {
    u->memory_limit_bytes = bytes;
  }
}

void DeriveWorkingSet(CgroupUsage* u) {
  if (!u->memory_usage_bytes || !u->inactive_file_bytes) return;
  // cAdvisor / kubelet: usage minus the inactive file cache the kernel
  // reclaims first, never below 0 (the two are read at different moments).
  u->working_set_bytes = *u->memory_usage_bytes > *u->inactive_file_bytes
                             ? *u->memory_usage_bytes - *u->inactive_file_bytes
                             : 0;
}

struct Dir {
  std::string_view mount;
  std::string_view path;
};

CgroupUsage ReadV2(Dir dir) {
  CgroupUsage u;
  if (dir.mount.empty()) return u;  // kError: no directory to read
  FileBuffer buffer;
  std::string_view text;
  bool any = false;
  if (ReadFileAt(dir.mount, dir.path, "memory.current", buffer, &text) == FileRead::kOk) {
    any = true;
    u.memory_usage_bytes = ParseU64(text);
  }
  if (ReadFileAt(dir.mount, dir.path, "memory.max", buffer, &text) == FileRead::kOk) {
    any = true;
    if (Trim(text) == "max") {
      u.memory_unlimited = true;
    } else if (std::optional<uint64_t> v = ParseU64(text)) {
      SetLimit(*v, &u);
    }
  }
  if (ReadFileAt(dir.mount, dir.path, "memory.stat", buffer, &text) == FileRead::kOk) {
    any = true;
    ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
      if (key == "anon") {
        u.anon_bytes = v;
      } else if (key == "file") {
        u.file_bytes = v;
      } else if (key == "active_file") {
        u.active_file_bytes = v;
      } else if (key == "inactive_file") {
        u.inactive_file_bytes = v;
      }
    });
  }
  if (ReadFileAt(dir.mount, dir.path, "memory.events", buffer, &text) == FileRead::kOk) {
    any = true;
    ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
      if (key == "oom_kill") u.oom_kills = v;
    });
  }
  if (ReadFileAt(dir.mount, dir.path, "cpu.stat", buffer, &text) == FileRead::kOk) {
    any = true;
    ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
      if (key == "usage_usec") {
        u.cpu_seconds = UsecToSeconds(v);
      } else if (key == "user_usec") {
        u.cpu_user_seconds = UsecToSeconds(v);
      } else if (key == "system_usec") {
        u.cpu_system_seconds = UsecToSeconds(v);
      } else if (key == "nr_periods") {
        u.cpu_periods = v;
      } else if (key == "nr_throttled") {
        u.cpu_throttled_periods = v;
      } else if (key == "throttled_usec") {
        u.cpu_throttled_seconds = UsecToSeconds(v);
      }
    });
  }
  DeriveWorkingSet(&u);
  // Nothing readable: gone when the directory went, else unreadable.
  u.status = any ? ReadStatus::kOk
                 : (Exists(dir.mount, dir.path) ? ReadStatus::kError : ReadStatus::kGone);
  return u;
}

CgroupUsage ReadV1(Dir memory, Dir cpu, Dir cpuacct) {
  CgroupUsage u;
  FileBuffer buffer;
  std::string_view text;
  bool any = false;
  if (!memory.mount.empty()) {
    if (ReadFileAt(memory.mount, memory.path, "memory.usage_in_bytes", buffer, &text) ==
        FileRead::kOk) {
      any = true;
      u.memory_usage_bytes = ParseU64(text);
    }
    if (ReadFileAt(memory.mount, memory.path, "memory.limit_in_bytes", buffer, &text) ==
        FileRead::kOk) {
      any = true;
      if (std::optional<uint64_t> v = ParseU64(text)) SetLimit(*v, &u);
    }
    if (ReadFileAt(memory.mount, memory.path, "memory.stat", buffer, &text) == FileRead::kOk) {
      any = true;
      // usage_in_bytes is hierarchical: so are the total_* counters; the
      // plain ones (this cgroup alone) only stand in for them.
      std::optional<uint64_t> rss, cache, active_file, inactive_file;
      std::optional<uint64_t> total_rss, total_cache, total_active_file, total_inactive_file;
      ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
        if (key == "rss") {
          rss = v;
        } else if (key == "cache") {
          cache = v;
        } else if (key == "active_file") {
          active_file = v;
        } else if (key == "inactive_file") {
          inactive_file = v;
        } else if (key == "total_rss") {
          total_rss = v;
        } else if (key == "total_cache") {
          total_cache = v;
        } else if (key == "total_active_file") {
          total_active_file = v;
        } else if (key == "total_inactive_file") {
          total_inactive_file = v;
        }
      });
      u.anon_bytes = total_rss ? total_rss : rss;
      u.file_bytes = total_cache ? total_cache : cache;
      u.active_file_bytes = total_active_file ? total_active_file : active_file;
      u.inactive_file_bytes = total_inactive_file ? total_inactive_file : inactive_file;
    }
    if (ReadFileAt(memory.mount, memory.path, "memory.oom_control", buffer, &text) ==
        FileRead::kOk) {
      any = true;
      ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
        if (key == "oom_kill") u.oom_kills = v;
      });
    }
  }
  if (!cpuacct.mount.empty()) {
    if (ReadFileAt(cpuacct.mount, cpuacct.path, "cpuacct.usage", buffer, &text) == FileRead::kOk) {
      any = true;
      if (std::optional<uint64_t> v = ParseU64(text)) u.cpu_seconds = NsToSeconds(*v);
    }
    if (ReadFileAt(cpuacct.mount, cpuacct.path, "cpuacct.usage_user", buffer, &text) ==
        FileRead::kOk) {
      any = true;
      if (std::optional<uint64_t> v = ParseU64(text)) u.cpu_user_seconds = NsToSeconds(*v);
    }
    if (ReadFileAt(cpuacct.mount, cpuacct.path, "cpuacct.usage_sys", buffer, &text) ==
        FileRead::kOk) {
      any = true;
      if (std::optional<uint64_t> v = ParseU64(text)) u.cpu_system_seconds = NsToSeconds(*v);
    }
    // Before 4.7 (no usage_user/usage_sys): cpuacct.stat, in USER_HZ ticks.
    if ((!u.cpu_user_seconds || !u.cpu_system_seconds) &&
        ReadFileAt(cpuacct.mount, cpuacct.path, "cpuacct.stat", buffer, &text) == FileRead::kOk) {
      any = true;
      const double ticks = static_cast<double>(TicksPerSecond());
      std::optional<double> user, system;
      ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
        if (key == "user") {
          user = static_cast<double>(v) / ticks;
        } else if (key == "system") {
          system = static_cast<double>(v) / ticks;
        }
      });
      if (user && system) {
        u.cpu_user_seconds = user;
        u.cpu_system_seconds = system;
      }
    }
    if (!u.cpu_user_seconds || !u.cpu_system_seconds) {
      u.cpu_user_seconds.reset();
      u.cpu_system_seconds.reset();
    }
  }
  if (!cpu.mount.empty() &&
      ReadFileAt(cpu.mount, cpu.path, "cpu.stat", buffer, &text) == FileRead::kOk) {
    any = true;
    ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
      if (key == "nr_periods") {
        u.cpu_periods = v;
      } else if (key == "nr_throttled") {
        u.cpu_throttled_periods = v;
      } else if (key == "throttled_time") {
        u.cpu_throttled_seconds = NsToSeconds(v);
      }
    });
  }
  DeriveWorkingSet(&u);
  if (any) {
    u.status = ReadStatus::kOk;
  } else if (memory.mount.empty() && cpu.mount.empty() && cpuacct.mount.empty()) {
    u.status = ReadStatus::kError;  // nowhere to look: not a sign that it is gone
  } else {
    const bool exists = (!memory.mount.empty() && Exists(memory.mount, memory.path)) ||
                        (!cpu.mount.empty() && Exists(cpu.mount, cpu.path)) ||
                        (!cpuacct.mount.empty() && Exists(cpuacct.mount, cpuacct.path));
    u.status = exists ? ReadStatus::kError : ReadStatus::kGone;
  }
  return u;
}

// The attribute sets of the sampled series, made once (and kept until exit).
const Attributes* MakeAttributes(std::string_view key, std::string_view value) {
  auto* attributes = new Attributes();
  attributes->Set(key, std::string(value));
  return attributes;
}

struct SampledAttributes {
  const Attributes* user = MakeAttributes("cpu.mode", "user");
  const Attributes* system = MakeAttributes("cpu.mode", "system");
  const Attributes* major = MakeAttributes("system.paging.fault.type", "major");
  const Attributes* minor = MakeAttributes("system.paging.fault.type", "minor");
};

const SampledAttributes& Sampled() {
  static const auto* const kSets = new SampledAttributes();
  return *kSets;
}

// Order-insensitive equality of two resources' attributes (the recorder's
// notion of one resource).
bool SameResource(const std::shared_ptr<const Resource>& a,
                  const std::shared_ptr<const Resource>& b) {
  if (a == b) return true;
  if (a == nullptr || b == nullptr) return false;
  if (a->attributes.size() != b->attributes.size()) return false;
  for (const Attribute& item : a->attributes.items()) {
    const AttributeValue* other = b->attributes.Find(item.key);
    if (other == nullptr || !(*other == item.value)) return false;
  }
  return true;
}

}  // namespace

ProcessUsage ParseProcStat(std::string_view line, long ticks_per_second, long page_size) {
  ProcessUsage u;
  u.status = ReadStatus::kError;
  // "pid (comm) state ppid ...": comm is whatever the process named itself
  // (up to 15 bytes, spaces and parentheses included), so the fixed fields
  // start after the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0 || page_size <= 0) return u;
  std::string_view rest = line.substr(close + 1);
  // Field numbers of proc(5), 1-based; `rest` starts at field 3 (state).
  enum : int {
    kMinflt = 10,
    kMajflt = 12,
    kUtime = 14,
    kStime = 15,
    kNumThreads = 20,
    kStartTime = 22,
    kVsize = 23,
    kRss = 24
  };
  uint64_t values[kRss + 1] = {};
  int field = 2;
  size_t at = 0;
  while (field < kRss) {
    while (at < rest.size() && (rest[at] == ' ' || rest[at] == '\n')) ++at;
    if (at >= rest.size()) break;
    size_t end = at;
    while (end < rest.size() && rest[end] != ' ' && rest[end] != '\n') ++end;
    ++field;
    const std::string_view token = rest.substr(at, end - at);
    at = end;
    switch (field) {
      case kMinflt:
      case kMajflt:
      case kUtime:
      case kStime:
      case kNumThreads:
      case kStartTime:
      case kVsize:
      case kRss: {
        const auto [ptr, ec] =
            std::from_chars(token.data(), token.data() + token.size(), values[field]);
        if (ec != std::errc() || ptr != token.data() + token.size()) return u;
        break;
      }
      default:
        break;  // signed or unused fields (priority, nice, tty_nr, ...)
    }
  }
  if (field < kRss) return u;
  const double ticks = static_cast<double>(ticks_per_second);
  u.user_seconds = static_cast<double>(values[kUtime]) / ticks;
  u.system_seconds = static_cast<double>(values[kStime]) / ticks;
  u.minor_faults = values[kMinflt];
  u.major_faults = values[kMajflt];
  u.threads = values[kNumThreads];
  u.start_ticks = values[kStartTime];
  u.virtual_bytes = values[kVsize];
  u.rss_bytes = values[kRss] * static_cast<uint64_t>(page_size);
  u.status = ReadStatus::kOk;
  return u;
}

ProcessUsage ReadProcessUsage(const std::string& proc_root, uint32_t pid) {
  static const long kTicks = TicksPerSecond();
  static const long kPageSize = PageSize();
  char digits[16];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), pid);
  ProcessUsage u;
  PathBuffer path;
  if (ec != std::errc() || proc_root.empty() ||
      !BuildPath(proc_root, std::string_view(digits, static_cast<size_t>(end - digits)), "stat",
                 path)) {
    return u;  // kError
  }
  FileBuffer buffer;
  std::string_view text;
  switch (ReadFile(path.data(), buffer, &text)) {
    case FileRead::kOk:
      break;
    case FileRead::kMissing:
      u.status = ReadStatus::kGone;
      return u;
    case FileRead::kError:
      return u;
  }
  // Reaped between open and read: an empty file.
  if (text.empty()) {
    u.status = ReadStatus::kGone;
    return u;
  }
  return ParseProcStat(text, kTicks, kPageSize);
}

uint64_t ReadBootTimeUnixNs(const std::string& proc_root) {
  // /proc/stat has a line per CPU and an "intr" line of one number per
  // interrupt before btime: tens of KiB on big machines. Read once.
  const std::string path = proc_root + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::string text;
  char chunk[16384];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(chunk, static_cast<size_t>(n));
    if (text.size() > (16u << 20)) break;
  }
  close(fd);
  uint64_t btime = 0;
  ForEachKeyValue(text, [&](std::string_view key, uint64_t v) {
    if (key == "btime") btime = v;
  });
  return btime * 1'000'000'000ull;
}

CgroupUsage ReadCgroupV2Usage(std::string_view dir) { return ReadV2(Dir{dir, ""}); }

CgroupUsage ReadCgroupV1Usage(std::string_view memory_dir, std::string_view cpu_dir,
                              std::string_view cpuacct_dir) {
  return ReadV1(Dir{memory_dir, ""}, Dir{cpu_dir, ""}, Dir{cpuacct_dir, ""});
}

CgroupUsage ReadCgroupUsage(const CgroupLocation& location) {
  if (location.version == CgroupVersion::kV2) {
    return ReadV2(Dir{location.unified.mount, location.unified.path});
  }
  return ReadV1(Dir{location.memory.mount, location.memory.path},
                Dir{location.cpu.mount, location.cpu.path},
                Dir{location.cpuacct.mount, location.cpuacct.path});
}

std::string JoinCgroupDir(std::string_view mount, std::string_view path) {
  if (mount.empty()) return std::string();
  PathBuffer out;
  if (!BuildPath(mount, path, "", out)) return std::string();
  return std::string(out.data());
}

// ---- ResourceSampler ----------------------------------------------------------

ResourceSampler::ResourceSampler(MetricsRecorder& recorder, ResourceSamplerOptions options)
    : recorder_(recorder),
      options_(std::move(options)),
      ticks_per_second_(TicksPerSecond()),
      boot_unix_ns_(ReadBootTimeUnixNs(options_.proc_root)) {}

void ResourceSampler::Sample(std::span<const Process> processes,
                             std::span<const Container> containers, uint64_t now_unix_ns) {
  const uint64_t started = MonotonicNs();
  ++tick_;
  ResourceSamplerStats counts;  // this tick's, added to stats_ at the end
  gone_.clear();

  // Processes: every listed one is marked seen (skipped ones too, they are
  // alive); those in this tick's window are read.
  {
    const size_t n = processes.size();
    const size_t budget = std::min(n, options_.max_processes_per_tick);
    const size_t first = n == 0 ? 0 : process_cursor_ % n;
    for (size_t i = 0; i < n; ++i) {
      const Process& p = processes[i];
      if (p.resource == nullptr) continue;
      auto [it, inserted] = processes_.try_emplace(p.pid);
      TrackedProcess& tracked = it->second;
      if (!inserted && tracked.resource != p.resource) {
        // Another resource for this pid: a new process reused it, or the
        // agent re-described the same one (then nothing is forgotten).
        if (tracked.resource != nullptr && !SameResource(tracked.resource, p.resource)) {
          gone_.push_back(std::move(tracked.resource));
          ++counts.processes_gone;
        }
        tracked.resource = p.resource;
      } else if (inserted) {
        tracked.resource = p.resource;
      }
      tracked.seen_tick = tick_;
      if ((i + n - first) % n >= budget) {
        ++counts.processes_skipped;
        continue;
      }
      const ProcessUsage usage = ReadProcessUsage(options_.proc_root, p.pid);
      if (usage.status == ReadStatus::kGone) {
        gone_.push_back(std::move(tracked.resource));
        ++counts.processes_gone;
        tracked.resource = nullptr;
        tracked.seen_tick = 0;  // erased below
        continue;
      }
      if (usage.status == ReadStatus::kError) {
        ++counts.process_errors;
        continue;
      }
      ++counts.processes_sampled;
      RecordProcess(p, usage, now_unix_ns);
    }
    process_cursor_ = n == 0 ? 0 : (first + budget) % n;
    for (auto it = processes_.begin(); it != processes_.end();) {
      if (it->second.seen_tick == tick_) {
        ++it;
        continue;
      }
      if (it->second.resource != nullptr) {
        gone_.push_back(std::move(it->second.resource));
        ++counts.processes_gone;
      }
      processes_.erase(it++);
    }
  }

  // Containers, the same way, by key.
  {
    const size_t n = containers.size();
    const size_t budget = std::min(n, options_.max_containers_per_tick);
    const size_t first = n == 0 ? 0 : container_cursor_ % n;
    for (size_t i = 0; i < n; ++i) {
      const Container& c = containers[i];
      if (c.resource == nullptr) continue;
      auto it = containers_.find(c.key);
      if (it == containers_.end()) it = containers_.emplace(c.key, TrackedContainer{}).first;
      TrackedContainer& tracked = it->second;
      if (tracked.resource != c.resource) {
        if (tracked.resource != nullptr && !SameResource(tracked.resource, c.resource)) {
          gone_.push_back(std::move(tracked.resource));
          ++counts.containers_gone;
        }
        tracked.resource = c.resource;
      }
      tracked.seen_tick = tick_;
      if ((i + n - first) % n >= budget) {
        ++counts.containers_skipped;
        continue;
      }
      const CgroupUsage usage = ReadCgroupUsage(c.location);
      if (usage.status == ReadStatus::kGone) {
        gone_.push_back(std::move(tracked.resource));
        ++counts.containers_gone;
        tracked.resource = nullptr;
        tracked.seen_tick = 0;
        continue;
      }
      if (usage.status == ReadStatus::kError) {
        ++counts.container_errors;
        continue;
      }
      ++counts.containers_sampled;
      RecordContainer(c, usage, now_unix_ns);
    }
    container_cursor_ = n == 0 ? 0 : (first + budget) % n;
    for (auto it = containers_.begin(); it != containers_.end();) {
      if (it->second.seen_tick == tick_) {
        ++it;
        continue;
      }
      if (it->second.resource != nullptr) {
        gone_.push_back(std::move(it->second.resource));
        ++counts.containers_gone;
      }
      containers_.erase(it++);
    }
  }

  for (const std::shared_ptr<const Resource>& resource : gone_) {
    counts.series_forgotten += recorder_.ForgetObserved(resource);
  }
  gone_.clear();

  const uint64_t elapsed = MonotonicNs() - started;
  std::lock_guard<std::mutex> lock(stats_mu_);
  ++stats_.ticks;
  stats_.processes_sampled += counts.processes_sampled;
  stats_.processes_skipped += counts.processes_skipped;
  stats_.processes_gone += counts.processes_gone;
  stats_.process_errors += counts.process_errors;
  stats_.containers_sampled += counts.containers_sampled;
  stats_.containers_skipped += counts.containers_skipped;
  stats_.containers_gone += counts.containers_gone;
  stats_.container_errors += counts.container_errors;
  stats_.series_forgotten += counts.series_forgotten;
  stats_.last_tick_ns = elapsed;
  stats_.total_tick_ns += elapsed;
}

void ResourceSampler::RecordProcess(const Process& process, const ProcessUsage& usage,
                                    uint64_t now_unix_ns) {
  // The counters count from the process's start: btime + starttime. (A
  // changed starttime is a new process under a reused pid; the recorder
  // restarts the series from the new start.)
  uint64_t start = 0;
  if (boot_unix_ns_ != 0) {
    const uint64_t ticks = usage.start_ticks;
    const uint64_t per_second = static_cast<uint64_t>(ticks_per_second_);
    start = boot_unix_ns_ + ticks / per_second * 1'000'000'000ull +
            ticks % per_second * 1'000'000'000ull / per_second;
  }
  const SampledAttributes& sets = Sampled();
  const std::array<ObservedValue, 7> values = {{
      {ObservedInstrument::kProcessCpuTime, sets.user, usage.user_seconds, start},
      {ObservedInstrument::kProcessCpuTime, sets.system, usage.system_seconds, start},
      {ObservedInstrument::kProcessMemoryUsage, nullptr, static_cast<double>(usage.rss_bytes), 0},
      {ObservedInstrument::kProcessMemoryVirtual, nullptr, static_cast<double>(usage.virtual_bytes),
       0},
      {ObservedInstrument::kProcessPagingFaults, sets.major,
       static_cast<double>(usage.major_faults), start},
      {ObservedInstrument::kProcessPagingFaults, sets.minor,
       static_cast<double>(usage.minor_faults), start},
      {ObservedInstrument::kProcessThreadCount, nullptr, static_cast<double>(usage.threads), 0},
  }};
  recorder_.RecordObserved(process.resource, values, now_unix_ns);
}

void ResourceSampler::RecordContainer(const Container& container, const CgroupUsage& usage,
                                      uint64_t now_unix_ns) {
  if (options_.memory_history != nullptr && usage.memory_usage_bytes) {
    MemorySample sample;
    sample.time_unix_ns = now_unix_ns;
    sample.usage_bytes = *usage.memory_usage_bytes;
    sample.working_set_bytes = usage.working_set_bytes;
    sample.limit_bytes = usage.memory_limit_bytes;
    const CgroupLocation& at = container.location;
    options_.memory_history->Add(
        at.version == CgroupVersion::kV1 ? at.memory.path : at.unified.path, sample);
  }
  const SampledAttributes& sets = Sampled();
  std::array<ObservedValue, 12> values;
  size_t n = 0;
  auto add = [&](ObservedInstrument instrument, const Attributes* attributes, double value) {
    values[n++] = ObservedValue{instrument, attributes, value, 0};
  };
  auto add_bytes = [&](ObservedInstrument instrument, const std::optional<uint64_t>& bytes) {
    if (bytes) add(instrument, nullptr, static_cast<double>(*bytes));
  };
  // A container's CPU series have cpu.mode on all points or on none
  // (semantic conventions): the split when the kernel gives it, else the
  // total alone.
  if (usage.cpu_user_seconds && usage.cpu_system_seconds) {
    add(ObservedInstrument::kContainerCpuTime, sets.user, *usage.cpu_user_seconds);
    add(ObservedInstrument::kContainerCpuTime, sets.system, *usage.cpu_system_seconds);
  } else if (usage.cpu_seconds) {
    add(ObservedInstrument::kContainerCpuTime, nullptr, *usage.cpu_seconds);
  }
  add_bytes(ObservedInstrument::kContainerMemoryUsage, usage.memory_usage_bytes);
  add_bytes(ObservedInstrument::kContainerMemoryWorkingSet, usage.working_set_bytes);
  add_bytes(ObservedInstrument::kContainerMemoryRss, usage.anon_bytes);
  add_bytes(ObservedInstrument::kContainerMemoryLimit, usage.memory_limit_bytes);
  if (usage.cpu_periods) {
    add(ObservedInstrument::kContainerCpuPeriods, nullptr, static_cast<double>(*usage.cpu_periods));
  }
  if (usage.cpu_throttled_periods) {
    add(ObservedInstrument::kContainerCpuThrottledPeriods, nullptr,
        static_cast<double>(*usage.cpu_throttled_periods));
  }
  if (usage.cpu_throttled_seconds) {
    add(ObservedInstrument::kContainerCpuThrottledTime, nullptr, *usage.cpu_throttled_seconds);
  }
  if (usage.oom_kills) {
    add(ObservedInstrument::kContainerMemoryOomKills, nullptr,
        static_cast<double>(*usage.oom_kills));
  }
  recorder_.RecordObserved(container.resource, std::span<const ObservedValue>(values.data(), n),
                           now_unix_ns);
}

ResourceSamplerStats ResourceSampler::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

}  // namespace loupe
