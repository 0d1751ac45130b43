#include "agent/process_info.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "agent/cgroup.h"
#include "agent/kubernetes.h"

namespace loupe {
namespace {

using namespace std::string_literals;

TEST(ProcessInfoTest, ServiceNameFromEnvironment) {
  EXPECT_EQ(ServiceNameFromEnviron("PATH=/bin\0OTEL_SERVICE_NAME=checkout\0HOME=/"s), "checkout");
  EXPECT_EQ(ServiceNameFromEnviron(
                "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod, service.name = cart \0"s),
            "cart");
  // OTEL_SERVICE_NAME wins over the resource attribute, wherever it is.
  EXPECT_EQ(ServiceNameFromEnviron(
                "OTEL_SERVICE_NAME=a\0OTEL_RESOURCE_ATTRIBUTES=service.name=b\0"s),
            "a");
  EXPECT_EQ(ServiceNameFromEnviron(
                "OTEL_RESOURCE_ATTRIBUTES=service.name=b\0OTEL_SERVICE_NAME=a\0"s),
            "a");
  EXPECT_EQ(ServiceNameFromEnviron("OTEL_RESOURCE_ATTRIBUTES=service.name=my%20shop%2Cv2\0"s),
            "my shop,v2");
  EXPECT_EQ(ServiceNameFromEnviron("OTEL_RESOURCE_ATTRIBUTES=service.namespace=x,bogus\0"s), "");
  EXPECT_EQ(ServiceNameFromEnviron("PATH=/bin\0OTEL_SERVICE_NAME=\0"s), "");
  EXPECT_EQ(ServiceNameFromEnviron(""), "");
}

TEST(ProcessInfoTest, ReadsAFakeProcFilesystem) {
  const std::string root = "/tmp/loupe-proc-test-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/77");
  std::ofstream(root + "/77/comm") << "nginx\n";
  std::ofstream(root + "/77/environ") << "A=1"s + '\0' + "OTEL_SERVICE_NAME=frontend"s + '\0';
  std::filesystem::create_symlink("/usr/sbin/nginx (deleted)", root + "/77/exe");
  ProcessInfo info = ReadProcessInfo(root, 77, "ignored");
  EXPECT_TRUE(info.from_proc);
  EXPECT_EQ(info.comm, "nginx");
  EXPECT_EQ(info.exe_path, "/usr/sbin/nginx");
  EXPECT_EQ(info.service_name, "frontend");

