#include "decoders/events.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace loupe {

// The kernel/user contract: offsets and sizes are facts both sides rely on.
static_assert(sizeof(loupe_event_header) == 40);
static_assert(offsetof(loupe_event_header, ts_ns) == 8);
static_assert(offsetof(loupe_event_header, conn_id) == 16);
static_assert(offsetof(loupe_event_header, cgroup_id) == 24);
static_assert(offsetof(loupe_event_header, tgid) == 32);
static_assert(offsetof(loupe_event_header, tid) == 36);
static_assert(sizeof(loupe_tuple) == 40);
static_assert(offsetof(loupe_tuple, local_addr) == 8);
static_assert(offsetof(loupe_tuple, remote_addr) == 24);
static_assert(sizeof(loupe_conn_event) == 128);
static_assert(offsetof(loupe_conn_event, tuple) == 40);
static_assert(offsetof(loupe_conn_event, start_ns) == 80);
static_assert(offsetof(loupe_conn_event, role) == 104);
static_assert(offsetof(loupe_conn_event, comm) == 112);
static_assert(sizeof(loupe_data_event) == 112);
static_assert(offsetof(loupe_data_event, enter_ns) == 80);
static_assert(offsetof(loupe_data_event, stream_offset) == 88);
static_assert(offsetof(loupe_data_event, total_len) == 96);
static_assert(offsetof(loupe_data_event, captured_len) == 104);
static_assert(offsetof(loupe_data_event, direction) == 108);
static_assert(offsetof(loupe_data_event, syscall) == 111);
static_assert(sizeof(loupe_oom_event) == 160);
static_assert(offsetof(loupe_oom_event, victim_pid) == 40);
static_assert(offsetof(loupe_oom_event, victim_uid) == 44);
static_assert(offsetof(loupe_oom_event, total_vm_kb) == 48);
static_assert(offsetof(loupe_oom_event, anon_rss_kb) == 56);
static_assert(offsetof(loupe_oom_event, file_rss_kb) == 64);
static_assert(offsetof(loupe_oom_event, shmem_rss_kb) == 72);
static_assert(offsetof(loupe_oom_event, pgtables_kb) == 80);
static_assert(offsetof(loupe_oom_event, oom_memcg_id) == 88);
static_assert(offsetof(loupe_oom_event, trigger_memcg_id) == 96);
static_assert(offsetof(loupe_oom_event, memcg_usage_pages) == 104);
static_assert(offsetof(loupe_oom_event, memcg_limit_pages) == 112);
static_assert(offsetof(loupe_oom_event, oom_score_adj) == 120);
static_assert(offsetof(loupe_oom_event, kind) == 122);
static_assert(offsetof(loupe_oom_event, flags) == 123);
static_assert(offsetof(loupe_oom_event, victim_comm) == 128);
static_assert(offsetof(loupe_oom_event, trigger_comm) == 144);
static_assert(sizeof(loupe_process_event) == 64);
static_assert(offsetof(loupe_process_event, ppid) == 40);
static_assert(offsetof(loupe_process_event, kind) == 44);
static_assert(offsetof(loupe_process_event, comm) == 48);
static_assert((LOUPE_PAYLOAD_MAX & (LOUPE_PAYLOAD_MAX - 1)) == 0, "power of two");

std::string_view DirectionName(Direction d) {
  return d == Direction::kEgress ? "egress" : "ingress";
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kClient:
      return "client";
    case Role::kServer:
      return "server";
    case Role::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view ProtocolName(Protocol p) {
  switch (p) {
    case Protocol::kHttp1:
      return "http1";
    case Protocol::kHttp2:
      return "http2";
    case Protocol::kPostgres:
      return "postgres";
    case Protocol::kMysql:
      return "mysql";
    case Protocol::kRedis:
      return "redis";
    case Protocol::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view OomKindName(OomKind kind) {
  switch (kind) {
    case OomKind::kCgroup:
      return "cgroup";
    case OomKind::kGlobal:
      return "global";
    case OomKind::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view SyscallName(uint8_t s) {
  switch (s) {
    case LOUPE_SYS_READ: return "read";
    case LOUPE_SYS_WRITE: return "write";
    case LOUPE_SYS_READV: return "readv";
    case LOUPE_SYS_WRITEV: return "writev";
    case LOUPE_SYS_RECVFROM: return "recvfrom";
    case LOUPE_SYS_SENDTO: return "sendto";
    case LOUPE_SYS_RECVMSG: return "recvmsg";
    case LOUPE_SYS_SENDMSG: return "sendmsg";
    case LOUPE_SYS_SENDFILE: return "sendfile";
    case LOUPE_SYS_CONNECT: return "connect";
    case LOUPE_SYS_ACCEPT: return "accept";
    case LOUPE_SYS_CLOSE: return "close";
    default: return "none";
  }
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof(buf));
    return buf;
  }
  if (family == AF_INET6) {
    static constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes.data(), kV4MappedPrefix, sizeof(kV4MappedPrefix)) == 0) {
      inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof(buf));
      return buf;
    }
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
    return buf;
  }
  return "";
}

