// Tests of the HTTP/2 ConnectionDecoder: both directions of a connection fed
// as syscall events, streams checked as SpanRecords.
#include "decoders/http2/http2_decoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/decoders/http2/h2_test_util.h"

namespace loupe::http2::testing {
namespace {

// A client (egress of a client, ingress of a server) and a server, each with
// its own HPACK encoder, producing wire bytes.
struct Peers {
  Encoder client;
  Encoder server;
  std::string Request(uint32_t stream, const HeaderList& h, bool end_stream,
                      const std::vector<std::string>& no_index = {}) {
    return Headers(stream, client.Encode(h, no_index), end_stream);
  }
  std::string Response(uint32_t stream, const HeaderList& h, bool end_stream) {
    return Headers(stream, server.Encode(h), end_stream);
  }
};

const HeaderList kGetUsers = {{":method", "GET"},
                              {":scheme", "http"},
                              {":authority", "shop.example.com:8443"},
                              {":path", "/users/123/orders?limit=10"},
                              {"user-agent", "curl/8.0"},
                              {"authorization", "Basic c2VjcmV0"},
                              {"traceparent",
                               "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
const HeaderList kOkJson = {{":status", "200"}, {"content-type", "application/json"}};

// --- A whole exchange, every attribute ----------------------------------------

TEST(Http2DecoderTest, ServerSpanFromPriorKnowledgeConnection) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings({{kSettingsMaxFrameSize, 32768}}),
         {100, 110, 7});
  c.Send(kOut, Settings() + SettingsAck(), {120, 130, 8});
  c.Send(kIn, SettingsAck() + p.Request(1, kGetUsers, true), {200, 1000, 9});
  c.Send(kOut, p.Response(1, kOkJson, false) + Data(1, "{\"orders\":[]}", false),
         {2000, 2100, 10});
  c.Send(kOut, Data(1, "!", true), {2200, 2300, 10});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(s.name, "GET /users/{id}/orders");
  EXPECT_EQ(s.kind, SpanKind::kServer);
  EXPECT_EQ(s.start_mono_ns, 1000u);  // received: the read's exit
  EXPECT_EQ(s.end_mono_ns, 2300u);    // END_STREAM's write returned
  EXPECT_EQ(s.tid, 9u);
  EXPECT_EQ(s.tgid, 1234u);
  EXPECT_EQ(s.conn_id, 77u);
  EXPECT_EQ(s.status, StatusCode::kUnset);
  EXPECT_EQ(Str(s, "http.request.method"), "GET");
  EXPECT_EQ(Str(s, "url.path"), "/users/123/orders");
  EXPECT_FALSE(Has(s, "url.query"));
  EXPECT_EQ(Str(s, "http.route"), "/users/{id}/orders");
  EXPECT_EQ(Int(s, "http.response.status_code"), 200);
  EXPECT_EQ(Str(s, "server.address"), "shop.example.com");
  EXPECT_EQ(Int(s, "server.port"), 8443);
  EXPECT_EQ(Str(s, "client.address"), "10.0.0.2");
  EXPECT_EQ(Int(s, "client.port"), 54321);
  EXPECT_EQ(Str(s, "network.peer.address"), "10.0.0.2");
  EXPECT_EQ(Int(s, "network.peer.port"), 54321);
  EXPECT_EQ(Str(s, "network.protocol.version"), "2");
  EXPECT_FALSE(Has(s, "http.request.body.size"));
  EXPECT_EQ(Int(s, "http.response.body.size"), 14);
  EXPECT_FALSE(Has(s, "loupe.http2.headers_incomplete"));
  EXPECT_FALSE(Has(s, "rpc.system"));
  // Secrets are never copied into the span.
  for (const Attribute& a : s.attributes.items()) {
    if (const auto* v = std::get_if<std::string>(&a.value)) {
      EXPECT_EQ(v->find("c2VjcmV0"), std::string::npos) << a.key;
    }
  }
  EXPECT_EQ(c.stats().records, 1u);
  EXPECT_EQ(c.stats().messages, 2u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
  EXPECT_EQ(c.stats().hpack_recoveries, 0u);
  EXPECT_EQ(c.stats().resyncs, 0u);
  // Everything was consumed: nothing is buffered.
  EXPECT_TRUE(c.stream(kIn).empty());
  EXPECT_TRUE(c.stream(kOut).empty());
}

TEST(Http2DecoderTest, ClientSpanWithQueryAndClientError) {
  DecoderOptions options;
  options.capture_url_query = true;
  Connection c(Role::kClient, options);
  Peers p;
  c.Send(kOut, std::string(kClientPreface) + Settings(), {10, 20, 3});
  c.Send(kIn, Settings(), {30, 40, 3});
  c.Send(kOut, p.Request(1, {{":method", "POST"},
                             {":scheme", "https"},
                             {":path", "/api/items?id=7"},
                             {":authority", "api.example.com"}},
                         false),
         {100, 150, 4});
  c.Send(kOut, Data(1, "{\"name\":\"x\"}", true), {160, 170, 4});
  c.Send(kIn, p.Response(1, {{":status", "404"}}, true), {300, 400, 4});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(s.kind, SpanKind::kClient);
  EXPECT_EQ(s.name, "POST /api/items");
  EXPECT_EQ(s.start_mono_ns, 100u);  // sent: the write's entry
  EXPECT_EQ(s.end_mono_ns, 400u);
  EXPECT_EQ(Str(s, "url.query"), "id=7");
  EXPECT_EQ(Int(s, "http.request.body.size"), 12);
  EXPECT_FALSE(Has(s, "http.response.body.size"));
  EXPECT_EQ(Str(s, "server.address"), "api.example.com");
  EXPECT_EQ(Int(s, "server.port"), 443);  // no port in :authority: the socket's
  EXPECT_FALSE(Has(s, "client.address"));
  EXPECT_EQ(s.status, StatusCode::kError);  // 4xx is an error for the client
  EXPECT_EQ(Str(s, "error.type"), "404");
}

TEST(Http2DecoderTest, ServerErrorOnlyFor5xx) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, Cat({p.Request(1, kGetUsers, true), p.Request(3, kGetUsers, true)}));
  c.Send(kOut, Cat({p.Response(1, {{":status", "404"}}, true),
                    p.Response(3, {{":status", "503"}}, true)}));
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[0].status, StatusCode::kUnset);
  EXPECT_EQ(c.spans()[1].status, StatusCode::kError);
  EXPECT_EQ(Str(c.spans()[1], "error.type"), "503");
}

TEST(Http2DecoderTest, NonStandardMethodAndConnect) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kIn, Cat({p.Request(1, {{":method", "PURGE"}, {":path", "/cache/1"}, {":scheme", "http"}},
                             true),
                   p.Request(3, {{":method", "CONNECT"}, {":authority", "db.internal:5432"}},
                             false)}));
  c.Send(kOut, Cat({Settings(), p.Response(1, {{":status", "200"}}, true),
                    p.Response(3, {{":status", "200"}}, false), Data(3, "x", true)}));
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[0].name, "HTTP /cache/{id}");
  EXPECT_EQ(Str(c.spans()[0], "http.request.method"), "_OTHER");
  EXPECT_EQ(Str(c.spans()[0], "http.request.method_original"), "PURGE");
  EXPECT_EQ(c.spans()[1].name, "CONNECT");
  EXPECT_EQ(Str(c.spans()[1], "server.address"), "db.internal");
  EXPECT_EQ(Int(c.spans()[1], "server.port"), 5432);
  EXPECT_FALSE(Has(c.spans()[1], "url.path"));
}