  // Gone before it could be read: the comm from the kernel event is kept.
  ProcessInfo gone = ReadProcessInfo(root, 78, "curl");
  EXPECT_FALSE(gone.from_proc);
  EXPECT_EQ(gone.comm, "curl");
  std::filesystem::remove_all(root);
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(ProcessInfoTest, ReadsCmdlineOwnerStartTimeAndCgroupFromAFakeProc) {
  const std::string root = "/tmp/loupe-proc-meta-test-" + std::to_string(getpid());
  const std::string id = "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c";
  const std::string cgroup = "/kubepods.slice/kubepods-burstable.slice/"
                             "kubepods-burstable-pod74ba62da_1a3d_11e7_bb11_080027cb0e22.slice/"
                             "cri-containerd-" + id + ".scope";
  std::filesystem::create_directories(root + "/77");
  std::filesystem::create_directories(root + "/self");
  // The cgroup2 "mount" is a plain directory tree here.
  std::filesystem::create_directories(root + "/cgroupfs" + cgroup);
  std::ofstream(root + "/self/mountinfo")
      << "41 31 0:38 / " << root << "/cgroupfs rw,relatime - cgroup2 cgroup2 rw\n";
  std::ofstream(root + "/stat") << "cpu  1 2 3 4\nintr 12 0 0\nctxt 99\nbtime 1700000000\n"
                                << "processes 1\n";
  std::ofstream(root + "/77/comm") << "python3\n";
  std::ofstream(root + "/77/cmdline") << "python3"s + '\0' + "-m"s + '\0' + "http.server"s + '\0';
  std::ofstream(root + "/77/status") << "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\n"
                                     << "Uid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
  // comm with a space and a parenthesis; starttime (field 22) 12345 ticks.
  std::ofstream(root + "/77/stat")
      << "77 (py (x) 3) S 1 77 77 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 12345 1000000 200 "
         "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  std::ofstream(root + "/77/cgroup") << "0::" << cgroup << "\n";

  const ProcessInfo info = ReadProcessInfo(root, 77, "");
  EXPECT_EQ(info.cmdline, "python3 -m http.server");
  EXPECT_EQ(info.uid, 0u);  // the effective one
  EXPECT_EQ(info.owner, "root");
  const long hz = sysconf(_SC_CLK_TCK);
  EXPECT_EQ(info.start_time_unix_ns,
            1700000000ull * 1000000000 + 12345ull * 1000000000 / static_cast<uint64_t>(hz));
  EXPECT_EQ(info.cgroup_path, cgroup);
  struct stat st;
  ASSERT_EQ(stat((root + "/cgroupfs" + cgroup).c_str(), &st), 0);
  EXPECT_EQ(info.cgroup_id, static_cast<uint64_t>(st.st_ino));
  EXPECT_EQ(info.container_id, id);
  EXPECT_EQ(info.container_runtime, "containerd");
  EXPECT_EQ(info.pod_uid, "74ba62da-1a3d-11e7-bb11-080027cb0e22");
  EXPECT_EQ(info.pod_qos, "burstable");
  EXPECT_EQ(info.systemd_unit, "");

  // A process whose files are partly gone or garbage: what can be read is
  // kept, the rest stays unknown.
  std::filesystem::create_directories(root + "/78");
  std::ofstream(root + "/78/comm") << "sshd\n";
  std::ofstream(root + "/78/status") << "Uid:\tnobody\n";
  std::ofstream(root + "/78/stat") << "78 (sshd) S 1 2 3";
  std::ofstream(root + "/78/cgroup") << "1:name=systemd:/system.slice/ssh.service\n"
                                     << "0::/system.slice/ssh.service\n";
  const ProcessInfo partial = ReadProcessInfo(root, 78, "");
  EXPECT_TRUE(partial.from_proc);
  EXPECT_EQ(partial.cmdline, "");
  EXPECT_EQ(partial.owner, "");
  EXPECT_EQ(partial.start_time_unix_ns, 0u);
  EXPECT_EQ(partial.cgroup_path, "/system.slice/ssh.service");
  EXPECT_EQ(partial.cgroup_id, 0u);  // no such directory under the mount
  EXPECT_EQ(partial.systemd_unit, "ssh.service");
  EXPECT_EQ(partial.container_id, "");

  // Gone: nothing but the comm it was given.
  const ProcessInfo gone = ReadProcessInfo(root, 79, "curl");
  EXPECT_EQ(gone, (ProcessInfo{79, "curl", "", "", false}));
  std::filesystem::remove_all(root);
}

TEST(ProcessInfoTest, OwnerOfAnUnknownUidIsItsNumber) {
  const std::string root = "/tmp/loupe-proc-owner-test-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/5");
  std::ofstream(root + "/5/status") << "Uid:\t4000000123\t4000000123\t4000000123\t4000000123\n";
  const ProcessInfo info = ReadProcessInfo(root, 5, "x");
  EXPECT_EQ(info.uid, 4000000123u);
  EXPECT_EQ(info.owner, "4000000123");
  std::filesystem::remove_all(root);
}

TEST(ProcessInfoTest, CmdlineIsJoinedAndBounded) {
  EXPECT_EQ(CmdlineFromProc("nginx: master process /usr/sbin/nginx"s),
            "nginx: master process /usr/sbin/nginx");  // rewritten by setproctitle
  EXPECT_EQ(CmdlineFromProc("a\0\0b\0\0\0"s), "a  b");  // an empty argument stays visible
  EXPECT_EQ(CmdlineFromProc(""), "");

  // Exactly at the bound (plus the final NUL): kept whole.
  std::string fits(kMaxCmdlineBytes, 'x');
  EXPECT_EQ(CmdlineFromProc(fits + '\0'), fits);
  // Over it: cut, marked, and still within the bound.
  const std::string cut = CmdlineFromProc(std::string(kMaxCmdlineBytes + 2, 'y'));
  EXPECT_EQ(cut.size(), kMaxCmdlineBytes);
  EXPECT_TRUE(cut.ends_with(kCmdlineCutMarker));
  EXPECT_EQ(cut.find('y', kMaxCmdlineBytes - kCmdlineCutMarker.size()), std::string::npos);
  // A cut never splits a UTF-8 character: "é" is two bytes, placed so that
  // the cut falls between them.
  std::string accents(kMaxCmdlineBytes - kCmdlineCutMarker.size() - 1, 'a');
  accents += "\xc3\xa9 and more text beyond the bound";
  accents += std::string(100, 'z');
  const std::string safe = CmdlineFromProc(accents);
  EXPECT_EQ(safe.size(), kMaxCmdlineBytes - 1);
  EXPECT_EQ(safe.substr(0, safe.size() - kCmdlineCutMarker.size()),
            std::string(kMaxCmdlineBytes - kCmdlineCutMarker.size() - 1, 'a'));

  // Read from a file longer than the bound.
  const std::string root = "/tmp/loupe-proc-cmdline-test-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/9");
  std::ofstream(root + "/9/cmdline") << "java"s + '\0' + std::string(10000, 'c') + '\0';
  const ProcessInfo info = ReadProcessInfo(root, 9, "java");
  EXPECT_EQ(info.cmdline.size(), kMaxCmdlineBytes);
  EXPECT_TRUE(info.cmdline.starts_with("java ccc"));
  EXPECT_TRUE(info.cmdline.ends_with(kCmdlineCutMarker));
  std::filesystem::remove_all(root);
}

