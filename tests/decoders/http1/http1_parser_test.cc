// Tier 1 (annotated byte literals) tests of the HTTP/1 message parser: one
// direction, one ByteStream, no stitching.
#include "decoders/http1/http1_parser.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace loupe::http1 {
namespace {

using namespace std::string_view_literals;

constexpr size_t kMaxHeaderBytes = 64 * 1024;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Appends one syscall's worth of bytes at the end of `stream`; `total_len`
// larger than the bytes leaves a gap after them (a copied prefix).
void Add(ByteStream& stream, std::string_view bytes, EventTime time = {},
         std::optional<uint64_t> total_len = std::nullopt) {
  stream.Add(stream.end(), Bytes(bytes), total_len.value_or(bytes.size()), time);
}

struct Parsed {
  std::vector<Message> messages;
  int invalid = 0;
  int ignored = 0;
  ParseState last = ParseState::kNeedsMoreData;
};

// Calls Parse until it asks for more data (or the stream ended).
void ParseInto(MessageParser& parser, ByteStream& stream, Parsed& out,
               std::string_view request_method = {}) {
  for (int guard = 0; guard < 1'000'000; ++guard) {
    const ParseState state = parser.Parse(stream, request_method);
    switch (state) {
      case ParseState::kSuccess:
        out.messages.push_back(parser.message());
        continue;
      case ParseState::kInvalid:
        ++out.invalid;
        continue;
      case ParseState::kIgnored:
        ++out.ignored;
        continue;
      case ParseState::kNeedsMoreData:
      case ParseState::kEndOfStream:
        out.last = state;
        return;
    }
  }
  ADD_FAILURE() << "parser made no progress";
}

Parsed ParseAll(MessageParser& parser, ByteStream& stream, std::string_view request_method = {}) {
  Parsed out;
  ParseInto(parser, stream, out, request_method);
  return out;
}

Parsed ParseOne(MessageType type, std::string_view bytes, std::string_view request_method = {}) {
  MessageParser parser(kMaxHeaderBytes, type);
  ByteStream stream;
  Add(stream, bytes);
  return ParseAll(parser, stream, request_method);
}

// --- Request line and headers -----------------------------------------------

TEST(Http1ParserTest, SimpleGetRequest) {
  constexpr std::string_view kRequest =
      "GET /users/42?verbose=1 HTTP/1.1\r\n"  // request-line
      "Host: api.example.com:8080\r\n"
      "Accept: */*\r\n"
      "\r\n";                                  // end of the header block, no body
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, kRequest, EventTime{100, 150, 7});
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 1u);
  const Message& m = parsed.messages[0];
  EXPECT_EQ(m.type, MessageType::kRequest);
  EXPECT_EQ(m.method, "GET");
  EXPECT_EQ(m.target, "/users/42?verbose=1");
  EXPECT_EQ(m.minor_version, 1);
  EXPECT_EQ(m.host, "api.example.com:8080");
  EXPECT_EQ(m.framing, BodyFraming::kNone);
  EXPECT_EQ(m.body_size, 0u);
  EXPECT_EQ(m.start_offset, 0u);
  EXPECT_EQ(m.end_offset, kRequest.size());
  EXPECT_EQ(m.first_byte.start_ns, 100u);
  EXPECT_EQ(m.last_byte.end_ns, 150u);
  EXPECT_EQ(m.first_byte.tid, 7u);
  EXPECT_EQ(m.completeness, Completeness::kComplete);
  EXPECT_EQ(parsed.invalid, 0);
  EXPECT_TRUE(stream.empty());
  EXPECT_EQ(parser.type(), MessageType::kRequest);
}

