#include "agent/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace loupe {

namespace {

// statfs(2) f_type of a cgroup2 file system (linux/magic.h).
constexpr long kCgroup2SuperMagic = 0x63677270;
// /proc/self/mountinfo of a node with thousands of pods runs to megabytes;
// the cgroup mounts come early (mounted at boot), so a bounded read is safe.
constexpr size_t kMaxMountInfoBytes = 4 * 1024 * 1024;
// Far above any real cgroup path (PATH_MAX), to bound hostile input.
constexpr size_t kMaxSegments = 256;
// Longest systemd unit name (UNIT_NAME_MAX in systemd's unit-name.h).
constexpr size_t kMaxUnitNameBytes = 255;

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return parts;
}

// The non-empty components of a cgroup path, at most kMaxSegments.
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> segments;
  for (std::string_view s : Split(path, '/')) {
    if (s.empty()) continue;
    if (segments.size() == kMaxSegments) break;
    segments.push_back(s);
  }
  return segments;
}

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

bool ConsumeSuffix(std::string_view* s, std::string_view suffix) {
  if (!s->ends_with(suffix)) return false;
  s->remove_suffix(suffix.size());
  return true;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return !s.empty();
}

// Docker, containerd, CRI-O and Podman all name containers by a random
// 256-bit id printed as 64 lowercase hex digits.
bool IsContainerId(std::string_view s) { return s.size() == 64 && IsLowerHex(s); }

// Pod UIDs are RFC 4122 UUIDs, except for static pods (read from files by
// the kubelet), whose UID is the 32-hex-digit hash of their manifest.
bool IsPodUid(std::string_view s) {
  if (s.size() == 32) return IsLowerHex(s);
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !IsLowerHex(s.substr(i, 1))) return false;
  }
  return true;
}

struct Container {
  std::string_view id;
  std::string_view runtime;
};

// The container a path component names, if any. `parent` is the component
// above it ("" at the top); `under_kubepods` says whether a cgroupfs-driver
// "kubepods" component is above it.
bool ContainerFromSegment(std::string_view segment, std::string_view parent, bool under_kubepods,
                          Container* out) {
  std::string_view name = segment;
  const bool scope = ConsumeSuffix(&name, ".scope");
  // When the kubelet uses the systemd driver and the runtime does not
  // (containerd with SystemdCgroup off), runc takes the kubelet's
  // "slice:prefix:id" cgroupsPath literally as a directory name:
  // kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>.
  if (name.find(':') != std::string_view::npos) {
    std::vector<std::string_view> parts = Split(name, ':');
    if (parts.size() != 3 || !IsContainerId(parts[2])) return false;
    if (parts[1] == "cri-containerd" || parts[1] == "containerd") {
      *out = {parts[2], "containerd"};
    } else if (parts[1] == "crio") {
      *out = {parts[2], "cri-o"};
    } else if (parts[1] == "docker") {
      *out = {parts[2], "docker"};
    } else {
      *out = {parts[2], ""};
    }
    return true;
  }
  // Units of the systemd driver ("<prefix>-<id>.scope"), directories of the
  // cgroupfs driver ("<prefix>-<id>" for CRI-O and Podman). The helpers next
  // to a container, crio-conmon-<id> and libpod-conmon-<id>, fail the id test.
  static constexpr struct {
    std::string_view prefix;
    std::string_view runtime;
  } kPrefixes[] = {
      {"docker-", "docker"},              // Docker, systemd driver
      {"cri-containerd-", "containerd"},  // containerd's CRI plugin, systemd driver
      {"containerd-", "containerd"},      // other containerd clients' scopes and directories
      {"nerdctl-", "containerd"},         // nerdctl, systemd driver
      {"crio-", "cri-o"},                 // CRI-O, both drivers
      {"libpod-", "podman"},              // Podman, both drivers, rootful and rootless
  };
  for (const auto& p : kPrefixes) {
    std::string_view id = name;
    if (ConsumePrefix(&id, p.prefix) && IsContainerId(id)) {
      *out = {id, p.runtime};
      return true;
    }
  }
  // A bare id is the cgroupfs driver's directory: /docker/<id> for Docker,
  // /kubepods/<qos>/pod<uid>/<id> for containerd (and for Docker through
  // dockershim or cri-dockerd, which cannot be told apart by the path; since
  // Kubernetes 1.24 removed dockershim containerd is by far the more likely).
  if (!scope && IsContainerId(name)) {
    std::string_view runtime;
    if (parent == "docker") {
      runtime = "docker";
    } else if (under_kubepods) {
      runtime = "containerd";
    }
    *out = {name, runtime};
    return true;
  }
  return false;
}

