// The OTLP span exporter: the batching exporter (otlp_batch_exporter.h,
// which documents the queue, batches, retries and shutdown) for spans,
// behind the SpanExporter interface the agent fans spans out to.
#ifndef LOUPE_EXPORTERS_OTLP_OTLP_SPAN_EXPORTER_H_
#define LOUPE_EXPORTERS_OTLP_OTLP_SPAN_EXPORTER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "decoders/model/span.h"
#include "exporters/exporter.h"
#include "exporters/otlp/otlp_batch_exporter.h"
#include "exporters/otlp/otlp_encoder.h"

namespace loupe {

// Spans to one request body (ExportTraceServiceRequest).
using SpanEncodeFn = std::function<std::string(std::span<const Span> spans)>;

class OtlpSpanExporter : public SpanExporter {
 public:
  static constexpr std::chrono::milliseconds kDestructorShutdownDeadline =
      OtlpBatchExporter<Span>::kDestructorShutdownDeadline;

  OtlpSpanExporter(OtlpBatchConfig config, std::unique_ptr<OtlpTransport> transport,
                   ExportLogFn log = {}, SpanEncodeFn encode = EncodeTraceRequest,
                   std::string name = "otlp")
      : batch_(config, std::move(transport), std::move(log), std::move(encode), std::move(name),
               BatchItemNames{"traces", "spans"}) {}

  std::string_view name() const override { return batch_.name(); }
  // Thread-safe; never blocks on the network.
  void Consume(Span&& span) override { batch_.Consume(std::move(span)); }
  // A no-op: the agent calls it every second from the decoding thread, and
  // batches already leave by size or schedule_delay on the export thread.
  // At exit, call Shutdown, which exports what is queued.
  void Flush() override {}
  ExporterStats stats() const override { return batch_.stats(); }
  void Shutdown(std::chrono::milliseconds deadline) { batch_.Shutdown(deadline); }

 private:
  OtlpBatchExporter<Span> batch_;
};

// Log records (OOM kills and other diagnosed events) over OTLP.
class OtlpLogExporter : public LogConsumer {
 public:
  OtlpLogExporter(OtlpBatchConfig config, std::unique_ptr<OtlpTransport> transport,
                  ExportLogFn log = {}, std::string name = "otlp")
      : batch_(config, std::move(transport), std::move(log), EncodeLogsRequest, std::move(name),
               BatchItemNames{"logs", "log records"}) {}

  // Thread-safe; never blocks on the network.
  void Consume(LogRecord&& record) override { batch_.Consume(std::move(record)); }
  ExporterStats stats() const { return batch_.stats(); }
  void Shutdown(std::chrono::milliseconds deadline) { batch_.Shutdown(deadline); }

 private:
  OtlpBatchExporter<LogRecord> batch_;
};

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_OTLP_OTLP_SPAN_EXPORTER_H_