// --- Framing -----------------------------------------------------------------

struct Event {
  Direction dir;
  std::string bytes;
  EventTime time;
};

// A conversation that exercises most frame types: two concurrent streams,
// CONTINUATION, padding, PRIORITY, PING, WINDOW_UPDATE, an unknown frame type,
// trailers, an interim 100 response.
std::vector<Event> RichConversation() {
  Peers p;
  std::vector<Event> events;
  events.push_back({kIn, std::string(kClientPreface) + Settings({{kSettingsHeaderTableSize, 8192}}),
                    {10, 11, 1}});
  events.push_back({kOut, Settings({{kSettingsMaxFrameSize, 65536}}) + SettingsAck(), {12, 13, 2}});
  // Stream 1: POST whose header block is cut into HEADERS + 2 CONTINUATION,
  // HEADERS padded and with a priority.
  const std::string block = p.client.Encode({{":method", "POST"},
                                             {":scheme", "http"},
                                             {":authority", "files.example"},
                                             {":path", "/upload/42"},
                                             {"content-type", "application/octet-stream"},
                                             {"expect", "100-continue"},
                                             {"x-long", std::string(100, 'v')}});
  const size_t third = block.size() / 3;
  std::string headers_payload;
  headers_payload.push_back(3);                 // pad length
  headers_payload += Be32(0x80000003) + "\x10";  // exclusive dependency on 3, weight
  headers_payload += block.substr(0, third);
  headers_payload += std::string(3, '\0');
  events.push_back({kIn,
                    RawFrame(kHeaders, kFlagPadded | kFlagPriority, 1, headers_payload) +
                        RawFrame(kContinuation, 0, 1, block.substr(third, third)) +
                        RawFrame(kContinuation, kFlagEndHeaders, 1, block.substr(2 * third)),
                    {20, 21, 3}});
  // Stream 3 opens meanwhile.
  events.push_back({kIn, p.Request(3, {{":method", "GET"},
                                       {":scheme", "http"},
                                       {":authority", "files.example"},
                                       {":path", "/list"}},
                                   true),
                    {22, 23, 4}});
  events.push_back({kOut, p.Response(1, {{":status", "100"}}, false), {24, 25, 2}});
  events.push_back({kIn, Ping() + RawFrame(kPriority, 0, 3, Be32(0) + "\x20") +
                             RawFrame(0xfa, 0x3, 1, "unknown extension frame"),
                    {26, 27, 3}});
  // Padded DATA: 5 bytes of data, 10 of padding.
  std::string padded;
  padded.push_back(10);
  padded += "hello";
  padded += std::string(10, '\0');
  events.push_back({kIn, RawFrame(kData, kFlagPadded, 1, padded) + Data(1, " world", true),
                    {28, 29, 3}});
  events.push_back({kOut, WindowUpdate(0, 1000) + WindowUpdate(1, 1000) +
                              p.Response(3, {{":status", "200"}}, false) + Data(3, "a,b", false),
                    {30, 31, 2}});
  events.push_back({kOut,
                    Cat({p.Response(1, {{":status", "201"}, {"location", "/upload/42"}}, false),
                         Data(1, "created", false), p.Response(1, {{"x-checksum", "abc"}}, true)}),
                    {32, 33, 2}});
  events.push_back({kOut, Data(3, "", true), {34, 35, 2}});
  return events;
}

std::vector<SpanRecord> Replay(const std::vector<Event>& events, size_t piece = 0) {
  Connection c(Role::kServer);
  for (const Event& e : events) {
    if (piece == 0) {
      c.Send(e.dir, e.bytes, e.time);
    } else {
      c.SendInPieces(e.dir, e.bytes, piece, e.time);
    }
  }
  EXPECT_EQ(c.stats().parse_errors, 0u);
  EXPECT_EQ(c.stats().resyncs, 0u);
  EXPECT_EQ(c.stats().hpack_recoveries, 0u);
  return c.spans();
}

TEST(Http2DecoderTest, ContinuationPaddingPriorityTrailersInterim) {
  const std::vector<SpanRecord> spans = Replay(RichConversation());
  ASSERT_EQ(spans.size(), 2u);
  // Stream 1 ends after stream 3's response started but before its end.
  const SpanRecord& upload = spans[0];
  EXPECT_EQ(upload.name, "POST /upload/{id}");
  EXPECT_EQ(upload.start_mono_ns, 21u);
  EXPECT_EQ(upload.end_mono_ns, 33u);  // the trailers carried END_STREAM
  EXPECT_EQ(Int(upload, "http.response.status_code"), 201);  // the 100 was skipped
  EXPECT_EQ(Int(upload, "http.request.body.size"), 11);       // padding excluded
  EXPECT_EQ(Int(upload, "http.response.body.size"), 7);
  EXPECT_EQ(Str(upload, "server.address"), "files.example");
  const SpanRecord& list = spans[1];
  EXPECT_EQ(list.name, "GET /list");
  EXPECT_EQ(list.end_mono_ns, 35u);  // an empty DATA frame ended it
  EXPECT_EQ(Int(list, "http.response.body.size"), 3);
}

TEST(Http2DecoderTest, SplitAtEveryBoundaryGivesTheSameSpans) {
  const std::vector<Event> events = RichConversation();
  const std::vector<SpanRecord> whole = Replay(events);
  ASSERT_EQ(whole.size(), 2u);
  ExpectSameSpans(whole, Replay(events, 1), "one byte per syscall");
  // Each event cut in two at every position.
  for (size_t e = 0; e < events.size(); ++e) {
    for (size_t cut = 1; cut < events[e].bytes.size(); ++cut) {
      std::vector<Event> split = events;
      split[e].bytes = events[e].bytes.substr(0, cut);
      split.insert(split.begin() + static_cast<long>(e) + 1,
                   Event{events[e].dir, events[e].bytes.substr(cut), events[e].time});
      ExpectSameSpans(whole, Replay(split),
                      "event " + std::to_string(e) + " cut at " + std::to_string(cut));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(Http2DecoderTest, FrameLongerThanTheAnnouncedMaximumIsInvalid) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());  // the server keeps the 16384 default
  c.Send(kIn, p.Request(1, kGetUsers, false) + Data(1, std::string(20000, 'x'), true),
         {1, 2, 3});
  EXPECT_EQ(c.stats().parse_errors, 1u);
  EXPECT_EQ(c.stats().resyncs, 1u);
  // After a server allows larger frames, they are fine.
  Connection d(Role::kServer);
  Peers q;
  d.Send(kIn, std::string(kClientPreface) + Settings());
  d.Send(kOut, Settings({{kSettingsMaxFrameSize, 1 << 20}}));
  d.Send(kIn, q.Request(1, kGetUsers, false) + Data(1, std::string(20000, 'x'), true));
  d.Send(kOut, q.Response(1, kOkJson, true));
  EXPECT_EQ(d.stats().parse_errors, 0u);
  ASSERT_EQ(d.spans().size(), 1u);
  EXPECT_EQ(Int(d.spans()[0], "http.request.body.size"), 20000);
}

// --- Stream ends: reset, GOAWAY, close ------------------------------------------

TEST(Http2DecoderTest, StreamResetEndsTheSpanWithAnError) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings() + p.Request(1, kGetUsers, true),
         {10, 20, 5});
  c.Send(kOut, Settings() + p.Response(1, kOkJson, false) + Data(1, "partial", false),
         {30, 40, 5});
  c.Send(kIn, RstStream(1, 0x8), {50, 60, 5});  // the client cancelled
  // A reset of a stream that is already over changes nothing.
  c.Send(kIn, RstStream(1, 0x8), {70, 80, 5});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(s.status, StatusCode::kError);
  EXPECT_EQ(Str(s, "error.type"), "CANCEL");
  EXPECT_EQ(s.start_mono_ns, 20u);
  EXPECT_EQ(s.end_mono_ns, 60u);
  EXPECT_EQ(Int(s, "http.response.status_code"), 200);
  EXPECT_EQ(Int(s, "http.response.body.size"), 7);
  // A refused stream without any response.
  c.Send(kIn, p.Request(3, kGetUsers, true), {90, 100, 5});
  c.Send(kOut, RstStream(3, 0x7), {110, 120, 5});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Str(c.spans()[1], "error.type"), "REFUSED_STREAM");
  EXPECT_FALSE(Has(c.spans()[1], "http.response.status_code"));
}

