// Tests of the trace-context header parsers: W3C Trace Context level 1
// (traceparent, tracestate) and B3 (single and multi header).
#include "decoders/model/trace_context.h"

#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace loupe {
namespace {

// The W3C specification's example (section 3.2.2.1 / appendix).
constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kSpan = "00f067aa0ba902b7";

std::string Traceparent(std::string_view version, std::string_view trace, std::string_view span,
                        std::string_view flags) {
  return std::string(version) + "-" + std::string(trace) + "-" + std::string(span) + "-" +
         std::string(flags);
}

// --- traceparent -----------------------------------------------------------------

TEST(TraceContextTest, TraceparentVersion00) {
  const auto c = ParseTraceparent(Traceparent("00", kTrace, kSpan, "01"), "rojo=00f067aa0ba902b7");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), kTrace);
  EXPECT_EQ(ToHex(c->span_id), kSpan);
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(c->tracestate, "rojo=00f067aa0ba902b7");
}

TEST(TraceContextTest, TraceparentSampledIsBitZeroOfTheFlags) {
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "00"))->sampled);
  EXPECT_TRUE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "01"))->sampled);
  // Other bits are unknown flags (section 3.2.2.5): kept out of the decision.
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "02"))->sampled);
  EXPECT_TRUE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "03"))->sampled);
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "fe"))->sampled);
  EXPECT_TRUE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "ff"))->sampled);
}

TEST(TraceContextTest, TraceparentSurroundingWhitespaceIsIgnored) {
  const auto c = ParseTraceparent(" \t" + Traceparent("00", kTrace, kSpan, "01") + " ");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), kTrace);
}

TEST(TraceContextTest, TraceparentVersionFfIsInvalid) {
  EXPECT_FALSE(ParseTraceparent(Traceparent("ff", kTrace, kSpan, "01")).has_value());
}

TEST(TraceContextTest, TraceparentUppercaseHexIsInvalid) {
  std::string upper_trace(kTrace);
  for (char& ch : upper_trace) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string upper_span(kSpan);
  for (char& ch : upper_span) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", upper_trace, kSpan, "01")).has_value());
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, upper_span, "01")).has_value());
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, kSpan, "0A")).has_value());
  EXPECT_FALSE(ParseTraceparent(Traceparent("0A", kTrace, kSpan, "01")).has_value());
  // One uppercase digit is enough.
  std::string one_upper(kTrace);
  one_upper[1] = 'B';  // "4bf9..." -> "4Bf9..."
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", one_upper, kSpan, "01")).has_value());
}

TEST(TraceContextTest, TraceparentAllZeroIdsAreInvalid) {
  const std::string zero_trace(32, '0');
  const std::string zero_span(16, '0');
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", zero_trace, kSpan, "01")).has_value());
  EXPECT_FALSE(ParseTraceparent(Traceparent("00", kTrace, zero_span, "01")).has_value());
  // Zero in all but one digit is a valid id.
  EXPECT_TRUE(ParseTraceparent(Traceparent("00", std::string(31, '0') + "1", kSpan, "01")));
  EXPECT_TRUE(ParseTraceparent(Traceparent("00", kTrace, std::string(15, '0') + "1", "01")));
}

TEST(TraceContextTest, TraceparentMalformedValuesAreInvalid) {
  const std::string good = Traceparent("00", kTrace, kSpan, "01");
  EXPECT_TRUE(ParseTraceparent(good).has_value());
  const std::string malformed[] = {
      "",
      "00",
      good.substr(0, 54),                                   // one short
      good + "-",                                           // version 00 is exactly 55
      good + "-00",                                         // ... even with a '-'
      good + "0",                                           // a longer flags field
      Traceparent("00", kTrace.substr(1), kSpan, "01"),     // 31-hex trace id
      Traceparent("00", std::string(kTrace) + "0", kSpan.substr(1), "01"),  // dash moved
      Traceparent("00", kTrace, kSpan, "1"),                // 1-hex flags
      Traceparent("0", kTrace, kSpan, "001"),               // 1-hex version
      Traceparent("0g", kTrace, kSpan, "01"),               // not hex
      Traceparent("00", std::string(kTrace).replace(5, 1, "x"), kSpan, "01"),
      Traceparent("00", kTrace, std::string(kSpan).replace(3, 1, "-"), "01"),
      Traceparent("00", kTrace, kSpan, "0x"),
      "00_" + std::string(kTrace) + "-" + std::string(kSpan) + "-01",  // wrong separator
      "00-" + std::string(kTrace) + "_" + std::string(kSpan) + "-01",
      "00-" + std::string(kTrace) + "-" + std::string(kSpan) + "_01",
  };
  for (const std::string& value : malformed) {
    EXPECT_FALSE(ParseTraceparent(value).has_value()) << value;
  }
}

