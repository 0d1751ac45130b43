// Tests of HttpCapture (decoders/model/http_capture.h): name lookup, value
// bounds, redaction of headers and of URL query parameters.
#include "decoders/model/http_capture.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loupe {
namespace {

HttpCapture Capture(std::vector<std::string> capture, std::vector<std::string> redact = {},
                    std::vector<std::string> params = {}) {
  return HttpCapture(HttpCapture::Settings{std::move(capture), std::move(redact),
                                           std::move(params)});
}

TEST(HttpCaptureTest, FindsConfiguredNamesInAnyCaseOnly) {
  const HttpCapture c = Capture({"User-Agent", "x-request-id", "USER-AGENT", "bad name", ""});
  // Lower case, each once, invalid names ignored.
  EXPECT_EQ(c.names(), (std::vector<std::string>{"user-agent", "x-request-id"}));
  EXPECT_EQ(c.Find("user-agent"), 0);
  EXPECT_EQ(c.Find("USER-AGENT"), 0);
  EXPECT_EQ(c.Find("X-Request-ID"), 1);
  EXPECT_EQ(c.Find("user-agenu"), -1);  // same length, other name
  EXPECT_EQ(c.Find("accept"), -1);
  EXPECT_EQ(c.Find(""), -1);
  EXPECT_EQ(c.Find(std::string(200, 'x')), -1);
  EXPECT_FALSE(Capture({}).captures_headers());
  EXPECT_TRUE(c.captures_headers());
}

TEST(HttpCaptureTest, LongNamesShareTheLastLengthBit) {
  const std::string long_name = "x-" + std::string(90, 'a');
  const HttpCapture c = Capture({long_name});
  EXPECT_EQ(c.Find(long_name), 0);
  EXPECT_EQ(c.Find("x-" + std::string(70, 'a')), -1);
}

TEST(HttpCaptureTest, CredentialHeadersAreAlwaysRedacted) {
  const HttpCapture c = Capture(
      {"authorization", "Proxy-Authorization", "cookie", "set-cookie", "x-api-key", "accept"},
      {"X-API-KEY"});
  for (uint32_t i = 0; i < 5; ++i) EXPECT_TRUE(c.redacted(i)) << c.names()[i];
  EXPECT_FALSE(c.redacted(5));
  std::vector<CapturedHeader> headers;
  c.Add(headers, 0, "Bearer s3cr3t");
  c.Add(headers, 2, "a=1");
  c.Add(headers, 2, "b=2");  // repeated: still one REDACTED
  c.Add(headers, 4, "key-123");
  c.Add(headers, 5, "text/html");
  Attributes attrs;
  c.SetAttributes(headers, HeaderSide::kRequest, attrs);
  ASSERT_EQ(attrs.size(), 4u);
  EXPECT_EQ(*attrs.FindString("http.request.header.authorization"), "REDACTED");
  EXPECT_EQ(*attrs.FindString("http.request.header.cookie"), "REDACTED");
  EXPECT_EQ(*attrs.FindString("http.request.header.x-api-key"), "REDACTED");
  EXPECT_EQ(*attrs.FindString("http.request.header.accept"), "text/html");
  for (const Attribute& a : attrs.items()) {
    const std::string& v = std::get<std::string>(a.value);
    EXPECT_EQ(v.find("s3cr3t"), std::string::npos);
    EXPECT_EQ(v.find("key-123"), std::string::npos);
    EXPECT_EQ(v.find('='), std::string::npos);
  }
}

TEST(HttpCaptureTest, AttributeKeysPerSide) {
  const HttpCapture c = Capture({"X-Trace-Tag"});
  std::vector<CapturedHeader> headers;
  c.Add(headers, 0, "v");
  Attributes attrs;
  c.SetAttributes(headers, HeaderSide::kResponse, attrs);
  c.SetAttributes(headers, HeaderSide::kGrpcRequest, attrs);
  c.SetAttributes(headers, HeaderSide::kGrpcResponse, attrs);
  ASSERT_EQ(attrs.size(), 3u);
  EXPECT_EQ(attrs.items()[0].key, "http.response.header.x-trace-tag");
  EXPECT_EQ(attrs.items()[1].key, "rpc.grpc.request.metadata.x-trace-tag");
  EXPECT_EQ(attrs.items()[2].key, "rpc.grpc.response.metadata.x-trace-tag");
}

TEST(HttpCaptureTest, RepeatedValuesJoinUpToTheBoundOnACharacterBoundary) {
  const HttpCapture c = Capture({"accept"});
  std::vector<CapturedHeader> headers;
  c.Add(headers, 0, "text/html");
  c.Add(headers, 0, "");
  c.Add(headers, 0, "application/json");
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].value, "text/html, , application/json");

  // 254 ASCII bytes, then "é" (2 bytes) fits exactly; "€" (3 bytes) would not
  // and is dropped whole rather than cut.
  for (const auto& [tail, expected_size] :
       std::vector<std::pair<std::string, size_t>>{{"\xC3\xA9", 256}, {"\xE2\x82\xAC", 254}}) {
    std::vector<CapturedHeader> h;
    c.Add(h, 0, std::string(254, 'a') + tail + "zzz");
    EXPECT_EQ(h[0].value.size(), expected_size);
    EXPECT_TRUE(h[0].full);
    c.Add(h, 0, "more");  // nothing after a cut
    EXPECT_EQ(h[0].value.size(), expected_size);
  }
  std::vector<CapturedHeader> many;
  for (int i = 0; i < 1000; ++i) c.Add(many, 0, "x");
  EXPECT_LE(many[0].value.size(), kMaxCapturedValueBytes);
  EXPECT_EQ(many[0].value.substr(0, 7), "x, x, x");
}

