#include "agent/agent.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/bpf_capture.h"
#include "agent/cgroup.h"
#include "agent/event_queue.h"
#include "agent/kubernetes.h"
#include "agent/log.h"
#include "agent/pipeline.h"
#include "agent/privileges.h"
#include "agent/process_info.h"
#include "agent/recording.h"
#include "agent/resource_usage.h"
#include "agent/self_telemetry.h"
#include "agent/system.h"
#include "decoders/model/metrics.h"
#include "exporters/console_exporter.h"
#include "exporters/jsonl_exporter.h"
#include "exporters/otlp/otlp_metric_exporter.h"
#include "exporters/otlp/otlp_span_exporter.h"
#include "exporters/otlp/otlp_transport.h"
#include "exporters/prometheus/metrics_http_server.h"

namespace loupe {

namespace {

// Bytes of decoded-but-not-yet-processed events held between the reader and
// the decoding thread.
constexpr size_t kQueueBytes = 64u << 20;
// The reader hands a batch over at this size even in the middle of a burst.
constexpr size_t kBatchBytes = 256u << 10;
// Processes the reader thread remembers having read from /proc.
constexpr size_t kMaxSnoopedProcesses = 65536;
constexpr uint64_t kSnoopTtlNs = 60ull * 1000 * 1000 * 1000;
constexpr auto kTickPeriod = std::chrono::milliseconds(100);
// The kernel wakes the reader only for a full batch (CaptureOptions::
// wakeup_bytes); a quiet host's events wait at most this long.
constexpr int kPollTimeoutMs = 50;
constexpr auto kFlushPeriod = std::chrono::seconds(1);

uint64_t NowNs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int64_t RealtimeOffsetNs() {
  // Bracket the realtime read with two monotonic reads to halve the error.
  const uint64_t m1 = NowNs(CLOCK_MONOTONIC);
  const uint64_t r = NowNs(CLOCK_REALTIME);
  const uint64_t m2 = NowNs(CLOCK_MONOTONIC);
  return static_cast<int64_t>(r) - static_cast<int64_t>(m1 + (m2 - m1) / 2);
}

// How long shutdown waits for the OTLP exporters to deliver what they hold.
constexpr auto kExportShutdownDeadline = std::chrono::seconds(5);

const char* ProtocolName(OtlpProtocol p) {
  return p == OtlpProtocol::kGrpc ? "grpc" : "http/protobuf";
}

// Everything spans and metrics leave through. Destroyed in an order that
// keeps the metrics recorder alive for whoever reads it.
struct Outputs {
  std::unique_ptr<MetricsRecorder> metrics;
  FanoutExporter spans;
  OtlpSpanExporter* otlp_spans = nullptr;  // owned by `spans`
  std::unique_ptr<OtlpMetricExporter> otlp_metrics;
  std::unique_ptr<OtlpLogExporter> otlp_logs;  // OOM kills
  std::unique_ptr<MetricsHttpServer> http;

