// Tests of the HTTP/1 ConnectionDecoder: both directions of a connection fed
// as syscall events into ByteStreams, exchanges checked as SpanRecords.
#include "decoders/http1/http1_decoder.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/protocol.h"
#include "tests/decoders/checking_sink.h"

namespace loupe::http1 {
namespace {

using namespace std::string_view_literals;

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

// Records and checks announcements and spans (tests/decoders/checking_sink.h).
class RecordingSink : public ::loupe::testing::CheckingSink {
 public:
  RecordingSink() : CheckingSink(/*streams=*/false) {}
};

IpAddress V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress addr;
  addr.family = AF_INET;
  addr.bytes[0] = a;
  addr.bytes[1] = b;
  addr.bytes[2] = c;
  addr.bytes[3] = d;
  return addr;
}

// One connection: the traced process is 10.0.0.1:8080 (a server) or
// 10.0.0.1:40000 talking to 10.0.0.2:80 (a client).
class Connection {
 public:
  explicit Connection(Role role, DecoderOptions options = {}) : options_(options) {
    conn_.conn_id = 77;
    conn_.tgid = 1234;
    conn_.role = role;
    conn_.protocol = Protocol::kHttp1;
    if (role == Role::kClient) {
      conn_.tuple.local = Endpoint{V4(10, 0, 0, 1), 40000};
      conn_.tuple.remote = Endpoint{V4(10, 0, 0, 2), 80};
    } else {
      conn_.tuple.local = Endpoint{V4(10, 0, 0, 1), 8080};
      conn_.tuple.remote = Endpoint{V4(10, 0, 0, 2), 54321};
    }
    decoder_ = CreateDecoder(conn_, options_);
  }

  // One syscall moving `bytes` in `dir`; total_len > bytes.size() means only
  // a prefix was copied.
  void Send(Direction dir, std::string_view bytes, EventTime time = {},
            std::optional<uint64_t> total_len = std::nullopt) {
    ByteStream& stream = streams_[Index(dir)];
    stream.Add(stream.end(),
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size()),
               total_len.value_or(bytes.size()), time);
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnData(dir, stream, ctx);
  }

  void Close(bool closed) {
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnClose(closed, streams_, ctx);
  }

  void ResetStream(Direction dir, uint64_t drop) {
    streams_[Index(dir)].DropHead(drop);
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnStreamReset(dir, ctx);
  }

  ConnInfo& conn() { return conn_; }
  const std::vector<SpanRecord>& spans() const { return sink_.spans; }
  const std::vector<ExchangeStart>& starts() const { return sink_.starts; }
  const std::string& order() const { return sink_.order; }
  const ProtocolStats& stats() const { return stats_; }
  const ByteStream& stream(Direction dir) const { return streams_[Index(dir)]; }

 private:
  ConnInfo conn_;
  DecoderOptions options_;
  RecordingSink sink_;
  ProtocolStats stats_;
  std::array<ByteStream, kDirections> streams_;
  std::unique_ptr<ConnectionDecoder> decoder_;
};

using AttributeMap = std::map<std::string, AttributeValue>;

AttributeMap ToMap(const Attributes& attributes) {
  AttributeMap out;
  for (const Attribute& a : attributes.items()) out[a.key] = a.value;
  return out;
}

void ExpectSameSpan(const SpanRecord& a, const SpanRecord& b, const std::string& context) {
  EXPECT_EQ(a.name, b.name) << context;
  EXPECT_EQ(a.kind, b.kind) << context;
  EXPECT_EQ(a.start_mono_ns, b.start_mono_ns) << context;
  EXPECT_EQ(a.end_mono_ns, b.end_mono_ns) << context;
  EXPECT_EQ(a.status, b.status) << context;
  EXPECT_EQ(a.tid, b.tid) << context;
  EXPECT_EQ(a.tgid, b.tgid) << context;
  EXPECT_EQ(a.conn_id, b.conn_id) << context;
  EXPECT_TRUE(a.attributes == b.attributes) << context;
}

int64_t Int(const SpanRecord& span, std::string_view key) {
  const int64_t* v = span.attributes.FindInt(key);
  return v ? *v : -1;
}
std::string Str(const SpanRecord& span, std::string_view key) {
  const std::string* v = span.attributes.FindString(key);
  return v ? *v : "<absent>";
}

// --- A whole exchange, every attribute ----------------------------------------

constexpr std::string_view kGetRequest =
    "GET /users/123/orders?limit=10 HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: curl/8.0\r\n"
    "Authorization: Basic c2VjcmV0\r\n"
    "Accept: */*\r\n"
    "\r\n";
constexpr std::string_view kJsonResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 2\r\n"
    "\r\n"
    "{}";

TEST(Http1DecoderTest, ServerSpanHasEveryAttribute) {
  Connection c(Role::kServer);
  c.Send(kIn, kGetRequest, EventTime{1000, 1100, 42});
  EXPECT_TRUE(c.spans().empty());
  c.Send(kOut, kJsonResponse, EventTime{1200, 1300, 43});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  EXPECT_EQ(span.kind, SpanKind::kServer);
  EXPECT_EQ(span.name, "GET /users/{id}/orders");
  // Ingress request: the read's exit; the response ends with the write's exit.
  EXPECT_EQ(span.start_mono_ns, 1100u);
  EXPECT_EQ(span.end_mono_ns, 1300u);
  EXPECT_EQ(span.tid, 42u);
  EXPECT_EQ(span.tgid, 1234u);
  EXPECT_EQ(span.conn_id, 77u);
  EXPECT_EQ(span.tuple, c.conn().tuple);
  EXPECT_EQ(span.status, StatusCode::kUnset);
  const AttributeMap expected = {
      {"http.request.method", "GET"},
      {"url.path", "/users/123/orders"},
      {"http.route", "/users/{id}/orders"},
      {"http.response.status_code", int64_t{200}},
      {"server.address", "shop.example.com"},
      {"server.port", int64_t{8080}},  // Host has no port: the local socket's
      {"client.address", "10.0.0.2"},
      {"client.port", int64_t{54321}},
      {"network.peer.address", "10.0.0.2"},
      {"network.peer.port", int64_t{54321}},
      {"network.protocol.version", "1.1"},
      {"http.response.body.size", int64_t{2}},
  };
  EXPECT_EQ(ToMap(span.attributes), expected);
  const ProtocolStats& s = c.stats();
  EXPECT_EQ(s.messages, 2u);
  EXPECT_EQ(s.records, 1u);
  EXPECT_EQ(s.parse_errors, 0u);
}

