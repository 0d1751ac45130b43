// agent/privileges.*: the feature report and what to keep, from given
// capability sets (pure), and the drop itself on real threads, in a forked
// child so that the test process keeps its own capabilities.
#include "agent/privileges.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loupe {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr CapabilityMask Caps(std::initializer_list<int> caps) {
  CapabilityMask mask = 0;
  for (int cap : caps) mask |= CapabilityBit(cap);
  return mask;
}

// What systemd grants through packaging/systemd/loupe.service.
constexpr CapabilityMask kUnitSet =
    Caps({kCapBpf, kCapPerfmon, kCapSysPtrace, kCapDacReadSearch, kCapSetpcap});
// Everything Linux 6.x knows (CAP_LAST_CAP is 40, CAP_CHECKPOINT_RESTORE).
constexpr CapabilityMask kRoot = (CapabilityMask{1} << 41) - 1;

PrivilegeFacts Facts(CapabilityMask effective) {
  PrivilegeFacts f;
  f.effective = effective;
  f.kernel_major = 6;
  f.kernel_minor = 1;
  f.metrics_port = 9464;
  return f;
}

TEST(CapabilityNamesTest, NamesInCapabilityOrder) {
  EXPECT_EQ(CapabilityNames(Caps({kCapSysPtrace, kCapDacReadSearch})),
            "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE");
  EXPECT_EQ(CapabilityNames(Caps({kCapBpf, kCapPerfmon})), "CAP_PERFMON, CAP_BPF");
  EXPECT_EQ(CapabilityNames(0), "none");
}

TEST(CapabilityNamesTest, ParsesNamesAsSystemdAndSetprivWriteThem) {
  EXPECT_EQ(CapabilityFromName("CAP_BPF"), kCapBpf);
  EXPECT_EQ(CapabilityFromName("cap_perfmon"), kCapPerfmon);
  EXPECT_EQ(CapabilityFromName("sys_ptrace"), kCapSysPtrace);
  EXPECT_EQ(CapabilityFromName(" CAP_DAC_READ_SEARCH "), kCapDacReadSearch);
  EXPECT_EQ(CapabilityFromName("CAP_PERFMONX"), std::nullopt);
  EXPECT_EQ(CapabilityFromName(""), std::nullopt);
}

TEST(CapabilityNamesTest, ParsesProcStatusMasks) {
  EXPECT_EQ(ParseCapabilityHex("\t000001fffeffffff"), CapabilityMask{0x000001fffeffffff});
  EXPECT_EQ(ParseCapabilityHex("0000000000080004\n"), Caps({kCapDacReadSearch, kCapSysPtrace}));
  EXPECT_EQ(ParseCapabilityHex("zz"), std::nullopt);
  EXPECT_EQ(ParseCapabilityHex(""), std::nullopt);
}

TEST(AssessPrivilegesTest, RootHasEverything) {
  const PrivilegeAssessment a = AssessPrivileges(Facts(kRoot));
  EXPECT_EQ(a.fatal, std::nullopt);
  EXPECT_THAT(a.features_off, IsEmpty());
}

TEST(AssessPrivilegesTest, TheUnitSetHasEverythingTheRunningAgentUses) {
  PrivilegeFacts f = Facts(kUnitSet);
  f.uid = 61184;  // a systemd dynamic user
  const PrivilegeAssessment a = AssessPrivileges(f);
  EXPECT_EQ(a.fatal, std::nullopt);
  EXPECT_THAT(a.features_off, IsEmpty());
}

TEST(AssessPrivilegesTest, WithoutBpfCapabilitiesLiveTracingCannotStart) {
  const PrivilegeAssessment none = AssessPrivileges(Facts(Caps({kCapSysPtrace})));
  ASSERT_TRUE(none.fatal);
  EXPECT_THAT(*none.fatal,
              AllOf(HasSubstr("loupe needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"),
                    HasSubstr("has neither"), HasSubstr("--replay")));
  // A fatal problem is the only thing said.
  EXPECT_THAT(none.features_off, IsEmpty());

  const PrivilegeAssessment bpf = AssessPrivileges(Facts(Caps({kCapBpf})));
  ASSERT_TRUE(bpf.fatal);
  EXPECT_THAT(*bpf.fatal, HasSubstr("has only CAP_BPF"));
  const PrivilegeAssessment perfmon = AssessPrivileges(Facts(Caps({kCapPerfmon})));
  ASSERT_TRUE(perfmon.fatal);
  EXPECT_THAT(*perfmon.fatal, HasSubstr("has only CAP_PERFMON"));
}