TEST(Http1ParserTest, ContentLengthBodyIsConsumedNotStored) {
  const Parsed parsed = ParseOne(MessageType::kRequest,
                                 "POST /submit HTTP/1.0\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: 13\r\n"
                                 "\r\n"
                                 "{\"a\": \"b\"}\r\n\r\n");  // 13 body bytes, CRLFs included
  ASSERT_EQ(parsed.messages.size(), 1u);
  const Message& m = parsed.messages[0];
  EXPECT_EQ(m.minor_version, 0);
  EXPECT_EQ(m.framing, BodyFraming::kContentLength);
  EXPECT_TRUE(m.has_content_length);
  EXPECT_EQ(m.content_length, 13u);
  EXPECT_EQ(m.body_size, 13u);
  EXPECT_EQ(m.content_type, "application/json");
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, HeaderNamesAreCaseInsensitiveAndOnlyAllowlistedValuesKept) {
  const Parsed parsed = ParseOne(
      MessageType::kRequest,
      "PUT /x HTTP/1.1\r\n"
      "hOsT: h\r\n"
      "CONTENT-LENGTH: 0\r\n"
      "Connection: keep-alive\r\n"
      "connection: Upgrade\r\n"  // list-valued: combined with ", "
      "Upgrade: websocket\r\n"
      "EXPECT: 100-continue\r\n"
      "Authorization: Bearer secret-token-1\r\n"  // never stored
      "Cookie: session=secret-cookie-2\r\n"       // never stored
      "TraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "tracestate: congo=t61rcWkgMzE\r\n"
      "B3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n"
      "X-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n"
      "X-B3-SpanId: e457b5a2e4d86bd1\r\n"
      "X-B3-ParentSpanId: 05e3ac9a4f6e3b90\r\n"
      "X-B3-Sampled: 1\r\n"
      "X-B3-Flags: 1\r\n"
      "X-Api-Key: secret-key-3\r\n"  // never stored
      "\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  const Message& m = parsed.messages[0];
  EXPECT_EQ(m.host, "h");
  EXPECT_TRUE(m.has_content_length);
  EXPECT_EQ(m.connection, "keep-alive, Upgrade");
  EXPECT_EQ(m.upgrade, "websocket");
  EXPECT_EQ(m.expect, "100-continue");
  const std::vector<TraceContextHeader> expected = {
      {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
      {"tracestate", "congo=t61rcWkgMzE"},
      {"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
      {"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"},
      {"x-b3-spanid", "e457b5a2e4d86bd1"},
      {"x-b3-parentspanid", "05e3ac9a4f6e3b90"},
      {"x-b3-sampled", "1"},
      {"x-b3-flags", "1"},
  };
  EXPECT_EQ(m.trace_context, expected);
  // No secret reached any stored field.
  for (const std::string* field : {&m.method, &m.target, &m.host, &m.transfer_encoding,
                                   &m.connection, &m.expect, &m.upgrade, &m.content_type}) {
    EXPECT_EQ(field->find("secret"), std::string::npos) << *field;
  }
  for (const TraceContextHeader& h : m.trace_context) {
    EXPECT_EQ(h.value.find("secret"), std::string::npos);
  }
}

TEST(Http1ParserTest, TraceContextHeadersAreBounded) {
  std::string request = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 50; ++i) request += "traceparent: 00-abc\r\n";
  request += "b3: " + std::string(kMaxTraceContextValueBytes + 1, 'a') + "\r\n";  // too long: dropped
  request += "\r\n";
  const Parsed parsed = ParseOne(MessageType::kRequest, request);
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].trace_context.size(), kMaxTraceContextHeaders);
}