TEST(HttpCaptureTest, AtMostThirtyTwoNames) {
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("x-h" + std::to_string(i));
  EXPECT_EQ(Capture(names).names().size(), kMaxCapturedHeaders);
}

TEST(HttpCaptureTest, QueryParametersKeepTheirNameAndLoseTheirValue) {
  const HttpCapture& d = *HttpCapture::Default();
  EXPECT_FALSE(d.captures_headers());
  EXPECT_EQ(d.RedactQuery("token=abc&page=2"), "token=REDACTED&page=2");
  // Case-insensitive, percent-encoded names, ';' separators; everything
  // else byte for byte, empty parameters and odd encodings included.
  EXPECT_EQ(d.RedactQuery("Access_Token=a%20b&&x=%ZZ;SIG=1&page&%74oken=t+u&q=a=b"),
            "Access_Token=REDACTED&&x=%ZZ;SIG=REDACTED&page&%74oken=REDACTED&q=a=b");
  EXPECT_EQ(d.RedactQuery("X-Amz-Signature=abcd&X-Amz-Credential=AKIA%2F1&X-Amz-Date=2024"),
            "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Date=2024");
  EXPECT_EQ(d.RedactQuery("password="), "password=REDACTED");
  EXPECT_EQ(d.RedactQuery("tokens=1&my_token=2&token"), "tokens=1&my_token=2&token");
  EXPECT_EQ(d.RedactQuery(""), "");
  EXPECT_EQ(d.RedactQuery("&"), "&");

  const HttpCapture custom = Capture({}, {}, {"Session"});
  EXPECT_EQ(custom.RedactQuery("session=1&token=2"), "session=REDACTED&token=2");
  const HttpCapture none = Capture({}, {}, {});
  EXPECT_EQ(none.RedactQuery("token=2"), "token=2");
}

TEST(HttpCaptureTest, DefaultQueryListHasTheConventionsOwn) {
  const HttpCapture& d = *HttpCapture::Default();
  // Semantic conventions (url.query): AWSAccessKeyId, Signature, sig,
  // X-Goog-Signature.
  EXPECT_EQ(d.RedactQuery("AWSAccessKeyId=A&Signature=B&sig=C&X-Goog-Signature=D&e=E"),
            "AWSAccessKeyId=REDACTED&Signature=REDACTED&sig=REDACTED&X-Goog-Signature=REDACTED"
            "&e=E");
}

TEST(HttpCaptureTest, ConfiguredNameChecks) {
  EXPECT_TRUE(IsHeaderFieldName("x-api-key"));
  EXPECT_TRUE(IsHeaderFieldName("X_Weird.Name!"));
  EXPECT_FALSE(IsHeaderFieldName(""));
  EXPECT_FALSE(IsHeaderFieldName(":authority"));
  EXPECT_FALSE(IsHeaderFieldName("two words"));
  EXPECT_FALSE(IsHeaderFieldName(std::string(129, 'a')));
  EXPECT_TRUE(IsQueryParamName("x-amz-signature"));
  EXPECT_TRUE(IsQueryParamName("user[password]"));
  EXPECT_FALSE(IsQueryParamName("a=b"));
  EXPECT_FALSE(IsQueryParamName("a&b"));
  EXPECT_FALSE(IsQueryParamName("a b"));
  EXPECT_FALSE(IsQueryParamName(""));
}

}  // namespace
}  // namespace loupe