  // Delivers what the OTLP exporters hold (bounded) and stops them.
  void Shutdown() {
    http.reset();
    if (otlp_spans != nullptr) otlp_spans->Shutdown(kExportShutdownDeadline);
    if (otlp_logs) otlp_logs->Shutdown(kExportShutdownDeadline);
    if (otlp_metrics) otlp_metrics->Shutdown(kExportShutdownDeadline);
  }
  ~Outputs() {
    http.reset();
    otlp_metrics.reset();
  }
};

void LogExportProblem(std::string_view message) { LogWarn(std::string(message)); }

absl::Status BuildOutputs(const AgentConfig& config, Outputs* out) {
  if (config.console) out->spans.Add(std::make_unique<ConsoleExporter>(stdout));
  if (!config.jsonl_path.empty()) {
    auto jsonl = JsonlExporter::Open(config.jsonl_path);
    if (!jsonl.ok()) return jsonl.status();
    out->spans.Add(std::move(*jsonl));
  }
  if (config.otlp_traces) {
    const OtlpTracesConfig& t = *config.otlp_traces;
    auto transport = MakeOtlpTransport(OtlpSignal::kTraces, t.endpoint);
    if (!transport.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("OTLP traces: ", transport.status().message()));
    }
    auto exporter = std::make_unique<OtlpSpanExporter>(t.batch, std::move(*transport),
                                                       &LogExportProblem);
    out->otlp_spans = exporter.get();
    out->spans.Add(std::move(exporter));
    LogInfo("exporting traces over OTLP ", ProtocolName(t.endpoint.protocol), " to ",
            t.endpoint.endpoint);
  }
  if (config.otlp_logs) {
    const OtlpLogsConfig& l = *config.otlp_logs;
    auto transport = MakeOtlpTransport(OtlpSignal::kLogs, l.endpoint);
    if (!transport.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("OTLP logs: ", transport.status().message()));
    }
    out->otlp_logs =
        std::make_unique<OtlpLogExporter>(l.batch, std::move(*transport), &LogExportProblem);
    LogInfo("exporting log records (OOM kills) over OTLP ", ProtocolName(l.endpoint.protocol),
            " to ", l.endpoint.endpoint);
  }
  if (!config.metrics_listen.empty() || config.otlp_metrics) {
    MetricsOptions options;
    options.max_series = config.max_series;
    out->metrics = std::make_unique<MetricsRecorder>(options);
  }
  if (config.otlp_metrics) {
    const OtlpMetricsConfig& m = *config.otlp_metrics;
    auto transport = MakeOtlpTransport(OtlpSignal::kMetrics, m.endpoint);
    if (!transport.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("OTLP metrics: ", transport.status().message()));
    }
    out->otlp_metrics = std::make_unique<OtlpMetricExporter>(
        m, std::move(*transport), MakeMetricsSource(*out->metrics, m.temporality),
        &LogExportProblem);
    LogInfo("exporting metrics over OTLP ", ProtocolName(m.endpoint.protocol), " to ",
            m.endpoint.endpoint, " every ", m.export_interval.count(), " ms (",
            m.temporality == Temporality::kDelta ? "delta" : "cumulative", ")");
  }
  return absl::OkStatus();
}

TrackerOptions MakeTrackerOptions(const AgentConfig& config) {
  TrackerOptions t;
  t.max_connections = config.max_connections;
  t.decoder.capture_url_query = config.capture_url_query;
  t.decoder.sanitize_sql = config.sanitize_sql;
  t.decoder.redis_capture_key = config.redis_capture_key;
  t.decoder.http_capture = std::make_shared<const HttpCapture>(HttpCapture::Settings{
      config.capture_headers, config.redact_headers, config.redact_query_params});
  return t;
}

// Kernel-side counters, when there is a kernel side.
struct KernelView {
  KernelCounters counters{};
  uint64_t queue_dropped = 0;
  bool live = false;
};

