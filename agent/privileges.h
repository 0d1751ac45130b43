// Least privilege: which features the agent's capabilities allow, and
// dropping every capability it no longer needs once its BPF programs are
// attached.
//
// What needs what (checked on Linux 6.18 with the agent under setpriv and
// one capability removed at a time, unless marked otherwise):
// - loading and attaching the tracepoint programs: CAP_BPF and CAP_PERFMON,
//   or CAP_SYS_ADMIN alone (both verified; kernels before 5.8 know only
//   CAP_SYS_ADMIN, not verified here).
// - mounting tracefs when nothing mounted it: CAP_SYS_ADMIN (verified in a
//   private mount namespace). A non-root user also needs
//   CAP_DAC_READ_SEARCH to read a mounted tracefs, whose root is mode 0700
//   (verified).
// - /proc/<pid>/exe of any process and /proc/<pid>/environ
//   (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) of processes holding
//   capabilities the agent lacks or owned by another user: CAP_SYS_PTRACE
//   (the kernel's ptrace read check; verified). CAP_PERFMON passes that check
//   for environ too, but it is dropped after start.
// - /proc/<pid>/environ of processes owned by another user (mode 0400):
//   CAP_DAC_READ_SEARCH (verified); also cgroup files a runtime made
//   private (not verified: cgroup files were world-readable here). The agent
//   reads no /proc/<pid>/io-like file; status, stat, comm, cmdline, cgroup
//   and statm are world-readable.
// - a /metrics port below net.ipv4.ip_unprivileged_port_start:
//   CAP_NET_BIND_SERVICE (verified); the metrics server's threads keep it.
// - RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps to it, and raising
//   it needs CAP_SYS_RESOURCE (not verified: this machine runs 6.18, which
//   charges them to the memory cgroup instead).
// - reading the kernel counters map after start: nothing on 6.18 (verified);
//   older kernels with kernel.unprivileged_bpf_disabled set refuse every
//   bpf() call without CAP_BPF (not verified here), so the drop probes for it.
#ifndef LOUPE_AGENT_PRIVILEGES_H_
#define LOUPE_AGENT_PRIVILEGES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "agent/config.h"
#include "agent/log.h"

