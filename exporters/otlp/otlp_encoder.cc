// Spans and metric snapshots into OTLP request bodies. The schema is
// exporters/otlp/proto (written from OTLP specification v1.5.0) and its
// generated code:
//
// - Metrics go through the generated messages: a snapshot is encoded once
//   per export interval, so clarity wins.
// - Spans are on the per-span hot path, with a budget of 1 µs per span for
//   encoding and RED aggregation together. Building generated messages costs
//   ~1.5 µs per realistic span, mostly in allocation: protobuf 3.21 cannot
//   put string contents on an arena, and a dozen attributes means a dozen
//   KeyValue/AnyValue objects and their strings. So ExportTraceServiceRequest
//   is written straight into its final buffer, with the protobuf encoding
//   rules (https://protobuf.dev/programming-guides/encoding/) and every field
//   number and enum value taken from the generated classes, in field-number
//   order exactly as protobuf's own serializer writes them. The unit tests
//   compare its output byte for byte with the generated messages' encoding
//   of the same spans.
//
// Strings are proto3 `string`s, which must be valid UTF-8 (protobuf-go based
// receivers reject a whole request otherwise): ill-formed sequences in what
// was read off the wire become U+FFFD, as in the JSON-lines exporter.
#include "exporters/otlp/otlp_encoder.h"

#include <google/protobuf/arena.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "agent/version.h"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace loupe {
namespace {

namespace common_pb = ::opentelemetry::proto::common::v1;
namespace resource_pb = ::opentelemetry::proto::resource::v1;
namespace trace_pb = ::opentelemetry::proto::trace::v1;
namespace metrics_pb = ::opentelemetry::proto::metrics::v1;
namespace collector_trace_pb = ::opentelemetry::proto::collector::trace::v1;
namespace collector_metrics_pb = ::opentelemetry::proto::collector::metrics::v1;
namespace logs_pb = ::opentelemetry::proto::logs::v1;
namespace collector_logs_pb = ::opentelemetry::proto::collector::logs::v1;

// The instrumentation scope of everything Loupe produces: it is one
// instrumentation (the agent), not a library inside the traced application.
constexpr std::string_view kScopeName = "loupe";
constexpr std::string_view kScopeVersion = LOUPE_VERSION;

// ---- UTF-8 -----------------------------------------------------------------

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence at the start of `text`, or 0 when
// it is ill-formed; then `*maximal_subpart` is how many bytes one U+FFFD
// replaces (Unicode 15, section 3.9 "U+FFFD Substitution of Maximal
// Subparts"; byte ranges from Table 3-7, which exclude overlong forms,
// surrogates and code points above U+10FFFF).
size_t WellFormedLength(std::string_view text, size_t* maximal_subpart) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  size_t length = 0;
  uint8_t second_low = 0x80;
  uint8_t second_high = 0xBF;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_low = 0xA0;
    if (lead == 0xED) second_high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_low = 0x90;
    if (lead == 0xF4) second_high = 0x8F;
  } else {
    *maximal_subpart = 1;
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    const uint8_t low = i == 1 ? second_low : 0x80;
    const uint8_t high = i == 1 ? second_high : 0xBF;
    if (i >= text.size() || byte(i) < low || byte(i) > high) {
      *maximal_subpart = i;
      return 0;
    }
  }
  return length;
}

// Bytes at the start of `text` that are ASCII, eight at a time: almost
// every string here is ASCII.
size_t AsciiPrefix(std::string_view text) {
  size_t i = 0;
  while (i + 8 <= text.size()) {
    uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    if (word & 0x8080808080808080ull) break;
    i += 8;
  }
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i;
}

