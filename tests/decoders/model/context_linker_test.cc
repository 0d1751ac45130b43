#include "decoders/model/context_linker.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "decoders/model/trace_context.h"

namespace loupe {
namespace {

constexpr uint64_t kMs = 1000 * 1000;

struct RecordingSink : SpanSink {
  void OnSpan(SpanRecord&& record) override { records.push_back(std::move(record)); }
  const SpanRecord* Named(const std::string& name) const {
    const SpanRecord* found = nullptr;
    for (const auto& r : records) {
      if (r.name == name) {
        EXPECT_EQ(found, nullptr) << "two records named " << name;
        found = &r;
      }
    }
    return found;
  }
  std::vector<SpanRecord> records;
};

struct RecordingPairs : PairSink {
  void OnPair(const LinkedPair& pair) override { pairs.push_back(pair); }
  std::vector<LinkedPair> pairs;
};

Endpoint V4(const char* ip, uint16_t port) {
  Endpoint e;
  e.addr.family = AF_INET;
  inet_pton(AF_INET, ip, e.addr.bytes.data());
  e.port = port;
  return e;
}

ConnTuple Tuple(Endpoint local, Endpoint remote) { return ConnTuple{local, remote}; }

class LinkerTest : public ::testing::Test {
 protected:
  explicit LinkerTest(LinkerOptions options = {}) : linker_(options, sink_, &pairs_, 42) {}

  // Announces an exchange and returns its key.
  ExchangeKey Start(SpanKind kind, uint32_t tgid, uint32_t tid, uint64_t conn, uint64_t start_ns,
                    ConnTuple tuple = {}, std::optional<TraceContext> context = std::nullopt,
                    uint64_t stream = 0) {
    ExchangeStart s;
    s.key = ExchangeKey{conn, ++seq_[conn], stream};
    s.kind = kind;
    s.tgid = tgid;
    s.tid = tid;
    s.start_mono_ns = start_ns;
    s.tuple = tuple;
    s.context = context;
    linker_.OnExchangeStart(s);
    return s.key;
  }
  void Finish(const ExchangeKey& key, const std::string& name, SpanKind kind, uint32_t tgid,
              uint32_t tid, uint64_t start_ns, uint64_t end_ns,
              StatusCode status = StatusCode::kUnset) {
    SpanRecord r;
    r.key = key;
    r.conn_id = key.conn_id;
    r.name = name;
    r.kind = kind;
    r.tgid = tgid;
    r.tid = tid;
    r.start_mono_ns = start_ns;
    r.end_mono_ns = end_ns;
    r.status = status;
    linker_.OnSpan(std::move(r));
  }
  // A record of a decoder that does not announce (a database call).
  void Completed(const std::string& name, uint32_t tgid, uint32_t tid, uint64_t conn,
                 uint64_t start_ns, uint64_t end_ns) {
    Finish(ExchangeKey{conn, 0, 0}, name, SpanKind::kClient, tgid, tid, start_ns, end_ns);
  }

