#include "agent/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace loupe {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<AgentConfig> Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"loupe"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseFlags(static_cast<int>(argv.size()), argv.data());
}

TEST(ConfigTest, DefaultsAreConsoleWithAFourKilobytePrefix) {
  auto c = Parse({});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->console);
  EXPECT_EQ(c->jsonl_path, "");
  EXPECT_EQ(c->payload_bytes, 4096u);
  EXPECT_TRUE(c->pids.empty());
  EXPECT_TRUE(c->ports.empty());
  EXPECT_FALSE(c->capture_url_query);
  EXPECT_EQ(c->stats_interval_s, 10u);
  EXPECT_EQ(c->log_level, LogLevel::kInfo);
}

TEST(ConfigTest, ValuesInlineOrSeparate) {
  auto c = Parse({"--payload-bytes=512", "--pid", "12,34", "--pid=56", "--port", "8080",
                  "--jsonl", "/tmp/x.jsonl", "--log-level=debug", "--capture-url-query",
                  "--stats-interval", "0", "--ringbuf-bytes", "1048576", "--record", "r.rec"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->payload_bytes, 512u);
  EXPECT_THAT(c->pids, ElementsAre(12u, 34u, 56u));
  EXPECT_THAT(c->ports, ElementsAre(8080));
  EXPECT_EQ(c->jsonl_path, "/tmp/x.jsonl");
  EXPECT_EQ(c->log_level, LogLevel::kDebug);
  EXPECT_TRUE(c->capture_url_query);
  EXPECT_EQ(c->stats_interval_s, 0u);
  EXPECT_EQ(c->ringbuf_bytes, 1048576u);
  EXPECT_EQ(c->record_path, "r.rec");
  EXPECT_TRUE(c->console);  // a file does not turn the console off
}

TEST(ConfigTest, JsonlToStdoutTurnsTheConsoleOffUnlessAsked) {
  auto c = Parse({"--jsonl", "-"});
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->console);
  auto both = Parse({"--jsonl", "-", "--console"});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->console);
}

TEST(ConfigTest, ErrorsNameTheFlagAndTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"--bogus"}, "unknown flag --bogus"},
      {{"--payload-bytes", "0"}, "--payload-bytes: must be between 1 and 32768"},
      {{"--payload-bytes", "99999"}, "must be between 1 and 32768"},
      {{"--payload-bytes", "abc"}, "expected a whole number"},
      {{"--port", "70000"}, "--port: must be between 1 and 65535"},
      {{"--pid", "-3"}, "expected a whole number"},
      {{"--ringbuf-bytes", "100000"}, "must be a power of two"},
      {{"--log-level", "loud"}, "expected debug, info, warn or error"},
      {{"--jsonl"}, "--jsonl needs a value"},
      {{"--console=yes"}, "--console takes no value"},
      {{"positional"}, "unexpected argument 'positional'"},
      {{"--record", "a", "--replay", "b"}, "cannot be combined"},
  };
  for (const Case& c : cases) {
    auto parsed = Parse(c.args);
    ASSERT_FALSE(parsed.ok()) << c.args[0];
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message));
  }
}

TEST(ConfigTest, HelpListsEveryFlagWithItsDefault) {
  const std::string help = HelpText();
  for (const char* flag :
       {"--console", "--no-console", "--jsonl PATH", "--payload-bytes N", "--pid PID",
        "--port PORT", "--ringbuf-bytes N", "--capture-url-query", "--max-connections N",
        "--record FILE", "--replay FILE", "--log-level LEVEL", "--stats-interval SECONDS",
        "--help", "--version"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  EXPECT_THAT(help, HasSubstr("[default: 4096]"));
  auto h = Parse({"--help"});
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->show_help);
  EXPECT_THAT(VersionText(), HasSubstr("loupe 0."));
}

}  // namespace
}  // namespace loupe

namespace loupe {
namespace {

// docs/configuration.md embeds `loupe --help` verbatim: the reference
// cannot drift from the code.
TEST(ConfigTest, ConfigurationReferenceMatchesHelp) {
  std::ifstream in(std::string(LOUPE_SOURCE_DIR) + "/docs/configuration.md");
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const std::string begin = "<!-- BEGIN loupe --help -->\n```\n";
  const std::string end = "```\n<!-- END loupe --help -->";
  const size_t from = text.find(begin);
  const size_t to = text.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(text.substr(from + begin.size(), to - from - begin.size()), HelpText())
      << "docs/configuration.md is stale: paste the output of `loupe --help` between its "
         "BEGIN/END markers";
}

}  // namespace
}  // namespace loupe

