// Redaction end to end: real curl against real nginx over HTTP/1.1 (also as
// a forward proxy, with an absolute-form target) and cleartext HTTP/2, the
// requests carrying per-run secrets in Authorization, Cookie, X-Api-Key and
// the URL query, nginx answering with a secret Set-Cookie. The agent runs
// with --capture-headers (those headers, User-Agent and X-Served-By),
// --redact-headers x-api-key and --capture-url-query, writing JSON lines and
// exporting OTLP/HTTP to the independent receiver (tests/otlp_receiver).
//
// The captured attributes must be there, with REDACTED for every credential,
// on both the CLIENT (curl) and SERVER (nginx) spans; then every byte the
// agent emitted (JSON lines, its log and stdout, what the receiver decoded,
// /metrics) is searched for the secrets, which must never occur. A unique
// User-Agent, which is captured, is the control: it must occur where span
// attributes go, so the search is known to look where a leak would be.
#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;

std::string RandomHex(size_t n) {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(kDigits[rng() % 16]);
  return out;
}

std::string Hex(const std::string& s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// JSON-lines attributes are an object; OTLP's a list of {key, value}.
std::map<std::string, std::string> OtlpStrings(const Json& attributes) {
  std::map<std::string, std::string> out;
  for (const Json& kv : attributes) {
    out[kv["key"]] = kv["value"].value("stringValue", "<not a string>");
  }
  return out;
}
std::map<std::string, std::string> JsonlStrings(const Json& attributes) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : attributes.items()) {
    out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

struct Secrets {
  std::string authorization = "auth" + RandomHex(24);
  std::string cookie = "cookie" + RandomHex(24);
  std::string api_key = "apikey" + RandomHex(24);
  std::string query_token = "qtoken" + RandomHex(24);
  std::string proxy_token = "ptoken" + RandomHex(24);
  std::string h2_token = "h2token" + RandomHex(24);
  std::string set_cookie = "setcookie" + RandomHex(24);
  std::vector<std::string> all() const {
    return {authorization, cookie, api_key, query_token, proxy_token, h2_token, set_cookie};
  }
};

// What one request must look like on both of its spans.
struct Expected {
  std::string path;
  std::string query;
  std::string protocol_version;
};

class RedactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    const std::string missing = OtlpReceiverProcess::Prerequisites();
    ASSERT_TRUE(missing.empty()) << missing;
    curl_ = FindProgram({"/usr/bin/curl"});
    ASSERT_FALSE(curl_.empty()) << "curl is not installed (apt-get install curl)";
  }
  std::string curl_;
};