  RecordingSink sink_;
  RecordingPairs pairs_;
  ContextLinker linker_;
  std::map<uint64_t, uint64_t> seq_;
};

TEST_F(LinkerTest, ClientOnTheThreadOfAnOpenServerIsItsChild) {
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  const auto c = Start(SpanKind::kClient, 10, 11, 2, 101 * kMs);
  Completed("SELECT", 10, 11, 3, 102 * kMs, 103 * kMs);
  Finish(c, "GET leaf", SpanKind::kClient, 10, 11, 101 * kMs, 104 * kMs);
  Finish(s, "GET /api", SpanKind::kServer, 10, 11, 100 * kMs, 105 * kMs);
  EXPECT_TRUE(sink_.records.empty()) << "nothing is emitted before its decision is due";
  linker_.Advance(200 * kMs);
  ASSERT_EQ(sink_.records.size(), 3u);
  const SpanRecord* server = sink_.Named("GET /api");
  const SpanRecord* client = sink_.Named("GET leaf");
  const SpanRecord* sql = sink_.Named("SELECT");
  ASSERT_TRUE(server && client && sql);
  for (const auto& r : sink_.records) EXPECT_TRUE(r.ids_decided);
  EXPECT_TRUE(IsZero(server->parent_span_id));
  EXPECT_EQ(client->trace_id, server->trace_id);
  EXPECT_EQ(client->parent_span_id, server->span_id);
  EXPECT_EQ(sql->trace_id, server->trace_id);
  EXPECT_EQ(sql->parent_span_id, server->span_id);
  EXPECT_NE(client->span_id, sql->span_id);
  EXPECT_EQ(linker_.stats().links_thread, 2u);
  EXPECT_EQ(linker_.stats().roots, 1u);
}

TEST_F(LinkerTest, ChildFinishedBeforeItsParentGetsTheParentsTrace) {
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  const auto c = Start(SpanKind::kClient, 10, 11, 2, 101 * kMs);
  Finish(c, "child", SpanKind::kClient, 10, 11, 101 * kMs, 102 * kMs);
  // The child is due first; the parent is decided for it.
  linker_.Advance(121 * kMs + 500);
  ASSERT_EQ(sink_.records.size(), 1u);
  EXPECT_EQ(sink_.records[0].name, "child");
  Finish(s, "parent", SpanKind::kServer, 10, 11, 100 * kMs, 130 * kMs);
  ASSERT_EQ(sink_.records.size(), 2u) << "a decided exchange is emitted when it finishes";
  EXPECT_EQ(sink_.records[0].trace_id, sink_.records[1].trace_id);
  EXPECT_EQ(sink_.records[0].parent_span_id, sink_.records[1].span_id);
}

TEST_F(LinkerTest, SeveralOpenServersOnAThreadAreAmbiguous) {
  const auto s1 = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  const auto s2 = Start(SpanKind::kServer, 10, 11, 2, 100 * kMs + 10);
  const auto c = Start(SpanKind::kClient, 10, 11, 3, 101 * kMs);
  Finish(c, "client", SpanKind::kClient, 10, 11, 101 * kMs, 102 * kMs);
  Finish(s1, "s1", SpanKind::kServer, 10, 11, 100 * kMs, 103 * kMs);
  Finish(s2, "s2", SpanKind::kServer, 10, 11, 100 * kMs + 10, 103 * kMs);
  linker_.Advance(200 * kMs);
  ASSERT_EQ(sink_.records.size(), 3u);
  const SpanRecord* client = sink_.Named("client");
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(IsZero(client->parent_span_id));
  EXPECT_NE(client->trace_id, sink_.Named("s1")->trace_id);
  EXPECT_NE(client->trace_id, sink_.Named("s2")->trace_id);
  EXPECT_EQ(linker_.stats().ambiguous, 1u);
  EXPECT_EQ(linker_.stats().links_thread, 0u);
}

TEST_F(LinkerTest, ServerThatAnsweredBeforeTheCallIsNotAParent) {
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  Finish(s, "server", SpanKind::kServer, 10, 11, 100 * kMs, 101 * kMs);
  Completed("later", 10, 11, 2, 102 * kMs, 103 * kMs);
  // A call on another thread of the same process is not linked either.
  const auto s2 = Start(SpanKind::kServer, 10, 12, 3, 104 * kMs);
  Completed("other-thread", 10, 11, 4, 105 * kMs, 106 * kMs);
  Finish(s2, "server2", SpanKind::kServer, 10, 12, 104 * kMs, 107 * kMs);
  linker_.Advance(300 * kMs);
  ASSERT_EQ(sink_.records.size(), 4u);
  EXPECT_TRUE(IsZero(sink_.Named("later")->parent_span_id));
  EXPECT_TRUE(IsZero(sink_.Named("other-thread")->parent_span_id));
  EXPECT_EQ(linker_.stats().roots, 4u);
}

TEST_F(LinkerTest, ConnectionEndClosesUnansweredServers) {
  Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);  // never answered
  linker_.OnConnectionEnd(1, 101 * kMs);
  const auto s = Start(SpanKind::kServer, 10, 11, 2, 102 * kMs);
  Completed("call", 10, 11, 3, 103 * kMs, 104 * kMs);
  Finish(s, "server", SpanKind::kServer, 10, 11, 102 * kMs, 105 * kMs);
  linker_.Advance(300 * kMs);
  ASSERT_EQ(sink_.records.size(), 2u);
  EXPECT_EQ(sink_.Named("call")->parent_span_id, sink_.Named("server")->span_id);
  EXPECT_EQ(linker_.stats().ambiguous, 0u);
}

TEST_F(LinkerTest, BothEndsOfAConnectionAreJoinedAndReportedAsAPair) {
  const Endpoint client_ep = V4("127.0.0.1", 40000);
  const Endpoint server_ep = V4("127.0.0.1", 8080);
  // The server's read returns 300 us before the client's write does.
  const auto c = Start(SpanKind::kClient, 20, 20, 7, 100 * kMs + 300 * 1000,
                       Tuple(client_ep, server_ep));
  const auto s = Start(SpanKind::kServer, 30, 31, 8, 100 * kMs, Tuple(server_ep, client_ep));
  Finish(s, "server", SpanKind::kServer, 30, 31, 100 * kMs, 104 * kMs, StatusCode::kError);
  Finish(c, "client", SpanKind::kClient, 20, 20, 100 * kMs + 300 * 1000, 105 * kMs);
  linker_.Advance(300 * kMs);
  ASSERT_EQ(sink_.records.size(), 2u);
  const SpanRecord* server = sink_.Named("server");
  const SpanRecord* client = sink_.Named("client");
  EXPECT_EQ(server->trace_id, client->trace_id);
  EXPECT_EQ(server->parent_span_id, client->span_id);
  EXPECT_TRUE(IsZero(client->parent_span_id));
  EXPECT_EQ(linker_.stats().links_peer, 1u);
  ASSERT_EQ(pairs_.pairs.size(), 1u);
  EXPECT_EQ(pairs_.pairs[0].client_tgid, 20u);
  EXPECT_EQ(pairs_.pairs[0].server_tgid, 30u);
  EXPECT_TRUE(pairs_.pairs[0].failed);
  EXPECT_NEAR(pairs_.pairs[0].server_seconds, 0.004, 1e-9);
  EXPECT_NEAR(pairs_.pairs[0].client_seconds, 0.0047, 1e-9);
}

TEST_F(LinkerTest, KeepAliveRequestsPairInOrderAndStreamsMustMatch) {
  const Endpoint a = V4("10.0.0.1", 40000);
  const Endpoint b = V4("10.0.0.2", 443);
  const auto c1 = Start(SpanKind::kClient, 20, 20, 7, 100 * kMs, Tuple(a, b), {}, 1);
  const auto c3 = Start(SpanKind::kClient, 20, 20, 7, 100 * kMs + 1, Tuple(a, b), {}, 3);
  // The server reads stream 3 first.
  const auto s3 = Start(SpanKind::kServer, 30, 31, 8, 101 * kMs, Tuple(b, a), {}, 3);
  const auto s1 = Start(SpanKind::kServer, 30, 31, 8, 101 * kMs + 5, Tuple(b, a), {}, 1);
  Finish(s3, "s3", SpanKind::kServer, 30, 31, 101 * kMs, 102 * kMs);
  Finish(s1, "s1", SpanKind::kServer, 30, 31, 101 * kMs + 5, 102 * kMs);
  Finish(c1, "c1", SpanKind::kClient, 20, 20, 100 * kMs, 103 * kMs);
  Finish(c3, "c3", SpanKind::kClient, 20, 20, 100 * kMs + 1, 103 * kMs);
  linker_.Advance(300 * kMs);
  ASSERT_EQ(sink_.records.size(), 4u);
  EXPECT_EQ(sink_.Named("s1")->parent_span_id, sink_.Named("c1")->span_id);
  EXPECT_EQ(sink_.Named("s3")->parent_span_id, sink_.Named("c3")->span_id);
  EXPECT_EQ(pairs_.pairs.size(), 2u);
}

TEST_F(LinkerTest, DestinationNatStillJoinsOnTheClientEndpoint) {
  // The client dialled a service address; the server sees the pod address.
  const Endpoint client_ep = V4("10.1.0.5", 40000);
  const auto c = Start(SpanKind::kClient, 20, 20, 7, 100 * kMs,
                       Tuple(client_ep, V4("10.96.0.10", 80)));
  const auto s = Start(SpanKind::kServer, 30, 31, 8, 100 * kMs + 10,
                       Tuple(V4("10.1.0.9", 8080), client_ep));
  Finish(s, "server", SpanKind::kServer, 30, 31, 100 * kMs + 10, 101 * kMs);
  Finish(c, "client", SpanKind::kClient, 20, 20, 100 * kMs, 102 * kMs);
  linker_.Advance(300 * kMs);
  EXPECT_EQ(sink_.Named("server")->parent_span_id, sink_.Named("client")->span_id);
}

TEST_F(LinkerTest, ALocalPortReusedForAnotherDestinationIsNotAPeer) {
  // A proxy's upstream connection 127.0.0.1:41000 -> :9000 and, at the same
  // time, its own client's connection from the same local port to the
  // proxy's :8080 (Linux reuses a local port for another destination).
  const Endpoint shared = V4("127.0.0.1", 41000);
  const auto upstream = Start(SpanKind::kClient, 40, 40, 1, 100 * kMs,
                              Tuple(shared, V4("127.0.0.1", 9000)));
  const auto s = Start(SpanKind::kServer, 40, 40, 2, 100 * kMs + 10,
                       Tuple(V4("127.0.0.1", 8080), shared));
  Finish(s, "proxy-server", SpanKind::kServer, 40, 40, 100 * kMs + 10, 103 * kMs);
  Finish(upstream, "upstream", SpanKind::kClient, 40, 40, 100 * kMs, 102 * kMs);
  linker_.Advance(300 * kMs);
  EXPECT_TRUE(IsZero(sink_.Named("proxy-server")->parent_span_id));
  EXPECT_EQ(linker_.stats().links_peer, 0u);
}

TraceContext Context(const char* traceparent) {
  auto c = ParseTraceparent(traceparent);
  EXPECT_TRUE(c.has_value()) << traceparent;
  return c.value_or(TraceContext{});
}

TEST_F(LinkerTest, HeaderContextMakesTheServerAChildOfTheCaller) {
  const TraceContext ctx = Context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs, {}, ctx);
  Completed("call", 10, 11, 2, 101 * kMs, 102 * kMs);
  Finish(s, "server", SpanKind::kServer, 10, 11, 100 * kMs, 103 * kMs);
  linker_.Advance(300 * kMs);
  const SpanRecord* server = sink_.Named("server");
  EXPECT_EQ(server->trace_id, ctx.trace_id);
  EXPECT_EQ(server->parent_span_id, ctx.span_id);
  EXPECT_TRUE(server->sampled);
  EXPECT_EQ(sink_.Named("call")->trace_id, ctx.trace_id);
  EXPECT_EQ(sink_.Named("call")->parent_span_id, server->span_id);
  EXPECT_EQ(linker_.stats().links_header, 1u);
}