std::string StatsLine(const PipelineStats& p, const KernelView& k) {
  const uint64_t lost = k.counters[LOUPE_CTR_EVENTS_LOST] + k.queue_dropped;
  const ProtocolStats& proto = p.tracker.protocol;
  std::string line = absl::StrCat(
      "stats: events=", p.events_received, " lost=", lost,
      " bytes_copied=", k.live ? k.counters[LOUPE_CTR_BYTES_COPIED] : p.payload_bytes,
      " conns_open=", p.connections_open, " spans=", p.spans_produced,
      " parse_errors=", proto.parse_errors);
  absl::StrAppend(&line, " | truncated=", proto.truncated,
                  " unmatched_responses=", proto.unmatched_responses,
                  " unanswered_requests=", proto.unanswered_requests,
                  " gap_bytes=", p.tracker.gap_bytes, " lost_bytes=", p.tracker.lost_bytes,
                  " invalid_events=", p.events_invalid,
                  " conns_evicted=", p.tracker.connections_evicted,
                  " sampled_out=", p.spans_sampled_out,
                  " linked=",
                  p.linker.links_peer + p.linker.links_header + p.linker.links_forwarded +
                      p.linker.links_thread,
                  " link_ambiguous=", p.linker.ambiguous,
                  " execs=", p.process_execs, " exits=", p.process_exits,
                  " exported=", p.exported.spans_exported,
                  " dropped=", p.exported.spans_dropped,
                  " export_errors=", p.exported.export_errors);
  if (k.live) {
    absl::StrAppend(&line, " | kernel: emitted=", k.counters[LOUPE_CTR_EVENTS_EMITTED],
                    " ringbuf_full=", k.counters[LOUPE_CTR_EVENTS_LOST],
                    " queue_dropped=", k.queue_dropped,
                    " sockets=", k.counters[LOUPE_CTR_CONNS_SEEN],
                    " classified=", k.counters[LOUPE_CTR_CONNS_CLASSIFIED],
                    " uncopied_bytes=", k.counters[LOUPE_CTR_BYTES_UNCOPIED],
                    " read_errors=", k.counters[LOUPE_CTR_READ_ERRORS]);
  }
  return line;
}

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ NowNs(CLOCK_MONOTONIC);
}

int RunReplay(const AgentConfig& config) {
  auto reader = RecordingReader::Open(config.replay_path);
  if (!reader.ok()) {
    LogError(reader.status().message());
    return 1;
  }
  Outputs outputs;
  if (absl::Status s = BuildOutputs(config, &outputs); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  const RecordingHeader& header = (*reader)->header();
  // A replay never reads /proc: processes are what the recording says, or
  // just their kernel comm.
  ProcessTable processes(
      header.host_name,
      [](uint32_t tgid, const std::string& comm) {
        ProcessInfo info;
        info.tgid = tgid;
        info.comm = comm;
        return info;
      },
      8192, config.resource_attributes);
  if (outputs.metrics) {
    outputs.metrics->SetServiceGraphResource(
        MakeAgentResource(header.host_name, config.resource_attributes));
  }
  PipelineOptions options;
  options.tracker = MakeTrackerOptions(config);
  options.realtime_offset_ns = header.realtime_offset_ns;
  options.id_seed = RandomSeed();
  options.sampler = config.sampler;
  options.metrics = outputs.metrics.get();
  // The host of a replay is not the recording's: its cgroups and processes
  // say nothing about recorded OOM kills.
  options.oom.read_host_facts = false;
  options.oom.realtime_offset_ns = header.realtime_offset_ns;
  options.logs = outputs.otlp_logs.get();
  Pipeline pipeline(options, processes, outputs.spans, nullptr);
  LogInfo("replaying ", config.replay_path, " (recorded on ", header.host_name, ")");

  uint64_t last_tick = 0;
  RecordingReader::Record record;
  int status = 0;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) {
      LogWarn(more.status().message(), "; decoding what was read before it");
      break;
    }
    if (!*more) break;
    if (record.type == RecordingReader::RecordType::kProcess) {
      absl::StatusOr<ProcessInfo> info = DecodeProcessInfo(record.body);
      if (info.ok()) {
        // As live: a process read again (exec, a reused pid) replaces the
        // cached one and cancels a pending forget.
        pipeline.OnProcessInfo(*info);
      } else {
        LogWarn(info.status().message());
      }
      continue;
    }
    pipeline.OnRawEvent(record.body);
    // Housekeeping on the recording's own clock.
    const uint64_t now = pipeline.latest_event_ns();
    if (now >= last_tick + std::chrono::nanoseconds(kTickPeriod).count()) {
      pipeline.Tick(now);
      last_tick = now;
    }
  }
  pipeline.Finish();
  outputs.Shutdown();
  LogInfo(StatsLine(pipeline.stats(), KernelView{}));
  return status;
}