TEST_F(RedactionTest, CredentialsNeverLeaveTheAgent) {
  const Secrets secrets;
  const std::string user_agent = "loupe-redaction-control-" + RandomHex(16);

  OtlpReceiverProcess receiver({"--protos", "otlp-grpc-exporter-base"});
  ASSERT_EQ(receiver.Start(), "");
  const uint16_t h2_port = PickFreePort();
  std::string error;
  auto nginx = NginxServer::StartWithTemplate(
      "nginx_redaction.conf.in",
      {{"@H2_PORT@", std::to_string(h2_port)}, {"@COOKIE_SECRET@", secrets.set_cookie}}, {},
      &error);
  ASSERT_TRUE(nginx) << error;
  ASSERT_TRUE(WaitForTcpPort(h2_port, std::chrono::seconds(20)));
  const uint16_t metrics_port = PickFreePort();
  auto loupe = LoupeProcess::Start(
      nginx->dir(),
      {"--port", std::to_string(nginx->port()) + "," + std::to_string(h2_port),
       "--capture-headers", "Authorization,cookie,X-Api-Key,user-agent",
       "--capture-headers", "set-cookie,x-served-by", "--redact-headers", "X-API-Key",
       "--capture-url-query", "--log-level", "debug", "--metrics-listen",
       "127.0.0.1:" + std::to_string(metrics_port)},
      {"OTEL_EXPORTER_OTLP_ENDPOINT=" + receiver.http_base(), "OTEL_BSP_SCHEDULE_DELAY=200",
       "OTEL_METRIC_EXPORT_INTERVAL=1000"});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");

  const std::vector<std::string> headers = {
      "-H", "Authorization: Bearer " + secrets.authorization,
      "-H", "Cookie: session=" + secrets.cookie,
      "-H", "X-Api-Key: " + secrets.api_key,
      "-A", user_agent};
  auto curl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {curl_, "-s", "-f", "-o", "/dev/null"};
    argv.insert(argv.end(), headers.begin(), headers.end());
    argv.insert(argv.end(), args.begin(), args.end());
    ASSERT_EQ(RunCommand(argv), 0);
  };
  const std::string h1 = "http://127.0.0.1:" + std::to_string(nginx->port());
  const std::string h2 = "http://127.0.0.1:" + std::to_string(h2_port);
  curl({h1 + "/api/items/1?access_token=" + secrets.query_token + "&page=2"});
  // Through a forward proxy the target is absolute-form.
  curl({"-x", h1, "http://upstream.invalid/api/items/2?Token=" + secrets.proxy_token + "&page=3"});
  curl({"--http2-prior-knowledge", h2 + "/api/items/3?PAGE=4&signature=" + secrets.h2_token});
  const std::map<std::string, Expected> expected = {
      {"/api/items/1", {"/api/items/1", "access_token=REDACTED&page=2", "1.1"}},
      {"/api/items/2", {"/api/items/2", "Token=REDACTED&page=3", "1.1"}},
      {"/api/items/3", {"/api/items/3", "PAGE=4&signature=REDACTED", "2"}},
  };

  // Six spans (a CLIENT and a SERVER per request), in JSON lines and OTLP.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline &&
         (loupe->Spans().size() < 6 || receiver.Spans().size() < 6)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::string metrics;
  ASSERT_EQ(RunCommand({curl_, "-s", "-f", "http://127.0.0.1:" + std::to_string(metrics_port) +
                                               "/metrics"},
                       &metrics),
            0);
  EXPECT_THAT(metrics, HasSubstr("http_server_request_duration_seconds"));
  EXPECT_THAT(metrics, HasSubstr("\"/api/items/{id}\""));
  EXPECT_EQ(loupe->Stop(), 0);

  // --- The attributes ------------------------------------------------------
  auto check = [&](const std::string& kind, const std::string& name,
                   const std::map<std::string, std::string>& attrs) {
    SCOPED_TRACE(kind + " " + name);
    const auto path = attrs.find("url.path");
    ASSERT_NE(path, attrs.end());
    const auto want = expected.find(path->second);
    ASSERT_NE(want, expected.end()) << path->second;
    EXPECT_EQ(name, "GET /api/items/{id}");  // no query in the name
    EXPECT_EQ(attrs.at("http.route"), "/api/items/{id}");
    EXPECT_EQ(attrs.at("url.query"), want->second.query);
    EXPECT_EQ(attrs.at("network.protocol.version"), want->second.protocol_version);
    EXPECT_EQ(attrs.at("http.request.header.authorization"), "REDACTED");
    EXPECT_EQ(attrs.at("http.request.header.cookie"), "REDACTED");
    EXPECT_EQ(attrs.at("http.request.header.x-api-key"), "REDACTED");
    EXPECT_EQ(attrs.at("http.request.header.user-agent"), user_agent);
    EXPECT_EQ(attrs.at("http.response.header.set-cookie"), "REDACTED");
    EXPECT_EQ(attrs.at("http.response.header.x-served-by"), "loupe-redaction-test");
  };
  std::multiset<std::string> seen;
  for (const Json& s : loupe->Spans()) {
    check("jsonl " + s["kind"].get<std::string>(), s["name"], JsonlStrings(s["attributes"]));
    seen.insert("jsonl " + s["kind"].get<std::string>() + " " +
                s["attributes"].value("url.path", ""));
  }
  for (const Json& s : receiver.Spans()) {
    check("otlp " + s["kind"].get<std::string>(), s["name"], OtlpStrings(s["attributes"]));
    seen.insert("otlp " + s["kind"].get<std::string>() + " " +
                OtlpStrings(s["attributes"])["url.path"]);
  }
  std::multiset<std::string> want_seen;
  for (const auto& [path, e] : expected) {
    for (const char* kind : {"jsonl CLIENT ", "jsonl SERVER ", "otlp SPAN_KIND_CLIENT ",
                             "otlp SPAN_KIND_SERVER "}) {
      want_seen.insert(kind + path);
    }
  }
  EXPECT_EQ(seen, want_seen);

  // --- Every byte the agent emitted ----------------------------------------
  const std::map<std::string, std::string> outputs = {
      {"JSON lines", ReadFileOrEmpty(loupe->jsonl_path())},
      {"agent log", loupe->Log()},
      {"agent stdout", ReadFileOrEmpty(nginx->dir() + "/loupe.stdout")},
      {"OTLP receiver", ReadFileOrEmpty(receiver.requests_path())},
      {"/metrics", metrics},
  };
  for (const auto& [what, text] : outputs) {
    for (const std::string& secret : secrets.all()) {
      EXPECT_EQ(text.find(secret), std::string::npos) << secret << " leaked into the " << what;
      EXPECT_EQ(text.find(Hex(secret)), std::string::npos)
          << secret << " leaked (hex) into the " << what;
    }
  }
  // The control: captured values do reach the span outputs.
  EXPECT_THAT(outputs.at("JSON lines"), HasSubstr(user_agent));
  EXPECT_THAT(outputs.at("OTLP receiver"), HasSubstr(user_agent));
  // And the agent did see the traffic it redacted (debug logging on).
  EXPECT_THAT(outputs.at("agent log"), HasSubstr("ready:"));
}

}  // namespace
}  // namespace loupe::testing
