#include "agent/system.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace loupe {

namespace {

bool IsDir(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

absl::Status EnsureTracefs(std::string* events_dir, bool* mounted) {
  *mounted = false;
  // libbpf prefers /sys/kernel/debug/tracing when it exists, then
  // /sys/kernel/tracing (tracefs_path() in libbpf.c); check in that order.
  for (const char* root : {"/sys/kernel/debug/tracing", "/sys/kernel/tracing"}) {
    const std::string dir = absl::StrCat(root, "/events/syscalls");
    if (IsDir(dir)) {
      *events_dir = absl::StrCat(root, "/events");
      return absl::OkStatus();
    }
  }
  if (!IsDir("/sys/kernel/tracing")) {
    return absl::FailedPreconditionError(
        "tracefs is not mounted and /sys/kernel/tracing does not exist: is /sys mounted, and "
        "was the kernel built with CONFIG_FTRACE?");
  }
  if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0 && errno != EBUSY) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed (",
        std::strerror(errno), "): mount it with 'mount -t tracefs nodev /sys/kernel/tracing'"));
  }
  *mounted = true;
  if (!IsDir("/sys/kernel/tracing/events/syscalls")) {
    return absl::FailedPreconditionError(
        "tracefs has no syscalls events: the kernel was built without "
        "CONFIG_FTRACE_SYSCALLS, which Loupe needs");
  }
  *events_dir = "/sys/kernel/tracing/events";
  return absl::OkStatus();
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

}  // namespace loupe
