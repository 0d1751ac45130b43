#include "decoders/model/trace_context.h"

#include <algorithm>
#include <array>
#include <string>

namespace loupe {

namespace {

// tracestate is at most 32 list members of bounded size (W3C section 3.3.1.1);
// a value longer than this is cut (see BoundTracestate) rather than kept whole.
constexpr size_t kMaxTracestate = 512;

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Exactly 2*N hex digits into N bytes (lower and upper case accepted: B3
// allows both; W3C requires lower case, checked by the caller).
template <size_t N>
bool ParseHexBytes(std::string_view text, std::array<uint8_t, N>* out) {
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    const int hi = Hex(text[2 * i]);
    const int lo = Hex(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

bool LowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// At most kMaxTracestate bytes of whole list members: members are dropped
// from the end (W3C section 3.3.1.5), never cut inside one, which would pass
// on a value its vendor never wrote.
std::string BoundTracestate(std::string_view tracestate) {
  std::string_view s = Trim(tracestate);
  if (s.size() <= kMaxTracestate) return std::string(s);
  // A comma right after the bound still ends a member that fits.
  const size_t comma = s.substr(0, kMaxTracestate + 1).rfind(',');
  if (comma == std::string_view::npos) return {};
  s = s.substr(0, comma);
  while (!s.empty() && (s.back() == ',' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// A B3 trace id: 32 hex, or 16 hex meaning the low half of a 128-bit id.
bool ParseB3TraceId(std::string_view text, TraceId* out) {
  if (text.size() == 16) {
    std::array<uint8_t, 8> low{};
    if (!ParseHexBytes(text, &low)) return false;
    out->fill(0);
    std::copy(low.begin(), low.end(), out->begin() + 8);
    return true;
  }
  return ParseHexBytes(text, out);
}

}  // namespace

std::optional<TraceContext> ParseTraceparent(std::string_view traceparent,
                                             std::string_view tracestate) {
  // version "-" trace-id "-" parent-id "-" trace-flags (W3C section 3.2.2).
  const std::string_view v = Trim(traceparent);
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view version = v.substr(0, 2);
  if (!LowerHex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later version may append fields
  // after another '-' (section 3.2.4), never anything else.
  if (version == "00" ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
  const std::string_view trace = v.substr(3, 32), span = v.substr(36, 16), flags = v.substr(53, 2);
  if (!LowerHex(trace) || !LowerHex(span) || !LowerHex(flags)) return std::nullopt;
  TraceContext c;
  std::array<uint8_t, 1> flag_byte{};
  if (!ParseHexBytes(trace, &c.trace_id) || !ParseHexBytes(span, &c.span_id) ||
      !ParseHexBytes(flags, &flag_byte)) {
    return std::nullopt;
  }
  if (AllZero(c.trace_id) || AllZero(c.span_id)) return std::nullopt;
  c.sampled = (flag_byte[0] & 0x01) != 0;
  c.tracestate = BoundTracestate(tracestate);
  return c;
}

std::optional<TraceContext> ParseB3Single(std::string_view b3) {
  // b3: {TraceId}-{SpanId}-{SamplingState}-{ParentSpanId} (openzipkin/b3-propagation).
  const std::string_view v = Trim(b3);
  const size_t d1 = v.find('-');
  if (d1 == std::string_view::npos) return std::nullopt;  // "0", "1", "d": no ids
  const size_t d2 = v.find('-', d1 + 1);
  TraceContext c;
  if (!ParseB3TraceId(v.substr(0, d1), &c.trace_id)) return std::nullopt;
  const std::string_view span =
      v.substr(d1 + 1, d2 == std::string_view::npos ? std::string_view::npos : d2 - d1 - 1);
  if (!ParseHexBytes(span, &c.span_id)) return std::nullopt;
  if (AllZero(c.trace_id) || AllZero(c.span_id)) return std::nullopt;
  // Without a sampling state the receiver decides; "defer" is not a "no":
  // treat an absent state as sampled so that a parent-based sampler keeps
  // the trace, as an unsampled decision must be explicit.
  c.sampled = true;
  if (d2 != std::string_view::npos) {
    const size_t d3 = v.find('-', d2 + 1);
    const std::string_view state =
        v.substr(d2 + 1, d3 == std::string_view::npos ? std::string_view::npos : d3 - d2 - 1);
    if (state == "0") {
      c.sampled = false;
    } else if (state == "1" || state == "d") {
      c.sampled = true;
    } else {
      return std::nullopt;
    }
    // The parent span id, when present, is the last field: 16 hex.
    if (d3 != std::string_view::npos) {
      SpanId parent{};
      if (!ParseHexBytes(v.substr(d3 + 1), &parent)) return std::nullopt;
    }
  }
  return c;
}

std::optional<TraceContext> ParseB3Multi(std::string_view trace_id, std::string_view span_id,
                                         std::string_view sampled, std::string_view flags) {
  TraceContext c;
  if (!ParseB3TraceId(Trim(trace_id), &c.trace_id)) return std::nullopt;
  if (!ParseHexBytes(Trim(span_id), &c.span_id)) return std::nullopt;
  if (AllZero(c.trace_id) || AllZero(c.span_id)) return std::nullopt;
  const std::string_view s = Trim(sampled);
  c.sampled = !(s == "0" || s == "false");
  if (Trim(flags) == "1") c.sampled = true;  // debug implies sampled
  return c;
}

bool IsTraceContextHeader(std::string_view n) {
  return n == "traceparent" || n == "tracestate" || n == "b3" || n == "x-b3-traceid" ||
         n == "x-b3-spanid" || n == "x-b3-parentspanid" || n == "x-b3-sampled" ||
         n == "x-b3-flags";
}

}  // namespace loupe
