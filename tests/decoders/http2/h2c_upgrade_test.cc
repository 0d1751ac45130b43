// HTTP/1.1 -> h2c upgrade (RFC 7540 section 3.2): the HTTP/1 decoder's side
// (no span for the 101, ProtocolUpgrade filled, consumption stops exactly
// where HTTP/1 ends) and end to end through the ConnTracker (decoder switch,
// stream 1 answered in HTTP/2, the upgrades counter).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "decoders/conn/conn_tracker.h"
#include "decoders/http1/http1_decoder.h"
#include "tests/decoders/http2/h2_test_util.h"

namespace loupe::http2::testing {
namespace {

constexpr std::string_view kUpgradeRequest =
    "GET /index.html HTTP/1.1\r\n"
    "Host: example.com:8080\r\n"
    "Connection: Upgrade, HTTP2-Settings\r\n"
    "Upgrade: h2c\r\n"
    "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
    "\r\n";
constexpr std::string_view kSwitching =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: h2c\r\n"
    "\r\n";

// --- The HTTP/1 decoder alone ----------------------------------------------------

struct Http1Harness {
  explicit Http1Harness(bool can_switch) : can_switch(can_switch) {
    conn.conn_id = 1;
    conn.role = Role::kServer;
    conn.protocol = Protocol::kHttp1;
    decoder = http1::CreateDecoder(conn, options);
  }
  void Send(Direction dir, std::string_view bytes, EventTime time = {}) {
    ByteStream& s = streams[Index(dir)];
    s.Add(s.end(), std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            bytes.size()),
          bytes.size(), time);
    DecodeContext ctx{conn, options, sink, stats, can_switch ? &upgrade : nullptr};
    decoder->OnData(dir, s, ctx);
  }
  bool can_switch;
  ConnInfo conn;
  DecoderOptions options;
  RecordingSink sink;
  ProtocolStats stats;
  ProtocolUpgrade upgrade;
  std::array<ByteStream, kDirections> streams;
  std::unique_ptr<ConnectionDecoder> decoder;
};

TEST(H2cUpgradeTest, Http1DecoderHandsOverAtThe101) {
  Http1Harness h(/*can_switch=*/true);
  const std::string request =
      "POST /submit HTTP/1.1\r\nHost: h.example\r\nUpgrade: foo, H2C\r\n"
      "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
      "Content-Length: 5\r\n\r\nhello";
  h.Send(kIn, request, {10, 20, 4});
  // The client's HTTP/2 preface is already there (reordered events): it is
  // not parsed as HTTP/1 while the offer is pending.
  h.Send(kIn, std::string(kClientPreface) + Settings(), {30, 40, 4});
  EXPECT_EQ(h.streams[Index(kIn)].position(), request.size());
  // The 101 and the server's first HTTP/2 frames in one write.
  h.Send(kOut, std::string(kSwitching) + Settings() + Headers(1, "\x88", true), {50, 60, 4});
  EXPECT_TRUE(h.sink.spans.empty());  // no HTTP/1 span for the switch
  EXPECT_EQ(h.upgrade.to, Protocol::kHttp2);
  EXPECT_TRUE(h.upgrade.has_request);
  EXPECT_EQ(h.upgrade.request_direction, kIn);
  EXPECT_EQ(h.upgrade.method, "POST");
  EXPECT_EQ(h.upgrade.target, "/submit");
  EXPECT_EQ(h.upgrade.authority, "h.example");
  EXPECT_EQ(h.upgrade.request_start_ns, 20u);  // received: the read's exit
  EXPECT_EQ(h.upgrade.request_tid, 4u);
  EXPECT_EQ(h.upgrade.request_body_size, 5u);
  // The request was announced with its head; stream 1 will carry its key.
  ASSERT_EQ(h.sink.starts.size(), 1u);
  EXPECT_EQ(h.upgrade.request_key, (ExchangeKey{1, 1, 0}));
  EXPECT_EQ(h.sink.starts[0].key, h.upgrade.request_key);
  EXPECT_EQ(h.sink.starts[0].start_mono_ns, 20u);
  EXPECT_FALSE(h.upgrade.request_context.has_value());
  // Both streams stop exactly where HTTP/1 ended.
  EXPECT_EQ(h.streams[Index(kOut)].position(), kSwitching.size());
  EXPECT_EQ(h.streams[Index(kIn)].position(), request.size());
  EXPECT_EQ(h.stats.parse_errors, 0u);
  EXPECT_EQ(h.stats.unmatched_responses, 0u);
}

TEST(H2cUpgradeTest, UpgradeRequestKeyAndContextAreHandedOver) {
  Http1Harness h(/*can_switch=*/true);
  // An exchange before the upgrade takes seq 1.
  h.Send(kIn, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n", {1, 2, 3});
  h.Send(kOut, "HTTP/1.1 204 No Content\r\n\r\n", {3, 4, 3});
  h.Send(kIn,
         "GET /up HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
         "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
         "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
         "tracestate: rojo=00f067aa0ba902b7\r\n\r\n",
         {10, 20, 4});
  h.Send(kOut, kSwitching, {30, 40, 4});
  ASSERT_EQ(h.upgrade.to, Protocol::kHttp2);
  ASSERT_EQ(h.sink.starts.size(), 2u);
  EXPECT_EQ(h.upgrade.request_key, (ExchangeKey{1, 2, 0}));
  EXPECT_EQ(h.sink.starts[1].key, h.upgrade.request_key);
  ASSERT_TRUE(h.upgrade.request_context.has_value());
  EXPECT_EQ(ToHex(h.upgrade.request_context->trace_id), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(h.upgrade.request_context->tracestate, "rojo=00f067aa0ba902b7");
  EXPECT_TRUE(h.sink.starts[1].context == h.upgrade.request_context);
}

TEST(H2cUpgradeTest, WithoutASwitchingTrackerThe101IsAnHttp1Exchange) {
  Http1Harness h(/*can_switch=*/false);
  h.Send(kIn, kUpgradeRequest);
  h.Send(kOut, kSwitching);
  ASSERT_EQ(h.sink.spans.size(), 1u);
  EXPECT_EQ(Int(h.sink.spans[0], "http.response.status_code"), 101);
}

TEST(H2cUpgradeTest, DeclinedOfferStaysHttp1) {
  Http1Harness h(/*can_switch=*/true);
  h.Send(kIn, kUpgradeRequest);
  h.Send(kIn, "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n");  // pipelined
  h.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  // The paused bytes are parsed with the next data of their direction.
  h.Send(kIn, "");
  h.Send(kIn, "GET /third HTTP/1.1\r\nHost: example.com\r\n\r\n");
  h.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
               "HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_EQ(h.sink.spans.size(), 3u);
  EXPECT_EQ(h.sink.spans[0].name, "GET /index.html");
  EXPECT_EQ(h.sink.spans[1].name, "GET /next");
  EXPECT_EQ(h.sink.spans[2].name, "GET /third");
  EXPECT_EQ(h.upgrade.to, Protocol::kUnknown);
}

// --- End to end through the tracker ----------------------------------------------

ConnTuple Tuple() {
  ConnTuple t;
  t.local = Endpoint{V4(10, 0, 0, 1), 8080};
  t.remote = Endpoint{V4(10, 0, 0, 2), 50000};
  return t;
}

class TrackerHarness {
 public:
  TrackerHarness() : tracker_(TrackerOptions{}, sink_) {
    ConnEvent open;
    open.header.conn_id = kConn;
    open.header.tgid = 300;
    open.header.ts_ns = 1;
    open.tuple = Tuple();
    open.role = Role::kServer;
    open.role_source = RoleSource::kAccept;
    open.protocol = Protocol::kHttp1;  // the kernel classified the first request
    tracker_.OnConnEvent(open);
  }
  void Send(Direction dir, std::string_view bytes, uint64_t enter_ns, uint64_t exit_ns,
            uint32_t tid = 7) {
    DataEvent e;
    e.header.conn_id = kConn;
    e.header.tgid = 300;
    e.header.tid = tid;
    e.header.ts_ns = exit_ns;
    e.tuple = Tuple();
    e.enter_ns = enter_ns;
    e.stream_offset = offsets_[Index(dir)];
    e.total_len = bytes.size();
    e.direction = dir;
    e.protocol = Protocol::kHttp1;
    e.role = Role::kServer;
    e.payload = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                         bytes.size());
    offsets_[Index(dir)] += bytes.size();
    tracker_.OnDataEvent(e);
  }
  void Close() {
    ConnEvent close;
    close.header.conn_id = kConn;
    close.header.ts_ns = 1000000;
    close.open = false;
    tracker_.OnConnEvent(close);
  }
  const std::vector<SpanRecord>& spans() const { return sink_.spans; }
  const std::vector<ExchangeStart>& starts() const { return sink_.starts; }
  const std::string& order() const { return sink_.order; }
  TrackerStats stats() const { return tracker_.stats(); }

 private:
  static constexpr uint64_t kConn = 42;
  RecordingSink sink_;
  ConnTracker tracker_;
  std::array<uint64_t, kDirections> offsets_{};
};

TEST(H2cUpgradeTest, EndToEndThroughTheTracker) {
  TrackerHarness t;
  Encoder client;
  Encoder server;
  t.Send(kIn, kUpgradeRequest, 100, 110, 7);
  t.Send(kOut, std::string(kSwitching) + Settings(), 200, 210, 8);
  t.Send(kIn, std::string(kClientPreface) + Settings() + SettingsAck(), 300, 310, 7);
  t.Send(kOut, SettingsAck() +
                   Headers(1, server.Encode({{":status", "200"}, {"content-type", "text/html"}}),
                           false) +
                   Data(1, "<html></html>", true),
         400, 410, 8);
  // The connection goes on in HTTP/2.
  t.Send(kIn, Headers(3, client.Encode({{":method", "GET"},
                                        {":scheme", "http"},
                                        {":authority", "example.com:8080"},
                                        {":path", "/second?x=1"}}),
                      true),
         500, 510, 9);
  t.Send(kOut, Headers(3, server.Encode({{":status", "404"}}), true), 600, 610, 8);
  t.Close();
  ASSERT_EQ(t.spans().size(), 2u);
  const SpanRecord& first = t.spans()[0];
  EXPECT_EQ(first.name, "GET /index.html");
  EXPECT_EQ(first.kind, SpanKind::kServer);
  EXPECT_EQ(first.start_mono_ns, 110u);  // the HTTP/1.1 request
  EXPECT_EQ(first.end_mono_ns, 410u);    // the HTTP/2 response on stream 1
  EXPECT_EQ(first.tid, 7u);
  EXPECT_EQ(first.tgid, 300u);
  EXPECT_EQ(first.conn_id, 42u);
  EXPECT_EQ(Int(first, "http.response.status_code"), 200);
  EXPECT_EQ(Int(first, "http.response.body.size"), 13);
  EXPECT_EQ(Str(first, "network.protocol.version"), "2");
  EXPECT_EQ(Str(first, "server.address"), "example.com");
  EXPECT_EQ(Int(first, "server.port"), 8080);
  EXPECT_EQ(Str(first, "client.address"), "10.0.0.2");
  const SpanRecord& second = t.spans()[1];
  EXPECT_EQ(second.name, "GET /second");
  EXPECT_EQ(Int(second, "http.response.status_code"), 404);
  EXPECT_EQ(second.start_mono_ns, 510u);
  const TrackerStats stats = t.stats();
  EXPECT_EQ(stats.protocol.upgrades, 1u);
  EXPECT_EQ(stats.protocol.records, 2u);
  EXPECT_EQ(stats.protocol.parse_errors, 0u);
  EXPECT_EQ(stats.protocol.hpack_recoveries, 0u);
  EXPECT_EQ(stats.protocol.unanswered_requests, 0u);
}

TEST(H2cUpgradeTest, StreamOneCarriesTheUpgradeRequestsKeyThroughTheTracker) {
  TrackerHarness t;
  Encoder client;
  Encoder server;
  t.Send(kIn,
         "GET /index.html HTTP/1.1\r\nHost: example.com\r\n"
         "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
         "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\r\n",
         100, 110, 7);
  ASSERT_EQ(t.starts().size(), 1u);  // announced by HTTP/1, before any answer
  const ExchangeStart upgrade_start = t.starts()[0];
  EXPECT_EQ(upgrade_start.key, (ExchangeKey{42, 1, 0}));
  EXPECT_EQ(upgrade_start.kind, SpanKind::kServer);
  EXPECT_EQ(upgrade_start.start_mono_ns, 110u);
  EXPECT_EQ(upgrade_start.tid, 7u);
  ASSERT_TRUE(upgrade_start.context.has_value());
  EXPECT_EQ(ToHex(upgrade_start.context->span_id), "e457b5a2e4d86bd1");
  t.Send(kOut, std::string(kSwitching) + Settings(), 200, 210, 8);
  t.Send(kIn, Cat({std::string(kClientPreface), Settings(), SettingsAck(),
                   Headers(3,
                           client.Encode({{":method", "GET"},
                                          {":scheme", "http"},
                                          {":path", "/second"},
                                          {"traceparent",
                                           "00-0af7651916cd43dd8448eb211c80319c-"
                                           "b7ad6b7169203331-01"}}),
                           true)}),
         300, 310, 9);
  // Stream 3 is announced by HTTP/2, after the upgrade request's seq;
  // stream 1 is not announced again.
  ASSERT_EQ(t.starts().size(), 2u);
  EXPECT_EQ(t.starts()[1].key, (ExchangeKey{42, 2, 3}));
  EXPECT_EQ(t.starts()[1].start_mono_ns, 310u);
  ASSERT_TRUE(t.starts()[1].context.has_value());
  EXPECT_EQ(ToHex(t.starts()[1].context->trace_id), "0af7651916cd43dd8448eb211c80319c");
  t.Send(kOut, Cat({SettingsAck(), Headers(3, server.Encode({{":status", "200"}}), true),
                    Headers(1, server.Encode({{":status", "200"}}), true)}),
         400, 410, 8);
  t.Close();
  EXPECT_EQ(t.order(), "SSRR");
  ASSERT_EQ(t.spans().size(), 2u);
  EXPECT_EQ(t.spans()[0].name, "GET /second");
  EXPECT_EQ(t.spans()[0].key, (ExchangeKey{42, 2, 3}));
  const SpanRecord& first = t.spans()[1];
  EXPECT_EQ(first.name, "GET /index.html");
  EXPECT_EQ(first.key, upgrade_start.key);
  EXPECT_TRUE(first.context == upgrade_start.context);
  EXPECT_EQ(first.start_mono_ns, 110u);
  EXPECT_EQ(first.tid, 7u);
  EXPECT_EQ(first.kind, SpanKind::kServer);
}

TEST(H2cUpgradeTest, PrefaceBeforeThe101AndCloseRightAfter) {
  TrackerHarness t;
  Encoder server;
  t.Send(kIn, kUpgradeRequest, 100, 110);
  t.Send(kIn, std::string(kClientPreface) + Settings(), 120, 130);
  t.Send(kOut, std::string(kSwitching) + Settings() +
                   Headers(1, server.Encode({{":status", "200"}}), true),
         200, 210);
  t.Close();
  ASSERT_EQ(t.spans().size(), 1u);
  EXPECT_EQ(t.spans()[0].name, "GET /index.html");
  EXPECT_EQ(t.spans()[0].end_mono_ns, 210u);
  EXPECT_EQ(t.stats().protocol.upgrades, 1u);
  EXPECT_EQ(t.stats().protocol.parse_errors, 0u);
}

TEST(H2cUpgradeTest, UnansweredStreamOneAtClose) {
  TrackerHarness t;
  t.Send(kIn, kUpgradeRequest, 100, 110);
  t.Send(kOut, std::string(kSwitching) + Settings(), 200, 210);
  t.Close();
  EXPECT_TRUE(t.spans().empty());
  EXPECT_EQ(t.stats().protocol.upgrades, 1u);
  EXPECT_EQ(t.stats().protocol.unanswered_requests, 1u);
}

}  // namespace
}  // namespace loupe::http2::testing
