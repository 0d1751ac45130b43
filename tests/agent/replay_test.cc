// Replays a recording of real nginx and curl traffic (tests/fixtures/
// recordings/) through the agent's whole user-space path, as `loupe
// --replay` does, and compares the spans with the reviewed expectation.
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/config.h"

namespace loupe {
namespace {

using Json = nlohmann::json;

const std::string kFixtures = std::string(LOUPE_SOURCE_DIR) + "/tests/fixtures/recordings/";

std::vector<Json> ReadJsonl(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(Json::parse(line));
  }
  return out;
}

std::vector<Json> Replay(const std::string& recording) {
  const std::string out = "/tmp/loupe-replay-test-" + std::to_string(getpid()) + ".jsonl";
  unlink(out.c_str());
  AgentConfig config;
  config.replay_path = recording;
  config.jsonl_path = out;
  config.console = false;
  EXPECT_EQ(RunAgent(config), 0);
  std::vector<Json> spans = ReadJsonl(out);
  unlink(out.c_str());
  // Spans come out when their trace context is decided and they are
  // finished, not in a fixed order: compare them in start order.
  std::stable_sort(spans.begin(), spans.end(), [](const Json& a, const Json& b) {
    return a["start_time_unix_nano"].get<uint64_t>() < b["start_time_unix_nano"].get<uint64_t>();
  });
  return spans;
}

TEST(ReplayTest, RecordedNginxAndCurlGiveTheReviewedSpans) {
  std::vector<Json> spans = Replay(kFixtures + "nginx_curl.rec");
  std::vector<Json> expected = ReadJsonl(kFixtures + "nginx_curl.expected.jsonl");
  std::stable_sort(expected.begin(), expected.end(), [](const Json& a, const Json& b) {
    return a["start_time_unix_nano"].get<uint64_t>() < b["start_time_unix_nano"].get<uint64_t>();
  });
  ASSERT_EQ(spans.size(), 8u);
  ASSERT_EQ(expected.size(), spans.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < spans.size(); ++i) {
    Json span = spans[i];
    // Fresh random ids, unique and well-formed.
    ASSERT_EQ(span["trace_id"].get<std::string>().size(), 32u);
    ASSERT_EQ(span["span_id"].get<std::string>().size(), 16u);
    EXPECT_TRUE(ids.insert(span["span_id"].get<std::string>()).second);
    span.erase("trace_id");
    span.erase("span_id");
    // Parents are random ids too; ExchangesNestAndShareTheirConnection
    // checks which span each one names.
    span.erase("parent_span_id");
    Json want = expected[i];
    want.erase("parent_span_id");
    EXPECT_EQ(span, want) << "span " << i;
  }
}

TEST(ReplayTest, ExchangesNestAndShareTheirConnection) {
  std::vector<Json> spans = Replay(kFixtures + "nginx_curl.rec");
  ASSERT_EQ(spans.size(), 8u);
  // Spans come in CLIENT/SERVER pairs per exchange (the client's write
  // starts first), joined into one trace: curl's CLIENT span is the root,
  // nginx's SERVER span its child (both ends of the connection on one host).
  std::set<std::string> traces;
  for (size_t i = 0; i < spans.size(); i += 2) {
    const Json& client = spans[i];
    const Json& server = spans[i + 1];
    ASSERT_EQ(server["kind"], "SERVER");
    ASSERT_EQ(client["kind"], "CLIENT");
    EXPECT_EQ(client["parent_span_id"], "");
    EXPECT_EQ(server["parent_span_id"], client["span_id"]);
    EXPECT_EQ(server["trace_id"], client["trace_id"]);
    EXPECT_TRUE(traces.insert(client["trace_id"].get<std::string>()).second)
        << "each exchange is a trace of its own";
    EXPECT_EQ(server["attributes"]["url.path"], client["attributes"]["url.path"]);
    EXPECT_LT(client["start_time_unix_nano"], server["start_time_unix_nano"]);
    EXPECT_LT(server["end_time_unix_nano"], client["end_time_unix_nano"]);
    EXPECT_EQ(server["resource"]["service.name"], "nginx");
    EXPECT_EQ(client["resource"]["service.name"], "curl");
  }
  // The first two exchanges used one keep-alive connection.
  EXPECT_EQ(spans[1]["attributes"]["client.port"], spans[3]["attributes"]["client.port"]);
  EXPECT_NE(spans[1]["attributes"]["client.port"], spans[5]["attributes"]["client.port"]);
}

TEST(ReplayTest, MissingRecordingFailsWithStatusOne) {
  AgentConfig config;
  config.replay_path = "/nonexistent/recording.rec";
  config.console = false;
  EXPECT_EQ(RunAgent(config), 1);
}

}  // namespace
}  // namespace loupe
