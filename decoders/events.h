// C++ view of the kernel events defined in bpf/loupe_events.h.
//
// Raw events come from the ring buffer or from a recording file (which may be
// truncated or hostile), so ParseKernelEvent validates every size before it
// reads. Layout of the C structs is pinned here with static_asserts: if the
// kernel header drifts, the build fails.
#ifndef LOUPE_DECODERS_EVENTS_H_
#define LOUPE_DECODERS_EVENTS_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"

extern "C" {
#include "bpf/loupe_events.h"
}

namespace loupe {

enum class Direction : uint8_t { kEgress = LOUPE_DIR_EGRESS, kIngress = LOUPE_DIR_INGRESS };
enum class Role : uint8_t {
  kUnknown = LOUPE_ROLE_UNKNOWN,
  kClient = LOUPE_ROLE_CLIENT,
  kServer = LOUPE_ROLE_SERVER,
};
enum class RoleSource : uint8_t {
  kNone = LOUPE_ROLE_FROM_NONE,
  kConnect = LOUPE_ROLE_FROM_CONNECT,
  kAccept = LOUPE_ROLE_FROM_ACCEPT,
  kTraffic = LOUPE_ROLE_FROM_TRAFFIC,
};
enum class Protocol : uint8_t {
  kUnknown = LOUPE_PROTO_UNKNOWN,
  kHttp1 = LOUPE_PROTO_HTTP1,
  kHttp2 = LOUPE_PROTO_HTTP2,
  kPostgres = LOUPE_PROTO_POSTGRES,
  kMysql = LOUPE_PROTO_MYSQL,
  kRedis = LOUPE_PROTO_REDIS,
};

inline constexpr int kDirections = 2;
inline int Index(Direction d) { return static_cast<int>(d); }
inline Direction Opposite(Direction d) {
  return d == Direction::kEgress ? Direction::kIngress : Direction::kEgress;
}

std::string_view DirectionName(Direction d);  // "egress" / "ingress"
std::string_view RoleName(Role r);            // "unknown" / "client" / "server"
std::string_view ProtocolName(Protocol p);    // "unknown", "http1", "http2", "postgres", ...
std::string_view SyscallName(uint8_t loupe_syscall);

struct IpAddress {
  uint16_t family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};
  // "127.0.0.1", "::1"; IPv4-mapped IPv6 addresses print as IPv4.
  std::string ToString() const;
  bool operator==(const IpAddress&) const = default;
};

