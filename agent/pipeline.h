// The user-space pipeline, single-threaded: raw kernel events in, spans out.
//
//   raw bytes -> ParseKernelEvent -> (record) -> ConnTracker -> protocol
//   decoders -> ContextLinker (trace, parent, sampling) -> SpanAssembler
//   (resource, Unix time) -> SpanRouter (RED metrics, sampled spans) ->
//   exporters
//
// Live and replay runs feed the same Pipeline; only the source differs.
#ifndef LOUPE_AGENT_PIPELINE_H_
#define LOUPE_AGENT_PIPELINE_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "agent/kubernetes.h"
#include "agent/memory_history.h"
#include "agent/oom.h"
#include "agent/process_info.h"
#include "agent/recording.h"
#include "decoders/conn/conn_tracker.h"
#include "decoders/model/context_linker.h"
#include "decoders/model/log_record.h"
#include "decoders/model/metrics.h"
#include "decoders/model/sampler.h"
#include "decoders/model/span_assembler.h"
#include "exporters/exporter.h"

namespace loupe {

struct PipelineOptions {
  TrackerOptions tracker;
  int64_t realtime_offset_ns = 0;
  uint64_t id_seed = 0;
  SamplerConfig sampler;
  // Trace context linking (its sampler is `sampler`).
  LinkerOptions linker;
  // Aggregates RED metrics from every span before sampling; may be null.
  MetricsRecorder* metrics = nullptr;
  // OOM kills: what is read from cgroup files and /proc at the kill (a
  // replay sets read_host_facts = false).
  OomReporterOptions oom;
  // The pods of this node (Kubernetes), naming OOM victims; may be null.
  const PodCache* pods = nullptr;
  // Where OOM kills go as OTLP log records; may be null.
  LogConsumer* logs = nullptr;
  // The containers' recent memory, for the trend in OOM reports; may be null.
  const MemoryHistory* memory_history = nullptr;
};

// Where finished spans go: every span feeds the RED metrics, then the span
// exporters get the sampled ones (the ContextLinker decided which).
class SpanRouter : public SpanConsumer {
 public:
  SpanRouter(MetricsRecorder* metrics, SpanConsumer& exporters)
      : metrics_(metrics), exporters_(exporters) {}
  void Consume(Span&& span) override;
  uint64_t sampled_out() const { return sampled_out_; }

 private:
  MetricsRecorder* metrics_;
  SpanConsumer& exporters_;
  uint64_t sampled_out_ = 0;
};

// Client/server pairs joined by the linker, as service-graph edges between
// the two processes' service names.
class ServiceGraphRecorder : public PairSink {
 public:
  ServiceGraphRecorder(ResourceProvider& resources, MetricsRecorder* metrics)
      : resources_(resources), metrics_(metrics) {}
  void OnPair(const LinkedPair& pair) override;

 private:
  ResourceProvider& resources_;
  MetricsRecorder* metrics_;
};

struct PipelineStats {
  uint64_t events_received = 0;
  uint64_t events_invalid = 0;
  uint64_t payload_bytes = 0;  // captured payload bytes seen in user space
  uint64_t spans_produced = 0;
  uint64_t spans_sampled_out = 0;
  LinkerStats linker;
  size_t exchanges_pending = 0;  // held by the linker
  size_t connections_open = 0;
  size_t processes_known = 0;
  // OOM kills seen, by kind and the victim's pod: {kind, namespace, pod,
  // container} -> count ("" where unknown).
  std::map<std::array<std::string, 4>, uint64_t> oom_kills;
  // Process events seen (ProcessEventKind exec and exit).
  uint64_t process_execs = 0;
  uint64_t process_exits = 0;
  TrackerStats tracker;
  ExporterStats exported;  // summed over exporters
  std::vector<std::pair<std::string, ExporterStats>> exporter_stats;  // each exporter
};

class Pipeline {
 public:
  Pipeline(const PipelineOptions& options, ProcessTable& processes, FanoutExporter& exporters,
           RecordingWriter* recorder);

  void OnRawEvent(std::span<const uint8_t> raw);
  // An OOM-kill event (IsOomEvent): investigated at once, while the
  // victim's cgroup and its processes can still be read, and published
  // (log line, /oom, counter, OTLP log record) when the victim's exit is
  // seen, which ends its open server spans with OOMKilled, or after
  // kOomExitWaitNs without it.
  void OnOomEvent(std::span<const uint8_t> raw);
  // A process event (IsProcessEvent). An exec's ProcessInfo was read from
  // /proc by the reader thread and arrives (OnProcessInfo) before the event;
  // an exit forgets the process once its last spans are likely out (see
  // kProcessForgetDelayNs in pipeline.cc).
  void OnProcessEvent(std::span<const uint8_t> raw);
  // A process read from /proc by the reader thread ahead of its events.
  void OnProcessInfo(const ProcessInfo& info);
  // Housekeeping at CLOCK_MONOTONIC now_ns.
  void Tick(uint64_t now_ns);
  // Ends every connection and flushes exporters (shutdown).
  void Finish();
  void FlushExporters();

  // Recent OOM kills (thread-safe: the /oom endpoint reads it).
  const OomReporter& oom_reporter() const { return oom_; }

  // Newest event timestamp seen (replays use it as their clock).
  uint64_t latest_event_ns() const { return latest_event_ns_; }
  PipelineStats stats() const;

 private:
  ProcessTable& processes_;
  FanoutExporter& exporters_;
  RecordingWriter* recorder_;
  SpanRouter router_;
  SpanAssembler assembler_;
  ServiceGraphRecorder graph_;
  ContextLinker linker_;
  ConnTracker tracker_;
  // Names the victim (process resource, pods) and adds its memory trend.
  void Enrich(OomKill& kill, const Resource* resource) const;
  void PublishOom(const OomKill& kill, std::shared_ptr<const Resource> resource);

  OomReporter oom_;
  std::map<std::array<std::string, 4>, uint64_t> oom_kills_;
  const PodCache* pods_;
  LogConsumer* logs_;
  const MemoryHistory* memory_history_;
  // Kills investigated, waiting for their victim's exit (few: OOM kills are
  // rare, and each waits at most kOomExitWaitNs).
  struct PendingOom {
    OomKill kill;
    std::shared_ptr<const Resource> resource;  // the victim's, taken while it lived
    uint64_t deadline_ns = 0;
  };
  std::vector<PendingOom> pending_oom_;
  // Exited processes still in the table: tgid -> exit time (ts_ns) and
  // whether their connections were ended yet.
  struct Exited {
    uint64_t exit_ns = 0;
    bool connections_ended = false;
  };
  absl::flat_hash_map<uint32_t, Exited> exited_;
  uint64_t process_execs_ = 0;
  uint64_t process_exits_ = 0;
  uint64_t latest_event_ns_ = 0;
  uint64_t events_received_ = 0;
  uint64_t events_invalid_ = 0;
  uint64_t payload_bytes_ = 0;
};

}  // namespace loupe

#endif  // LOUPE_AGENT_PIPELINE_H_