bool IsWellFormedUtf8(std::string_view text) {
  size_t i = AsciiPrefix(text);
  while (i < text.size()) {
    size_t subpart = 0;
    const size_t length = WellFormedLength(text.substr(i), &subpart);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

// Size of `text` once made well-formed (text.size() when it is).
size_t Utf8Size(std::string_view text) {
  size_t i = AsciiPrefix(text);
  size_t size = i;
  while (i < text.size()) {
    size_t subpart = 0;
    const size_t length = WellFormedLength(text.substr(i), &subpart);
    size += length != 0 ? length : kReplacementCharacter.size();
    i += length != 0 ? length : subpart;
  }
  return size;
}

// Writes `text` made well-formed to `out`; returns the end.
char* WriteUtf8(std::string_view text, char* out) {
  size_t i = 0;
  while (i < text.size()) {
    size_t subpart = 0;
    const size_t length = WellFormedLength(text.substr(i), &subpart);
    if (length != 0) {
      std::memcpy(out, text.data() + i, length);
      out += length;
      i += length;
    } else {
      std::memcpy(out, kReplacementCharacter.data(), kReplacementCharacter.size());
      out += kReplacementCharacter.size();
      i += subpart;
    }
  }
  return out;
}

// `text` as a proto3 string value.
std::string WellFormed(const std::string& text) {
  if (IsWellFormedUtf8(text)) return text;
  std::string out(Utf8Size(text), '\0');
  WriteUtf8(text, out.data());
  return out;
}

// ---- Resource identity -----------------------------------------------------

// Resources are identified by their attributes, not by pointer: the span
// assembler shares one Resource per process, but two processes of one
// container (or a Resource rebuilt after a metadata refresh) have equal
// attributes and belong in one ResourceSpans. OTLP attributes are a map, so
// identity ignores their order.
size_t AttributesHash(const Attributes& attributes) {
  size_t combined = attributes.size();
  for (const Attribute& a : attributes.items()) {
    // A commutative combination: the same set in any order hashes alike.
    combined += absl::HashOf(a.key, a.value);
  }
  return combined;
}

bool SameAttributeSet(const Attributes& a, const Attributes& b) {
  if (a.size() != b.size()) return false;
  for (const Attribute& attribute : a.items()) {
    const AttributeValue* other = b.Find(attribute.key);
    if (other == nullptr || !(*other == attribute.value)) return false;
  }
  return true;
}

// Numbers resources in order of first appearance, so the output order is
// deterministic.
class ResourceGrouper {
 public:
  // The group of `resource` (nullptr: no resource known, grouped with
  // resources without attributes) and whether this call created it.
  std::pair<size_t, bool> Find(const Resource* resource) {
    if (auto it = by_pointer_.find(resource); it != by_pointer_.end()) {
      return {it->second, false};
    }
    const Attributes& attributes = resource ? resource->attributes : empty_;
    const size_t hash = AttributesHash(attributes);
    auto [first, last] = by_hash_.equal_range(hash);
    for (auto it = first; it != last; ++it) {
      if (SameAttributeSet(*representatives_[it->second], attributes)) {
        by_pointer_.emplace(resource, it->second);
        return {it->second, false};
      }
    }
    const size_t index = representatives_.size();
    representatives_.push_back(&attributes);
    by_hash_.emplace(hash, index);
    by_pointer_.emplace(resource, index);
    return {index, true};
  }

 private:
  Attributes empty_;
  std::vector<const Attributes*> representatives_;
  absl::flat_hash_map<const Resource*, size_t> by_pointer_;
  std::unordered_multimap<size_t, size_t> by_hash_;
};

// ---- Traces: direct protobuf encoding ----------------------------------------

// Wire types (protobuf encoding, "Message Structure").
enum WireType : uint32_t { kVarint = 0, kI64 = 1, kLen = 2 };

constexpr uint32_t MakeTag(int field, WireType type) {
  return (static_cast<uint32_t>(field) << 3) | type;
}

constexpr size_t VarintSize(uint64_t value) {
  return 1 + (static_cast<size_t>(std::bit_width(value | 1)) - 1) / 7;
}

constexpr size_t TagSize(int field) { return VarintSize(MakeTag(field, kVarint)); }

// A length-delimited field: tag, length, body.
constexpr size_t LenFieldSize(int field, size_t body) {
  return TagSize(field) + VarintSize(body) + body;
}

class Writer {
 public:
  explicit Writer(char* out) : out_(out) {}
  char* position() const { return out_; }

  void Varint(uint64_t value) {
    while (value >= 0x80) {
      *out_++ = static_cast<char>(value | 0x80);
      value >>= 7;
    }
    *out_++ = static_cast<char>(value);
  }
  void Tag(int field, WireType type) { Varint(MakeTag(field, type)); }
  // fixed64 and double: 8 bytes, little-endian.
  void Fixed64(int field, uint64_t value) {
    Tag(field, kI64);
    for (int i = 0; i < 8; ++i) *out_++ = static_cast<char>(value >> (8 * i));
  }
  void VarintField(int field, uint64_t value) {
    Tag(field, kVarint);
    Varint(value);
  }
  void LenHeader(int field, size_t body) {
    Tag(field, kLen);
    Varint(body);
  }
  void Raw(const void* data, size_t size) {
    std::memcpy(out_, data, size);
    out_ += size;
  }
  void Bytes(int field, const uint8_t* data, size_t size) {
    LenHeader(field, size);
    Raw(data, size);
  }
  // A string field whose well-formed size is `size` (from Utf8Size).
  void String(int field, std::string_view text, size_t size) {
    LenHeader(field, size);
    if (IsWellFormedUtf8(text)) {
      std::memcpy(out_, text.data(), text.size());
      out_ += text.size();
    } else {
      out_ = WriteUtf8(text, out_);
    }
  }

 private:
  char* out_;
};

// Field numbers, from the generated code of trace.proto and common.proto.
using PbKeyValue = common_pb::KeyValue;
using PbAnyValue = common_pb::AnyValue;
using PbScope = common_pb::InstrumentationScope;
using PbSpan = trace_pb::Span;
using PbStatus = trace_pb::Status;

// Sizes are computed once, in a first pass, and replayed in the same
// traversal order by the writing pass: a length-delimited field needs its
// body's size before the body, and scanning every string for UTF-8 again at
// each nesting level would cost more than the encoding itself.
struct SizePass {
  std::vector<uint32_t> key_values;  // KeyValue body sizes, in traversal order
  bool well_formed = true;           // every string seen so far is valid UTF-8

  // The encoded size of a string, noting whether it needs repair.
  size_t Text(std::string_view text) {
    const size_t ascii = AsciiPrefix(text);
    if (ascii == text.size() || IsWellFormedUtf8(text.substr(ascii))) return text.size();
    well_formed = false;
    return Utf8Size(text);
  }
};

// Proto3 leaves a field at its default value (empty, zero) off the wire,
// except oneof members and `optional` fields, which are written whenever
// set. The generated serializer does the same, and the byte-for-byte test
// holds us to it.
size_t StringFieldSize(int field, std::string_view text, SizePass& pass) {
  return text.empty() ? 0 : LenFieldSize(field, pass.Text(text));
}

size_t AnyValueSize(const AttributeValue& value, SizePass& pass) {
  // AnyValue is a oneof: the arm carries the type, and a set arm is written
  // even when it holds its default (0, false, "").
  return std::visit(
      [&pass](const auto& v) -> size_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return LenFieldSize(PbAnyValue::kStringValueFieldNumber, pass.Text(v));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          // int64: two's complement varint (10 bytes when negative).
          return TagSize(PbAnyValue::kIntValueFieldNumber) + VarintSize(static_cast<uint64_t>(v));
        } else if constexpr (std::is_same_v<T, double>) {
          return TagSize(PbAnyValue::kDoubleValueFieldNumber) + 8;
        } else {
          static_assert(std::is_same_v<T, bool>);
          return TagSize(PbAnyValue::kBoolValueFieldNumber) + 1;
        }
      },
      value);
}

