// Header capture and redaction on HTTP/2 and gRPC spans (--capture-headers,
// --redact-headers, --redact-query-params), header blocks from nghttp2's own
// HPACK encoder, and the h2c hand-over of an HTTP/1 request's captured
// headers to stream 1.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/http1/http1_decoder.h"
#include "decoders/model/http_capture.h"
#include "tests/decoders/http2/h2_test_util.h"

namespace loupe::http2::testing {
namespace {

DecoderOptions Options(std::vector<std::string> capture, std::vector<std::string> redact = {},
                       bool capture_query = false) {
  DecoderOptions options;
  options.capture_url_query = capture_query;
  HttpCapture::Settings settings;
  settings.capture_headers = std::move(capture);
  settings.redact_headers = std::move(redact);
  for (std::string_view p : DefaultRedactedQueryParams()) {
    settings.redact_query_params.emplace_back(p);
  }
  options.http_capture = std::make_shared<const HttpCapture>(settings);
  return options;
}

// A client and a server, each with its own HPACK encoder.
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

std::map<std::string, std::string> HeaderAttributes(const SpanRecord& span) {
  std::map<std::string, std::string> out;
  for (const Attribute& a : span.attributes.items()) {
    const auto* s = std::get_if<std::string>(&a.value);
    if (s != nullptr && (a.key.find(".header.") != std::string::npos ||
                         a.key.find(".metadata.") != std::string::npos)) {
      out[a.key] = *s;
    }
  }
  return out;
}

std::string Everything(const SpanRecord& span) {
  std::string out = span.name + "\n" + span.status_message + "\n";
  for (const Attribute& a : span.attributes.items()) {
    out += a.key + "=";
    if (const auto* s = std::get_if<std::string>(&a.value)) out += *s;
    out += "\n";
  }
  return out;
}

constexpr std::string_view kSecrets[] = {"Bearer-s3cr3t-AUTH", "sess-s3cr3t-COOKIE",
                                         "k3y-s3cr3t-APIKEY", "srv-s3cr3t-SETCOOKIE",
                                         "tok-s3cr3t-QUERY"};

void ExpectNoSecret(const SpanRecord& span) {
  const std::string all = Everything(span);
  for (std::string_view secret : kSecrets) {
    EXPECT_EQ(all.find(secret), std::string::npos) << secret << " leaked:\n" << all;
  }
}

// RFC 9113 section 8.2.3: cookies may be split into one field per pair.
const HeaderList kRequest = {{":method", "GET"},
                             {":scheme", "http"},
                             {":authority", "shop.example"},
                             {":path", "/api/items/42?page=2&TOKEN=tok-s3cr3t-QUERY&q=%41"},
                             {"user-agent", "curl/7.88.1"},
                             {"authorization", "Bearer Bearer-s3cr3t-AUTH"},
                             {"cookie", "a=sess-s3cr3t-COOKIE"},
                             {"cookie", "b=sess-s3cr3t-COOKIE"},
                             {"x-api-key", "k3y-s3cr3t-APIKEY"},
                             {"x-request-id", "first"},
                             {"accept", "*/*"},
                             {"x-request-id", "second"}};
const HeaderList kResponse = {{":status", "200"},
                              {"content-type", "text/plain"},
                              {"set-cookie", "sid=srv-s3cr3t-SETCOOKIE"},
                              {"x-served-by", "node-7"}};
const std::vector<std::string> kCaptured = {"user-agent", "Authorization", "cookie",
                                            "x-api-key",  "X-Request-Id",  "set-cookie",
                                            "x-served-by", "content-type", "x-absent"};
const std::map<std::string, std::string> kExpected = {
    {"http.request.header.user-agent", "curl/7.88.1"},
    {"http.request.header.authorization", "REDACTED"},
    {"http.request.header.cookie", "REDACTED"},
    {"http.request.header.x-api-key", "REDACTED"},
    {"http.request.header.x-request-id", "first, second"},
    {"http.response.header.set-cookie", "REDACTED"},
    {"http.response.header.x-served-by", "node-7"},
    {"http.response.header.content-type", "text/plain"}};

TEST(Http2RedactionTest, CapturedHeadersRedactedCredentialsAndQuery) {
  for (const Role role : {Role::kServer, Role::kClient}) {
    SCOPED_TRACE(role == Role::kServer ? "server" : "client");
    Connection c(role, Options(kCaptured, {"X-API-KEY"}, /*capture_query=*/true));
    Peers p;
    const Direction req = role == Role::kServer ? kIn : kOut;
    c.Send(req, std::string(kClientPreface) + Settings());
    c.Send(Opposite(req), Settings());
    // The second request finds every field in the dynamic table: indexed
    // fields are redacted just the same.
    c.Send(req,
           Cat({p.Request(1, kRequest, true, {"authorization"}), p.Request(3, kRequest, true)}));
    c.Send(Opposite(req), Cat({p.Response(1, kResponse, true), p.Response(3, kResponse, true)}));
    ASSERT_EQ(c.spans().size(), 2u);
    for (const SpanRecord& s : c.spans()) {
      EXPECT_EQ(HeaderAttributes(s), kExpected);
      EXPECT_EQ(Str(s, "url.query"), "page=2&TOKEN=REDACTED&q=%41");
      EXPECT_EQ(Str(s, "url.path"), "/api/items/42");
      EXPECT_EQ(s.name, "GET /api/items/{id}");
      ExpectNoSecret(s);
    }
  }
}

TEST(Http2RedactionTest, NothingAskedNothingKept) {
  Connection c(Role::kServer);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings() + p.Request(1, kRequest, true));
  c.Send(kOut, Settings() + p.Response(1, kResponse, true));
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_TRUE(HeaderAttributes(c.spans()[0]).empty());
  EXPECT_FALSE(Has(c.spans()[0], "url.query"));
  ExpectNoSecret(c.spans()[0]);
}

TEST(Http2RedactionTest, GrpcMetadataUsesTheRpcKeys) {
  Connection c(Role::kServer, Options({"x-tenant", "authorization", "grpc-accept-encoding"}));
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  c.Send(kIn, p.Request(1,
                        {{":method", "POST"},
                         {":scheme", "http"},
                         {":path", "/pkg.Store/Get"},
                         {":authority", "store:50051"},
                         {"content-type", "application/grpc"},
                         {"te", "trailers"},
                         {"x-tenant", "acme"},
                         {"authorization", "Bearer Bearer-s3cr3t-AUTH"}},
                        false) +
                  Data(1, GrpcMessage("key"), true));
  c.Send(kOut, Cat({p.Response(1,
                               {{":status", "200"},
                                {"content-type", "application/grpc"},
                                {"grpc-accept-encoding", "gzip"}},
                               false),
                    Data(1, GrpcMessage("v"), false),
                    // Trailers are not headers: x-tenant here is not recorded.
                    p.Response(1, {{"grpc-status", "0"}, {"x-tenant", "trailer"}}, true)}));
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& s = c.spans()[0];
  EXPECT_EQ(Str(s, "rpc.system"), "grpc");
  EXPECT_EQ(HeaderAttributes(s), (std::map<std::string, std::string>{
                                     {"rpc.grpc.request.metadata.x-tenant", "acme"},
                                     {"rpc.grpc.request.metadata.authorization", "REDACTED"},
                                     {"rpc.grpc.response.metadata.grpc-accept-encoding", "gzip"}}));
  ExpectNoSecret(s);
}

TEST(Http2RedactionTest, ABlockDecodedAgainIsCapturedOnce) {
  // The last field refers to a dynamic table entry that does not exist: the
  // fast decoder stops there and the block is decoded again from the start
  // (HeaderHandler::OnRestart), reporting its fields a second time.
  Connection c(Role::kServer, Options({"x-request-id", "authorization"}));
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings());
  const std::string block =
      Indexed(kMethodGet) + Indexed(kSchemeHttp) + Indexed(kPathRoot) +
      LiteralIncrementalNewName("x-request-id", "r1") +
      LiteralNeverIndexedNewName("authorization", "Bearer Bearer-s3cr3t-AUTH") + Indexed(70);
  c.Send(kIn, Headers(1, block, true));
  c.Send(kOut, p.Response(1, {{":status", "200"}}, true));
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_TRUE(Bool(c.spans()[0], "loupe.http2.headers_incomplete"));
  const std::map<std::string, std::string> expected = {
      {"http.request.header.x-request-id", "r1"},
      {"http.request.header.authorization", "REDACTED"}};
  EXPECT_EQ(HeaderAttributes(c.spans()[0]), expected);
  ExpectNoSecret(c.spans()[0]);
}