TEST(Http1DecoderTest, ClientSpan) {
  Connection c(Role::kClient);
  c.Send(kOut,
         "POST /api/v2/items HTTP/1.1\r\n"
         "Host: [2001:db8::1]:8443\r\n"
         "Content-Length: 5\r\n"
         "\r\n"
         "hello",
         EventTime{500, 520, 7});
  c.Send(kIn, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", EventTime{400, 900, 7});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  EXPECT_EQ(span.kind, SpanKind::kClient);
  EXPECT_EQ(span.name, "POST /api/v2/items");
  // Egress request: the write's entry; the blocking read that received the
  // response entered before the request was even written.
  EXPECT_EQ(span.start_mono_ns, 500u);
  EXPECT_EQ(span.end_mono_ns, 900u);
  // 4xx is an error on the client side.
  EXPECT_EQ(span.status, StatusCode::kError);
  const AttributeMap expected = {
      {"http.request.method", "POST"},
      {"url.path", "/api/v2/items"},
      {"http.route", "/api/v2/items"},
      {"http.response.status_code", int64_t{404}},
      {"server.address", "2001:db8::1"},
      {"server.port", int64_t{8443}},
      {"network.peer.address", "10.0.0.2"},
      {"network.peer.port", int64_t{80}},
      {"network.protocol.version", "1.1"},
      {"http.request.body.size", int64_t{5}},
      {"http.response.body.size", int64_t{9}},
      {"error.type", "404"},
  };
  EXPECT_EQ(ToMap(span.attributes), expected);
}

TEST(Http1DecoderTest, ServerAddressFallsBackToTheSocket) {
  Connection server(Role::kServer);
  server.Send(kIn, "GET / HTTP/1.0\r\n\r\n");
  server.Send(kOut, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(server.spans().size(), 1u);
  EXPECT_EQ(Str(server.spans()[0], "server.address"), "10.0.0.1");  // local end
  EXPECT_EQ(Int(server.spans()[0], "server.port"), 8080);
  EXPECT_EQ(Str(server.spans()[0], "network.protocol.version"), "1.0");
  EXPECT_EQ(Int(server.spans()[0], "http.response.body.size"), 0);  // framed, empty

  Connection client(Role::kClient);
  client.Send(kOut, "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n");
  client.Send(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(client.spans().size(), 1u);
  EXPECT_EQ(Str(client.spans()[0], "server.address"), "example.org");
  EXPECT_EQ(Int(client.spans()[0], "server.port"), 80);  // the remote end's port

  Connection bare(Role::kClient);
  bare.Send(kOut, "GET / HTTP/1.0\r\n\r\n");
  bare.Send(kIn, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(bare.spans().size(), 1u);
  EXPECT_EQ(Str(bare.spans()[0], "server.address"), "10.0.0.2");  // remote end
}

TEST(Http1DecoderTest, StatusMapping) {
  struct Case {
    Role role;
    int status;
    StatusCode expected;
  };
  for (const Case& t : {Case{Role::kServer, 200, StatusCode::kUnset},
                        Case{Role::kServer, 404, StatusCode::kUnset},
                        Case{Role::kServer, 500, StatusCode::kError},
                        Case{Role::kServer, 503, StatusCode::kError},
                        Case{Role::kClient, 302, StatusCode::kUnset},
                        Case{Role::kClient, 400, StatusCode::kError},
                        Case{Role::kClient, 502, StatusCode::kError}}) {
    Connection c(t.role);
    const Direction requests = t.role == Role::kServer ? kIn : kOut;
    c.Send(requests, "DELETE /things/5 HTTP/1.1\r\n\r\n");
    c.Send(Opposite(requests),
           "HTTP/1.1 " + std::to_string(t.status) + " X\r\nContent-Length: 0\r\n\r\n");
    ASSERT_EQ(c.spans().size(), 1u);
    EXPECT_EQ(c.spans()[0].status, t.expected) << t.status;
    if (t.expected == StatusCode::kError) {
      EXPECT_EQ(Str(c.spans()[0], "error.type"), std::to_string(t.status));
    } else {
      EXPECT_EQ(c.spans()[0].attributes.Find("error.type"), nullptr);
    }
  }
}

TEST(Http1DecoderTest, NonStandardMethodAndQueryCapture) {
  DecoderOptions options;
  options.capture_url_query = true;
  Connection c(Role::kServer, options);
  c.Send(kIn, "PROPFIND /dav/files/8f14e45fceea167a?depth=1 HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 207 Multi-Status\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  // Semantic conventions: unknown methods are "_OTHER", named as "HTTP".
  EXPECT_EQ(span.name, "HTTP /dav/files/{id}");
  EXPECT_EQ(Str(span, "http.request.method"), "_OTHER");
  EXPECT_EQ(Str(span, "http.request.method_original"), "PROPFIND");
  EXPECT_EQ(Str(span, "url.query"), "depth=1");

  // Off by default: queries may carry secrets.
  Connection d(Role::kServer);
  d.Send(kIn, "GET /search?token=abc HTTP/1.1\r\n\r\n");
  d.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(d.spans().size(), 1u);
  EXPECT_EQ(d.spans()[0].attributes.Find("url.query"), nullptr);
  EXPECT_EQ(Str(d.spans()[0], "url.path"), "/search");
}

TEST(Http1DecoderTest, AbsoluteFormTargetThroughAProxy) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET http://upstream.local:9000/v1/jobs/4711?x=1 HTTP/1.1\r\nHost: upstream.local:9000\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /v1/jobs/{id}");
  EXPECT_EQ(Str(c.spans()[0], "url.path"), "/v1/jobs/4711");
  EXPECT_EQ(Str(c.spans()[0], "server.address"), "upstream.local");
  EXPECT_EQ(Int(c.spans()[0], "server.port"), 9000);
}

// --- Fragmentation -----------------------------------------------------------

// A request with a body and a chunked response with an extension and a
// trailer: every framing state gets split somewhere.
constexpr std::string_view kPostRequest =
    "POST /orders/98765/items HTTP/1.1\r\n"
    "Host: shop:8080\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 11\r\n"
    "\r\n"
    "{\"qty\": 3}\n";
constexpr std::string_view kChunkedResponse =
    "HTTP/1.1 201 Created\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "7;ext=1\r\n"
    "created\r\n"
    "0\r\n"
    "Server-Timing: db;dur=53\r\n"
    "\r\n";
constexpr EventTime kRequestTime{1000, 1010, 5};
constexpr EventTime kResponseTime{2000, 2020, 5};

SpanRecord ReferenceSpan() {
  Connection c(Role::kServer);
  c.Send(kIn, kPostRequest, kRequestTime);
  c.Send(kOut, kChunkedResponse, kResponseTime);
  EXPECT_EQ(c.spans().size(), 1u);
  return c.spans().at(0);
}

// Sends `message` split at `cuts` (increasing offsets), each piece with the
// same event time so the span must come out identical.
void SendPieces(Connection& c, Direction dir, std::string_view message,
                const std::vector<size_t>& cuts, EventTime time) {
  size_t from = 0;
  for (size_t cut : cuts) {
    c.Send(dir, message.substr(from, cut - from), time);
    from = cut;
  }
  c.Send(dir, message.substr(from), time);
}

void ExpectSameExchange(const std::vector<size_t>& request_cuts,
                        const std::vector<size_t>& response_cuts, const SpanRecord& reference) {
  Connection c(Role::kServer);
  SendPieces(c, kIn, kPostRequest, request_cuts, kRequestTime);
  SendPieces(c, kOut, kChunkedResponse, response_cuts, kResponseTime);
  // Appended piecewise: GCC 12 warns falsely (-Wrestrict, GCC bug 105329)
  // on `" " + std::to_string(n)` at -O3.
  std::string context = "request cuts:";
  for (size_t cut : request_cuts) context.append(" ").append(std::to_string(cut));
  context.append(" response cuts:");
  for (size_t cut : response_cuts) context.append(" ").append(std::to_string(cut));
  ASSERT_EQ(c.spans().size(), 1u) << context;
  ExpectSameSpan(c.spans()[0], reference, context);
  EXPECT_EQ(c.stats().parse_errors, 0u) << context;
  EXPECT_EQ(c.stats().messages, 2u) << context;
}

TEST(Http1DecoderTest, ReferenceExchange) {
  const SpanRecord span = ReferenceSpan();
  EXPECT_EQ(span.name, "POST /orders/{id}/items");
  EXPECT_EQ(span.start_mono_ns, 1010u);
  EXPECT_EQ(span.end_mono_ns, 2020u);
  EXPECT_EQ(Int(span, "http.request.body.size"), 11);
  EXPECT_EQ(Int(span, "http.response.body.size"), 7);
  EXPECT_EQ(Int(span, "http.response.status_code"), 201);
  EXPECT_EQ(Int(span, "server.port"), 8080);
}

TEST(Http1DecoderTest, FragmentedIntoTwoPiecesAtEveryBoundary) {
  const SpanRecord reference = ReferenceSpan();
  for (size_t cut = 1; cut < kPostRequest.size(); ++cut) ExpectSameExchange({cut}, {}, reference);
  for (size_t cut = 1; cut < kChunkedResponse.size(); ++cut) {
    ExpectSameExchange({}, {cut}, reference);
  }
}

TEST(Http1DecoderTest, FragmentedIntoThreePiecesAtEveryBoundary) {
  const SpanRecord reference = ReferenceSpan();
  for (size_t a = 1; a < kPostRequest.size(); ++a) {
    for (size_t b = a + 1; b < kPostRequest.size(); ++b) ExpectSameExchange({a, b}, {}, reference);
  }
  for (size_t a = 1; a < kChunkedResponse.size(); ++a) {
    for (size_t b = a + 1; b < kChunkedResponse.size(); ++b) {
      ExpectSameExchange({}, {a, b}, reference);
    }
  }
}

TEST(Http1DecoderTest, OneByteAtATime) {
  const SpanRecord reference = ReferenceSpan();
  std::vector<size_t> request_cuts, response_cuts;
  for (size_t i = 1; i < kPostRequest.size(); ++i) request_cuts.push_back(i);
  for (size_t i = 1; i < kChunkedResponse.size(); ++i) response_cuts.push_back(i);
  ExpectSameExchange(request_cuts, response_cuts, reference);
}

TEST(Http1DecoderTest, TimesComeFromTheEventsCarryingFirstAndLastBytes) {
  for (Role role : {Role::kServer, Role::kClient}) {
    Connection c(role);
    const Direction requests = role == Role::kServer ? kIn : kOut;
    const Direction responses = Opposite(requests);
    c.Send(requests, kPostRequest.substr(0, 10), EventTime{100, 110, 1});
    c.Send(requests, kPostRequest.substr(10), EventTime{120, 130, 2});
    c.Send(responses, kChunkedResponse.substr(0, 30), EventTime{200, 210, 3});
    c.Send(responses, kChunkedResponse.substr(30), EventTime{220, 230, 4});
    ASSERT_EQ(c.spans().size(), 1u);
    const SpanRecord& span = c.spans()[0];
    // Ingress: the exit of the read that carried the first byte; egress: the
    // entry of the write.
    EXPECT_EQ(span.start_mono_ns, role == Role::kServer ? 110u : 100u);
    EXPECT_EQ(span.end_mono_ns, 230u);
    EXPECT_EQ(span.tid, 1u);
  }
}

// --- Several exchanges on one connection -----------------------------------

TEST(Http1DecoderTest, KeepAliveWithSeveralExchanges) {
  Connection c(Role::kServer);
  for (int i = 0; i < 5; ++i) {
    const uint64_t t = 1000 * (i + 1);
    c.Send(kIn, "GET /item/" + std::to_string(i) + " HTTP/1.1\r\nHost: h\r\n\r\n",
           EventTime{t, t + 10, 9});
    c.Send(kOut,
           "HTTP/1.1 " + std::to_string(200 + i) + " OK\r\nContent-Length: 3\r\n\r\nabc",
           EventTime{t + 100, t + 110, 9});
  }
  ASSERT_EQ(c.spans().size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const SpanRecord& span = c.spans()[i];
    const uint64_t t = 1000 * (i + 1);
    EXPECT_EQ(Str(span, "url.path"), "/item/" + std::to_string(i));
    EXPECT_EQ(span.name, "GET /item/{id}");
    EXPECT_EQ(Int(span, "http.response.status_code"), 200 + i);
    EXPECT_EQ(span.start_mono_ns, t + 10);
    EXPECT_EQ(span.end_mono_ns, t + 110);
  }
  EXPECT_EQ(c.stats().messages, 10u);
  EXPECT_EQ(c.stats().records, 5u);
}

TEST(Http1DecoderTest, PipelinedRequestsPairInOrder) {
  Connection c(Role::kServer);
  // Three requests in one write (RFC 9112 section 9.3.2), then responses.
  c.Send(kIn,
         "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
         "HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n"
         "GET /c HTTP/1.1\r\nHost: h\r\n\r\n",
         EventTime{10, 20, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA", EventTime{30, 40, 1});
  // The response to HEAD announces a length but has no body: the third
  // response follows at once (RFC 9112 section 6.3 rule 1).
  c.Send(kOut,
         "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
         "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nNF",
         EventTime{50, 60, 1});
  ASSERT_EQ(c.spans().size(), 3u);
  EXPECT_EQ(c.spans()[0].name, "GET /a");
  EXPECT_EQ(c.spans()[1].name, "HEAD /b");
  EXPECT_EQ(c.spans()[2].name, "GET /c");
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 200);
  EXPECT_EQ(c.spans()[1].attributes.Find("http.response.body.size"), nullptr);
  EXPECT_EQ(Int(c.spans()[2], "http.response.status_code"), 404);
  EXPECT_EQ(c.spans()[0].end_mono_ns, 40u);
  EXPECT_EQ(c.spans()[2].end_mono_ns, 60u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, NoBodyResponsesDoNotSwallowTheNextOne) {
  Connection c(Role::kClient);
  const std::vector<std::pair<std::string_view, std::string_view>> exchanges = {
      {"HEAD /file HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"},
      {"DELETE /file HTTP/1.1\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"},
      {"GET /file HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n",
       "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 77\r\n\r\n"},
      {"GET /last HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast"},
  };
  for (const auto& [request, response] : exchanges) {
    c.Send(kOut, request);
    c.Send(kIn, response);
  }
  ASSERT_EQ(c.spans().size(), 4u);
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 200);
  EXPECT_EQ(Int(c.spans()[1], "http.response.status_code"), 204);
  EXPECT_EQ(Int(c.spans()[2], "http.response.status_code"), 304);
  EXPECT_EQ(Int(c.spans()[3], "http.response.body.size"), 4);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.spans()[i].attributes.Find("http.response.body.size"), nullptr);
  }
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, ChunkedRequestBodySize) {
  Connection c(Role::kServer);
  c.Send(kIn,
         "PUT /blob HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
         "a\r\n0123456789\r\n"
         "5;last\r\nabcde\r\n"
         "0\r\nX-Digest: 1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "http.request.body.size"), 15);
  EXPECT_EQ(Int(c.spans()[0], "http.response.body.size"), 0);
}

// --- Interim responses, upgrades, tunnels --------------------------------------

TEST(Http1DecoderTest, ExpectContinueSkipsTheInterimResponse) {
  Connection c(Role::kClient);
  c.Send(kOut,
         "POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n",
         EventTime{100, 101, 3});
  c.Send(kIn, "HTTP/1.1 100 Continue\r\n\r\n", EventTime{90, 150, 3});
  c.Send(kOut, "abcdef", EventTime{160, 161, 3});
  // Other interim responses are skipped the same way.
  c.Send(kIn, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", EventTime{170, 180, 3});
  c.Send(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", EventTime{170, 200, 3});
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  EXPECT_EQ(Int(span, "http.response.status_code"), 200);
  EXPECT_EQ(Int(span, "http.request.body.size"), 6);
  EXPECT_EQ(span.start_mono_ns, 100u);
  EXPECT_EQ(span.end_mono_ns, 200u);
  EXPECT_EQ(c.stats().messages, 4u);  // request, 100, 103, 200
  EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(Http1DecoderTest, EarlyFinalResponseBeforeTheRequestBody) {
  Connection c(Role::kServer);
  c.Send(kIn, "PUT /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n",
         EventTime{10, 20, 1});
  c.Send(kOut, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n", EventTime{30, 40, 1});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "PUT /big");
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 413);
  // The client sends the body anyway; it completes the request, which is not
  // paired a second time.
  c.Send(kIn, std::string(1000, 'b'), EventTime{50, 60, 1}, 1000000);
  c.Send(kIn, "GET /next HTTP/1.1\r\n\r\n", EventTime{70, 80, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{90, 100, 1});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[1].name, "GET /next");
  c.Close(true);
  EXPECT_EQ(c.stats().unanswered_requests, 0u);
  EXPECT_EQ(c.stats().unmatched_responses, 0u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, SwitchingProtocolsStopsDecoding) {
  Connection c(Role::kServer);
  c.Send(kIn,
         "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  c.Send(kOut,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
         "\x81\x02hi");
  c.Send(kIn, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");  // masked "Hello"
  c.Send(kIn, "GET /not-http-anymore HTTP/1.1\r\n\r\n");     // inside the WebSocket stream
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 101);
  EXPECT_EQ(c.spans()[0].name, "GET /chat");
  EXPECT_EQ(c.stats().parse_errors, 0u);
  EXPECT_EQ(c.stats().messages, 2u);
  EXPECT_TRUE(c.stream(kIn).empty());  // consumed, not buffered
  EXPECT_TRUE(c.stream(kOut).empty());
  c.Close(true);
  EXPECT_EQ(c.stats().unanswered_requests, 0u);
}

TEST(Http1DecoderTest, ConnectTunnelStopsDecoding) {
  Connection c(Role::kClient);
  c.Send(kOut, "CONNECT db.internal:5432 HTTP/1.1\r\n\r\n");
  c.Send(kIn, "HTTP/1.1 200 Connection Established\r\n\r\n");
  c.Send(kOut, "\x16\x03\x01\x00\x05hello");
  c.Send(kIn, "\x16\x03\x03\x00\x02hi");
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  EXPECT_EQ(span.name, "CONNECT");
  EXPECT_EQ(span.attributes.Find("http.route"), nullptr);
  EXPECT_EQ(span.attributes.Find("url.path"), nullptr);
  EXPECT_EQ(Str(span, "server.address"), "db.internal");
  EXPECT_EQ(Int(span, "server.port"), 5432);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

// --- Connection end --------------------------------------------------------

TEST(Http1DecoderTest, BodyDelimitedByCloseCompletesOnClose) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /legacy HTTP/1.0\r\n\r\n", EventTime{1, 2, 1});
  c.Send(kOut, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>", EventTime{3, 4, 1});
  c.Send(kOut, "</html>", EventTime{5, 6, 1});
  EXPECT_TRUE(c.spans().empty());
  c.Close(/*closed=*/true);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "http.response.body.size"), 13);
  EXPECT_EQ(Str(c.spans()[0], "network.protocol.version"), "1.0");
  EXPECT_EQ(c.spans()[0].end_mono_ns, 6u);
  EXPECT_EQ(c.stats().unanswered_requests, 0u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, BodyDelimitedByCloseIsAbandonedOnEviction) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /legacy HTTP/1.0\r\n\r\n");
  c.Send(kOut, "HTTP/1.0 200 OK\r\n\r\npartial");
  c.Close(/*closed=*/false);
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().unanswered_requests, 1u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, UnansweredRequestsAtClose) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  c.Close(true);
  EXPECT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.stats().unanswered_requests, 1u);
}

TEST(Http1DecoderTest, StreamCutMidMessageAtCloseIsAParseError) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /1 HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
  c.Close(true);
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().parse_errors, 1u);
  EXPECT_EQ(c.stats().unanswered_requests, 1u);
}

TEST(Http1DecoderTest, UnmatchedResponse) {
  Connection c(Role::kClient);
  c.Send(kIn, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().unmatched_responses, 1u);
  EXPECT_EQ(c.stats().messages, 1u);
}

TEST(Http1DecoderTest, ResponseOlderThanTheRequestDoesNotPair) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /late HTTP/1.1\r\n\r\n", EventTime{5000, 5100, 1});
  // A response written (and finished) before the request was even read
  // answers some lost request, not this one.
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{100, 200, 1});
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().unmatched_responses, 1u);
  c.Send(kOut, "HTTP/1.1 204 No Content\r\n\r\n", EventTime{5200, 5300, 1});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "http.response.status_code"), 204);
}

