// The span model: what protocol decoders produce and exporters consume.
//
// It is independent of any wire format. A protocol decoder turns one
// request/response exchange into a SpanRecord (times in CLOCK_MONOTONIC, no
// ids, no resource); the SpanAssembler gives it trace and span ids, converts
// its times to Unix time and attaches the Resource of the process, producing
// a Span that the exporters write.
#ifndef LOUPE_DECODERS_MODEL_SPAN_H_
#define LOUPE_DECODERS_MODEL_SPAN_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "decoders/events.h"

namespace loupe {

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  std::string key;
  AttributeValue value;
  bool operator==(const Attribute&) const = default;
};

// Ordered as inserted; keys are unique (Set replaces).
class Attributes {
 public:
  void Set(std::string_view key, std::string value);
  void Set(std::string_view key, const char* value) { Set(key, std::string(value)); }
  void Set(std::string_view key, int64_t value);
  void Set(std::string_view key, double value);
  void Set(std::string_view key, bool value);
  void Reserve(size_t n) { items_.reserve(n); }
  const AttributeValue* Find(std::string_view key) const;
  // Convenience for tests and exporters: nullptr when absent or not a string.
  const std::string* FindString(std::string_view key) const;
  const int64_t* FindInt(std::string_view key) const;

  const std::vector<Attribute>& items() const { return items_; }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  bool operator==(const Attributes&) const = default;

 private:
  void SetValue(std::string_view key, AttributeValue value);
  std::vector<Attribute> items_;
};

enum class SpanKind : uint8_t { kServer, kClient };
enum class StatusCode : uint8_t { kUnset, kOk, kError };

std::string_view SpanKindName(SpanKind kind);        // "SERVER" / "CLIENT"
std::string_view StatusCodeName(StatusCode code);    // "UNSET" / "OK" / "ERROR"

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

// A trace context read from a request's headers (W3C traceparent /
// tracestate, B3): the caller's trace and span (decoders/model/
// trace_context.h parses them).
struct TraceContext {
  TraceId trace_id{};
  SpanId span_id{};
  bool sampled = false;
  std::string tracestate;  // W3C tracestate, passed on as is (bounded)
  bool operator==(const TraceContext&) const = default;
};

// Where one exchange sits on its connection, so that its start (announced
// when the request is seen) and its end (the SpanRecord) can be matched,
// and so that the two ends of one connection can be joined: HTTP/2 stream
// ids are the same on both ends.
struct ExchangeKey {
  uint64_t conn_id = 0;
  uint64_t seq = 0;        // per connection, assigned by the decoder (1, 2, ...)
  uint64_t stream_id = 0;  // HTTP/2 stream id; 0 when the protocol has none
  bool operator==(const ExchangeKey&) const = default;
};

// A request seen, before its response: announced so that exchanges that
// start while it is open (calls the handling thread makes, the server side
// of a connection on this host) can be linked to it.
struct ExchangeStart {
  ExchangeKey key;
  SpanKind kind = SpanKind::kServer;
  uint32_t tgid = 0;
  uint32_t tid = 0;            // thread that carried the request's first byte
  uint64_t start_mono_ns = 0;  // as SpanRecord::start_mono_ns
  ConnTuple tuple;
  std::optional<TraceContext> context;  // from the request's headers
};

// One finished exchange, as a protocol decoder sees it.
struct SpanRecord {
  SpanKind kind = SpanKind::kServer;
  std::string name;
  uint64_t start_mono_ns = 0;  // first request byte
  uint64_t end_mono_ns = 0;    // last response byte
  StatusCode status = StatusCode::kUnset;
  std::string status_message;
  Attributes attributes;
  // Identity, for the resource lookup and context linking.
  uint32_t tgid = 0;
  uint32_t tid = 0;  // thread that carried the request's first byte
  uint64_t conn_id = 0;
  ConnTuple tuple;
  // Set by decoders that announce ExchangeStarts (key.seq != 0), the same
  // key as announced; decoders that do not announce leave it zero and their
  // spans are linked at completion (leaf calls: databases).
  ExchangeKey key;
  std::optional<TraceContext> context;  // from the request's headers
  // Decided by the ContextLinker (ids_decided); otherwise the assembler
  // starts a new trace for the record.
  bool ids_decided = false;
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};
  bool sampled = true;
};

std::string ToHex(const TraceId& id);
std::string ToHex(const SpanId& id);
bool IsZero(const SpanId& id);

// The entity that produced telemetry (a process, later a container/pod).
struct Resource {
  Attributes attributes;
  // The service.name attribute, or "" when absent.
  std::string_view service_name() const;
};

struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero: root span
  std::string name;
  SpanKind kind = SpanKind::kServer;
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  StatusCode status = StatusCode::kUnset;
  std::string status_message;
  Attributes attributes;
  std::shared_ptr<const Resource> resource;
  // Carried through for exporters that print connection details (and for
  // joining the two ends of a connection later).
  uint32_t tgid = 0;
  uint32_t tid = 0;
  uint64_t conn_id = 0;
  ConnTuple tuple;  // the socket as the span's own process sees it
  // The sampling decision made when the trace context was decided (the
  // parent's for a child): the span exporters get sampled spans only.
  bool sampled = true;
};

// Where decoders deliver exchanges: announced when the request is seen
// (optional), finished when the response is.
class SpanSink {
 public:
  virtual ~SpanSink() = default;
  virtual void OnExchangeStart(const ExchangeStart& /*start*/) {}
  virtual void OnSpan(SpanRecord&& record) = 0;
  // The connection is gone (closed, idle or evicted) after its decoder saw
  // the end: exchanges announced on it and never finished are over.
  virtual void OnConnectionEnd(uint64_t /*conn_id*/, uint64_t /*last_active_ns*/) {}
};

// Where finished spans go (exporters implement it; see exporters/exporter.h).
class SpanConsumer {
 public:
  virtual ~SpanConsumer() = default;
  virtual void Consume(Span&& span) = 0;
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_SPAN_H_