TEST(TraceContextTest, TraceparentFutureVersionUsesTheFirstFourFields) {
  // Section 3.2.4: a later version is parsed as version 00 for its first
  // four fields; it may append fields after a '-'.
  const auto plain = ParseTraceparent(Traceparent("01", kTrace, kSpan, "01"));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(ToHex(plain->trace_id), kTrace);
  const auto extra = ParseTraceparent(Traceparent("cc", kTrace, kSpan, "00") + "-what-the-future");
  ASSERT_TRUE(extra.has_value());
  EXPECT_EQ(ToHex(extra->trace_id), kTrace);
  EXPECT_EQ(ToHex(extra->span_id), kSpan);
  EXPECT_FALSE(extra->sampled);
  // ... but never anything right after the flags.
  EXPECT_FALSE(ParseTraceparent(Traceparent("cc", kTrace, kSpan, "01") + "x").has_value());
  EXPECT_FALSE(ParseTraceparent(Traceparent("cc", kTrace, kSpan, "01") + "0-x").has_value());
  // Nor invalid fields.
  EXPECT_FALSE(ParseTraceparent(Traceparent("cc", std::string(32, '0'), kSpan, "01") + "-x"));
}

TEST(TraceContextTest, TracestateIsKeptTrimmedAndBounded) {
  const std::string tp = Traceparent("00", kTrace, kSpan, "01");
  EXPECT_EQ(ParseTraceparent(tp)->tracestate, "");
  EXPECT_EQ(ParseTraceparent(tp, "  congo=t61rcWkgMzE,rojo=00f067aa0ba902b7 ")->tracestate,
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");

  // A list longer than 512 bytes loses members from its end, never a
  // member's tail (W3C section 3.3.1.5).
  std::string list;
  for (int i = 0; list.size() < 600; ++i) {
    if (!list.empty()) list += ",";
    list += "vendor" + std::to_string(i) + "=" + std::string(20, 'v');
  }
  const std::string kept = ParseTraceparent(tp, list)->tracestate;
  EXPECT_LE(kept.size(), 512u);
  EXPECT_GT(kept.size(), 400u);
  EXPECT_EQ(list.compare(0, kept.size(), kept), 0);  // a prefix of the list ...
  EXPECT_EQ(list[kept.size()], ',');                 // ... ending where a member ends

  // A member that ends exactly at the bound is kept.
  const std::string exact = std::string(500, 'a') + "=" + std::string(11, 'b');  // 512 bytes
  ASSERT_EQ(exact.size(), 512u);
  EXPECT_EQ(ParseTraceparent(tp, exact + ",next=1")->tracestate, exact);
  EXPECT_EQ(ParseTraceparent(tp, exact)->tracestate, exact);
  // One member longer than the bound: nothing to keep.
  EXPECT_EQ(ParseTraceparent(tp, std::string(600, 'x'))->tracestate, "");
}

// --- b3 (single header) ------------------------------------------------------------

TEST(TraceContextTest, B3SingleWith32HexTraceId) {
  const auto c = ParseB3Single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(ToHex(c->span_id), "e457b5a2e4d86bd1");  // the caller's span, not its parent
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(c->tracestate, "");
}

TEST(TraceContextTest, B3SingleWith16HexTraceIdIsLeftPadded) {
  const auto c = ParseB3Single("a3ce929d0e0e4736-00f067aa0ba902b7-0");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "0000000000000000a3ce929d0e0e4736");
  EXPECT_EQ(ToHex(c->span_id), "00f067aa0ba902b7");
  EXPECT_FALSE(c->sampled);
}

