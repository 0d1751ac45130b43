// End to end, everything real: the loupe agent (as root, with its BPF
// programs) and PostgreSQL 15 from Debian on loopback, a throw-away cluster
// initdb'd by the postgres user with trust authentication over TCP. The
// traced clients are psql (simple queries, one failing), pgbench's TPC-B-like
// script in its three query modes, and a libpq program using a named
// prepared statement (postgres_client.cc). One agent run covers everything;
// each client is its own process, so spans are told apart by process.pid.
// Only CLIENT spans exist: the PostgreSQL backends' side is not turned into
// spans.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

constexpr int kTransactions = 12;
constexpr int kPreparedExecutions = 4;
// Spans are stamped from CLOCK_MONOTONIC plus an offset fixed at agent
// start; the window check allows this much slack for that conversion.
constexpr uint64_t kClockSlackNs = 5'000'000;

struct Client {
  pid_t pid = 0;
  int exit_code = -1;
  uint64_t before_ns = 0;
  uint64_t after_ns = 0;
  std::string output;
};

struct RunResult {
  bool ok = false;
  std::string error;
  uint16_t port = 0;
  std::map<std::string, Client> clients;  // scenario -> client process
  std::vector<Json> spans;
  int loupe_exit = -1;
  int64_t spans_stat = -1;
  int64_t parse_errors = -1;
  std::string loupe_log;
  std::string dir;
};

RunResult* g_run = nullptr;

// Runs one client to completion, remembering its pid and time window.
Client RunClient(const std::vector<std::string>& argv, const std::string& dir,
                 const std::string& name) {
  Client c;
  const std::string out = dir + "/" + name + ".out";
  c.before_ns = UnixNowNs();
  auto p = Subprocess::Start(argv, out, out);
  c.pid = p->pid();
  c.exit_code = p->Wait(std::chrono::seconds(120)).value_or(-1);
  c.after_ns = UnixNowNs();
  c.output = ReadFileOrEmpty(out);
  return c;
}

RunResult RunEverything() {
  RunResult r;
  r.dir = MakeTempDir("loupe-it-postgres");
  PostgresServer server;
  r.error = server.Start(r.dir);
  if (!r.error.empty()) return r;
  r.port = server.port();

  // Set-up before the agent starts: not traced.
  auto run_setup = [&](std::vector<std::string> argv) {
    std::string out;
    if (RunCommand(argv, &out, {}, std::chrono::seconds(120)) != 0) {
      r.error = "set-up failed: " + out;
      return false;
    }
    return true;
  };
  std::vector<std::string> createdb = server.Connection("createdb");
  createdb.push_back("loupe");
  std::vector<std::string> init = server.Connection("pgbench");
  init.insert(init.end(), {"-i", "-q", "-s", "1", "loupe"});
  std::vector<std::string> table = server.Connection("psql");
  table.insert(table.end(), {"-X", "-d", "loupe", "-v", "ON_ERROR_STOP=1", "-c",
                             "CREATE TABLE loupe_items (id int PRIMARY KEY, name text, qty int); "
                             "INSERT INTO loupe_items VALUES (1, 'lamp', 0);"});
  if (!run_setup(createdb) || !run_setup(init) || !run_setup(table)) return r;

  auto loupe =
      LoupeProcess::Start(r.dir, {"--port", std::to_string(r.port), "--stats-interval", "1"});
  if (!loupe) {
    r.error = "loupe did not become ready: " + ReadFileOrEmpty(r.dir + "/loupe.log");
    return r;
  }

  // psql over TCP (the agent traces TCP only): simple queries from a script
  // file, one failing and one with a large result.
  WriteFile(r.dir + "/script.sql",
            "SELECT bid, bbalance FROM pgbench_branches WHERE bid IN (1, 2, 3);\n"
            "SELECT * FROM loupe_missing_table WHERE secret = 'hunter2';\n"
            "SELECT g, repeat('x', 200) AS filler FROM generate_series(1, 5000) g;\n"
            "INSERT INTO loupe_items (id, name, qty) VALUES (100, 'secret-widget', 5);\n");
  std::vector<std::string> psql = server.Connection("psql");
  psql.insert(psql.end(), {"-X", "-d", "loupe", "-f", r.dir + "/script.sql"});
  r.clients["psql"] = RunClient(psql, r.dir, "psql");

  for (const std::string mode : {"simple", "extended", "prepared"}) {
    std::vector<std::string> bench = server.Connection("pgbench");
    bench.insert(bench.end(),
                 {"-n", "-c", "1", "-t", std::to_string(kTransactions), "-M", mode, "loupe"});
    r.clients["pgbench-" + mode] = RunClient(bench, r.dir, "pgbench-" + mode);
  }

  r.clients["libpq"] =
      RunClient({LOUPE_POSTGRES_CLIENT,
                 "host=127.0.0.1 port=" + std::to_string(r.port) + " user=loupe dbname=loupe",
                 std::to_string(kPreparedExecutions)},
                r.dir, "libpq");

  for (const auto& [name, client] : r.clients) {
    if (client.exit_code != 0) {
      r.error = name + " failed (" + std::to_string(client.exit_code) + "): " + client.output;
    }
  }

  // Let the agent see the last close events and flush.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const bool alive = loupe->running();
  r.loupe_exit = loupe->Stop();
  if (!alive) r.error = "loupe died during the run";
  r.spans = loupe->Spans();
  r.spans_stat = loupe->FinalStat("spans");
  r.parse_errors = loupe->FinalStat("parse_errors");
  r.loupe_log = loupe->Log();
  server.Stop();
  r.ok = r.error.empty();
  return r;
}

class PostgresTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!IsRoot()) return;
    g_run = new RunResult(RunEverything());
  }
  static void TearDownTestSuite() {
    delete g_run;
    g_run = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
    ASSERT_TRUE(g_run != nullptr && g_run->ok) << (g_run ? g_run->error : "") << "\nagent log:\n"
                                               << (g_run ? g_run->loupe_log : "");
  }

  // The spans of one client process, in start order.
  static std::vector<Json> SpansOf(const std::string& scenario) {
    const Client& client = g_run->clients.at(scenario);
    std::vector<Json> out;
    for (const Json& s : g_run->spans) {
      if (s["resource"].value("process.pid", 0) == client.pid) out.push_back(s);
    }
    std::sort(out.begin(), out.end(), [](const Json& a, const Json& b) {
      return a["start_time_unix_nano"].get<uint64_t>() < b["start_time_unix_nano"].get<uint64_t>();
    });
    return out;
  }

  // What every PostgreSQL span carries.
  static void ExpectDbSpan(const Json& s, const std::string& scenario) {
    SCOPED_TRACE(s.dump());
    const Client& client = g_run->clients.at(scenario);
    EXPECT_EQ(s["kind"], "CLIENT");
    const Json& a = s["attributes"];
    EXPECT_EQ(a["db.system.name"], "postgresql");
    EXPECT_EQ(a["db.namespace"], "loupe");
    EXPECT_EQ(a["server.address"], "127.0.0.1");
    EXPECT_EQ(a["server.port"], g_run->port);
    const uint64_t start = s["start_time_unix_nano"];
    const uint64_t end = s["end_time_unix_nano"];
    EXPECT_LE(start, end);
    EXPECT_GE(start + kClockSlackNs, client.before_ns);
    EXPECT_LE(end, client.after_ns + kClockSlackNs);
  }

  static std::map<std::string, int> CountNames(const std::vector<Json>& spans) {
    std::map<std::string, int> out;
    for (const Json& s : spans) out[s["name"].get<std::string>()]++;
    return out;
  }

  // pgbench's TPC-B-like script: 7 statements per transaction.
  static void ExpectPgbench(const std::string& mode,
                            const std::map<std::string, std::string>& texts) {
    const std::string scenario = "pgbench-" + mode;
    const std::vector<Json> spans = SpansOf(scenario);
    std::map<std::string, int> counts = CountNames(spans);
    // pgbench's own set-up queries on its first connection (the scale
    // check) are not part of the transactions.
    std::map<std::string, int> transaction_counts;
    for (const auto& [name, text] : texts) transaction_counts[name] = counts[name];
    std::map<std::string, int> expected;
    for (const auto& [name, text] : texts) expected[name] = kTransactions;
    EXPECT_EQ(transaction_counts, expected) << scenario;
    for (const Json& s : spans) {
      const std::string name = s["name"];
      const auto it = texts.find(name);
      if (it == texts.end()) continue;
      SCOPED_TRACE(scenario + " " + name);
      ExpectDbSpan(s, scenario);
      const Json& a = s["attributes"];
      EXPECT_EQ(a["db.query.text"], it->second);
      EXPECT_EQ(s["status_code"], "UNSET");
      if (name == "SELECT pgbench_accounts") {
        EXPECT_EQ(a["db.response.returned_rows"], 1);
        EXPECT_EQ(a["db.operation.name"], "SELECT");
        EXPECT_EQ(a["db.collection.name"], "pgbench_accounts");
      }
      if (name.starts_with("UPDATE") || name.starts_with("INSERT")) {
        EXPECT_EQ(a["loupe.db.affected_rows"], 1);
      }
    }
  }
};

