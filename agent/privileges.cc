#include "agent/privileges.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/log.h"

namespace loupe {

namespace {

constexpr int kMaxCapability = 63;

bool Has(CapabilityMask mask, int cap) { return (mask & CapabilityBit(cap)) != 0; }

// absl::StripAsciiWhitespace takes absl::string_view, which Debian's Abseil
// does not alias to std::string_view.
std::string_view Trim(std::string_view text) {
  while (!text.empty() && absl::ascii_isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && absl::ascii_isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

bool KernelBefore(const PrivilegeFacts& f, int major, int minor) {
  return f.kernel_major < major || (f.kernel_major == major && f.kernel_minor < minor);
}

}  // namespace

std::string CapabilityNames(CapabilityMask mask) {
  std::vector<std::string> names;
  for (int cap = 0; cap <= kMaxCapability; ++cap) {
    if (!Has(mask, cap)) continue;
    char* name = cap_to_name(static_cast<cap_value_t>(cap));
    if (name == nullptr) {
      names.push_back(absl::StrCat("capability ", cap));
      continue;
    }
    // libcap names known capabilities "cap_sys_ptrace" and others by number.
    std::string text = absl::AsciiStrToUpper(name);
    cap_free(name);
    names.push_back(absl::StartsWith(text, "CAP_") ? text : absl::StrCat("capability ", text));
  }
  return names.empty() ? "none" : absl::StrJoin(names, ", ");
}

std::optional<int> CapabilityFromName(std::string_view name) {
  std::string lower = absl::AsciiStrToLower(std::string(Trim(name)));
  if (lower.empty()) return std::nullopt;
  if (!absl::StartsWith(lower, "cap_")) lower = absl::StrCat("cap_", lower);
  cap_value_t value = 0;
  if (cap_from_name(lower.c_str(), &value) != 0 || value < 0 || value > kMaxCapability) {
    return std::nullopt;
  }
  return static_cast<int>(value);
}

std::optional<CapabilityMask> ParseCapabilityHex(std::string_view hex) {
  hex = Trim(hex);
  CapabilityMask value = 0;
  const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), value, 16);
  if (hex.empty() || ec != std::errc() || end != hex.data() + hex.size()) return std::nullopt;
  return value;
}

PrivilegeAssessment AssessPrivileges(const PrivilegeFacts& f) {
  PrivilegeAssessment a;
  const CapabilityMask eff = f.effective;
  const bool sys_admin = Has(eff, kCapSysAdmin);
  if (!sys_admin && !(Has(eff, kCapBpf) && Has(eff, kCapPerfmon))) {
    // The first words are what tests and users grep for; keep them.
    std::string has = "neither";
    if (Has(eff, kCapBpf)) has = "only CAP_BPF";
    if (Has(eff, kCapPerfmon)) has = "only CAP_PERFMON";
    a.fatal = absl::StrCat(
        "loupe needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load its eBPF programs and "
        "has ", has, ": run it as root or with those capabilities (see docs/install-vm.md), "
        "or replay a recording with --replay FILE, which needs no privileges");
    return a;
  }
  const bool dac_read = Has(eff, kCapDacReadSearch) || Has(eff, kCapDacOverride);
  if (f.tracefs == TracefsState::kMissing && !sys_admin) {
    a.fatal =
        "tracefs is not mounted and mounting it needs CAP_SYS_ADMIN, which loupe lacks: mount it "
        "first with 'mount -t tracefs nodev /sys/kernel/tracing' (systemd's "
        "sys-kernel-tracing.mount does at boot), or grant CAP_SYS_ADMIN";
    return a;
  }
  if (f.tracefs == TracefsState::kUnreadable && !dac_read) {
    a.fatal = absl::StrCat(
        "tracefs is mounted but user ", f.uid,
        " may not read it (its root directory is mode 0700): loupe needs CAP_DAC_READ_SEARCH "
        "for it, or run it as root");
    return a;
  }
  if (f.metrics_port != 0 && f.metrics_port < f.unprivileged_port_start &&
      !Has(eff, kCapNetBindService)) {
    a.fatal = absl::StrCat("the /metrics port ", f.metrics_port,
                           " is below net.ipv4.ip_unprivileged_port_start (",
                           f.unprivileged_port_start,
                           ") and binding it needs CAP_NET_BIND_SERVICE, which loupe lacks: "
                           "choose a port of ", f.unprivileged_port_start,
                           " or above with --metrics-listen, or grant CAP_NET_BIND_SERVICE");
    return a;
  }
  // The running agent keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH only:
  // what the others allow now is gone after the drop.
  if (!Has(eff, kCapSysPtrace)) {
    a.features_off.push_back(
        "process names from the environment are off for most processes: without "
        "CAP_SYS_PTRACE loupe cannot read /proc/<pid>/exe, nor /proc/<pid>/environ "
        "(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) of processes owned by another user or "
        "holding capabilities it lacks, so their spans carry no process.executable.path and "
        "take the process name as service.name");
  }
  if (!Has(eff, kCapDacReadSearch)) {
    a.features_off.push_back(
        "reading other users' files is off: without CAP_DAC_READ_SEARCH loupe cannot read "
        "/proc/<pid>/environ of processes owned by another user (mode 0400), so their "
        "OTEL_SERVICE_NAME is not seen, nor cgroup files a container runtime made private");
  }
  // Linux 5.11 moved BPF memory from RLIMIT_MEMLOCK to the memory cgroup
  // (the "bpf: switch to memcg-based memory accounting" series); libbpf
  // raises the limit itself on older kernels, which needs CAP_SYS_RESOURCE
  // unless the limit is already unlimited.
  if (KernelBefore(f, 5, 11) && !f.memlock_unlimited && !Has(eff, kCapSysResource)) {
    a.features_off.push_back(absl::StrCat(
        "raising RLIMIT_MEMLOCK is off: Linux ", f.kernel_major, ".", f.kernel_minor,
        " charges BPF maps to it and raising it needs CAP_SYS_RESOURCE, so loading may fail "
        "with 'Operation not permitted': raise the limit first (ulimit -l unlimited, or "
        "LimitMEMLOCK=infinity in a systemd unit) or grant CAP_SYS_RESOURCE"));
  }
  return a;
}

CapabilityMask CapabilitiesToKeep(CapabilityMask effective, bool map_reads_need_bpf) {
  CapabilityMask wanted = CapabilityBit(kCapSysPtrace) | CapabilityBit(kCapDacReadSearch);
  if (map_reads_need_bpf) wanted |= CapabilityBit(kCapBpf);
  return effective & wanted;
}

namespace {

CapabilityMask ReadOwnCapabilities(cap_flag_t flag) {
  CapabilityMask mask = 0;
  cap_t caps = cap_get_proc();
  if (caps == nullptr) return 0;
  const int max = std::min<int>(static_cast<int>(cap_max_bits()) - 1, kMaxCapability);
  for (int cap = 0; cap <= max; ++cap) {
    cap_flag_value_t value = CAP_CLEAR;
    if (cap_get_flag(caps, static_cast<cap_value_t>(cap), flag, &value) == 0 && value == CAP_SET) {
      mask |= CapabilityBit(cap);
    }
  }
  cap_free(caps);
  return mask;
}

CapabilityMask ReadOwnBoundingSet() {
  CapabilityMask mask = 0;
  const int max = std::min<int>(static_cast<int>(cap_max_bits()) - 1, kMaxCapability);
  for (int cap = 0; cap <= max; ++cap) {
    if (cap_get_bound(static_cast<cap_value_t>(cap)) == 1) mask |= CapabilityBit(cap);
  }
  return mask;
}

TracefsState ProbeTracefs() {
  // The directories EnsureTracefs (agent/system.cc) looks at, in its order.
  bool denied = false;
  for (const char* dir :
       {"/sys/kernel/debug/tracing/events/syscalls", "/sys/kernel/tracing/events/syscalls"}) {
    struct stat st {};
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return TracefsState::kReadable;
    denied = denied || errno == EACCES;
  }
  return denied ? TracefsState::kUnreadable : TracefsState::kMissing;
}

uint16_t ListenPort(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return 0;
  uint16_t port = 0;
  const char* begin = listen.data() + colon + 1;
  const char* end = listen.data() + listen.size();
  if (std::from_chars(begin, end, port).ec != std::errc()) return 0;
  return port;
}

}  // namespace

PrivilegeFacts ReadPrivilegeFacts(const AgentConfig& config) {
  PrivilegeFacts f;
  f.effective = ReadOwnCapabilities(CAP_EFFECTIVE);
  f.tracefs = ProbeTracefs();
  f.uid = geteuid();
  utsname u{};
  if (uname(&u) == 0) {
    std::sscanf(u.release, "%d.%d", &f.kernel_major, &f.kernel_minor);
  }
  // Raising the soft limit up to the hard one needs no privilege.
  rlimit memlock{};
  f.memlock_unlimited =
      getrlimit(RLIMIT_MEMLOCK, &memlock) == 0 && memlock.rlim_max == RLIM_INFINITY;
  f.metrics_port = config.metrics_listen.empty() ? 0 : ListenPort(config.metrics_listen);
  std::ifstream start("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  int value = 0;
  if (start >> value && value >= 0 && value <= 65536) {
    f.unprivileged_port_start = static_cast<uint16_t>(std::min(value, 65535));
  }
  return f;
}

absl::Status CheckStartupPrivileges(const AgentConfig& config) {
  const PrivilegeAssessment a = AssessPrivileges(ReadPrivilegeFacts(config));
  if (a.fatal) return absl::PermissionDeniedError(*a.fatal);
  for (const std::string& line : a.features_off) LogWarn(line);
  return absl::OkStatus();
}

CapabilityMask ServingCapabilities(CapabilityMask effective, const PrivilegeFacts& facts,
                                   bool map_reads_need_bpf) {
  CapabilityMask wanted = 0;
  if (facts.metrics_port != 0 && facts.metrics_port < facts.unprivileged_port_start) {
    wanted |= CapabilityBit(kCapNetBindService);
  }
  if (map_reads_need_bpf) wanted |= CapabilityBit(kCapBpf);
  return effective & wanted;
}

// ---------------------------------------------------------------------------
// Dropping on every thread.
//
// Linux keeps capabilities, the bounding set, the ambient set and
// no_new_privs per thread, and capset(2) changes only the calling thread.
// By the time the programs are attached, the exporters and libraries (gRPC,
// libcurl) run threads of their own. libcap's answer, libpsx, only reaches
// threads created through its link-time wrapper of pthread_create; Debian
// 12's libpsx 2.66 missed every std::thread and library thread when tried
// here. So each thread is sent a signal whose handler applies the same plan
// with raw system calls (async-signal-safe), and /proc/self/task/<tid>/status
// is read back to check that every thread got it. Threads that block every
// signal (the metrics server's) are started reduced instead
// (RunWithServingPrivileges).

namespace {

enum DropFailure : uint32_t {
  kBoundingFailed = 1,
  kAmbientFailed = 2,
  kCapsetFailed = 4,
  kNoNewPrivsFailed = 8,
};

struct ThreadPlan {
  __user_cap_data_struct caps[2] = {};
  CapabilityMask bounding_drop = 0;
};

ThreadPlan g_plan;
std::atomic<int> g_acks{0};
std::atomic<uint32_t> g_failures{0};

// Bounding-set drops need CAP_SETPCAP in the effective set.
ThreadPlan MakePlan(CapabilityMask keep, CapabilityMask effective, CapabilityMask bounding) {
  ThreadPlan plan;
  for (int i = 0; i < 2; ++i) {
    const auto word = static_cast<uint32_t>(keep >> (32 * i));
    plan.caps[i].effective = word;
    plan.caps[i].permitted = word;
    plan.caps[i].inheritable = 0;
  }
  plan.bounding_drop = Has(effective, kCapSetpcap) ? bounding & ~keep : 0;
  return plan;
}

uint32_t ApplyPlanToThisThread(const ThreadPlan& plan) {
  uint32_t failures = 0;
  // Before capset: dropping from the bounding set needs CAP_SETPCAP, which
  // capset takes away.
  for (int cap = 0; cap <= kMaxCapability; ++cap) {
    if (!Has(plan.bounding_drop, cap) || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) failures |= kBoundingFailed;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) failures |= kAmbientFailed;
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct caps[2] = {plan.caps[0], plan.caps[1]};
  if (syscall(SYS_capset, &header, caps) != 0) failures |= kCapsetFailed;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failures |= kNoNewPrivsFailed;
  return failures;
}

std::vector<std::string> FailureTexts(uint32_t failures) {
  std::vector<std::string> out;
  if (failures & kBoundingFailed) out.push_back("PR_CAPBSET_DROP failed");
  if (failures & kAmbientFailed) out.push_back("clearing the ambient set failed");
  if (failures & kCapsetFailed) out.push_back("capset failed");
  if (failures & kNoNewPrivsFailed) out.push_back("PR_SET_NO_NEW_PRIVS failed");
  return out;
}

void OnDropSignal(int) {
  const int saved_errno = errno;
  g_failures.fetch_or(ApplyPlanToThisThread(g_plan));
  g_acks.fetch_add(1);
  errno = saved_errno;
}

// A real-time signal nobody in this process handles.
int FreeSignal() {
  for (int sig = SIGRTMAX; sig >= SIGRTMIN; --sig) {
    struct sigaction current {};
    if (sigaction(sig, nullptr, &current) != 0) continue;
    if ((current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_DFL) return sig;
  }
  return -1;
}

std::vector<pid_t> Threads() {
  std::vector<pid_t> tids;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tids;
  while (dirent* entry = readdir(dir)) {
    pid_t tid = 0;
    const char* name = entry->d_name;
    const char* end = name + std::strlen(name);
    if (std::from_chars(name, end, tid).ptr == end && tid > 0) tids.push_back(tid);
  }
  closedir(dir);
  return tids;
}

struct ThreadState {
  CapabilityMask inheritable = 0, permitted = 0, effective = 0, bounding = 0, ambient = 0;
  bool no_new_privs = false;
};

std::optional<ThreadState> ReadThreadState(pid_t tid) {
  std::ifstream in(absl::StrCat("/proc/self/task/", tid, "/status"));
  if (!in) return std::nullopt;
  ThreadState s;
  int found = 0;
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string_view key(line.data(), colon);
    const std::string_view value = std::string_view(line).substr(colon + 1);
    CapabilityMask* field = nullptr;
    if (key == "CapInh") field = &s.inheritable;
    if (key == "CapPrm") field = &s.permitted;
    if (key == "CapEff") field = &s.effective;
    if (key == "CapBnd") field = &s.bounding;
    if (key == "CapAmb") field = &s.ambient;
    if (key == "NoNewPrivs") {
      s.no_new_privs = Trim(value) == "1";
      ++found;
      continue;
    }
    if (field == nullptr) continue;
    std::optional<CapabilityMask> mask = ParseCapabilityHex(value);
    if (!mask) return std::nullopt;
    *field = *mask;
    ++found;
  }
  return found == 6 ? std::optional<ThreadState>(s) : std::nullopt;
}

bool Conforms(const ThreadState& s, CapabilityMask allowed, CapabilityMask bounding_limit) {
  return (s.permitted & ~allowed) == 0 && (s.effective & ~s.permitted) == 0 &&
         s.inheritable == 0 && s.ambient == 0 && (s.bounding & ~bounding_limit) == 0 &&
         s.no_new_privs;
}

}  // namespace

std::string ReduceThisThread(CapabilityMask keep) {
  const CapabilityMask permitted = ReadOwnCapabilities(CAP_PERMITTED);
  const ThreadPlan plan =
      MakePlan(keep & permitted, ReadOwnCapabilities(CAP_EFFECTIVE), ReadOwnBoundingSet());
  return absl::StrJoin(FailureTexts(ApplyPlanToThisThread(plan)), "; ");
}

DropOutcome DropCapabilities(CapabilityMask keep, CapabilityMask tolerated) {
  DropOutcome out;
  const CapabilityMask permitted = ReadOwnCapabilities(CAP_PERMITTED);
  const CapabilityMask effective = ReadOwnCapabilities(CAP_EFFECTIVE);
  const CapabilityMask bounding_before = ReadOwnBoundingSet();
  keep &= permitted;
  out.kept = keep;
  out.bounding_reduced = Has(effective, kCapSetpcap);
  const CapabilityMask bounding_after =
      out.bounding_reduced ? bounding_before & keep : bounding_before;
  out.dropped = (permitted & ~keep) | (bounding_before & ~bounding_after);
  const CapabilityMask allowed = keep | tolerated;
  const CapabilityMask bounding_limit = out.bounding_reduced ? allowed : bounding_before;

  const ThreadPlan plan = MakePlan(keep, effective, bounding_before);
  g_plan = plan;
  g_failures.store(0);

  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  const int sig = FreeSignal();
  if (sig < 0) {
    out.error = "no free real-time signal to reach the other threads";
    return out;
  }
  struct sigaction action {};
  struct sigaction previous {};
  action.sa_handler = OnDropSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(sig, &action, &previous);

  // Threads may start threads while this runs: go round until a pass finds
  // nothing left to change.
  constexpr int kRounds = 5;
  constexpr auto kAckTimeout = std::chrono::seconds(2);
  bool all_acked = true;
  std::vector<pid_t> pending;
  for (int round = 0; round < kRounds; ++round) {
    pending.clear();
    for (pid_t tid : Threads()) {
      if (tid == self) continue;
      std::optional<ThreadState> state = ReadThreadState(tid);
      if (state && !Conforms(*state, allowed, bounding_limit)) pending.push_back(tid);
    }
    if (pending.empty()) break;
    g_acks.store(0);
    int sent = 0;
    for (pid_t tid : pending) {
      if (syscall(SYS_tgkill, getpid(), tid, sig) == 0) ++sent;
    }
    const auto deadline = std::chrono::steady_clock::now() + kAckTimeout;
    while (g_acks.load() < sent && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (g_acks.load() < sent) {
      all_acked = false;
      break;  // a thread that blocks the signal will not take it next round either
    }
  }
  g_failures.fetch_or(ApplyPlanToThisThread(plan));
  // A signal still queued for a thread that blocks it would kill the
  // process under the default action: keep the handler in that case.
  if (all_acked) sigaction(sig, &previous, nullptr);

  std::vector<std::string> problems = FailureTexts(g_failures.load());
  std::vector<pid_t> nonconforming;
  for (pid_t tid : Threads()) {
    std::optional<ThreadState> state = ReadThreadState(tid);
    if (!state) continue;  // exited meanwhile
    if (Conforms(*state, tid == self ? keep : allowed, bounding_limit)) {
      ++out.threads;
    } else {
      nonconforming.push_back(tid);
    }
  }
  if (!nonconforming.empty()) {
    problems.push_back(absl::StrCat("threads ", absl::StrJoin(nonconforming, ","),
                                    " still hold other capabilities"));
  }
  out.error = absl::StrJoin(problems, "; ");
  return out;
}

namespace {

// Whether this kernel refuses bpf() map reads without CAP_BPF. Older kernels
// check kernel.unprivileged_bpf_disabled (which distributions set) at the
// entry of every bpf() command; newer ones only where objects are created
// ("bpf: move unprivileged checks into map_create() and bpf_prog_load()").
// Asked of the kernel rather than derived from its version, because
// distributions backport. Only on 6.18 was this tried (no CAP_BPF needed).
// The probe lowers the effective set of a short-lived thread only; asked
// once, while the process may still create maps.
bool MapReadsNeedBpf() {
  static const bool need = [] {
    const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "loupe_capprobe", sizeof(uint32_t),
                                  sizeof(uint64_t), 1, nullptr);
    if (fd < 0) {
      LogDebug("privileges: could not create the probe map (", std::strerror(errno),
               "); keeping CAP_BPF for map reads");
      return true;
    }
    int lookup_errno = 0;
    std::thread probe([fd, &lookup_errno] {
      __user_cap_header_struct header{};
      header.version = _LINUX_CAPABILITY_VERSION_3;
      __user_cap_data_struct caps[2] = {};
      if (syscall(SYS_capget, &header, caps) != 0) {
        lookup_errno = errno;
        return;
      }
      for (int cap : {kCapBpf, kCapSysAdmin}) caps[cap / 32].effective &= ~(1u << (cap % 32));
      header.pid = 0;
      if (syscall(SYS_capset, &header, caps) != 0) {
        lookup_errno = errno;
        return;
      }
      uint32_t key = 0;
      uint64_t value = 0;
      lookup_errno = bpf_map_lookup_elem(fd, &key, &value) == 0 ? 0 : errno;
    });
    probe.join();
    close(fd);
    return lookup_errno != 0;
  }();
  return need;
}

}  // namespace

CapabilityMask ServingCapabilitiesFor(const AgentConfig& config) {
  const PrivilegeFacts facts = ReadPrivilegeFacts(config);
  return ServingCapabilities(facts.effective, facts, MapReadsNeedBpf());
}

void DropPrivilegesAfterStart(const AgentConfig& config) {
  const CapabilityMask effective = ReadOwnCapabilities(CAP_EFFECTIVE);
  const bool need_bpf = MapReadsNeedBpf();
  const DropOutcome out = DropCapabilities(CapabilitiesToKeep(effective, need_bpf),
                                           ServingCapabilitiesFor(config));
  if (!out.error.empty()) {
    LogWarn("privileges: dropping capabilities failed (", out.error,
            "); continuing with what the process holds");
    return;
  }
  LogInfo("privileges: kept ", CapabilityNames(out.kept), "; dropped ",
          CapabilityNames(out.dropped), "; no_new_privs set on all ", out.threads, " threads",
          out.bounding_reduced ? "" : " (bounding set unchanged: that needs CAP_SETPCAP)");
  if (need_bpf && !Has(out.kept, kCapBpf)) {
    LogWarn("kernel counters are off: this kernel refuses BPF map reads without CAP_BPF, which "
            "loupe lacks, so events lost in the kernel are not counted");
  }
}

}  // namespace loupe