size_t AttributesSize(int field, const Attributes& attributes, SizePass& pass) {
  size_t size = 0;
  for (const Attribute& a : attributes.items()) {
    const size_t value_size = AnyValueSize(a.value, pass);
    const size_t key_value = StringFieldSize(PbKeyValue::kKeyFieldNumber, a.key, pass) +
                             LenFieldSize(PbKeyValue::kValueFieldNumber, value_size);
    // AnyValue's size is cheap to recompute; KeyValue's is kept.
    pass.key_values.push_back(static_cast<uint32_t>(key_value));
    size += LenFieldSize(field, key_value);
  }
  return size;
}

// The writing pass: replays the sizes SizePass recorded.
class SpanWriter {
 public:
  SpanWriter(char* out, const std::vector<uint32_t>& key_values)
      : w_(out), key_values_(key_values) {}
  char* position() const { return w_.position(); }
  Writer& raw() { return w_; }

  // `well_formed`: what SizePass found for the strings of this part.
  void Text(int field, std::string_view text, bool well_formed) {
    if (well_formed) {
      w_.LenHeader(field, text.size());
      w_.Raw(text.data(), text.size());
    } else {
      w_.String(field, text, Utf8Size(text));
    }
  }

  void Attributes(int field, const loupe::Attributes& attributes, bool well_formed) {
    for (const Attribute& a : attributes.items()) {
      w_.LenHeader(field, key_values_[next_key_value_++]);
      if (!a.key.empty()) Text(PbKeyValue::kKeyFieldNumber, a.key, well_formed);
      std::visit(
          [this, well_formed](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::string>) {
              const size_t size = well_formed ? v.size() : Utf8Size(v);
              w_.LenHeader(PbKeyValue::kValueFieldNumber,
                           LenFieldSize(PbAnyValue::kStringValueFieldNumber, size));
              Text(PbAnyValue::kStringValueFieldNumber, v, well_formed);
            } else if constexpr (std::is_same_v<T, int64_t>) {
              const uint64_t bits = static_cast<uint64_t>(v);
              w_.LenHeader(PbKeyValue::kValueFieldNumber,
                           TagSize(PbAnyValue::kIntValueFieldNumber) + VarintSize(bits));
              w_.VarintField(PbAnyValue::kIntValueFieldNumber, bits);
            } else if constexpr (std::is_same_v<T, double>) {
              w_.LenHeader(PbKeyValue::kValueFieldNumber,
                           TagSize(PbAnyValue::kDoubleValueFieldNumber) + 8);
              w_.Fixed64(PbAnyValue::kDoubleValueFieldNumber, std::bit_cast<uint64_t>(v));
            } else {
              w_.LenHeader(PbKeyValue::kValueFieldNumber,
                           TagSize(PbAnyValue::kBoolValueFieldNumber) + 1);
              w_.VarintField(PbAnyValue::kBoolValueFieldNumber, v ? 1 : 0);
            }
          },
          a.value);
    }
  }

 private:
  Writer w_;
  const std::vector<uint32_t>& key_values_;
  size_t next_key_value_ = 0;
};

