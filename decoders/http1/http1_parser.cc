#include "decoders/http1/http1_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace loupe::http1 {

namespace {

constexpr std::string_view kVersionPrefix = "HTTP/1.";
constexpr size_t kVersionLength = 8;  // "HTTP/1.1"
// Standard methods are at most 7 bytes; extension methods (WebDAV and the
// like) rarely exceed a dozen. The bound lets junk be rejected before a LF.
constexpr size_t kMaxMethodLength = 24;
// RFC 9112 section 7.1.1 puts no limit on chunk extensions; servers do (a few
// KiB). Beyond this the framing is treated as broken rather than buffered.
constexpr size_t kMaxChunkLineBytes = 4096;
// Chunk sizes and their sum stay below this, so nothing overflows; no real
// body comes close.
constexpr uint64_t kMaxBodyBytes = uint64_t{1} << 60;

constexpr std::array<std::string_view, 9> kStandardMethods = {
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"};

// A field name (RFC 9110 section 5.1) is a token. Checking the full tchar
// set byte by byte costs a table lookup per byte on the hot path, so names are
// held to a looser rule that vectorises: visible US-ASCII (0x21-0x7E). That
// still rejects what matters to a passive observer: whitespace before the
// colon (RFC 9112 section 5.1), control bytes and binary junk.
inline bool IsFieldNameByte(unsigned char c) { return c > 0x20 && c < 0x7f && c != ':'; }

// Index of the first byte of `line` that cannot continue a field name (the
// colon, normally), or line.size().
inline size_t FieldNameEnd(std::string_view line) {
  const char* p = line.data();
  const size_t n = line.size();
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i colon = _mm_set1_epi8(':');
  const __m128i first_visible = _mm_set1_epi8(0x21);
  const __m128i del = _mm_set1_epi8(0x7f);
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    // Signed compare: bytes >= 0x80 are negative, so "< 0x21" also catches them.
    const __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, colon),
                                                   _mm_cmplt_epi8(v, first_visible)),
                                      _mm_cmpeq_epi8(v, del));
    const int mask = _mm_movemask_epi8(stop);
    if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  while (i < n && IsFieldNameByte(static_cast<unsigned char>(p[i]))) ++i;
  return i;
}