TEST(ProcessInfoTest, StartTimeFromStatLines) {
  const std::string line =
      "1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 250 100 10 18446744073709551615";
  EXPECT_EQ(StartTimeFromStat(line, 1000, 100), 1002500000000u);
  EXPECT_EQ(StartTimeFromStat(line, 1000, 1000), 1000250000000u);
  EXPECT_EQ(StartTimeFromStat(line, 0, 100), 0u);     // no boot time
  EXPECT_EQ(StartTimeFromStat("1 (a) S 0", 1000, 100), 0u);  // too short
  EXPECT_EQ(StartTimeFromStat("garbage", 1000, 100), 0u);
  EXPECT_EQ(StartTimeFromStat(
                "1 (a) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 x2 100 10", 1000, 100),
            0u);
  EXPECT_EQ(FormatIso8601(1700000000123456789u), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatIso8601(0), "1970-01-01T00:00:00.000Z");
}

// The test process itself, through the real /proc.
TEST(ProcessInfoTest, ReadsItselfLive) {
  const ProcessInfo info = ReadProcessInfo("/proc", static_cast<uint32_t>(getpid()), "");
  ASSERT_TRUE(info.from_proc);
  EXPECT_EQ(info.uid, static_cast<uint32_t>(geteuid()));
  EXPECT_FALSE(info.owner.empty());
  EXPECT_NE(info.cmdline.find("agent_test"), std::string::npos) << info.cmdline;

  // Started within the last hour, and not in the future (btime is whole
  // seconds, truncated: the computed start may be up to a second early).
  const auto now_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());
  EXPECT_LE(info.start_time_unix_ns, now_ns + 2'000'000'000ull);
  EXPECT_GE(info.start_time_unix_ns, now_ns - 3600'000'000'000ull);

  // The cgroup path is what /proc/self/cgroup says: the v2 path unless it
  // is the root, else the memory controller's.
  std::string unified, memory;
  std::istringstream lines(ReadWholeFile("/proc/self/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("0::")) unified = line.substr(3);
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    const std::string controllers = line.substr(first + 1, second - first - 1);
    if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      memory = line.substr(second + 1);
    }
  }
  const std::string want = !unified.empty() && unified != "/" ? unified : memory;
  EXPECT_EQ(info.cgroup_path, want);
  if (!unified.empty() && unified != "/") {
    const CgroupMounts mounts = ReadCgroupMounts("/proc");
    struct stat st;
    if (!mounts.unified.empty() && stat((mounts.unified + unified).c_str(), &st) == 0) {
      EXPECT_EQ(info.cgroup_id, static_cast<uint64_t>(st.st_ino));
    }
  }

  const auto resource = MakeProcessResource(info, "h");
  EXPECT_EQ(*resource->attributes.FindString("process.owner"), info.owner);
  EXPECT_EQ(resource->attributes.Find("process.command_line"), nullptr) << "may carry secrets";
  EXPECT_NE(resource->attributes.FindString("process.creation.time"), nullptr);
}

TEST(ProcessInfoTest, ResourceCarriesProcessAndContainerFacts) {
  ProcessInfo info{42, "java", "/usr/bin/java", "orders", true};
  info.cmdline = "java -jar orders.jar";
  info.uid = 1000;
  info.owner = "app";
  info.start_time_unix_ns = 1700000000123456789u;
  info.cgroup_path = "/kubepods/burstable/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/abc";
  info.cgroup_id = 4242;
  info.container_id = "cb1eadb7abe3a6545e9856411207073277838e1bdc003337c2f8685faeedc32c";
  info.container_runtime = "containerd";
  info.pod_uid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
  info.pod_qos = "burstable";
  auto r = MakeProcessResource(info, "node-1");
  // Read, never exported: arguments may be passwords.
  EXPECT_EQ(r->attributes.Find("process.command_line"), nullptr);
  EXPECT_EQ(*r->attributes.FindString("process.owner"), "app");
  EXPECT_EQ(*r->attributes.FindString("process.creation.time"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(*r->attributes.FindString("container.id"), info.container_id);
  EXPECT_EQ(*r->attributes.FindString("container.runtime"), "containerd");
  EXPECT_EQ(*r->attributes.FindString("k8s.pod.uid"), info.pod_uid);
  EXPECT_EQ(*r->attributes.FindString("loupe.cgroup.path"), info.cgroup_path);
  EXPECT_EQ(*r->attributes.FindInt("loupe.cgroup.id"), 4242);

  // Unknown facts are left out, not sent empty: a process from an old
  // recording gets exactly the attributes it had.
  auto bare = MakeProcessResource(ProcessInfo{42, "java", "/usr/bin/java", "orders", true}, "h");
  for (const char* key :
       {"process.command_line", "process.owner", "process.creation.time", "container.id",
        "container.runtime", "k8s.pod.uid", "loupe.cgroup.path", "loupe.cgroup.id"}) {
    EXPECT_EQ(bare->attributes.Find(key), nullptr) << key;
  }
}

TEST(ProcessInfoTest, ResourceUsesServiceNameThenExecutable) {
  ProcessInfo info{10, "python3", "/usr/bin/python3.11", "", true};
  auto r = MakeProcessResource(info, "host-a");
  EXPECT_EQ(r->service_name(), "python3.11");
  EXPECT_EQ(*r->attributes.FindString("process.executable.name"), "python3.11");
  EXPECT_EQ(*r->attributes.FindString("process.executable.path"), "/usr/bin/python3.11");
  EXPECT_EQ(*r->attributes.FindInt("process.pid"), 10);
  EXPECT_EQ(*r->attributes.FindString("host.name"), "host-a");
  info.service_name = "billing";
  EXPECT_EQ(MakeProcessResource(info, "host-a")->service_name(), "billing");
  EXPECT_EQ(*r->attributes.FindString("service.instance.id"), "host-a:10");
  // The agent's OTEL_RESOURCE_ATTRIBUTES add to, never override, a process.
  auto extra = MakeProcessResource(info, "host-a",
                                   {{"deployment.environment", "prod"}, {"service.name", "x"}});
  EXPECT_EQ(*extra->attributes.FindString("deployment.environment"), "prod");
  EXPECT_EQ(extra->service_name(), "billing");
  ProcessInfo bare{11, "curl", "", "", false};
  EXPECT_EQ(MakeProcessResource(bare, "h")->service_name(), "curl");
}

TEST(ProcessInfoTest, TableResolvesOnceAndIsBounded) {
  int resolutions = 0;
  ProcessTable table(
      "h",
      [&](uint32_t tgid, const std::string& comm) {
        ++resolutions;
        return ProcessInfo{tgid, comm.empty() ? "x" : comm, "", "", true};
      },
      /*max_entries=*/3);
  std::vector<uint32_t> observed;
  table.set_observer([&](const ProcessInfo& info) { observed.push_back(info.tgid); });
  table.Observe(1, "a");
  table.Observe(1, "a");
  EXPECT_EQ(resolutions, 1);
  EXPECT_EQ(table.ForProcess(1)->service_name(), "a");
  table.Observe(2, "b");
  table.Observe(3, "c");
  table.Observe(4, "d");  // evicts 1
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(observed, (std::vector<uint32_t>{1, 2, 3, 4}));
  table.ForProcess(1);  // resolved again
  EXPECT_EQ(resolutions, 5);
}

TEST(ProcessInfoTest, ForgetDropsTheEntryAndAReusedPidIsResolvedAfresh) {
  std::string next_name = "old";
  int resolutions = 0;
  ProcessTable table(
      "h",
      [&](uint32_t tgid, const std::string&) {
        ++resolutions;
        return ProcessInfo{tgid, next_name, "", "", true};
      },
      /*max_entries=*/2);
  table.Observe(7, "");
  table.Observe(8, "");
  EXPECT_EQ(table.ForProcess(7)->service_name(), "old");
  table.Forget(7);
  table.Forget(7);   // twice: no effect
  table.Forget(99);  // unknown: no effect
  EXPECT_EQ(table.size(), 1u);
  next_name = "new";
  table.Observe(7, "");  // the pid, reused
  EXPECT_EQ(resolutions, 3);
  EXPECT_EQ(table.ForProcess(7)->service_name(), "new");
  // The forgotten entry left the eviction order too: 8 is the oldest now.
  table.Observe(9, "");
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.ForProcess(7)->service_name(), "new");
  EXPECT_EQ(resolutions, 4);
  table.ForProcess(8);  // evicted: resolved again
  EXPECT_EQ(resolutions, 5);
}

TEST(ProcessInfoTest, PodMetadataNamesTheContainersProcesses) {
  PodCache pods;
  PodMetadata pod;
  pod.namespace_name = "shop";
  pod.pod_name = "orders-7d4b9c-x2x7q";
  pod.pod_uid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
  pod.node_name = "node-1";
  pod.deployment = "orders";
  pod.replicaset = "orders-7d4b9c";
  pod.containers = {{"app", std::string(64, 'a')}, {"sidecar", std::string(64, 'b')}};
  pods.Apply(PodEventType::kAdded, pod);

  ProcessInfo info{42, "java", "/usr/bin/java", "", true};
  info.container_id = std::string(64, 'a');
  auto r = MakeProcessResource(info, "node-1", {}, &pods);
  EXPECT_EQ(r->service_name(), "orders") << "the workload, without a name label";
  EXPECT_EQ(*r->attributes.FindString("k8s.namespace.name"), "shop");
  EXPECT_EQ(*r->attributes.FindString("k8s.pod.name"), "orders-7d4b9c-x2x7q");
  EXPECT_EQ(*r->attributes.FindString("k8s.pod.uid"), pod.pod_uid);
  EXPECT_EQ(*r->attributes.FindString("k8s.container.name"), "app");
  EXPECT_EQ(*r->attributes.FindString("k8s.node.name"), "node-1");
  EXPECT_EQ(*r->attributes.FindString("k8s.deployment.name"), "orders");
  EXPECT_EQ(*r->attributes.FindString("k8s.replicaset.name"), "orders-7d4b9c");
  EXPECT_EQ(r->attributes.Find("k8s.statefulset.name"), nullptr);

  // The name label comes before the workload; the process's own
  // OTEL_SERVICE_NAME before both.
  pod.labels["app.kubernetes.io/name"] = "orders-api";
  pods.Apply(PodEventType::kModified, pod);
  EXPECT_EQ(MakeProcessResource(info, "node-1", {}, &pods)->service_name(), "orders-api");
  info.service_name = "orders-svc";
  EXPECT_EQ(MakeProcessResource(info, "node-1", {}, &pods)->service_name(), "orders-svc");

  // A container the cache does not know: no k8s.* beyond the cgroup's.
  ProcessInfo other{43, "nginx", "/usr/sbin/nginx", "", true};
  other.container_id = std::string(64, 'c');
  auto o = MakeProcessResource(other, "node-1", {}, &pods);
  EXPECT_EQ(o->service_name(), "nginx");
  EXPECT_EQ(o->attributes.Find("k8s.pod.name"), nullptr);
}


// A process seen before the pod list knew its pod (the watch is late, or the
// pod was just created) is named again once the list changes, without
// reading /proc again; one whose pod was found is not.
TEST(ProcessInfoTest, ProcessSeenBeforeItsPodIsRenamedWhenThePodArrives) {
  PodCache pods;
  int resolutions = 0;
  ProcessTable table("node-1", [&](uint32_t tgid, const std::string&) {
    ++resolutions;
    ProcessInfo info{tgid, "java", "/usr/bin/java", "", true};
    info.container_id = std::string(64, 'a');
    return info;
  });
  table.set_pods(&pods);
  table.Observe(42, "java");
  const std::shared_ptr<const Resource> before = table.ForProcess(42);
  EXPECT_EQ(before->service_name(), "java");
  EXPECT_EQ(table.ForProcess(42), before) << "nothing changed: the same resource";

  PodMetadata pod;
  pod.namespace_name = "shop";
  pod.pod_name = "orders-7d4b9c-x2x7q";
  pod.pod_uid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
  pod.deployment = "orders";
  pod.containers = {{"app", std::string(64, 'a')}};
  pods.Apply(PodEventType::kAdded, pod);
  const std::shared_ptr<const Resource> after = table.ForProcess(42);
  EXPECT_EQ(after->service_name(), "orders");
  EXPECT_EQ(*after->attributes.FindString("k8s.pod.name"), "orders-7d4b9c-x2x7q");
  EXPECT_EQ(resolutions, 1) << "named again from what was read, not from /proc";
  // Found now: later changes of the list do not rename it again.
  pod.pod_name = "renamed";
  pods.Apply(PodEventType::kModified, pod);
  EXPECT_EQ(table.ForProcess(42), after);
}

}  // namespace
}  // namespace loupe