TEST(AssessPrivilegesTest, SysAdminAloneLoadsButReadsNoOtherProcess) {
  const PrivilegeAssessment a = AssessPrivileges(Facts(Caps({kCapSysAdmin})));
  EXPECT_EQ(a.fatal, std::nullopt);
  ASSERT_THAT(a.features_off, SizeIs(2));
  EXPECT_THAT(a.features_off[0], AllOf(HasSubstr("CAP_SYS_PTRACE"),
                                       HasSubstr("OTEL_SERVICE_NAME"),
                                       HasSubstr("process.executable.path")));
  EXPECT_THAT(a.features_off[1],
              AllOf(HasSubstr("CAP_DAC_READ_SEARCH"), HasSubstr("another user")));
}

TEST(AssessPrivilegesTest, OneLinePerMissingFeature) {
  const PrivilegeAssessment a =
      AssessPrivileges(Facts(kUnitSet & ~CapabilityBit(kCapSysPtrace)));
  EXPECT_EQ(a.fatal, std::nullopt);
  ASSERT_THAT(a.features_off, SizeIs(1));
  EXPECT_THAT(a.features_off[0], HasSubstr("without CAP_SYS_PTRACE"));
}

TEST(AssessPrivilegesTest, DacOverrideDoesNotCountBecauseItIsDropped) {
  const PrivilegeAssessment a = AssessPrivileges(
      Facts(Caps({kCapBpf, kCapPerfmon, kCapSysPtrace, kCapDacOverride})));
  ASSERT_THAT(a.features_off, SizeIs(1));
  EXPECT_THAT(a.features_off[0], HasSubstr("CAP_DAC_READ_SEARCH"));
}

TEST(AssessPrivilegesTest, MissingTracefsNeedsSysAdminToMount) {
  PrivilegeFacts f = Facts(kUnitSet);
  f.tracefs = TracefsState::kMissing;
  const PrivilegeAssessment a = AssessPrivileges(f);
  ASSERT_TRUE(a.fatal);
  EXPECT_THAT(*a.fatal, AllOf(HasSubstr("tracefs is not mounted"), HasSubstr("CAP_SYS_ADMIN"),
                              HasSubstr("mount -t tracefs nodev /sys/kernel/tracing")));
  f.effective |= CapabilityBit(kCapSysAdmin);
  EXPECT_EQ(AssessPrivileges(f).fatal, std::nullopt);
}

TEST(AssessPrivilegesTest, UnreadableTracefsNeedsDacReadSearch) {
  PrivilegeFacts f = Facts(Caps({kCapBpf, kCapPerfmon, kCapSysPtrace}));
  f.uid = 61184;
  f.tracefs = TracefsState::kUnreadable;
  const PrivilegeAssessment a = AssessPrivileges(f);
  ASSERT_TRUE(a.fatal);
  EXPECT_THAT(*a.fatal, AllOf(HasSubstr("user 61184"), HasSubstr("CAP_DAC_READ_SEARCH")));
  f.effective |= CapabilityBit(kCapDacReadSearch);
  EXPECT_EQ(AssessPrivileges(f).fatal, std::nullopt);
}

TEST(AssessPrivilegesTest, LowMetricsPortNeedsNetBindService) {
  PrivilegeFacts f = Facts(kUnitSet);
  f.metrics_port = 80;
  const PrivilegeAssessment a = AssessPrivileges(f);
  ASSERT_TRUE(a.fatal);
  EXPECT_THAT(*a.fatal, AllOf(HasSubstr("port 80"), HasSubstr("CAP_NET_BIND_SERVICE"),
                              HasSubstr("1024")));
  f.unprivileged_port_start = 80;  // the sysctl lowered: no capability needed
  EXPECT_EQ(AssessPrivileges(f).fatal, std::nullopt);
  f.unprivileged_port_start = 1024;
  f.effective |= CapabilityBit(kCapNetBindService);
  EXPECT_EQ(AssessPrivileges(f).fatal, std::nullopt);
  f.metrics_port = 0;  // ephemeral or no listener
  f.effective = kUnitSet;
  EXPECT_EQ(AssessPrivileges(f).fatal, std::nullopt);
}