namespace {

template <typename T>
T Load(std::span<const uint8_t> raw) {
  T value;
  std::memcpy(&value, raw.data(), sizeof(T));
  return value;
}

EventHeader ToHeader(const loupe_event_header& h) {
  EventHeader out;
  out.type = h.type;
  out.ts_ns = h.ts_ns;
  out.conn_id = h.conn_id;
  out.cgroup_id = h.cgroup_id;
  out.tgid = h.tgid;
  out.tid = h.tid;
  return out;
}

loupe_event_header FromHeader(const EventHeader& h, uint16_t type, uint32_t size) {
  loupe_event_header out{};
  out.type = type;
  out.abi = LOUPE_ABI_VERSION;
  out.size = size;
  out.ts_ns = h.ts_ns;
  out.conn_id = h.conn_id;
  out.cgroup_id = h.cgroup_id;
  out.tgid = h.tgid;
  out.tid = h.tid;
  return out;
}

absl::StatusOr<ConnTuple> ToTuple(const loupe_tuple& t) {
  if (t.family != AF_INET && t.family != AF_INET6) {
    return absl::InvalidArgumentError(absl::StrCat("unknown address family ", t.family));
  }
  ConnTuple out;
  out.local.addr.family = t.family;
  out.remote.addr.family = t.family;
  std::memcpy(out.local.addr.bytes.data(), t.local_addr, 16);
  std::memcpy(out.remote.addr.bytes.data(), t.remote_addr, 16);
  out.local.port = t.local_port;
  out.remote.port = t.remote_port;
  return out;
}

loupe_tuple FromTuple(const ConnTuple& t) {
  loupe_tuple out{};
  out.family = t.local.addr.family;
  out.local_port = t.local.port;
  out.remote_port = t.remote.port;
  std::memcpy(out.local_addr, t.local.addr.bytes.data(), 16);
  std::memcpy(out.remote_addr, t.remote.addr.bytes.data(), 16);
  return out;
}

bool ValidRole(uint8_t r) { return r <= LOUPE_ROLE_SERVER; }

// The checks every event passes: a whole header, this build's ABI, and a
// size field that agrees with the bytes delivered.
absl::StatusOr<loupe_event_header> ValidHeader(std::span<const uint8_t> raw) {
  if (raw.size() < sizeof(loupe_event_header)) {
    return absl::InvalidArgumentError(
        absl::StrCat("event of ", raw.size(), " bytes is shorter than its header"));
  }
  const auto h = Load<loupe_event_header>(raw);
  // The contract is append-only (bpf/loupe_events.h): events of an older
  // ABI (a recording) read the same; a newer one may hold unknown layouts.
  if (h.abi == 0 || h.abi > LOUPE_ABI_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat(
        "event ABI version ", h.abi, " is not one this build reads (1 to ", LOUPE_ABI_VERSION,
        ")"));
  }
  if (h.size != raw.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("event says ", h.size, " bytes but ", raw.size(), " were delivered"));
  }
  return h;
}

}  // namespace

