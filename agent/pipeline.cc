#include "agent/pipeline.h"

#include <time.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <variant>

#include "absl/strings/str_cat.h"
#include "agent/cgroup.h"
#include "agent/log.h"

namespace loupe {

namespace {
// Invalid events are logged individually only this many times per run;
// all are counted.
constexpr uint64_t kMaxInvalidEventLogs = 10;
// Without new events, the linker's clock follows the wall clock this far
// behind, so the last exchanges are decided when traffic stops; events still
// queued longer than this (an overloaded agent) may be decided early.
constexpr uint64_t kIdleWatermarkLagNs = 100ull * 1000 * 1000;
// An exited process stays in the process table this long: its last
// exchanges become spans (which look up its resource) only after the
// tracker's reorder wait and the linker's decide delay, well under this.
// Spans of connections it left open come later (idle timeout) and are
// resolved afresh, without /proc.
constexpr uint64_t kProcessForgetDelayNs = 10ull * 1000 * 1000 * 1000;
// An exited process's connections are ended this long after its exit (not
// at once: the leader's exit is reported while other threads may still be
// finishing their last system calls), instead of at the idle timeout.
constexpr uint64_t kProcessConnectionsEndDelayNs = 1000ull * 1000 * 1000;
// An OOM kill waits this long for its victim's exit event before it is
// published without it (the victim was outside --pid, or the event lost).
constexpr uint64_t kOomExitWaitNs = 2000ull * 1000 * 1000;
// What ends a victim's open server spans.
constexpr std::string_view kOomAbortReason = "OOMKilled";

uint64_t UnixNowNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

LinkerOptions WithSampler(LinkerOptions linker, const SamplerConfig& sampler) {
  linker.sampler = sampler;
  return linker;
}
}  // namespace

Pipeline::Pipeline(const PipelineOptions& options, ProcessTable& processes,
                   FanoutExporter& exporters, RecordingWriter* recorder)
    : processes_(processes),
      exporters_(exporters),
      recorder_(recorder),
      router_(options.metrics, exporters),
      assembler_(processes, router_, options.realtime_offset_ns, options.id_seed),
      graph_(processes, options.metrics),
      linker_(WithSampler(options.linker, options.sampler), assembler_, &graph_,
              options.id_seed ^ 0x6c696e6bull),
      tracker_(options.tracker, linker_),
      oom_(options.oom),
      pods_(options.pods),
      logs_(options.logs),
      memory_history_(options.memory_history) {}

void SpanRouter::Consume(Span&& span) {
  if (metrics_ != nullptr) metrics_->Record(span);
  if (!span.sampled) {
    ++sampled_out_;
    return;
  }
  exporters_.Consume(std::move(span));
}

void ServiceGraphRecorder::OnPair(const LinkedPair& pair) {
  if (metrics_ == nullptr) return;
  ServiceGraphEdge edge;
  edge.client = std::string(resources_.ForProcess(pair.client_tgid)->service_name());
  edge.server = std::string(resources_.ForProcess(pair.server_tgid)->service_name());
  edge.failed = pair.failed;
  edge.client_seconds = pair.client_seconds;
  edge.server_seconds = pair.server_seconds;
  metrics_->RecordServiceGraphEdge(edge);
}

void Pipeline::OnRawEvent(std::span<const uint8_t> raw) {
  if (IsOomEvent(raw)) {
    OnOomEvent(raw);
    return;
  }
  if (IsProcessEvent(raw)) {
    OnProcessEvent(raw);
    return;
  }
  ++events_received_;
  absl::StatusOr<KernelEvent> event = ParseKernelEvent(raw);
  if (!event.ok()) {
    ++events_invalid_;
    if (events_invalid_ <= kMaxInvalidEventLogs) {
      LogWarn("skipping an invalid kernel event: ", event.status().message());
    }
    if (recorder_ != nullptr) recorder_->WriteEvent(raw);
    return;
  }
  // Resolve the process first (it may be short-lived), and record what was
  // learned before the event, so a replay knows the process when the event
  // arrives.
  std::visit(
      [&](const auto& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, ConnEvent>) {
          processes_.Observe(ev.header.tgid, ev.comm);
        } else {
          processes_.Observe(ev.header.tgid, "");
          payload_bytes_ += ev.payload.size();
        }
        if (ev.header.ts_ns > latest_event_ns_) latest_event_ns_ = ev.header.ts_ns;
      },
      *event);
  if (recorder_ != nullptr) recorder_->WriteEvent(raw);
  tracker_.OnEvent(*event);
  linker_.Advance(latest_event_ns_);
}