TEST(AssessPrivilegesTest, MemlockMattersOnlyBefore511) {
  PrivilegeFacts f = Facts(kUnitSet);
  f.kernel_major = 5;
  f.kernel_minor = 10;
  f.memlock_unlimited = false;
  PrivilegeAssessment a = AssessPrivileges(f);
  ASSERT_THAT(a.features_off, SizeIs(1));
  EXPECT_THAT(a.features_off[0],
              AllOf(HasSubstr("RLIMIT_MEMLOCK"), HasSubstr("Linux 5.10"),
                    HasSubstr("CAP_SYS_RESOURCE"), HasSubstr("LimitMEMLOCK=infinity")));
  f.memlock_unlimited = true;  // LimitMEMLOCK=infinity
  EXPECT_THAT(AssessPrivileges(f).features_off, IsEmpty());
  f.memlock_unlimited = false;
  f.effective |= CapabilityBit(kCapSysResource);
  EXPECT_THAT(AssessPrivileges(f).features_off, IsEmpty());
  f.effective = kUnitSet;
  f.kernel_minor = 11;
  EXPECT_THAT(AssessPrivileges(f).features_off, IsEmpty());
  f.kernel_major = 4;
  f.kernel_minor = 19;
  EXPECT_THAT(AssessPrivileges(f).features_off, SizeIs(1));
}

TEST(CapabilitiesToKeepTest, KeepsOnlyWhatReadingProcessesNeeds) {
  EXPECT_EQ(CapabilitiesToKeep(kRoot, false), Caps({kCapSysPtrace, kCapDacReadSearch}));
  EXPECT_EQ(CapabilitiesToKeep(kUnitSet, false), Caps({kCapSysPtrace, kCapDacReadSearch}));
  EXPECT_EQ(CapabilitiesToKeep(kRoot, true),
            Caps({kCapSysPtrace, kCapDacReadSearch, kCapBpf}));
  // Never more than the process had, and never CAP_SYS_ADMIN in place of
  // CAP_BPF.
  EXPECT_EQ(CapabilitiesToKeep(Caps({kCapSysAdmin, kCapDacReadSearch}), true),
            Caps({kCapDacReadSearch}));
  EXPECT_EQ(CapabilitiesToKeep(0, true), 0u);
}

TEST(ServingCapabilitiesTest, OnlyALowPortOrMapReads) {
  PrivilegeFacts f = Facts(kRoot);
  EXPECT_EQ(ServingCapabilities(kRoot, f, false), 0u);
  EXPECT_EQ(ServingCapabilities(kRoot, f, true), Caps({kCapBpf}));
  f.metrics_port = 443;
  EXPECT_EQ(ServingCapabilities(kRoot, f, false), Caps({kCapNetBindService}));
  EXPECT_EQ(ServingCapabilities(kUnitSet, f, false), 0u);  // cannot give what it lacks
}

// --- The drop, on real threads ----------------------------------------------

struct TaskCaps {
  CapabilityMask effective = 0, permitted = 0, bounding = 0, ambient = 0, inheritable = 0;
  bool no_new_privs = false;
};

TaskCaps ReadTask(pid_t tid) {
  TaskCaps t;
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    const std::string value = line.substr(colon + 1);
    if (key == "NoNewPrivs") t.no_new_privs = value.find('1') != std::string::npos;
    CapabilityMask* field = key == "CapEff"   ? &t.effective
                            : key == "CapPrm" ? &t.permitted
                            : key == "CapBnd" ? &t.bounding
                            : key == "CapAmb" ? &t.ambient
                            : key == "CapInh" ? &t.inheritable
                                              : nullptr;
    if (field != nullptr) *field = ParseCapabilityHex(value).value_or(~CapabilityMask{0});
  }
  return t;
}