TEST(TraceContextTest, B3SingleSamplingStates) {
  const std::string ids = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1";
  EXPECT_TRUE(ParseB3Single(ids + "-1")->sampled);
  EXPECT_FALSE(ParseB3Single(ids + "-0")->sampled);
  EXPECT_TRUE(ParseB3Single(ids + "-d")->sampled);  // debug implies sampled
  EXPECT_TRUE(ParseB3Single(ids)->sampled);         // deferred: not a "no"
  EXPECT_FALSE(ParseB3Single(ids + "-0-05e3ac9a4f6e3b90")->sampled);
  for (const char* bad : {"-", "-2", "-true", "-01", "-D", "-1-", "-1-05e3", "-1-05e3ac9a4f6e3b90-x"}) {
    EXPECT_FALSE(ParseB3Single(ids + bad).has_value()) << bad;
  }
}

TEST(TraceContextTest, B3SingleBareSamplingDecisionHasNoContext) {
  EXPECT_FALSE(ParseB3Single("0").has_value());
  EXPECT_FALSE(ParseB3Single("1").has_value());
  EXPECT_FALSE(ParseB3Single("d").has_value());
  EXPECT_FALSE(ParseB3Single("").has_value());
}

TEST(TraceContextTest, B3SingleMalformedValuesAreInvalid) {
  const char* malformed[] = {
      "80f198ee56343ba864fe8b2a57d3eff7",                        // no span id
      "80f198ee56343ba864fe8b2a57d3eff7-",                       // empty span id
      "-e457b5a2e4d86bd1",                                       // empty trace id
      "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1",        // 31 hex
      "80f198ee56343ba8640-e457b5a2e4d86bd1",                    // 19 hex
      "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd",        // 15-hex span
      "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1a",      // 17-hex span
      "80f198ee56343ba864fe8b2a57d3effg-e457b5a2e4d86bd1",       // not hex
      "00000000000000000000000000000000-e457b5a2e4d86bd1",       // all-zero trace id
      "0000000000000000-e457b5a2e4d86bd1",                       // all-zero 64-bit trace id
      "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000",       // all-zero span id
  };
  for (const char* value : malformed) EXPECT_FALSE(ParseB3Single(value).has_value()) << value;
}

TEST(TraceContextTest, B3SingleUppercaseHexIsAccepted) {
  // B3 asks for lower-hex, but unlike W3C does not make other input invalid.
  const auto c = ParseB3Single("80F198EE56343BA864FE8B2A57D3EFF7-E457B5A2E4D86BD1-1");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
}

// --- X-B3-* (multi header) ---------------------------------------------------------

TEST(TraceContextTest, B3Multi) {
  auto c = ParseB3Multi("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "1", "");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_EQ(ToHex(c->span_id), "e457b5a2e4d86bd1");
  EXPECT_TRUE(c->sampled);

  c = ParseB3Multi("a3ce929d0e0e4736", "00f067aa0ba902b7", "0", "");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "0000000000000000a3ce929d0e0e4736");
  EXPECT_FALSE(c->sampled);

  const std::string_view t = "a3ce929d0e0e4736", s = "00f067aa0ba902b7";
  EXPECT_TRUE(ParseB3Multi(t, s, "true", "")->sampled);  // older senders
  EXPECT_FALSE(ParseB3Multi(t, s, "false", "")->sampled);
  EXPECT_TRUE(ParseB3Multi(t, s, "", "")->sampled);   // deferred
  EXPECT_TRUE(ParseB3Multi(t, s, "0", "1")->sampled);  // debug implies sampled
  EXPECT_FALSE(ParseB3Multi(t, s, "0", "0")->sampled);
  EXPECT_TRUE(ParseB3Multi(" a3ce929d0e0e4736 ", "\t00f067aa0ba902b7", " 1 ", ""));
}