TEST_F(LinkerTest, UnsampledHeaderIsRespectedAndInherited) {
  const TraceContext ctx = Context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs, {}, ctx);
  Completed("call", 10, 11, 2, 101 * kMs, 102 * kMs);
  Finish(s, "server", SpanKind::kServer, 10, 11, 100 * kMs, 103 * kMs);
  linker_.Advance(300 * kMs);
  EXPECT_FALSE(sink_.Named("server")->sampled);
  EXPECT_FALSE(sink_.Named("call")->sampled);
}

TEST_F(LinkerTest, ProxyForwardingTheHeaderKeepsItsOwnSpansInTheChain) {
  // curl -> proxy (SERVER with ctx, CLIENT forwarding the same header) ->
  // backend (SERVER with the same header, peer of the proxy's CLIENT).
  const TraceContext ctx = Context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  const Endpoint p = V4("127.0.0.1", 50000), b = V4("127.0.0.1", 9000);
  // The proxy is an event loop with another request open.
  Start(SpanKind::kServer, 40, 40, 99, 99 * kMs);
  const auto ps = Start(SpanKind::kServer, 40, 40, 1, 100 * kMs, {}, ctx);
  const auto pc = Start(SpanKind::kClient, 40, 40, 2, 101 * kMs, Tuple(p, b), ctx);
  const auto bs = Start(SpanKind::kServer, 50, 51, 3, 101 * kMs + 100, Tuple(b, p), ctx);
  Finish(bs, "backend", SpanKind::kServer, 50, 51, 101 * kMs + 100, 104 * kMs);
  Finish(pc, "proxy-client", SpanKind::kClient, 40, 40, 101 * kMs, 105 * kMs);
  Finish(ps, "proxy-server", SpanKind::kServer, 40, 40, 100 * kMs, 106 * kMs);
  linker_.Advance(300 * kMs);
  const SpanRecord* proxy_server = sink_.Named("proxy-server");
  const SpanRecord* proxy_client = sink_.Named("proxy-client");
  const SpanRecord* backend = sink_.Named("backend");
  ASSERT_TRUE(proxy_server && proxy_client && backend);
  EXPECT_EQ(proxy_server->trace_id, ctx.trace_id);
  EXPECT_EQ(proxy_server->parent_span_id, ctx.span_id);
  EXPECT_EQ(proxy_client->trace_id, ctx.trace_id);
  EXPECT_EQ(proxy_client->parent_span_id, proxy_server->span_id);
  EXPECT_EQ(backend->trace_id, ctx.trace_id);
  EXPECT_EQ(backend->parent_span_id, proxy_client->span_id);
  EXPECT_EQ(linker_.stats().links_forwarded, 1u);
  EXPECT_EQ(linker_.stats().links_peer, 1u);
}