// Pod UID and QoS class of a pod slice of the kubelet's systemd driver
// (pkg/kubelet/cm/cgroup_manager_linux.go):
// kubepods[-burstable|-besteffort]-pod<uid>.slice, guaranteed pods having no
// QoS part, '-' in the UID escaped as '_'. A kubelet --cgroup-root prefixes
// the names ("kubelet-kubepods-besteffort-pod<uid>.slice" in kind).
bool PodFromSystemdSlice(std::string_view segment, std::string* uid, std::string* qos) {
  std::string_view name = segment.substr(0, segment.find(':'));
  if (!ConsumeSuffix(&name, ".slice")) return false;
  const size_t at = name.rfind("kubepods-");
  if (at == std::string_view::npos || (at > 0 && name[at - 1] != '-')) return false;
  name.remove_prefix(at + 9);
  std::string_view qos_class = "guaranteed";
  if (ConsumePrefix(&name, "burstable-")) {
    qos_class = "burstable";
  } else if (ConsumePrefix(&name, "besteffort-")) {
    qos_class = "besteffort";
  }
  if (!ConsumePrefix(&name, "pod")) return false;
  std::string candidate(name);
  for (char& c : candidate) {
    if (c == '_') c = '-';
  }
  if (!IsPodUid(candidate)) return false;
  *uid = std::move(candidate);
  *qos = std::string(qos_class);
  return true;
}

bool IsUnitNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
         c == '-' || c == '_' || c == '.' || c == '\\' || c == '@';
}

// systemd's cg_path_get_unit(): skip the slices from the top; the next
// component is the unit if it is a service or a scope (the only unit types
// that hold processes). Components "." and ".." (a path seen from another
// cgroup namespace) are skipped too.
std::string SystemdUnit(const std::vector<std::string_view>& segments) {
  for (std::string_view segment : segments) {
    if (segment == "." || segment == "..") continue;
    if (segment.ends_with(".slice")) continue;
    if (segment.size() > kMaxUnitNameBytes) return "";
    for (char c : segment) {
      if (!IsUnitNameChar(c)) return "";
    }
    std::string_view stem = segment;
    if ((ConsumeSuffix(&stem, ".service") || ConsumeSuffix(&stem, ".scope")) && !stem.empty()) {
      return std::string(segment);
    }
    return "";
  }
  return "";
}

// Mount points in mountinfo escape space, tab, newline and backslash as
// three octal digits (\040).
std::string UnescapeOctal(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 3 < in.size()) {
      const char a = in[i + 1], b = in[i + 2], c = in[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

}  // namespace

ProcCgroups ParseProcCgroups(std::string_view content) {
  ProcCgroups result;
  for (std::string_view line : Split(content, '\n')) {
    // hierarchy-ID:controller-list:cgroup-path; the path may itself hold ':'.
    const size_t first = line.find(':');
    if (first == std::string_view::npos || first == 0) continue;
    const size_t second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view hierarchy = line.substr(0, first);
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string_view path = line.substr(second + 1);
    ConsumeSuffix(&path, "\r");
    // Added by the kernel for a v2 cgroup removed while a task (a zombie)
    // is still in it (proc_cgroup_show() in kernel/cgroup/cgroup.c).
    ConsumeSuffix(&path, " (deleted)");
    if (!path.starts_with('/')) continue;
    bool numeric = true;
    for (char c : hierarchy) numeric = numeric && c >= '0' && c <= '9';
    if (!numeric) continue;
    if (hierarchy == "0" && controllers.empty()) {
      if (result.unified.empty() && path != "/") result.unified = std::string(path);
      continue;
    }
    for (std::string_view controller : Split(controllers, ',')) {
      std::string* slot = nullptr;
      if (controller == "memory") {
        slot = &result.memory;
      } else if (controller == "cpu") {
        slot = &result.cpu;
      } else if (controller == "cpuacct") {
        slot = &result.cpuacct;
      } else if (controller == "name=systemd") {
        slot = &result.systemd;
      }
      if (slot != nullptr && slot->empty()) *slot = std::string(path);
    }
  }
  return result;
}

CgroupIdentity ParseCgroupPath(std::string_view path) {
  CgroupIdentity identity;
  const std::vector<std::string_view> segments = Segments(path);
  // Index of the first cgroupfs "kubepods" component, for the bare-id and
  // QoS rules below it.
  size_t kubepods = segments.size();
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i] == "kubepods") {
      kubepods = i;
      break;
    }
  }
  // Pod: the innermost component that names one; for the cgroupfs driver
  // /kubepods[/burstable|/besteffort]/pod<uid> (guaranteed pods have no QoS
  // level).
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string uid, qos;
    if (PodFromSystemdSlice(segments[i], &uid, &qos)) {
      identity.pod_uid = std::move(uid);
      identity.qos = std::move(qos);
      continue;
    }
    std::string_view name = segments[i];
    if (i > kubepods && ConsumePrefix(&name, "pod") && IsPodUid(name)) {
      identity.pod_uid = std::string(name);
      const std::string_view level = segments[i - 1];
      identity.qos =
          level == "burstable" || level == "besteffort" ? std::string(level) : "guaranteed";
    }
  }
  // Container: the innermost component that names one. A process may sit in
  // a child cgroup of its container (CRI-O's ".../crio-<id>.scope/container",
  // systemd in a container), and containers nest (Docker in Docker, kind).
  for (size_t i = segments.size(); i-- > 0;) {
    Container container;
    if (ContainerFromSegment(segments[i], i > 0 ? segments[i - 1] : "", i > kubepods, &container)) {
      identity.container_id = std::string(container.id);
      identity.runtime = std::string(container.runtime);
      break;
    }
  }
  if (identity.container_id.empty() && identity.pod_uid.empty()) {
    identity.systemd_unit = SystemdUnit(segments);
  }
  return identity;
}