void Pipeline::OnOomEvent(std::span<const uint8_t> raw) {
  ++events_received_;
  if (recorder_ != nullptr) recorder_->WriteEvent(raw);
  absl::StatusOr<OomEvent> event = ParseOomEvent(raw);
  if (!event.ok()) {
    ++events_invalid_;
    LogWarn("skipping an invalid OOM-kill event: ", event.status().message());
    return;
  }
  if (event->header.ts_ns > latest_event_ns_) latest_event_ns_ = event->header.ts_ns;
  PendingOom pending;
  pending.kill = oom_.Investigate(*event);
  // The victim is still there (it dies after this tracepoint): its resource
  // is read now.
  pending.resource = processes_.ForProcess(pending.kill.victim_pid);
  Enrich(pending.kill, pending.resource.get());
  pending.deadline_ns = event->header.ts_ns + kOomExitWaitNs;
  pending_oom_.push_back(std::move(pending));
}

void Pipeline::Enrich(OomKill& kill, const Resource* resource) const {
  if (resource != nullptr) {
    const Attributes& a = resource->attributes;
    const auto get = [&a](std::string_view key) {
      const std::string* value = a.FindString(key);
      return value != nullptr ? *value : std::string();
    };
    kill.service_name = get("service.name");
    // The process table's placeholder for a process it could not read.
    if (kill.service_name == "unknown") kill.service_name.clear();
    kill.container_id = get("container.id");
    kill.k8s_namespace = get("k8s.namespace.name");
    kill.k8s_pod = get("k8s.pod.name");
    kill.k8s_container = get("k8s.container.name");
    for (const char* kind : {"deployment", "statefulset", "daemonset", "cronjob", "job"}) {
      std::string name = get(absl::StrCat("k8s.", kind, ".name"));
      if (name.empty()) continue;
      kill.k8s_workload_kind = kind;
      kill.k8s_workload = std::move(name);
      break;
    }
  }
  // The victim's cgroup names its container even when the process was not
  // known (or the pod list learnt of it later).
  std::string cgroup_path = kill.victim_cgroup;
  if ((cgroup_path.empty() || cgroup_path == "/") && kill.cgroup) cgroup_path = kill.cgroup->path;
  const CgroupIdentity identity = ParseCgroupPath(cgroup_path);
  if (kill.container_id.empty()) kill.container_id = identity.container_id;
  if (pods_ != nullptr && !kill.container_id.empty() && kill.k8s_pod.empty()) {
    if (auto match = pods_->LookupContainer(kill.container_id)) {
      kill.k8s_namespace = match->pod->namespace_name;
      kill.k8s_pod = match->pod->pod_name;
      kill.k8s_container = match->container_name;
      const std::pair<const char*, const std::string*> workloads[] = {
          {"deployment", &match->pod->deployment}, {"statefulset", &match->pod->statefulset},
          {"daemonset", &match->pod->daemonset},   {"cronjob", &match->pod->cronjob},
          {"job", &match->pod->job}};
      for (const auto& [kind, name] : workloads) {
        if (name->empty()) continue;
        kill.k8s_workload_kind = kind;
        kill.k8s_workload = *name;
        break;
      }
    }
  }
  // The sampler keys its history by the victim's own memory cgroup; the
  // cgroup in OOM may be an ancestor (a pod's limit).
  if (memory_history_ != nullptr) {
    for (const std::string* path : {&kill.victim_cgroup, kill.cgroup ? &kill.cgroup->path : nullptr}) {
      if (path == nullptr || path->empty() || *path == "/") continue;
      kill.memory_trend = memory_history_->Get(*path);
      if (!kill.memory_trend.empty()) break;
    }
  }
}

void Pipeline::PublishOom(const OomKill& kill, std::shared_ptr<const Resource> resource) {
  oom_.Record(kill);
  const std::array<std::string, 4> labels = {std::string(OomKindName(kill.kind)), kill.k8s_namespace,
                                             kill.k8s_pod, kill.k8s_container};
  ++oom_kills_[labels];
  LogWarn(OomKillConsoleLine(kill));
  if (logs_ != nullptr) logs_->Consume(OomKillLogRecord(kill, std::move(resource), UnixNowNs()));
}