// --- Gaps -------------------------------------------------------------------

TEST(Http1DecoderTest, BodiesLargerThanTheCapturedPrefix) {
  constexpr size_t kPrefix = 64;
  Connection c(Role::kServer);
  // Content-Length: request and response bodies mostly not copied.
  const std::string upload =
      "POST /upload HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + std::string(200000, 'u');
  c.Send(kIn, std::string_view(upload).substr(0, kPrefix), EventTime{10, 20, 1}, upload.size());
  const std::string download =
      "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + std::string(300000, 'd');
  c.Send(kOut, std::string_view(download).substr(0, kPrefix), EventTime{30, 40, 1}, 100000);
  c.Send(kOut, "dddd", EventTime{50, 60, 1}, download.size() - 100000);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(Int(c.spans()[0], "http.request.body.size"), 200000);
  EXPECT_EQ(Int(c.spans()[0], "http.response.body.size"), 300000);
  EXPECT_EQ(c.spans()[0].end_mono_ns, 60u);
  // Chunked: each chunk in its own write, only its chunk-size line copied.
  c.Send(kIn, "GET /stream HTTP/1.1\r\n\r\n", EventTime{70, 80, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", EventTime{90, 100, 1});
  for (int i = 0; i < 3; ++i) {
    const std::string chunk = "8000\r\n" + std::string(0x8000, 'c') + "\r\n";
    c.Send(kOut, std::string_view(chunk).substr(0, 16), EventTime{110, 120, 1}, chunk.size());
  }
  c.Send(kOut, "0\r\n\r\n", EventTime{130, 140, 1});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Int(c.spans()[1], "http.response.body.size"), 3 * 0x8000);
  EXPECT_EQ(c.spans()[1].end_mono_ns, 140u);
  EXPECT_EQ(c.stats().parse_errors, 0u);
  EXPECT_EQ(c.stats().truncated, 0u);
  // Nothing of the bodies was buffered.
  EXPECT_LT(c.stream(kOut).buffered_bytes(), 1024u);
}

TEST(Http1DecoderTest, GapInsideHeadersStillMakesASpan) {
  Connection c(Role::kServer);
  const std::string request = "GET /profile HTTP/1.1\r\nHost: h\r\nCookie: " +
                              std::string(20000, 'c') + "\r\n\r\n";
  c.Send(kIn, std::string_view(request).substr(0, 50), EventTime{10, 20, 1}, request.size());
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", EventTime{30, 40, 1});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /profile");
  EXPECT_EQ(Str(c.spans()[0], "server.address"), "h");
  EXPECT_EQ(c.stats().truncated, 1u);
  // The next exchange resynchronises.
  c.Send(kIn, "GET /next HTTP/1.1\r\n\r\n", EventTime{50, 60, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{70, 80, 1});
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[1].name, "GET /next");
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, StreamResetMidMessage) {
  Connection c(Role::kServer);
  c.Send(kIn, "POST /a HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc");
  c.ResetStream(kIn, 0);  // the tracker dropped bytes under the decoder
  EXPECT_EQ(c.stats().truncated, 1u);
  c.Send(kIn, "GET /b HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /b");
}