TEST(Http1ParserTest, BareLineFeedsAreAccepted) {
  const Parsed parsed = ParseOne(MessageType::kRequest,
                                 "POST /lf HTTP/1.1\n"
                                 "Host: h\n"
                                 "Transfer-Encoding: chunked\n"
                                 "\n"
                                 "3\n"
                                 "abc\n"
                                 "0\n"
                                 "\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].host, "h");
  EXPECT_EQ(parsed.messages[0].framing, BodyFraming::kChunked);
  EXPECT_EQ(parsed.messages[0].body_size, 3u);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, EmptyLinesBeforeARequestAreSkipped) {
  // RFC 9112 section 2.2: a CRLF after the previous body is tolerated.
  const Parsed parsed = ParseOne(MessageType::kRequest, "\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].start_offset, 4u);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, ObsFoldContinuationIsIgnored) {
  const Parsed parsed = ParseOne(MessageType::kRequest,
                                 "GET / HTTP/1.1\r\n"
                                 "X-Long: part one\r\n"
                                 "  part two\r\n"  // obs-fold (RFC 9112 section 5.2)
                                 "Host: h\r\n"
                                 "\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].host, "h");
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, ExtensionMethodsAndVersions) {
  Parsed parsed = ParseOne(MessageType::kRequest, "PROPFIND /dav HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].method, "PROPFIND");
  EXPECT_FALSE(IsStandardMethod("PROPFIND"));
  EXPECT_TRUE(IsStandardMethod("PATCH"));
  // A higher minor version is handled as 1.1 (RFC 9110 section 6.2).
  parsed = ParseOne(MessageType::kRequest, "GET / HTTP/1.7\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].minor_version, 1);
}

TEST(Http1ParserTest, InvalidRequestsAreRejected) {
  const std::vector<std::string_view> invalid = {
      "get / HTTP/1.1\r\n\r\n",                           // methods are case-sensitive
      "GET /\r\n\r\n",                                   // HTTP/0.9 style, no version
      "GET / HTTP/2.0\r\n\r\n",                          // not HTTP/1
      "GET  HTTP/1.1\r\n\r\n",                           // empty target
      "GET /a b HTTP/1.1\r\n\r\n",                       // whitespace in the target
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",             // SP before colon (RFC 9112 5.1)
      "GET / HTTP/1.1\r\nno colon here\r\n\r\n",        // not a field line
      "GET / HTTP/1.1\r\n: empty-name\r\n\r\n",         // empty field name
      "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",  // non-numeric
      "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",   // negative
      "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",  // overflow
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",  // conflicting
      "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",                     // conflicting list
      "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",                          // empty
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",  // chunked not final (6.3 rule 4)
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",  // TE in HTTP/1.0 (6.1)
  };
  for (std::string_view bytes : invalid) {
    const Parsed parsed = ParseOne(MessageType::kRequest, bytes);
    EXPECT_EQ(parsed.messages.size(), 0u) << bytes;
    EXPECT_GE(parsed.invalid, 1) << bytes;
  }
}

TEST(Http1ParserTest, MessageRightAfterARejectedOneInTheSameWriteIsKept) {
  // The rejected request's header block is skipped; the next line begins a
  // pipelined request that must not be lost with it.
  Parsed parsed = ParseOne(MessageType::kRequest,
                           "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"
                           "GET /b HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].target, "/b");
  EXPECT_EQ(parsed.invalid, 1);
  // Same when a header line is bad: here the client gave up on a request
  // mid-header and started a new one.
  parsed = ParseOne(MessageType::kRequest,
                    "GET /a HTTP/1.1\r\nHost: h\r\n"
                    "GET /c HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].target, "/c");
  EXPECT_EQ(parsed.invalid, 1);
}

TEST(Http1ParserTest, IdenticalContentLengthsAreAccepted) {
  // RFC 9112 section 6.3 rule 5: identical values may be taken as one.
  Parsed parsed = ParseOne(MessageType::kRequest,
                           "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n"
                           "Content-Length: 3\r\n\r\nabc");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].body_size, 3u);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, TransferEncodingOverridesContentLength) {
  // RFC 9112 section 6.3 rule 3.
  const Parsed parsed = ParseOne(MessageType::kRequest,
                                 "POST / HTTP/1.1\r\n"
                                 "Content-Length: 100\r\n"
                                 "Transfer-Encoding: gzip\r\n"
                                 "Transfer-Encoding: chunked\r\n"  // final coding: chunked
                                 "\r\n"
                                 "2\r\nab\r\n0\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].framing, BodyFraming::kChunked);
  EXPECT_EQ(parsed.messages[0].transfer_encoding, "gzip, chunked");
  EXPECT_EQ(parsed.messages[0].body_size, 2u);
}

// --- Responses ---------------------------------------------------------------

TEST(Http1ParserTest, StatusLines) {
  Parsed parsed = ParseOne(MessageType::kResponse,
                           "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].status_code, 404);
  EXPECT_EQ(parsed.messages[0].framing, BodyFraming::kContentLength);
  // No reason phrase, and no SP before it: seen in the wild, accepted.
  parsed = ParseOne(MessageType::kResponse, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].status_code, 200);
  for (std::string_view bad : {"HTTP/1.1 20 OK\r\n\r\n"sv, "HTTP/1.1 2000 OK\r\n\r\n"sv,
                               "HTTP/1.1 abc OK\r\n\r\n"sv, "HTTP/2 200 OK\r\n\r\n"sv,
                               "HTTP/1.1 099 X\r\n\r\n"sv, "ICY 200 OK\r\n\r\n"sv}) {
    parsed = ParseOne(MessageType::kResponse, bad);
    EXPECT_TRUE(parsed.messages.empty()) << bad;
    EXPECT_GE(parsed.invalid, 1) << bad;
  }
}

TEST(Http1ParserTest, ChunkedWithExtensionsAndTrailers) {
  constexpr std::string_view kResponse =
      "HTTP/1.1 200 OK\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Trailer: Expires\r\n"
      "\r\n"
      "5;name=value;other\r\n"  // chunk-size with extensions (RFC 9112 7.1.1)
      "hello\r\n"
      "1A \t; ext=\"quoted;string\"\r\n"  // BWS before the extension, upper-case hex
      "abcdefghijklmnopqrstuvwxyz\r\n"
      "0\r\n"  // last-chunk
      "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"  // trailer field, not kept
      "X-Checksum: 1234\r\n"
      "\r\n";
  const Parsed parsed = ParseOne(MessageType::kResponse, kResponse);
  ASSERT_EQ(parsed.messages.size(), 1u);
  const Message& m = parsed.messages[0];
  EXPECT_EQ(m.framing, BodyFraming::kChunked);
  EXPECT_EQ(m.body_size, 5u + 26u);
  EXPECT_EQ(m.end_offset, kResponse.size());
  EXPECT_EQ(m.completeness, Completeness::kComplete);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, BadChunkFramingEndsTheMessage) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Add(stream,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "zz\r\n"  // not a chunk-size
      "HTTP/1.1 204 No Content\r\n\r\n");
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].completeness, Completeness::kBadFraming);
  EXPECT_EQ(parsed.messages[1].status_code, 204);
  EXPECT_EQ(parsed.messages[1].completeness, Completeness::kComplete);
}

TEST(Http1ParserTest, ResponsesWithoutBody) {
  // RFC 9112 section 6.3 rule 1: HEAD, 1xx, 204 and 304 have no body even
  // with a Content-Length; the next response starts right after the headers.
  struct Case {
    std::string_view head;
    std::string_view request_method;
  };
  for (const Case& c : {Case{"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD"},
                        Case{"HTTP/1.1 100 Continue\r\n\r\n", "POST"},
                        Case{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", "GET"},
                        Case{"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "DELETE"},
                        Case{"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"}}) {
    MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
    ByteStream stream;
    Add(stream, c.head);
    Parsed parsed;
    ParseInto(parser, stream, parsed, c.request_method);
    // The next response answers a GET.
    Add(stream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ParseInto(parser, stream, parsed, "GET");
    ASSERT_EQ(parsed.messages.size(), 2u) << c.head;
    EXPECT_EQ(parsed.messages[0].framing, BodyFraming::kNone) << c.head;
    EXPECT_EQ(parsed.messages[0].end_offset, c.head.size());
    EXPECT_EQ(parsed.messages[1].body_size, 2u);
    EXPECT_EQ(parsed.invalid, 0);
  }
}

TEST(Http1ParserTest, ResponseDelimitedByCloseCompletesOnlyOnClose) {
  for (bool closed : {true, false}) {
    MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
    ByteStream stream;
    Add(stream, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ", EventTime{1, 2, 3});
    Add(stream, "world", EventTime{4, 5, 3});
    Parsed parsed = ParseAll(parser, stream);
    EXPECT_TRUE(parsed.messages.empty());
    ASSERT_NE(parser.partial_message(), nullptr);
    const ParseState state = parser.Finish(closed);
    if (closed) {
      ASSERT_EQ(state, ParseState::kSuccess);
      const Message& out = parser.message();
      EXPECT_EQ(out.framing, BodyFraming::kUntilClose);
      EXPECT_EQ(out.body_size, 11u);
      EXPECT_EQ(out.last_byte.end_ns, 5u);
    } else {
      EXPECT_EQ(state, ParseState::kEndOfStream);  // abandoned, not an error
    }
  }
}

TEST(Http1ParserTest, FinishCountsACutMessageAsInvalid) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_TRUE(ParseAll(parser, stream).messages.empty());
  EXPECT_EQ(parser.Finish(/*closed=*/true), ParseState::kInvalid);
  EXPECT_EQ(parser.Finish(/*closed=*/true), ParseState::kEndOfStream);
}

TEST(Http1ParserTest, SwitchingProtocolsEndsTheStream) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Add(stream,
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      "\x81\x05hello");  // a WebSocket frame right behind it
  const Parsed parsed = ParseAll(parser, stream, "GET");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].status_code, 101);
  EXPECT_EQ(parsed.last, ParseState::kEndOfStream);
  EXPECT_EQ(parsed.invalid, 0);
  EXPECT_TRUE(parser.at_end_of_stream());
  EXPECT_TRUE(stream.empty());
}

TEST(Http1ParserTest, ConnectSuccessOpensATunnel) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Add(stream, "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01\x02\x00");
  const Parsed parsed = ParseAll(parser, stream, "CONNECT");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].framing, BodyFraming::kNone);
  EXPECT_EQ(parsed.last, ParseState::kEndOfStream);
  // A refused CONNECT is an ordinary response.
  MessageParser refused(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream2;
  Add(stream2, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(ParseAll(refused, stream2, "CONNECT").last, ParseState::kNeedsMoreData);
}

// --- Incremental parsing -----------------------------------------------------

constexpr std::string_view kChunkedExchange =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "4;x=y\r\nWiki\r\n"
    "5\r\npedia\r\n"
    "0\r\n"
    "Trailer-A: 1\r\n"
    "\r\n"
    "HTTP/1.1 304 Not Modified\r\n\r\n";

TEST(Http1ParserTest, SameMessagesWhateverTheSplitPoint) {
  const Parsed whole = ParseOne(MessageType::kResponse, kChunkedExchange, "GET");
  ASSERT_EQ(whole.messages.size(), 2u);
  EXPECT_EQ(whole.messages[0].body_size, 9u);
  for (size_t split = 1; split < kChunkedExchange.size(); ++split) {
    MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
    ByteStream stream;
    Parsed parsed;
    Add(stream, kChunkedExchange.substr(0, split));
    ParseInto(parser, stream, parsed, "GET");
    Add(stream, kChunkedExchange.substr(split));
    ParseInto(parser, stream, parsed, "GET");
    ASSERT_EQ(parsed.messages.size(), 2u) << "split at " << split;
    EXPECT_EQ(parsed.invalid, 0) << "split at " << split;
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(parsed.messages[i].status_code, whole.messages[i].status_code);
      EXPECT_EQ(parsed.messages[i].body_size, whole.messages[i].body_size);
      EXPECT_EQ(parsed.messages[i].end_offset, whole.messages[i].end_offset);
    }
  }
}

TEST(Http1ParserTest, OneByteAtATime) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Parsed parsed;
  for (size_t i = 0; i < kChunkedExchange.size(); ++i) {
    Add(stream, kChunkedExchange.substr(i, 1), EventTime{i * 10, i * 10 + 5, 1});
    ParseInto(parser, stream, parsed, "GET");
  }
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].body_size, 9u);
  EXPECT_EQ(parsed.invalid, 0);
  // The first byte came with event 0, the last of message 0 with its own event.
  EXPECT_EQ(parsed.messages[0].first_byte.start_ns, 0u);
  const uint64_t last = parsed.messages[0].end_offset - 1;
  EXPECT_EQ(parsed.messages[0].last_byte.end_ns, last * 10 + 5);
  EXPECT_EQ(parsed.messages[1].first_byte.start_ns, (last + 1) * 10);
}