CgroupIdentity IdentityFromCgroups(const ProcCgroups& cgroups) {
  CgroupIdentity with_pod, with_unit;
  for (const std::string* path :
       {&cgroups.unified, &cgroups.memory, &cgroups.cpu, &cgroups.cpuacct, &cgroups.systemd}) {
    if (path->empty()) continue;
    CgroupIdentity identity = ParseCgroupPath(*path);
    if (!identity.container_id.empty()) return identity;
    if (with_pod.pod_uid.empty() && !identity.pod_uid.empty()) with_pod = identity;
    if (with_unit.systemd_unit.empty() && !identity.systemd_unit.empty()) with_unit = identity;
  }
  return with_pod.pod_uid.empty() ? with_unit : with_pod;
}

CgroupMounts ParseMountInfo(std::string_view mountinfo) {
  // proc(5): mount-id parent-id major:minor root mount-point options
  // [optional fields...] - fstype source super-options
  CgroupMounts mounts;
  for (std::string_view line : Split(mountinfo, '\n')) {
    std::vector<std::string_view> fields = Split(line, ' ');
    size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 3 >= fields.size()) continue;  // no separator, or fields missing after it
    const std::string_view root = fields[3];
    const std::string_view fstype = fields[dash + 1];
    if (root != "/") continue;
    const std::string mount_point = UnescapeOctal(fields[4]);
    if (fstype == "cgroup2") {
      if (mounts.unified.empty()) mounts.unified = mount_point;
      continue;
    }
    if (fstype != "cgroup") continue;
    for (std::string_view option : Split(fields[dash + 3], ',')) {
      std::string* slot = nullptr;
      if (option == "memory") {
        slot = &mounts.memory;
      } else if (option == "cpu") {
        slot = &mounts.cpu;
      } else if (option == "cpuacct") {
        slot = &mounts.cpuacct;
      }
      if (slot != nullptr && slot->empty()) *slot = mount_point;
    }
  }
  return mounts;
}

CgroupMounts ReadCgroupMounts(const std::string& proc_root) {
  std::ifstream in(proc_root + "/self/mountinfo", std::ios::binary);
  if (!in) return {};
  std::string text(kMaxMountInfoBytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  // A cut last line is dropped rather than half parsed.
  if (text.size() == kMaxMountInfoBytes) text.resize(text.rfind('\n') + 1);
  return ParseMountInfo(text);
}

uint64_t CgroupId(const std::string& mount_point, std::string_view cgroup_path) {
  if (mount_point.empty() || !cgroup_path.starts_with('/')) return 0;
  for (std::string_view segment : Split(cgroup_path, '/')) {
    // "/../x": a cgroup outside the reader's namespace, not under its mount.
    if (segment == "..") return 0;
  }
  std::string dir = mount_point;
  if (cgroup_path != "/") dir.append(cgroup_path);
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) return 0;
  if (fs.f_type == kCgroup2SuperMagic) {
    // A kernfs file handle is the node's 64-bit id (FILEID_KERNFS since 5.5,
    // FILEID_INO32_GEN ino+generation before), little-endian like the id.
    alignas(struct file_handle) unsigned char storage[sizeof(struct file_handle) + 64];
    auto* handle = reinterpret_cast<struct file_handle*>(storage);
    handle->handle_bytes = 64;
    int mount_id = 0;
    if (name_to_handle_at(AT_FDCWD, dir.c_str(), handle, &mount_id, 0) == 0 &&
        handle->handle_bytes == sizeof(uint64_t)) {
      uint64_t id = 0;
      std::memcpy(&id, handle->f_handle, sizeof(id));
      if (id != 0) return id;
    }
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace loupe
