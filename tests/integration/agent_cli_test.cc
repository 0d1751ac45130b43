// The agent as a user meets it: privileges, flags, a missing tracefs, hooks
// switched off, signals. Real agent, real nginx and curl; run as root.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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
  // Two of the hooks off, every other one attached (25 syscall tracepoints
  // and oom:mark_victim).
  EXPECT_THAT(log, HasSubstr("ready: 24 of 26 hooks attached"));
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