PbSpan::SpanKind ToProto(SpanKind kind) {
  switch (kind) {
    case SpanKind::kServer:
      return PbSpan::SPAN_KIND_SERVER;
    case SpanKind::kClient:
      return PbSpan::SPAN_KIND_CLIENT;
  }
  return PbSpan::SPAN_KIND_UNSPECIFIED;
}

PbStatus::StatusCode ToProto(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return PbStatus::STATUS_CODE_OK;
    case StatusCode::kError:
      return PbStatus::STATUS_CODE_ERROR;
    case StatusCode::kUnset:
      break;
  }
  return PbStatus::STATUS_CODE_UNSET;
}

// An absent Status means UNSET (trace.proto, Span.status): only a status
// that says something is written.
bool HasStatus(const Span& span) {
  return span.status != StatusCode::kUnset || !span.status_message.empty();
}

struct SpanSizes {
  uint32_t span = 0;    // Span body
  uint32_t status = 0;  // Status body
  bool well_formed = true;
};

SpanSizes SizeSpan(const Span& span, SizePass& pass) {
  pass.well_formed = true;
  const uint64_t kind = static_cast<uint64_t>(ToProto(span.kind));
  size_t size = LenFieldSize(PbSpan::kTraceIdFieldNumber, span.trace_id.size()) +
                LenFieldSize(PbSpan::kSpanIdFieldNumber, span.span_id.size());
  if (!IsZero(span.parent_span_id)) {
    size += LenFieldSize(PbSpan::kParentSpanIdFieldNumber, span.parent_span_id.size());
  }
  size += StringFieldSize(PbSpan::kNameFieldNumber, span.name, pass);
  if (kind != 0) size += TagSize(PbSpan::kKindFieldNumber) + VarintSize(kind);
  if (span.start_unix_ns != 0) size += TagSize(PbSpan::kStartTimeUnixNanoFieldNumber) + 8;
  if (span.end_unix_ns != 0) size += TagSize(PbSpan::kEndTimeUnixNanoFieldNumber) + 8;
  size += AttributesSize(PbSpan::kAttributesFieldNumber, span.attributes, pass);
  SpanSizes sizes;
  if (HasStatus(span)) {
    const uint64_t code = static_cast<uint64_t>(ToProto(span.status));
    const size_t status =
        StringFieldSize(PbStatus::kMessageFieldNumber, span.status_message, pass) +
        (code != 0 ? TagSize(PbStatus::kCodeFieldNumber) + VarintSize(code) : 0);
    size += LenFieldSize(PbSpan::kStatusFieldNumber, status);
    sizes.status = static_cast<uint32_t>(status);
  }
  sizes.span = static_cast<uint32_t>(size);
  sizes.well_formed = pass.well_formed;
  return sizes;
}