absl::StatusOr<KernelEvent> ParseKernelEvent(std::span<const uint8_t> raw) {
  absl::StatusOr<loupe_event_header> header = ValidHeader(raw);
  if (!header.ok()) return header.status();
  const loupe_event_header& h = *header;
  switch (h.type) {
    case LOUPE_EV_CONN_OPEN:
    case LOUPE_EV_CONN_CLOSE: {
      if (raw.size() != sizeof(loupe_conn_event)) {
        return absl::InvalidArgumentError(
            absl::StrCat("connection event of ", raw.size(), " bytes, expected ",
                         sizeof(loupe_conn_event)));
      }
      const auto c = Load<loupe_conn_event>(raw);
      auto tuple = ToTuple(c.tuple);
      if (!tuple.ok()) return tuple.status();
      if (!ValidRole(c.role)) return absl::InvalidArgumentError("connection event with bad role");
      ConnEvent ev;
      ev.header = ToHeader(c.hdr);
      ev.open = h.type == LOUPE_EV_CONN_OPEN;
      ev.tuple = *tuple;
      ev.start_ns = c.start_ns;
      ev.bytes_egress = c.bytes_egress;
      ev.bytes_ingress = c.bytes_ingress;
      ev.role = static_cast<Role>(c.role);
      ev.role_source = static_cast<RoleSource>(c.role_source);
      ev.protocol = static_cast<Protocol>(c.protocol);
      ev.comm.assign(c.comm, strnlen(c.comm, sizeof(c.comm)));
      return ev;
    }
    case LOUPE_EV_DATA: {
      if (raw.size() < sizeof(loupe_data_event)) {
        return absl::InvalidArgumentError(
            absl::StrCat("data event of ", raw.size(), " bytes is shorter than its header"));
      }
      const auto d = Load<loupe_data_event>(raw);
      if (d.captured_len != raw.size() - sizeof(loupe_data_event)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data event captured_len ", d.captured_len, " disagrees with its size ", raw.size()));
      }
      if (d.captured_len > d.total_len) {
        return absl::InvalidArgumentError(absl::StrCat(
            "data event captured ", d.captured_len, " of only ", d.total_len, " bytes"));
      }
      if (d.direction > LOUPE_DIR_INGRESS) {
        return absl::InvalidArgumentError("data event with bad direction");
      }
      if (!ValidRole(d.role)) return absl::InvalidArgumentError("data event with bad role");
      auto tuple = ToTuple(d.tuple);
      if (!tuple.ok()) return tuple.status();
      DataEvent ev;
      ev.header = ToHeader(d.hdr);
      ev.tuple = *tuple;
      ev.enter_ns = d.enter_ns;
      ev.stream_offset = d.stream_offset;
      ev.total_len = d.total_len;
      ev.direction = static_cast<Direction>(d.direction);
      ev.protocol = static_cast<Protocol>(d.protocol);
      ev.role = static_cast<Role>(d.role);
      ev.syscall = d.syscall;
      ev.payload = raw.subspan(sizeof(loupe_data_event));
      return ev;
    }
    case LOUPE_EV_OOM_KILL:
      return absl::InvalidArgumentError(
          "OOM-kill event passed to ParseKernelEvent: route it with IsOomEvent to "
          "ParseOomEvent");
    case LOUPE_EV_PROCESS:
      return absl::InvalidArgumentError(
          "process event passed to ParseKernelEvent: route it with IsProcessEvent to "
          "ParseProcessEvent");
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown event type ", h.type));
  }
}

bool IsOomEvent(std::span<const uint8_t> raw) {
  return raw.size() >= sizeof(loupe_event_header) &&
         Load<loupe_event_header>(raw).type == LOUPE_EV_OOM_KILL;
}

absl::StatusOr<OomEvent> ParseOomEvent(std::span<const uint8_t> raw) {
  absl::StatusOr<loupe_event_header> header = ValidHeader(raw);
  if (!header.ok()) return header.status();
  if (header->type != LOUPE_EV_OOM_KILL) {
    return absl::InvalidArgumentError(
        absl::StrCat("event type ", header->type, " is not an OOM-kill event"));
  }
  if (raw.size() != sizeof(loupe_oom_event)) {
    return absl::InvalidArgumentError(absl::StrCat("OOM-kill event of ", raw.size(),
                                                   " bytes, expected ", sizeof(loupe_oom_event)));
  }
  const auto o = Load<loupe_oom_event>(raw);
  if (o.kind > LOUPE_OOM_KIND_GLOBAL) {
    return absl::InvalidArgumentError(absl::StrCat("OOM-kill event with bad kind ", o.kind));
  }
  OomEvent ev;
  ev.header = ToHeader(o.hdr);
  ev.victim_pid = o.victim_pid;
  ev.victim_uid = o.victim_uid;
  ev.victim_comm.assign(o.victim_comm, strnlen(o.victim_comm, sizeof(o.victim_comm)));
  ev.total_vm_kb = o.total_vm_kb;
  ev.anon_rss_kb = o.anon_rss_kb;
  ev.file_rss_kb = o.file_rss_kb;
  ev.shmem_rss_kb = o.shmem_rss_kb;
  ev.pgtables_kb = o.pgtables_kb;
  ev.oom_score_adj = o.oom_score_adj;
  ev.kind = static_cast<OomKind>(o.kind);
  ev.flags = o.flags;
  ev.oom_memcg_id = o.oom_memcg_id;
  ev.trigger_memcg_id = o.trigger_memcg_id;
  ev.memcg_usage_pages = o.memcg_usage_pages;
  ev.memcg_limit_pages = o.memcg_limit_pages;
  ev.trigger_comm.assign(o.trigger_comm, strnlen(o.trigger_comm, sizeof(o.trigger_comm)));
  return ev;
}

std::string_view ProcessEventKindName(ProcessEventKind kind) {
  return kind == ProcessEventKind::kExit ? "exit" : "exec";
}

bool IsProcessEvent(std::span<const uint8_t> raw) {
  return raw.size() >= sizeof(loupe_event_header) &&
         Load<loupe_event_header>(raw).type == LOUPE_EV_PROCESS;
}

