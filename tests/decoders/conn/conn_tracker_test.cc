#include "decoders/conn/conn_tracker.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace loupe {
namespace {

using ::testing::ElementsAre;

// ---------------------------------------------------------------------------
// A fake protocol: '\n'-terminated lines are messages. It consumes complete
// lines only (so an unterminated line stays buffered, like a large header
// would), skips gaps, emits one SpanRecord per line and records every call.

struct DecoderCall {
  enum Kind { kCreate, kData, kReset, kClose };
  Kind kind = kCreate;
  uint64_t conn_id = 0;
  Direction dir = Direction::kEgress;
  bool closed = false;
  ConnInfo conn;  // as the decoder saw it during the call
  // kData: what the stream offered; kClose: what was left, per direction.
  uint64_t position = 0;
  std::string visible;
  uint64_t gap = 0;
  std::array<uint64_t, kDirections> left_at_close{};
  std::array<size_t, kDirections> buffered_at_close{};
};

std::vector<DecoderCall>* g_calls = nullptr;

void Record(DecoderCall call) {
  if (g_calls != nullptr) g_calls->push_back(std::move(call));
}

class LineDecoder : public ConnectionDecoder {
 public:
  void OnData(Direction dir, ByteStream& stream, DecodeContext& ctx) override {
    DecoderCall call{.kind = DecoderCall::kData, .conn_id = ctx.conn.conn_id, .dir = dir,
                     .conn = ctx.conn};
    call.position = stream.position();
    call.visible = std::string(stream.Contiguous());
    call.gap = stream.GapLength();
    Record(std::move(call));
    while (!stream.empty()) {
      if (const uint64_t gap = stream.GapLength(); gap > 0) {
        ++ctx.stats.truncated;
        stream.Consume(gap);
        continue;
      }
      const std::string_view data = stream.Contiguous();
      const size_t newline = data.find('\n');
      if (newline == std::string_view::npos) break;
      SpanRecord record;
      record.name = std::string(data.substr(0, newline));
      record.kind = ctx.conn.role == Role::kClient ? SpanKind::kClient : SpanKind::kServer;
      record.conn_id = ctx.conn.conn_id;
      record.start_mono_ns = stream.TimeAt(stream.position()).start_ns;
      ++ctx.stats.messages;
      ++ctx.stats.records;
      stream.Consume(newline + 1);
      ctx.sink.OnSpan(std::move(record));
    }
  }
  void OnStreamReset(Direction dir, DecodeContext& ctx) override {
    Record({.kind = DecoderCall::kReset, .conn_id = ctx.conn.conn_id, .dir = dir,
            .conn = ctx.conn});
  }
  void OnClose(bool closed, std::span<ByteStream, kDirections> streams,
               DecodeContext& ctx) override {
    DecoderCall call{.kind = DecoderCall::kClose, .conn_id = ctx.conn.conn_id, .closed = closed,
                     .conn = ctx.conn};
    for (int d = 0; d < kDirections; ++d) {
      call.left_at_close[d] = streams[d].available();
      call.buffered_at_close[d] = streams[d].buffered_bytes();
      if (streams[d].available() > 0) ++ctx.stats.unanswered_requests;
    }
    Record(std::move(call));
  }
};

std::unique_ptr<ConnectionDecoder> CreateLineDecoder(const ConnInfo& conn,
                                                     const DecoderOptions&) {
  Record({.kind = DecoderCall::kCreate, .conn_id = conn.conn_id, .conn = conn});
  return std::make_unique<LineDecoder>();
}

// Registered under the HTTP/1 id (the only protocol the kernel classifies);
// nothing of the real HTTP/1 decoder is involved.
constexpr ProtocolDescriptor kFakeProtocols[] = {
    {Protocol::kHttp1, "lines", &CreateLineDecoder},
};

class RecordingSink : public SpanSink {
 public:
  void OnSpan(SpanRecord&& record) override { records.push_back(std::move(record)); }
  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const SpanRecord& r : records) names.push_back(r.name);
    return names;
  }
  std::vector<SpanRecord> records;
};

// ---------------------------------------------------------------------------
// Event builders.

ConnTuple Tuple(uint16_t local_port, uint16_t remote_port) {
  ConnTuple t;
  t.local.addr.family = AF_INET;
  t.remote.addr.family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", t.local.addr.bytes.data());
  inet_pton(AF_INET, "10.0.0.9", t.remote.addr.bytes.data());
  t.local.port = local_port;
  t.remote.port = remote_port;
  return t;
}

