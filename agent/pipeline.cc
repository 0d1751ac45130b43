#include "agent/pipeline.h"

#include <algorithm>
#include <string>
#include <variant>

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
      pods_(options.pods) {}

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
  const OomKill kill = oom_.Report(*event);
  // The victim's pod and container, when its cgroup names a container this
  // node's pod list knows.
  std::array<std::string, 4> labels = {std::string(OomKindName(kill.kind)), "", "", ""};
  std::string cgroup_path = kill.victim_cgroup;
  if ((cgroup_path.empty() || cgroup_path == "/") && kill.cgroup) cgroup_path = kill.cgroup->path;
  const CgroupIdentity identity = ParseCgroupPath(cgroup_path);
  if (pods_ != nullptr && !identity.container_id.empty()) {
    if (auto match = pods_->LookupContainer(identity.container_id)) {
      labels[1] = match->pod->namespace_name;
      labels[2] = match->pod->pod_name;
      labels[3] = match->container_name;
    }
  }
  ++oom_kills_[labels];
  LogWarn(OomKillConsoleLine(kill));
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
    case ProcessEventKind::kExit:
      ++process_exits_;
      exited_[tgid] = event->header.ts_ns;
      break;
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
    if (now_ns < it->second + kProcessForgetDelayNs) {
      ++it;
      continue;
    }
    processes_.Forget(it->first);
    exited_.erase(it++);
  }
  const uint64_t idle_mark = now_ns > kIdleWatermarkLagNs ? now_ns - kIdleWatermarkLagNs : 0;
  linker_.Advance(std::max(latest_event_ns_, idle_mark));
}

void Pipeline::Finish() {
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