TEST_F(LinkerTest, HeaderOfAnotherTraceWinsOverThePeer) {
  const TraceContext ctx = Context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  const Endpoint a = V4("127.0.0.1", 50000), b = V4("127.0.0.1", 9000);
  const auto c = Start(SpanKind::kClient, 40, 40, 2, 101 * kMs, Tuple(a, b));
  const auto s = Start(SpanKind::kServer, 50, 51, 3, 101 * kMs + 100, Tuple(b, a), ctx);
  Finish(s, "server", SpanKind::kServer, 50, 51, 101 * kMs + 100, 104 * kMs);
  Finish(c, "client", SpanKind::kClient, 40, 40, 101 * kMs, 105 * kMs);
  linker_.Advance(300 * kMs);
  EXPECT_EQ(sink_.Named("server")->trace_id, ctx.trace_id);
  EXPECT_EQ(sink_.Named("server")->parent_span_id, ctx.span_id);
  EXPECT_TRUE(pairs_.pairs.empty());
}

TEST_F(LinkerTest, LateAnnouncementIsDecidedAtOnceAndCounted) {
  linker_.Advance(500 * kMs);
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  EXPECT_EQ(linker_.stats().late, 1u);
  Finish(s, "server", SpanKind::kServer, 10, 11, 100 * kMs, 101 * kMs);
  ASSERT_EQ(sink_.records.size(), 1u) << "decided already, emitted when finished";
}