class LiveRun {
 public:
  explicit LiveRun(const AgentConfig& config) : config_(config), queue_(kQueueBytes) {}

  int Run();

 private:
  void ReaderLoop();
  void OnRingEvent(std::span<const uint8_t> raw);
  void SnoopNewProcess(std::span<const uint8_t> raw);
  void SnoopProcess(uint32_t tgid, const std::string& comm, uint64_t now);
  void OnProcessEvent(std::span<const uint8_t> raw);
  void DecoderLoop();
  void PublishStats();
  // Decoder thread: the processes (and their containers) to sample next,
  // handed to the main thread, which reads /proc and cgroup files.
  void QueueResourceSample();
  void RunResourceSample();
  KernelView ReadKernelView();
  std::vector<SelfMetric> SelfMetrics();

  const AgentConfig& config_;
  EventQueue queue_;
  EventBatch current_;
  // Reader thread: when each process was last read from /proc.
  absl::flat_hash_map<uint32_t, uint64_t> snooped_;
  std::unique_ptr<BpfCapture> capture_;
  std::unique_ptr<RecordingWriter> recorder_;
  std::unique_ptr<PodCache> pods_;
  std::unique_ptr<PodWatcher> pod_watcher_;  // declared after pods_: stops first
  // Containers' recent memory: written by the sampler, read for OOM kills.
  MemoryHistory memory_history_;
  std::unique_ptr<ProcessTable> processes_;
  Outputs outputs_;
  std::unique_ptr<Pipeline> pipeline_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stop_reader_{false};
  std::mutex stats_mu_;
  PipelineStats stats_snapshot_;  // guarded by stats_mu_
  // CPU and memory sampling (--resource-interval).
  struct SampleBatch {
    std::vector<ResourceSampler::Process> processes;
    // A container: its id, one of its processes (for its cgroup paths), the
    // container's resource.
    std::vector<std::tuple<std::string, uint32_t, std::shared_ptr<const Resource>>> containers;
  };
  std::unique_ptr<ResourceSampler> sampler_;
  CgroupMounts cgroup_mounts_;
  std::string host_;
  // Decoder thread: container resources by container id.
  absl::flat_hash_map<std::string, std::shared_ptr<const Resource>> container_resources_;
  std::mutex sample_mu_;
  std::optional<SampleBatch> sample_batch_;  // guarded by sample_mu_
};

void LiveRun::QueueResourceSample() {
  SampleBatch batch;
  absl::flat_hash_map<std::string, bool> seen;
  // Bounded by the process table; a table of containers that came and went
  // is simply started again.
  if (container_resources_.size() > 4096) container_resources_.clear();
  processes_->ForEach([&](const ProcessInfo& info, const std::shared_ptr<const Resource>& r) {
    if (!info.from_proc) return;
    batch.processes.push_back({info.tgid, r});
    if (info.container_id.empty() || !seen.emplace(info.container_id, true).second) return;
    std::shared_ptr<const Resource>& resource = container_resources_[info.container_id];
    if (resource == nullptr) {
      auto made = std::make_shared<Resource>();
      made->attributes.Set("container.id", info.container_id);
      if (!info.container_runtime.empty()) {
        made->attributes.Set("container.runtime", info.container_runtime);
      }
      if (!info.pod_uid.empty()) made->attributes.Set("k8s.pod.uid", info.pod_uid);
      made->attributes.Set("host.name", host_);
      // Tells containers apart where only service.* identify a series
      // (Prometheus).
      made->attributes.Set("service.instance.id",
                           absl::StrCat(host_, ":", info.container_id.substr(0, 12)));
      resource = std::move(made);
    }
    batch.containers.emplace_back(info.container_id, info.tgid, resource);
  });
  std::lock_guard<std::mutex> lock(sample_mu_);
  sample_batch_ = std::move(batch);
}