TEST(Http2DecoderTest, GoawayDropsStreamsAboveTheLastProcessed) {
  Connection c(Role::kClient);
  Peers p;
  c.Send(kOut, std::string(kClientPreface) + Settings());
  c.Send(kIn, Settings());
  c.Send(kOut, Cat({p.Request(1, kGetUsers, true), p.Request(3, kGetUsers, true),
                    p.Request(5, kGetUsers, true)}));
  c.Send(kIn, p.Response(1, kOkJson, true) + Goaway(3, 0));
  EXPECT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.stats().unanswered_requests, 1u);  // stream 5 will never be answered
  c.Send(kIn, p.Response(3, kOkJson, true));
  EXPECT_EQ(c.spans().size(), 2u);
  // A late frame for the refused stream is ignored.
  c.Send(kIn, p.Response(5, kOkJson, true));
  EXPECT_EQ(c.spans().size(), 2u);
  c.Close();
  EXPECT_EQ(c.stats().unanswered_requests, 1u);
}

TEST(Http2DecoderTest, OpenStreamsAtCloseAreUnansweredWithoutSpans) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, Cat({std::string(kClientPreface), Settings(), p.Request(1, kGetUsers, true),
                   p.Request(3, kGetUsers, true)}));
  c.Send(kOut, Settings() + p.Response(3, kOkJson, false) + Data(3, "abc", false));
  c.Close(true);
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().unanswered_requests, 2u);
}

// --- Many streams -------------------------------------------------------------

TEST(Http2DecoderTest, InterleavedConcurrentStreams) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings(), {1, 1, 1});
  c.Send(kOut, Settings(), {1, 1, 1});
  constexpr uint32_t kStreams = 50;
  // Requests and responses interleave in both directions: request i+1 goes
  // out while responses to earlier ones come back in pieces, out of order.
  uint64_t t = 10;
  for (uint32_t i = 0; i < kStreams; ++i) {
    const uint32_t id = 2 * i + 1;
    c.Send(kIn,
           p.Request(id, {{":method", i % 2 ? "POST" : "GET"},
                          {":scheme", "http"},
                          {":authority", "svc"},
                          {":path", "/items/" + std::to_string(i)}},
                     i % 2 == 0) +
               (i % 2 ? Data(id, std::string(i, 'b'), true) : ""),
           {t, t + 1, id});
    t += 2;
    if (i >= 3) {
      const uint32_t answered = 2 * (i - 3) + 1;
      c.Send(kOut, p.Response(answered, {{":status", std::to_string(200 + i % 3)}}, false) +
                       Data(answered, "part1", false),
             {t, t + 1, 99});
      t += 2;
    }
  }
  // Finish all in reverse order.
  for (uint32_t i = kStreams; i-- > 0;) {
    const uint32_t id = 2 * i + 1;
    std::string bytes;
    if (i >= kStreams - 3) {
      bytes += p.Response(id, {{":status", std::to_string(200 + i % 3)}}, false);
    }
    bytes += Data(id, "-part2-" + std::to_string(i), true);
    c.Send(kOut, bytes, {t, t + 1, 99});
    t += 2;
  }
  ASSERT_EQ(c.spans().size(), kStreams);
  for (uint32_t k = 0; k < kStreams; ++k) {
    const uint32_t i = kStreams - 1 - k;  // finished in reverse order
    const SpanRecord& s = c.spans()[k];
    EXPECT_EQ(Str(s, "url.path"), "/items/" + std::to_string(i)) << k;
    EXPECT_EQ(Int(s, "http.response.status_code"), 200 + i % 3) << k;
    EXPECT_EQ(s.tid, 2 * i + 1) << k;
    const int64_t part1 = i < kStreams - 3 ? 5 : 0;
    EXPECT_EQ(Int(s, "http.response.body.size"),
              part1 + static_cast<int64_t>(("-part2-" + std::to_string(i)).size()))
        << k;
    if (i % 2) {
      EXPECT_EQ(Int(s, "http.request.body.size"), i) << k;
    }
  }
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http2DecoderTest, StreamsBeyondTheBoundAreCountedAndIgnored) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  const uint32_t total = kMaxTrackedStreams + 10;
  std::string requests;
  for (uint32_t i = 0; i < total; ++i) {
    requests += p.Request(2 * i + 1, {{":method", "GET"}, {":path", "/x"}, {":scheme", "http"}},
                          true);
  }
  c.Send(kIn, requests);
  EXPECT_EQ(c.stats().dropped_requests, 10u);
  std::string responses;
  for (uint32_t i = 0; i < total; ++i) responses += p.Response(2 * i + 1, kOkJson, true);
  c.Send(kOut, responses);
  EXPECT_EQ(c.spans().size(), kMaxTrackedStreams);
  EXPECT_EQ(c.stats().hpack_recoveries, 0u);  // dropped streams' blocks were decoded too
  c.Close();
  EXPECT_EQ(c.stats().unanswered_requests, 0u);
}