ConnEvent Open(uint64_t conn_id, uint64_t ts_ns, Role role = Role::kServer,
               Protocol protocol = Protocol::kHttp1) {
  ConnEvent ev;
  ev.header.conn_id = conn_id;
  ev.header.ts_ns = ts_ns;
  ev.header.tgid = 100;
  ev.header.tid = 101;
  ev.open = true;
  ev.tuple = Tuple(8080, static_cast<uint16_t>(40000 + conn_id));
  ev.start_ns = ts_ns - 5;
  ev.role = role;
  ev.role_source = role == Role::kServer   ? RoleSource::kAccept
                   : role == Role::kClient ? RoleSource::kConnect
                                           : RoleSource::kNone;
  ev.protocol = protocol;
  ev.comm = "server";
  return ev;
}

ConnEvent Close(uint64_t conn_id, uint64_t ts_ns) {
  ConnEvent ev = Open(conn_id, ts_ns);
  ev.open = false;
  ev.role = Role::kUnknown;
  return ev;
}

// Keeps payloads alive: DataEvent borrows its bytes.
class Events {
 public:
  DataEvent Data(uint64_t conn_id, uint64_t ts_ns, Direction dir, uint64_t offset,
                 std::string payload, uint64_t total_len = 0, Role role = Role::kServer,
                 Protocol protocol = Protocol::kHttp1) {
    payloads_.push_back(std::make_unique<std::string>(std::move(payload)));
    const std::string& p = *payloads_.back();
    DataEvent ev;
    ev.header.conn_id = conn_id;
    ev.header.ts_ns = ts_ns;
    ev.header.tgid = 100;
    ev.header.tid = 102;
    ev.tuple = Tuple(8080, static_cast<uint16_t>(40000 + conn_id));
    ev.enter_ns = ts_ns - 3;
    ev.stream_offset = offset;
    ev.total_len = total_len == 0 ? p.size() : total_len;
    ev.direction = dir;
    ev.protocol = protocol;
    ev.role = role;
    ev.syscall = dir == Direction::kIngress ? LOUPE_SYS_READ : LOUPE_SYS_WRITE;
    ev.payload = {reinterpret_cast<const uint8_t*>(p.data()), p.size()};
    return ev;
  }

 private:
  std::vector<std::unique_ptr<std::string>> payloads_;
};

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

class ConnTrackerTest : public ::testing::Test {
 protected:
  void SetUp() override { g_calls = &calls_; }
  void TearDown() override { g_calls = nullptr; }

  ConnTracker& Tracker(TrackerOptions options = {}) {
    tracker_ = std::make_unique<ConnTracker>(options, sink_, kFakeProtocols);
    return *tracker_;
  }

  std::vector<DecoderCall> CallsOf(DecoderCall::Kind kind) const {
    std::vector<DecoderCall> out;
    for (const DecoderCall& c : calls_) {
      if (c.kind == kind) out.push_back(c);
    }
    return out;
  }
  // Compact call trace: "create 1", "data 1 ingress", "reset 1 egress",
  // "close 1 closed" / "close 1 abandoned".
  std::vector<std::string> Trace() const {
    std::vector<std::string> out;
    for (const DecoderCall& c : calls_) {
      const std::string id = std::to_string(c.conn_id);
      switch (c.kind) {
        case DecoderCall::kCreate:
          out.push_back("create " + id);
          break;
        case DecoderCall::kData:
          out.push_back("data " + id + " " + std::string(DirectionName(c.dir)));
          break;
        case DecoderCall::kReset:
          out.push_back("reset " + id + " " + std::string(DirectionName(c.dir)));
          break;
        case DecoderCall::kClose:
          out.push_back("close " + id + (c.closed ? " closed" : " abandoned"));
          break;
      }
    }
    return out;
  }

  std::vector<DecoderCall> calls_;
  RecordingSink sink_;
  Events events_;
  std::unique_ptr<ConnTracker> tracker_;
};