struct Endpoint {
  IpAddress addr;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

struct ConnTuple {
  Endpoint local;
  Endpoint remote;
  bool operator==(const ConnTuple&) const = default;
};

struct EventHeader {
  uint16_t type = 0;
  uint64_t ts_ns = 0;  // CLOCK_MONOTONIC, syscall exit
  uint64_t conn_id = 0;
  uint64_t cgroup_id = 0;
  uint32_t tgid = 0;
  uint32_t tid = 0;
};

struct ConnEvent {
  EventHeader header;
  bool open = true;  // LOUPE_EV_CONN_OPEN, else LOUPE_EV_CONN_CLOSE
  ConnTuple tuple;
  uint64_t start_ns = 0;
  uint64_t bytes_egress = 0;
  uint64_t bytes_ingress = 0;
  Role role = Role::kUnknown;
  RoleSource role_source = RoleSource::kNone;
  Protocol protocol = Protocol::kUnknown;
  std::string comm;
};

// Borrows its payload from the raw event buffer.
struct DataEvent {
  EventHeader header;
  ConnTuple tuple;
  uint64_t enter_ns = 0;
  uint64_t stream_offset = 0;
  uint64_t total_len = 0;
  Direction direction = Direction::kEgress;
  Protocol protocol = Protocol::kUnknown;
  Role role = Role::kUnknown;
  uint8_t syscall = LOUPE_SYS_NONE;
  std::span<const uint8_t> payload;  // captured prefix, payload.size() <= total_len
};

using KernelEvent = std::variant<ConnEvent, DataEvent>;

// Validates and decodes one raw event. Errors name what is wrong. OOM-kill
// and process events are not KernelEvents: they are rejected here (with a
// message pointing at ParseOomEvent / ParseProcessEvent) and must be routed
// first with IsOomEvent / IsProcessEvent.
absl::StatusOr<KernelEvent> ParseKernelEvent(std::span<const uint8_t> raw);

enum class OomKind : uint8_t {
  kUnknown = LOUPE_OOM_KIND_UNKNOWN,
  kCgroup = LOUPE_OOM_KIND_CGROUP,
  kGlobal = LOUPE_OOM_KIND_GLOBAL,
};
std::string_view OomKindName(OomKind kind);  // "unknown" / "cgroup" / "global"

// LOUPE_EV_OOM_KILL: the OOM killer chose a victim. The kernel side's
// meaning of every field is documented at struct loupe_oom_event in
// bpf/loupe_events.h; in short, `header` describes the trigger (the task
// that ran the OOM killer: tgid, tid, its v2 cgroup id, ts_ns = the kill)
// and conn_id is 0.
struct OomEvent {
  EventHeader header;
  uint32_t victim_pid = 0;  // task id of the chosen task, host pid namespace
  uint32_t victim_uid = 0;
  std::string victim_comm;  // "" on kernels whose tracepoint has no comm
  uint64_t total_vm_kb = 0;
  uint64_t anon_rss_kb = 0;
  uint64_t file_rss_kb = 0;
  uint64_t shmem_rss_kb = 0;
  uint64_t pgtables_kb = 0;
  int16_t oom_score_adj = 0;
  OomKind kind = OomKind::kUnknown;  // the kernel side's verdict
  uint8_t flags = 0;                 // enum loupe_oom_flags
  uint64_t oom_memcg_id = 0;         // memory cgroup in OOM (kind kCgroup), else 0
  uint64_t trigger_memcg_id = 0;     // memory cgroup the trigger charged, 0 if unknown
  uint64_t memcg_usage_pages = 0;    // of oom_memcg_id at the kill, host pages
  uint64_t memcg_limit_pages = 0;
  std::string trigger_comm;
};

// True when `raw` has a header whose type is LOUPE_EV_OOM_KILL; nothing
// else is checked (ParseOomEvent does).
bool IsOomEvent(std::span<const uint8_t> raw);
// Validates (ABI version, sizes, kind) and decodes an OOM-kill event.
absl::StatusOr<OomEvent> ParseOomEvent(std::span<const uint8_t> raw);

enum class ProcessEventKind : uint8_t {
  kExec = LOUPE_PROCESS_EXEC,
  kExit = LOUPE_PROCESS_EXIT,
};
std::string_view ProcessEventKindName(ProcessEventKind kind);  // "exec" / "exit"

// LOUPE_EV_PROCESS: a process started a new program (exec) or ended (exit
// of its thread-group leader). `header` describes the process (conn_id 0);
// see struct loupe_process_event in bpf/loupe_events.h.
struct ProcessEvent {
  EventHeader header;
  ProcessEventKind kind = ProcessEventKind::kExec;
  uint32_t ppid = 0;
  std::string comm;  // exec: the new program's
};

// True when `raw` has a header whose type is LOUPE_EV_PROCESS; nothing else
// is checked (ParseProcessEvent does). Like OOM kills, process events are
// not KernelEvents.
bool IsProcessEvent(std::span<const uint8_t> raw);
// Validates (ABI version, size, kind) and decodes a process event.
absl::StatusOr<ProcessEvent> ParseProcessEvent(std::span<const uint8_t> raw);

// Builders for tests, fixtures and benchmarks: the inverse of
// ParseKernelEvent, producing the exact bytes the kernel would.
std::string EncodeConnEvent(const ConnEvent& event);
std::string EncodeDataEvent(const DataEvent& event);
std::string EncodeOomEvent(const OomEvent& event);
std::string EncodeProcessEvent(const ProcessEvent& event);

}  // namespace loupe

#endif  // LOUPE_DECODERS_EVENTS_H_
