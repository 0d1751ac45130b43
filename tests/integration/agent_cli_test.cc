// The agent as a user meets it: privileges, flags, a missing tracefs, hooks
// switched off, signals. Real agent, real nginx and curl; run as root.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/test_support.h"

namespace loupe::testing {
namespace {

using ::testing::HasSubstr;

class AgentCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(IsRoot()) << "integration tests load BPF programs: run them as root";
  }
};

TEST_F(AgentCliTest, WithoutPrivilegesItRefusesInOneSentence) {
  const std::string setpriv = FindProgram({"/usr/bin/setpriv", "/bin/setpriv"});
  ASSERT_FALSE(setpriv.empty()) << "setpriv (util-linux) is needed";
  std::string out;
  const int status = RunCommand({setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "--inh-caps=-all", LoupeBinary(), "--no-console"},
                                &out);
  // RunCommand captures stdout only: the sentence goes to stderr, so run
  // again through a shell to see it.
  EXPECT_EQ(status, 1);
  std::string both;
  RunCommand({"/bin/sh", "-c",
              setpriv + " --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all " +
                  LoupeBinary() + " --no-console 2>&1"},
             &both);
  EXPECT_THAT(both, HasSubstr("loupe needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"));
  EXPECT_EQ(std::count(both.begin(), both.end(), '\n'), 1) << both;
}

TEST_F(AgentCliTest, BadFlagsExitTwoNamingTheFlag) {
  std::string out;
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", LoupeBinary() + " --port 0 2>&1"}, &out), 2);
  EXPECT_THAT(out, HasSubstr("invalid value '0' for --port: must be between 1 and 65535"));
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", LoupeBinary() + " --frobnicate 2>&1"}, &out), 2);
  EXPECT_THAT(out, HasSubstr("unknown flag --frobnicate (see loupe --help)"));
  EXPECT_EQ(RunCommand({LoupeBinary(), "--help"}, &out), 0);
  EXPECT_THAT(out, HasSubstr("Usage: loupe [FLAGS]"));
}

TEST_F(AgentCliTest, MountsTracefsWhenItIsMissing) {
  // Another agent run may have mounted it: take it away first.
  struct stat st {};
  if (stat("/sys/kernel/tracing/events", &st) == 0) {
    ASSERT_EQ(umount("/sys/kernel/tracing"), 0) << "tracefs is busy; cannot test the mount";
  }
  ASSERT_NE(stat("/sys/kernel/debug/tracing/events", &st), 0)
      << "tracefs reachable through debugfs; this test needs it absent";
  const std::string dir = MakeTempDir("loupe-it-cli");
  auto loupe = LoupeProcess::Start(dir, {"--port", "1"});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(dir + "/loupe.log");
  EXPECT_EQ(loupe->Stop(), 0);
  EXPECT_THAT(loupe->Log(), HasSubstr("mounted tracefs at /sys/kernel/tracing"));
  EXPECT_EQ(stat("/sys/kernel/tracing/events/syscalls", &st), 0);
}

TEST_F(AgentCliTest, SkippedHooksAreReportedAndTheOthersRun) {
  std::string error;
  auto nginx = NginxServer::Start({{"page.txt", std::string(300, 'x')}}, &error);
  ASSERT_TRUE(nginx) << error;
  auto loupe = LoupeProcess::Start(
      nginx->dir(), {"--port", std::to_string(nginx->port()), "--skip-hooks",
                     "sys_enter_writev,sys_exit_writev"});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  ASSERT_EQ(RunCommand({"/usr/bin/curl", "-s", "-o", "/dev/null", nginx->url("/page.txt")}), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(loupe->Stop(), 0);
  const std::string log = loupe->Log();
  EXPECT_THAT(log, HasSubstr("hook syscalls/sys_enter_writev is off: switched off by --skip-hooks"));
  EXPECT_THAT(log, HasSubstr("hook syscalls/sys_exit_writev is off: switched off by --skip-hooks"));
  // Two of the hooks off, every other one attached (25 syscall tracepoints,
  // oom:mark_victim, sched:sched_process_exec and sched:sched_process_exit).
  EXPECT_THAT(log, HasSubstr("ready: 26 of 28 hooks attached"));
  // curl sends with sendto and reads with recvfrom: still traced, exactly.
  int clients = 0;
  for (const Json& s : loupe->Spans()) {
    SCOPED_TRACE(s.dump());
    if (s["kind"] == "CLIENT") {
      ++clients;
      EXPECT_EQ(s["attributes"]["url.path"], "/page.txt");
      EXPECT_EQ(s["attributes"]["http.response.status_code"], 200);
      EXPECT_EQ(s["attributes"]["http.response.body.size"], 300);
    } else {
      // nginx writes its headers with writev, unseen now: whatever the
      // server side decodes must still be this request, never garbage.
      EXPECT_EQ(s["attributes"]["url.path"], "/page.txt");
    }
  }
  EXPECT_EQ(clients, 1);
}

TEST_F(AgentCliTest, PidFilterTracesOnlyThoseProcesses) {
  std::string error;
  auto nginx = NginxServer::Start({{"p.txt", "p\n"}}, &error);
  ASSERT_TRUE(nginx) << error;
  const std::vector<pid_t> workers = nginx->Workers();
  ASSERT_EQ(workers.size(), 1u);
  auto loupe = LoupeProcess::Start(nginx->dir(), {"--pid", std::to_string(workers[0])});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");
  EXPECT_THAT(loupe->Log(), HasSubstr("tracing pids " + std::to_string(workers[0])));
  ASSERT_EQ(RunCommand({"/usr/bin/curl", "-s", "-o", "/dev/null", nginx->url("/p.txt")}), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(loupe->Stop(), 0);
  // The nginx worker's SERVER span, and nothing from curl.
  const std::vector<Json> spans = loupe->Spans();
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0]["kind"], "SERVER");
  EXPECT_EQ(spans[0]["resource"]["process.pid"], workers[0]);
  EXPECT_EQ(spans[0]["attributes"]["url.path"], "/p.txt");
}