TEST_F(ConnTrackerTest, OpenDataCloseFlow) {
  ConnTracker& tracker = Tracker();
  tracker.OnConnEvent(Open(1, 1000));
  EXPECT_EQ(tracker.open_connections(), 1u);
  EXPECT_TRUE(calls_.empty()) << "the decoder is created with the first data";

  tracker.OnDataEvent(events_.Data(1, 1010, kIn, 0, "GET /a\n"));
  tracker.OnDataEvent(events_.Data(1, 1020, kOut, 0, "200 ok\n"));
  tracker.OnDataEvent(events_.Data(1, 1030, kIn, 7, "GET /b\nGET /c\n"));
  tracker.OnConnEvent(Close(1, 1040));

  EXPECT_THAT(Trace(), ElementsAre("create 1", "data 1 ingress", "data 1 egress",
                                   "data 1 ingress", "close 1 closed"));
  const DecoderCall& create = calls_[0];
  EXPECT_EQ(create.conn.conn_id, 1u);
  EXPECT_EQ(create.conn.tgid, 100u);
  EXPECT_EQ(create.conn.tuple, Tuple(8080, 40001));
  EXPECT_EQ(create.conn.role, Role::kServer);
  EXPECT_EQ(create.conn.role_source, RoleSource::kAccept);
  EXPECT_EQ(create.conn.protocol, Protocol::kHttp1);
  EXPECT_EQ(create.conn.start_ns, 995u);
  EXPECT_EQ(create.conn.comm, "server");
  EXPECT_EQ(calls_[1].visible, "GET /a\n");
  EXPECT_EQ(calls_[2].visible, "200 ok\n");
  EXPECT_EQ(calls_[3].position, 7u);
  EXPECT_EQ(calls_[3].visible, "GET /b\nGET /c\n");
  EXPECT_EQ(calls_[4].left_at_close, (std::array<uint64_t, 2>{0, 0}));

  EXPECT_THAT(sink_.Names(), ElementsAre("GET /a", "200 ok", "GET /b", "GET /c"));
  // The decoder got the syscall times through the stream.
  EXPECT_EQ(sink_.records[0].start_mono_ns, 1007u);
  EXPECT_EQ(tracker.open_connections(), 0u);

  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.connections_opened, 1u);
  EXPECT_EQ(stats.connections_closed, 1u);
  EXPECT_EQ(stats.connections_idle, 0u);
  EXPECT_EQ(stats.connections_evicted, 0u);
  EXPECT_EQ(stats.data_without_open, 0u);
  EXPECT_EQ(stats.bytes_received, 7u + 7u + 14u);
  EXPECT_EQ(stats.bytes_captured, 7u + 7u + 14u);
  EXPECT_EQ(stats.protocol.records, 4u);
  EXPECT_EQ(stats.protocol.messages, 4u);
}

TEST_F(ConnTrackerTest, EventsParsedFromKernelBytesReachTheDecoder) {
  ConnTracker& tracker = Tracker();
  const std::string open = EncodeConnEvent(Open(5, 100));
  const std::string data = EncodeDataEvent(events_.Data(5, 110, kIn, 0, "ping\n"));
  for (const std::string* raw : {&open, &data}) {
    auto event = ParseKernelEvent({reinterpret_cast<const uint8_t*>(raw->data()), raw->size()});
    ASSERT_TRUE(event.ok()) << event.status();
    tracker.OnEvent(*event);
  }
  EXPECT_THAT(sink_.Names(), ElementsAre("ping"));
  EXPECT_EQ(CallsOf(DecoderCall::kCreate).at(0).conn.comm, "server");
}

TEST_F(ConnTrackerTest, DataWithoutOpenCreatesTheConnection) {
  ConnTracker& tracker = Tracker();
  tracker.OnDataEvent(events_.Data(7, 2000, kOut, 500, "hello\n", 0, Role::kClient));
  EXPECT_EQ(tracker.open_connections(), 1u);
  ASSERT_THAT(Trace(), ElementsAre("create 7", "data 7 egress"));
  const ConnInfo& info = calls_[0].conn;
  EXPECT_EQ(info.conn_id, 7u);
  EXPECT_EQ(info.tgid, 100u);
  EXPECT_EQ(info.tuple, Tuple(8080, 40007));
  EXPECT_EQ(info.role, Role::kClient);
  EXPECT_EQ(info.role_source, RoleSource::kNone);  // a data event does not say
  EXPECT_EQ(info.protocol, Protocol::kHttp1);
  EXPECT_EQ(info.start_ns, 1997u);  // first sighting: syscall entry
  EXPECT_EQ(info.comm, "");
  // Joined mid-stream: the first event's offset starts the stream.
  EXPECT_EQ(calls_[1].position, 500u);
  EXPECT_EQ(calls_[1].visible, "hello\n");
  EXPECT_EQ(sink_.records.at(0).kind, SpanKind::kClient);

  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.data_without_open, 1u);
  EXPECT_EQ(stats.connections_opened, 1u);
}

TEST_F(ConnTrackerTest, LateOpenFillsInWhatTheDataEventDidNotKnow) {
  ConnTracker& tracker = Tracker();
  tracker.OnDataEvent(events_.Data(3, 2000, kIn, 0, "a\n", 0, Role::kUnknown));
  ConnEvent open = Open(3, 2001);
  open.start_ns = 1500;
  tracker.OnConnEvent(open);
  tracker.OnDataEvent(events_.Data(3, 2010, kIn, 2, "b\n", 0, Role::kUnknown));
  const DecoderCall& last = calls_.back();
  EXPECT_EQ(last.conn.role, Role::kServer);
  EXPECT_EQ(last.conn.role_source, RoleSource::kAccept);
  EXPECT_EQ(last.conn.comm, "server");
  EXPECT_EQ(last.conn.start_ns, 1500u);
  EXPECT_EQ(tracker.stats().connections_opened, 1u) << "one connection, not two";
}

