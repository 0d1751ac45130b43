// The reference pages in docs/ against what the code emits, so that neither
// can change without the other:
//   - docs/metrics.md names every metric /metrics serves, and no loupe_*
//     metric that it does not serve, with the label keys and enumerated
//     label values of the agent's own metrics;
//   - `loupe --help` names every environment variable the flag parser reads,
//     and only those (docs/configuration.md embeds --help verbatim, which
//     ConfigurationReferenceMatchesHelp in config_test.cc checks);
//   - docs/spans.md lists every span and resource attribute key the decoders
//     and the process metadata set, and its tables list no key the code never
//     sets.
// Metric names and environment variables come from the code itself (the
// /metrics exposition, a recording environment); span attribute keys are read
// from the sources at test time, because they are set in dozens of places
// across five decoders with no registry to ask.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/self_telemetry.h"
#include "decoders/model/metrics.h"
#include "decoders/model/span.h"
#include "exporters/prometheus/metrics_http_server.h"

namespace loupe {
namespace {

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(LOUPE_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << relative << " is missing or empty";
  return text.str();
}

std::set<std::string> Matches(const std::string& text, const std::regex& pattern, int group) {
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), pattern);
       it != std::sregex_iterator(); ++it) {
    out.insert((*it)[group].str());
  }
  return out;
}

std::vector<std::string> Minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> out;
  for (const std::string& x : a) {
    if (b.count(x) == 0) out.push_back(x);
  }
  return out;
}

// ---- Metrics ---------------------------------------------------------------

// Every counter set, every optional part present (live kernel, resource
// sampler, log exporter, one span exporter), so that ToSelfMetrics emits
// every name it can.
SelfTelemetry EverythingOn() {
  SelfTelemetry t;
  t.live = true;
  t.hooks_attached = 25;
  ExporterStats otlp;
  otlp.spans_dropped = 1;  // more than the itemised reasons: the "other" reason too
  t.exporters.push_back({"otlp", otlp});
  t.logs = ExporterStats{};
  t.resources = ResourceSamplerStats{};
  return t;
}

Span SpanOf(SpanKind kind, std::initializer_list<std::pair<const char*, const char*>> attributes,
            const std::shared_ptr<const Resource>& resource) {
  Span span;
  span.kind = kind;
  span.start_unix_ns = 1'700'000'000'000'000'000ull;
  span.end_unix_ns = span.start_unix_ns + 1'000'000;
  for (const auto& [key, value] : attributes) span.attributes.Set(key, value);
  span.attributes.Set("http.request.body.size", int64_t{10});
  span.attributes.Set("http.response.body.size", int64_t{10});
  span.resource = resource;
  return span;
}

// What GET /metrics serves with every instrument in use: the RED histograms
// of each kind of span, the service graph, one value of every observed
// instrument, the self metrics above and the endpoint's own counters.
std::string RenderedMetrics() {
  MetricsRecorder recorder;
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "docs");
  recorder.Record(SpanOf(SpanKind::kServer, {{"http.request.method", "GET"}}, resource));
  recorder.Record(SpanOf(SpanKind::kClient, {{"http.request.method", "GET"}}, resource));
  recorder.Record(SpanOf(SpanKind::kServer, {{"rpc.system", "grpc"}}, resource));
  recorder.Record(SpanOf(SpanKind::kClient, {{"rpc.system", "grpc"}}, resource));
  recorder.Record(SpanOf(SpanKind::kClient, {{"db.system.name", "redis"}}, resource));
  recorder.RecordServiceGraphEdge({"a", "b", true, 0.001, 0.001});
  for (size_t i = 0; i < kObservedInstrumentCount; ++i) {
    recorder.RecordObserved(resource, static_cast<ObservedInstrument>(i), Attributes{}, 1.0,
                            1'700'000'000'000'000'000ull);
  }
  auto server = MetricsHttpServer::Start("127.0.0.1:0", recorder,
                                         [] { return ToSelfMetrics(EverythingOn()); }, {});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return "";
  return (*server)->RenderMetrics();
}

const std::regex& DocMetricName() {
  static const std::regex* const kPattern = new std::regex(R"((^|[^a-z0-9_.])(loupe_[a-z0-9_]+))");
  return *kPattern;
}