// The value of loupe_process_events_total{kind="<kind>"} on /metrics, or -1.
double ProcessEventsMetric(const std::string& metrics, const std::string& kind) {
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("loupe_process_events_total{", 0) != 0) continue;
    if (line.find("kind=\"" + kind + "\"") == std::string::npos) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

// Processes are read from /proc when they exec: a client that is gone
// before its first connection's event is decoded keeps its
// OTEL_SERVICE_NAME, and a process that execs takes its new program's name.
TEST_F(AgentCliTest, ProcessesAreNamedAtExecAndCounted) {
  std::string error;
  auto nginx = NginxServer::Start({{"short.txt", "s\n"}, {"before.txt", "b\n"},
                                   {"after.txt", "a\n"}},
                                  &error);
  ASSERT_TRUE(nginx) << error;
  const uint16_t metrics_port = PickFreePort();
  auto loupe = LoupeProcess::Start(
      nginx->dir(), {"--port", std::to_string(nginx->port()), "--metrics-listen",
                     "127.0.0.1:" + std::to_string(metrics_port)});
  ASSERT_TRUE(loupe) << ReadFileOrEmpty(nginx->dir() + "/loupe.log");

  ASSERT_EQ(RunCommand({"/usr/bin/env", "OTEL_SERVICE_NAME=short-lived-client", "/usr/bin/curl",
                        "-s", "-o", "/dev/null", nginx->url("/short.txt")}),
            0);
  // A shell that talks HTTP itself (bash's /dev/tcp, builtins only: the
  // same pid), then execs curl with another service name.
  const std::string port = std::to_string(nginx->port());
  const std::string script =
      "exec 3<>/dev/tcp/127.0.0.1/" + port +
      "; printf 'GET /before.txt HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
      "Connection: close\\r\\n\\r\\n' >&3"
      "; while IFS= read -r -u 3 line; do :; done; exec 3>&-"
      "; export OTEL_SERVICE_NAME=after-exec; exec /usr/bin/curl -s -o /dev/null " +
      nginx->url("/after.txt");
  ASSERT_EQ(RunCommand({"/usr/bin/env", "OTEL_SERVICE_NAME=before-exec", "/bin/bash", "-c",
                        script}),
            0);

  // Exec and exit events are counted (the stats are published each tick).
  double execs = -1, exits = -1;
  std::string metrics;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    RunCommand({"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(metrics_port) +
                                           "/metrics"},
               &metrics);
    execs = ProcessEventsMetric(metrics, "exec");
    exits = ProcessEventsMetric(metrics, "exit");
    if (execs >= 3 && exits >= 2) break;
  }
  EXPECT_GE(execs, 3) << metrics;  // env, curl, env, bash, curl (and the scrapes)
  EXPECT_GE(exits, 2) << metrics;
  EXPECT_EQ(loupe->Stop(), 0);

  int short_lived = 0, after_exec = 0;
  for (const Json& s : loupe->Spans()) {
    if (s["kind"] != "CLIENT") continue;
    SCOPED_TRACE(s.dump());
    const std::string path = s["attributes"].value("url.path", "");
    if (path == "/short.txt") {
      ++short_lived;
      EXPECT_EQ(s["resource"]["service.name"], "short-lived-client");
    } else if (path == "/after.txt") {
      ++after_exec;
      EXPECT_EQ(s["resource"]["service.name"], "after-exec");
    } else if (path == "/before.txt") {
      EXPECT_EQ(s["resource"]["service.name"], "before-exec");
    }
  }
  EXPECT_EQ(short_lived, 1);
  EXPECT_EQ(after_exec, 1);
}

TEST_F(AgentCliTest, SigintFlushesAndExitsZero) {
  std::string error;
  auto nginx = NginxServer::Start({{"a.txt", "a\n"}}, &error);
  ASSERT_TRUE(nginx) << error;
  const std::string dir = nginx->dir();
  auto agent = Subprocess::Start({LoupeBinary(), "--no-console", "--jsonl", dir + "/s.jsonl",
                                  "--port", std::to_string(nginx->port())},
                                 "", dir + "/agent.log");
  ASSERT_TRUE(WaitForFileContaining(dir + "/agent.log", "ready:", std::chrono::seconds(60)));
  ASSERT_EQ(RunCommand({"/usr/bin/curl", "-s", "-o", "/dev/null", nginx->url("/a.txt")}), 0);
  agent->Signal(SIGINT);
  EXPECT_EQ(agent->Wait(std::chrono::seconds(30)), 0);
  EXPECT_THAT(ReadFileOrEmpty(dir + "/agent.log"), HasSubstr("received SIGINT, flushing and exiting"));
  // Flushed at exit: both spans are in the file.
  const std::string spans = ReadFileOrEmpty(dir + "/s.jsonl");
  EXPECT_EQ(std::count(spans.begin(), spans.end(), '\n'), 2) << spans;
}

}  // namespace
}  // namespace loupe::testing