TEST_F(ConnTrackerTest, LateOpenTeachesTheProtocol) {
  ConnTracker& tracker = Tracker();
  tracker.OnDataEvent(
      events_.Data(3, 2000, kIn, 0, "a\n", 0, Role::kServer, Protocol::kUnknown));
  EXPECT_TRUE(calls_.empty());
  tracker.OnConnEvent(Open(3, 2001, Role::kServer, Protocol::kHttp1));
  tracker.OnDataEvent(
      events_.Data(3, 2010, kIn, 2, "b\n", 0, Role::kServer, Protocol::kUnknown));
  EXPECT_THAT(Trace(), ElementsAre("create 3", "data 3 ingress"));
  EXPECT_THAT(sink_.Names(), ElementsAre("b"));
}

TEST_F(ConnTrackerTest, ActivityNeverMovesBackwards) {
  ConnTracker& tracker = Tracker({.idle_timeout_ns = 1000});
  tracker.OnDataEvent(events_.Data(1, 900, kIn, 0, "a"));
  // An event stamped earlier, delivered later (another CPU's ring).
  tracker.OnDataEvent(events_.Data(1, 800, kIn, 1, "b"));
  tracker.Tick(1850);
  EXPECT_EQ(tracker.open_connections(), 1u);
  tracker.Tick(1901);
  EXPECT_EQ(tracker.open_connections(), 0u);
}

TEST_F(ConnTrackerTest, UnknownRoleIsLearnedFromLaterEvents) {
  ConnTracker& tracker = Tracker();
  tracker.OnConnEvent(Open(2, 100, Role::kUnknown));
  tracker.OnDataEvent(events_.Data(2, 110, kIn, 0, "x\n", 0, Role::kUnknown));
  ASSERT_EQ(calls_.back().kind, DecoderCall::kData);
  EXPECT_EQ(calls_.back().conn.role, Role::kUnknown);

  tracker.OnDataEvent(events_.Data(2, 120, kOut, 0, "y\n", 0, Role::kServer));
  EXPECT_EQ(calls_.back().conn.role, Role::kServer);
  EXPECT_EQ(calls_.back().conn.role_source, RoleSource::kTraffic);
  EXPECT_EQ(sink_.records.at(0).kind, SpanKind::kServer);  // the fake's default
  EXPECT_EQ(sink_.records.at(1).kind, SpanKind::kServer);

  // A known role is not overturned by a later event.
  tracker.OnDataEvent(events_.Data(2, 130, kIn, 2, "z\n", 0, Role::kClient));
  EXPECT_EQ(calls_.back().conn.role, Role::kServer);
  EXPECT_EQ(sink_.records.at(2).kind, SpanKind::kServer);
}

TEST_F(ConnTrackerTest, CloseTeachesTheRoleBeforeTheDecoderFinishes) {
  ConnTracker& tracker = Tracker();
  tracker.OnConnEvent(Open(2, 100, Role::kUnknown));
  tracker.OnDataEvent(events_.Data(2, 110, kIn, 0, "x", 0, Role::kUnknown));
  ConnEvent close = Close(2, 120);
  close.role = Role::kClient;
  close.role_source = RoleSource::kTraffic;
  tracker.OnConnEvent(close);
  ASSERT_EQ(calls_.back().kind, DecoderCall::kClose);
  EXPECT_EQ(calls_.back().conn.role, Role::kClient);
  EXPECT_EQ(calls_.back().left_at_close[Index(kIn)], 1u);  // the unterminated "x"
}