TEST_F(LinkerTest, FlushDecidesAndEmitsEverythingFinished) {
  const auto s = Start(SpanKind::kServer, 10, 11, 1, 100 * kMs);
  Completed("call", 10, 11, 2, 101 * kMs, 102 * kMs);
  Finish(s, "server", SpanKind::kServer, 10, 11, 100 * kMs, 103 * kMs);
  Start(SpanKind::kServer, 10, 12, 3, 104 * kMs);  // never finishes
  linker_.Flush();
  ASSERT_EQ(sink_.records.size(), 2u);
  EXPECT_EQ(sink_.Named("call")->parent_span_id, sink_.Named("server")->span_id);
  EXPECT_EQ(linker_.stats().forced, 3u);
}

TEST(LinkerBounds, OldestExchangesAreEvictedAndRecordsAreNotLost) {
  RecordingSink sink;
  LinkerOptions options;
  options.max_exchanges = 4;
  ContextLinker linker(options, sink, nullptr, 1);
  for (uint64_t i = 1; i <= 10; ++i) {
    ExchangeStart s;
    s.key = ExchangeKey{i, 1, 0};
    s.kind = SpanKind::kServer;
    s.tgid = 1;
    s.tid = static_cast<uint32_t>(i);
    s.start_mono_ns = i * kMs;
    linker.OnExchangeStart(s);
  }
  EXPECT_LE(linker.pending(), 4u);
  EXPECT_EQ(linker.stats().evicted, 6u);
  // The first exchange was evicted: its record still comes out.
  SpanRecord r;
  r.key = ExchangeKey{1, 1, 0};
  r.name = "evicted";
  r.start_mono_ns = kMs;
  r.end_mono_ns = 2 * kMs;
  linker.OnSpan(std::move(r));
  linker.Advance(1000 * kMs);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_EQ(linker.stats().unannounced_records, 1u);
}