TEST(DocsReferenceTest, MetricsReferenceNamesEveryMetricServed) {
  const std::string served_text = RenderedMetrics();
  const std::set<std::string> served =
      Matches(served_text, std::regex(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) )"), 1);
  // A sanity check that the exposition was read at all (one of each origin).
  ASSERT_THAT(served,
              ::testing::IsSupersetOf(
                  {"http_server_request_duration_seconds", "rpc_client_duration_milliseconds",
                   "db_client_operation_duration_seconds", "traces_service_graph_request_total",
                   "process_cpu_time_seconds_total", "loupe_events_lost_total",
                   "loupe_prometheus_scrapes_total", "loupe_container_memory_limit_bytes"}))
      << served_text;
  const std::string doc = ReadSource("docs/metrics.md");
  // Prometheus names as the doc writes them, in backquotes (a table cell or
  // a name{labels} form).
  const std::set<std::string> documented =
      Matches(doc, std::regex(R"(`([a-zA-Z_:][a-zA-Z0-9_:]*)[`{])"), 1);
  EXPECT_THAT(Minus(served, documented), ::testing::IsEmpty())
      << "served on /metrics but missing from docs/metrics.md";
  // The agent's own names are all loupe_*: none may be documented that the
  // agent does not serve.
  EXPECT_THAT(Minus(Matches(doc, DocMetricName(), 2), served), ::testing::IsEmpty())
      << "named in docs/metrics.md but never served (renamed or removed?)";
}

// The lines of docs/metrics.md that name `metric` (table rows are one line).
std::vector<std::string> DocLinesNaming(const std::string& doc, const std::string& metric) {
  std::vector<std::string> out;
  std::istringstream lines(doc);
  const std::regex pattern("(^|[^a-z0-9_])" + metric + "([^a-z0-9_]|$)");
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, pattern)) out.push_back(line);
  }
  return out;
}

TEST(DocsReferenceTest, MetricsReferenceGivesTheLabelsOfTheAgentsOwnMetrics) {
  const std::string doc = ReadSource("docs/metrics.md");
  // name{key,key} as the doc writes them.
  std::map<std::string, std::set<std::string>> doc_keys;
  const std::regex braces(R"((loupe_[a-z0-9_]+)\{([a-z0-9_,]+)\})");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), braces); it != std::sregex_iterator();
       ++it) {
    std::set<std::string>& keys = doc_keys[(*it)[1].str()];
    std::stringstream list((*it)[2].str());
    for (std::string key; std::getline(list, key, ',');) keys.insert(key);
  }
  std::map<std::string, std::set<std::string>> code_keys;
  std::map<std::string, std::set<std::string>> enumerated_values;
  for (const SelfMetric& m : ToSelfMetrics(EverythingOn())) {
    std::set<std::string>& keys = code_keys[m.name];
    for (const auto& [key, value] : m.labels) {
      keys.insert(key);
      // Values from a fixed set the reader filters on; exporter names and
      // pod names are open-ended.
      if (key == "reason" || key == "kind" || key == "method" || key == "entity") {
        enumerated_values[m.name].insert(value);
      }
    }
  }
  for (const auto& [name, keys] : code_keys) {
    if (keys.empty()) {
      EXPECT_EQ(doc_keys.count(name), 0u) << name << " has no labels, docs/metrics.md gives some";
      continue;
    }
    if (doc_keys.count(name) == 0) {
      ADD_FAILURE() << "docs/metrics.md should write " << name << "{...} with its label keys";
      continue;
    }
    EXPECT_EQ(doc_keys[name], keys) << "label keys of " << name;
  }
  for (const auto& [name, values] : enumerated_values) {
    const std::vector<std::string> lines = DocLinesNaming(doc, name);
    for (const std::string& value : values) {
      bool found = false;
      for (const std::string& line : lines) {
        found = found || line.find("`" + value + "`") != std::string::npos;
      }
      EXPECT_TRUE(found) << "docs/metrics.md does not give the value `" << value << "` of " << name
                         << " on the line that names it";
    }
  }
}

// ---- Environment variables ---------------------------------------------------

// "OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_PROTOCOL" -> the three names.
std::set<std::string> ExpandBraces(const std::string& name) {
  const size_t open = name.find('{');
  const size_t close = name.find('}');
  if (open == std::string::npos || close == std::string::npos || close < open) return {name};
  std::set<std::string> out;
  std::stringstream list(name.substr(open + 1, close - open - 1));
  for (std::string part; std::getline(list, part, ',');) {
    for (const std::string& rest : ExpandBraces(name.substr(close + 1))) {
      out.insert(name.substr(0, open) + part + rest);
    }
  }
  return out;
}