TEST_F(ConnTrackerTest, OutOfOrderDataWaitsThenIsFlushedOnTick) {
  ConnTracker& tracker = Tracker({.reorder_wait_ns = 100});
  tracker.OnConnEvent(Open(1, 1000));
  tracker.OnDataEvent(events_.Data(1, 1000, kIn, 0, "a\n"));
  // Bytes [2, 10) have not arrived; this event waits for them.
  tracker.OnDataEvent(events_.Data(1, 1010, kIn, 10, "k\n"));
  EXPECT_THAT(Trace(), ElementsAre("create 1", "data 1 ingress")) << "nothing new to decode";

  tracker.Tick(1100);  // held 90 ns: keep waiting
  tracker.Tick(1110);  // held exactly reorder_wait_ns: not longer, keep waiting
  EXPECT_EQ(calls_.size(), 2u);
  EXPECT_THAT(sink_.Names(), ElementsAre("a"));

  tracker.Tick(1111);  // held 101 ns: give up on the hole
  EXPECT_THAT(Trace(), ElementsAre("create 1", "data 1 ingress", "data 1 ingress"));
  EXPECT_EQ(calls_.back().position, 2u);
  EXPECT_EQ(calls_.back().gap, 8u);
  EXPECT_THAT(sink_.Names(), ElementsAre("a", "k"));

  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.lost_bytes, 8u);
  EXPECT_EQ(stats.gap_bytes, 8u);
  EXPECT_EQ(stats.protocol.truncated, 1u);

  // Nothing is held any more: later ticks do nothing.
  tracker.Tick(5000);
  EXPECT_EQ(calls_.size(), 3u);
}

TEST_F(ConnTrackerTest, HoleFilledInTimeNeedsNoFlush) {
  ConnTracker& tracker = Tracker({.reorder_wait_ns = 100});
  tracker.OnDataEvent(events_.Data(1, 1000, kIn, 0, "a\n"));
  tracker.OnDataEvent(events_.Data(1, 1001, kIn, 4, "c\n"));
  tracker.OnDataEvent(events_.Data(1, 1002, kIn, 2, "b\n"));
  EXPECT_THAT(sink_.Names(), ElementsAre("a", "b", "c"));
  // A later hole starts its own wait: at 1150 it has waited 40 ns only.
  tracker.OnDataEvent(events_.Data(1, 1110, kIn, 20, "z\n"));
  tracker.Tick(1150);
  EXPECT_THAT(sink_.Names(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(tracker.stats().lost_bytes, 0u);
  tracker.Tick(1211);
  EXPECT_THAT(sink_.Names(), ElementsAre("a", "b", "c", "z"));
  EXPECT_EQ(tracker.stats().lost_bytes, 14u);
}

TEST_F(ConnTrackerTest, CloseHandsHeldDataToTheDecoderFirst) {
  ConnTracker& tracker = Tracker({.reorder_wait_ns = 1'000'000});
  tracker.OnDataEvent(events_.Data(1, 1000, kIn, 0, "a\n"));
  tracker.OnDataEvent(events_.Data(1, 1001, kIn, 5, "late\n"));
  tracker.OnConnEvent(Close(1, 1002));
  EXPECT_THAT(Trace(), ElementsAre("create 1", "data 1 ingress", "data 1 ingress",
                                   "close 1 closed"));
  EXPECT_THAT(sink_.Names(), ElementsAre("a", "late"));
}

TEST_F(ConnTrackerTest, IdleConnectionsAreReclaimed) {
  ConnTracker& tracker = Tracker({.idle_timeout_ns = 1000});
  tracker.OnConnEvent(Open(1, 100));
  tracker.OnDataEvent(events_.Data(1, 100, kIn, 0, "a"));
  tracker.OnConnEvent(Open(2, 500));
  tracker.OnDataEvent(events_.Data(2, 500, kIn, 0, "b"));
  tracker.OnConnEvent(Open(3, 600));
  tracker.OnDataEvent(events_.Data(1, 900, kIn, 1, "a"));  // 1 is active again

  tracker.Tick(1500);  // 2 idle for 1000 ns: not longer than the timeout
  EXPECT_EQ(tracker.open_connections(), 3u);

  tracker.Tick(1501);
  EXPECT_EQ(tracker.open_connections(), 2u);
  ASSERT_EQ(CallsOf(DecoderCall::kClose).size(), 1u);
  const DecoderCall close = CallsOf(DecoderCall::kClose)[0];
  EXPECT_EQ(close.conn_id, 2u);
  EXPECT_FALSE(close.closed) << "idle reclaim abandons, it is not a close()";
  EXPECT_EQ(close.left_at_close[Index(kIn)], 1u);

  tracker.Tick(2000);  // 1 (last active 900) and 3 (600, no decoder) go
  EXPECT_EQ(tracker.open_connections(), 0u);
  EXPECT_THAT(Trace(), ::testing::Contains("close 1 abandoned"));
  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.connections_idle, 3u);
  EXPECT_EQ(stats.connections_closed, 0u);
  EXPECT_EQ(stats.protocol.unanswered_requests, 2u);
}

TEST_F(ConnTrackerTest, LeastRecentlyActiveConnectionIsEvicted) {
  ConnTracker& tracker = Tracker({.max_connections = 3});
  for (uint64_t id = 1; id <= 3; ++id) {
    tracker.OnConnEvent(Open(id, 100 * id));
    tracker.OnDataEvent(events_.Data(id, 100 * id, kIn, 0, "x"));
  }
  tracker.OnDataEvent(events_.Data(1, 400, kIn, 1, "x"));  // 1 is now the most recent
  calls_.clear();

  tracker.OnConnEvent(Open(4, 500));
  EXPECT_EQ(tracker.open_connections(), 3u);
  EXPECT_THAT(Trace(), ElementsAre("close 2 abandoned"));

  // Data for the evicted connection comes back as a new, unannounced entry,
  // pushing out the next least recent (3).
  tracker.OnDataEvent(events_.Data(2, 600, kIn, 1, "y\n"));
  EXPECT_EQ(tracker.open_connections(), 3u);
  EXPECT_THAT(Trace(),
              ElementsAre("close 2 abandoned", "close 3 abandoned", "create 2", "data 2 ingress"));

  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.connections_evicted, 2u);
  EXPECT_EQ(stats.connections_opened, 5u);
  EXPECT_EQ(stats.data_without_open, 1u);
}

