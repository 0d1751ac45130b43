// Trace context propagation headers, parsed (W3C Trace Context level 1,
// B3 single and multi header).
#ifndef LOUPE_DECODERS_MODEL_TRACE_CONTEXT_H_
#define LOUPE_DECODERS_MODEL_TRACE_CONTEXT_H_

#include <optional>
#include <string_view>

#include "decoders/model/span.h"

namespace loupe {

// traceparent "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>" (future
// versions: the first four fields, W3C section 3.2.4); all-zero ids and
// malformed values give nullopt. tracestate is kept as is, bounded.
std::optional<TraceContext> ParseTraceparent(std::string_view traceparent,
                                             std::string_view tracestate = {});
// b3 "<trace-id>-<span-id>[-<sampled>[-<parent-span-id>]]" with 16 or 32 hex
// trace ids (a 16-hex id is left-padded with zeros); "0"/"d" alone (a bare
// sampling decision) gives nullopt.
std::optional<TraceContext> ParseB3Single(std::string_view b3);
// X-B3-TraceId, X-B3-SpanId, X-B3-Sampled ("1"/"0"/"true"), X-B3-Flags
// ("1": debug, sampled).
std::optional<TraceContext> ParseB3Multi(std::string_view trace_id, std::string_view span_id,
                                         std::string_view sampled, std::string_view flags);

// Header names a decoder keeps for these (lower case).
bool IsTraceContextHeader(std::string_view lower_case_name);

// The context of a request from whichever headers it carried: traceparent
// wins over b3, b3 over X-B3-*. `get` returns a header's value by lower-case
// name, or nullopt.
template <typename Get>
std::optional<TraceContext> ContextFromHeaders(Get&& get) {
  if (auto tp = get("traceparent")) {
    auto ts = get("tracestate");
    if (auto c = ParseTraceparent(*tp, ts ? *ts : std::string_view())) return c;
  }
  if (auto b3 = get("b3")) {
    if (auto c = ParseB3Single(*b3)) return c;
  }
  auto trace = get("x-b3-traceid");
  auto span = get("x-b3-spanid");
  if (trace && span) {
    auto sampled = get("x-b3-sampled");
    auto flags = get("x-b3-flags");
    return ParseB3Multi(*trace, *span, sampled ? *sampled : std::string_view(),
                        flags ? *flags : std::string_view());
  }
  return std::nullopt;
}

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_TRACE_CONTEXT_H_