// Environment variables a text names: "[env: X]" and the "Environment only:"
// lines of --help, or any OTEL_/LOUPE_ name in prose.
std::set<std::string> VariablesIn(const std::string& text) {
  std::set<std::string> out;
  const std::regex name(R"((^|[^A-Za-z0-9_])((OTEL|LOUPE)_[A-Z0-9_]*(\{[A-Z,]+\}[A-Z0-9_]*)?))");
  for (const std::string& found : Matches(text, name, 2)) {
    for (const std::string& one : ExpandBraces(found)) out.insert(one);
  }
  return out;
}

TEST(DocsReferenceTest, HelpNamesExactlyTheVariablesTheParserReads) {
  // With an endpoint, every signal goes to OTLP, so the parser asks for every
  // per-signal variable as well.
  std::set<std::string> asked;
  const Environment recording = [&asked](const char* name) -> const char* {
    asked.insert(name);
    return std::string(name) == "OTEL_EXPORTER_OTLP_ENDPOINT" ? "http://127.0.0.1:4318" : nullptr;
  };
  const char* const argv[] = {"loupe"};
  auto config = ParseFlags(1, argv, recording);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->otlp_traces && config->otlp_metrics && config->otlp_logs);
  ASSERT_THAT(asked, ::testing::Contains("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"));

  // --help names variables in "[env: X]" and under "Environment only:";
  // anything else in its text that looks like one is a variable too.
  const std::set<std::string> in_help = VariablesIn(HelpText());
  EXPECT_THAT(Minus(asked, in_help), ::testing::IsEmpty())
      << "read by the agent but not in `loupe --help` (nor docs/configuration.md)";
  EXPECT_THAT(Minus(in_help, asked), ::testing::IsEmpty())
      << "named in `loupe --help` but never read by the flag parser";
  const std::set<std::string> in_doc = VariablesIn(ReadSource("docs/configuration.md"));
  EXPECT_THAT(Minus(asked, in_doc), ::testing::IsEmpty())
      << "read by the agent but not in docs/configuration.md";
}

// ---- Span attributes ---------------------------------------------------------

// Where span and resource attributes are set. Header capture keys
// (http.request.header.NAME, ...) are built from a prefix at run time and are
// left out: only whole keys are compared.
const char* const kAttributeSources[] = {
    "decoders/http1/http1_decoder.cc",       "decoders/http2/http2_decoder.cc",
    "decoders/postgres/postgres_decoder.cc", "decoders/mysql/mysql_decoder.cc",
    "decoders/redis/redis_decoder.cc",       "agent/process_info.cc",
};

// Namespaces of the keys Loupe sets; a string literal in those files that
// starts with one of them and ends in a name character is a key.
const std::regex& AttributeKeyLiteral() {
  static const std::regex* const kPattern = new std::regex(
      R"re("((http|url|db|rpc|server|client|network|error|loupe|process|container|k8s|service|telemetry|host)\.[a-z0-9_.]*[a-z0-9_])")re");
  return *kPattern;
}

std::set<std::string> KeysSetInCode() {
  std::set<std::string> keys;
  for (const char* file : kAttributeSources) {
    for (const std::string& key : Matches(ReadSource(file), AttributeKeyLiteral(), 1)) {
      keys.insert(key);
    }
  }
  return keys;
}

TEST(DocsReferenceTest, SpanReferenceListsEveryAttributeKeyTheCodeSets) {
  const std::set<std::string> code = KeysSetInCode();
  ASSERT_THAT(code, ::testing::IsSupersetOf(
                        {"http.route", "db.query.text", "rpc.grpc.status_code", "process.pid"}));
  const std::set<std::string> documented =
      Matches(ReadSource("docs/spans.md"), std::regex(R"(`([a-z][a-z0-9_]*(\.[a-z0-9_]+)+)`)"), 1);
  EXPECT_THAT(Minus(code, documented), ::testing::IsEmpty())
      << "set by the code but not listed in docs/spans.md";
}

TEST(DocsReferenceTest, SpanReferenceTablesListOnlyKeysTheCodeSets) {
  const std::set<std::string> code = KeysSetInCode();
  // The first cell of each table row of spans.md: the attribute column.
  std::set<std::string> listed;
  std::istringstream lines(ReadSource("docs/spans.md"));
  const std::regex key(R"(`([a-z][a-z0-9_]*(\.[a-z0-9_]+)+)`)");
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| ", 0) != 0) continue;
    const std::string first_cell = line.substr(0, line.find('|', 1));
    for (const std::string& k : Matches(first_cell, key, 1)) listed.insert(k);
  }
  ASSERT_THAT(listed, ::testing::Contains("http.request.method"));
  EXPECT_THAT(Minus(listed, code), ::testing::IsEmpty())
      << "listed in a docs/spans.md table but set nowhere in the code";
}

}  // namespace
}  // namespace loupe