// Extension methods are accepted in the same shape as the standard ones
// (upper-case letters, '-', '_'): lenient enough for PROPFIND or M-SEARCH,
// strict enough that junk glued to a real start line ("xyzGET /") fails.
inline bool IsMethodChar(char c) { return (c >= 'A' && c <= 'Z') || c == '-' || c == '_'; }
inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Compares a header name with a lower-case literal of the same length. Only
// ASCII letters fold; any other byte must match exactly.
inline bool EqualsLower(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (static_cast<unsigned char>(c - 'A') < 26) c |= 0x20;
    if (c != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

// OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3).
inline std::string_view TrimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

inline std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

enum class Field : uint8_t {
  kOther,
  kHost,
  kContentLength,
  kTransferEncoding,
  kConnection,
  kExpect,
  kUpgrade,
  kContentType,
  kTraceContext,
};

struct FieldMatch {
  Field field = Field::kOther;
  std::string_view canonical;  // lower-case, static storage
};

// Dispatches on the name's length first: most header names in real traffic
// have a length no kept name has, and are rejected without a byte compared.
FieldMatch ClassifyFieldName(std::string_view name) {
  auto is = [name](std::string_view lower) { return EqualsLower(name, lower); };
  switch (name.size()) {
    case 2:
      if (is("b3")) return {Field::kTraceContext, "b3"};
      break;
    case 4:
      if (is("host")) return {Field::kHost, {}};
      break;
    case 6:
      if (is("expect")) return {Field::kExpect, {}};
      break;
    case 7:
      if (is("upgrade")) return {Field::kUpgrade, {}};
      break;
    case 10:
      if (is("connection")) return {Field::kConnection, {}};
      if (is("tracestate")) return {Field::kTraceContext, "tracestate"};
      if (is("x-b3-flags")) return {Field::kTraceContext, "x-b3-flags"};
      break;
    case 11:
      if (is("traceparent")) return {Field::kTraceContext, "traceparent"};
      if (is("x-b3-spanid")) return {Field::kTraceContext, "x-b3-spanid"};
      break;
    case 12:
      if (is("content-type")) return {Field::kContentType, {}};
      if (is("x-b3-traceid")) return {Field::kTraceContext, "x-b3-traceid"};
      if (is("x-b3-sampled")) return {Field::kTraceContext, "x-b3-sampled"};
      break;
    case 14:
      if (is("content-length")) return {Field::kContentLength, {}};
      break;
    case 17:
      if (is("transfer-encoding")) return {Field::kTransferEncoding, {}};
      if (is("x-b3-parentspanid")) return {Field::kTraceContext, "x-b3-parentspanid"};
      break;
    default:
      break;
  }
  return {};
}

// Content-Length = 1*DIGIT (RFC 9110 section 8.6). A list of identical
// values ("5, 5", from a proxy joining duplicate fields) may be accepted as
// one value (RFC 9112 section 6.3 rule 5); differing values may not.
std::optional<uint64_t> ParseContentLength(std::string_view value) {
  std::optional<uint64_t> result;
  for (;;) {
    const size_t comma = value.find(',');
    const std::string_view item = TrimOws(value.substr(0, comma));
    // 18 digits stay below 2^63: no overflow check per digit needed.
    if (item.empty() || item.size() > 18) return std::nullopt;
    uint64_t n = 0;
    for (char c : item) {
      if (!IsDigit(c)) return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (result.has_value() && *result != n) return std::nullopt;
    result = n;
    if (comma == std::string_view::npos) return result;
    value.remove_prefix(comma + 1);
  }
}

// Whether chunked is the final transfer coding of a Transfer-Encoding value
// (RFC 9112 section 6.3 rules 3 and 4 turn on exactly that).
bool FinalCodingIsChunked(std::string_view value) {
  value = TrimOws(value);
  while (!value.empty() && value.back() == ',') value = TrimOws(value.substr(0, value.size() - 1));
  const size_t comma = value.rfind(',');
  const std::string_view last = TrimOws(comma == std::string_view::npos ? value : value.substr(comma + 1));
  return EqualsLower(last, "chunked");
}

inline int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// chunk = chunk-size [ chunk-ext ] CRLF ...; chunk-size = 1*HEXDIG;
// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
// (RFC 9112 section 7.1.1). Extensions are skipped unread.
bool ParseChunkSizeLine(std::string_view line, uint64_t* size) {
  line = StripCr(line);
  size_t i = 0;
  uint64_t n = 0;
  for (; i < line.size(); ++i) {
    const int digit = HexValue(line[i]);
    if (digit < 0) break;
    if (n >= (kMaxBodyBytes >> 4)) return false;
    n = (n << 4) | static_cast<uint64_t>(digit);
  }
  if (i == 0) return false;
  std::string_view rest = line.substr(i);
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  if (!rest.empty() && rest.front() != ';') return false;
  *size = n;
  return true;
}

// HTTP-version = "HTTP/1." DIGIT here (RFC 9112 section 2.3). A higher minor
// version is processed as the highest we know (RFC 9110 section 6.2).
bool ParseVersion(std::string_view v, uint8_t* minor) {
  if (v.size() != kVersionLength || v.substr(0, kVersionPrefix.size()) != kVersionPrefix ||
      !IsDigit(v[7])) {
    return false;
  }
  *minor = v[7] == '0' ? 0 : 1;
  return true;
}

// The first captured data byte at `offset` begins a syscall's payload.
bool IsEventStart(const ByteStream& stream, uint64_t offset) {
  if (offset == 0) return true;
  const std::optional<uint64_t> next = stream.NextEventStart(offset - 1);
  return next.has_value() && *next == offset;
}

// Start of the line after the first LF at or after `from`, or npos.
size_t NextLineStart(std::string_view data, size_t from) {
  if (from >= data.size()) return std::string_view::npos;
  const void* lf = std::memchr(data.data() + from, '\n', data.size() - from);
  if (lf == nullptr) return std::string_view::npos;
  return static_cast<size_t>(static_cast<const char*>(lf) - data.data()) + 1;
}

// Relative offset of the first syscall start after base + from that lies
// within the `size` bytes from base, or npos.
size_t NextEventWithin(const ByteStream& stream, uint64_t base, size_t from, size_t size) {
  const std::optional<uint64_t> next = stream.NextEventStart(base + from);
  if (!next.has_value() || *next >= base + size) return std::string_view::npos;
  return static_cast<size_t>(*next - base);
}

Plausibility Either(Plausibility a, Plausibility b) {
  if (a == Plausibility::kYes || b == Plausibility::kYes) return Plausibility::kYes;
  if (a == Plausibility::kMaybe || b == Plausibility::kMaybe) return Plausibility::kMaybe;
  return Plausibility::kNo;
}

}  // namespace

std::string_view ParseStateName(ParseState state) {
  switch (state) {
    case ParseState::kInvalid:
      return "invalid";
    case ParseState::kNeedsMoreData:
      return "needs_more_data";
    case ParseState::kIgnored:
      return "ignored";
    case ParseState::kEndOfStream:
      return "end_of_stream";
    case ParseState::kSuccess:
      return "success";
  }
  return "unknown";
}

bool IsStandardMethod(std::string_view method) {
  return std::find(kStandardMethods.begin(), kStandardMethods.end(), method) !=
         kStandardMethods.end();
}

Plausibility LooksLikeRequestStart(std::string_view bytes) {
  if (bytes.empty()) return Plausibility::kMaybe;
  switch (bytes.front()) {
    case 'G': case 'P': case 'D': case 'H': case 'O': case 'C': case 'T':
      break;
    default:
      return Plausibility::kNo;
  }
  Plausibility result = Plausibility::kNo;
  for (std::string_view method : kStandardMethods) {
    if (bytes.size() > method.size()) {
      if (bytes.substr(0, method.size()) == method && bytes[method.size()] == ' ') {
        return Plausibility::kYes;
      }
    } else if (method.substr(0, bytes.size()) == bytes) {
      result = Plausibility::kMaybe;
    }
  }
  return result;
}

Plausibility LooksLikeResponseStart(std::string_view bytes) {
  const size_t n = std::min(bytes.size(), kVersionPrefix.size());
  if (bytes.substr(0, n) != kVersionPrefix.substr(0, n)) return Plausibility::kNo;
  if (bytes.size() <= kVersionPrefix.size()) return Plausibility::kMaybe;
  return IsDigit(bytes[kVersionPrefix.size()]) ? Plausibility::kYes : Plausibility::kNo;
}

void Message::Clear() {
  type = MessageType::kRequest;
  minor_version = 1;
  method.clear();
  target.clear();
  status_code = 0;
  host.clear();
  transfer_encoding.clear();
  connection.clear();
  expect.clear();
  upgrade.clear();
  content_type.clear();
  has_content_length = false;
  content_length = 0;
  trace_context.clear();
  captured_headers.clear();
  framing = BodyFraming::kNone;
  body_size = 0;
  start_offset = 0;
  end_offset = 0;
  first_byte = {};
  last_byte = {};
  completeness = Completeness::kComplete;
}

MessageParser::MessageParser(size_t max_header_bytes, std::optional<MessageType> type,
                             const HttpCapture* capture)
    : max_header_bytes_(std::max<size_t>(max_header_bytes, 16)), type_(type), capture_(capture) {}

const Message* MessageParser::partial_message() const {
  switch (phase_) {
    case Phase::kFixedBody:
    case Phase::kChunkSize:
    case Phase::kChunkData:
    case Phase::kChunkDataEnd:
    case Phase::kTrailers:
    case Phase::kUntilClose:
      return &current_;
    default:
      return nullptr;
  }
}

bool MessageParser::in_message() const {
  return phase_ == Phase::kHeaders || partial_message() != nullptr;
}

void MessageParser::Reset() {
  if (phase_ == Phase::kEndOfStream) return;
  current_.Clear();
  // The new head of the stream may be anywhere in a message: only a
  // plausible start (at a syscall boundary or after a LF) is trusted.
  EnterResync(0, /*position_is_candidate=*/false);
}

void MessageParser::SetType(MessageType type) {
  if (type_ == type) return;
  const bool changed = type_.has_value();
  type_ = type;
  if (phase_ == Phase::kHeaders) {
    // Nothing of the header block is consumed yet: parse it again as `type`.
    phase_ = Phase::kStart;
  } else if (changed && in_message()) {
    Reset();
  }
}

void MessageParser::EnterEndOfStream() { phase_ = Phase::kEndOfStream; }

void MessageParser::EnterResync(uint64_t skip, bool position_is_candidate) {
  phase_ = Phase::kResync;
  resync_skip_ = skip;
  resync_position_is_candidate_ = position_is_candidate;
}

ParseState MessageParser::Invalid(size_t resync_skip, bool skip_ends_at_line_start) {
  // Skipping at least one byte guarantees progress: the same bytes are never
  // tried as a message start twice.
  EnterResync(std::max<size_t>(resync_skip, 1), skip_ends_at_line_start && resync_skip > 0);
  return ParseState::kInvalid;
}

Plausibility MessageParser::LooksLikeStart(std::string_view bytes) const {
  if (!type_.has_value()) return Either(LooksLikeRequestStart(bytes), LooksLikeResponseStart(bytes));
  return *type_ == MessageType::kRequest ? LooksLikeRequestStart(bytes)
                                         : LooksLikeResponseStart(bytes);
}

void MessageParser::ConsumeMessageBytes(ByteStream& stream, uint64_t n) {
  const uint64_t last = stream.position() + n - 1;
  current_.last_byte = stream.TimeAt(last);
  current_.end_offset = last + 1;
  stream.Consume(n);
}

ParseState MessageParser::Emit() {
  phase_ = end_of_stream_after_message_ ? Phase::kEndOfStream : Phase::kStart;
  return ParseState::kSuccess;
}

ParseState MessageParser::EmitCut(Completeness why) {
  current_.completeness = why;
  const ParseState state = Emit();
  // What follows is a gap or bytes that did not frame: look for the next
  // message, which may start right here.
  if (phase_ == Phase::kStart) EnterResync(0, /*position_is_candidate=*/true);
  return state;
}

ParseState MessageParser::Parse(ByteStream& stream, std::string_view request_method) {
  for (;;) {
    std::optional<ParseState> result;
    switch (phase_) {
      case Phase::kStart:
        result = StepStart(stream);
        break;
      case Phase::kHeaders:
        result = StepHeaders(stream, request_method);
        break;
      case Phase::kFixedBody:
      case Phase::kChunkData:
        result = StepFixedBody(stream);
        break;
      case Phase::kChunkSize:
        result = StepChunkSize(stream);
        break;
      case Phase::kChunkDataEnd:
        result = StepChunkDataEnd(stream);
        break;
      case Phase::kTrailers:
        result = StepTrailers(stream);
        break;
      case Phase::kUntilClose:
        if (!stream.empty()) {
          const uint64_t n = stream.available();
          current_.body_size += n;
          ConsumeMessageBytes(stream, n);
        }
        return ParseState::kNeedsMoreData;
      case Phase::kResync:
        result = StepResync(stream);
        break;
      case Phase::kEndOfStream:
        if (!stream.empty()) stream.Consume(stream.available());
        return ParseState::kEndOfStream;
    }
    if (result.has_value()) return *result;
  }
}

std::optional<ParseState> MessageParser::StepStart(ByteStream& stream) {
  if (stream.empty()) return ParseState::kNeedsMoreData;
  if (const uint64_t gap = stream.GapLength(); gap > 0) {
    // Bytes were lost where a message should begin; what follows may be the
    // middle of one.
    stream.Consume(gap);
    EnterResync(0, /*position_is_candidate=*/true);
    return ParseState::kIgnored;
  }
  const std::string_view data = stream.Contiguous();
  // RFC 9112 section 2.2: empty lines before a start line are ignored (some
  // clients send an extra CRLF after a request body).
  size_t skip = 0;
  while (skip < data.size()) {
    if (data[skip] == '\n') {
      ++skip;
    } else if (data[skip] == '\r' && skip + 1 < data.size() && data[skip + 1] == '\n') {
      skip += 2;
    } else {
      break;
    }
  }
  if (skip > 0) {
    stream.Consume(skip);
    return std::nullopt;
  }
  const bool gap_follows = stream.available() > data.size();
  if (data.size() == 1 && data[0] == '\r' && !gap_follows) return ParseState::kNeedsMoreData;

  MessageType type = MessageType::kRequest;
  if (type_.has_value()) {
    type = *type_;
  } else if (data[0] == 'H') {
    // "HEAD " or "HTTP/": the second byte tells.
    if (data.size() < 2 && !gap_follows) return ParseState::kNeedsMoreData;
    if (data.size() >= 2 && data[1] == 'T') type = MessageType::kResponse;
  }
  current_.Clear();
  current_.type = type;
  message_start_ = stream.position();
  scan_pos_ = 0;
  lf_searched_ = 0;
  start_line_done_ = false;
  saw_transfer_encoding_ = false;
  chunked_is_final_ = false;
  end_of_stream_after_message_ = false;
  phase_ = Phase::kHeaders;
  return std::nullopt;
}

std::optional<ParseState> MessageParser::StepHeaders(ByteStream& stream,
                                                     std::string_view request_method) {
  if (stream.position() != message_start_ || stream.GapLength() > 0) {
    // Someone consumed the unfinished header block under us (a DropHead not
    // followed by Reset): its bytes are gone, start over.
    EnterResync(0, /*position_is_candidate=*/false);
    return ParseState::kIgnored;
  }
  const std::string_view data = stream.Contiguous();
  size_t header_end = 0;
  switch (ScanHeaderLines(data, &header_end)) {
    case ScanResult::kComplete:
      return FinishHeaders(stream, header_end, request_method);
    case ScanResult::kInvalid:
      // scan_pos_ is the start of the offending line (0: the start line).
      return Invalid(scan_pos_, /*skip_ends_at_line_start=*/true);
    case ScanResult::kIncomplete:
      break;
  }
  if (!start_line_done_ && !PartialStartLineIsPlausible(data)) {
    return Invalid(1, /*skip_ends_at_line_start=*/false);
  }
  // Bounded memory: the unconsumed header block is all this parser holds.
  if (data.size() > max_header_bytes_) return Invalid(scan_pos_, /*skip_ends_at_line_start=*/true);
  if (stream.available() > data.size()) {
    // A gap cuts the header block (the copied prefix ended, or bytes were
    // lost). With the start line known the exchange is still worth a span;
    // the body framing is not known, so what follows is resynchronised.
    if (!start_line_done_) return Invalid(data.size(), /*skip_ends_at_line_start=*/false);
    current_.start_offset = message_start_;
    current_.first_byte = stream.TimeAt(message_start_);
    ConsumeMessageBytes(stream, data.size());
    return EmitCut(Completeness::kTruncated);
  }
  return ParseState::kNeedsMoreData;
}

MessageParser::ScanResult MessageParser::ScanHeaderLines(std::string_view block,
                                                         size_t* header_end) {
  const char* base = block.data();
  const size_t size = block.size();
  size_t pos = scan_pos_;
  // Bytes of the current line already searched for LF by an earlier call.
  size_t search_from = std::max(pos, lf_searched_);
  while (search_from < size) {
    const void* lf = std::memchr(base + search_from, '\n', size - search_from);
    if (lf == nullptr) break;
    const size_t lf_index = static_cast<size_t>(static_cast<const char*>(lf) - base);
    const size_t next = lf_index + 1;
    const std::string_view line = StripCr(std::string_view(base + pos, lf_index - pos));
    if (next > max_header_bytes_) {
      scan_pos_ = pos;
      return ScanResult::kInvalid;
    }
    if (!start_line_done_) {
      if (!ParseStartLine(line)) {
        scan_pos_ = pos;
        return ScanResult::kInvalid;
      }
      start_line_done_ = true;
    } else if (line.empty()) {
      scan_pos_ = next;
      *header_end = next;
      return ScanResult::kComplete;
    } else if (!ParseHeaderLine(line)) {
      scan_pos_ = pos;
      return ScanResult::kInvalid;
    }
    pos = next;
    search_from = next;
  }
  scan_pos_ = pos;
  lf_searched_ = size;
  return ScanResult::kIncomplete;
}

bool MessageParser::ParseStartLine(std::string_view line) {
  return current_.type == MessageType::kRequest ? ParseRequestLine(line) : ParseStatusLine(line);
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 section 3).
bool MessageParser::ParseRequestLine(std::string_view line) {
  const void* sp = std::memchr(line.data(), ' ', std::min(line.size(), kMaxMethodLength + 1));
  if (sp == nullptr) return false;
  const std::string_view method(line.data(),
                                static_cast<size_t>(static_cast<const char*>(sp) - line.data()));
  if (method.empty()) return false;
  for (char c : method) {
    if (!IsMethodChar(c)) return false;
  }
  const std::string_view rest = line.substr(method.size() + 1);
  // At least a one-byte target, SP and the version.
  if (rest.size() < kVersionLength + 2 || rest[rest.size() - kVersionLength - 1] != ' ') {
    return false;
  }
  if (!ParseVersion(rest.substr(rest.size() - kVersionLength), &current_.minor_version)) {
    return false;
  }
  const std::string_view target = rest.substr(0, rest.size() - kVersionLength - 1);
  // No whitespace or control bytes in a request-target (RFC 9112 section 3.2);
  // a recipient must not try to repair one (section 3, last paragraph).
  for (char c : target) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  current_.method.assign(method);
  current_.target.assign(target);
  return true;
}

// status-line = HTTP-version SP status-code SP [ reason-phrase ]
// (RFC 9112 section 4). Servers that omit the SP before an empty reason are
// common enough to accept.
bool MessageParser::ParseStatusLine(std::string_view line) {
  constexpr size_t kMinimum = kVersionLength + 4;  // "HTTP/1.1 200"
  if (line.size() < kMinimum || line[kVersionLength] != ' ') return false;
  if (!ParseVersion(line.substr(0, kVersionLength), &current_.minor_version)) return false;
  const char* code = line.data() + kVersionLength + 1;
  if (!IsDigit(code[0]) || !IsDigit(code[1]) || !IsDigit(code[2])) return false;
  if (line.size() > kMinimum && line[kMinimum] != ' ') return false;
  const int status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (status < 100) return false;  // status-code is 3DIGIT, 1xx..5xx (RFC 9110 section 15)
  current_.status_code = status;
  return true;
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 section 5).
bool MessageParser::ParseHeaderLine(std::string_view line) {
  const size_t size = line.size();
  const size_t colon = FieldNameEnd(line);
  if (colon == size || line[colon] != ':') {
    // obs-fold (RFC 9112 section 5.2): a line starting with whitespace
    // continues the previous value. No kept value is folded in practice, so
    // the continuation is dropped rather than rejected.
    if (colon == 0 && size > 0 && (line[0] == ' ' || line[0] == '\t')) return true;
    // Includes whitespace between name and colon, which RFC 9112 section 5.1
    // requires rejecting (a request-smuggling vector).
    return false;
  }
  if (colon == 0) return false;
  const std::string_view name = line.substr(0, colon);
  // --capture-headers: only then is the name looked up a second time.
  if (capture_ != nullptr) {
    if (const int index = capture_->Find(name); index >= 0) {
      capture_->Add(current_.captured_headers, static_cast<uint32_t>(index),
                    TrimOws(line.substr(colon + 1)));
    }
  }
  const FieldMatch match = ClassifyFieldName(name);
  if (match.field == Field::kOther) return true;  // value never looked at
  const std::string_view value = TrimOws(line.substr(colon + 1));
  Message& m = current_;
  // List-valued fields may repeat; their values combine with ", " (RFC 9110
  // section 5.3).
  auto combine = [value](std::string& into) {
    if (!into.empty()) into.append(", ");
    into.append(value);
  };
  switch (match.field) {
    case Field::kHost:
      if (m.host.empty()) m.host.assign(value);
      break;
    case Field::kContentLength: {
      const std::optional<uint64_t> length = ParseContentLength(value);
      if (!length.has_value() || *length > kMaxBodyBytes) return false;
      // Differing Content-Length fields make the framing ambiguous
      // (RFC 9112 section 6.3 rule 5): reject, never guess.
      if (m.has_content_length && m.content_length != *length) return false;
      m.has_content_length = true;
      m.content_length = *length;
      break;
    }
    case Field::kTransferEncoding:
      saw_transfer_encoding_ = true;
      chunked_is_final_ = FinalCodingIsChunked(value);
      combine(m.transfer_encoding);
      break;
    case Field::kConnection:
      combine(m.connection);
      break;
    case Field::kExpect:
      combine(m.expect);
      break;
    case Field::kUpgrade:
      combine(m.upgrade);
      break;
    case Field::kContentType:
      if (m.content_type.empty()) m.content_type.assign(value);
      break;
    case Field::kTraceContext:
      if (m.trace_context.size() < kMaxTraceContextHeaders &&
          value.size() <= kMaxTraceContextValueBytes) {
        m.trace_context.push_back(TraceContextHeader{match.canonical, std::string(value)});
      }
      break;
    case Field::kOther:
      break;
  }
  return true;
}

bool MessageParser::PartialStartLineIsPlausible(std::string_view bytes) const {
  if (current_.type == MessageType::kResponse) {
    return LooksLikeResponseStart(bytes) != Plausibility::kNo;
  }
  const size_t limit = std::min(bytes.size(), kMaxMethodLength + 1);
  for (size_t i = 0; i < limit; ++i) {
    if (bytes[i] == ' ') return i > 0;
    if (!IsMethodChar(bytes[i])) return false;
  }
  return bytes.size() <= kMaxMethodLength;
}

std::optional<ParseState> MessageParser::FinishHeaders(ByteStream& stream, size_t header_end,
                                                       std::string_view request_method) {
  Message& m = current_;
  if (m.type == MessageType::kRequest) {
    if (saw_transfer_encoding_) {
      // RFC 9112 section 6.3 rule 4: in a request, a Transfer-Encoding whose
      // final coding is not chunked leaves the length unknowable (400).
      // Section 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
      if (!chunked_is_final_ || m.minor_version == 0) {
        return Invalid(header_end, /*skip_ends_at_line_start=*/true);
      }
      m.framing = BodyFraming::kChunked;  // overrides Content-Length (rule 3)
    } else if (m.has_content_length) {
      m.framing = BodyFraming::kContentLength;
    } else {
      m.framing = BodyFraming::kNone;  // rule 7
    }
  } else {
    const int status = m.status_code;
    if (status / 100 == 1 || status == 204 || status == 304 || request_method == "HEAD") {
      // Rule 1: never a body, whatever the header fields say.
      m.framing = BodyFraming::kNone;
      // RFC 9110 section 15.2.2: after 101 the connection speaks the protocol
      // named in Upgrade.
      if (status == 101) end_of_stream_after_message_ = true;
    } else if (request_method == "CONNECT" && status / 100 == 2) {
      // Rule 2: a 2xx to CONNECT turns the connection into a tunnel.
      m.framing = BodyFraming::kNone;
      end_of_stream_after_message_ = true;
    } else if (saw_transfer_encoding_) {
      // Rule 4 for responses: without a final chunked coding (or in HTTP/1.0,
      // section 6.1) the body runs to the close.
      m.framing = chunked_is_final_ && m.minor_version >= 1 ? BodyFraming::kChunked
                                                            : BodyFraming::kUntilClose;
    } else if (m.has_content_length) {
      m.framing = BodyFraming::kContentLength;
    } else {
      m.framing = BodyFraming::kUntilClose;  // rule 8
    }
  }
  if (!type_.has_value()) type_ = m.type;  // the first good header block decides
  m.start_offset = message_start_;
  m.first_byte = stream.TimeAt(message_start_);
  m.body_size = m.framing == BodyFraming::kContentLength ? m.content_length : 0;
  ConsumeMessageBytes(stream, header_end);
  switch (m.framing) {
    case BodyFraming::kNone:
      return Emit();
    case BodyFraming::kContentLength:
      if (m.content_length == 0) return Emit();
      body_remaining_ = m.content_length;
      phase_ = Phase::kFixedBody;
      return std::nullopt;
    case BodyFraming::kChunked:
      line_scan_pos_ = 0;
      phase_ = Phase::kChunkSize;
      return std::nullopt;
    case BodyFraming::kUntilClose:
      phase_ = Phase::kUntilClose;
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<ParseState> MessageParser::StepFixedBody(ByteStream& stream) {
  // Body bytes are never looked at: consumed as they come, across gaps.
  while (body_remaining_ > 0) {
    if (stream.empty()) return ParseState::kNeedsMoreData;
    const uint64_t n = std::min(body_remaining_, stream.available());
    ConsumeMessageBytes(stream, n);
    body_remaining_ -= n;
  }
  if (phase_ == Phase::kFixedBody) return Emit();
  chunk_crlf_seen_ = 0;
  phase_ = Phase::kChunkDataEnd;
  return std::nullopt;
}

std::optional<ParseState> MessageParser::StepChunkSize(ByteStream& stream) {
  if (stream.empty()) return ParseState::kNeedsMoreData;
  // Without the chunk-size line the framing cannot be followed.
  if (stream.GapLength() > 0) return EmitCut(Completeness::kTruncated);
  const std::string_view data = stream.Contiguous();
  const size_t from = std::min(line_scan_pos_, data.size());
  const void* lf = std::memchr(data.data() + from, '\n', data.size() - from);
  if (lf == nullptr) {
    if (data.size() > kMaxChunkLineBytes) return EmitCut(Completeness::kBadFraming);
    if (stream.available() > data.size()) {
      ConsumeMessageBytes(stream, data.size());
      return EmitCut(Completeness::kTruncated);
    }
    line_scan_pos_ = data.size();
    return ParseState::kNeedsMoreData;
  }
  const size_t line_length = static_cast<size_t>(static_cast<const char*>(lf) - data.data());
  uint64_t chunk_size = 0;
  if (line_length > kMaxChunkLineBytes ||
      !ParseChunkSizeLine(data.substr(0, line_length), &chunk_size) ||
      current_.body_size + chunk_size > kMaxBodyBytes) {
    return EmitCut(Completeness::kBadFraming);
  }
  ConsumeMessageBytes(stream, line_length + 1);
  line_scan_pos_ = 0;
  if (chunk_size == 0) {
    trailer_bytes_ = 0;
    phase_ = Phase::kTrailers;  // last-chunk: the trailer section follows
    return std::nullopt;
  }
  current_.body_size += chunk_size;
  body_remaining_ = chunk_size;
  phase_ = Phase::kChunkData;
  return std::nullopt;
}

// The CRLF that ends chunk-data (RFC 9112 section 7.1).
std::optional<ParseState> MessageParser::StepChunkDataEnd(ByteStream& stream) {
  while (chunk_crlf_seen_ < 2) {
    if (stream.empty()) return ParseState::kNeedsMoreData;
    if (const uint64_t gap = stream.GapLength(); gap > 0) {
      // A write of "size CRLF data CRLF" whose copied prefix ended in the
      // data leaves this CRLF in the gap. The grammar fixes it at exactly two
      // bytes, so it is consumed as such; the chunk-size line that follows
      // must then be captured, or the message ends as truncated.
      const uint64_t n = std::min<uint64_t>(gap, 2 - chunk_crlf_seen_);
      ConsumeMessageBytes(stream, n);
      chunk_crlf_seen_ += static_cast<uint8_t>(n);
      continue;
    }
    const char c = stream.Contiguous().front();
    if (c == '\n') {
      chunk_crlf_seen_ = 2;  // LF, or a bare LF accepted like everywhere else
    } else if (c == '\r' && chunk_crlf_seen_ == 0) {
      chunk_crlf_seen_ = 1;
    } else {
      return EmitCut(Completeness::kBadFraming);
    }
    ConsumeMessageBytes(stream, 1);
  }
  line_scan_pos_ = 0;
  phase_ = Phase::kChunkSize;
  return std::nullopt;
}

// trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 section 7.1.2).
// Trailer fields are never kept; each line is consumed as soon as it is whole.
std::optional<ParseState> MessageParser::StepTrailers(ByteStream& stream) {
  for (;;) {
    if (stream.empty()) return ParseState::kNeedsMoreData;
    if (stream.GapLength() > 0) return EmitCut(Completeness::kTruncated);
    const std::string_view data = stream.Contiguous();
    const size_t from = std::min(line_scan_pos_, data.size());
    const void* lf = std::memchr(data.data() + from, '\n', data.size() - from);
    if (lf == nullptr) {
      if (trailer_bytes_ + data.size() > max_header_bytes_) {
        return EmitCut(Completeness::kBadFraming);
      }
      if (stream.available() > data.size()) {
        ConsumeMessageBytes(stream, data.size());
        return EmitCut(Completeness::kTruncated);
      }
      line_scan_pos_ = data.size();
      return ParseState::kNeedsMoreData;
    }
    const size_t length = static_cast<size_t>(static_cast<const char*>(lf) - data.data()) + 1;
    if (trailer_bytes_ + length > max_header_bytes_) {
      return EmitCut(Completeness::kBadFraming);
    }
    const bool empty_line = length == 1 || (length == 2 && data[0] == '\r');
    ConsumeMessageBytes(stream, length);
    trailer_bytes_ += length;
    line_scan_pos_ = 0;
    if (empty_line) return Emit();
  }
}

// Skips to the next plausible message start. Candidates are positions that
// follow a LF or begin a syscall's payload (most messages start with a new
// syscall); bytes in the middle of a line are never taken for a message start.
// Every byte is looked at once: what is passed over is consumed.
std::optional<ParseState> MessageParser::StepResync(ByteStream& stream) {
  if (resync_skip_ > 0) {
    const uint64_t n = std::min(resync_skip_, stream.available());
    if (n > 0) stream.Consume(n);
    resync_skip_ -= n;
    if (resync_skip_ > 0) return ParseState::kNeedsMoreData;
  }
  for (;;) {
    if (stream.empty()) return ParseState::kNeedsMoreData;
    if (const uint64_t gap = stream.GapLength(); gap > 0) {
      stream.Consume(gap);
      resync_position_is_candidate_ = true;  // data after a gap starts a syscall
      continue;
    }
    const std::string_view data = stream.Contiguous();
    const uint64_t base = stream.position();
    const bool gap_follows = stream.available() > data.size();
    auto probe = [&](size_t at) {
      const Plausibility p = LooksLikeStart(data.substr(at));
      // A prefix cut by a gap will never complete.
      return p == Plausibility::kMaybe && gap_follows ? Plausibility::kNo : p;
    };
    // Moves to a candidate whose probe said kYes or kMaybe.
    auto take = [&](size_t at, Plausibility p) {
      if (at > 0) stream.Consume(at);
      if (p == Plausibility::kYes) {
        resync_position_is_candidate_ = false;
        phase_ = Phase::kStart;
        return ParseState::kIgnored;
      }
      resync_position_is_candidate_ = true;  // a prefix: wait for more bytes
      return ParseState::kNeedsMoreData;
    };
    if (resync_position_is_candidate_ || IsEventStart(stream, base)) {
      if (const Plausibility p = probe(0); p != Plausibility::kNo) return take(0, p);
    }
    size_t next_line = NextLineStart(data, 0);
    size_t next_event = NextEventWithin(stream, base, 0, data.size());
    for (;;) {
      const size_t candidate = std::min(next_line, next_event);
      if (candidate >= data.size()) break;
      if (const Plausibility p = probe(candidate); p != Plausibility::kNo) {
        return take(candidate, p);
      }
      if (next_line == candidate) next_line = NextLineStart(data, candidate);
      if (next_event == candidate) next_event = NextEventWithin(stream, base, candidate, data.size());
    }
    resync_position_is_candidate_ = data.back() == '\n';
    stream.Consume(data.size());
  }
}

ParseState MessageParser::Finish(bool closed) {
  if (phase_ == Phase::kEndOfStream) return ParseState::kEndOfStream;
  ParseState state = ParseState::kEndOfStream;
  if (phase_ == Phase::kUntilClose && closed) {
    // RFC 9112 section 6.3 rule 8: the close is the end of this body.
    state = Emit();
  } else if (in_message() && closed) {
    state = ParseState::kInvalid;  // the peer closed in the middle of a message
  }
  if (state != ParseState::kSuccess) current_.Clear();
  phase_ = Phase::kStart;
  return state;
}

}  // namespace loupe::http1
