// The recent memory samples of the cgroups the resource sampler reads, so
// that an OOM kill can say how its container's memory grew before it.
// Written by the sampler (the agent's main thread), read by the OOM
// reporting on the decoding thread: thread-safe. Bounded in cgroups and in
// samples per cgroup.
#ifndef LOUPE_AGENT_MEMORY_HISTORY_H_
#define LOUPE_AGENT_MEMORY_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"

namespace loupe {

struct MemorySample {
  uint64_t time_unix_ns = 0;
  uint64_t usage_bytes = 0;
  std::optional<uint64_t> working_set_bytes;
  std::optional<uint64_t> limit_bytes;  // nullopt: unlimited or unknown
  bool operator==(const MemorySample&) const = default;
};

class MemoryHistory {
 public:
  // 30 samples are five minutes at the default 10 s resource interval.
  explicit MemoryHistory(size_t samples_per_cgroup = 30, size_t max_cgroups = 4096)
      : samples_per_cgroup_(samples_per_cgroup == 0 ? 1 : samples_per_cgroup),
        max_cgroups_(max_cgroups == 0 ? 1 : max_cgroups) {}

  // `cgroup` is the memory cgroup's path in its hierarchy, as
  // /proc/PID/cgroup names it ("/kubepods/.../<id>"). When max_cgroups are
  // held, the history is started again (a node whose containers all changed).
  void Add(std::string_view cgroup, const MemorySample& sample) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = samples_.find(std::string(cgroup));  // Debian abseil: no std::string_view lookup
    if (it == samples_.end()) {
      if (samples_.size() >= max_cgroups_) samples_.clear();
      it = samples_.emplace(std::string(cgroup), std::deque<MemorySample>()).first;
    }
    it->second.push_back(sample);
    while (it->second.size() > samples_per_cgroup_) it->second.pop_front();
  }

  // Oldest first; empty when the cgroup was never sampled.
  std::vector<MemorySample> Get(std::string_view cgroup) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = samples_.find(std::string(cgroup));  // Debian abseil: no std::string_view lookup
    if (it == samples_.end()) return {};
    return std::vector<MemorySample>(it->second.begin(), it->second.end());
  }

  void Forget(std::string_view cgroup) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = samples_.find(std::string(cgroup));  // Debian abseil: no std::string_view lookup
    if (it != samples_.end()) samples_.erase(it);
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_.size();
  }

 private:
  const size_t samples_per_cgroup_;
  const size_t max_cgroups_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, std::deque<MemorySample>> samples_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loupe

#endif  // LOUPE_AGENT_MEMORY_HISTORY_H_