void LiveRun::RunResourceSample() {
  std::optional<SampleBatch> batch;
  {
    std::lock_guard<std::mutex> lock(sample_mu_);
    batch.swap(sample_batch_);
  }
  if (!batch || sampler_ == nullptr) return;
  std::vector<ResourceSampler::Container> containers;
  for (const auto& [id, pid, resource] : batch->containers) {
    std::string text;
    ReadBoundedFile(absl::StrCat("/proc/", pid, "/cgroup"), 64 * 1024, &text);
    const ProcCgroups cgroups = ParseProcCgroups(text);
    ResourceSampler::Container c;
    c.key = id;
    c.resource = resource;
    if (!cgroup_mounts_.memory.empty() && !cgroups.memory.empty()) {
      c.location.version = CgroupVersion::kV1;
      c.location.memory = {cgroup_mounts_.memory, cgroups.memory};
      c.location.cpu = {cgroup_mounts_.cpu, cgroups.cpu};
      c.location.cpuacct = {cgroup_mounts_.cpuacct, cgroups.cpuacct};
    } else {
      c.location.version = CgroupVersion::kV2;
      c.location.unified = {cgroup_mounts_.unified, cgroups.unified};
    }
    containers.push_back(std::move(c));
  }
  sampler_->Sample(batch->processes, containers, NowNs(CLOCK_REALTIME));
  LogDebug("sampled CPU and memory of ", batch->processes.size(), " processes and ",
           containers.size(), " containers");
}

void LiveRun::ReaderLoop() {
  while (!stop_reader_.load(std::memory_order_relaxed)) {
    const int n = capture_->Poll(kPollTimeoutMs);
    if (n < 0 && n != -EINTR) {
      LogError("reading the ring buffer failed: ", std::strerror(-n));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!current_.empty()) {
      queue_.Push(std::move(current_));
      current_ = EventBatch();
    }
  }
  // Drain what the kernel already wrote before we stop.
  capture_->Poll(0);
  if (!current_.empty()) queue_.Push(std::move(current_));
  queue_.Close();
}

void LiveRun::OnRingEvent(std::span<const uint8_t> raw) {
  if (IsProcessEvent(raw)) {
    OnProcessEvent(raw);
  } else {
    SnoopNewProcess(raw);
  }
  current_.Append(EventBatch::EntryType::kKernelEvent, raw);
  if (current_.size_bytes() >= kBatchBytes) {
    queue_.Push(std::move(current_));
    current_ = EventBatch();
  }
}

// A process's first connection is the moment to read who it is: a client
// like curl may exit a millisecond later, long before the decoding thread
// gets to its events. The kernel wakes us for these events at once (see
// loupe_known_procs), and the few /proc reads happen here, on the reader
// thread, once per process (again after kSnoopTtlNs, in case the pid was
// reused).
void LiveRun::SnoopNewProcess(std::span<const uint8_t> raw) {
  if (raw.size() != sizeof(loupe_conn_event)) return;
  loupe_conn_event ev;
  std::memcpy(&ev, raw.data(), sizeof(ev));
  if (ev.hdr.type != LOUPE_EV_CONN_OPEN) return;
  const uint64_t now = NowNs(CLOCK_MONOTONIC);
  auto it = snooped_.find(ev.hdr.tgid);
  if (it != snooped_.end() && now - it->second < kSnoopTtlNs) return;
  SnoopProcess(ev.hdr.tgid, std::string(ev.comm, strnlen(ev.comm, sizeof(ev.comm))), now);
}

// Reads /proc/<tgid> and queues the ProcessInfo ahead of the event that
// caused the read, so the decoder thread knows the process first.
void LiveRun::SnoopProcess(uint32_t tgid, const std::string& comm, uint64_t now) {
  if (snooped_.size() >= kMaxSnoopedProcesses) snooped_.clear();
  snooped_[tgid] = now;
  const ProcessInfo info = ReadProcessInfo("/proc", tgid, comm);
  current_.Append(EventBatch::EntryType::kProcessInfo, EncodeProcessInfo(info));
}

