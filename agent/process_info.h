// Who a process is: the facts the resource of its spans is built from.
//
// Live, they are read from /proc the first time a process shows up; every
// resolution is also written to a recording, so a replay attributes spans
// exactly as the live run did.
#ifndef LOUPE_AGENT_PROCESS_INFO_H_
#define LOUPE_AGENT_PROCESS_INFO_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "decoders/model/span_assembler.h"

namespace loupe {

struct ProcessInfo {
  uint32_t tgid = 0;
  std::string comm;             // kernel task name (from the event, or /proc/PID/comm)
  std::string exe_path;         // /proc/PID/exe target, "" if unreadable
  std::string service_name;     // OTEL_SERVICE_NAME or service.name in OTEL_RESOURCE_ATTRIBUTES
  bool from_proc = false;       // false: the process was gone before it could be read
  bool operator==(const ProcessInfo&) const = default;
};

// Reads /proc/<tgid>. A process that already exited yields from_proc=false
// and keeps the comm it was given.
ProcessInfo ReadProcessInfo(const std::string& proc_root, uint32_t tgid, std::string comm);

// service.name from an environment block (NUL-separated KEY=VALUE):
// OTEL_SERVICE_NAME wins over service.name inside OTEL_RESOURCE_ATTRIBUTES,
// as in the OpenTelemetry SDK specification. "" when neither is set.
std::string ServiceNameFromEnviron(std::string_view environ_block);

using ExtraAttributes = std::vector<std::pair<std::string, std::string>>;

// The agent's own resource (service.name "loupe", host.name, process.pid),
// for telemetry that belongs to no traced process: the service graph.
std::shared_ptr<const Resource> MakeAgentResource(const std::string& host_name,
                                                  const ExtraAttributes& extra);

// The resource of a process's spans. `extra` (OTEL_RESOURCE_ATTRIBUTES of
// the agent: cluster, environment, ...) is added where the process has no
// attribute of that name.
std::shared_ptr<const Resource> MakeProcessResource(const ProcessInfo& info,
                                                    const std::string& host_name,
                                                    const ExtraAttributes& extra = {});

// Caches resources per tgid. Resolution happens through the resolver
// callback (live: /proc; replay: recorded infos); a bounded cache forgets
// the oldest entries first.
class ProcessTable : public ResourceProvider {
 public:
  using Resolver = std::function<ProcessInfo(uint32_t tgid, const std::string& comm_hint)>;
  using Observer = std::function<void(const ProcessInfo&)>;

  ProcessTable(std::string host_name, Resolver resolver, size_t max_entries = 8192,
               ExtraAttributes extra = {});

  // Called for every event of a process: resolves it on first sight (while
  // it is most likely still alive). `comm` may be empty.
  void Observe(uint32_t tgid, const std::string& comm);
  // Adds a known process (replay), replacing any cached one.
  void Add(const ProcessInfo& info);
  // Called with each resolution (the recorder writes it).
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  std::shared_ptr<const Resource> ForProcess(uint32_t tgid) override;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    ProcessInfo info;
    std::shared_ptr<const Resource> resource;
  };
  Entry& Insert(ProcessInfo info);

  std::string host_name_;
  ExtraAttributes extra_;
  Resolver resolver_;
  Observer observer_;
  size_t max_entries_;
  absl::flat_hash_map<uint32_t, Entry> entries_;
  std::deque<uint32_t> order_;  // insertion order, for eviction
};

}  // namespace loupe

#endif  // LOUPE_AGENT_PROCESS_INFO_H_
