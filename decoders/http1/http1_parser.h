// HTTP/1.0 and HTTP/1.1 message framing (RFC 9112), one direction at a time.
//
// A MessageParser reads requests or responses from one ByteStream and returns
// whole messages (Message frames) through a small state enum, in the style of
// Pixie's socket tracer: kSuccess (a frame is ready), kNeedsMoreData,
// kIgnored (bytes were skipped), kInvalid (the bytes at the head were not a
// message: counted by the caller, the parser resynchronises on the next
// call), kEndOfStream (the connection left HTTP/1).
//
// Parsing is incremental and streams bodies: the header block is scanned line
// by line once (the scan position survives calls, so a message arriving one
// byte per syscall costs linear time), and body bytes are Consume()d as they
// arrive, across gaps, without ever being buffered. Only the start line, a
// short allowlist of header values and the headers asked for with
// --capture-headers (decoders/model/http_capture.h) are copied out; every
// other header value is skipped without being stored, and a captured header
// that is redacted (Authorization, Cookie, ...) is stored as "REDACTED".
#ifndef LOUPE_DECODERS_HTTP1_HTTP1_PARSER_H_
#define LOUPE_DECODERS_HTTP1_HTTP1_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/conn/byte_stream.h"
#include "decoders/model/http_capture.h"

namespace loupe::http1 {

enum class ParseState : uint8_t {
  kInvalid,        // the head of the stream is not a valid message; skipped on the next call
  kNeedsMoreData,  // everything usable was consumed or is waiting for more bytes
  kIgnored,        // bytes were skipped (resynchronisation, lost data); call again
  kEndOfStream,    // the connection is no longer HTTP/1 (101, CONNECT tunnel)
  kSuccess,        // a message is complete
};
std::string_view ParseStateName(ParseState state);

enum class MessageType : uint8_t { kRequest, kResponse };

// How the end of a message body is found (RFC 9112 section 6.3).
enum class BodyFraming : uint8_t {
  kNone,           // no body: request without Content-Length or chunked; response to
                   // HEAD, 1xx, 204, 304, CONNECT 2xx; header block cut by a gap
  kContentLength,  // Content-Length bytes
  kChunked,        // chunked transfer coding (RFC 9112 section 7.1)
  kUntilClose,     // response delimited by the connection close (section 6.3, rule 8)
};

enum class Completeness : uint8_t {
  kComplete,
  kTruncated,   // a gap cut the header block or the chunk framing: ends where it was cut
  kBadFraming,  // the chunk framing was invalid: ends where it went wrong
};

// Trace-context headers are the only ones kept with their value (for context
// linking). `name` is lowercase and points to static storage.
struct TraceContextHeader {
  std::string_view name;
  std::string value;
  bool operator==(const TraceContextHeader&) const = default;
};
// traceparent, tracestate, b3, x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled,
// x-b3-flags (IsTraceContextHeader in decoders/model/trace_context.h).
inline constexpr size_t kMaxTraceContextHeaders = 8;
inline constexpr size_t kMaxTraceContextValueBytes = 512;

// One request or response frame. String fields hold copies; the parser reuses
// one Message for every frame, so steady-state parsing does not allocate.
struct Message {
  MessageType type = MessageType::kRequest;
  uint8_t minor_version = 1;  // HTTP/1.<minor_version>
  // Request line (RFC 9112 section 3).
  std::string method;
  std::string target;
  // Status line (RFC 9112 section 4).
  int status_code = 0;
  // Kept header fields; empty when absent. Names match case-insensitively.
  std::string host;
  std::string transfer_encoding;
  std::string connection;
  std::string expect;
  std::string upgrade;
  std::string content_type;
  bool has_content_length = false;
  uint64_t content_length = 0;
  std::vector<TraceContextHeader> trace_context;
  // Headers asked for (MessageParser's HttpCapture), in order of appearance.
  std::vector<CapturedHeader> captured_headers;
  // Body and extent.
  BodyFraming framing = BodyFraming::kNone;
  uint64_t body_size = 0;     // decoded body bytes: Content-Length or the sum of chunk sizes
  uint64_t start_offset = 0;  // stream offset of the first byte
  uint64_t end_offset = 0;    // one past the last byte that belonged to the message
  EventTime first_byte;       // the syscall that carried the first byte
  EventTime last_byte;        // the syscall that carried the last byte
  Completeness completeness = Completeness::kComplete;

  // Empties every field, keeping string capacity for the next message.
  void Clear();
};

// Cheap probes of a message start, used to resynchronise after invalid input
// and to decide which side of a connection is the client when the role is
// unknown. kMaybe: `bytes` is a proper prefix of something plausible.
enum class Plausibility : uint8_t { kNo, kMaybe, kYes };
// A standard method (RFC 9110 section 9 and PATCH) followed by SP.
Plausibility LooksLikeRequestStart(std::string_view bytes);
// "HTTP/1." followed by a digit.
Plausibility LooksLikeResponseStart(std::string_view bytes);

// GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH.
bool IsStandardMethod(std::string_view method);

class MessageParser {
 public:
  // `type`: what this direction carries; nullopt decides from the first
  // message seen (connection role unknown). A message's start line and header
  // block (and a chunked body's trailer section) larger than
  // `max_header_bytes` is invalid. `capture`: the header values to keep in
  // Message::captured_headers; null (the fast path) when none are asked for.
  // It must outlive the parser.
  explicit MessageParser(size_t max_header_bytes,
                         std::optional<MessageType> type = std::nullopt,
                         const HttpCapture* capture = nullptr);