TEST(Http2DecoderTest, PushPromiseBlocksKeepHpackInStep) {
  Connection c(Role::kClient);
  Peers p;
  c.Send(kOut, std::string(kClientPreface) + Settings());
  c.Send(kOut, p.Request(1, kGetUsers, true));
  // The server's encoder indexes the promised request's fields and the
  // pushed response's, then reuses them in the real response.
  const std::string promise_block = p.server.Encode(
      {{":method", "GET"}, {":path", "/style.css"}, {":authority", "cdn.example"},
       {":scheme", "https"}, {"content-type", "text/css"}});
  std::string promise_payload = Be32(2) + promise_block;
  c.Send(kIn, Cat({Settings(), RawFrame(kPushPromise, kFlagEndHeaders, 1, promise_payload),
                   p.Response(2, {{":status", "200"}, {"content-type", "text/css"}}, false),
                   Data(2, "body{}", true),
                   p.Response(1, {{":status", "200"}, {"content-type", "text/css"}}, true)}));
  ASSERT_EQ(c.spans().size(), 1u);  // the pushed stream makes no span
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 200);
  EXPECT_FALSE(Has(c.spans()[0], "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.stats().hpack_recoveries, 0u);
}

// --- Roles --------------------------------------------------------------------

TEST(Http2DecoderTest, UnknownRoleFromThePrefaceDirection) {
  for (const Direction client_dir : {kIn, kOut}) {
    Connection c(Role::kUnknown);
    Peers p;
    c.Send(Opposite(client_dir), Settings());  // the server speaks first
    c.Send(client_dir, std::string(kClientPreface) + Settings() + p.Request(1, kGetUsers, true),
           {5, 6, 1});
    c.Send(Opposite(client_dir), p.Response(1, kOkJson, true), {7, 8, 1});
    ASSERT_EQ(c.spans().size(), 1u);
    EXPECT_EQ(c.spans()[0].kind, client_dir == kIn ? SpanKind::kServer : SpanKind::kClient);
    EXPECT_EQ(c.spans()[0].start_mono_ns, client_dir == kIn ? 6u : 5u);
  }
}

// --- gRPC -----------------------------------------------------------------------

HeaderList GrpcRequest(std::string_view path) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", std::string(path)},
          {":authority", "echo.svc:50051"},
          {"content-type", "application/grpc"},
          {"te", "trailers"},
          {"grpc-timeout", "1S"},
          {"user-agent", "grpc-c++/1.51.1"}};
}
const HeaderList kGrpcResponse = {{":status", "200"}, {"content-type", "application/grpc"}};

TEST(Http2DecoderTest, GrpcUnaryOk) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings(), {1, 2, 1});
  c.Send(kOut, Settings(), {3, 4, 1});
  c.Send(kIn, p.Request(1, GrpcRequest("/loupe.test.Echo/Unary"), false) +
                  Data(1, GrpcMessage("\x0a\x05hello"), true),
         {10, 20, 2});
  c.Send(kOut, Cat({p.Response(1, kGrpcResponse, false), Data(1, GrpcMessage("\x0a\x05hello"), false),
                    p.Response(1, {{"grpc-status", "0"}}, true)}),
         {30, 40, 2});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(s.name, "loupe.test.Echo/Unary");
  EXPECT_EQ(s.kind, SpanKind::kServer);
  EXPECT_EQ(s.status, StatusCode::kUnset);
  EXPECT_EQ(Str(s, "rpc.system"), "grpc");
  EXPECT_EQ(Str(s, "rpc.service"), "loupe.test.Echo");
  EXPECT_EQ(Str(s, "rpc.method"), "Unary");
  EXPECT_EQ(Int(s, "rpc.grpc.status_code"), 0);
  EXPECT_EQ(Str(s, "server.address"), "echo.svc");
  EXPECT_EQ(Int(s, "server.port"), 50051);
  EXPECT_EQ(Str(s, "network.peer.address"), "10.0.0.2");
  EXPECT_EQ(Str(s, "network.protocol.version"), "2");
  EXPECT_EQ(Int(s, "rpc.grpc.request.messages"), 1);
  EXPECT_EQ(Int(s, "rpc.grpc.response.messages"), 1);
  EXPECT_FALSE(Has(s, "rpc.grpc.messages_incomplete"));
  EXPECT_FALSE(Has(s, "http.request.method"));
  EXPECT_EQ(s.start_mono_ns, 20u);
  EXPECT_EQ(s.end_mono_ns, 40u);
}

TEST(Http2DecoderTest, GrpcTrailersOnlyResponse) {
  for (const Role role : {Role::kServer, Role::kClient}) {
    Connection c(role);
    Peers p;
    const Direction req = role == Role::kServer ? kIn : kOut;
    c.Send(req, std::string(kClientPreface) + Settings());
    c.Send(Opposite(req), Settings());
    c.Send(req, p.Request(1, GrpcRequest("/pkg.Store/Get"), false) +
                    Data(1, GrpcMessage("key"), true));
    // HEADERS with END_STREAM carrying grpc-status: trailers-only.
    c.Send(Opposite(req), p.Response(1,
                                     {{":status", "200"},
                                      {"content-type", "application/grpc"},
                                      {"grpc-status", "5"},
                                      {"grpc-message", "key%20not%20found%3A%20%E2%9C%93"}},
                                     true));
    ASSERT_EQ(c.spans().size(), 1u);
    const SpanRecord& s = c.spans()[0];
    EXPECT_EQ(Int(s, "rpc.grpc.status_code"), 5);
    EXPECT_EQ(Int(s, "rpc.grpc.response.messages"), 0);
    if (role == Role::kServer) {
      // NOT_FOUND is the caller's problem, not the server's.
      EXPECT_EQ(s.status, StatusCode::kUnset);
      EXPECT_EQ(s.status_message, "");
      EXPECT_FALSE(Has(s, "error.type"));
    } else {
      EXPECT_EQ(s.status, StatusCode::kError);
      EXPECT_EQ(Str(s, "error.type"), "NOT_FOUND");
      EXPECT_EQ(s.status_message, "key not found: \xE2\x9C\x93");
    }
  }
}

TEST(Http2DecoderTest, GrpcServerErrorsAndResets) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, Cat({p.Request(1, GrpcRequest("/a.B/C"), true), p.Request(3, GrpcRequest("/a.B/C"), true),
                   p.Request(5, GrpcRequest("/a.B/C"), true),
                   p.Request(7, GrpcRequest("/a.B/C"), true)}));
  c.Send(kOut, Cat({p.Response(1, kGrpcResponse, false),
                    p.Response(1, {{"grpc-status", "13"}, {"grpc-message", "boom"}}, true)}));
  c.Send(kOut, Cat({p.Response(3, kGrpcResponse, false),
                    p.Response(3, {{"grpc-status", "3"}, {"grpc-message", "bad"}}, true)}));
  c.Send(kIn, RstStream(5, 0x8));  // cancelled by the client, no status
  c.Send(kOut, p.Response(7, {{":status", "503"}}, true));  // a proxy's answer
  ASSERT_EQ(c.spans().size(), 4u);
  EXPECT_EQ(c.spans()[0].status, StatusCode::kError);  // INTERNAL fails a server
  EXPECT_EQ(Str(c.spans()[0], "error.type"), "INTERNAL");
  EXPECT_EQ(c.spans()[0].status_message, "boom");
  EXPECT_EQ(c.spans()[1].status, StatusCode::kUnset);  // INVALID_ARGUMENT does not
  EXPECT_EQ(Int(c.spans()[1], "rpc.grpc.status_code"), 3);
  EXPECT_EQ(c.spans()[2].status, StatusCode::kError);
  EXPECT_EQ(Str(c.spans()[2], "error.type"), "CANCEL");
  EXPECT_FALSE(Has(c.spans()[2], "rpc.grpc.status_code"));
  EXPECT_EQ(Str(c.spans()[2], "rpc.system"), "grpc");
  EXPECT_EQ(Int(c.spans()[3], "rpc.grpc.status_code"), 14);  // 503 -> UNAVAILABLE
  EXPECT_EQ(c.spans()[3].status, StatusCode::kError);
}

