#include "decoders/events.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

namespace loupe {
namespace {

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

IpAddress V4(const char* text) {
  IpAddress a;
  a.family = AF_INET;
  EXPECT_EQ(inet_pton(AF_INET, text, a.bytes.data()), 1) << text;
  return a;
}

IpAddress V6(const char* text) {
  IpAddress a;
  a.family = AF_INET6;
  EXPECT_EQ(inet_pton(AF_INET6, text, a.bytes.data()), 1) << text;
  return a;
}

ConnEvent SampleConnEvent() {
  ConnEvent ev;
  ev.header.ts_ns = 1'000'000'123;
  ev.header.conn_id = 0xabcdef0123456789ull;
  ev.header.cgroup_id = 4242;
  ev.header.tgid = 1234;
  ev.header.tid = 1240;
  ev.open = true;
  ev.tuple.local = Endpoint{V4("127.0.0.1"), 8080};
  ev.tuple.remote = Endpoint{V4("10.1.2.3"), 54321};
  ev.start_ns = 999'000'000;
  ev.bytes_egress = 17;
  ev.bytes_ingress = 99;
  ev.role = Role::kServer;
  ev.role_source = RoleSource::kAccept;
  ev.protocol = Protocol::kHttp1;
  ev.comm = "nginx";
  return ev;
}

// The event borrows `payload`: pass literals or strings that outlive it.
DataEvent SampleDataEvent(std::string_view payload) {
  DataEvent ev;
  ev.header.ts_ns = 2'000'000'000;
  ev.header.conn_id = 77;
  ev.header.cgroup_id = 5;
  ev.header.tgid = 300;
  ev.header.tid = 301;
  ev.tuple.local = Endpoint{V6("2001:db8::1"), 443};
  ev.tuple.remote = Endpoint{V6("2001:db8::2"), 40000};
  ev.enter_ns = 1'999'999'000;
  ev.stream_offset = 4096;
  ev.total_len = payload.size() + 10;  // truncated capture
  ev.direction = Direction::kIngress;
  ev.protocol = Protocol::kHttp1;
  ev.role = Role::kClient;
  ev.syscall = LOUPE_SYS_RECVFROM;
  ev.payload = Bytes(payload);
  return ev;
}

// Raw-struct access for building malformed events.
template <typename T>
T LoadStruct(const std::string& raw) {
  T value;
  std::memcpy(&value, raw.data(), sizeof(T));
  return value;
}
template <typename T>
void StoreStruct(std::string& raw, const T& value) {
  std::memcpy(raw.data(), &value, sizeof(T));
}

TEST(ParseKernelEventTest, ConnEventRoundTrip) {
  const ConnEvent in = SampleConnEvent();
  const std::string raw = EncodeConnEvent(in);
  ASSERT_EQ(raw.size(), sizeof(loupe_conn_event));
  auto parsed = ParseKernelEvent(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto* out = std::get_if<ConnEvent>(&*parsed);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->header.type, LOUPE_EV_CONN_OPEN);
  EXPECT_EQ(out->header.ts_ns, in.header.ts_ns);
  EXPECT_EQ(out->header.conn_id, in.header.conn_id);
  EXPECT_EQ(out->header.cgroup_id, in.header.cgroup_id);
  EXPECT_EQ(out->header.tgid, in.header.tgid);
  EXPECT_EQ(out->header.tid, in.header.tid);
  EXPECT_TRUE(out->open);
  EXPECT_EQ(out->tuple, in.tuple);
  EXPECT_EQ(out->start_ns, in.start_ns);
  EXPECT_EQ(out->bytes_egress, in.bytes_egress);
  EXPECT_EQ(out->bytes_ingress, in.bytes_ingress);
  EXPECT_EQ(out->role, Role::kServer);
  EXPECT_EQ(out->role_source, RoleSource::kAccept);
  EXPECT_EQ(out->protocol, Protocol::kHttp1);
  EXPECT_EQ(out->comm, "nginx");
}

TEST(ParseKernelEventTest, CloseEventRoundTrip) {
  ConnEvent in = SampleConnEvent();
  in.open = false;
  const std::string raw = EncodeConnEvent(in);
  EXPECT_EQ(LoadStruct<loupe_event_header>(raw).type, LOUPE_EV_CONN_CLOSE);
  auto parsed = ParseKernelEvent(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto* out = std::get_if<ConnEvent>(&*parsed);
  ASSERT_NE(out, nullptr);
  EXPECT_FALSE(out->open);
  EXPECT_EQ(out->header.type, LOUPE_EV_CONN_CLOSE);
}

TEST(ParseKernelEventTest, CommIsCutToFifteenCharactersAndNulTerminated) {
  ConnEvent in = SampleConnEvent();
  in.comm = "a-very-long-process-name";
  auto parsed = ParseKernelEvent(Bytes(EncodeConnEvent(in)));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(std::get<ConnEvent>(*parsed).comm, "a-very-long-pro");
}

TEST(ParseKernelEventTest, DataEventRoundTrip) {
  const std::string payload = "GET / HTTP/1.1\r\n";
  const DataEvent in = SampleDataEvent(payload);
  const std::string raw = EncodeDataEvent(in);
  ASSERT_EQ(raw.size(), sizeof(loupe_data_event) + payload.size());
  auto parsed = ParseKernelEvent(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto* out = std::get_if<DataEvent>(&*parsed);
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->header.type, LOUPE_EV_DATA);
  EXPECT_EQ(out->header.ts_ns, in.header.ts_ns);
  EXPECT_EQ(out->header.conn_id, 77u);
  EXPECT_EQ(out->header.cgroup_id, 5u);
  EXPECT_EQ(out->header.tgid, 300u);
  EXPECT_EQ(out->header.tid, 301u);
  EXPECT_EQ(out->tuple, in.tuple);
  EXPECT_EQ(out->enter_ns, in.enter_ns);
  EXPECT_EQ(out->stream_offset, 4096u);
  EXPECT_EQ(out->total_len, payload.size() + 10);
  EXPECT_EQ(out->direction, Direction::kIngress);
  EXPECT_EQ(out->protocol, Protocol::kHttp1);
  EXPECT_EQ(out->role, Role::kClient);
  EXPECT_EQ(out->syscall, LOUPE_SYS_RECVFROM);
  const std::string round_tripped(reinterpret_cast<const char*>(out->payload.data()),
                                  out->payload.size());
  EXPECT_EQ(round_tripped, payload);
  // The payload is borrowed from the raw buffer, not copied.
  EXPECT_EQ(out->payload.data(),
            reinterpret_cast<const uint8_t*>(raw.data()) + sizeof(loupe_data_event));
}

TEST(ParseKernelEventTest, DataEventWithoutPayload) {
  DataEvent in = SampleDataEvent("");
  in.total_len = 65536;  // sendfile: nothing copied
  auto parsed = ParseKernelEvent(Bytes(EncodeDataEvent(in)));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& out = std::get<DataEvent>(*parsed);
  EXPECT_TRUE(out.payload.empty());
  EXPECT_EQ(out.total_len, 65536u);
}

TEST(ParseKernelEventTest, RejectsBufferShorterThanHeader) {
  const std::string raw = EncodeConnEvent(SampleConnEvent());
  for (size_t n : {size_t{0}, size_t{1}, sizeof(loupe_event_header) - 1}) {
    auto parsed = ParseKernelEvent(Bytes(raw).first(n));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
}

TEST(ParseKernelEventTest, RejectsWrongAbiVersion) {
  std::string raw = EncodeConnEvent(SampleConnEvent());
  auto header = LoadStruct<loupe_event_header>(raw);
  header.abi = LOUPE_ABI_VERSION + 1;
  StoreStruct(raw, header);
  auto parsed = ParseKernelEvent(Bytes(raw));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(parsed.status().message().find("ABI"), std::string::npos) << parsed.status();
}

TEST(ParseKernelEventTest, OlderAbiEventsStillParse) {
  // The contract is append-only: an ABI 1 connection event (a recording
  // made before OOM events existed) reads as it always did.
  std::string raw = EncodeConnEvent(SampleConnEvent());
  auto header = LoadStruct<loupe_event_header>(raw);
  header.abi = 1;
  StoreStruct(raw, header);
  auto parsed = ParseKernelEvent(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(std::holds_alternative<ConnEvent>(*parsed));
  header.abi = 0;
  StoreStruct(raw, header);
  EXPECT_EQ(ParseKernelEvent(Bytes(raw)).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ParseKernelEventTest, RejectsSizeFieldDisagreeingWithBuffer) {
  // Buffer cut short: the header still claims the full size.
  const std::string raw = EncodeDataEvent(SampleDataEvent("hello"));
  auto cut = ParseKernelEvent(Bytes(raw).first(raw.size() - 1));
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);

  // Header size altered.
  std::string altered = raw;
  auto header = LoadStruct<loupe_event_header>(altered);
  header.size += 1;
  StoreStruct(altered, header);
  EXPECT_EQ(ParseKernelEvent(Bytes(altered)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseKernelEventTest, RejectsConnEventOfWrongSize) {
  // A connection event whose size field and buffer agree, but are not the
  // struct's size.
  std::string raw = EncodeConnEvent(SampleConnEvent());
  raw.push_back('\0');
  auto header = LoadStruct<loupe_event_header>(raw);
  header.size = static_cast<uint32_t>(raw.size());
  StoreStruct(raw, header);
  EXPECT_EQ(ParseKernelEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseKernelEventTest, RejectsDataEventShorterThanItsStruct) {
  std::string raw = EncodeDataEvent(SampleDataEvent(""));
  raw.resize(sizeof(loupe_data_event) - 8);
  auto header = LoadStruct<loupe_event_header>(raw);
  header.size = static_cast<uint32_t>(raw.size());
  StoreStruct(raw, header);
  EXPECT_EQ(ParseKernelEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseKernelEventTest, RejectsCapturedLenDisagreeingWithSize) {
  std::string raw = EncodeDataEvent(SampleDataEvent("hello"));
  auto event = LoadStruct<loupe_data_event>(raw);
  event.captured_len = 4;
  StoreStruct(raw, event);
  auto parsed = ParseKernelEvent(Bytes(raw));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("captured_len"), std::string::npos) << parsed.status();
}

TEST(ParseKernelEventTest, RejectsCapturedLenAboveTotalLen) {
  DataEvent in = SampleDataEvent("hello");
  in.total_len = 3;
  auto parsed = ParseKernelEvent(Bytes(EncodeDataEvent(in)));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("captured 5 of only 3"), std::string::npos)
      << parsed.status();
}

TEST(ParseKernelEventTest, RejectsBadAddressFamily) {
  ConnEvent conn = SampleConnEvent();
  conn.tuple.local.addr.family = AF_UNIX;
  auto parsed_conn = ParseKernelEvent(Bytes(EncodeConnEvent(conn)));
  EXPECT_EQ(parsed_conn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed_conn.status().message().find("family"), std::string::npos);

  DataEvent data = SampleDataEvent("x");
  data.tuple.local.addr.family = 0;
  EXPECT_EQ(ParseKernelEvent(Bytes(EncodeDataEvent(data))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseKernelEventTest, RejectsUnknownEventType) {
  std::string raw = EncodeConnEvent(SampleConnEvent());
  auto header = LoadStruct<loupe_event_header>(raw);
  header.type = 99;
  StoreStruct(raw, header);
  auto parsed = ParseKernelEvent(Bytes(raw));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("unknown event type 99"), std::string::npos);
}

TEST(ParseKernelEventTest, RejectsBadDirectionAndRole) {
  std::string raw = EncodeDataEvent(SampleDataEvent("x"));
  auto event = LoadStruct<loupe_data_event>(raw);
  event.direction = 2;
  StoreStruct(raw, event);
  EXPECT_EQ(ParseKernelEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);

  event.direction = LOUPE_DIR_EGRESS;
  event.role = 3;
  StoreStruct(raw, event);
  EXPECT_EQ(ParseKernelEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);

  std::string conn = EncodeConnEvent(SampleConnEvent());
  auto conn_event = LoadStruct<loupe_conn_event>(conn);
  conn_event.role = 7;
  StoreStruct(conn, conn_event);
  EXPECT_EQ(ParseKernelEvent(Bytes(conn)).status().code(), absl::StatusCode::kInvalidArgument);
}

// --- OOM-kill events -------------------------------------------------------

OomEvent SampleOomEvent() {
  OomEvent ev;
  ev.header.ts_ns = 3'000'000'000;
  ev.header.cgroup_id = 9;
  ev.header.tgid = 4000;
  ev.header.tid = 4001;
  ev.victim_pid = 4002;
  ev.victim_uid = 1000;
  ev.victim_comm = "leaky";
  ev.total_vm_kb = 110'000;
  ev.anon_rss_kb = 30'500;
  ev.file_rss_kb = 1'200;
  ev.shmem_rss_kb = 4;
  ev.pgtables_kb = 120;
  ev.oom_score_adj = -17;
  ev.kind = OomKind::kCgroup;
  ev.flags = LOUPE_OOM_F_TP_DETAILS | LOUPE_OOM_F_MEMCG_V1 | LOUPE_OOM_F_BY_OOM_LOCK;
  ev.oom_memcg_id = 321;
  ev.trigger_memcg_id = 322;
  ev.memcg_usage_pages = 8190;
  ev.memcg_limit_pages = 8192;
  ev.trigger_comm = "allocator";
  return ev;
}

TEST(OomEventTest, RoundTrip) {
  const OomEvent in = SampleOomEvent();
  const std::string raw = EncodeOomEvent(in);
  ASSERT_EQ(raw.size(), sizeof(loupe_oom_event));
  EXPECT_TRUE(IsOomEvent(Bytes(raw)));
  auto parsed = ParseOomEvent(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const OomEvent& out = *parsed;
  EXPECT_EQ(out.header.type, LOUPE_EV_OOM_KILL);
  EXPECT_EQ(out.header.ts_ns, in.header.ts_ns);
  EXPECT_EQ(out.header.conn_id, 0u);
  EXPECT_EQ(out.header.cgroup_id, 9u);
  EXPECT_EQ(out.header.tgid, 4000u);
  EXPECT_EQ(out.header.tid, 4001u);
  EXPECT_EQ(out.victim_pid, 4002u);
  EXPECT_EQ(out.victim_uid, 1000u);
  EXPECT_EQ(out.victim_comm, "leaky");
  EXPECT_EQ(out.total_vm_kb, 110'000u);
  EXPECT_EQ(out.anon_rss_kb, 30'500u);
  EXPECT_EQ(out.file_rss_kb, 1'200u);
  EXPECT_EQ(out.shmem_rss_kb, 4u);
  EXPECT_EQ(out.pgtables_kb, 120u);
  EXPECT_EQ(out.oom_score_adj, -17);
  EXPECT_EQ(out.kind, OomKind::kCgroup);
  EXPECT_EQ(out.flags, in.flags);
  EXPECT_EQ(out.oom_memcg_id, 321u);
  EXPECT_EQ(out.trigger_memcg_id, 322u);
  EXPECT_EQ(out.memcg_usage_pages, 8190u);
  EXPECT_EQ(out.memcg_limit_pages, 8192u);
  EXPECT_EQ(out.trigger_comm, "allocator");
}

TEST(OomEventTest, CommsAreCutToFifteenCharacters) {
  OomEvent in = SampleOomEvent();
  in.victim_comm = "a-very-long-process-name";
  in.trigger_comm = "another-long-process-name";
  auto parsed = ParseOomEvent(Bytes(EncodeOomEvent(in)));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->victim_comm, "a-very-long-pro");
  EXPECT_EQ(parsed->trigger_comm, "another-long-pr");
}

TEST(OomEventTest, IsOomEventLooksAtTheTypeOnly) {
  EXPECT_FALSE(IsOomEvent(Bytes(EncodeConnEvent(SampleConnEvent()))));
  EXPECT_FALSE(IsOomEvent(Bytes(EncodeDataEvent(SampleDataEvent("x")))));
  const std::string raw = EncodeOomEvent(SampleOomEvent());
  EXPECT_FALSE(IsOomEvent(Bytes(raw).first(sizeof(loupe_event_header) - 1)));
  EXPECT_TRUE(IsOomEvent(Bytes(raw).first(sizeof(loupe_event_header))));  // Parse rejects it
  EXPECT_FALSE(IsOomEvent({}));
}

TEST(OomEventTest, ParseKernelEventPointsAtParseOomEvent) {
  auto parsed = ParseKernelEvent(Bytes(EncodeOomEvent(SampleOomEvent())));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("ParseOomEvent"), std::string::npos)
      << parsed.status();
}

TEST(OomEventTest, RejectsTruncatedEvents) {
  const std::string raw = EncodeOomEvent(SampleOomEvent());
  for (size_t n : {size_t{0}, sizeof(loupe_event_header) - 1, sizeof(loupe_event_header),
                   sizeof(loupe_oom_event) - 1}) {
    auto parsed = ParseOomEvent(Bytes(raw).first(n));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
}

TEST(OomEventTest, RejectsWrongSizeEvenWhenHeaderAndBufferAgree) {
  for (size_t size : {sizeof(loupe_oom_event) - 8, sizeof(loupe_oom_event) + 8}) {
    std::string raw = EncodeOomEvent(SampleOomEvent());
    raw.resize(size);
    auto header = LoadStruct<loupe_event_header>(raw);
    header.size = static_cast<uint32_t>(raw.size());
    StoreStruct(raw, header);
    auto parsed = ParseOomEvent(Bytes(raw));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << size;
    EXPECT_NE(parsed.status().message().find("OOM-kill event of"), std::string::npos)
        << parsed.status();
  }
}

TEST(OomEventTest, RejectsWrongAbiTypeAndKind) {
  std::string raw = EncodeOomEvent(SampleOomEvent());
  auto header = LoadStruct<loupe_event_header>(raw);
  header.abi = 0;
  StoreStruct(raw, header);
  EXPECT_EQ(ParseOomEvent(Bytes(raw)).status().code(), absl::StatusCode::kFailedPrecondition);

  header.abi = LOUPE_ABI_VERSION;
  header.type = LOUPE_EV_CONN_OPEN;
  StoreStruct(raw, header);
  EXPECT_EQ(ParseOomEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);

  std::string bad_kind = EncodeOomEvent(SampleOomEvent());
  auto event = LoadStruct<loupe_oom_event>(bad_kind);
  event.kind = LOUPE_OOM_KIND_GLOBAL + 1;
  StoreStruct(bad_kind, event);
  auto parsed = ParseOomEvent(Bytes(bad_kind));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("kind"), std::string::npos) << parsed.status();
}

TEST(OomEventTest, KindNames) {
  EXPECT_EQ(OomKindName(OomKind::kCgroup), "cgroup");
  EXPECT_EQ(OomKindName(OomKind::kGlobal), "global");
  EXPECT_EQ(OomKindName(OomKind::kUnknown), "unknown");
}

ProcessEvent SampleProcessEvent(ProcessEventKind kind) {
  ProcessEvent ev;
  ev.header.ts_ns = 123456789;
  ev.header.cgroup_id = 42;
  ev.header.tgid = 4321;
  ev.header.tid = 4321;
  ev.kind = kind;
  ev.ppid = 17;
  ev.comm = "curl";
  return ev;
}

TEST(ProcessEventTest, RoundTrip) {
  for (ProcessEventKind kind : {ProcessEventKind::kExec, ProcessEventKind::kExit}) {
    const std::string raw = EncodeProcessEvent(SampleProcessEvent(kind));
    ASSERT_EQ(raw.size(), sizeof(loupe_process_event));
    EXPECT_TRUE(IsProcessEvent(Bytes(raw)));
    EXPECT_FALSE(IsOomEvent(Bytes(raw)));
    auto parsed = ParseProcessEvent(Bytes(raw));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->kind, kind);
    EXPECT_EQ(parsed->header.type, LOUPE_EV_PROCESS);
    EXPECT_EQ(parsed->header.ts_ns, 123456789u);
    EXPECT_EQ(parsed->header.cgroup_id, 42u);
    EXPECT_EQ(parsed->header.tgid, 4321u);
    EXPECT_EQ(parsed->header.tid, 4321u);
    EXPECT_EQ(parsed->header.conn_id, 0u);
    EXPECT_EQ(parsed->ppid, 17u);
    EXPECT_EQ(parsed->comm, "curl");
  }
}

TEST(ProcessEventTest, CommIsCutToFifteenCharacters) {
  ProcessEvent in = SampleProcessEvent(ProcessEventKind::kExec);
  in.comm = "a-very-long-program-name";
  auto parsed = ParseProcessEvent(Bytes(EncodeProcessEvent(in)));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->comm, "a-very-long-pro");
}

TEST(ProcessEventTest, IsProcessEventLooksAtTheTypeOnly) {
  EXPECT_FALSE(IsProcessEvent(Bytes(EncodeConnEvent(SampleConnEvent()))));
  EXPECT_FALSE(IsProcessEvent(Bytes(EncodeOomEvent(SampleOomEvent()))));
  const std::string raw = EncodeProcessEvent(SampleProcessEvent(ProcessEventKind::kExit));
  EXPECT_FALSE(IsProcessEvent(Bytes(raw).first(sizeof(loupe_event_header) - 1)));
  EXPECT_TRUE(IsProcessEvent(Bytes(raw).first(sizeof(loupe_event_header))));
  EXPECT_FALSE(IsProcessEvent({}));
}

TEST(ProcessEventTest, ParseKernelEventPointsAtParseProcessEvent) {
  auto parsed =
      ParseKernelEvent(Bytes(EncodeProcessEvent(SampleProcessEvent(ProcessEventKind::kExec))));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("ParseProcessEvent"), std::string::npos)
      << parsed.status();
}

TEST(ProcessEventTest, RejectsTruncatedAndWrongSizeEvents) {
  const std::string raw = EncodeProcessEvent(SampleProcessEvent(ProcessEventKind::kExec));
  for (size_t n : {size_t{0}, sizeof(loupe_event_header) - 1, sizeof(loupe_event_header),
                   sizeof(loupe_process_event) - 1}) {
    EXPECT_EQ(ParseProcessEvent(Bytes(raw).first(n)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << n;
  }
  std::string longer = raw + std::string(8, '\0');
  auto header = LoadStruct<loupe_event_header>(longer);
  header.size = static_cast<uint32_t>(longer.size());
  StoreStruct(longer, header);
  auto parsed = ParseProcessEvent(Bytes(longer));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("process event of"), std::string::npos)
      << parsed.status();
}

TEST(ProcessEventTest, RejectsWrongAbiTypeAndKind) {
  std::string raw = EncodeProcessEvent(SampleProcessEvent(ProcessEventKind::kExec));
  auto header = LoadStruct<loupe_event_header>(raw);
  header.abi = LOUPE_ABI_VERSION + 1;
  StoreStruct(raw, header);
  EXPECT_EQ(ParseProcessEvent(Bytes(raw)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  header.abi = LOUPE_ABI_VERSION;
  header.type = LOUPE_EV_OOM_KILL;
  StoreStruct(raw, header);
  EXPECT_EQ(ParseProcessEvent(Bytes(raw)).status().code(), absl::StatusCode::kInvalidArgument);

  for (uint8_t kind : {uint8_t{0}, uint8_t{LOUPE_PROCESS_EXIT + 1}}) {
    std::string bad_kind = EncodeProcessEvent(SampleProcessEvent(ProcessEventKind::kExec));
    auto event = LoadStruct<loupe_process_event>(bad_kind);
    event.kind = kind;
    StoreStruct(bad_kind, event);
    auto parsed = ParseProcessEvent(Bytes(bad_kind));
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("kind"), std::string::npos) << parsed.status();
  }
}

TEST(ProcessEventTest, KindNames) {
  EXPECT_EQ(ProcessEventKindName(ProcessEventKind::kExec), "exec");
  EXPECT_EQ(ProcessEventKindName(ProcessEventKind::kExit), "exit");
}

TEST(IpAddressTest, ToString) {
  EXPECT_EQ(V4("127.0.0.1").ToString(), "127.0.0.1");
  EXPECT_EQ(V4("10.20.30.40").ToString(), "10.20.30.40");
  EXPECT_EQ(V6("::1").ToString(), "::1");
  EXPECT_EQ(V6("2001:db8:0:0:0:0:0:7").ToString(), "2001:db8::7");
  EXPECT_EQ(V6("fe80::1:2:3:4").ToString(), "fe80::1:2:3:4");
  // IPv4-mapped IPv6 (dual-stack sockets) prints as the IPv4 address.
  EXPECT_EQ(V6("::ffff:192.168.1.20").ToString(), "192.168.1.20");
  // Only the ::ffff:0:0/96 prefix counts as mapped.
  EXPECT_EQ(V6("::fffe:c0a8:114").ToString(), "::fffe:c0a8:114");
  IpAddress none;
  EXPECT_EQ(none.ToString(), "");
}

TEST(NamesTest, EnumNames) {
  EXPECT_EQ(DirectionName(Direction::kEgress), "egress");
  EXPECT_EQ(DirectionName(Direction::kIngress), "ingress");
  EXPECT_EQ(RoleName(Role::kServer), "server");
  EXPECT_EQ(RoleName(Role::kClient), "client");
  EXPECT_EQ(RoleName(Role::kUnknown), "unknown");
  EXPECT_EQ(ProtocolName(Protocol::kHttp1), "http1");
  EXPECT_EQ(SyscallName(LOUPE_SYS_SENDMSG), "sendmsg");
  EXPECT_EQ(SyscallName(200), "none");
  EXPECT_EQ(Opposite(Direction::kEgress), Direction::kIngress);
}

}  // namespace
}  // namespace loupe