// An exec is read at once, whether or not the process was read before: the
// new program has another name and maybe another environment, and a short
// lived one may be gone before its first connection's event is read. The
// kernel wakes us for execs at once. An exit lets a reused pid be read again
// on its first connection.
void LiveRun::OnProcessEvent(std::span<const uint8_t> raw) {
  if (raw.size() != sizeof(loupe_process_event)) return;  // the decoder thread reports it
  loupe_process_event ev;
  std::memcpy(&ev, raw.data(), sizeof(ev));
  if (ev.kind == LOUPE_PROCESS_EXIT) {
    snooped_.erase(ev.hdr.tgid);
    return;
  }
  if (ev.kind != LOUPE_PROCESS_EXEC) return;
  SnoopProcess(ev.hdr.tgid, std::string(ev.comm, strnlen(ev.comm, sizeof(ev.comm))),
               NowNs(CLOCK_MONOTONIC));
}

void LiveRun::PublishStats() {
  PipelineStats s = pipeline_->stats();
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_snapshot_ = std::move(s);
}

void LiveRun::DecoderLoop() {
  using Clock = std::chrono::steady_clock;
  auto last_tick = Clock::now();
  auto last_flush = Clock::now();
  // The first sample comes one interval after start, when the traced
  // processes are known.
  auto last_sample = Clock::now();
  EventBatch batch;
  while (true) {
    const bool got = queue_.Pop(&batch, kTickPeriod);
    if (got) {
      batch.ForEach([this](EventBatch::EntryType type, std::span<const uint8_t> bytes) {
        if (type == EventBatch::EntryType::kKernelEvent) {
          pipeline_->OnRawEvent(bytes);
        } else if (absl::StatusOr<ProcessInfo> info = DecodeProcessInfo(bytes); info.ok()) {
          pipeline_->OnProcessInfo(*info);
        }
      });
    } else if (queue_.closed_and_empty()) {
      break;
    }
    const auto now = Clock::now();
    if (now - last_tick >= kTickPeriod) {
      pipeline_->Tick(NowNs(CLOCK_MONOTONIC));
      PublishStats();
      last_tick = now;
    }
    if (sampler_ != nullptr &&
        now - last_sample >= std::chrono::seconds(config_.resource_interval_s)) {
      QueueResourceSample();
      last_sample = now;
    }
    if (now - last_flush >= kFlushPeriod) {
      pipeline_->FlushExporters();
      if (recorder_) {
        if (absl::Status s = recorder_->Flush(); !s.ok()) LogWarn(s.message());
      }
      last_flush = now;
    }
  }
}

std::vector<SelfMetric> LiveRun::SelfMetrics() {
  SelfTelemetry t;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    t.pipeline = stats_snapshot_;
  }
  t.live = true;
  t.kernel = capture_ ? capture_->ReadCounters() : KernelCounters{};
  t.queue_dropped = queue_.dropped_events();
  t.hooks_attached = capture_ ? capture_->attached_hooks() : 0;
  if (outputs_.metrics) t.metrics = outputs_.metrics->stats();
  if (sampler_) t.resources = sampler_->stats();
  t.exporters = t.pipeline.exporter_stats;
  if (outputs_.otlp_metrics) {
    const OtlpMetricExporterStats m = outputs_.otlp_metrics->stats();
    t.metric_points_exported = m.points_exported;
    t.metric_exports_failed = m.exports_failed;
  }
  if (outputs_.otlp_logs) t.logs = outputs_.otlp_logs->stats();
  return ToSelfMetrics(t);
}

KernelView LiveRun::ReadKernelView() {
  KernelView k;
  k.live = true;
  k.counters = capture_->ReadCounters();
  k.queue_dropped = queue_.dropped_events();
  return k;
}