TEST(Http1ParserTest, LargeHeaderBlockInTinyPiecesIsLinear) {
  // A 60 KiB header block one byte per call: a parser that rescans its
  // buffer per call would do ~1.8e9 byte visits here.
  std::string request = "GET / HTTP/1.1\r\n";
  while (request.size() < 60 * 1024) request += "X-Filler: " + std::string(100, 'f') + "\r\n";
  request += "X-Long: " + std::string(8000, 'l') + "\r\n\r\n";
  MessageParser parser(128 * 1024, MessageType::kRequest);
  ByteStream stream;
  Parsed parsed;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < request.size(); ++i) {
    Add(stream, std::string_view(request).substr(i, 1));
    ParseInto(parser, stream, parsed);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

// --- Gaps ----------------------------------------------------------------------

TEST(Http1ParserTest, BodyLargerThanCapturedPrefixIsConsumedAcrossTheGap) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
  // One write of head + body; only the first 64 bytes were copied.
  const std::string write = head + std::string(100000, 'x');
  Add(stream, std::string_view(write).substr(0, 64), EventTime{10, 20, 1}, write.size());
  Add(stream, "HTTP/1.1 204 No Content\r\n\r\n", EventTime{30, 40, 1});
  const Parsed parsed = ParseAll(parser, stream, "GET");
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].body_size, 100000u);
  EXPECT_EQ(parsed.messages[0].completeness, Completeness::kComplete);
  EXPECT_EQ(parsed.messages[0].last_byte.end_ns, 20u);
  EXPECT_EQ(parsed.messages[1].status_code, 204);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, ChunkedBodyLargerThanCapturedPrefix) {
  // Each chunk goes out in its own write ("size CRLF data CRLF"), of which
  // only 16 bytes are copied: the chunk-size lines are captured, the data
  // and the CRLF after it are in gaps.
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Add(stream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  uint64_t total = 0;
  for (size_t size : {0x4000u, 0x2000u, 0x10u}) {
    char size_line[32];
    snprintf(size_line, sizeof(size_line), "%zx\r\n", size);
    const std::string write = std::string(size_line) + std::string(size, 'd') + "\r\n";
    Add(stream, std::string_view(write).substr(0, 16), {}, write.size());
    total += size;
  }
  Add(stream, "0\r\n\r\n");
  Add(stream, "HTTP/1.1 204 No Content\r\n\r\n");
  const Parsed parsed = ParseAll(parser, stream, "GET");
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].body_size, total);
  EXPECT_EQ(parsed.messages[0].completeness, Completeness::kComplete);
  EXPECT_EQ(parsed.messages[1].status_code, 204);
}