// --- Junk and limits -----------------------------------------------------------

TEST(Http1DecoderTest, GarbageBeforeBetweenAndAfterValidMessages) {
  Connection c(Role::kServer);
  c.Send(kIn, "\x00\x01\x02\x03garbage before"sv);
  c.Send(kIn, "GET /first HTTP/1.1\r\n\r\n");
  c.Send(kOut, "\xde\xad\xbe\xef"sv);
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  c.Send(kIn, "SSH-2.0-OpenSSH_9.3\r\n");
  c.Send(kIn, "GET /second HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  c.Send(kOut, "<html>stray bytes</html>");
  c.Send(kIn, "\xff\xff\xff\xff"sv);
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[0].name, "GET /first");
  EXPECT_EQ(c.spans()[1].name, "GET /second");
  EXPECT_EQ(Int(c.spans()[1], "http.response.status_code"), 201);
  EXPECT_EQ(c.stats().parse_errors, 5u);
  EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(Http1DecoderTest, RandomBinaryJunkIsBoundedAndDoesNotStopDecoding) {
  std::mt19937 rng(42);
  DecoderOptions options;
  options.max_header_bytes = 8 * 1024;
  for (size_t size : {1u, 3u, 10u, 64u, 500u, 4096u, 20000u, 100000u}) {
    for (Role role : {Role::kServer, Role::kClient, Role::kUnknown}) {
      Connection c(role, options);
      const Direction requests = role == Role::kClient ? kOut : kIn;
      for (Direction dir : {requests, Opposite(requests)}) {
        size_t sent = 0;
        while (sent < size) {
          const size_t n = std::min<size_t>(size - sent, 1 + rng() % 5000);
          std::string junk(n, '\0');
          for (char& ch : junk) ch = static_cast<char>(rng());
          c.Send(dir, junk, {}, n + (rng() % 3 == 0 ? rng() % 1000 : 0));
          // Bounded: at most a header block's worth is held.
          ASSERT_LE(c.stream(dir).buffered_bytes(), options.max_header_bytes + 5000 + 512);
          sent += n;
        }
      }
      if (role == Role::kUnknown) continue;  // junk may have decided the wrong sides
      // A valid exchange after the junk still decodes.
      c.Send(requests, "GET /after-junk HTTP/1.1\r\n\r\n", EventTime{100, 110, 1});
      c.Send(Opposite(requests), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
             EventTime{120, 130, 1});
      ASSERT_FALSE(c.spans().empty()) << size;
      EXPECT_EQ(c.spans().back().name, "GET /after-junk") << size;
      c.Close(true);
    }
  }
}

TEST(Http1DecoderTest, RandomMixOfSplitsGapsAndJunkKeepsInvariants) {
  // Valid exchanges cut at random points, copied with random prefixes, with
  // junk events in between, in every role: nothing crashes (this runs under
  // the sanitizers), memory stays bounded, and the counters stay consistent.
  const std::vector<std::pair<std::string, std::string>> exchanges = {
      {std::string(kGetRequest), std::string(kJsonResponse)},
      {std::string(kPostRequest), std::string(kChunkedResponse)},
      {"HEAD /h HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"},
      {"GET /c HTTP/1.1\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"},
  };
  DecoderOptions options;
  options.max_header_bytes = 2048;
  options.max_pending_requests = 8;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    std::mt19937 rng(seed);
    const Role role = static_cast<Role>(seed % 3);
    Connection c(role, options);
    const Direction requests = role == Role::kClient ? kOut : kIn;
    uint64_t now = 1;
    size_t exchanges_sent = 0;
    auto send_cut = [&](Direction dir, const std::string& message) {
      size_t at = 0;
      while (at < message.size()) {
        const size_t n = std::min<size_t>(message.size() - at, 1 + rng() % 64);
        const size_t copied = rng() % 8 == 0 ? rng() % (n + 1) : n;
        c.Send(dir, std::string_view(message).substr(at, copied), EventTime{now, now + 1, 1}, n);
        now += 2;
        at += n;
      }
    };
    for (int step = 0; step < 40; ++step) {
      if (rng() % 6 == 0) {
        std::string junk(1 + rng() % 300, '\0');
        for (char& ch : junk) ch = static_cast<char>(rng());
        c.Send(rng() % 2 ? kIn : kOut, junk, EventTime{now, now + 1, 1});
        now += 2;
      }
      const auto& [request, response] = exchanges[rng() % exchanges.size()];
      send_cut(requests, request);
      send_cut(Opposite(requests), response);
      ++exchanges_sent;
      for (Direction dir : {kIn, kOut}) {
        ASSERT_LE(c.stream(dir).buffered_bytes(), options.max_header_bytes + 4096) << seed;
      }
    }
    c.Close(rng() % 2 == 0);
    const ProtocolStats& s = c.stats();
    EXPECT_EQ(s.records, c.spans().size()) << seed;
    EXPECT_LE(s.records, exchanges_sent) << seed;
    EXPECT_LE(s.records + s.unmatched_responses, s.messages) << seed;
    for (const SpanRecord& span : c.spans()) {
      EXPECT_LE(span.start_mono_ns, span.end_mono_ns) << seed;
      EXPECT_FALSE(span.name.empty()) << seed;
    }
  }
}