pid_t Tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// Threads that idle until told to stop; `block_all` ones block every
// signal, as the metrics server's threads do.
class Idlers {
 public:
  void Start(bool block_all, CapabilityMask reduce_to = ~CapabilityMask{0}) {
    std::atomic<pid_t> tid{0};
    threads_.emplace_back([this, block_all, reduce_to, &tid] {
      if (reduce_to != ~CapabilityMask{0} && !ReduceThisThread(reduce_to).empty()) _exit(3);
      if (block_all) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, nullptr);
      }
      tid = Tid();
      while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    tids_.push_back(tid);
  }
  const std::vector<pid_t>& tids() const { return tids_; }
  ~Idlers() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::vector<pid_t> tids_;
};

// Runs in the death-test child: exits 0 when every thread holds exactly
// `keep`, prints what differs otherwise.
[[noreturn]] void DropAndCheckEveryThread() {
  const CapabilityMask keep = Caps({kCapSysPtrace, kCapDacReadSearch});
  Idlers idlers;
  for (int i = 0; i < 3; ++i) idlers.Start(false);
  const DropOutcome out = DropCapabilities(keep);
  int bad = 0;
  if (!out.error.empty()) {
    std::fprintf(stderr, "error: %s\n", out.error.c_str());
    ++bad;
  }
  if (out.threads != 4) {
    std::fprintf(stderr, "threads: %zu\n", out.threads);
    ++bad;
  }
  std::vector<pid_t> all = idlers.tids();
  all.push_back(Tid());
  for (pid_t tid : all) {
    const TaskCaps t = ReadTask(tid);
    if (t.effective != keep || t.permitted != keep || t.bounding != keep || t.ambient != 0 ||
        t.inheritable != 0 || !t.no_new_privs) {
      std::fprintf(stderr, "thread %d: eff %llx prm %llx bnd %llx nnp %d\n", tid,
                   static_cast<unsigned long long>(t.effective),
                   static_cast<unsigned long long>(t.permitted),
                   static_cast<unsigned long long>(t.bounding), t.no_new_privs);
      ++bad;
    }
  }
  // A thread started after the drop inherits it.
  idlers.Start(false);
  if (ReadTask(idlers.tids().back()).permitted != keep) ++bad;
  std::fflush(stderr);
  _exit(bad == 0 ? 0 : 1);
}

class DropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if ((ReadTask(Tid()).effective & kUnitSet) != kUnitSet) {
      GTEST_SKIP() << "needs root: the drop is checked on real capabilities";
    }
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(DropTest, EveryThreadKeepsExactlyTheKeptSet) {
  EXPECT_EXIT(DropAndCheckEveryThread(), ::testing::ExitedWithCode(0), "");
}

TEST_F(DropTest, AThreadBlockingEverySignalIsReportedNotIgnored) {
  EXPECT_EXIT(
      {
        Idlers idlers;
        idlers.Start(false);
        idlers.Start(true);
        const DropOutcome out = DropCapabilities(Caps({kCapSysPtrace}));
        const std::string expected = "threads " + std::to_string(idlers.tids()[1]) + " still";
        std::fprintf(stderr, "%s\n", out.error.c_str());
        std::fflush(stderr);
        _exit(out.error.find(expected) != std::string::npos ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(DropTest, ThreadsStartedReducedNeedNoSignal) {
  // The metrics server's case: threads that block every signal but were
  // created by a thread already reduced to a subset.
  EXPECT_EXIT(
      {
        Idlers idlers;
        idlers.Start(true, Caps({kCapNetBindService}));
        const DropOutcome out =
            DropCapabilities(Caps({kCapSysPtrace}), Caps({kCapNetBindService}));
        const TaskCaps t = ReadTask(idlers.tids()[0]);
        const bool ok = out.error.empty() && out.threads == 2 &&
                        t.permitted == Caps({kCapNetBindService}) && t.no_new_privs;
        std::fprintf(stderr, "%s\n", out.error.c_str());
        std::fflush(stderr);
        _exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace loupe