TEST(Http1ParserTest, GapInsideChunkSizeLineTruncates) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kResponse);
  ByteStream stream;
  Add(stream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  Add(stream, "10", {}, 40);  // "10" of a chunk-size line, the rest not copied
  Add(stream, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
  const Parsed parsed = ParseAll(parser, stream, "GET");
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].completeness, Completeness::kTruncated);
  EXPECT_EQ(parsed.messages[1].status_code, 500);
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, GapInsideHeadersAfterStartLineGivesTruncatedMessage) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  const std::string request =
      "GET /big-cookie HTTP/1.1\r\nHost: h\r\nCookie: " + std::string(5000, 'c') + "\r\n\r\n";
  Add(stream, std::string_view(request).substr(0, 100), EventTime{1, 2, 9}, request.size());
  Add(stream, "GET /next HTTP/1.1\r\n\r\n", EventTime{3, 4, 9});
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[0].completeness, Completeness::kTruncated);
  EXPECT_EQ(parsed.messages[0].target, "/big-cookie");
  EXPECT_EQ(parsed.messages[0].host, "h");
  EXPECT_EQ(parsed.messages[1].target, "/next");
  EXPECT_EQ(parsed.invalid, 0);
}

TEST(Http1ParserTest, GapInsideStartLineIsInvalid) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "GET /a-very", {}, 200);
  Add(stream, "GET /next HTTP/1.1\r\n\r\n");
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].target, "/next");
  EXPECT_EQ(parsed.invalid, 1);
}

