// Header capture and redaction on HTTP/1 spans (--capture-headers,
// --redact-headers, --redact-query-params): both directions of a connection
// fed as syscall events, the SpanRecords checked attribute by attribute.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/http1/http1_decoder.h"
#include "decoders/model/http_capture.h"
#include "decoders/protocol.h"
#include "tests/decoders/checking_sink.h"

namespace loupe::http1 {
namespace {

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

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

// A server (10.0.0.1:8080) or client connection; requests go in `requests`.
class Connection {
 public:
  Connection(Role role, DecoderOptions options) : options_(std::move(options)) {
    conn_.conn_id = 5;
    conn_.tgid = 42;
    conn_.role = role;
    conn_.protocol = Protocol::kHttp1;
    IpAddress a;
    a.family = AF_INET;
    a.bytes[0] = 10;
    a.bytes[3] = 1;
    IpAddress b = a;
    b.bytes[3] = 2;
    conn_.tuple.local = Endpoint{a, static_cast<uint16_t>(role == Role::kServer ? 8080 : 40000)};
    conn_.tuple.remote = Endpoint{b, static_cast<uint16_t>(role == Role::kServer ? 54321 : 80)};
    decoder_ = CreateDecoder(conn_, options_);
  }
  void Send(Direction dir, std::string_view bytes) {
    ByteStream& s = streams_[Index(dir)];
    s.Add(s.end(),
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
          bytes.size(), EventTime{});
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnData(dir, s, ctx);
  }
  void SendBytewise(Direction dir, std::string_view bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) Send(dir, bytes.substr(i, 1));
  }
  const std::vector<SpanRecord>& spans() const { return sink_.spans; }

 private:
  ConnInfo conn_;
  DecoderOptions options_;
  ::loupe::testing::CheckingSink sink_{/*streams=*/false};
  ProtocolStats stats_;
  std::array<ByteStream, kDirections> streams_;
  std::unique_ptr<ConnectionDecoder> decoder_;
};

std::map<std::string, std::string> StringAttributes(const SpanRecord& span) {
  std::map<std::string, std::string> out;
  for (const Attribute& a : span.attributes.items()) {
    if (const auto* s = std::get_if<std::string>(&a.value)) out[a.key] = *s;
  }
  return out;
}

// Header names of the span's http.*.header.* attributes.
std::map<std::string, std::string> HeaderAttributes(const SpanRecord& span) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : StringAttributes(span)) {
    if (k.find(".header.") != std::string::npos) out[k] = v;
  }
  return out;
}

// Every byte a span carries, for searching secrets in.
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
                                         "proxy-s3cr3t", "tok-s3cr3t-QUERY"};

const std::string kRequest =
    "GET /api/items/42?Token=tok-s3cr3t-QUERY&page=2&sort=a%20b HTTP/1.1\r\n"
    "Host: shop.example\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Authorization: Bearer Bearer-s3cr3t-AUTH\r\n"
    "Proxy-Authorization: Basic proxy-s3cr3t\r\n"
    "cookie: a=sess-s3cr3t-COOKIE\r\n"
    "X-Api-Key: k3y-s3cr3t-APIKEY\r\n"
    "X-Request-Id: first\r\n"
    "Accept: */*\r\n"
    "x-request-id:   second  \r\n"
    "\r\n";
const std::string kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Set-Cookie: sid=srv-s3cr3t-SETCOOKIE; HttpOnly\r\n"
    "Set-Cookie: other=srv-s3cr3t-SETCOOKIE\r\n"
    "X-Served-By: node-7\r\n"
    "Content-Length: 2\r\n"
    "\r\n"
    "{}";

const std::vector<std::string> kCaptured = {"User-Agent", "authorization", "proxy-authorization",
                                            "Cookie", "x-api-key", "x-request-id", "set-cookie",
                                            "x-served-by", "content-type", "x-absent"};

void ExpectCapturedAndRedacted(const SpanRecord& span) {
  const std::map<std::string, std::string> expected = {
      {"http.request.header.user-agent", "curl/7.88.1"},
      {"http.request.header.authorization", "REDACTED"},
      {"http.request.header.proxy-authorization", "REDACTED"},
      {"http.request.header.cookie", "REDACTED"},
      {"http.request.header.x-api-key", "REDACTED"},
      {"http.request.header.x-request-id", "first, second"},
      {"http.response.header.set-cookie", "REDACTED"},
      {"http.response.header.x-served-by", "node-7"},
      {"http.response.header.content-type", "application/json"},
  };
  EXPECT_EQ(HeaderAttributes(span), expected);
  const std::string all = Everything(span);
  for (std::string_view secret : kSecrets) {
    EXPECT_EQ(all.find(secret), std::string::npos) << secret << " leaked:\n" << all;
  }
}