absl::StatusOr<ProcessEvent> ParseProcessEvent(std::span<const uint8_t> raw) {
  absl::StatusOr<loupe_event_header> header = ValidHeader(raw);
  if (!header.ok()) return header.status();
  if (header->type != LOUPE_EV_PROCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("event type ", header->type, " is not a process event"));
  }
  if (raw.size() != sizeof(loupe_process_event)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "process event of ", raw.size(), " bytes, expected ", sizeof(loupe_process_event)));
  }
  const auto p = Load<loupe_process_event>(raw);
  if (p.kind != LOUPE_PROCESS_EXEC && p.kind != LOUPE_PROCESS_EXIT) {
    return absl::InvalidArgumentError(absl::StrCat("process event with bad kind ", p.kind));
  }
  ProcessEvent ev;
  ev.header = ToHeader(p.hdr);
  ev.kind = static_cast<ProcessEventKind>(p.kind);
  ev.ppid = p.ppid;
  ev.comm.assign(p.comm, strnlen(p.comm, sizeof(p.comm)));
  return ev;
}

std::string EncodeConnEvent(const ConnEvent& ev) {
  loupe_conn_event c{};
  c.hdr = FromHeader(ev.header, ev.open ? LOUPE_EV_CONN_OPEN : LOUPE_EV_CONN_CLOSE,
                     sizeof(loupe_conn_event));
  c.tuple = FromTuple(ev.tuple);
  c.start_ns = ev.start_ns;
  c.bytes_egress = ev.bytes_egress;
  c.bytes_ingress = ev.bytes_ingress;
  c.role = static_cast<uint8_t>(ev.role);
  c.role_source = static_cast<uint8_t>(ev.role_source);
  c.protocol = static_cast<uint8_t>(ev.protocol);
  std::memcpy(c.comm, ev.comm.data(), std::min(ev.comm.size(), sizeof(c.comm) - 1));
  return std::string(reinterpret_cast<const char*>(&c), sizeof(c));
}

std::string EncodeDataEvent(const DataEvent& ev) {
  loupe_data_event d{};
  const auto size = static_cast<uint32_t>(sizeof(loupe_data_event) + ev.payload.size());
  d.hdr = FromHeader(ev.header, LOUPE_EV_DATA, size);
  d.tuple = FromTuple(ev.tuple);
  d.enter_ns = ev.enter_ns;
  d.stream_offset = ev.stream_offset;
  d.total_len = ev.total_len;
  d.captured_len = static_cast<uint32_t>(ev.payload.size());
  d.direction = static_cast<uint8_t>(ev.direction);
  d.protocol = static_cast<uint8_t>(ev.protocol);
  d.role = static_cast<uint8_t>(ev.role);
  d.syscall = ev.syscall;
  std::string out(reinterpret_cast<const char*>(&d), sizeof(d));
  out.append(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
  return out;
}

std::string EncodeOomEvent(const OomEvent& ev) {
  loupe_oom_event o{};
  o.hdr = FromHeader(ev.header, LOUPE_EV_OOM_KILL, sizeof(loupe_oom_event));
  o.victim_pid = ev.victim_pid;
  o.victim_uid = ev.victim_uid;
  std::memcpy(o.victim_comm, ev.victim_comm.data(),
              std::min(ev.victim_comm.size(), sizeof(o.victim_comm) - 1));
  o.total_vm_kb = ev.total_vm_kb;
  o.anon_rss_kb = ev.anon_rss_kb;
  o.file_rss_kb = ev.file_rss_kb;
  o.shmem_rss_kb = ev.shmem_rss_kb;
  o.pgtables_kb = ev.pgtables_kb;
  o.oom_score_adj = ev.oom_score_adj;
  o.kind = static_cast<uint8_t>(ev.kind);
  o.flags = ev.flags;
  o.oom_memcg_id = ev.oom_memcg_id;
  o.trigger_memcg_id = ev.trigger_memcg_id;
  o.memcg_usage_pages = ev.memcg_usage_pages;
  o.memcg_limit_pages = ev.memcg_limit_pages;
  std::memcpy(o.trigger_comm, ev.trigger_comm.data(),
              std::min(ev.trigger_comm.size(), sizeof(o.trigger_comm) - 1));
  return std::string(reinterpret_cast<const char*>(&o), sizeof(o));
}

std::string EncodeProcessEvent(const ProcessEvent& ev) {
  loupe_process_event p{};
  p.hdr = FromHeader(ev.header, LOUPE_EV_PROCESS, sizeof(loupe_process_event));
  p.ppid = ev.ppid;
  p.kind = static_cast<uint8_t>(ev.kind);
  std::memcpy(p.comm, ev.comm.data(), std::min(ev.comm.size(), sizeof(p.comm) - 1));
  return std::string(reinterpret_cast<const char*>(&p), sizeof(p));
}

}  // namespace loupe