TEST(Http1ParserTest, LostBytesBetweenMessagesResynchronise) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "GET /1 HTTP/1.1\r\n\r\n");
  // A hole: the event at offset end()+50 arrives and is given up waiting for.
  const std::string_view next = "ody-bytes\r\nGET /2 HTTP/1.1\r\n\r\n";
  stream.Add(stream.end() + 50, Bytes(next), next.size(), {});
  stream.FlushPending();
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 2u);
  EXPECT_EQ(parsed.messages[1].target, "/2");
  EXPECT_EQ(parsed.invalid, 0);
}

// --- Junk and limits -----------------------------------------------------------

TEST(Http1ParserTest, GarbageBeforeBetweenAndAfterMessages) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "\x16\x03\x01\x00\xa5garbage");  // a TLS record header, say
  Add(stream, "GET /1 HTTP/1.1\r\n\r\n");
  Add(stream, "this is not http\r\nreally not\r\n");
  Add(stream, "GET /2 HTTP/1.1\r\n\r\n");
  Add(stream, "junk junk GET /not-a-start HTTP/1.1\r\n");  // mid-line: not a start
  Add(stream, "GET /3 HTTP/1.1\r\n\r\n");
  Add(stream, "\xff\xfe\x00trailing");
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 3u);
  EXPECT_EQ(parsed.messages[0].target, "/1");
  EXPECT_EQ(parsed.messages[1].target, "/2");
  EXPECT_EQ(parsed.messages[2].target, "/3");
  EXPECT_EQ(parsed.invalid, 4);
  EXPECT_TRUE(stream.empty());
}