TEST_F(ConnTrackerTest, BufferBoundDropsTheHeadAndResetsTheDecoder) {
  constexpr size_t kLimit = 100;
  ConnTracker& tracker = Tracker({.max_buffered_bytes_per_direction = kLimit});
  // An unterminated 300-byte line: the decoder keeps it all, waiting.
  std::string long_line;
  for (int i = 0; i < 300; ++i) long_line.push_back(static_cast<char>('a' + i % 26));
  // What the stream charges for holding it (bytes plus bookkeeping).
  ByteStream probe;
  probe.Add(0, {reinterpret_cast<const uint8_t*>(long_line.data()), long_line.size()},
            long_line.size(), {});
  const uint64_t excess = probe.buffered_bytes() - kLimit;

  tracker.OnDataEvent(events_.Data(1, 100, kIn, 0, long_line));
  EXPECT_THAT(Trace(), ElementsAre("create 1", "data 1 ingress", "reset 1 ingress"));
  EXPECT_EQ(tracker.stats().over_limit_bytes, excess);
  EXPECT_EQ(tracker.buffered_bytes(), kLimit);

  // The oldest bytes went; the decoder resumes on the tail.
  tracker.OnDataEvent(events_.Data(1, 110, kIn, 300, "!\n"));
  ASSERT_EQ(calls_.back().kind, DecoderCall::kData);
  EXPECT_EQ(calls_.back().position, excess);
  EXPECT_EQ(calls_.back().visible, long_line.substr(excess) + "!\n");
  EXPECT_THAT(sink_.Names(), ElementsAre(long_line.substr(excess) + "!"));
  // The other direction was never touched.
  EXPECT_EQ(CallsOf(DecoderCall::kReset).size(), 1u);
}