// Fields in number order, as protobuf's serializer writes them.
void WriteSpan(const Span& span, const SpanSizes& sizes, SpanWriter& sw) {
  Writer& w = sw.raw();
  w.LenHeader(trace_pb::ScopeSpans::kSpansFieldNumber, sizes.span);
  // Ids are raw bytes: 16 for the trace, 8 for spans.
  w.Bytes(PbSpan::kTraceIdFieldNumber, span.trace_id.data(), span.trace_id.size());
  w.Bytes(PbSpan::kSpanIdFieldNumber, span.span_id.data(), span.span_id.size());
  // A root span's parent_span_id "must be empty", not eight zero bytes.
  if (!IsZero(span.parent_span_id)) {
    w.Bytes(PbSpan::kParentSpanIdFieldNumber, span.parent_span_id.data(),
            span.parent_span_id.size());
  }
  if (!span.name.empty()) sw.Text(PbSpan::kNameFieldNumber, span.name, sizes.well_formed);
  const uint64_t kind = static_cast<uint64_t>(ToProto(span.kind));
  if (kind != 0) w.VarintField(PbSpan::kKindFieldNumber, kind);
  if (span.start_unix_ns != 0) w.Fixed64(PbSpan::kStartTimeUnixNanoFieldNumber, span.start_unix_ns);
  if (span.end_unix_ns != 0) w.Fixed64(PbSpan::kEndTimeUnixNanoFieldNumber, span.end_unix_ns);
  sw.Attributes(PbSpan::kAttributesFieldNumber, span.attributes, sizes.well_formed);
  if (HasStatus(span)) {
    w.LenHeader(PbSpan::kStatusFieldNumber, sizes.status);
    if (!span.status_message.empty()) {
      sw.Text(PbStatus::kMessageFieldNumber, span.status_message, sizes.well_formed);
    }
    const uint64_t code = static_cast<uint64_t>(ToProto(span.status));
    if (code != 0) w.VarintField(PbStatus::kCodeFieldNumber, code);
  }
}

size_t ScopeSize(SizePass& pass) {
  return StringFieldSize(PbScope::kNameFieldNumber, kScopeName, pass) +
         StringFieldSize(PbScope::kVersionFieldNumber, kScopeVersion, pass);
}

void WriteScope(int field, size_t size, SpanWriter& sw) {
  sw.raw().LenHeader(field, size);
  sw.Text(PbScope::kNameFieldNumber, kScopeName, true);
  if (!kScopeVersion.empty()) sw.Text(PbScope::kVersionFieldNumber, kScopeVersion, true);
}

// ---- Metrics: generated messages ---------------------------------------------