  // Parses from `stream`, consuming what it has finished with. On kSuccess
  // the finished frame is message(). `request_method` is the method of the
  // oldest unanswered request; a response parser needs it when a header
  // block completes, to know whether a body follows (HEAD, CONNECT: RFC 9112
  // section 6.3 rules 1 and 2). Empty when unknown.
  ParseState Parse(ByteStream& stream, std::string_view request_method);

  // The connection ended. `closed`: the peer closed it, which completes a
  // body delimited by the close (kSuccess, the frame is message()); otherwise
  // the connection was abandoned. Returns kInvalid when a partial message was
  // cut by a close (a truncated stream), else kEndOfStream. Resets the parser.
  ParseState Finish(bool closed);

  // The frame of the last kSuccess, valid until the next non-const call. The
  // parser reuses its storage for the next message, so keeping a frame means
  // copying it (into a Message that keeps its capacity, ideally).
  const Message& message() const { return current_; }

  // Forgets any partial message: the stream lost bytes under the parser. The
  // next Parse() resynchronises.
  void Reset();

  // Fixes what this direction carries (the role became known). A partial
  // message of the other type is dropped.
  void SetType(MessageType type);
  std::optional<MessageType> type() const { return type_; }

  // Stop parsing: everything after this is not HTTP/1 (the other direction
  // saw 101 Switching Protocols or a CONNECT tunnel being established).
  void EnterEndOfStream();
  bool at_end_of_stream() const { return phase_ == Phase::kEndOfStream; }

  // The message being parsed, once its header block is complete and while
  // its body is not; nullptr otherwise. Lets a stitcher pair a response that
  // arrives before the request body ended (417, 413, early errors).
  const Message* partial_message() const;
  // Whether any byte of an unfinished message has been seen.
  bool in_message() const;

 private:
  enum class Phase : uint8_t {
    kStart,         // between messages
    kHeaders,       // start line and header fields, not consumed until complete
    kFixedBody,     // Content-Length body
    kChunkSize,     // chunk-size [chunk-ext] CRLF
    kChunkData,     // chunk-data
    kChunkDataEnd,  // the CRLF after chunk-data
    kTrailers,      // trailer section, consumed line by line
    kUntilClose,    // body ends with the connection
    kResync,        // skipping to a plausible message start
    kEndOfStream,
  };
  // How a header-block scan ended.
  enum class ScanResult : uint8_t { kComplete, kIncomplete, kInvalid };

  std::optional<ParseState> StepStart(ByteStream& stream);
  std::optional<ParseState> StepHeaders(ByteStream& stream, std::string_view request_method);
  std::optional<ParseState> StepFixedBody(ByteStream& stream);
  std::optional<ParseState> StepChunkSize(ByteStream& stream);
  std::optional<ParseState> StepChunkDataEnd(ByteStream& stream);
  std::optional<ParseState> StepTrailers(ByteStream& stream);
  std::optional<ParseState> StepResync(ByteStream& stream);

  ScanResult ScanHeaderLines(std::string_view block, size_t* header_end);
  bool ParseStartLine(std::string_view line);
  bool ParseRequestLine(std::string_view line);
  bool ParseStatusLine(std::string_view line);
  bool ParseHeaderLine(std::string_view line);
  bool PartialStartLineIsPlausible(std::string_view bytes) const;
  std::optional<ParseState> FinishHeaders(ByteStream& stream, size_t header_end,
                                          std::string_view request_method);
  // Consumes n bytes of the message (n > 0), remembering the time of the last.
  void ConsumeMessageBytes(ByteStream& stream, uint64_t n);
  // Hands the finished message to the caller.
  ParseState Emit();
  // Hands over a message that ends early (`why`), then resynchronises.
  ParseState EmitCut(Completeness why);
  // Reports invalid input and resynchronises after skipping `resync_skip`
  // bytes of the message (at least one).
  ParseState Invalid(size_t resync_skip, bool skip_ends_at_line_start);
  void EnterResync(uint64_t skip, bool position_is_candidate);
  Plausibility LooksLikeStart(std::string_view bytes) const;

  size_t max_header_bytes_;
  std::optional<MessageType> type_;
  const HttpCapture* capture_;
  Phase phase_ = Phase::kStart;
  Message current_;

  // kHeaders: where the message starts and the next unprocessed line.
  uint64_t message_start_ = 0;
  size_t scan_pos_ = 0;
  size_t lf_searched_ = 0;  // bytes from message_start_ known to hold no unprocessed LF
  bool start_line_done_ = false;
  bool saw_transfer_encoding_ = false;
  bool chunked_is_final_ = false;
  // Bodies: bytes left of a Content-Length body or of a chunk.
  uint64_t body_remaining_ = 0;
  // kChunkSize/kTrailers: bytes of the current line already searched for LF.
  size_t line_scan_pos_ = 0;
  size_t trailer_bytes_ = 0;
  uint8_t chunk_crlf_seen_ = 0;  // kChunkDataEnd: bytes of the CRLF consumed
  // The phase after a message that ends the HTTP/1 part of the stream.
  bool end_of_stream_after_message_ = false;
  // kResync: bytes still to skip, and whether the byte at position() may
  // start a message (it follows a LF or a gap).
  uint64_t resync_skip_ = 0;
  bool resync_position_is_candidate_ = false;
};

}  // namespace loupe::http1

#endif  // LOUPE_DECODERS_HTTP1_HTTP1_PARSER_H_