namespace loupe {

// Capabilities as a bit mask, bit N for capability number N (the layout of
// the Cap* lines of /proc/<pid>/status).
using CapabilityMask = uint64_t;

constexpr CapabilityMask CapabilityBit(int cap) { return CapabilityMask{1} << cap; }

// Capability numbers from linux/capability.h; CAP_PERFMON and CAP_BPF are
// missing from older uapi headers.
inline constexpr int kCapDacOverride = 1;
inline constexpr int kCapDacReadSearch = 2;
inline constexpr int kCapSetpcap = 8;
inline constexpr int kCapNetBindService = 10;
inline constexpr int kCapSysPtrace = 19;
inline constexpr int kCapSysAdmin = 21;
inline constexpr int kCapSysResource = 24;
inline constexpr int kCapPerfmon = 38;
inline constexpr int kCapBpf = 39;

// "CAP_SYS_PTRACE, CAP_BPF" in ascending capability order; "none" when
// empty. Names come from libcap.
std::string CapabilityNames(CapabilityMask mask);

// "CAP_BPF" or "bpf" (any case) to its number; nullopt when unknown.
std::optional<int> CapabilityFromName(std::string_view name);

// The hexadecimal value of a Cap* line of /proc/<pid>/status.
std::optional<CapabilityMask> ParseCapabilityHex(std::string_view hex);

enum class TracefsState : uint8_t {
  kReadable,    // syscall events visible at /sys/kernel/{debug/,}tracing
  kUnreadable,  // mounted, but this user may not look inside
  kMissing,     // not mounted: the agent will try to mount it
};

// What the host and this process look like at start-up.
struct PrivilegeFacts {
  CapabilityMask effective = 0;
  TracefsState tracefs = TracefsState::kReadable;
  uint32_t uid = 0;
  // Kernel release, e.g. {6, 1}.
  int kernel_major = 0;
  int kernel_minor = 0;
  bool memlock_unlimited = true;  // RLIMIT_MEMLOCK's hard limit is RLIM_INFINITY
  // The /metrics port, 0 when none or ephemeral.
  uint16_t metrics_port = 0;
  uint16_t unprivileged_port_start = 1024;  // net.ipv4.ip_unprivileged_port_start
};

struct PrivilegeAssessment {
  // Set when live tracing cannot start: one sentence naming what is missing.
  std::optional<std::string> fatal;
  // One sentence per feature that is off for lack of a privilege, as the
  // agent runs after the drop (capabilities it drops count as absent).
  std::vector<std::string> features_off;
};

// Pure: what the capabilities in `facts` allow.
PrivilegeAssessment AssessPrivileges(const PrivilegeFacts& facts);

// Pure: the capabilities the running agent still uses, out of `effective`:
// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for processes that start later, and
// CAP_BPF when this kernel refuses map reads without it
// (`map_reads_need_bpf`). Never CAP_SYS_ADMIN, CAP_DAC_OVERRIDE (it would
// allow writes) or CAP_NET_BIND_SERVICE (the listener is bound before).
CapabilityMask CapabilitiesToKeep(CapabilityMask effective, bool map_reads_need_bpf);

// Reads the facts of this process and host for `config`.
PrivilegeFacts ReadPrivilegeFacts(const AgentConfig& config);

// Logs one warning per feature that is off; returns PermissionDenied with
// the sentence when live tracing cannot start (nothing else is logged then).
absl::Status CheckStartupPrivileges(const AgentConfig& config);

// Pure: what the metrics server's threads need, out of `effective`:
// CAP_NET_BIND_SERVICE to bind a port below ip_unprivileged_port_start, and
// CAP_BPF when map reads need it (the self-telemetry reads kernel counters).
CapabilityMask ServingCapabilities(CapabilityMask effective, const PrivilegeFacts& facts,
                                   bool map_reads_need_bpf);

struct DropOutcome {
  CapabilityMask kept = 0;
  CapabilityMask dropped = 0;  // held before (permitted or bounding), gone now
  size_t threads = 0;          // threads that now conform, this one included
  bool bounding_reduced = false;
  // Empty when every thread holds no more than `keep` (plus `tolerated`), no
  // inheritable or ambient capabilities, and no_new_privs; else what went
  // wrong.
  std::string error;
};

// Drops every capability but `keep` from the effective, permitted,
// inheritable and bounding sets of every thread of this process (the
// bounding set only with CAP_SETPCAP), clears the ambient set and sets
// PR_SET_NO_NEW_PRIVS, then checks each thread in /proc/self/task. Threads
// that already hold no more than `keep | tolerated` are left alone (the
// metrics server's, see RunWithServingPrivileges).
DropOutcome DropCapabilities(CapabilityMask keep, CapabilityMask tolerated = 0);

// Reduces the calling thread alone to `keep` (all sets, bounding with
// CAP_SETPCAP, ambient cleared, no_new_privs). "" on success, else what
// failed.
std::string ReduceThisThread(CapabilityMask keep);

// ServingCapabilities for this process and `config`.
CapabilityMask ServingCapabilitiesFor(const AgentConfig& config);

// Runs `start` on a new thread reduced to ServingCapabilitiesFor(config)
// and returns its result. The metrics server's request threads, which read
// network input, are created there and so never hold more: they block every
// signal, so the drop at start-up could not reach them later.
template <typename Start>
auto RunWithServingPrivileges(const AgentConfig& config, Start start) -> decltype(start()) {
  const CapabilityMask keep = ServingCapabilitiesFor(config);
  std::optional<decltype(start())> result;
  std::string error;
  std::thread thread([&] {
    error = ReduceThisThread(keep);
    result.emplace(start());
  });
  thread.join();
  if (!error.empty()) LogWarn("privileges: the metrics server's threads keep more: ", error);
  return std::move(*result);
}

// After the programs are attached: works out what to keep (probing whether
// map reads need CAP_BPF), drops the rest, and logs one line saying what was
// kept and what dropped, or why dropping failed. Failure is not fatal.
void DropPrivilegesAfterStart(const AgentConfig& config);

}  // namespace loupe

#endif  // LOUPE_AGENT_PRIVILEGES_H_