// First arena block: enough for a snapshot of a few hundred series.
constexpr size_t kArenaStartBlock = 256 * 1024;

void SetAnyValue(const AttributeValue& value, PbAnyValue* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out->set_string_value(WellFormed(v));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out->set_int_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_double_value(v);
        } else {
          static_assert(std::is_same_v<T, bool>);
          out->set_bool_value(v);
        }
      },
      value);
}

void AddAttributes(const Attributes& attributes,
                   google::protobuf::RepeatedPtrField<PbKeyValue>* out) {
  out->Reserve(out->size() + static_cast<int>(attributes.size()));
  for (const Attribute& attribute : attributes.items()) {
    PbKeyValue* kv = out->Add();
    kv->set_key(WellFormed(attribute.key));
    SetAnyValue(attribute.value, kv->mutable_value());
  }
}

metrics_pb::AggregationTemporality ToProto(Temporality temporality) {
  return temporality == Temporality::kDelta ? metrics_pb::AGGREGATION_TEMPORALITY_DELTA
                                            : metrics_pb::AGGREGATION_TEMPORALITY_CUMULATIVE;
}

void FillHistogram(const MetricData& metric, uint64_t snapshot_time,
                   metrics_pb::Histogram* histogram) {
  histogram->set_aggregation_temporality(ToProto(metric.temporality));
  histogram->mutable_data_points()->Reserve(static_cast<int>(metric.points.size()));
  for (const HistogramPoint& point : metric.points) {
    metrics_pb::HistogramDataPoint* p = histogram->add_data_points();
    AddAttributes(point.attributes, p->mutable_attributes());
    p->set_start_time_unix_nano(point.start_unix_ns);
    p->set_time_unix_nano(point.time_unix_ns != 0 ? point.time_unix_ns : snapshot_time);
    p->set_count(point.count);
    // Durations and body sizes are never negative, so the sum is meaningful
    // and always sent (metrics.proto: sum "SHOULD NOT be filled out when
    // measuring negative values").
    p->set_sum(point.sum);
    // bucket_counts has bounds + 1 entries (the model guarantees it).
    p->mutable_bucket_counts()->Add(point.bucket_counts.begin(), point.bucket_counts.end());
    if (metric.bounds != nullptr) {
      p->mutable_explicit_bounds()->Add(metric.bounds->begin(), metric.bounds->end());
    }
    // min/max of an empty point are undefined, and a delta reader past the
    // recorder's limit does not know them: leave them absent (explicit
    // presence in metrics.proto) rather than send zeros.
    if (point.count > 0 && point.has_min_max) {
      p->set_min(point.min);
      p->set_max(point.max);
    }
  }
}

void FillSum(const MetricData& metric, uint64_t snapshot_time, metrics_pb::Sum* sum) {
  sum->set_aggregation_temporality(ToProto(metric.temporality));
  sum->set_is_monotonic(metric.monotonic);
  sum->mutable_data_points()->Reserve(static_cast<int>(metric.sum_points.size()));
  for (const SumPoint& point : metric.sum_points) {
    metrics_pb::NumberDataPoint* p = sum->add_data_points();
    AddAttributes(point.attributes, p->mutable_attributes());
    p->set_start_time_unix_nano(point.start_unix_ns);
    p->set_time_unix_nano(point.time_unix_ns != 0 ? point.time_unix_ns : snapshot_time);
    // as_double rather than as_int: the pre-1.0 schema (what old collectors
    // run) reads Metric field 7 as DoubleSum, whose point value is field 4,
    // i.e. as_double; an as_int (6) would decode there as a silent 0. Counts
    // are exact as doubles below 2^53.
    p->set_as_double(point.value);
  }
}

}  // namespace