TEST(TraceContextTest, B3MultiInvalid) {
  const std::string_view t = "a3ce929d0e0e4736", s = "00f067aa0ba902b7";
  EXPECT_FALSE(ParseB3Multi("", s, "1", ""));
  EXPECT_FALSE(ParseB3Multi(t, "", "1", ""));
  EXPECT_FALSE(ParseB3Multi("a3ce929d0e0e473", s, "1", ""));
  EXPECT_FALSE(ParseB3Multi(t, "00f067aa0ba902b", "1", ""));
  EXPECT_FALSE(ParseB3Multi(t, "00f067aa0ba902bz", "1", ""));
  EXPECT_FALSE(ParseB3Multi(std::string(16, '0'), s, "1", ""));
  EXPECT_FALSE(ParseB3Multi(t, std::string(16, '0'), "1", ""));
}

// --- Headers -----------------------------------------------------------------------

using Headers = std::map<std::string, std::string>;

std::optional<TraceContext> FromHeaders(const Headers& headers) {
  return ContextFromHeaders([&headers](std::string_view name) -> std::optional<std::string_view> {
    const auto it = headers.find(std::string(name));
    if (it == headers.end()) return std::nullopt;
    return std::string_view(it->second);
  });
}

TEST(TraceContextTest, ContextFromHeadersPrefersTraceparentThenB3ThenMulti) {
  const std::string tp = Traceparent("00", kTrace, kSpan, "01");
  const std::string b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0";
  const Headers multi = {{"x-b3-traceid", "a3ce929d0e0e4736"},
                         {"x-b3-spanid", "1111111111111111"},
                         {"x-b3-sampled", "1"}};

  Headers all = multi;
  all["traceparent"] = tp;
  all["tracestate"] = "congo=t61rcWkgMzE";
  all["b3"] = b3;
  auto c = FromHeaders(all);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), kTrace);
  EXPECT_EQ(c->tracestate, "congo=t61rcWkgMzE");

  // An invalid traceparent falls back to b3 (and its tracestate goes with it).
  all["traceparent"] = Traceparent("ff", kTrace, kSpan, "01");
  c = FromHeaders(all);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "80f198ee56343ba864fe8b2a57d3eff7");
  EXPECT_FALSE(c->sampled);
  EXPECT_EQ(c->tracestate, "");

  // A bare b3 sampling decision falls back to X-B3-*.
  all["b3"] = "0";
  c = FromHeaders(all);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->span_id), "1111111111111111");
  EXPECT_TRUE(c->sampled);

  c = FromHeaders(multi);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(ToHex(c->trace_id), "0000000000000000a3ce929d0e0e4736");

  Headers flags_only = {{"x-b3-traceid", "a3ce929d0e0e4736"},
                        {"x-b3-spanid", "1111111111111111"},
                        {"x-b3-sampled", "0"},
                        {"x-b3-flags", "1"}};
  EXPECT_TRUE(FromHeaders(flags_only)->sampled);
}

TEST(TraceContextTest, ContextFromHeadersNeedsIds) {
  EXPECT_FALSE(FromHeaders({}).has_value());
  EXPECT_FALSE(FromHeaders({{"tracestate", "congo=t61rcWkgMzE"}}).has_value());
  EXPECT_FALSE(FromHeaders({{"x-b3-traceid", "a3ce929d0e0e4736"}}).has_value());
  EXPECT_FALSE(FromHeaders({{"x-b3-spanid", "1111111111111111"}, {"x-b3-sampled", "1"}}));
  EXPECT_FALSE(FromHeaders({{"b3", "1"}, {"x-b3-sampled", "1"}}).has_value());
}

TEST(TraceContextTest, TraceContextHeaderNames) {
  for (const char* name : {"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
                           "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"}) {
    EXPECT_TRUE(IsTraceContextHeader(name)) << name;
  }
  for (const char* name : {"Traceparent", "x-b3", "b3-x", "authorization", "", "x-b3-traceid "}) {
    EXPECT_FALSE(IsTraceContextHeader(name)) << name;
  }
}

}  // namespace
}  // namespace loupe