TEST(Http1RedactionTest, ServerSpanCapturesAskedHeadersAndRedactsCredentials) {
  Connection c(Role::kServer, Options(kCaptured, {"X-API-Key"}, /*capture_query=*/true));
  c.Send(kIn, kRequest);
  c.Send(kOut, kResponse);
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  ExpectCapturedAndRedacted(span);
  const auto attrs = StringAttributes(span);
  // The rest of the query byte for byte; the name of the redacted one kept.
  EXPECT_EQ(attrs.at("url.query"), "Token=REDACTED&page=2&sort=a%20b");
  EXPECT_EQ(attrs.at("url.path"), "/api/items/42");
  EXPECT_EQ(attrs.at("http.route"), "/api/items/{id}");
  EXPECT_EQ(span.name, "GET /api/items/{id}");
}

TEST(Http1RedactionTest, ClientSpanAndBytewiseDeliveryGiveTheSame) {
  Connection c(Role::kClient, Options(kCaptured, {"x-api-key"}));
  c.SendBytewise(kOut, kRequest);
  c.SendBytewise(kIn, kResponse);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(c.spans()[0].kind, SpanKind::kClient);
  ExpectCapturedAndRedacted(c.spans()[0]);
  EXPECT_EQ(c.spans()[0].attributes.Find("url.query"), nullptr);  // not asked for
}

TEST(Http1RedactionTest, WithoutConfiguredRedactionACustomHeaderIsKept) {
  Connection c(Role::kServer, Options({"x-api-key", "authorization"}));
  c.Send(kIn, kRequest);
  c.Send(kOut, kResponse);
  ASSERT_EQ(c.spans().size(), 1u);
  const auto headers = HeaderAttributes(c.spans()[0]);
  EXPECT_EQ(headers.at("http.request.header.x-api-key"), "k3y-s3cr3t-APIKEY");
  EXPECT_EQ(headers.at("http.request.header.authorization"), "REDACTED");
  EXPECT_EQ(headers.size(), 2u);
}

TEST(Http1RedactionTest, NothingAskedNothingKept) {
  Connection c(Role::kServer, DecoderOptions{});
  c.Send(kIn, kRequest);
  c.Send(kOut, kResponse);
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_TRUE(HeaderAttributes(c.spans()[0]).empty());
  EXPECT_EQ(c.spans()[0].attributes.Find("url.query"), nullptr);
  const std::string all = Everything(c.spans()[0]);
  for (std::string_view secret : kSecrets) EXPECT_EQ(all.find(secret), std::string::npos);
}

TEST(Http1RedactionTest, DefaultOptionsRedactTheDefaultQueryParameters) {
  DecoderOptions options;
  options.capture_url_query = true;
  Connection c(Role::kServer, options);
  c.Send(kIn, "GET /cb?code=1&ACCESS_TOKEN=x&api_key=y&state=s HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  EXPECT_EQ(*c.spans()[0].attributes.FindString("url.query"),
            "code=1&ACCESS_TOKEN=REDACTED&api_key=REDACTED&state=s");
}

TEST(Http1RedactionTest, AbsoluteFormTargetThroughAProxyLeaksNoQuery) {
  // What curl sends to a forward proxy: scheme, userinfo and authority in the
  // target. Neither the name, the route, the path nor server.address keeps
  // the query or the userinfo.
  Connection c(Role::kServer, Options({}, {}, /*capture_query=*/true));
  c.Send(kIn,
         "GET http://user:pw-s3cr3t@upstream.example:9000/v1/jobs/4711?token=tok-s3cr3t-QUERY"
         "&x=1#frag HTTP/1.1\r\nHost: upstream.example:9000\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  const SpanRecord& span = c.spans()[0];
  const auto attrs = StringAttributes(span);
  EXPECT_EQ(span.name, "GET /v1/jobs/{id}");
  EXPECT_EQ(attrs.at("url.path"), "/v1/jobs/4711");
  EXPECT_EQ(attrs.at("http.route"), "/v1/jobs/{id}");
  EXPECT_EQ(attrs.at("url.query"), "token=REDACTED&x=1");
  EXPECT_EQ(attrs.at("server.address"), "upstream.example");
  const std::string all = Everything(span);
  EXPECT_EQ(all.find("tok-s3cr3t"), std::string::npos) << all;
  EXPECT_EQ(all.find("pw-s3cr3t"), std::string::npos) << all;
}

TEST(Http1RedactionTest, ObsFoldAndLongValuesStayBounded) {
  Connection c(Role::kServer, Options({"x-long"}));
  c.Send(kIn, "GET / HTTP/1.1\r\nX-Long: " + std::string(1000, 'v') +
                  "\r\n  folded continuation\r\nX-Long: more\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 1u);
  const std::string& v = *c.spans()[0].attributes.FindString("http.request.header.x-long");
  EXPECT_EQ(v, std::string(kMaxCapturedValueBytes, 'v'));
}

TEST(Http1RedactionTest, KeepAliveRequestsDoNotShareCapturedHeaders) {
  Connection c(Role::kServer, Options({"x-request-id"}));
  c.Send(kIn, "GET /a HTTP/1.1\r\nX-Request-Id: one\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  c.Send(kOut, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
               "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(c.spans().size(), 2u);
  EXPECT_EQ(*c.spans()[0].attributes.FindString("http.request.header.x-request-id"), "one");
  EXPECT_TRUE(HeaderAttributes(c.spans()[1]).empty());
}

}  // namespace
}  // namespace loupe::http1