std::string EncodeTraceRequest(std::span<const Span> spans) {
  if (spans.empty()) return std::string();
  using collector_trace_pb::ExportTraceServiceRequest;
  using trace_pb::ResourceSpans;
  using trace_pb::ScopeSpans;

  // Group the spans by resource, keeping input order within a group.
  ResourceGrouper grouper;
  std::vector<uint32_t> group_of(spans.size());
  std::vector<const Resource*> group_resource;
  for (size_t i = 0; i < spans.size(); ++i) {
    const auto [group, created] = grouper.Find(spans[i].resource.get());
    if (created) group_resource.push_back(spans[i].resource.get());
    group_of[i] = static_cast<uint32_t>(group);
  }
  const size_t groups = group_resource.size();
  // Span indices ordered by group (a counting sort).
  std::vector<uint32_t> start(groups + 1, 0);
  for (uint32_t g : group_of) ++start[g + 1];
  for (size_t g = 0; g < groups; ++g) start[g + 1] += start[g];
  std::vector<uint32_t> order(spans.size());
  {
    std::vector<uint32_t> next(start.begin(), start.end() - 1);
    for (size_t i = 0; i < spans.size(); ++i) order[next[group_of[i]]++] = static_cast<uint32_t>(i);
  }

  // Size pass, in exactly the order the writing pass will go.
  SizePass pass;
  pass.key_values.reserve(spans.size() * 16);
  const size_t scope_size = ScopeSize(pass);
  struct GroupSizes {
    size_t resource = 0;
    bool resource_well_formed = true;
    size_t scope_spans = 0;
    size_t resource_spans = 0;
  };
  std::vector<GroupSizes> group_sizes(groups);
  std::vector<SpanSizes> span_sizes(spans.size());
  size_t total = 0;
  for (size_t g = 0; g < groups; ++g) {
    GroupSizes& gs = group_sizes[g];
    pass.well_formed = true;
    if (group_resource[g] != nullptr) {
      gs.resource = AttributesSize(resource_pb::Resource::kAttributesFieldNumber,
                                   group_resource[g]->attributes, pass);
    }
    gs.resource_well_formed = pass.well_formed;
    size_t body = LenFieldSize(ScopeSpans::kScopeFieldNumber, scope_size);
    for (uint32_t k = start[g]; k < start[g + 1]; ++k) {
      const uint32_t i = order[k];
      span_sizes[i] = SizeSpan(spans[i], pass);
      body += LenFieldSize(ScopeSpans::kSpansFieldNumber, span_sizes[i].span);
    }
    gs.scope_spans = body;
    // The resource is always written, empty when unknown (as the generated
    // messages write a present but empty submessage).
    gs.resource_spans = LenFieldSize(ResourceSpans::kResourceFieldNumber, gs.resource) +
                        LenFieldSize(ResourceSpans::kScopeSpansFieldNumber, body);
    total += LenFieldSize(ExportTraceServiceRequest::kResourceSpansFieldNumber, gs.resource_spans);
  }

  std::string out(total, '\0');
  SpanWriter sw(out.data(), pass.key_values);
  for (size_t g = 0; g < groups; ++g) {
    const GroupSizes& gs = group_sizes[g];
    Writer& w = sw.raw();
    w.LenHeader(ExportTraceServiceRequest::kResourceSpansFieldNumber, gs.resource_spans);
    w.LenHeader(ResourceSpans::kResourceFieldNumber, gs.resource);
    if (group_resource[g] != nullptr) {
      sw.Attributes(resource_pb::Resource::kAttributesFieldNumber, group_resource[g]->attributes,
                    gs.resource_well_formed);
    }
    w.LenHeader(ResourceSpans::kScopeSpansFieldNumber, gs.scope_spans);
    WriteScope(ScopeSpans::kScopeFieldNumber, scope_size, sw);
    for (uint32_t k = start[g]; k < start[g + 1]; ++k) {
      WriteSpan(spans[order[k]], span_sizes[order[k]], sw);
    }
  }
  // Both passes follow the same rules; a difference is a bug that has
  // already written out of bounds. Stop rather than send garbage.
  if (sw.position() != out.data() + out.size()) std::abort();
  return out;
}