TEST(Http1DecoderTest, OversizedHeadersAreAParseError) {
  DecoderOptions options;
  options.max_header_bytes = 4096;
  Connection c(Role::kServer, options);
  std::string big = "GET /huge HTTP/1.1\r\n";
  while (big.size() < 10000) big += "X-Padding: " + std::string(80, 'p') + "\r\n";
  big += "\r\n";
  c.Send(kIn, big);
  EXPECT_EQ(c.stats().parse_errors, 1u);
  EXPECT_LT(c.stream(kIn).buffered_bytes(), 512u);
  // The server's 431 has no request to answer.
  c.Send(kOut, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(c.stats().unmatched_responses, 1u);
  c.Send(kIn, "GET /small HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /small");
}

TEST(Http1DecoderTest, MorePendingRequestsThanTheLimit) {
  DecoderOptions options;
  options.max_pending_requests = 2;
  Connection c(Role::kServer, options);
  c.Send(kIn,
         "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
         "GET /3 HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.stats().dropped_requests, 2u);
  for (int i = 0; i < 4; ++i) c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(Str(c.spans()[0], "url.path"), "/1");
  EXPECT_EQ(Str(c.spans()[1], "url.path"), "/2");
  EXPECT_EQ(c.stats().unmatched_responses, 2u);
}

TEST(Http1DecoderTest, ManyPendingRequestsKeepTheirOrder) {
  Connection c(Role::kServer);
  std::string burst;
  for (int i = 0; i < 100; ++i) burst += "GET /p/" + std::to_string(i) + " HTTP/1.1\r\n\r\n";
  c.Send(kIn, burst);
  for (int i = 0; i < 100; ++i) {
    c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  }
  ASSERT_EQ(c.spans().size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Str(c.spans()[i], "url.path"), "/p/" + std::to_string(i));
}

// --- Unknown role ---------------------------------------------------------------

TEST(Http1DecoderTest, RoleUnknownIsInferredFromTheTraffic) {
  {
    Connection c(Role::kUnknown);
    c.Send(kIn, "GET /x HTTP/1.1\r\n\r\n", EventTime{10, 20, 1});
    c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{30, 40, 1});
    ASSERT_EQ(c.spans().size(), 1u);
    EXPECT_EQ(c.spans()[0].kind, SpanKind::kServer);  // requests came in
    EXPECT_EQ(c.spans()[0].start_mono_ns, 20u);
  }
  {
    Connection c(Role::kUnknown);
    // The response side is seen first here: "H" alone cannot decide.
    c.Send(kOut, "H", EventTime{10, 20, 1});
    c.Send(kOut, "EAD /x HTTP/1.1\r\n\r\n", EventTime{10, 20, 1});
    c.Send(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", EventTime{30, 40, 1});
    ASSERT_EQ(c.spans().size(), 1u);
    EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);  // requests went out
    EXPECT_EQ(c.spans()[0].start_mono_ns, 10u);
    EXPECT_EQ(c.stats().parse_errors, 0u);
  }
}

TEST(Http1DecoderTest, RoleLearnedBetweenCalls) {
  Connection c(Role::kUnknown);
  c.Send(kIn, "GET /x HTTP/1.1\r\nHost: h\r\n");  // header block not finished yet
  c.conn().role = Role::kServer;
  c.conn().role_source = RoleSource::kTraffic;
  c.Send(kIn, "\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kServer);
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

// --- Announcements and trace context -----------------------------------------------

constexpr std::string_view kTraceparent =
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

std::string Hex(const TraceId& id) { return ToHex(id); }
std::string Hex(const SpanId& id) { return ToHex(id); }

TEST(Http1DecoderTest, ServerRequestIsAnnouncedBeforeItsResponse) {
  Connection c(Role::kServer);
  c.Send(kIn,
         "GET /orders HTTP/1.1\r\nHost: h\r\n"
         "TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
         "TRACESTATE: congo=t61rcWkgMzE\r\n\r\n",
         EventTime{1000, 1100, 42});
  ASSERT_EQ(c.starts().size(), 1u);  // with the head, before any response
  EXPECT_TRUE(c.spans().empty());
  const ExchangeStart& start = c.starts()[0];
  EXPECT_EQ(start.key, (ExchangeKey{77, 1, 0}));
  EXPECT_EQ(start.kind, SpanKind::kServer);
  EXPECT_EQ(start.tgid, 1234u);
  EXPECT_EQ(start.tid, 42u);
  EXPECT_EQ(start.start_mono_ns, 1100u);  // received: the read's exit
  EXPECT_TRUE(start.tuple == c.conn().tuple);
  ASSERT_TRUE(start.context.has_value());
  EXPECT_EQ(Hex(start.context->trace_id), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(Hex(start.context->span_id), "b7ad6b7169203331");
  EXPECT_TRUE(start.context->sampled);
  EXPECT_EQ(start.context->tracestate, "congo=t61rcWkgMzE");

  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{1200, 1300, 43});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.order(), "SR");
  const SpanRecord& span = c.spans()[0];
  EXPECT_EQ(span.key, start.key);
  EXPECT_EQ(span.kind, SpanKind::kServer);
  EXPECT_EQ(span.tid, 42u);
  EXPECT_EQ(span.start_mono_ns, 1100u);
  EXPECT_TRUE(span.context == start.context);
}

TEST(Http1DecoderTest, ClientRequestIsAnnouncedWithB3) {
  Connection c(Role::kClient);
  c.Send(kOut,
         "POST /pay HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n"
         "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90\r\n\r\nhi",
         EventTime{500, 520, 7});
  ASSERT_EQ(c.starts().size(), 1u);
  const ExchangeStart& start = c.starts()[0];
  EXPECT_EQ(start.key, (ExchangeKey{77, 1, 0}));
  EXPECT_EQ(start.kind, SpanKind::kClient);
  EXPECT_EQ(start.start_mono_ns, 500u);  // sent: the write's entry
  EXPECT_EQ(start.tid, 7u);
  ASSERT_TRUE(start.context.has_value());
  EXPECT_EQ(Hex(start.context->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(Hex(start.context->span_id), "e457b5a2e4d86bd1");
  EXPECT_FALSE(start.context->sampled);
  EXPECT_EQ(start.context->tracestate, "");
  c.Send(kIn, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", EventTime{600, 900, 7});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].key, start.key);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  EXPECT_EQ(c.spans()[0].start_mono_ns, 500u);
  EXPECT_TRUE(c.spans()[0].context == start.context);
}

TEST(Http1DecoderTest, MultiHeaderB3NamesAnyCase) {
  Connection c(Role::kServer);
  c.Send(kIn,
         "GET / HTTP/1.1\r\n"
         "X-B3-TraceId: a3ce929d0e0e4736\r\n"
         "x-b3-SPANID: 00f067aa0ba902b7\r\n"
         "X-B3-ParentSpanId: 05e3ac9a4f6e3b90\r\n"
         "X-B3-Sampled: 0\r\n"
         "X-B3-Flags: 1\r\n\r\n",
         EventTime{10, 20, 1});
  ASSERT_EQ(c.starts().size(), 1u);
  const std::optional<TraceContext>& context = c.starts()[0].context;
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(Hex(context->trace_id), "0000000000000000a3ce929d0e0e4736");
  EXPECT_EQ(Hex(context->span_id), "00f067aa0ba902b7");
  EXPECT_TRUE(context->sampled);  // X-B3-Flags: 1 (debug) overrides Sampled: 0
  c.Send(kOut, "HTTP/1.1 204 No Content\r\n\r\n", EventTime{30, 40, 1});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_TRUE(c.spans()[0].context == context);
}

TEST(Http1DecoderTest, ContextPrecedenceAndBadValues) {
  Connection c(Role::kServer);
  // traceparent wins over b3.
  c.Send(kIn,
         "GET /1 HTTP/1.1\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1\r\n"
         "traceparent: " + std::string(kTraceparent) + "\r\n\r\n");
  // An invalid traceparent (uppercase hex) falls back to b3.
  c.Send(kIn,
         "GET /2 HTTP/1.1\r\ntraceparent: 00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01\r\n"
         "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\r\n");
  // A value over 512 bytes is not kept: the next header decides.
  c.Send(kIn, "GET /3 HTTP/1.1\r\ntraceparent: " + std::string(kTraceparent) + "-" +
                  std::string(520, 'a') + "\r\nb3: 80f198ee56343ba864fe8b2a57d3eff7-"
                  "e457b5a2e4d86bd1-0\r\n\r\n");
  // No context headers, or only a bare sampling decision: no context.
  c.Send(kIn, "GET /4 HTTP/1.1\r\nb3: 0\r\n\r\n");
  c.Send(kIn, "GET /5 HTTP/1.1\r\nX-Request-Id: 1\r\n\r\n");
  ASSERT_EQ(c.starts().size(), 5u);
  ASSERT_TRUE(c.starts()[0].context.has_value());
  EXPECT_EQ(Hex(c.starts()[0].context->trace_id), "0af7651916cd43dd8448eb211c80319c");
  ASSERT_TRUE(c.starts()[1].context.has_value());
  EXPECT_EQ(Hex(c.starts()[1].context->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_TRUE(c.starts()[1].context->sampled);
  ASSERT_TRUE(c.starts()[2].context.has_value());
  EXPECT_EQ(Hex(c.starts()[2].context->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_FALSE(c.starts()[2].context->sampled);
  EXPECT_FALSE(c.starts()[3].context.has_value());
  EXPECT_FALSE(c.starts()[4].context.has_value());
  for (int i = 0; i < 5; ++i) c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(c.spans()[i].key.seq, i + 1);
    EXPECT_TRUE(c.spans()[i].context == c.starts()[i].context) << i;
  }
}

TEST(Http1DecoderTest, KeepAliveAndPipelinedRequestsGetIncreasingKeys) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /a HTTP/1.1\r\n\r\n", EventTime{10, 20, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{30, 40, 1});
  // Three pipelined requests in one write: three announcements at once.
  c.Send(kIn,
         "GET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"
         "POST /d HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
         EventTime{50, 60, 2});
  EXPECT_EQ(c.order(), "SRSSS");
  c.Send(kOut,
         "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
         "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
         EventTime{70, 80, 1});
  EXPECT_EQ(c.order(), "SRSSSRRR");
  ASSERT_EQ(c.spans().size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(c.starts()[i].key, (ExchangeKey{77, i + 1, 0})) << i;
    EXPECT_EQ(c.spans()[i].key, c.starts()[i].key) << i;
  }
  EXPECT_EQ(c.spans()[3].name, "POST /d");
}

TEST(Http1DecoderTest, RequestWithABodyIsAnnouncedAtItsHead) {
  Connection c(Role::kServer);
  c.Send(kIn, "PUT /upload HTTP/1.1\r\nContent-Length: 10\r\nb3: " +
                  std::string("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1") + "\r\n\r\nab",
         EventTime{10, 20, 3});
  ASSERT_EQ(c.starts().size(), 1u);  // the body is still arriving
  EXPECT_EQ(c.starts()[0].start_mono_ns, 20u);
  EXPECT_EQ(c.starts()[0].tid, 3u);
  ASSERT_TRUE(c.starts()[0].context.has_value());
  c.Send(kIn, "cdefghij", EventTime{30, 40, 4});
  EXPECT_EQ(c.starts().size(), 1u);  // not announced again when it completes
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{50, 60, 3});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].key, c.starts()[0].key);
  EXPECT_EQ(c.spans()[0].tid, 3u);
  EXPECT_EQ(Int(c.spans()[0], "http.request.body.size"), 10);
}

TEST(Http1DecoderTest, EarlyResponseCarriesThePartialRequestsKey) {
  Connection c(Role::kServer);
  c.Send(kIn, "PUT /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n", EventTime{10, 20, 1});
  c.Send(kOut, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n", EventTime{30, 40, 1});
  EXPECT_EQ(c.order(), "SR");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].key, (ExchangeKey{77, 1, 0}));
  c.Send(kIn, std::string(1000, 'b'), EventTime{50, 60, 1}, 1000000);
  c.Send(kIn, "GET /next HTTP/1.1\r\n\r\n", EventTime{70, 80, 1});
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{90, 100, 1});
  EXPECT_EQ(c.order(), "SRSR");
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(c.spans()[1].key, (ExchangeKey{77, 2, 0}));
}

TEST(Http1DecoderTest, DroppedRequestsAreNotAnnounced) {
  DecoderOptions options;
  options.max_pending_requests = 2;
  Connection c(Role::kServer, options);
  c.Send(kIn,
         "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"
         "GET /3 HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.stats().dropped_requests, 2u);
  ASSERT_EQ(c.starts().size(), 2u);
  // A partial request while the queue is full is not announced either; it
  // is when it completes and there is room again.
  c.Send(kIn, "POST /5 HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
  EXPECT_EQ(c.starts().size(), 2u);
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  c.Send(kIn, "cd");
  ASSERT_EQ(c.starts().size(), 3u);
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 3u);
  EXPECT_EQ(Str(c.spans()[2], "url.path"), "/5");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(c.spans()[i].key.seq, i + 1);
}

TEST(Http1DecoderTest, UnansweredRequestsAreAnnouncedWithoutSpans) {
  Connection c(Role::kServer);
  c.Send(kIn, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  c.Close(true);
  EXPECT_EQ(c.starts().size(), 2u);
  EXPECT_TRUE(c.spans().empty());
  EXPECT_EQ(c.stats().unanswered_requests, 2u);
}

TEST(Http1DecoderTest, AnnouncedKindFollowsTheTrafficWhenTheRoleIsUnknown) {
  {
    Connection c(Role::kUnknown);
    c.Send(kOut, "GET /x HTTP/1.1\r\n\r\n", EventTime{10, 20, 5});
    ASSERT_EQ(c.starts().size(), 1u);
    EXPECT_EQ(c.starts()[0].kind, SpanKind::kClient);
    EXPECT_EQ(c.starts()[0].start_mono_ns, 10u);
    // The role learned in between does not change what was announced.
    c.conn().role = Role::kClient;
    c.Send(kIn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{30, 40, 5});
    ASSERT_EQ(c.spans().size(), 1u);
    EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
    EXPECT_EQ(c.spans()[0].key, c.starts()[0].key);
  }
  {
    Connection c(Role::kUnknown);
    c.Send(kIn, "GET /x HTTP/1.1\r\n\r\n", EventTime{10, 20, 5});
    ASSERT_EQ(c.starts().size(), 1u);
    EXPECT_EQ(c.starts()[0].kind, SpanKind::kServer);
    EXPECT_EQ(c.starts()[0].start_mono_ns, 20u);
  }
}

TEST(Http1DecoderTest, KeysAreUniquePerConnectionUnderRandomTraffic) {
  // The sink checks each key on the way; here the whole record also holds:
  // every span's key was announced before it (the 'S' precedes the 'R').
  DecoderOptions options;
  options.max_pending_requests = 3;
  for (uint32_t seed = 0; seed < 100; ++seed) {
    std::mt19937 rng(seed);
    Connection c(seed % 2 == 0 ? Role::kServer : Role::kUnknown, options);
    uint64_t now = 1;
    for (int step = 0; step < 30; ++step) {
      const int requests = 1 + static_cast<int>(rng() % 5);
      std::string burst;
      for (int i = 0; i < requests; ++i) {
        burst += rng() % 2 ? "GET /g HTTP/1.1\r\n\r\n"
                           : "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
      }
      for (size_t at = 0; at < burst.size();) {
        const size_t n = std::min<size_t>(burst.size() - at, 1 + rng() % 40);
        c.Send(kIn, std::string_view(burst).substr(at, n), EventTime{now, now + 1, 1});
        now += 2;
        at += n;
      }
      const int responses = static_cast<int>(rng() % 6);
      for (int i = 0; i < responses; ++i) {
        c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", EventTime{now, now + 1, 1});
        now += 2;
      }
    }
    c.Close(true);
    EXPECT_FALSE(c.spans().empty()) << seed;
    for (const SpanRecord& span : c.spans()) EXPECT_NE(span.key.seq, 0u) << seed;
    for (size_t i = 0; i < c.starts().size(); ++i) {
      EXPECT_EQ(c.starts()[i].key.seq, i + 1) << seed;
    }
  }
}

// --- Fixtures captured from real peers (tests/fixtures/http1/README.md) -------

struct FixtureEvent {
  bool from_client = false;
  std::string bytes;
  uint64_t entry_ns = 0;
  uint64_t exit_ns = 0;
};

std::vector<FixtureEvent> LoadFixture(const std::string& name) {
  const std::string path = std::string(LOUPE_SOURCE_DIR) + "/tests/fixtures/http1/" + name;
  std::ifstream in(path, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<FixtureEvent> events;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) break;
    char tag = 0;
    unsigned long long length = 0, entry = 0, exit = 0;
    if (sscanf(data.substr(pos, eol - pos).c_str(), "%c %llu %llu %llu", &tag, &length, &entry,
               &exit) != 4 ||
        eol + 1 + length > data.size()) {
      ADD_FAILURE() << "malformed fixture " << path << " at byte " << pos;
      break;
    }
    events.push_back(FixtureEvent{tag == 'C', data.substr(eol + 1, length), entry, exit});
    pos = eol + 1 + length + 1;
  }
  EXPECT_FALSE(events.empty()) << path;
  return events;
}

struct ReplayOptions {
  Role perspective = Role::kServer;  // whose syscalls the events are
  Role announced_role = Role::kServer;  // what ConnInfo says
  size_t piece = 0;   // > 0: split each event into events of this many bytes
  size_t prefix = 0;  // > 0: copy only this many bytes of each event
};

Connection Replay(const std::vector<FixtureEvent>& events, const ReplayOptions& options,
                  bool close = true) {
  Connection c(options.announced_role);
  for (const FixtureEvent& e : events) {
    // The server reads what the client sent.
    const bool ingress = e.from_client == (options.perspective == Role::kServer);
    const Direction dir = ingress ? kIn : kOut;
    const EventTime time{e.entry_ns, e.exit_ns, 100};
    const size_t piece = options.piece == 0 ? e.bytes.size() : options.piece;
    for (size_t at = 0; at < e.bytes.size(); at += piece) {
      const std::string_view part = std::string_view(e.bytes).substr(at, piece);
      const size_t copied = options.prefix == 0 ? part.size() : std::min(part.size(), options.prefix);
      c.Send(dir, part.substr(0, copied), time, part.size());
    }
  }
  if (close) c.Close(true);
  return c;
}

struct ExpectedExchange {
  std::string_view name;
  int status;
  int64_t request_body;   // -1: absent
  int64_t response_body;  // -1: absent
};

void ExpectExchanges(const Connection& c, const std::vector<ExpectedExchange>& expected) {
  ASSERT_EQ(c.spans().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const SpanRecord& span = c.spans()[i];
    EXPECT_EQ(span.name, expected[i].name) << i;
    EXPECT_EQ(Int(span, "http.response.status_code"), expected[i].status) << i;
    EXPECT_EQ(Int(span, "http.request.body.size"), expected[i].request_body) << i;
    EXPECT_EQ(Int(span, "http.response.body.size"), expected[i].response_body) << i;
    EXPECT_LE(span.start_mono_ns, span.end_mono_ns) << i;
  }
}

const std::vector<ExpectedExchange> kKeepAliveExchanges = {
    {"GET /index.html", 200, -1, 0x2d},        // chunked gzip
    {"GET /static/app.js", 200, -1, 0x78},     // chunked gzip
    {"HEAD /static/data.json", 200, -1, -1},   // Content-Length: 1491, no body
    {"GET /api/users/{id}", 200, -1, 15},
    {"GET /missing/{id}", 404, -1, 153},
    {"GET /static/data.json", 304, -1, -1},
    {"POST /upload", 201, 4053, 8},            // 100 Continue skipped, early 201
    {"GET /fail", 503, -1, 197},
};

TEST(Http1DecoderTest, FixtureNginxKeepAliveSeenFromTheServer) {
  const std::vector<FixtureEvent> events = LoadFixture("nginx_keepalive.events");
  const Connection c = Replay(events, {});
  ExpectExchanges(c, kKeepAliveExchanges);
  const SpanRecord& first = c.spans()[0];
  EXPECT_EQ(first.kind, SpanKind::kServer);
  EXPECT_EQ(Str(first, "server.address"), "127.0.0.1");
  EXPECT_EQ(Int(first, "server.port"), 18081);  // from Host
  // Server span: the request read's exit, the response write's exit.
  EXPECT_EQ(first.start_mono_ns, events[0].exit_ns);
  EXPECT_EQ(first.end_mono_ns, events[1].exit_ns);
  EXPECT_EQ(c.spans()[4].status, StatusCode::kUnset);  // 404 is not a server error
  EXPECT_EQ(c.spans()[7].status, StatusCode::kError);
  const ProtocolStats& s = c.stats();
  EXPECT_EQ(s.messages, 17u);  // 8 requests, 8 final responses, 100 Continue
  EXPECT_EQ(s.records, 8u);
  EXPECT_EQ(s.parse_errors, 0u);
  EXPECT_EQ(s.truncated, 0u);
  EXPECT_EQ(s.unmatched_responses, 0u);
  EXPECT_EQ(s.unanswered_requests, 0u);
}

TEST(Http1DecoderTest, FixtureNginxKeepAliveSeenFromTheClient) {
  ReplayOptions options;
  options.perspective = Role::kClient;
  options.announced_role = Role::kClient;
  const std::vector<FixtureEvent> events = LoadFixture("nginx_keepalive.events");
  const Connection c = Replay(events, options);
  ExpectExchanges(c, kKeepAliveExchanges);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  EXPECT_EQ(c.spans()[0].start_mono_ns, events[0].entry_ns);  // the write's entry
  EXPECT_EQ(c.spans()[4].status, StatusCode::kError);  // 404 is a client error
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, FixtureWithUnknownRole) {
  ReplayOptions options;
  options.announced_role = Role::kUnknown;
  const Connection c = Replay(LoadFixture("nginx_keepalive.events"), options);
  ExpectExchanges(c, kKeepAliveExchanges);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kServer);
}

TEST(Http1DecoderTest, FixtureOneBytePerSyscallGivesTheSameSpans) {
  const std::vector<FixtureEvent> events = LoadFixture("nginx_keepalive.events");
  const Connection whole = Replay(events, {});
  ReplayOptions options;
  options.piece = 1;
  const Connection bytewise = Replay(events, options);
  ASSERT_EQ(bytewise.spans().size(), whole.spans().size());
  for (size_t i = 0; i < whole.spans().size(); ++i) {
    ExpectSameSpan(bytewise.spans()[i], whole.spans()[i], "exchange " + std::to_string(i));
  }
  EXPECT_EQ(bytewise.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, FixtureWithAShortCapturePrefix) {
  // 200 bytes copied per syscall: some header blocks and chunk framing are
  // cut. Every exchange still yields a span, nothing is a parse error, and
  // the cut messages are counted as truncated.
  ReplayOptions options;
  options.prefix = 200;
  const Connection c = Replay(LoadFixture("nginx_keepalive.events"), options);
  ASSERT_EQ(c.spans().size(), kKeepAliveExchanges.size());
  for (size_t i = 0; i < c.spans().size(); ++i) {
    EXPECT_EQ(c.spans()[i].name, kKeepAliveExchanges[i].name) << i;
    EXPECT_EQ(Int(c.spans()[i], "http.response.status_code"), kKeepAliveExchanges[i].status);
  }
  EXPECT_EQ(c.stats().parse_errors, 0u);
  EXPECT_GT(c.stats().truncated, 0u);
  EXPECT_EQ(c.stats().unmatched_responses, 0u);
}

TEST(Http1DecoderTest, FixtureHttp10BodyEndsAtTheClose) {
  const std::vector<FixtureEvent> events = LoadFixture("nginx_http10_close.events");
  const Connection open = Replay(events, {}, /*close=*/false);
  EXPECT_TRUE(open.spans().empty());  // the body has no end before the close
  const Connection c = Replay(events, {});
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].name, "GET /static/app.js");
  EXPECT_EQ(Str(c.spans()[0], "network.protocol.version"), "1.0");
  const size_t head = events[1].bytes.find("\r\n\r\n") + 4;
  EXPECT_EQ(Int(c.spans()[0], "http.response.body.size"),
            static_cast<int64_t>(events[1].bytes.size() - head));
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, FixtureNginxPipelined) {
  const Connection c = Replay(LoadFixture("nginx_pipelined.events"), {});
  ExpectExchanges(c, {{"GET /api/a", 200, -1, 15},
                      {"HEAD /static/data.json", 200, -1, -1},
                      {"GET /index.html", 200, -1, 32}});
  EXPECT_EQ(Str(c.spans()[0], "server.address"), "localhost");
  EXPECT_EQ(Int(c.spans()[0], "server.port"), 8080);  // no port in Host: the socket's
  EXPECT_EQ(c.stats().parse_errors, 0u);
}

TEST(Http1DecoderTest, RegisteredForHttp1) {
  const ProtocolDescriptor* descriptor = FindProtocol(Protocol::kHttp1);
  ASSERT_NE(descriptor, nullptr);
  ConnInfo conn;
  DecoderOptions options;
  EXPECT_NE(descriptor->create(conn, options), nullptr);
}

}  // namespace
}  // namespace loupe::http1
