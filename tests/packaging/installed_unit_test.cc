// The VM install, run: scripts/install.sh stages the binary, the unit and the
// settings file into a DESTDIR, and the installed binary is started the way
// loupe.service tells systemd to start it. systemd is not PID 1 here, so
// this test does systemd's part itself, from the installed files:
// - the user: DynamicUser=yes gives a uid from 61184-65519 and no
//   supplementary groups (setpriv --reuid/--regid/--clear-groups);
// - capabilities: CapabilityBoundingSet= and AmbientCapabilities= (setpriv
//   bounding, inheritable and ambient sets), NoNewPrivileges= (setpriv);
// - the environment: only what systemd sets plus EnvironmentFile=, parsed
//   with systemd's rules (tests/packaging/unit_file.h), working directory /;
// - ExecStart= with $LOUPE_ARGS split at whitespace.
// Not reproduced: the sandboxing directives (ProtectSystem=, PrivateTmp=,
// RestrictAddressFamilies=, ...), which need systemd's namespaces and
// seccomp; systemd-analyze verify checks their syntax (verify_unit.sh).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/privileges.h"
#include "tests/integration/test_support.h"
#include "tests/packaging/lingering_client.h"
#include "tests/packaging/unit_file.h"

namespace loupe::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// The first uid of systemd's dynamic range (DynamicUser=).
constexpr unsigned kDynamicUid = 61184;

std::string StatusField(pid_t pid, const std::string& key) {
  std::istringstream in(ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string value = line.substr(key.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "";
}

TEST(InstalledUnitTest, TheInstalledBinaryServesMetricsAndTracesAsTheUnitRunsIt) {
  ASSERT_TRUE(IsRoot()) << "the agent loads BPF programs: run as root";
  ASSERT_FALSE(FindProgram({"/usr/bin/setpriv"}).empty()) << "setpriv (util-linux) is needed";
  const std::string dest = MakeTempDir("loupe-unit-dest");
  std::string out;
  ASSERT_EQ(RunCommand({"/usr/bin/env", "DESTDIR=" + dest,
                        std::string(LOUPE_SOURCE_DIR) + "/scripts/install.sh", "--binary",
                        LoupeBinary()},
                       &out),
            0)
      << out;

  std::string error;
  auto nginx = NginxServer::Start({{"unit.txt", "from the unit\n"}}, &error);
  ASSERT_TRUE(nginx) << error;

  // Settings as an administrator would write them into the installed file.
  const std::string env_path = dest + "/etc/loupe/loupe.env";
  const uint16_t metrics_port = PickFreePort();
  WriteFile(env_path, ReadFileOrEmpty(env_path) + "LOUPE_METRICS_LISTEN=127.0.0.1:" +
                          std::to_string(metrics_port) + "\nLOUPE_ARGS=\"--port " +
                          std::to_string(nginx->port()) + " --stats-interval 0\"\n");

  // What the installed unit says.
  const std::optional<UnitFile> unit =
      ParseUnitFile(ReadFileOrEmpty(dest + "/etc/systemd/system/loupe.service"), &error);
  ASSERT_TRUE(unit) << error;
  ASSERT_EQ(unit->Last("Service.DynamicUser"), "yes");
  ASSERT_EQ(unit->Last("Service.User"), "") << "the emulation assumes a dynamic user";
  const bool no_new_privs = unit->Last("Service.NoNewPrivileges") == "yes";
  std::string environment_file = unit->Last("Service.EnvironmentFile");
  ASSERT_EQ(environment_file, "-/etc/loupe/loupe.env");
  environment_file = dest + environment_file.substr(1);  // '-': optional
  const std::vector<std::string> caps = UnitCapabilities(*unit, &error);
  ASSERT_FALSE(caps.empty()) << error;
  const std::optional<EnvironmentList> env =
      ParseEnvironmentFile(ReadFileOrEmpty(environment_file), &error);
  ASSERT_TRUE(env) << error;
  std::optional<std::vector<std::string>> exec =
      ExecStartArgv(unit->Last("Service.ExecStart"), *env, &error);
  ASSERT_TRUE(exec) << error;
  ASSERT_EQ((*exec)[0], "/usr/local/bin/loupe");
  (*exec)[0] = dest + (*exec)[0];

  std::vector<std::string> argv = SetprivArgv(caps, kDynamicUid, no_new_privs);
  // systemd's own environment for a DynamicUser= service, then the file's.
  argv.insert(argv.end(), {"/usr/bin/env", "-i", "-C", "/",
                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "HOME=/", "USER=loupe", "LOGNAME=loupe", "SHELL=/usr/sbin/nologin"});
  for (const auto& [key, value] : *env) argv.push_back(key + "=" + value);
  argv.insert(argv.end(), exec->begin(), exec->end());
  const std::string dir = nginx->dir();
  auto agent = Subprocess::Start(argv, dir + "/journal.stdout", dir + "/journal.stderr");
  const auto log = [&] { return ReadFileOrEmpty(dir + "/journal.stderr"); };
  ASSERT_TRUE(WaitForFileContaining(dir + "/journal.stderr", "ready:", std::chrono::seconds(60)))
      << log();

  EXPECT_THAT(log(), AllOf(HasSubstr("tracing all processes, ports " +
                                     std::to_string(nginx->port())),
                           HasSubstr("privileges: kept CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE; "
                                     "dropped CAP_SETPCAP, CAP_PERFMON, CAP_BPF"),
                           Not(HasSubstr("without CAP_"))));
  EXPECT_EQ(StatusField(agent->pid(), "Uid"), "61184\t61184\t61184\t61184");
  EXPECT_EQ(StatusField(agent->pid(), "CapEff"), "0000000000080004");
  EXPECT_EQ(StatusField(agent->pid(), "CapAmb"), "0000000000000000");
  EXPECT_EQ(StatusField(agent->pid(), "NoNewPrivs"), "1");

  // A client whose environment only CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
  // let the unprivileged agent read.
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  std::string status;
  ASSERT_EQ(RunCommand(LingeringCurlArgv("unit-client", nginx->url("/unit.txt"), silent), &status),
            kLingeringCurlExit);
  ASSERT_EQ(status, "200\n");
  const std::string metrics_url = "http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics";
  std::optional<double> served;
  std::string metrics;
  for (int i = 0; i < 50 && !served; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    RunCommand({"/usr/bin/curl", "-s", metrics_url}, &metrics);
    served = SumSamples(ParsePrometheusText(metrics), "http_server_request_duration_seconds_count",
                        {{"http_response_status_code", "200"}});
  }
  EXPECT_EQ(served.value_or(0), 1) << metrics;
  EXPECT_GT(SumSamples(ParsePrometheusText(metrics), "loupe_hooks_attached").value_or(0), 0);

  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(std::chrono::seconds(30)), 0) << log();
  // Console lines, which systemd would send to the journal.
  const std::string console = ReadFileOrEmpty(dir + "/journal.stdout");
  EXPECT_THAT(console, AllOf(HasSubstr(" CLIENT unit-client["), HasSubstr("SERVER nginx["),
                             HasSubstr("GET /unit.txt -> 200")));

  EXPECT_EQ(RunCommand({"/usr/bin/env", "DESTDIR=" + dest,
                        std::string(LOUPE_SOURCE_DIR) + "/scripts/uninstall.sh", "--purge"},
                       &out),
            0)
      << out;
  std::filesystem::remove_all(dest);
}

}  // namespace
}  // namespace loupe::testing