TEST(LinkerBounds, FinishedExchangesAreForgottenAfterRetention) {
  RecordingSink sink;
  LinkerOptions options;
  options.retain_ns = 50 * kMs;
  options.max_open_ns = 1000 * kMs;
  ContextLinker linker(options, sink, nullptr, 1);
  for (uint64_t i = 1; i <= 100; ++i) {
    SpanRecord r;
    r.kind = SpanKind::kClient;
    r.name = "q";
    r.tgid = 1;
    r.tid = 1;
    r.start_mono_ns = i * kMs;
    r.end_mono_ns = i * kMs + 1;
    linker.OnSpan(std::move(r));
  }
  ExchangeStart open;
  open.key = ExchangeKey{500, 1, 0};
  open.start_mono_ns = 200 * kMs;
  linker.OnExchangeStart(open);
  linker.Advance(400 * kMs);
  EXPECT_EQ(sink.records.size(), 100u);
  EXPECT_EQ(linker.pending(), 1u) << "only the open exchange is left";
  linker.Advance(1300 * kMs);
  EXPECT_EQ(linker.pending(), 0u) << "open too long";
}

TEST(LinkerSampling, RootsFollowTheSamplerAndChildrenInherit) {
  RecordingSink sink;
  LinkerOptions options;
  options.sampler.kind = SamplerKind::kAlwaysOff;
  ContextLinker linker(options, sink, nullptr, 1);
  ExchangeStart s;
  s.key = ExchangeKey{1, 1, 0};
  s.tgid = 1;
  s.tid = 1;
  s.start_mono_ns = kMs;
  linker.OnExchangeStart(s);
  SpanRecord call;
  call.kind = SpanKind::kClient;
  call.name = "call";
  call.tgid = 1;
  call.tid = 1;
  call.start_mono_ns = 2 * kMs;
  call.end_mono_ns = 3 * kMs;
  linker.OnSpan(std::move(call));
  linker.Advance(100 * kMs);
  ASSERT_EQ(sink.records.size(), 1u);
  EXPECT_FALSE(sink.records[0].sampled);
  EXPECT_FALSE(IsZero(sink.records[0].parent_span_id));
}

}  // namespace
}  // namespace loupe
