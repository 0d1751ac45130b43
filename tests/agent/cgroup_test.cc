#include "agent/cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace loupe {
namespace {

// Ids and pod UIDs in the shapes the runtimes and the kubelet produce.
const std::string kId = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";
const std::string kOuterId = "a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413";
const std::string kPodUid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
const std::string kPodSlice = "74ba62da_1a3d_11e7_bb11_080027cb0e22";  // systemd driver's escape
const std::string kStaticPodUid = "487a0dc6dccaeefbcfedba7a7ce1ca18";  // manifest hash

struct PathCase {
  const char* what;
  std::string path;
  CgroupIdentity want;
};

std::vector<PathCase> Cases() {
  return {
      // Docker.
      {"docker, cgroupfs driver (v1 and v2)", "/docker/" + kId, {kId, "docker", "", "", ""}},
      {"docker, systemd driver", "/system.slice/docker-" + kId + ".scope",
       {kId, "docker", "", "", ""}},
      {"docker, systemd inside the container", "/system.slice/docker-" + kId + ".scope/init.scope",
       {kId, "docker", "", "", ""}},
      {"docker in docker: the innermost", "/docker/" + kOuterId + "/docker/" + kId,
       {kId, "docker", "", "", ""}},
      // Kubernetes, cgroupfs driver (containerd).
      {"k8s cgroupfs burstable", "/kubepods/burstable/pod" + kPodUid + "/" + kId,
       {kId, "containerd", kPodUid, "burstable", ""}},
      {"k8s cgroupfs guaranteed has no QoS level", "/kubepods/pod" + kPodUid + "/" + kId,
       {kId, "containerd", kPodUid, "guaranteed", ""}},
      {"k8s cgroupfs besteffort, process in a child cgroup",
       "/kubepods/besteffort/pod" + kPodUid + "/" + kId + "/kube-proxy",
       {kId, "containerd", kPodUid, "besteffort", ""}},
      {"k8s cgroupfs pod level: no container", "/kubepods/burstable/pod" + kPodUid,
       {"", "", kPodUid, "burstable", ""}},
      // Kubernetes, systemd driver.
      {"k8s systemd burstable containerd",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSlice +
           ".slice/cri-containerd-" + kId + ".scope",
       {kId, "containerd", kPodUid, "burstable", ""}},
      {"k8s systemd guaranteed containerd",
       "/kubepods.slice/kubepods-pod" + kPodSlice + ".slice/cri-containerd-" + kId + ".scope",
       {kId, "containerd", kPodUid, "guaranteed", ""}},
      {"k8s systemd besteffort docker (dockershim)",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kPodSlice +
           ".slice/docker-" + kId + ".scope",
       {kId, "docker", kPodUid, "besteffort", ""}},
      {"containerd creating the kubelet's slice:prefix:id name literally",
       "/system.slice/containerd.service/kubepods-besteffort-pod" + kPodSlice +
           ".slice:cri-containerd:" + kId,
       {kId, "containerd", kPodUid, "besteffort", ""}},
      {"kind: kubelet --cgroup-root=/kubelet, systemd driver",
       "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
       "kubelet-kubepods-besteffort-pod" +
           kPodSlice + ".slice/cri-containerd-" + kId + ".scope",
       {kId, "containerd", kPodUid, "besteffort", ""}},
      {"kind: k8s cgroupfs inside a docker node container",
       "/docker/" + kOuterId + "/kubepods/burstable/pod" + kPodUid + "/" + kId,
       {kId, "containerd", kPodUid, "burstable", ""}},
      {"another cgroup namespace: path starts with /..",
       "/../../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSlice +
           ".slice/cri-containerd-" + kId + ".scope",
       {kId, "containerd", kPodUid, "burstable", ""}},
      // CRI-O.
      {"cri-o systemd, static pod (hash UID)",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kStaticPodUid +
           ".slice/crio-" + kId + ".scope",
       {kId, "cri-o", kStaticPodUid, "burstable", ""}},
      {"cri-o v2: process in the container's child cgroup",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kPodSlice +
           ".slice/crio-" + kId + ".scope/container",
       {kId, "cri-o", kPodUid, "besteffort", ""}},
      {"cri-o cgroupfs", "/kubepods/burstable/pod" + kPodUid + "/crio-" + kId,
       {kId, "cri-o", kPodUid, "burstable", ""}},
      {"cri-o conmon is not the container",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSlice +
           ".slice/crio-conmon-" + kId + ".scope",
       {"", "", kPodUid, "burstable", ""}},
      // Podman.
      {"podman rootful, systemd", "/machine.slice/libpod-" + kId + ".scope",
       {kId, "podman", "", "", ""}},
      {"podman rootless, cgroup v2",
       "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId + ".scope",
       {kId, "podman", "", "", ""}},
      {"podman systemd in the container", "/machine.slice/libpod-" + kId + ".scope/container",
       {kId, "podman", "", "", ""}},
      {"podman cgroupfs", "/libpod_parent/libpod-" + kId, {kId, "podman", "", "", ""}},
      {"podman conmon is not the container, but a systemd scope",
       "/machine.slice/libpod-conmon-" + kId + ".scope",
       {"", "", "", "", "libpod-conmon-" + kId + ".scope"}},
      // containerd without Kubernetes.
      {"nerdctl, systemd driver", "/system.slice/nerdctl-" + kId + ".scope",
       {kId, "containerd", "", "", ""}},
      {"containerd scope", "/system.slice/containerd-" + kId + ".scope",
       {kId, "containerd", "", "", ""}},
      {"bare id under an unknown parent: runtime unknown", "/ecs/" + kStaticPodUid + "/" + kId,
       {kId, "", "", "", ""}},
      // systemd, no container.
      {"systemd service", "/system.slice/nginx.service", {"", "", "", "", "nginx.service"}},
      {"container runtime daemon itself", "/system.slice/containerd.service",
       {"", "", "", "", "containerd.service"}},
      {"template instance in a nested slice", "/system.slice/system-getty.slice/getty@tty1.service",
       {"", "", "", "", "getty@tty1.service"}},
      {"login session", "/user.slice/user-1000.slice/session-3.scope",
       {"", "", "", "", "session-3.scope"}},
      {"user manager's app: the system unit is the manager",
       "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-terminal.scope",
       {"", "", "", "", "user@1000.service"}},
      {"PID 1", "/init.scope", {"", "", "", "", "init.scope"}},
      {"a slice holds no processes itself", "/user.slice", {}},
      // Garbage and near misses.
      {"root", "/", {}},
      {"empty", "", {}},
      {"not a path", "garbage: \x01\xff", {}},
      {"truncated id", "/docker/" + kId.substr(0, 12), {}},
      // Still a systemd scope, just not a container.
      {"63 digits", "/system.slice/docker-" + kId.substr(1) + ".scope",
       {"", "", "", "", "docker-" + kId.substr(1) + ".scope"}},
      {"65 digits", "/system.slice/docker-" + kId + "0.scope",
       {"", "", "", "", "docker-" + kId + "0.scope"}},
      {"uppercase hex", "/docker/9EC39B91F3D70E1BEFF50A308F77067065EA6BE0D91A3378375056CD4422CF3D",
       {}},
      {"empty id", "/system.slice/docker-.scope", {"", "", "", "", "docker-.scope"}},
      {"sandbox memory cgroup (32 hex, not an id)",
       "/process_api/c05b9054be065f42616ee2ba68797e62", {}},
      {"pod UID of the wrong shape", "/kubepods/burstable/pod1234/" + kId,
       {kId, "containerd", "", "", ""}},
      {"unknown prefix in the colon form", "/x.slice:other:" + kId, {kId, "", "", "", ""}},
      {"colon form with a short id", "/x.slice:cri-containerd:abc", {}},
  };
}

TEST(CgroupTest, IdentityFromRealWorldPaths) {
  const std::vector<PathCase> cases = Cases();
  EXPECT_GE(cases.size(), 15u);
  for (const PathCase& c : cases) {
    const CgroupIdentity got = ParseCgroupPath(c.path);
    EXPECT_EQ(got.container_id, c.want.container_id) << c.what << ": " << c.path;
    EXPECT_EQ(got.runtime, c.want.runtime) << c.what << ": " << c.path;
    EXPECT_EQ(got.pod_uid, c.want.pod_uid) << c.what << ": " << c.path;
    EXPECT_EQ(got.qos, c.want.qos) << c.what << ": " << c.path;
    EXPECT_EQ(got.systemd_unit, c.want.systemd_unit) << c.what << ": " << c.path;
  }
}

TEST(CgroupTest, HostileInputIsBounded) {
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "/a";
  EXPECT_EQ(ParseCgroupPath(deep), CgroupIdentity{});
  EXPECT_EQ(ParseCgroupPath(std::string(100000, ':')), CgroupIdentity{});
  EXPECT_EQ(ParseProcCgroups(std::string(100000, ':')), ProcCgroups{});
  EXPECT_EQ(ParseMountInfo(std::string(100000, ' ')), CgroupMounts{});
}

TEST(CgroupTest, ParsesCgroupV1File) {
  // Docker on a v1 host (CentOS 7), cpu and cpuacct co-mounted.
  const std::string scope = "/system.slice/docker-" + kId + ".scope";
  const std::string file = "11:pids:" + scope + "\n" +
                           "10:devices:" + scope + "\n" +
                           "8:memory:" + scope + "\n" +
                           "3:net_cls,net_prio:" + scope + "\n" +
                           "2:cpuacct,cpu:" + scope + "\n" +
                           "1:name=systemd:" + scope + "\n";
  const ProcCgroups cgroups = ParseProcCgroups(file);
  EXPECT_EQ(cgroups.unified, "");
  EXPECT_EQ(cgroups.memory, scope);
  EXPECT_EQ(cgroups.cpu, scope);
  EXPECT_EQ(cgroups.cpuacct, scope);
  EXPECT_EQ(cgroups.systemd, scope);
  EXPECT_EQ(cgroups.primary(), scope);
  EXPECT_EQ(IdentityFromCgroups(cgroups).container_id, kId);
}

TEST(CgroupTest, ParsesCgroupV2File) {
  const std::string path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" +
                           kPodSlice + ".slice/cri-containerd-" + kId + ".scope";
  const ProcCgroups cgroups = ParseProcCgroups("0::" + path + "\n");
  EXPECT_EQ(cgroups.unified, path);
  EXPECT_EQ(cgroups.memory, "");
  EXPECT_EQ(cgroups.primary(), path);
  const CgroupIdentity identity = IdentityFromCgroups(cgroups);
  EXPECT_EQ(identity.container_id, kId);
  EXPECT_EQ(identity.pod_uid, kPodUid);
  // The root is no path at all; a removed cgroup keeps its path.
  EXPECT_EQ(ParseProcCgroups("0::/\n").unified, "");
  EXPECT_EQ(ParseProcCgroups("0::/system.slice/x.service (deleted)\n").unified,
            "/system.slice/x.service");
}

TEST(CgroupTest, ParsesThisMachinesHybridLayout) {
  // cpu and cpuacct in separate hierarchies, v2 at the root.
  const ProcCgroups cgroups = ParseProcCgroups(
      "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
      "4:memory:/process_api/c05b9054be065f42616ee2ba68797e62\n3:cpuset:/\n2:cpuacct:/\n"
      "1:cpu:/\n0::/\n");
  EXPECT_EQ(cgroups.unified, "");
  EXPECT_EQ(cgroups.memory, "/process_api/c05b9054be065f42616ee2ba68797e62");
  EXPECT_EQ(cgroups.cpu, "/");
  EXPECT_EQ(cgroups.cpuacct, "/");
  EXPECT_EQ(cgroups.systemd, "/");
  EXPECT_EQ(cgroups.primary(), "/process_api/c05b9054be065f42616ee2ba68797e62");
  EXPECT_EQ(IdentityFromCgroups(cgroups), CgroupIdentity{});
}

TEST(CgroupTest, HybridHostWithDockerCgroupfsFindsTheContainerInV1) {
  // Docker's cgroupfs driver leaves the v2 hierarchy alone: there the
  // container's processes are still in containerd's unit.
  const ProcCgroups cgroups = ParseProcCgroups("12:memory:/docker/" + kId + "\n" +
                                               "4:cpu,cpuacct:/docker/" + kId + "\n" +
                                               "1:name=systemd:/docker/" + kId + "\n" +
                                               "0::/system.slice/containerd.service\n");
  EXPECT_EQ(cgroups.unified, "/system.slice/containerd.service");
  EXPECT_EQ(cgroups.primary(), "/system.slice/containerd.service");
  const CgroupIdentity identity = IdentityFromCgroups(cgroups);
  EXPECT_EQ(identity.container_id, kId);
  EXPECT_EQ(identity.runtime, "docker");
  EXPECT_EQ(identity.systemd_unit, "");
  // A host service on the same host: its unit.
  EXPECT_EQ(IdentityFromCgroups(ParseProcCgroups("12:memory:/system.slice/sshd.service\n"
                                                 "1:name=systemd:/system.slice/sshd.service\n"
                                                 "0::/system.slice/sshd.service\n"))
                .systemd_unit,
            "sshd.service");
}

TEST(CgroupTest, SkipsMalformedLines) {
  const ProcCgroups cgroups = ParseProcCgroups(
      "garbage\n:memory:/a\nx:memory:/b\n4:memory:relative\n4:memory\n\n5:memory:/good\r\n"
      "0::/first\n0::/second\n");
  EXPECT_EQ(cgroups.memory, "/good");
  EXPECT_EQ(cgroups.unified, "/first");
  // The path keeps its colons.
  EXPECT_EQ(ParseProcCgroups("0::/a.slice:cri-containerd:" + kId).unified,
            "/a.slice:cri-containerd:" + kId);
}

// This machine's /proc/self/mountinfo (hybrid: v1 controllers under
// /sys/fs/cgroup/<controller>, v2 under /sys/fs/cgroup/unified), plus a bind
// mount of a subtree that must not be taken.
constexpr char kHybridMountInfo[] =
    "22 1 0:20 / / rw,relatime - overlay overlay rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "50 31 0:32 /kubepods /sys/fs/cgroup/memory/bound rw - cgroup cgroup rw,memory\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(CgroupTest, FindsMountsOfAHybridHost) {
  const CgroupMounts mounts = ParseMountInfo(kHybridMountInfo);
  EXPECT_EQ(mounts.unified, "/sys/fs/cgroup/unified");
  EXPECT_EQ(mounts.memory, "/sys/fs/cgroup/memory");
  EXPECT_EQ(mounts.cpu, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(mounts.cpuacct, "/sys/fs/cgroup/cpuacct");
}

TEST(CgroupTest, FindsMountsOfV1AndV2Hosts) {
  // systemd's v1 layout: cpu and cpuacct co-mounted, optional fields present.
  const CgroupMounts v1 = ParseMountInfo(
      "25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
      "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - "
      "cgroup cgroup rw,cpu,cpuacct\n"
      "33 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup "
      "cgroup rw,memory\n");
  EXPECT_EQ(v1.unified, "");
  EXPECT_EQ(v1.cpu, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(v1.cpuacct, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(v1.memory, "/sys/fs/cgroup/memory");
  const CgroupMounts v2 = ParseMountInfo(
      "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
      "rw,nsdelegate,memory_recursiveprot\n");
  EXPECT_EQ(v2.unified, "/sys/fs/cgroup");
  EXPECT_EQ(v2.memory, "");
  // Spaces in a mount point are octal escapes.
  EXPECT_EQ(ParseMountInfo("41 31 0:38 / /mnt/my\\040cgroup rw - cgroup2 none rw\n").unified,
            "/mnt/my cgroup");
  // Lines without the separator or its fields are skipped.
  EXPECT_EQ(ParseMountInfo("41 31 0:38 / /x rw cgroup2 none rw\n41 31 0:38 / /y rw - cgroup2\n"),
            CgroupMounts{});
}

TEST(CgroupTest, CgroupIdIsTheDirectoryInode) {
  const std::string root = "/tmp/loupe-cgroup-test-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/kubepods.slice/pod.slice");
  struct stat st;
  ASSERT_EQ(stat((root + "/kubepods.slice/pod.slice").c_str(), &st), 0);
  EXPECT_EQ(CgroupId(root, "/kubepods.slice/pod.slice"), static_cast<uint64_t>(st.st_ino));
  ASSERT_EQ(stat(root.c_str(), &st), 0);
  EXPECT_EQ(CgroupId(root, "/"), static_cast<uint64_t>(st.st_ino));
  EXPECT_EQ(CgroupId(root, "/gone"), 0u);
  EXPECT_EQ(CgroupId(root, "/../etc"), 0u);  // outside the namespace
  EXPECT_EQ(CgroupId(root, "relative"), 0u);
  EXPECT_EQ(CgroupId("", "/kubepods.slice"), 0u);  // not mounted
  std::filesystem::remove_all(root);
}

TEST(CgroupTest, LiveCgroup2RootIdMatchesTheKernel) {
  const CgroupMounts mounts = ReadCgroupMounts("/proc");
  if (mounts.unified.empty()) GTEST_SKIP() << "no cgroup2 mount";
  // The root cgroup's id is 1 (kernfs numbers its root node first).
  EXPECT_EQ(CgroupId(mounts.unified, "/"), 1u);
  struct stat st;
  ASSERT_EQ(stat(mounts.unified.c_str(), &st), 0);
  EXPECT_EQ(CgroupId(mounts.unified, "/"), static_cast<uint64_t>(st.st_ino));
}

}  // namespace
}  // namespace loupe
