// Which cgroup a process is in, and what that says about it: the container,
// Kubernetes pod and systemd unit it belongs to.
//
// Everything here parses text the kernel wrote (/proc/PID/cgroup,
// /proc/self/mountinfo) or names that container runtimes and systemd chose
// for their cgroups; nothing talks to a runtime. The parsers are pure, take
// any bytes, and never throw.
#ifndef LOUPE_AGENT_CGROUP_H_
#define LOUPE_AGENT_CGROUP_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace loupe {

// A process's place in each hierarchy that matters to Loupe, from
// /proc/PID/cgroup (cgroups(7): "hierarchy-ID:controller-list:cgroup-path"
// per line). A pure cgroup v2 host has one "0::/path" line; a v1 host has one
// line per hierarchy; a hybrid host (systemd's default before v248) has both.
// Paths are as the kernel prints them, relative to the reader's cgroup
// namespace root, without the " (deleted)" mark of a removed v2 cgroup.
struct ProcCgroups {
  std::string unified;  // v2 ("0::") path; "" when there is none or it is "/"
  std::string memory;   // v1 hierarchy with the memory controller; "" when none
  std::string cpu;      // v1 hierarchy with the cpu controller; "" when none
  std::string cpuacct;  // v1 hierarchy with cpuacct (often the same as cpu)
  std::string systemd;  // v1 named hierarchy "name=systemd"; "" when none
  bool operator==(const ProcCgroups&) const = default;

  // The path a process is best known by: the v2 path, else the v1 memory one.
  const std::string& primary() const { return unified.empty() ? memory : unified; }
};

ProcCgroups ParseProcCgroups(std::string_view content);

// What a cgroup path says about the process: the container it runs in, its
// Kubernetes pod, or the systemd unit of a plain host process. Fields are ""
// when the path does not say.
struct CgroupIdentity {
  std::string container_id;  // 64 lowercase hex digits
  std::string runtime;       // "docker", "containerd", "cri-o", "podman", or "" when unsure
  std::string pod_uid;       // Kubernetes pod UID (dashes restored in systemd-driver paths)
  std::string qos;           // "guaranteed", "burstable" or "besteffort" (Kubernetes QoS class)
  std::string systemd_unit;  // "nginx.service", "session-3.scope"; only outside containers
  bool operator==(const CgroupIdentity&) const = default;
};

// Understands the layouts of Docker, containerd (CRI and nerdctl), CRI-O and
// Podman with both the cgroupfs and the systemd cgroup driver, on v1 and v2,
// Kubernetes pods of every QoS class (also under a kubelet --cgroup-root),
// nested containers (the innermost wins) and systemd units. A container id is
// accepted only as exactly 64 hex digits, which rejects runtime helpers
// (libpod-conmon-ID, crio-conmon-ID) and truncated or made-up names.
CgroupIdentity ParseCgroupPath(std::string_view path);

// The identity from all of a process's hierarchies. They can disagree: on a
// hybrid host Docker's cgroupfs driver places containers only in the v1
// hierarchies, so the v2 path is that of containerd.service. The first of
// unified, memory, cpu, cpuacct, systemd that names a container wins; else the
// first that names a pod; else the first that names a systemd unit.
CgroupIdentity IdentityFromCgroups(const ProcCgroups& cgroups);

// Where the hierarchies are mounted, from /proc/self/mountinfo (proc(5)).
// Only mounts of a hierarchy's root are used: a bind mount of a subtree
// (what a container sees of its own cgroup) cannot reach other processes'
// cgroups. "" when not mounted.
struct CgroupMounts {
  std::string unified;  // cgroup2
  std::string memory;   // cgroup v1 with the memory controller
  std::string cpu;      // cgroup v1 with the cpu controller
  std::string cpuacct;  // cgroup v1 with the cpuacct controller
  bool operator==(const CgroupMounts&) const = default;
};

CgroupMounts ParseMountInfo(std::string_view mountinfo);
// Reads <proc_root>/self/mountinfo (bounded); empty mounts when unreadable.
CgroupMounts ReadCgroupMounts(const std::string& proc_root);

// The id the kernel reports for a v2 cgroup (bpf_get_current_cgroup_id(),
// cgroup ids in OOM and sched events): that of the kernfs node of the cgroup
// directory <mount_point><cgroup_path>. Since Linux 5.5 ("kernfs: convert
// kernfs_node->id from union kernfs_node_id to u64") that is the directory's
// inode number; before, the id also held the node's generation in its high
// 32 bits, which only the file handle shows, so on a cgroup2 file system the
// handle is asked for first. 0 when the directory cannot be reached (not
// mounted, gone, or a path outside the reader's cgroup namespace).
uint64_t CgroupId(const std::string& mount_point, std::string_view cgroup_path);

}  // namespace loupe

#endif  // LOUPE_AGENT_CGROUP_H_
