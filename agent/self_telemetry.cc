#include "agent/self_telemetry.h"

#include <array>
#include <map>

namespace loupe {

namespace {

void Counter(std::vector<SelfMetric>& out, std::string name, std::string help, double value,
             std::vector<std::pair<std::string, std::string>> labels = {}) {
  out.push_back(SelfMetric{std::move(name), std::move(help), SelfMetric::Type::kCounter,
                           std::move(labels), value});
}

void Gauge(std::vector<SelfMetric>& out, std::string name, std::string help, double value) {
  out.push_back(SelfMetric{std::move(name), std::move(help), SelfMetric::Type::kGauge, {}, value});
}

}  // namespace

std::vector<SelfMetric> ToSelfMetrics(const SelfTelemetry& t) {
  std::vector<SelfMetric> out;
  const PipelineStats& p = t.pipeline;
  const ProtocolStats& proto = p.tracker.protocol;
  Counter(out, "loupe_events_received_total", "Kernel events decoded in user space.",
          static_cast<double>(p.events_received));
  Counter(out, "loupe_events_invalid_total", "Kernel events that failed validation.",
          static_cast<double>(p.events_invalid));
  if (t.live) {
    Counter(out, "loupe_kernel_events_emitted_total", "Events the kernel programs wrote.",
            static_cast<double>(t.kernel[LOUPE_CTR_EVENTS_EMITTED]));
    const std::string lost_help = "Events lost before decoding, by reason.";
    Counter(out, "loupe_events_lost_total", lost_help,
            static_cast<double>(t.kernel[LOUPE_CTR_EVENTS_LOST]), {{"reason", "ringbuf_full"}});
    Counter(out, "loupe_events_lost_total", lost_help, static_cast<double>(t.queue_dropped),
            {{"reason", "queue_full"}});
    Counter(out, "loupe_bytes_copied_total", "Payload bytes copied by the kernel programs.",
            static_cast<double>(t.kernel[LOUPE_CTR_BYTES_COPIED]));
    Counter(out, "loupe_bytes_uncopied_total",
            "Payload bytes beyond the copied prefix (counted, not copied).",
            static_cast<double>(t.kernel[LOUPE_CTR_BYTES_UNCOPIED]));
    Counter(out, "loupe_sockets_seen_total", "TCP sockets entered in the kernel connection map.",
            static_cast<double>(t.kernel[LOUPE_CTR_CONNS_SEEN]));
    Counter(out, "loupe_connections_classified_total",
            "Connections the kernel classifier recognised a protocol on.",
            static_cast<double>(t.kernel[LOUPE_CTR_CONNS_CLASSIFIED]));
    Counter(out, "loupe_kernel_read_errors_total", "Failed reads of user memory in the kernel.",
            static_cast<double>(t.kernel[LOUPE_CTR_READ_ERRORS]));
    Gauge(out, "loupe_hooks_attached", "Syscall tracepoints attached.",
          static_cast<double>(t.hooks_attached));
  }
  Gauge(out, "loupe_connections_open", "Connections being decoded.",
        static_cast<double>(p.connections_open));
  Gauge(out, "loupe_processes_known", "Processes whose metadata is cached.",
        static_cast<double>(p.processes_known));
  Counter(out, "loupe_connections_evicted_total",
          "Connections dropped because --max-connections was reached.",
          static_cast<double>(p.tracker.connections_evicted));
  Counter(out, "loupe_gap_bytes_total", "Stream bytes not captured (truncation and loss).",
          static_cast<double>(p.tracker.gap_bytes));
  Counter(out, "loupe_lost_bytes_total", "Stream bytes lost between events.",
          static_cast<double>(p.tracker.lost_bytes));
  Counter(out, "loupe_parse_errors_total", "Invalid protocol input skipped.",
          static_cast<double>(proto.parse_errors));
  Counter(out, "loupe_truncated_messages_total", "Messages cut by a gap.",
          static_cast<double>(proto.truncated));
  Counter(out, "loupe_unmatched_responses_total", "Responses without a request.",
          static_cast<double>(proto.unmatched_responses));
  Counter(out, "loupe_unanswered_requests_total", "Requests without a response.",
          static_cast<double>(proto.unanswered_requests));
  Counter(out, "loupe_aborted_requests_total",
          "Server requests cut short by the death of their process (OOM kill), "
          "ended as error spans.",
          static_cast<double>(proto.aborted_requests));
  Counter(out, "loupe_protocol_upgrades_total",
          "Connections that switched protocols (HTTP/1.1 to h2c).",
          static_cast<double>(proto.upgrades));
  Counter(out, "loupe_resyncs_total", "Times a decoder lost framing and resynchronised.",
          static_cast<double>(proto.resyncs));
  Counter(out, "loupe_hpack_recoveries_total",
          "HTTP/2 directions decoded without their HPACK history (joined mid-connection).",
          static_cast<double>(proto.hpack_recoveries));
  Counter(out, "loupe_hpack_unknown_fields_total",
          "HTTP/2 header fields that referred to HPACK entries never seen.",
          static_cast<double>(proto.hpack_unknown_fields));
  Counter(out, "loupe_spans_produced_total", "Spans produced from decoded exchanges.",
          static_cast<double>(p.spans_produced));
  Counter(out, "loupe_spans_sampled_out_total", "Spans the trace sampler did not export.",
          static_cast<double>(p.spans_sampled_out));
  if (t.resources) {
    const ResourceSamplerStats& r = *t.resources;
    Counter(out, "loupe_resource_samples_total", "CPU and memory samples taken, by entity.",
            static_cast<double>(r.processes_sampled), {{"entity", "process"}});
    Counter(out, "loupe_resource_samples_total", "CPU and memory samples taken, by entity.",
            static_cast<double>(r.containers_sampled), {{"entity", "container"}});
    Counter(out, "loupe_resource_samples_skipped_total",
            "Samples left for a later tick (more entities than one tick reads).",
            static_cast<double>(r.processes_skipped + r.containers_skipped));
    Counter(out, "loupe_resource_sample_errors_total", "Unreadable /proc or cgroup files.",
            static_cast<double>(r.process_errors + r.container_errors));
  }
  Counter(out, "loupe_process_events_total",
          "Process lifecycle events: a new program (exec) or a process's end (exit).",
          static_cast<double>(p.process_execs), {{"kind", "exec"}});
  Counter(out, "loupe_process_events_total",
          "Process lifecycle events: a new program (exec) or a process's end (exit).",
          static_cast<double>(p.process_exits), {{"kind", "exit"}});
  {
    // Every kind at least once (0 until a kill), then the kills by pod.
    std::map<std::array<std::string, 4>, uint64_t> kills = p.oom_kills;
    for (OomKind kind : {OomKind::kUnknown, OomKind::kCgroup, OomKind::kGlobal}) {
      kills.try_emplace({std::string(OomKindName(kind)), "", "", ""}, 0);
    }
    for (const auto& [labels, count] : kills) {
      Counter(out, "loupe_oom_kills_total", "Processes killed by the kernel's OOM killer.",
              static_cast<double>(count),
              {{"k8s_namespace_name", labels[1]},
               {"k8s_pod_name", labels[2]},
               {"k8s_container_name", labels[3]},
               {"kind", labels[0]}});
    }
  }
  {
    const LinkerStats& l = p.linker;
    const std::string help = "Spans given a parent, by how the parent was found.";
    Counter(out, "loupe_context_links_total", help, static_cast<double>(l.links_peer),
            {{"method", "peer"}});
    Counter(out, "loupe_context_links_total", help, static_cast<double>(l.links_header),
            {{"method", "header"}});
    Counter(out, "loupe_context_links_total", help, static_cast<double>(l.links_forwarded),
            {{"method", "forwarded"}});
    Counter(out, "loupe_context_links_total", help, static_cast<double>(l.links_thread),
            {{"method", "thread"}});
    Counter(out, "loupe_context_roots_total", "Spans that started a new trace.",
            static_cast<double>(l.roots));
    Counter(out, "loupe_context_ambiguous_total",
            "Client calls made while several server requests were open on the thread "
            "(event loops): no parent guessed.",
            static_cast<double>(l.ambiguous));
    Counter(out, "loupe_context_late_total",
            "Exchanges announced after their decision was due, decided with what was known.",
            static_cast<double>(l.late));
    Counter(out, "loupe_context_forced_total",
            "Exchanges decided early: evicted by the bound, or at shutdown.",
            static_cast<double>(l.forced));
    Counter(out, "loupe_context_evicted_total",
            "Unfinished or undecided exchanges forgotten to stay within the linker's bound.",
            static_cast<double>(l.evicted));
    Counter(out, "loupe_context_unannounced_total",
            "Finished exchanges whose announcement was unknown (evicted or never seen).",
            static_cast<double>(l.unannounced_records));
    Gauge(out, "loupe_context_pending", "Exchanges held by the trace context linker.",
          static_cast<double>(p.exchanges_pending));
  }
  Counter(out, "loupe_metric_points_total", "Measurements recorded into RED metrics.",
          static_cast<double>(t.metrics.points_recorded));
  Counter(out, "loupe_metric_overflow_points_total",
          "Measurements that went to an otel.metric.overflow series (cardinality limit).",
          static_cast<double>(t.metrics.overflow_points));
  Gauge(out, "loupe_metric_series", "Metric series (attribute sets) held.",
        static_cast<double>(t.metrics.series));
  Gauge(out, "loupe_metric_resources", "Resources (processes) with metric series.",
        static_cast<double>(t.metrics.resources));
  Counter(out, "loupe_metric_dropped_points_total",
          "Measurements dropped because even the overflow series were full.",
          static_cast<double>(t.metrics.dropped_points));
  Counter(out, "loupe_metric_series_evicted_total",
          "Idle metric series evicted to make room for new ones.",
          static_cast<double>(t.metrics.series_evicted));
  for (const auto& [name, e] : t.exporters) {
    const std::vector<std::pair<std::string, std::string>> label = {{"exporter", name}};
    Counter(out, "loupe_spans_exported_total", "Spans written or accepted by an exporter.",
            static_cast<double>(e.spans_exported), label);
    const std::string dropped_help = "Spans an exporter dropped, by reason.";
    auto reason = [&](const char* why, uint64_t n) {
      Counter(out, "loupe_spans_dropped_total", dropped_help, static_cast<double>(n),
              {{"exporter", name}, {"reason", why}});
    };
    const uint64_t itemised = e.dropped_queue_full + e.dropped_retry_expired +
                              e.dropped_rejected + e.dropped_shutdown;
    reason("queue_full", e.dropped_queue_full);
    reason("retry_expired", e.dropped_retry_expired);
    reason("rejected", e.dropped_rejected);
    reason("shutdown", e.dropped_shutdown);
    if (e.spans_dropped > itemised) reason("other", e.spans_dropped - itemised);
    Counter(out, "loupe_export_errors_total", "Failed export attempts or writes.",
            static_cast<double>(e.export_errors), label);
    Counter(out, "loupe_export_retries_total", "Export attempts after a retryable failure.",
            static_cast<double>(e.export_retries), label);
  }
  Counter(out, "loupe_metric_points_exported_total", "Metric points accepted over OTLP.",
          static_cast<double>(t.metric_points_exported));
  Counter(out, "loupe_metric_exports_failed_total", "OTLP metric exports given up.",
          static_cast<double>(t.metric_exports_failed));
  if (t.logs) {
    Counter(out, "loupe_log_records_exported_total",
            "Log records (OOM kills) accepted over OTLP.",
            static_cast<double>(t.logs->spans_exported));
    Counter(out, "loupe_log_records_dropped_total",
            "Log records (OOM kills) the OTLP log exporter dropped.",
            static_cast<double>(t.logs->spans_dropped));
  }
  return out;
}

}  // namespace loupe