TEST(Http2DecoderTest, GrpcStreamingMessageCounts) {
  Connection c(Role::kClient);
  Peers p;
  c.Send(kOut, std::string(kClientPreface) + Settings());
  c.Send(kIn, Settings());
  c.Send(kOut, p.Request(1, GrpcRequest("/chat.Room/Talk"), false));
  // Three client messages: one split over two DATA frames, two in one frame,
  // the last one empty.
  const std::string m1 = GrpcMessage("first message");
  c.Send(kOut, Data(1, m1.substr(0, 3), false));
  c.Send(kIn, p.Response(1, kGrpcResponse, false));
  c.Send(kOut, Data(1, m1.substr(3), false) + Data(1, GrpcMessage("second") + GrpcMessage(""), false));
  // Four server messages, their prefixes split across frames and syscalls.
  std::string down;
  for (int i = 0; i < 4; ++i) down += GrpcMessage("reply " + std::to_string(i));
  for (size_t at = 0; at < down.size(); at += 7) {
    c.Send(kIn, Data(1, down.substr(at, 7), false));
  }
  c.Send(kOut, Data(1, "", true));
  c.Send(kIn, p.Response(1, {{"grpc-status", "0"}}, true));
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "rpc.grpc.request.messages"), 3);
  EXPECT_EQ(Int(c.spans()[0], "rpc.grpc.response.messages"), 4);
  EXPECT_FALSE(Has(c.spans()[0], "rpc.grpc.messages_incomplete"));
  EXPECT_EQ(c.spans()[0].status, StatusCode::kUnset);
}

TEST(Http2DecoderTest, GrpcMessagesAcrossGaps) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, p.Request(1, GrpcRequest("/blob.Store/Put"), false));
  // A 10000-byte message of which the syscall copied 100 bytes: skipped by
  // length; the next message (next syscall) is counted exactly.
  const std::string big = Data(1, GrpcMessage(std::string(10000, 'z')), false);
  c.Send(kIn, std::string_view(big).substr(0, 100), {}, big.size());
  c.Send(kIn, Data(1, GrpcMessage("tail"), true));
  // The response's second message prefix falls into a gap: lower bound.
  const std::string reply = GrpcMessage(std::string(50, 'a')) + GrpcMessage("b") + GrpcMessage("c");
  const std::string reply_frame = Data(1, reply, false);
  c.Send(kOut, p.Response(1, kGrpcResponse, false));
  c.Send(kOut, std::string_view(reply_frame).substr(0, 9 + 40), {}, reply_frame.size());
  c.Send(kOut, p.Response(1, {{"grpc-status", "0"}}, true));
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(Int(s, "rpc.grpc.request.messages"), 2);
  EXPECT_FALSE(Has(s, "http.request.body.size"));  // gRPC spans carry RPC attributes
  EXPECT_EQ(Int(s, "rpc.grpc.response.messages"), 2);  // at least: 1 seen, 1 starts in the gap
  EXPECT_TRUE(Bool(s, "rpc.grpc.messages_incomplete"));
  EXPECT_EQ(c.stats().truncated, 1u);
  EXPECT_EQ(c.stats().resyncs, 0u);  // gaps inside DATA keep the framing
}

// --- Bounds -------------------------------------------------------------------