TEST_F(PostgresTest, AgentExitsCleanlyAndCountsSpans) {
  EXPECT_EQ(g_run->loupe_exit, 0);
  EXPECT_EQ(static_cast<size_t>(g_run->spans_stat), g_run->spans.size());
  EXPECT_EQ(g_run->parse_errors, 0) << g_run->loupe_log;
}

TEST_F(PostgresTest, OnlyClientSpansFromTheTracedClients) {
  std::set<int64_t> client_pids;
  for (const auto& [name, client] : g_run->clients) client_pids.insert(client.pid);
  ASSERT_FALSE(g_run->spans.empty());
  for (const Json& s : g_run->spans) {
    EXPECT_EQ(s["kind"], "CLIENT") << s.dump();
    EXPECT_EQ(client_pids.count(s["resource"]["process.pid"].get<int64_t>()), 1u) << s.dump();
  }
}

TEST_F(PostgresTest, PsqlSimpleQueriesAndAnError) {
  const std::vector<Json> spans = SpansOf("psql");
  ASSERT_EQ(spans.size(), 4u) << g_run->loupe_log;
  for (const Json& s : spans) ExpectDbSpan(s, "psql");

  EXPECT_EQ(spans[0]["name"], "SELECT pgbench_branches");
  EXPECT_EQ(spans[0]["attributes"]["db.query.text"],
            "SELECT bid, bbalance FROM pgbench_branches WHERE bid IN (?);");
  EXPECT_EQ(spans[0]["attributes"]["db.response.returned_rows"], 1);  // scale 1: one branch
  EXPECT_EQ(spans[0]["status_code"], "UNSET");
  EXPECT_FALSE(spans[0]["attributes"].contains("error.type"));

  EXPECT_EQ(spans[1]["name"], "SELECT loupe_missing_table");
  EXPECT_EQ(spans[1]["attributes"]["db.query.text"],
            "SELECT * FROM loupe_missing_table WHERE secret = ?;");
  EXPECT_EQ(spans[1]["status_code"], "ERROR");
  EXPECT_EQ(spans[1]["attributes"]["db.response.status_code"], "42P01");
  EXPECT_EQ(spans[1]["attributes"]["error.type"], "42P01");

  // A 1 MB result: psql reads it in large reads of which only a prefix is
  // copied, so its last messages may never be seen; the span still ends,
  // at the latest when psql writes its next query.
  EXPECT_EQ(spans[2]["name"], "SELECT");
  EXPECT_EQ(spans[2]["attributes"]["db.query.text"],
            "SELECT g, repeat(?, ?) AS filler FROM generate_series(?, ?) g;");
  EXPECT_EQ(spans[2]["status_code"], "UNSET");
  EXPECT_LE(spans[2]["attributes"].value("db.response.returned_rows", 0), 5000);

  EXPECT_EQ(spans[3]["name"], "INSERT loupe_items");
  EXPECT_EQ(spans[3]["attributes"]["db.query.text"],
            "INSERT INTO loupe_items (id, name, qty) VALUES (?, ?, ?);");
  EXPECT_EQ(spans[3]["attributes"]["loupe.db.affected_rows"], 1);

  // No literal left the agent.
  for (const Json& s : g_run->spans) {
    const std::string dump = s.dump();
    EXPECT_EQ(dump.find("hunter2"), std::string::npos);
    EXPECT_EQ(dump.find("secret-widget"), std::string::npos);
  }
}