TEST_F(ConnTrackerTest, BufferBoundAlsoCoversHeldOutOfOrderEvents) {
  constexpr size_t kLimit = 100;
  ConnTracker& tracker = Tracker({.max_buffered_bytes_per_direction = kLimit,
                                  .reorder_wait_ns = 1'000'000'000});
  tracker.OnDataEvent(events_.Data(1, 100, kIn, 0, "a\n"));
  // 60-byte events wait behind a hole at [2, 10); one fits the bound.
  tracker.OnDataEvent(events_.Data(1, 101, kIn, 10, std::string(60, 'x')));
  EXPECT_TRUE(CallsOf(DecoderCall::kReset).empty());
  EXPECT_EQ(tracker.stats().lost_bytes, 0u);
  // Two do not: the hole is given up on so that the oldest bytes can go.
  tracker.OnDataEvent(events_.Data(1, 102, kIn, 70, std::string(60, 'y')));
  EXPECT_EQ(CallsOf(DecoderCall::kReset).size(), 1u);
  EXPECT_GT(tracker.stats().over_limit_bytes, 0u);
  EXPECT_EQ(tracker.stats().lost_bytes, 8u);
  tracker.OnConnEvent(Close(1, 200));
  const DecoderCall close = CallsOf(DecoderCall::kClose).at(0);
  EXPECT_LE(close.buffered_at_close[Index(kIn)], kLimit);
}

TEST_F(ConnTrackerTest, UnknownProtocolIsCountedNotBuffered) {
  ConnTracker& tracker = Tracker();
  tracker.OnConnEvent(Open(9, 100, Role::kServer, Protocol::kUnknown));
  tracker.OnDataEvent(
      events_.Data(9, 110, kIn, 0, "whatever\n", 0, Role::kServer, Protocol::kUnknown));
  tracker.OnDataEvent(
      events_.Data(9, 120, kOut, 0, "bytes\n", 0, Role::kServer, Protocol::kUnknown));
  EXPECT_TRUE(calls_.empty());
  EXPECT_TRUE(sink_.records.empty());
  EXPECT_EQ(tracker.open_connections(), 1u);
  TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.unknown_protocol_events, 2u);
  EXPECT_EQ(stats.bytes_received, 15u);

  // A protocol learned later starts decoding from there on.
  tracker.OnDataEvent(events_.Data(9, 130, kIn, 9, "now\n"));
  EXPECT_THAT(Trace(), ElementsAre("create 9", "data 9 ingress"));
  EXPECT_THAT(sink_.Names(), ElementsAre("now"));
}

TEST_F(ConnTrackerTest, CloseOfAnUnknownConnectionIsIgnored) {
  ConnTracker& tracker = Tracker();
  tracker.OnConnEvent(Close(42, 100));
  EXPECT_EQ(tracker.open_connections(), 0u);
  EXPECT_EQ(tracker.stats().connections_closed, 0u);
  EXPECT_TRUE(calls_.empty());
}

TEST_F(ConnTrackerTest, StatsAddLiveAndRetiredConnections) {
  ConnTracker& tracker = Tracker();
  // Connection 1: a truncated event (gap 10), two records, then closed.
  tracker.OnDataEvent(events_.Data(1, 100, kIn, 0, "r1\n", 13));
  tracker.OnDataEvent(events_.Data(1, 101, kIn, 13, "r2\n"));
  tracker.OnConnEvent(Close(1, 102));
  // Connection 2, still live: gap 5 and one record.
  tracker.OnDataEvent(events_.Data(2, 200, kOut, 0, "s1\n", 8));
  tracker.OnDataEvent(events_.Data(2, 201, kOut, 8, "s2"));

  TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.gap_bytes, 15u);
  EXPECT_EQ(stats.lost_bytes, 0u);
  EXPECT_EQ(stats.protocol.records, 3u);
  EXPECT_EQ(stats.protocol.truncated, 2u);
  EXPECT_EQ(stats.bytes_received, 13u + 3u + 8u + 2u);
  EXPECT_EQ(stats.bytes_captured, 3u + 3u + 3u + 2u);
  EXPECT_EQ(stats.connections_opened, 2u);
  EXPECT_EQ(stats.data_without_open, 2u);

  // Retiring the live connection moves its counters without double counting.
  tracker.CloseAll();
  stats = tracker.stats();
  EXPECT_EQ(stats.gap_bytes, 15u);
  EXPECT_EQ(stats.protocol.records, 3u);
  EXPECT_EQ(stats.protocol.truncated, 2u);
  EXPECT_EQ(stats.protocol.unanswered_requests, 1u);  // "s2" never finished
}

TEST_F(ConnTrackerTest, CloseAllAbandonsEveryConnection) {
  ConnTracker& tracker = Tracker();
  for (uint64_t id = 1; id <= 3; ++id) {
    tracker.OnConnEvent(Open(id, 100));
    tracker.OnDataEvent(events_.Data(id, 100, kIn, 0, "q"));
  }
  calls_.clear();
  tracker.CloseAll();
  EXPECT_EQ(tracker.open_connections(), 0u);
  EXPECT_THAT(Trace(), ElementsAre("close 1 abandoned", "close 2 abandoned", "close 3 abandoned"));
  const TrackerStats stats = tracker.stats();
  EXPECT_EQ(stats.connections_closed, 0u);
  EXPECT_EQ(stats.connections_idle, 0u);
  EXPECT_EQ(stats.connections_evicted, 0u);
  // Nothing left for a second CloseAll.
  calls_.clear();
  tracker.CloseAll();
  EXPECT_TRUE(calls_.empty());
}