TEST(Http1ParserTest, GarbageGluedToAMessageInOneWriteResynchronisesAtTheNextLine) {
  const Parsed parsed = ParseOne(MessageType::kResponse,
                                 "\x01\x02\x03 noise\r\n"
                                 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.invalid, 1);
}

TEST(Http1ParserTest, OversizedHeaderBlockIsInvalid) {
  MessageParser parser(/*max_header_bytes=*/1024, MessageType::kRequest);
  ByteStream stream;
  std::string big = "GET /big HTTP/1.1\r\n";
  while (big.size() < 4096) big += "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
  big += "\r\n";
  Add(stream, big);
  Add(stream, "GET /small HTTP/1.1\r\n\r\n");
  const Parsed parsed = ParseAll(parser, stream);
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].target, "/small");
  EXPECT_EQ(parsed.invalid, 1);
}

TEST(Http1ParserTest, StartLineWithoutLineFeedIsBounded) {
  MessageParser parser(/*max_header_bytes=*/1024, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "GET /" + std::string(5000, 'a'));
  const Parsed parsed = ParseAll(parser, stream);
  EXPECT_EQ(parsed.invalid, 1);
  EXPECT_LT(stream.buffered_bytes(), 1024u + 256u);
}

TEST(Http1ParserTest, RandomJunkNeverCrashesAndStaysBounded) {
  std::mt19937 rng(1234);
  for (size_t size : {1u, 2u, 7u, 16u, 100u, 1000u, 5000u, 70000u}) {
    for (int round = 0; round < 20; ++round) {
      MessageParser parser(4096, round % 3 == 0 ? std::optional<MessageType>()
                                                : std::optional<MessageType>(
                                                      round % 2 ? MessageType::kRequest
                                                                : MessageType::kResponse));
      ByteStream stream;
      std::string junk(size, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      if (round % 4 == 1) {
        // Make junk look more like HTTP to reach deeper states.
        junk.replace(0, std::min<size_t>(junk.size(), 16), "GET / HTTP/1.1\r\n", 0,
                     std::min<size_t>(junk.size(), 16));
      }
      Parsed parsed;
      size_t pos = 0;
      while (pos < junk.size()) {
        const size_t n = std::min<size_t>(junk.size() - pos, 1 + rng() % 3000);
        Add(stream, std::string_view(junk).substr(pos, n), {}, n + (rng() % 4 == 0 ? rng() % 100 : 0));
        ParseInto(parser, stream, parsed);
        ASSERT_LE(stream.buffered_bytes(), 4096u + 3000u + 256u) << "size " << size;
        pos += n;
      }
      parser.Finish(true);
    }
  }
}

// --- Role unknown, type changes ------------------------------------------------

TEST(Http1ParserTest, UnknownTypeIsDecidedByTheFirstMessage) {
  for (auto [bytes, type] : {std::pair{"HEAD / HTTP/1.1\r\n\r\n"sv, MessageType::kRequest},
                             std::pair{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"sv,
                                       MessageType::kResponse}}) {
    MessageParser parser(kMaxHeaderBytes);
    ByteStream stream;
    Parsed parsed;
    // Fed in two steps so that "H" alone must wait.
    Add(stream, bytes.substr(0, 1));
    ParseInto(parser, stream, parsed);
    EXPECT_FALSE(parser.type().has_value());
    Add(stream, bytes.substr(1));
    ParseInto(parser, stream, parsed);
    ASSERT_EQ(parsed.messages.size(), 1u) << bytes;
    EXPECT_EQ(parsed.messages[0].type, type);
    EXPECT_EQ(parser.type(), type);
  }
}

TEST(Http1ParserTest, SetTypeRestartsAnUnfinishedHeaderBlock) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "HTTP/1.1 200 OK\r\n");
  Parsed parsed;
  ParseInto(parser, stream, parsed);
  EXPECT_GE(parsed.invalid, 1);  // it was not a request
  MessageParser parser2(kMaxHeaderBytes);
  ByteStream stream2;
  Add(stream2, "HTTP/1.1 200 OK\r\n");
  ParseInto(parser2, stream2, parsed);
  parser2.SetType(MessageType::kResponse);
  Add(stream2, "Content-Length: 0\r\n\r\n");
  ParseInto(parser2, stream2, parsed);
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].status_code, 200);
}