TEST_F(PostgresTest, PgbenchSimpleProtocol) {
  ExpectPgbench(
      "simple",
      {{"BEGIN", "BEGIN;"},
       {"UPDATE pgbench_accounts",
        "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?;"},
       {"SELECT pgbench_accounts", "SELECT abalance FROM pgbench_accounts WHERE aid = ?;"},
       {"UPDATE pgbench_tellers",
        "UPDATE pgbench_tellers SET tbalance = tbalance + ? WHERE tid = ?;"},
       {"UPDATE pgbench_branches",
        "UPDATE pgbench_branches SET bbalance = bbalance + ? WHERE bid = ?;"},
       {"INSERT pgbench_history",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (?, ?, ?, ?, "
        "CURRENT_TIMESTAMP);"},
       {"END", "END;"}});
}

const std::map<std::string, std::string>& ExtendedTexts() {
  static const std::map<std::string, std::string> texts = {
      {"BEGIN", "BEGIN;"},
      {"UPDATE pgbench_accounts",
       "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"},
      {"SELECT pgbench_accounts", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"},
      {"UPDATE pgbench_tellers",
       "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;"},
      {"UPDATE pgbench_branches",
       "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;"},
      {"INSERT pgbench_history",
       "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, "
       "CURRENT_TIMESTAMP);"},
      {"END", "END;"}};
  return texts;
}

TEST_F(PostgresTest, PgbenchExtendedProtocol) { ExpectPgbench("extended", ExtendedTexts()); }

TEST_F(PostgresTest, PgbenchPreparedStatements) { ExpectPgbench("prepared", ExtendedTexts()); }

TEST_F(PostgresTest, LibpqNamedPreparedStatement) {
  const std::vector<Json> spans = SpansOf("libpq");
  // PQprepare runs nothing: no span. Each PQexecPrepared is one, with the
  // statement's text remembered from the Parse; then the PQexecParams.
  ASSERT_EQ(spans.size(), static_cast<size_t>(kPreparedExecutions + 1)) << g_run->loupe_log;
  for (int i = 0; i < kPreparedExecutions; ++i) {
    const Json& s = spans[static_cast<size_t>(i)];
    ExpectDbSpan(s, "libpq");
    EXPECT_EQ(s["name"], "UPDATE loupe_items");
    EXPECT_EQ(s["attributes"]["db.operation.name"], "UPDATE");
    EXPECT_EQ(s["attributes"]["db.collection.name"], "loupe_items");
    EXPECT_EQ(s["attributes"]["db.query.text"],
              "UPDATE loupe_items SET qty = qty + $1 WHERE id = $2");
    EXPECT_EQ(s["attributes"]["loupe.db.affected_rows"], 1);
    EXPECT_EQ(s["status_code"], "UNSET");
  }
  const Json& last = spans.back();
  ExpectDbSpan(last, "libpq");
  EXPECT_EQ(last["name"], "SELECT loupe_items");
  EXPECT_EQ(last["attributes"]["db.query.text"], "SELECT name, qty FROM loupe_items WHERE id = $1");
  EXPECT_EQ(last["attributes"]["db.response.returned_rows"], 1);
}

}  // namespace
}  // namespace loupe::testing