TEST(Http2RedactionTest, H2cUpgradeRequestHeadersReachStreamOne) {
  // The HTTP/1 side: the upgrade request's captured headers (redacted ones
  // as REDACTED) go into ProtocolUpgrade.
  const DecoderOptions options = Options({"authorization", "x-request-id"});
  ConnInfo conn;
  conn.conn_id = 1;
  conn.role = Role::kServer;
  conn.protocol = Protocol::kHttp1;
  auto http1 = http1::CreateDecoder(conn, options);
  RecordingSink sink;
  ProtocolStats stats;
  ProtocolUpgrade upgrade;
  std::array<ByteStream, kDirections> streams;
  auto send = [&](Direction dir, std::string_view bytes) {
    ByteStream& s = streams[Index(dir)];
    s.Add(s.end(),
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
          bytes.size(), EventTime{});
    DecodeContext ctx{conn, options, sink, stats, &upgrade};
    http1->OnData(dir, s, ctx);
  };
  send(kIn,
       "GET /up?token=tok-s3cr3t-QUERY HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n"
       "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
       "Authorization: Bearer Bearer-s3cr3t-AUTH\r\nX-Request-Id: r1\r\n\r\n");
  send(kOut, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
  ASSERT_EQ(upgrade.to, Protocol::kHttp2);
  ASSERT_EQ(upgrade.request_headers.size(), 2u);
  EXPECT_EQ(upgrade.request_headers[0].value, "REDACTED");
  EXPECT_EQ(upgrade.request_headers[1].value, "r1");

  // The HTTP/2 side: stream 1's span carries them. Its announcement went to
  // the HTTP/1 harness's sink, not this connection's: no key here.
  upgrade.request_key = ExchangeKey{};
  DecoderOptions h2_options = options;
  h2_options.capture_url_query = true;
  Connection c(Role::kServer, h2_options, &upgrade);
  Peers p;
  c.Send(kIn, std::string(kClientPreface) + Settings());
  c.Send(kOut, Settings() + p.Response(1, {{":status", "200"}}, true));
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(HeaderAttributes(c.spans()[0]),
            (std::map<std::string, std::string>{
                {"http.request.header.authorization", "REDACTED"},
                {"http.request.header.x-request-id", "r1"}}));
  EXPECT_EQ(Str(c.spans()[0], "url.query"), "token=REDACTED");
  ExpectNoSecret(c.spans()[0]);
}

}  // namespace
}  // namespace loupe::http2::testing
