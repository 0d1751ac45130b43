#include "decoders/model/span_assembler.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace loupe {

namespace {

// splitmix64 (Vigna): spreads an arbitrary seed, including 0 or a small
// counter, over xoshiro's state. Successive outputs come from distinct
// inputs through a bijection, so the four state words are never all zero,
// the one state xoshiro cannot leave.
uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t RotateLeft(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

template <size_t N>
void StoreBigEndian(uint64_t value, std::array<uint8_t, N>& out, size_t at) {
  for (size_t i = 0; i < 8; ++i) out[at + i] = static_cast<uint8_t>(value >> (56 - 8 * i));
}

// Monotonic time plus the realtime offset, saturating rather than wrapping
// when a record's time is garbage (0 with a negative offset, or huge).
uint64_t ToUnixNanos(uint64_t mono_ns, int64_t realtime_offset_ns) {
  if (realtime_offset_ns >= 0) {
    const auto offset = static_cast<uint64_t>(realtime_offset_ns);
    return mono_ns > std::numeric_limits<uint64_t>::max() - offset
               ? std::numeric_limits<uint64_t>::max()
               : mono_ns + offset;
  }
  // -(INT64_MIN) does not fit in int64_t; do the negation in uint64_t.
  const uint64_t back = 0 - static_cast<uint64_t>(realtime_offset_ns);
  return mono_ns < back ? 0 : mono_ns - back;
}

}  // namespace

IdGenerator::IdGenerator(uint64_t seed) {
  for (uint64_t& word : state_) word = SplitMix64(seed);
}

// xoshiro256** 1.0 (Blackman & Vigna, https://prng.di.unimi.it/).
uint64_t IdGenerator::Next() {
  const uint64_t result = RotateLeft(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = RotateLeft(state_[3], 45);
  return result;
}

// W3C Trace Context (section 3.2.2.3/3.2.2.4): all-zero trace and span ids
// are invalid, so a zero draw is simply drawn again.
TraceId IdGenerator::NewTraceId() {
  TraceId id{};
  do {
    StoreBigEndian(Next(), id, 0);
    StoreBigEndian(Next(), id, 8);
  } while (std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; }));
  return id;
}

SpanId IdGenerator::NewSpanId() {
  SpanId id{};
  do {
    StoreBigEndian(Next(), id, 0);
  } while (IsZero(id));
  return id;
}

SpanAssembler::SpanAssembler(ResourceProvider& resources, SpanConsumer& out,
                             int64_t realtime_offset_ns, uint64_t id_seed)
    : resources_(resources),
      out_(out),
      realtime_offset_ns_(realtime_offset_ns),
      ids_(id_seed) {}

void SpanAssembler::OnSpan(SpanRecord&& record) {
  Span span;
  if (record.ids_decided) {
    span.trace_id = record.trace_id;
    span.span_id = record.span_id;
    span.parent_span_id = record.parent_span_id;
    span.sampled = record.sampled;
  } else {
    // No linker decided this record's place: it starts a trace of its own.
    span.trace_id = ids_.NewTraceId();
    span.span_id = ids_.NewSpanId();
  }
  span.name = std::move(record.name);
  span.kind = record.kind;
  span.start_unix_ns = ToUnixNanos(record.start_mono_ns, realtime_offset_ns_);
  span.end_unix_ns = ToUnixNanos(record.end_mono_ns, realtime_offset_ns_);
  span.status = record.status;
  span.status_message = std::move(record.status_message);
  span.attributes = std::move(record.attributes);
  span.resource = resources_.ForProcess(record.tgid);
  span.tgid = record.tgid;
  span.tid = record.tid;
  span.conn_id = record.conn_id;
  span.tuple = record.tuple;
  ++spans_produced_;
  out_.Consume(std::move(span));
}

}  // namespace loupe