// Hostile or broken input (random offsets, lengths, duplicates, huge gaps,
// offsets near 2^64, events for forgotten connections) must keep every
// bound and never crash.
TEST_F(ConnTrackerTest, RandomEventsKeepEveryBound) {
  constexpr size_t kMaxConnections = 8;
  constexpr size_t kLimit = 256;
  ConnTracker& tracker = Tracker({.max_connections = kMaxConnections,
                                  .max_buffered_bytes_per_direction = kLimit,
                                  .idle_timeout_ns = 50'000,
                                  .reorder_wait_ns = 1'000,
                                  .max_pending_events = 4});
  uint64_t state = 99;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 17;
  };
  uint64_t now = 1'000'000;
  size_t peak_buffered = 0;
  for (int i = 0; i < 20'000; ++i) {
    now += next() % 100;
    const uint64_t conn_id = 1 + next() % 20;
    switch (next() % 10) {
      case 0:
        tracker.OnConnEvent(Open(conn_id, now));
        break;
      case 1:
        tracker.OnConnEvent(Close(conn_id, now));
        break;
      case 2:
        tracker.Tick(now);
        break;
      default: {
        std::string payload(next() % 300, 'x');
        if (next() % 3 == 0) payload += "\n";
        uint64_t offset = next() % 4096;
        if (next() % 50 == 0) offset = UINT64_MAX - next() % 512;
        const uint64_t total = payload.size() + (next() % 4 == 0 ? next() % 100'000 : 0);
        const Direction dir = next() % 2 == 0 ? kIn : kOut;
        tracker.OnDataEvent(events_.Data(conn_id, now, dir, offset, std::move(payload),
                                         total == 0 ? 1 : total));
        break;
      }
    }
    ASSERT_LE(tracker.open_connections(), kMaxConnections);
    ASSERT_LE(tracker.buffered_bytes(), tracker.open_connections() * kDirections * kLimit);
    peak_buffered = std::max(peak_buffered, tracker.buffered_bytes());
  }
  EXPECT_GT(peak_buffered, kLimit) << "the bound was exercised";
  tracker.CloseAll();
  EXPECT_EQ(tracker.open_connections(), 0u);
  EXPECT_EQ(tracker.buffered_bytes(), 0u);
  EXPECT_GT(CallsOf(DecoderCall::kClose).size(), 100u);
  const TrackerStats stats = tracker.stats();
  EXPECT_GT(stats.connections_evicted, 0u);
  EXPECT_GT(stats.over_limit_bytes, 0u);
  EXPECT_GT(stats.lost_bytes, 0u);
  EXPECT_GT(stats.protocol.records, 0u);
}

TEST_F(ConnTrackerTest, DestructionDoesNotCallTheDecoder) {
  ConnTracker& tracker = Tracker();
  tracker.OnDataEvent(events_.Data(1, 100, kIn, 0, "q"));
  calls_.clear();
  tracker_.reset();
  EXPECT_TRUE(calls_.empty());
}


// A process that dies (OOM kill) while serving: EndProcess ends its
// connections only, and with a reason the real HTTP/1 decoder turns the
// request still waiting for its response into an error span ending then.
TEST(ConnTrackerEndProcessTest, OpenServerRequestsOfTheDeadProcessBecomeErrorSpans) {
  RecordingSink sink;
  ConnTracker tracker(TrackerOptions{}, sink);  // the registered decoders
  Events events;
  tracker.OnConnEvent(Open(1, 1000));
  tracker.OnDataEvent(events.Data(1, 2000, kIn, 0, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"));
  // Another process, also with a request open.
  ConnEvent other = Open(2, 1100);
  other.header.tgid = 200;
  tracker.OnConnEvent(other);
  DataEvent other_request = events.Data(2, 2100, kIn, 0, "GET /other HTTP/1.1\r\nHost: a\r\n\r\n");
  other_request.header.tgid = 200;
  tracker.OnDataEvent(other_request);
  tracker.Tick(3000);
  ASSERT_TRUE(sink.records.empty());

  EXPECT_EQ(tracker.EndProcess(100, 5'000'000, "OOMKilled"), 1u);
  ASSERT_EQ(sink.records.size(), 1u);
  const SpanRecord& span = sink.records[0];
  EXPECT_EQ(span.name, "GET /slow");
  EXPECT_EQ(span.kind, SpanKind::kServer);
  EXPECT_EQ(span.tgid, 100u);
  EXPECT_EQ(span.status, StatusCode::kError);
  EXPECT_EQ(span.status_message, "OOMKilled");
  ASSERT_NE(span.attributes.FindString("error.type"), nullptr);
  EXPECT_EQ(*span.attributes.FindString("error.type"), "OOMKilled");
  EXPECT_EQ(span.attributes.Find("http.response.status_code"), nullptr);
  EXPECT_EQ(span.end_mono_ns, 5'000'000u);
  EXPECT_EQ(tracker.open_connections(), 1u) << "the other process's connection stays";
  EXPECT_EQ(tracker.stats().protocol.aborted_requests, 1u);
  EXPECT_EQ(tracker.stats().connections_process_gone, 1u);

  // Without a reason (a plain exit), the open request is only counted.
  EXPECT_EQ(tracker.EndProcess(200, 6'000'000), 0u);
  EXPECT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(tracker.open_connections(), 0u);
  EXPECT_EQ(tracker.stats().protocol.unanswered_requests, 1u);
  EXPECT_EQ(tracker.EndProcess(300, 7'000'000, "OOMKilled"), 0u) << "no connections";
}

}  // namespace
}  // namespace loupe