// Header capture and redaction: --capture-headers, --redact-headers,
// --redact-query-params and their LOUPE_* variables.
namespace loupe {
namespace {

absl::StatusOr<AgentConfig> ParseWithEnv(std::map<std::string, std::string> env,
                                         std::vector<std::string> args) {
  std::vector<const char*> argv = {"loupe"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  auto lookup = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  return ParseFlags(static_cast<int>(argv.size()), argv.data(), lookup);
}

std::vector<std::string> DefaultParams() {
  return std::vector<std::string>(DefaultRedactedQueryParams().begin(),
                                  DefaultRedactedQueryParams().end());
}

TEST(ConfigRedactionTest, DefaultsCaptureNothingAndRedactTheDefaultParams) {
  auto c = ParseWithEnv({}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->capture_headers.empty());
  EXPECT_TRUE(c->redact_headers.empty());
  EXPECT_EQ(c->redact_query_params, DefaultParams());
  EXPECT_THAT(c->redact_query_params, ::testing::Contains("access_token"));
  EXPECT_THAT(c->redact_query_params, ::testing::Contains("x-amz-signature"));
}

TEST(ConfigRedactionTest, FlagsRepeatAndNamesAreLowerCaseOnce) {
  auto c = ParseWithEnv({}, {"--capture-headers", "User-Agent, X-Request-Id",
                             "--capture-headers=x-request-id,Authorization", "--redact-headers",
                             "X-Api-Key", "--redact-query-params", "Session,sid",
                             "--redact-query-params", "SESSION"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->capture_headers, ElementsAre("user-agent", "x-request-id", "authorization"));
  EXPECT_THAT(c->redact_headers, ElementsAre("x-api-key"));
  std::vector<std::string> params = DefaultParams();
  params.push_back("session");
  params.push_back("sid");
  EXPECT_EQ(c->redact_query_params, params);
}

TEST(ConfigRedactionTest, NoneDropsTheNamesBeforeIt) {
  auto none = ParseWithEnv({}, {"--redact-query-params", "none"});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->redact_query_params.empty());
  auto then = ParseWithEnv({}, {"--redact-query-params", "extra,NONE,session",
                                "--redact-query-params", "sig"});
  ASSERT_TRUE(then.ok()) << then.status();
  EXPECT_THAT(then->redact_query_params, ElementsAre("session", "sig"));
}

TEST(ConfigRedactionTest, VariablesApplyUnlessTheFlagIsGiven) {
  const std::map<std::string, std::string> env = {
      {"LOUPE_CAPTURE_HEADERS", "x-tenant,User-Agent"},
      {"LOUPE_REDACT_HEADERS", "x-tenant"},
      {"LOUPE_REDACT_QUERY_PARAMS", "none,session"}};
  auto from_env = ParseWithEnv(env, {});
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_THAT(from_env->capture_headers, ElementsAre("x-tenant", "user-agent"));
  EXPECT_THAT(from_env->redact_headers, ElementsAre("x-tenant"));
  EXPECT_THAT(from_env->redact_query_params, ElementsAre("session"));
  // A flag replaces its variable (it does not add to it), whichever form
  // it takes; the others still apply.
  auto flags = ParseWithEnv(env, {"--capture-headers", "accept", "--redact-query-params=sid"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(flags->capture_headers, ElementsAre("accept"));
  EXPECT_THAT(flags->redact_headers, ElementsAre("x-tenant"));
  std::vector<std::string> params = DefaultParams();
  params.push_back("sid");
  EXPECT_EQ(flags->redact_query_params, params);
  // A flag's separate value that looks like a flag is a value, not a flag.
  auto value = ParseWithEnv(env, {"--jsonl", "--capture-headers"});
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->jsonl_path, "--capture-headers");
  EXPECT_THAT(value->capture_headers, ElementsAre("x-tenant", "user-agent"));
}

TEST(ConfigRedactionTest, BadNamesAreRejectedWithTheFlagOrVariable) {
  struct Case {
    std::map<std::string, std::string> env;
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{},
       {"--capture-headers", ":authority"},
       "--capture-headers: ':authority' is not a header name"},
      {{}, {"--capture-headers", "x-a,two words"}, "'two words' is not a header name"},
      {{}, {"--redact-headers", "x(y)"}, "--redact-headers: 'x(y)' is not a header name"},
      {{}, {"--capture-headers", std::string(129, 'h')}, "is not a header name (1 to 128"},
      {{},
       {"--redact-query-params", "a=b"},
       "--redact-query-params: 'a=b' is not a query parameter name"},
      {{}, {"--redact-query-params", "a b"}, "is not a query parameter name"},
      {{}, {"--capture-headers"}, "--capture-headers needs a value"},
      {{{"LOUPE_CAPTURE_HEADERS", "ok,bad name"}}, {}, "LOUPE_CAPTURE_HEADERS: 'bad name'"},
      {{{"LOUPE_REDACT_QUERY_PARAMS", "a&b"}}, {}, "LOUPE_REDACT_QUERY_PARAMS: 'a&b'"},
  };
  for (const Case& c : cases) {
    auto parsed = ParseWithEnv(c.env, c.args);
    ASSERT_FALSE(parsed.ok()) << c.message;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message));
  }
  std::string many = "h0";
  for (int i = 1; i <= 32; ++i) many += ",h" + std::to_string(i);
  auto too_many = ParseWithEnv({}, {"--capture-headers", many});
  ASSERT_FALSE(too_many.ok());
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("at most 32 header names"));
}

TEST(ConfigRedactionTest, HelpShowsTheFlagsDefaultsAndTheRecordingWarning) {
  const std::string help = HelpText();
  EXPECT_THAT(help, HasSubstr("--capture-headers NAME[,NAME...]"));
  EXPECT_THAT(help, HasSubstr("[env: LOUPE_CAPTURE_HEADERS]"));
  EXPECT_THAT(help, HasSubstr("[default: authorization,proxy-authorization,cookie,set-cookie]"));
  EXPECT_THAT(help, HasSubstr("[env: LOUPE_REDACT_HEADERS]"));
  EXPECT_THAT(help, HasSubstr("[default: access_token,id_token,"));
  EXPECT_THAT(help, HasSubstr("[env: LOUPE_REDACT_QUERY_PARAMS]"));
  EXPECT_THAT(help, HasSubstr("secrets included (nothing is redacted)"));
}

}  // namespace
}  // namespace loupe