std::string EncodeMetricsRequest(const MetricsSnapshot& snapshot) {
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = kArenaStartBlock;
  arena_options.max_block_size = 4 * kArenaStartBlock;
  google::protobuf::Arena arena(arena_options);
  auto* request =
      google::protobuf::Arena::CreateMessage<collector_metrics_pb::ExportMetricsServiceRequest>(
          &arena);
  ResourceGrouper grouper;
  std::vector<metrics_pb::ScopeMetrics*> scopes;  // by group
  for (const ResourceMetrics& resource_metrics : snapshot.resources) {
    metrics_pb::ScopeMetrics* scope = nullptr;
    for (const MetricData& metric : resource_metrics.metrics) {
      // A Metric without points tells a receiver nothing; a resource without
      // such metrics gets no ResourceMetrics at all.
      if (metric.point_count() == 0) continue;
      if (scope == nullptr) {
        const Resource* resource = resource_metrics.resource.get();
        const auto [group, created] = grouper.Find(resource);
        if (created) {
          metrics_pb::ResourceMetrics* out = request->add_resource_metrics();
          resource_pb::Resource* out_resource = out->mutable_resource();
          if (resource != nullptr)
            AddAttributes(resource->attributes, out_resource->mutable_attributes());
          metrics_pb::ScopeMetrics* scope_metrics = out->add_scope_metrics();
          scope_metrics->mutable_scope()->set_name(std::string(kScopeName));
          scope_metrics->mutable_scope()->set_version(std::string(kScopeVersion));
          scopes.push_back(scope_metrics);
        }
        scope = scopes[group];
      }
      metrics_pb::Metric* out = scope->add_metrics();
      out->set_name(WellFormed(metric.name));
      out->set_description(WellFormed(metric.description));
      out->set_unit(WellFormed(metric.unit));
      if (metric.type == MetricType::kSum) {
        FillSum(metric, snapshot.time_unix_ns, out->mutable_sum());
      } else {
        FillHistogram(metric, snapshot.time_unix_ns, out->mutable_histogram());
      }
    }
  }
  return request->SerializeAsString();
}

// Log records are rare (one per diagnosed event), so they use the generated
// messages: the hand-written writer is only worth its rules for spans.
std::string EncodeLogsRequest(std::span<const LogRecord> records) {
  if (records.empty()) return std::string();
  collector_logs_pb::ExportLogsServiceRequest request;
  ResourceGrouper grouper;
  std::vector<logs_pb::ScopeLogs*> scopes;  // by group
  for (const LogRecord& record : records) {
    const Resource* resource = record.resource.get();
    const auto [group, created] = grouper.Find(resource);
    if (created) {
      logs_pb::ResourceLogs* out = request.add_resource_logs();
      resource_pb::Resource* out_resource = out->mutable_resource();
      if (resource != nullptr) AddAttributes(resource->attributes, out_resource->mutable_attributes());
      logs_pb::ScopeLogs* scope_logs = out->add_scope_logs();
      scope_logs->mutable_scope()->set_name(std::string(kScopeName));
      scope_logs->mutable_scope()->set_version(std::string(kScopeVersion));
      scopes.push_back(scope_logs);
    }
    logs_pb::LogRecord* out = scopes[group]->add_log_records();
    out->set_time_unix_nano(record.time_unix_ns);
    out->set_observed_time_unix_nano(record.observed_time_unix_ns);
    out->set_severity_number(static_cast<logs_pb::SeverityNumber>(record.severity));
    out->set_severity_text(WellFormed(record.severity_text));
    if (!record.body.empty()) out->mutable_body()->set_string_value(WellFormed(record.body));
    if (!record.event_name.empty()) out->set_event_name(WellFormed(record.event_name));
    AddAttributes(record.attributes, out->mutable_attributes());
    for (const AttributeList& list : record.lists) {
      PbKeyValue* kv = out->add_attributes();
      kv->set_key(WellFormed(list.key));
      common_pb::ArrayValue* array = kv->mutable_value()->mutable_array_value();
      for (const Attributes& item : list.items) {
        AddAttributes(item, array->add_values()->mutable_kvlist_value()->mutable_values());
      }
    }
  }
  return request.SerializeAsString();
}

}  // namespace loupe
