// A log record Loupe emits about an event it diagnosed (an OOM kill, say),
// in the shape of the OpenTelemetry logs data model: independent of any wire
// format; exporters/otlp encodes it as an OTLP LogRecord.
#ifndef LOUPE_DECODERS_MODEL_LOG_RECORD_H_
#define LOUPE_DECODERS_MODEL_LOG_RECORD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decoders/model/span.h"

namespace loupe {

// The logs data model's SeverityNumber values Loupe uses.
enum class Severity : int32_t { kInfo = 9, kWarn = 13, kError = 17 };

// An attribute whose value is a list of maps (OTLP: an ArrayValue of
// KeyValueLists), for facts that come as rows: the largest processes of a
// cgroup, a memory trend.
struct AttributeList {
  std::string key;
  std::vector<Attributes> items;
  bool operator==(const AttributeList&) const = default;
};

struct LogRecord {
  uint64_t time_unix_ns = 0;           // when the event happened
  uint64_t observed_time_unix_ns = 0;  // when Loupe saw it
  Severity severity = Severity::kInfo;
  std::string severity_text;  // "INFO", "WARN", "ERROR"
  std::string event_name;     // e.g. "loupe.oom_kill"
  std::string body;           // one human-readable line
  Attributes attributes;
  std::vector<AttributeList> lists;
  // The entity the event is about (the victim's process); null: unknown.
  std::shared_ptr<const Resource> resource;
};

// Where log records go (the OTLP log exporter implements it).
class LogConsumer {
 public:
  virtual ~LogConsumer() = default;
  virtual void Consume(LogRecord&& record) = 0;
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_LOG_RECORD_H_