void Pipeline::OnProcessEvent(std::span<const uint8_t> raw) {
  ++events_received_;
  if (recorder_ != nullptr) recorder_->WriteEvent(raw);
  absl::StatusOr<ProcessEvent> event = ParseProcessEvent(raw);
  if (!event.ok()) {
    ++events_invalid_;
    if (events_invalid_ <= kMaxInvalidEventLogs) {
      LogWarn("skipping an invalid process event: ", event.status().message());
    }
    return;
  }
  if (event->header.ts_ns > latest_event_ns_) latest_event_ns_ = event->header.ts_ns;
  const uint32_t tgid = event->header.tgid;
  switch (event->kind) {
    case ProcessEventKind::kExec:
      // The entry was replaced already (OnProcessInfo, queued by the reader
      // thread before this event). A pending forget was for a process that
      // had this pid before.
      ++process_execs_;
      exited_.erase(tgid);
      break;
    case ProcessEventKind::kExit: {
      ++process_exits_;
      Exited& exited = exited_[tgid];
      exited = Exited{event->header.ts_ns, false};
      for (auto it = pending_oom_.begin(); it != pending_oom_.end(); ++it) {
        if (it->kill.victim_pid != tgid) continue;
        // Every thread of an OOM victim is being killed: what it was serving
        // ends now, as errors.
        it->kill.exit_seen = true;
        it->kill.requests_in_flight =
            tracker_.EndProcess(tgid, event->header.ts_ns, kOomAbortReason);
        exited.connections_ended = true;
        PendingOom done = std::move(*it);
        pending_oom_.erase(it);
        PublishOom(done.kill, std::move(done.resource));
        break;
      }
      break;
    }
  }
}

void Pipeline::OnProcessInfo(const ProcessInfo& info) {
  // Read after any exit of the pid: a new process.
  exited_.erase(info.tgid);
  processes_.Add(info);
  if (recorder_ != nullptr) recorder_->WriteProcess(info);
}

void Pipeline::Tick(uint64_t now_ns) {
  tracker_.Tick(now_ns);
  for (auto it = exited_.begin(); it != exited_.end();) {
    Exited& exited = it->second;
    if (!exited.connections_ended && now_ns >= exited.exit_ns + kProcessConnectionsEndDelayNs) {
      tracker_.EndProcess(it->first, now_ns);
      exited.connections_ended = true;
    }
    if (now_ns < exited.exit_ns + kProcessForgetDelayNs) {
      ++it;
      continue;
    }
    processes_.Forget(it->first);
    exited_.erase(it++);
  }
  for (auto it = pending_oom_.begin(); it != pending_oom_.end();) {
    if (now_ns < it->deadline_ns) {
      ++it;
      continue;
    }
    PublishOom(it->kill, std::move(it->resource));
    it = pending_oom_.erase(it);
  }
  const uint64_t idle_mark = now_ns > kIdleWatermarkLagNs ? now_ns - kIdleWatermarkLagNs : 0;
  linker_.Advance(std::max(latest_event_ns_, idle_mark));
}

void Pipeline::Finish() {
  for (PendingOom& pending : pending_oom_) PublishOom(pending.kill, std::move(pending.resource));
  pending_oom_.clear();
  tracker_.CloseAll();
  linker_.Flush();
  FlushExporters();
}

void Pipeline::FlushExporters() { exporters_.Flush(); }

PipelineStats Pipeline::stats() const {
  PipelineStats s;
  s.events_received = events_received_;
  s.events_invalid = events_invalid_;
  s.payload_bytes = payload_bytes_;
  s.spans_produced = assembler_.spans_produced();
  s.spans_sampled_out = router_.sampled_out();
  s.linker = linker_.stats();
  s.exchanges_pending = linker_.pending();
  s.connections_open = tracker_.open_connections();
  s.oom_kills = oom_kills_;
  s.process_execs = process_execs_;
  s.process_exits = process_exits_;
  s.processes_known = processes_.size();
  s.tracker = tracker_.stats();
  for (const auto& exporter : exporters_.exporters()) {
    const ExporterStats e = exporter->stats();
    s.exported.spans_exported += e.spans_exported;
    s.exported.spans_dropped += e.spans_dropped;
    s.exported.export_errors += e.export_errors;
    s.exporter_stats.emplace_back(std::string(exporter->name()), e);
  }
  return s;
}

}  // namespace loupe