int LiveRun::Run() {
  if (absl::Status s = CheckStartupPrivileges(config_); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  std::string events_dir;
  bool mounted = false;
  if (absl::Status s = EnsureTracefs(&events_dir, &mounted); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  if (mounted) LogInfo("mounted tracefs at /sys/kernel/tracing");

  if (absl::Status s = BuildOutputs(config_, &outputs_); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  const std::string host = HostName();
  const int64_t realtime_offset = RealtimeOffsetNs();
  if (!config_.record_path.empty()) {
    RecordingHeader header;
    header.abi_version = LOUPE_ABI_VERSION;
    header.realtime_offset_ns = realtime_offset;
    header.host_name = host;
    auto writer = RecordingWriter::Create(config_.record_path, header);
    if (!writer.ok()) {
      LogError(writer.status().message());
      return 1;
    }
    recorder_ = std::move(*writer);
    LogInfo("recording raw events to ", config_.record_path);
  }
  processes_ = std::make_unique<ProcessTable>(
      host,
      [](uint32_t tgid, const std::string& comm) { return ReadProcessInfo("/proc", tgid, comm); },
      8192, config_.resource_attributes);
  if (outputs_.metrics) {
    outputs_.metrics->SetServiceGraphResource(MakeAgentResource(host, config_.resource_attributes));
  }
  if (recorder_) {
    processes_->set_observer([this](const ProcessInfo& info) { recorder_->WriteProcess(info); });
  }
  // In a Kubernetes cluster (in-cluster credentials), the pods of this node
  // name the containers' processes (docs/kubernetes.md); elsewhere this is
  // off.
  if (std::optional<PodWatcherOptions> k8s = PodWatcherOptions::FromEnvironment()) {
    pods_ = std::make_unique<PodCache>();
    pod_watcher_ = std::make_unique<PodWatcher>(*k8s, pods_.get());
    if (absl::Status s = pod_watcher_->Start(); !s.ok()) {
      LogWarn("Kubernetes pod metadata is off: ", s.message());
      pod_watcher_.reset();
    } else {
      processes_->set_pods(pods_.get());
      LogInfo("watching the pods of node ", k8s->node_name, " at ", k8s->api_base_url);
    }
  } else {
    LogDebug("not in a Kubernetes cluster (no KUBERNETES_SERVICE_HOST): pod metadata off");
  }
  PipelineOptions options;
  options.tracker = MakeTrackerOptions(config_);
  options.realtime_offset_ns = realtime_offset;
  options.id_seed = RandomSeed();
  options.sampler = config_.sampler;
  options.metrics = outputs_.metrics.get();
  options.oom.realtime_offset_ns = realtime_offset;
  options.pods = pods_.get();
  options.logs = outputs_.otlp_logs.get();
  options.memory_history = &memory_history_;
  pipeline_ = std::make_unique<Pipeline>(options, *processes_, outputs_.spans, recorder_.get());
  if (outputs_.metrics && config_.resource_interval_s > 0) {
    ResourceSamplerOptions sampler_options;
    sampler_options.memory_history = &memory_history_;
    sampler_ = std::make_unique<ResourceSampler>(*outputs_.metrics, sampler_options);
    cgroup_mounts_ = ReadCgroupMounts("/proc");
    host_ = host;
  }

  if (!config_.metrics_listen.empty()) {
    // Its request threads are created already reduced (agent/privileges.h).
    auto server = RunWithServingPrivileges(config_, [this] {
      return MetricsHttpServer::Start(
          config_.metrics_listen, *outputs_.metrics, [this] { return SelfMetrics(); },
          [this] { return ready_.load(); });
    });
    if (!server.ok()) {
      LogError(server.status().message(),
               " (choose another address with --metrics-listen, or 'off')");
      return 1;
    }
    outputs_.http = std::move(*server);
    // Recent OOM kills, oldest first (docs/oom.md).
    outputs_.http->ServeJson("/oom", [this] {
      std::string body = "[";
      for (const OomKill& kill : pipeline_->oom_reporter().Recent()) {
        if (body.size() > 1) body += ",";
        body += OomKillJson(kill);
      }
      return body + "]";
    });
    LogInfo("serving /metrics, /healthz, /readyz and /oom on ", config_.metrics_listen,
            " (port ", outputs_.http->port(), ")");
  }

  // Signals are taken synchronously by this thread; every thread started
  // below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  CaptureOptions capture_options;
  capture_options.self_tgid = static_cast<uint32_t>(getpid());
  capture_options.payload_bytes = config_.payload_bytes;
  capture_options.payload_bytes_framed = config_.payload_bytes_framed;
  capture_options.ringbuf_bytes = config_.ringbuf_bytes;
  // A sixty-fourth of the ring: large batches, and far from overflowing.
  capture_options.wakeup_bytes = std::max<uint64_t>(config_.ringbuf_bytes / 64, 4096);
  capture_options.pids = config_.pids;
  capture_options.ports = config_.ports;
  capture_options.skip_hooks = config_.skip_hooks;
  capture_options.tracefs_events_dir = events_dir;
  auto capture = BpfCapture::Start(capture_options,
                                  [this](std::span<const uint8_t> raw) { OnRingEvent(raw); });
  if (!capture.ok()) {
    LogError(capture.status().message());
    return 1;
  }
  capture_ = std::move(*capture);
  for (const HookStatus& hook : capture_->hooks()) {
    if (!hook.attached) LogWarn("hook ", hook.tracepoint, " is off: ", hook.error);
  }
  // Attached, tracefs mounted, the listener bound: what is left needs little.
  DropPrivilegesAfterStart(config_);
  std::string scope = "all processes";
  if (!config_.pids.empty()) scope = absl::StrCat("pids ", absl::StrJoin(config_.pids, ","));
  if (!config_.ports.empty()) absl::StrAppend(&scope, ", ports ", absl::StrJoin(config_.ports, ","));
  LogInfo("ready: ", capture_->attached_hooks(), " of ", capture_->hooks().size(),
          " hooks attached; tracing ", scope, " (not loupe itself, pid ", getpid(),
          "); payload prefix ", config_.payload_bytes, " bytes (HTTP/2, gRPC, databases: ",
          config_.payload_bytes_framed, ")");

  std::thread decoder([this] { DecoderLoop(); });
  std::thread reader([this] { ReaderLoop(); });
  ready_.store(true);

  auto last_stats = std::chrono::steady_clock::now();
  while (true) {
    timespec wait{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      LogInfo("received ", sig == SIGINT ? "SIGINT" : "SIGTERM", ", flushing and exiting");
      break;
    }
    RunResourceSample();
    const auto now = std::chrono::steady_clock::now();
    if (config_.stats_interval_s > 0 &&
        now - last_stats >= std::chrono::seconds(config_.stats_interval_s)) {
      PipelineStats snapshot;
      {
        std::lock_guard<std::mutex> lock(stats_mu_);
        snapshot = stats_snapshot_;
      }
      LogInfo(StatsLine(snapshot, ReadKernelView()));
      last_stats = now;
    }
  }
  ready_.store(false);
  stop_reader_.store(true);
  reader.join();
  decoder.join();
  pipeline_->Finish();
  outputs_.Shutdown();
  if (recorder_) {
    if (absl::Status s = recorder_->Flush(); !s.ok()) LogWarn(s.message());
  }
  LogInfo(StatsLine(pipeline_->stats(), ReadKernelView()));
  return 0;
}

}  // namespace

int RunAgent(const AgentConfig& config) {
  SetLogLevel(config.log_level);
  if (!config.replay_path.empty()) return RunReplay(config);
  LiveRun run(config);
  return run.Run();
}

}  // namespace loupe
