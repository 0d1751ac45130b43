// What the agent needs from the host before it can load its programs.
#ifndef LOUPE_AGENT_SYSTEM_H_
#define LOUPE_AGENT_SYSTEM_H_

#include <string>

#include "absl/status/status.h"

namespace loupe {

// Returns the tracefs directory with syscall events, mounting tracefs at
// /sys/kernel/tracing when no tracefs is mounted (libbpf resolves
// tracepoint ids through it). Sets *mounted when it had to mount it.
absl::Status EnsureTracefs(std::string* events_dir, bool* mounted);

// The host's name (gethostname).
std::string HostName();

}  // namespace loupe

#endif  // LOUPE_AGENT_SYSTEM_H_