TEST(Http1ParserTest, ResetResynchronisesAtTheNextEvent) {
  MessageParser parser(kMaxHeaderBytes, MessageType::kRequest);
  ByteStream stream;
  Add(stream, "POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc");
  Parsed parsed;
  ParseInto(parser, stream, parsed);
  ASSERT_NE(parser.partial_message(), nullptr);
  parser.Reset();
  EXPECT_EQ(parser.partial_message(), nullptr);
  Add(stream, "more body GET /x HTTP/1.1\r\n");  // middle of the lost body
  Add(stream, "GET /after HTTP/1.1\r\n\r\n");
  ParseInto(parser, stream, parsed);
  ASSERT_EQ(parsed.messages.size(), 1u);
  EXPECT_EQ(parsed.messages[0].target, "/after");
}

TEST(Http1ParserTest, Probes) {
  EXPECT_EQ(LooksLikeRequestStart("GET /"), Plausibility::kYes);
  EXPECT_EQ(LooksLikeRequestStart("OPTIONS *"), Plausibility::kYes);
  EXPECT_EQ(LooksLikeRequestStart("DELE"), Plausibility::kMaybe);
  EXPECT_EQ(LooksLikeRequestStart(""), Plausibility::kMaybe);
  EXPECT_EQ(LooksLikeRequestStart("GETX /"), Plausibility::kNo);
  EXPECT_EQ(LooksLikeRequestStart("get /"), Plausibility::kNo);
  EXPECT_EQ(LooksLikeResponseStart("HTTP/1.1 200"), Plausibility::kYes);
  EXPECT_EQ(LooksLikeResponseStart("HTTP/1"), Plausibility::kMaybe);
  EXPECT_EQ(LooksLikeResponseStart("HTTP/2 200"), Plausibility::kNo);
  EXPECT_EQ(ParseStateName(ParseState::kNeedsMoreData), "needs_more_data");
}

}  // namespace
}  // namespace loupe::http1