TEST(Http2DecoderTest, HeaderBlockLargerThanTheBound) {
  DecoderOptions options;
  options.max_header_bytes = 1024;
  Connection c(Role::kServer, options);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  // Random bytes do not compress: the block is well over 1024 bytes raw.
  std::mt19937 rng(1);
  std::string cookie;
  for (int i = 0; i < 3000; ++i) cookie.push_back(static_cast<char>('!' + rng() % 90));
  HeaderList big = {{":method", "GET"}, {":scheme", "http"}, {":authority", "big.example"},
                    {":path", "/big"}, {"cookie", cookie}};
  c.Send(kIn, p.Request(1, big, true));
  c.Send(kOut, p.Response(1, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 1u);
  // What came before the bound is recovered.
  EXPECT_EQ(c.spans()[0].name, "GET /big");
  EXPECT_EQ(Str(c.spans()[0], "server.address"), "big.example");
  EXPECT_TRUE(Bool(c.spans()[0], "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.stats().truncated, 1u);
  EXPECT_EQ(c.stats().hpack_recoveries, 1u);
  // The table is unknown from then on: a reference to :authority indexed by
  // the big block is not guessed; static and literal fields still are.
  c.Send(kIn, p.Request(3, {{":method", "GET"}, {":scheme", "http"},
                            {":authority", "big.example"}, {":path", "/next"}},
                        true));
  c.Send(kOut, p.Response(3, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[1].name, "GET /next");
  EXPECT_EQ(Str(c.spans()[1], "server.address"), "10.0.0.1");  // the socket, not a guess
  EXPECT_TRUE(Bool(c.spans()[1], "loupe.http2.headers_incomplete"));
  EXPECT_GE(c.stats().hpack_unknown_fields, 1u);
}

TEST(Http2DecoderTest, DecodedHeaderListLargerThanTheBound) {
  DecoderOptions options;
  options.max_header_bytes = 1024;
  Connection c(Role::kServer, options);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  // Small on the wire (the repeated field is indexed once, then referenced),
  // large once decoded.
  HeaderList h = {{":method", "GET"}, {":scheme", "http"}, {":path", "/many"}};
  for (int i = 0; i < 5; ++i) h.push_back({"x-repeat", std::string(400, 'r')});
  h.push_back({":authority", "late.example"});  // after the bound: not kept
  const std::string block = p.client.Encode(h);
  ASSERT_LT(block.size(), 1024u);
  c.Send(kIn, Headers(1, block, true));
  c.Send(kOut, p.Response(1, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /many");
  EXPECT_EQ(Str(c.spans()[0], "server.address"), "10.0.0.1");
  EXPECT_TRUE(Bool(c.spans()[0], "loupe.http2.headers_incomplete"));
  // HPACK stayed in step: the next request's indexed fields are known.
  c.Send(kIn, p.Request(3, {{":method", "GET"}, {":scheme", "http"}, {":path", "/many"},
                            {":authority", "late.example"}},
                        true));
  c.Send(kOut, p.Response(3, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Str(c.spans()[1], "server.address"), "late.example");
  EXPECT_FALSE(Has(c.spans()[1], "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.stats().hpack_recoveries, 0u);
}

// --- Joining a running connection ---------------------------------------------------

// Request header blocks made by hand so the test controls exactly which
// representation references which table entry.
TEST(Http2DecoderTest, MidConnectionJoinRecoversWhatCanBeKnown) {
  // Before the agent started, the client's encoder inserted two entries:
  //   62 ":authority: old.example"  (then pushed down by later inserts)
  //   x-tenant: acme
  // We join here: the first request we see references them.
  Connection c(Role::kServer);
  const uint64_t offset = 5000;  // the stream started long before
  std::string block = Indexed(kMethodGet) + Indexed(kSchemeHttp) +
                      LiteralIncremental(4, "/orders/77") +  // :path by static name: inserted
                      Indexed(62 + 1) +                      // pre-join :authority: unknown
                      Indexed(62 + 2);                       // pre-join x-tenant: unknown
  c.Send(kIn, Headers(1, block, true), {100, 110, 3}, std::nullopt, offset);
  c.Send(kOut, RawFrame(kHeaders, kFlagEndHeaders | kFlagEndStream, 1, Indexed(kStatus200)),
         {120, 130, 3}, std::nullopt, 9000);
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(s.name, "GET /orders/{id}");
  EXPECT_EQ(Str(s, "url.path"), "/orders/77");
  EXPECT_EQ(Int(s, "http.response.status_code"), 200);
  EXPECT_EQ(Str(s, "server.address"), "10.0.0.1");  // :authority unknown: the socket
  EXPECT_TRUE(Bool(s, "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.stats().hpack_recoveries, 2u);  // both directions joined mid-way
  EXPECT_EQ(c.stats().hpack_unknown_fields, 2u);

  // Entries inserted after the join are known, references beyond them are
  // not, and nothing is mapped to the wrong entry:
  //   request 3 inserts ":authority: new.example" (dynamic 1 after it) and
  //   "x-tenant: globex" by a dynamic name we never saw (a placeholder keeps
  //   the count: it becomes dynamic 1, new.example dynamic 2, /orders/77 3).
  block = Indexed(kMethodGet) + Indexed(kSchemeHttp) + Indexed(62) /* /orders/77 */ +
          LiteralIncremental(kAuthority, "new.example") +
          LiteralIncremental(62 + 4, "globex");  // name: pre-join x-tenant (unknown)
  c.Send(kIn, Headers(3, block, true), {200, 210, 3});
  c.Send(kOut, RawFrame(kHeaders, kFlagEndHeaders | kFlagEndStream, 3, Indexed(kStatus404)),
         {220, 230, 3});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Str(c.spans()[1], "url.path"), "/orders/77");
  EXPECT_EQ(Str(c.spans()[1], "server.address"), "new.example");
  EXPECT_EQ(Int(c.spans()[1], "http.response.status_code"), 404);
  //   request 5: dynamic 2 (index 63) is new.example only because the
  //   placeholder kept the count; dynamic 4 (index 65) was inserted before
  //   we joined.
  block = Indexed(kMethodPost) + Indexed(kSchemeHttp) + Indexed(62 + 1) /* new.example */ +
          Indexed(62) /* the placeholder: unknown */ + LiteralWithoutIndexing(4, "/orders/78") +
          Indexed(62 + 3) /* beyond our 3 entries: unknown */;
  c.Send(kIn, Headers(5, block, true), {300, 310, 3});
  c.Send(kOut, RawFrame(kHeaders, kFlagEndHeaders | kFlagEndStream, 5, Indexed(kStatus200)),
         {320, 330, 3});
  ASSERT_EQ(c.spans().size(), 3u);
  EXPECT_EQ(c.spans()[2].name, "POST /orders/{id}");
  EXPECT_EQ(Str(c.spans()[2], "server.address"), "new.example");
  EXPECT_TRUE(Bool(c.spans()[2], "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.stats().hpack_unknown_fields, 2u + 1u + 2u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http2DecoderTest, MidConnectionJoinWithUnknownRoleInfersItFromPseudoHeaders) {
  Connection c(Role::kUnknown);
  c.Send(kOut, Headers(7, Indexed(kMethodGet) + Indexed(kPathRoot) + Indexed(kSchemeHttp), true),
         {10, 20, 1}, std::nullopt, 777);
  c.Send(kIn, Headers(7, Indexed(kStatus200), true), {30, 40, 1}, std::nullopt, 888);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  EXPECT_EQ(c.spans()[0].name, "GET /");
  EXPECT_EQ(c.spans()[0].start_mono_ns, 10u);
}

TEST(Http2DecoderTest, JoinedMidFrameResynchronisesAtASyscallStart) {
  Connection c(Role::kServer);
  // The first captured syscall is the tail of a DATA frame.
  c.Send(kIn, std::string(300, '\x17'), {1, 2, 1}, std::nullopt, 40000);
  c.Send(kIn, Headers(9, Indexed(kMethodGet) + LiteralWithoutIndexing(4, "/after"), true),
         {3, 4, 1});
  c.Send(kOut, Headers(9, Indexed(kStatus200), true), {5, 6, 1}, std::nullopt, 70000);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /after");
  EXPECT_FALSE(Has(c.spans()[0], "loupe.http2.headers_incomplete"));
}

// --- Gaps -----------------------------------------------------------------------

TEST(Http2DecoderTest, GapInsideAHeaderBlockSwitchesToRecovery) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, p.Request(1, kGetUsers, true));
  c.Send(kOut, p.Response(1, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 1u);
  // The next request's header block is cut after its first bytes (a capture
  // prefix of 9 + 4): the fields there are recovered, the rest is unknown.
  const std::string block = p.client.Encode({{":method", "GET"},
                                             {":scheme", "http"},
                                             {":path", "/second"},
                                             {":authority", "shop.example.com:8443"},
                                             {"x-new", "inserted-but-lost"}});
  const std::string frame = Headers(3, block, true);
  c.Send(kIn, std::string_view(frame).substr(0, 9 + 2), {50, 60, 2}, frame.size());
  c.Send(kOut, p.Response(3, kOkJson, true), {70, 80, 2});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Str(c.spans()[1], "http.request.method"), "GET");
  EXPECT_EQ(c.spans()[1].name, "GET");  // :path was in the lost part
  EXPECT_TRUE(Bool(c.spans()[1], "loupe.http2.headers_incomplete"));
  EXPECT_EQ(c.spans()[1].end_mono_ns, 80u);
  EXPECT_EQ(c.stats().hpack_recoveries, 1u);
  EXPECT_EQ(c.stats().resyncs, 0u);  // the frame's length was known: framing kept
  // Later references to entries inserted before the loss are unknown, not
  // guessed: the encoder's table has "x-new" in front of what we hold.
  c.Send(kIn, p.Request(5, kGetUsers, true));
  c.Send(kOut, p.Response(5, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 3u);
  EXPECT_NE(Str(c.spans()[2], "server.address"), "shop.example.com");
  EXPECT_TRUE(Bool(c.spans()[2], "loupe.http2.headers_incomplete"));
}

TEST(Http2DecoderTest, GapInsideAFrameHeaderResynchronises) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, p.Request(1, GrpcRequest("/a.B/C"), false));
  // One syscall: DATA (captured) then a frame header in the uncopied tail.
  const std::string first = Data(1, GrpcMessage("xyz"), false);
  const std::string write = first + Data(1, GrpcMessage(std::string(500, 'q')), false);
  c.Send(kIn, std::string_view(write).substr(0, first.size() + 4), {10, 11, 1}, write.size());
  // The next syscall starts a frame again.
  c.Send(kIn, Data(1, "", true), {12, 13, 1});
  c.Send(kOut, Cat({p.Response(1, kGrpcResponse, false), p.Response(1, {{"grpc-status", "0"}}, true)}),
         {14, 15, 1});
  EXPECT_EQ(c.stats().resyncs, 1u);
  EXPECT_EQ(c.stats().parse_errors, 0u);  // a loss, not invalid input
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "rpc.grpc.request.messages"), 1);
  EXPECT_TRUE(Bool(c.spans()[0], "rpc.grpc.messages_incomplete"));
  EXPECT_EQ(Int(c.spans()[0], "rpc.grpc.status_code"), 0);
}

// --- Hostile input --------------------------------------------------------------

TEST(Http2DecoderTest, GarbageAndRandomJunkNeitherCrashesNorGrows) {
  std::mt19937 rng(12345);
  Peers p;
  const std::string good_request = p.Request(1, kGetUsers, true);
  for (int round = 0; round < 300; ++round) {
    const Role role = static_cast<Role>(round % 3);
    DecoderOptions options;
    options.max_header_bytes = 256 + rng() % 2048;
    Connection c(role, options);
    if (round % 2) c.Send(kIn, std::string(kClientPreface));
    for (int event = 0; event < 40; ++event) {
      std::string bytes;
      switch (rng() % 4) {
        case 0:  // pure noise
          for (size_t n = rng() % 200; n > 0; --n) bytes.push_back(static_cast<char>(rng()));
          break;
        case 1:  // a plausible frame header with a random payload
          bytes = RawFrame(static_cast<uint8_t>(rng() % 11), static_cast<uint8_t>(rng()),
                        rng() % 8, std::string(rng() % 64, static_cast<char>(rng())));
          break;
        case 2:  // a real frame with bytes flipped
          bytes = good_request;
          bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
          break;
        default:  // a huge claimed length
          bytes = RawFrame(kHeaders, kFlagEndHeaders, 1, "") ;
          bytes[0] = '\x7f';
          break;
      }
      const Direction dir = rng() % 2 ? kIn : kOut;
      const uint64_t total = bytes.size() + (rng() % 3 == 0 ? rng() % 100000 : 0);
      c.Send(dir, bytes, {static_cast<uint64_t>(event), static_cast<uint64_t>(event) + 1, 1},
             total);
      // Everything is consumed or, at most, a partial frame header / preface waits.
      for (const Direction d : {kIn, kOut}) {
        EXPECT_LE(c.stream(d).buffered_bytes(), 4096u) << "round " << round;
      }
    }
    c.Close();
  }
}

// --- Announcements and trace context -----------------------------------------------

std::string Hex(const TraceId& id) { return ToHex(id); }
std::string Hex(const SpanId& id) { return ToHex(id); }

TEST(Http2DecoderTest, StreamsAreAnnouncedWhenTheirRequestHeadersAreDecoded) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings(), {1, 2, 1});
  c.Send(kOut, Settings(), {3, 4, 1});
  c.Send(kIn, p.Request(1, kGetUsers, true), {100, 110, 9});
  ASSERT_EQ(c.starts().size(), 1u);
  const ExchangeStart first = c.starts()[0];
  EXPECT_EQ(first.key, (ExchangeKey{77, 1, 1}));
  EXPECT_EQ(first.kind, SpanKind::kServer);
  EXPECT_EQ(first.tgid, 1234u);
  EXPECT_EQ(first.tid, 9u);
  EXPECT_EQ(first.start_mono_ns, 110u);  // received: the read's exit
  EXPECT_TRUE(first.tuple == c.conn().tuple);
  ASSERT_TRUE(first.context.has_value());
  EXPECT_EQ(Hex(first.context->trace_id), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(Hex(first.context->span_id), "b7ad6b7169203331");
  EXPECT_TRUE(first.context->sampled);

  // A second stream, concurrent, with B3 in one header; a third without any.
  c.Send(kIn,
         p.Request(3,
                   {{":method", "POST"},
                    {":scheme", "http"},
                    {":path", "/pay"},
                    {"b3", "a3ce929d0e0e4736-00f067aa0ba902b7-0"}},
                   false),
         {200, 210, 10});
  c.Send(kIn, p.Request(5, {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}}, true),
         {220, 230, 11});
  ASSERT_EQ(c.starts().size(), 3u);
  EXPECT_EQ(c.starts()[1].key, (ExchangeKey{77, 2, 3}));
  ASSERT_TRUE(c.starts()[1].context.has_value());
  EXPECT_EQ(Hex(c.starts()[1].context->trace_id), "0000000000000000a3ce929d0e0e4736");
  EXPECT_FALSE(c.starts()[1].context->sampled);
  EXPECT_EQ(c.starts()[2].key, (ExchangeKey{77, 3, 5}));
  EXPECT_FALSE(c.starts()[2].context.has_value());
  // The request body does not announce again.
  c.Send(kIn, Data(3, "{}", true), {240, 250, 10});
  EXPECT_EQ(c.starts().size(), 3u);
  EXPECT_TRUE(c.spans().empty());

  c.Send(kOut, p.Response(5, kOkJson, true), {300, 310, 8});
  c.Send(kOut, p.Response(3, kOkJson, true), {320, 330, 8});
  c.Send(kOut, p.Response(1, kOkJson, true), {340, 350, 8});
  EXPECT_EQ(c.order(), "SSSRRR");
  ASSERT_EQ(c.spans().size(), 3u);
  EXPECT_EQ(c.spans()[0].key, (ExchangeKey{77, 3, 5}));
  EXPECT_EQ(c.spans()[1].key, (ExchangeKey{77, 2, 3}));
  EXPECT_EQ(c.spans()[2].key, (ExchangeKey{77, 1, 1}));
  EXPECT_EQ(c.spans()[2].start_mono_ns, 110u);
  EXPECT_EQ(c.spans()[2].tid, 9u);
  EXPECT_TRUE(c.spans()[2].context == first.context);
  EXPECT_TRUE(c.spans()[1].context == c.starts()[1].context);
  EXPECT_FALSE(c.spans()[0].context.has_value());
}

TEST(Http2DecoderTest, GrpcClientCallAnnouncedWithMetadataContext) {
  Connection c(Role::kClient);
  Peers p;
  c.Send(kOut, std::string(kClientPreface) + Settings(), {1, 2, 1});
  HeaderList request = GrpcRequest("/loupe.test.Echo/Unary");
  // gRPC metadata are header fields: X-B3-* as a Zipkin-instrumented client
  // sends them (HTTP/2 names are lower case).
  request.push_back({"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"});
  request.push_back({"x-b3-spanid", "e457b5a2e4d86bd1"});
  request.push_back({"x-b3-sampled", "1"});
  c.Send(kOut, p.Request(1, request, false) + Data(1, GrpcMessage("hi"), true), {50, 60, 4});
  ASSERT_EQ(c.starts().size(), 1u);
  const ExchangeStart& start = c.starts()[0];
  EXPECT_EQ(start.key, (ExchangeKey{77, 1, 1}));
  EXPECT_EQ(start.kind, SpanKind::kClient);
  EXPECT_EQ(start.start_mono_ns, 50u);  // sent: the write's entry
  EXPECT_EQ(start.tid, 4u);
  ASSERT_TRUE(start.context.has_value());
  EXPECT_EQ(Hex(start.context->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(Hex(start.context->span_id), "e457b5a2e4d86bd1");
  EXPECT_TRUE(start.context->sampled);
  c.Send(kIn, Cat({Settings(), p.Response(1, kGrpcResponse, false), Data(1, GrpcMessage("hi"), false),
                   p.Response(1, {{"grpc-status", "0"}}, true)}),
         {70, 80, 4});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.order(), "SR");
  EXPECT_EQ(c.spans()[0].name, "loupe.test.Echo/Unary");
  EXPECT_EQ(c.spans()[0].key, start.key);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  EXPECT_TRUE(c.spans()[0].context == start.context);
}

TEST(Http2DecoderTest, TraceparentWithTracestateAndMixedCaseNames) {
  Connection c(Role::kServer);
  // Hand-made HPACK: upper-case names are malformed in HTTP/2 (RFC 9113
  // section 8.2.1), but a peer that sends them still meant the header.
  const std::string block =
      Indexed(kMethodGet) + Indexed(kSchemeHttp) + Indexed(kPathRoot) +
      LiteralNeverIndexedNewName("TraceParent",
                                 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00") +
      LiteralNeverIndexedNewName("tracestate", "congo=t61rcWkgMzE");
  c.Send(kIn, std::string(kClientPreface) + Settings() + Headers(1, block, true), {1, 2, 3});
  c.Send(kOut, Settings() + Headers(1, Indexed(kStatus200), true), {4, 5, 3});
  ASSERT_EQ(c.starts().size(), 1u);
  ASSERT_TRUE(c.starts()[0].context.has_value());
  EXPECT_FALSE(c.starts()[0].context->sampled);
  EXPECT_EQ(c.starts()[0].context->tracestate, "congo=t61rcWkgMzE");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_TRUE(c.spans()[0].context == c.starts()[0].context);
}

TEST(Http2DecoderTest, ResetAndRefusedStreamsKeepTheirKeys) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, p.Request(1, kGetUsers, true) + p.Request(3, kGetUsers, true) +
                  p.Request(5, kGetUsers, true));
  ASSERT_EQ(c.starts().size(), 3u);
  c.Send(kIn, RstStream(3, 8));  // the client cancels stream 3: a span
  c.Send(kOut, Goaway(1, 0));    // stream 5 refused: announced, no span
  c.Send(kOut, p.Response(1, kOkJson, true));
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[0].key, (ExchangeKey{77, 2, 3}));
  EXPECT_EQ(c.spans()[1].key, (ExchangeKey{77, 1, 1}));
  // A new stream after all that continues the sequence.
  c.Send(kIn, p.Request(7, kGetUsers, true));
  ASSERT_EQ(c.starts().size(), 4u);
  EXPECT_EQ(c.starts()[3].key, (ExchangeKey{77, 4, 7}));
}

TEST(Http2DecoderTest, StreamsBeyondTheBoundAreNotAnnounced) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  const uint32_t total = kMaxTrackedStreams + 3;
  std::string requests;
  for (uint32_t i = 0; i < total; ++i) {
    requests += p.Request(2 * i + 1, {{":method", "GET"}, {":path", "/x"}, {":scheme", "http"}},
                          true);
  }
  c.Send(kIn, requests);
  EXPECT_EQ(c.starts().size(), kMaxTrackedStreams);
  std::string responses;
  for (uint32_t i = 0; i < total; ++i) responses += p.Response(2 * i + 1, kOkJson, true);
  c.Send(kOut, responses);
  ASSERT_EQ(c.spans().size(), kMaxTrackedStreams);
  for (const SpanRecord& s : c.spans()) EXPECT_NE(s.key.seq, 0u);
}

TEST(Http2DecoderTest, StreamsJoinedMidConnectionAreNotAnnounced) {
  Connection c(Role::kServer);
  // Joined mid-way: stream 5's request went by before we started; we see
  // its response only. Stream 7's request comes after we joined.
  c.Send(kOut, Headers(5, Indexed(kStatus200), false), {10, 20, 1}, std::nullopt, 9000);
  c.Send(kIn, Headers(7, Indexed(kMethodGet) + Indexed(kSchemeHttp) + Indexed(kPathRoot), true),
         {30, 40, 2}, std::nullopt, 5000);
  c.Send(kOut, Data(5, "late", true), {50, 60, 1});
  c.Send(kOut, Headers(7, Indexed(kStatus200), true), {70, 80, 1});
  ASSERT_EQ(c.starts().size(), 1u);  // stream 7 only
  EXPECT_EQ(c.starts()[0].key, (ExchangeKey{77, 1, 7}));
  ASSERT_EQ(c.spans().size(), 1u);   // stream 5 has no request: no span
  EXPECT_EQ(c.spans()[0].key, (ExchangeKey{77, 1, 7}));
  EXPECT_EQ(c.stats().unmatched_responses, 1u);
}

TEST(Http2DecoderTest, RequestTrailersSeenAfterAJoinAreNotAnnounced) {
  Connection c(Role::kServer);
  // The first block of stream 9 we see is the request's trailers (no
  // pseudo-header fields, RFC 9113 section 8.1): its header block was
  // missed. The span it still makes carries no key.
  c.Send(kIn, Headers(9, LiteralNeverIndexedNewName("x-checksum", "abc"), true), {10, 20, 1},
         std::nullopt, 7000);
  c.Send(kOut, Headers(9, Indexed(kStatus200), true), {30, 40, 1}, std::nullopt, 8000);
  EXPECT_TRUE(c.starts().empty());
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].key, ExchangeKey{});
}

TEST(Http2DecoderTest, RequestSideLearnedOnlyFromTheResponseIsNotAnnounced) {
  // Role unknown, joined mid-way, and the request block's :method cannot be
  // read: which side asked is only known from the response's :status. By
  // then the request was not announced; its span carries no key.
  Connection c(Role::kUnknown);
  c.Send(kOut, Headers(7, LiteralWithoutIndexing(4, "/x"), true), {10, 20, 1}, std::nullopt, 777);
  EXPECT_TRUE(c.starts().empty());
  c.Send(kIn, Headers(7, Indexed(kStatus200), true), {30, 40, 1}, std::nullopt, 888);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  EXPECT_EQ(c.spans()[0].key.seq, 0u);
  EXPECT_TRUE(c.starts().empty());
}

TEST(Http2DecoderTest, UpgradedConnectionReusesTheHttp1Key) {
  ProtocolUpgrade up;
  up.to = Protocol::kHttp2;
  up.has_request = true;
  up.request_direction = kIn;
  up.method = "GET";
  up.target = "/";
  up.request_start_ns = 110;
  up.request_tid = 6;
  up.request_key = ExchangeKey{77, 4, 0};
  TraceContext context;
  context.trace_id[15] = 1;
  context.span_id[7] = 2;
  context.sampled = true;
  up.request_context = context;
  Connection c(Role::kServer, {}, &up);
  // What the HTTP/1 decoder announced for the upgrade request.
  ExchangeStart http1_start;
  http1_start.key = up.request_key;
  http1_start.kind = SpanKind::kServer;
  http1_start.tgid = c.conn().tgid;
  http1_start.tid = 6;
  http1_start.start_mono_ns = 110;
  http1_start.tuple = c.conn().tuple;
  http1_start.context = up.request_context;
  c.sink().OnExchangeStart(http1_start);
  Encoder client;
  Encoder server;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings() + Headers(1, server.Encode({{":status", "200"}}), true), {200, 210, 6});
  EXPECT_EQ(c.starts().size(), 1u);  // no second announcement for stream 1
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].key, (ExchangeKey{77, 4, 0}));
  EXPECT_TRUE(c.spans()[0].context == up.request_context);
  EXPECT_EQ(c.spans()[0].start_mono_ns, 110u);
  EXPECT_EQ(c.spans()[0].tid, 6u);
  c.Send(kIn, Headers(3, client.Encode({{":method", "GET"}, {":scheme", "http"}, {":path", "/2"}}),
                      true));
  ASSERT_EQ(c.starts().size(), 2u);
  EXPECT_EQ(c.starts()[1].key, (ExchangeKey{77, 5, 3}));  // after the upgrade request's
}

}  // namespace
}  // namespace loupe::http2::testing
