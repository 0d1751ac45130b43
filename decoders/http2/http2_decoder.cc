// The HTTP/2 ConnectionDecoder: one FrameReader and one HpackDecoder per
// direction, a stream table that collects what each stream's two halves
// carried, and the mapping of each finished stream to a SpanRecord: HTTP
// semantic conventions, or RPC conventions when the stream is gRPC.
//
// A stream is one exchange (RFC 9113 section 8.1): the client's half (request
// header block, DATA, optional trailers) and the server's (interim 1xx
// blocks, the response header block, DATA, trailers). Its span starts with
// the first byte of the request HEADERS frame and ends with the last byte of
// the frame that carried END_STREAM on the response (trailers included), or
// of a RST_STREAM. Streams still open when the connection ends give no span
// (their end is unknown) and count as unanswered requests.
//
// A stream is announced to the sink (SpanSink::OnExchangeStart) when its
// request header block is decoded, with the key its span will carry; a
// stream whose request headers were not seen (joined mid-connection) is not,
// and its span has no key.
#include "decoders/http2/http2_decoder.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "decoders/http2/frame_reader.h"
#include "decoders/http2/grpc.h"
#include "decoders/http2/hpack_decoder.h"
#include "decoders/model/route.h"
#include "decoders/model/trace_context.h"

namespace loupe::http2 {

namespace {

constexpr size_t kMaxTraceContextHeaders = 8;
constexpr size_t kMaxTraceContextValueBytes = 512;
constexpr size_t kMaxStatusMessageBytes = 256;
// Percent-encoding triples a byte at most: enough raw grpc-message for
// kMaxStatusMessageBytes decoded.
constexpr size_t kMaxRawStatusMessageBytes = 3 * kMaxStatusMessageBytes;
// Released streams kept for reuse (their strings keep their capacity).
constexpr size_t kMaxFreeStreams = 64;

// Trace-context headers are the only ones kept beyond what the span needs
// (for context linking). `name` is lower case and points to static storage.
struct TraceContextHeader {
  std::string_view name;
  std::string value;
};

bool EqualsLower(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c) != lower[i]) return false;
  }
  return true;
}

// Field names are lower case on the wire (RFC 9113 section 8.2.1); a peer
// that breaks the rule still meant the same header.
std::string_view TraceContextName(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "traceparent", "tracestate",        "b3",           "x-b3-traceid",
      "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"};
  for (const std::string_view known : kNames) {
    if (EqualsLower(name, known)) return known;
  }
  return {};
}

std::optional<int> ParseStatusCode(std::string_view v) {
  // RFC 9113 section 8.3.2: three digits.
  if (v.size() != 3) return std::nullopt;
  int code = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    code = code * 10 + (c - '0');
  }
  return code;
}

bool IsStandardMethod(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "DELETE" ||
         m == "CONNECT" || m == "OPTIONS" || m == "TRACE" || m == "PATCH";
}

// host [ ":" port ], host possibly an IP-literal in brackets (RFC 3986
// section 3.2.2), as in :authority (RFC 9113 section 8.3.1) or Host.
struct HostPort {
  std::string_view host;
  std::optional<uint16_t> port;
};

std::optional<uint16_t> ParsePort(std::string_view digits) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  uint32_t port = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

HostPort SplitHostPort(std::string_view authority) {
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);  // userinfo is deprecated (RFC 9113 section 8.3.1)
  }
  HostPort out;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      out.host = authority;
      return out;
    }
    out.host = authority.substr(1, close - 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() == ':') out.port = ParsePort(rest.substr(1));
    return out;
  }
  const size_t colon = authority.find(':');
  if (colon == std::string_view::npos || authority.find(':', colon + 1) != std::string_view::npos) {
    out.host = authority;
    return out;
  }
  out.host = authority.substr(0, colon);
  out.port = ParsePort(authority.substr(colon + 1));
  return out;
}

Direction RequestDirection(Role role) {
  return role == Role::kServer ? Direction::kIngress : Direction::kEgress;
}

// The values kept from one header block. Only these are ever stored:
// pseudo-headers, content-type, te, host, grpc-status, grpc-message and the
// trace-context allowlist; never authorization, cookies or anything else.
// (The headers asked for with --capture-headers are kept apart, in
// Half::captured, a redacted one as "REDACTED": see CapturingFieldCollector.)
struct BlockFields {
  std::string method;
  std::string path;
  std::string authority;
  std::string host;
  std::string content_type;
  std::string te;
  std::string grpc_message;
  std::optional<int> status;
  std::optional<int> grpc_status;
  std::vector<TraceContextHeader> trace_context;
  uint32_t unknown = 0;     // fields that could not be recovered
  uint64_t list_bytes = 0;  // RFC 9113 section 6.5.2 header list size
  bool over_bound = false;  // list_bytes passed max_header_bytes: later values dropped
  bool lost = false;        // the block itself was cut

  void Clear() {
    method.clear();
    path.clear();
    authority.clear();
    host.clear();
    content_type.clear();
    te.clear();
    grpc_message.clear();
    status.reset();
    grpc_status.reset();
    trace_context.clear();
    unknown = 0;
    list_bytes = 0;
    over_bound = false;
    lost = false;
  }
  bool incomplete() const { return unknown > 0 || over_bound || lost; }
};

// Whether a request-side block is the request's header block: it carries
// :method (RFC 9113 section 8.3.1), or may have and lost it. A complete block
// without pseudo-headers is trailers (section 8.1): after a mid-connection
// join the request's own header block was not seen.
bool IsRequestHead(const BlockFields& f) {
  return !f.method.empty() || !f.path.empty() || !f.authority.empty() || f.incomplete();
}

std::optional<TraceContext> RequestContext(const BlockFields& request) {
  if (request.trace_context.empty()) return std::nullopt;
  return ContextFromHeaders([&request](std::string_view name) -> std::optional<std::string_view> {
    for (const TraceContextHeader& h : request.trace_context) {
      if (h.name == name) return std::string_view(h.value);
    }
    return std::nullopt;
  });
}

class FieldCollector : public HeaderHandler {
 public:
  FieldCollector(BlockFields& fields, size_t max_list_bytes)
      : fields_(fields), max_list_bytes_(max_list_bytes) {}

  void OnField(std::string_view name, std::string_view value) override {
    // Counted like SETTINGS_MAX_HEADER_LIST_SIZE: name + value + 32. Past
    // the bound the block is still decoded (HPACK must stay in step) but
    // nothing more is kept.
    fields_.list_bytes += name.size() + value.size() + 32;
    if (fields_.list_bytes > max_list_bytes_) fields_.over_bound = true;
    if (fields_.over_bound) return;
    if (name.front() == ':') {
      if (name == ":method") {
        fields_.method.assign(value);
      } else if (name == ":path") {
        fields_.path.assign(value);
      } else if (name == ":authority") {
        fields_.authority.assign(value);
      } else if (name == ":status") {
        fields_.status = ParseStatusCode(value);
      }
      return;
    }
    if (name == "content-type") {
      fields_.content_type.assign(value);
    } else if (name == "grpc-status") {
      fields_.grpc_status = ParseGrpcStatus(value);
    } else if (name == "grpc-message") {
      fields_.grpc_message.assign(value.substr(0, kMaxRawStatusMessageBytes));
    } else if (name == "host") {
      fields_.host.assign(value);
    } else if (name == "te") {
      fields_.te.assign(value);
    } else if (const std::string_view tc = TraceContextName(name); !tc.empty()) {
      if (fields_.trace_context.size() < kMaxTraceContextHeaders &&
          value.size() <= kMaxTraceContextValueBytes) {
        fields_.trace_context.push_back(TraceContextHeader{tc, std::string(value)});
      }
    }
  }
  void OnUnknownField() override { ++fields_.unknown; }
  void OnRestart() override { fields_.Clear(); }

 private:
  BlockFields& fields_;
  size_t max_list_bytes_;
};

// With --capture-headers: a FieldCollector that also keeps the headers asked
// for, in `captured`. A class of its own so that without it the collector
// above runs exactly as it does with no capture at all.
class CapturingFieldCollector final : public FieldCollector {
 public:
  CapturingFieldCollector(BlockFields& fields, size_t max_list_bytes, const HttpCapture& capture,
                          std::vector<CapturedHeader>& captured)
      : FieldCollector(fields, max_list_bytes),
        fields_(fields),
        capture_(capture),
        captured_(captured) {}

  void OnField(std::string_view name, std::string_view value) override {
    FieldCollector::OnField(name, value);
    // Within the header list bound only, as every other value kept.
    if (fields_.over_bound || name.front() == ':') return;
    if (const int index = capture_.Find(name); index >= 0) {
      capture_.Add(captured_, static_cast<uint32_t>(index), value);
    }
  }
  void OnRestart() override {
    FieldCollector::OnRestart();
    captured_.clear();
  }

 private:
  BlockFields& fields_;
  const HttpCapture& capture_;
  std::vector<CapturedHeader>& captured_;
};

// What one side of a stream carried.
struct Half {
  bool started = false;       // a header block (or the HTTP/1.1 upgrade) began it
  bool headers_done = false;  // the request / final response header block is in
  bool ended = false;         // END_STREAM
  bool incomplete_headers = false;
  uint64_t start_ns = 0;  // first byte of its first HEADERS frame (span time rules)
  uint32_t tid = 0;
  uint64_t end_ns = 0;  // last byte of the frame that carried END_STREAM
  BlockFields fields;   // of the request / final response header block, trailers merged
  std::vector<CapturedHeader> captured;  // of that block (DecoderOptions::http_capture)
  bool has_data = false;
  uint64_t body_bytes = 0;  // DATA payload bytes, padding excluded, gaps included
  MessageCounter messages;

  void Clear() {
    started = headers_done = ended = incomplete_headers = has_data = false;
    start_ns = end_ns = body_bytes = 0;
    tid = 0;
    fields.Clear();
    captured.clear();
    messages.Clear();
  }
};

// What a stream was announced with (or, after an h2c upgrade, what the
// HTTP/1 decoder announced its request with), fixed then so that its span
// says the same even if the connection's role is learned in between.
struct Announcement {
  Direction request_dir = Direction::kIngress;
  ExchangeKey key;  // seq 0: the upgrade request was not announced
  SpanKind kind = SpanKind::kServer;
  std::optional<TraceContext> context;
};

struct Stream {
  uint32_t id = 0;
  std::array<Half, kDirections> half;  // by Direction
  std::optional<Announcement> announced;
  void Clear() {
    id = 0;
    for (Half& h : half) h.Clear();
    announced.reset();
  }
};

struct Reset {
  uint32_t error_code = 0;
  bool code_known = true;
  uint64_t end_ns = 0;
  // Not a RST_STREAM: the process died serving the stream
  // (DecodeContext::abort_reason); the error type and status message.
  std::string_view abort_reason;
};

class Http2Decoder final : public ConnectionDecoder, private FrameVisitor {
 public:
  Http2Decoder(const ConnInfo& conn, const DecoderOptions& options,
               const ProtocolUpgrade* upgrade)
      : options_(options),
        readers_{FrameReader(options.max_header_bytes, upgrade != nullptr),
                 FrameReader(options.max_header_bytes, upgrade != nullptr)},
        upgraded_(upgrade != nullptr) {
    if (options_.http_capture == nullptr) options_.http_capture = HttpCapture::Default();
    if (options_.http_capture->captures_headers()) {
      header_capture_ = options_.http_capture.get();
      collector_ = &capturing_collector_.emplace(scratch_, options_.max_header_bytes,
                                                 *header_capture_, scratch_captured_);
    }
    if (upgrade != nullptr && upgrade->has_request) {
      // RFC 7540 section 3.2: the HTTP/1.1 request that asked for the
      // upgrade is stream 1, half-closed on the client's side; its response
      // comes in HTTP/2.
      const Direction d = upgrade->request_direction;
      inferred_request_dir_ = d;
      Stream& s = *Create(1);
      Half& h = s.half[Index(d)];
      h.started = h.headers_done = h.ended = true;
      h.start_ns = upgrade->request_start_ns;
      h.end_ns = upgrade->request_start_ns;
      h.tid = upgrade->request_tid;
      h.fields.method = upgrade->method;
      h.fields.path = upgrade->target;
      h.fields.authority = upgrade->authority;
      h.captured = upgrade->request_headers;
      h.has_data = upgrade->request_body_size > 0;
      h.body_bytes = upgrade->request_body_size;
      max_stream_id_ = 1;
      // Announced by the HTTP/1 decoder already: the same key, no second
      // announcement; the connection's keys continue after it.
      s.announced = Announcement{d, upgrade->request_key, SpanKindFor(conn.role, d),
                                 upgrade->request_context};
      last_seq_ = upgrade->request_key.seq;
    }
  }

  void OnData(Direction dir, ByteStream& stream, DecodeContext& ctx) override {
    ctx_ = &ctx;
    Drain(dir, stream);
    ctx_ = nullptr;
  }

  void OnStreamReset(Direction dir, DecodeContext& ctx) override {
    ctx_ = &ctx;
    dir_ = dir;
    readers_[Index(dir)].Reset(*this);
    ctx_ = nullptr;
  }

  void OnClose(bool /*closed*/, std::span<ByteStream, kDirections> streams,
               DecodeContext& ctx) override {
    ctx_ = &ctx;
    // Requests first: a response that completes a stream finds its request.
    const Direction first = RequestDir().value_or(Direction::kIngress);
    Drain(first, streams[Index(first)]);
    Drain(Opposite(first), streams[Index(Opposite(first))]);
    // HTTP/2 has no close-delimited bodies: a stream still open did not
    // finish, and when it would have is unknown. No span for it (as for an
    // HTTP/1 request without a response), whether or not its response had
    // begun.
    for (auto& [id, stream] : streams_) {
      const std::optional<Direction> req = RequestDirFor(*stream);
      if (req.has_value() && stream->half[Index(*req)].headers_done && !ctx.abort_reason.empty() &&
          SpanKindFor(ctx.conn.role, *req) == SpanKind::kServer) {
        // The process died serving it (ConnTracker::EndProcess).
        Reset abort;
        abort.end_ns = ctx.abort_ns;
        abort.abort_reason = ctx.abort_reason;
        EmitSpan(*stream, *req, &abort);
        ++ctx.stats.aborted_requests;
      } else if (req.has_value() && stream->half[Index(*req)].headers_done) {
        ++ctx.stats.unanswered_requests;
      } else if (req.has_value() && stream->half[Index(Opposite(*req))].started) {
        ++ctx.stats.unmatched_responses;
      }
    }
    streams_.clear();
    ctx_ = nullptr;
  }

 private:
  ProtocolStats& stats() { return ctx_->stats; }

  void Drain(Direction dir, ByteStream& stream) {
    dir_ = dir;
    FrameReader& reader = readers_[Index(dir)];
    for (;;) {
      switch (reader.Parse(stream, *this)) {
        case ParseState::kSuccess:
        case ParseState::kIgnored:
          continue;
        case ParseState::kInvalid:
          ++stats().parse_errors;
          continue;
        case ParseState::kNeedsMoreData:
        case ParseState::kEndOfStream:
          return;
      }
    }
  }

  // --- Roles ---------------------------------------------------------------
  // The direction that carries requests: from ConnInfo when the kernel knows
  // the role (connect/accept), else from what the traffic showed (the client
  // preface, the server's SETTINGS preface, the upgrade, pseudo-headers).
  std::optional<Direction> RequestDir() const {
    if (ctx_ != nullptr && ctx_->conn.role != Role::kUnknown) {
      return RequestDirection(ctx_->conn.role);
    }
    return inferred_request_dir_;
  }
  void InferRequestDir(Direction d) {
    if (!inferred_request_dir_.has_value()) inferred_request_dir_ = d;
  }
  std::optional<Direction> RequestDirFor(const Stream& s) const {
    if (const std::optional<Direction> d = RequestDir()) return d;
    for (const Direction d : {Direction::kIngress, Direction::kEgress}) {
      const BlockFields& f = s.half[Index(d)].fields;
      if (!f.method.empty()) return d;
      if (f.status.has_value()) return Opposite(d);
    }
    return std::nullopt;
  }

  // --- FrameVisitor --------------------------------------------------------
  void OnClientPreface() override {
    InferRequestDir(dir_);
    // The server's frames are bounded by the client's settings, which follow
    // the preface; after an upgrade they were in HTTP2-Settings, unseen.
    if (!upgraded_) readers_[Index(Opposite(dir_))].SetFrameSizeKnown();
  }
  void OnServerPreface() override {
    InferRequestDir(Opposite(dir_));
    readers_[Index(Opposite(dir_))].SetFrameSizeKnown();
  }
  void OnJoinedMidStream() override {
    // ProtocolStats::hpack_recoveries counts this state: the sender's HPACK
    // dynamic table holds entries we never saw (see hpack_decoder.h).
    hpack_[Index(dir_)].ForgetTable();
    ++stats().hpack_recoveries;
  }
  void OnFramingLost() override {
    ++stats().resyncs;
    // Skipped frames may have been header blocks that changed the table.
    hpack_[Index(dir_)].ForgetTable();
    ++stats().hpack_recoveries;
    // ... or DATA of any stream: message counts become lower bounds.
    for (auto& [id, stream] : streams_) stream->half[Index(dir_)].messages.MarkLost();
  }

  void OnDataChunk(const FrameHeader& header, std::string_view captured, uint64_t gap) override {
    Stream* s = Find(header.stream_id);
    if (s == nullptr) return;
    Half& h = s->half[Index(dir_)];
    h.has_data = true;
    h.body_bytes += captured.size() + gap;
    if (gap > 0) {
      h.messages.Skip(gap);
    } else {
      h.messages.Feed(captured);
    }
  }

  void OnHeaderBlock(const HeaderBlock& block) override {
    const int d = Index(dir_);
    scratch_.Clear();
    if (header_capture_ != nullptr) scratch_captured_.clear();
    FieldCollector& collector = *collector_;
    if (block.status == BlockStatus::kComplete) {
      if (hpack_[d].Decode(block.bytes, collector) == HpackDecoder::Outcome::kTableLost) {
        ++stats().hpack_recoveries;
      }
    } else {
      // Part of the block is missing, or it is beyond our bound: what it
      // inserted into the table is unknown. Recover what precedes the loss.
      hpack_[d].DecodeCut(block.bytes, collector);
      scratch_.lost = true;
      ++stats().hpack_recoveries;
      ++stats().truncated;
    }
    stats().hpack_unknown_fields += scratch_.unknown;

    // PUSH_PROMISE blocks only matter for HPACK; pushed responses (even
    // stream ids, section 5.1.1) are not exchanges anyone asked for.
    if (block.type == kPushPromise || block.stream_id % 2 == 0) return;
    if (!scratch_.method.empty()) {
      InferRequestDir(dir_);
    } else if (scratch_.status.has_value()) {
      InferRequestDir(Opposite(dir_));
    }
    Stream* s = FindOrCreate(block.stream_id);
    if (s == nullptr) return;
    Half& h = s->half[d];
    if (!h.started) {
      h.started = true;
      // A blocking read's entry says when the reader began waiting, not when
      // the bytes came: received bytes count from the syscall's exit.
      h.start_ns = dir_ == Direction::kIngress ? block.first_byte.end_ns
                                               : block.first_byte.start_ns;
      h.tid = block.first_byte.tid;
    }
    if (scratch_.incomplete()) h.incomplete_headers = true;
    if (!h.headers_done) {
      // Interim responses (1xx, section 8.1) precede the final one.
      const bool interim = scratch_.status.has_value() && *scratch_.status >= 100 &&
                           *scratch_.status < 200;
      if (!interim) {
        std::swap(h.fields, scratch_);
        if (header_capture_ != nullptr) std::swap(h.captured, scratch_captured_);
        h.headers_done = true;
        ++stats().messages;
        if (RequestDirFor(*s) == dir_ && IsRequestHead(h.fields)) Announce(*s);
      }
    } else {
      // Trailers (section 8.1): only the gRPC status is of interest.
      if (scratch_.grpc_status.has_value()) h.fields.grpc_status = scratch_.grpc_status;
      if (!scratch_.grpc_message.empty()) std::swap(h.fields.grpc_message, scratch_.grpc_message);
    }
    if (block.end_stream) {
      h.ended = true;
      h.end_ns = block.last_byte.end_ns;
      MaybeFinish(*s);
    }
  }

  void OnFrame(const Frame& frame) override {
    const FrameHeader& header = frame.header;
    switch (header.type) {
      case kData:
        if (header.flags & kFlagEndStream) {
          if (Stream* s = Find(header.stream_id)) {
            Half& h = s->half[Index(dir_)];
            h.ended = true;
            h.end_ns = frame.last_byte.end_ns;
            MaybeFinish(*s);
          }
        }
        break;
      case kRstStream:
        if (Stream* s = Find(header.stream_id)) {
          OnReset(*s, Reset{frame.error_code, !frame.fields_lost, frame.last_byte.end_ns});
        }
        break;
      case kSettings:
        // SETTINGS_HEADER_TABLE_SIZE needs no action: see kMaxDynamicTableSize.
        if ((header.flags & kFlagAck) == 0 && frame.max_frame_size.has_value()) {
          readers_[Index(Opposite(dir_))].AllowFrameSize(*frame.max_frame_size);
        }
        break;
      case kGoaway:
        if (!frame.fields_lost) OnGoaway(frame.last_stream_id);
        break;
      default:
        break;  // PRIORITY, PING, WINDOW_UPDATE, unknown types
    }
  }

  // --- Streams -------------------------------------------------------------
  Stream* Find(uint32_t id) {
    if (id % 2 == 0) return nullptr;
    const auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  Stream* FindOrCreate(uint32_t id) {
    if (Stream* s = Find(id)) return s;
    // Client stream ids only grow (section 5.1.1): a block for an id at or
    // below the highest seen belongs to a stream that is over (or was
    // dropped), e.g. request trailers after an early response.
    if (id <= max_stream_id_) return nullptr;
    max_stream_id_ = id;
    if (streams_.size() >= kMaxTrackedStreams) {
      ++stats().dropped_requests;
      return nullptr;
    }
    return Create(id);
  }

  Stream* Create(uint32_t id) {
    std::unique_ptr<Stream> s;
    if (free_.empty()) {
      s = std::make_unique<Stream>();
    } else {
      s = std::move(free_.back());
      free_.pop_back();
      s->Clear();
    }
    s->id = id;
    Stream* raw = s.get();
    streams_.emplace(id, std::move(s));
    return raw;
  }

  void Release(uint32_t id) {
    const auto it = streams_.find(id);
    if (it == streams_.end()) return;
    if (free_.size() < kMaxFreeStreams) free_.push_back(std::move(it->second));
    streams_.erase(it);
  }

  void MaybeFinish(Stream& s) {
    const std::optional<Direction> req = RequestDirFor(s);
    if (!req.has_value()) return;
    if (!s.half[Index(Opposite(*req))].ended) return;
    if (s.half[Index(*req)].headers_done) {
      EmitSpan(s, *req, nullptr);
    } else {
      ++stats().unmatched_responses;  // its request came before we joined
    }
    Release(s.id);
  }

  void OnReset(Stream& s, const Reset& reset) {
    const std::optional<Direction> req = RequestDirFor(s);
    if (req.has_value() && s.half[Index(*req)].headers_done) {
      EmitSpan(s, *req, &reset);
    } else if (req.has_value() && s.half[Index(Opposite(*req))].started) {
      ++stats().unmatched_responses;
    }
    Release(s.id);
  }

  // Section 6.8: streams above last_stream_id, opened by the receiver of a
  // GOAWAY, were not and will not be processed. Only a server's GOAWAY
  // concerns requests.
  void OnGoaway(uint32_t last_stream_id) {
    const std::optional<Direction> req = RequestDir();
    if (!req.has_value() || dir_ != Opposite(*req)) return;
    std::vector<uint32_t> refused;
    for (const auto& [id, stream] : streams_) {
      if (id > last_stream_id) refused.push_back(id);
    }
    for (const uint32_t id : refused) {
      if (streams_.at(id)->half[Index(*req)].headers_done) ++stats().unanswered_requests;
      Release(id);
    }
  }

  // --- Spans ---------------------------------------------------------------
  // SpanSink::OnExchangeStart for a stream whose request header block (in
  // direction dir_) was just decoded: the next key of the connection, and
  // the kind, thread and start time its span will have.
  void Announce(Stream& s) {
    if (s.announced.has_value()) return;
    const ConnInfo& conn = ctx_->conn;
    const Half& rq = s.half[Index(dir_)];
    ExchangeStart start;
    start.key = ExchangeKey{conn.conn_id, ++last_seq_, s.id};
    start.kind = SpanKindFor(conn.role, dir_);
    start.tgid = conn.tgid;
    start.tid = rq.tid;
    start.start_mono_ns = rq.start_ns;
    start.tuple = conn.tuple;
    start.context = RequestContext(rq.fields);
    ctx_->sink.OnExchangeStart(start);
    s.announced = Announcement{dir_, start.key, start.kind, std::move(start.context)};
  }

  const std::string& AddressString(const IpAddress& addr, bool local) {
    CachedAddress& cache = local ? local_address_ : remote_address_;
    if (!cache.valid || !(cache.addr == addr)) {
      cache.addr = addr;
      cache.text = addr.ToString();
      cache.valid = true;
    }
    return cache.text;
  }

  void SetServerAndPeer(const BlockFields& request, bool server_span, bool client_attributes,
                        Attributes& attrs) {
    const ConnInfo& conn = ctx_->conn;
    // server.*: :authority (section 8.3.1), or a Host field; else the server
    // end of the socket.
    const Endpoint& server_end = server_span ? conn.tuple.local : conn.tuple.remote;
    const bool have_socket = conn.tuple.local.addr.family != 0;
    HostPort authority;
    if (!request.authority.empty()) {
      authority = SplitHostPort(request.authority);
    } else if (!request.host.empty()) {
      authority = SplitHostPort(request.host);
    }
    if (!authority.host.empty()) {
      attrs.Set("server.address", std::string(authority.host));
    } else if (have_socket) {
      attrs.Set("server.address", AddressString(server_end.addr, server_span));
    }
    if (authority.port.has_value()) {
      attrs.Set("server.port", static_cast<int64_t>(*authority.port));
    } else if (have_socket) {
      attrs.Set("server.port", static_cast<int64_t>(server_end.port));
    }
    if (have_socket) {
      const std::string& peer = AddressString(conn.tuple.remote.addr, /*local=*/false);
      if (server_span && client_attributes) {
        attrs.Set("client.address", peer);
        attrs.Set("client.port", static_cast<int64_t>(conn.tuple.remote.port));
      }
      attrs.Set("network.peer.address", peer);
      attrs.Set("network.peer.port", static_cast<int64_t>(conn.tuple.remote.port));
    }
    attrs.Set("network.protocol.version", "2");
  }

  void EmitSpan(const Stream& s, Direction request_dir, const Reset* reset) {
    const ConnInfo& conn = ctx_->conn;
    const Half& rq = s.half[Index(request_dir)];
    const Half& rs = s.half[Index(Opposite(request_dir))];
    SpanRecord span;
    // What the stream was announced with, unless its request side was only
    // known later (then there was no announcement: no key).
    if (s.announced.has_value() && s.announced->request_dir == request_dir) {
      span.kind = s.announced->kind;
      span.key = s.announced->key;
      span.context = s.announced->context;
    } else {
      span.kind = SpanKindFor(conn.role, request_dir);
      span.context = RequestContext(rq.fields);
    }
    span.start_mono_ns = rq.start_ns;
    span.end_mono_ns = std::max(reset != nullptr ? reset->end_ns : rs.end_ns, span.start_mono_ns);
    span.tgid = conn.tgid;
    span.tid = rq.tid;
    span.conn_id = conn.conn_id;
    span.tuple = conn.tuple;
    const bool grpc = IsGrpcContentType(rq.fields.content_type) ||
                      IsGrpcContentType(rs.fields.content_type) ||
                      rs.fields.grpc_status.has_value();
    if (grpc) {
      FillGrpc(rq, rs, reset, span);
    } else {
      FillHttp(rq, rs, reset, span);
    }
    // Some header of the exchange could not be decoded (see hpack_decoder.h):
    // what the span lacks is unknown, not absent.
    if (rq.incomplete_headers || rs.incomplete_headers) {
      span.attributes.Set("loupe.http2.headers_incomplete", true);
    }
    ctx_->sink.OnSpan(std::move(span));
    ++stats().records;
  }

  void FillHttp(const Half& rq, const Half& rs, const Reset* reset, SpanRecord& span) {
    const bool server_span = span.kind == SpanKind::kServer;
    const std::string& method = rq.fields.method;
    const bool standard = IsStandardMethod(method);
    Attributes& attrs = span.attributes;
    attrs.Reserve(16);
    if (!method.empty()) {
      attrs.Set("http.request.method", standard ? method : std::string("_OTHER"));
      if (!standard) attrs.Set("http.request.method_original", method);
    }
    // "{method} {route}"; "HTTP" for a non-standard or unknown method;
    // CONNECT carries no :path (section 8.5).
    const std::string_view name_method = standard ? std::string_view(method) : "HTTP";
    if (method == "CONNECT" || rq.fields.path.empty()) {
      span.name = std::string(name_method);
    } else {
      std::string route = NormalizeRoute(rq.fields.path);
      span.name.reserve(name_method.size() + 1 + route.size());
      span.name.append(name_method).append(" ").append(route);
      const SplitTarget split = SplitRequestTarget(rq.fields.path);
      attrs.Set("url.path", split.path.empty() ? std::string("/") : std::string(split.path));
      if (ctx_->options.capture_url_query && !split.query.empty()) {
        attrs.Set("url.query", options_.http_capture->RedactQuery(split.query));
      }
      attrs.Set("http.route", std::move(route));
    }
    if (rs.fields.status.has_value()) {
      attrs.Set("http.response.status_code", static_cast<int64_t>(*rs.fields.status));
    }
    SetServerAndPeer(rq.fields, server_span, /*client_attributes=*/true, attrs);
    if (rq.has_data) attrs.Set("http.request.body.size", static_cast<int64_t>(rq.body_bytes));
    if (rs.has_data) attrs.Set("http.response.body.size", static_cast<int64_t>(rs.body_bytes));
    if (header_capture_ != nullptr) {
      header_capture_->SetAttributes(rq.captured, HeaderSide::kRequest, attrs);
      header_capture_->SetAttributes(rs.captured, HeaderSide::kResponse, attrs);
    }
    if (reset != nullptr) {
      // The exchange was cut short (section 6.4): an error on both sides.
      SetResetError(*reset, span);
      return;
    }
    // As for HTTP/1: 4xx is the client's fault, an error only from the
    // client's side; 5xx is an error on both.
    if (rs.fields.status.has_value()) {
      const int status = *rs.fields.status;
      if (status >= 500 || (!server_span && status >= 400)) {
        span.status = StatusCode::kError;
        attrs.Set("error.type", std::to_string(status));
      }
    }
  }

  void FillGrpc(const Half& rq, const Half& rs, const Reset* reset, SpanRecord& span) {
    const bool server_span = span.kind == SpanKind::kServer;
    Attributes& attrs = span.attributes;
    attrs.Reserve(14);
    attrs.Set("rpc.system", "grpc");
    if (const std::optional<GrpcMethod> m = ParseGrpcPath(rq.fields.path)) {
      span.name.assign(rq.fields.path, 1);  // "package.Service/Method"
      attrs.Set("rpc.service", std::string(m->service));
      attrs.Set("rpc.method", std::string(m->method));
    } else {
      span.name = "grpc";  // the method is unknown (or not a gRPC path)
    }
    // grpc-status from the trailers or a trailers-only response; without
    // one, a non-200 :status maps to the code a gRPC client reports.
    std::optional<int> code = rs.fields.grpc_status;
    if (!code.has_value() && reset == nullptr && rs.fields.status.has_value() &&
        *rs.fields.status != 200) {
      code = GrpcStatusFromHttp(*rs.fields.status);
    }
    if (code.has_value()) attrs.Set("rpc.grpc.status_code", static_cast<int64_t>(*code));
    SetServerAndPeer(rq.fields, server_span, /*client_attributes=*/false, attrs);
    if (header_capture_ != nullptr) {
      header_capture_->SetAttributes(rq.captured, HeaderSide::kGrpcRequest, attrs);
      header_capture_->SetAttributes(rs.captured, HeaderSide::kGrpcResponse, attrs);
    }
    // Message counts (no standard attribute exists): gRPC length-prefixed
    // messages in each direction's DATA.
    attrs.Set("rpc.grpc.request.messages", static_cast<int64_t>(rq.messages.count()));
    attrs.Set("rpc.grpc.response.messages", static_cast<int64_t>(rs.messages.count()));
    if (rq.messages.incomplete() || rs.messages.incomplete()) {
      attrs.Set("rpc.grpc.messages_incomplete", true);
      ++stats().truncated;
    }
    if (code.has_value()) {
      // RPC conventions: a client span fails with any non-OK status; a
      // server span only with codes that mean the server failed.
      const bool error = server_span ? IsServerError(*code) : *code != 0;
      if (error) {
        span.status = StatusCode::kError;
        attrs.Set("error.type", std::string(GrpcStatusName(*code)));
        span.status_message = DecodeGrpcMessage(rs.fields.grpc_message, kMaxStatusMessageBytes);
      }
    } else if (reset != nullptr) {
      SetResetError(*reset, span);
    }
  }

  static void SetResetError(const Reset& reset, SpanRecord& span) {
    span.status = StatusCode::kError;
    if (!reset.abort_reason.empty()) {
      span.status_message = std::string(reset.abort_reason);
      span.attributes.Set("error.type", std::string(reset.abort_reason));
      return;
    }
    span.attributes.Set("error.type",
                        std::string(reset.code_known ? ErrorCodeName(reset.error_code)
                                                     : std::string_view("RST_STREAM")));
  }

  struct CachedAddress {
    IpAddress addr;
    std::string text;
    bool valid = false;
  };

  DecoderOptions options_;  // http_capture never null
  // options_.http_capture when it captures header values, else null.
  const HttpCapture* header_capture_ = nullptr;
  std::array<FrameReader, kDirections> readers_;
  std::array<HpackDecoder, kDirections> hpack_;
  bool upgraded_ = false;
  std::optional<Direction> inferred_request_dir_;
  absl::flat_hash_map<uint32_t, std::unique_ptr<Stream>> streams_;
  std::vector<std::unique_ptr<Stream>> free_;
  uint32_t max_stream_id_ = 0;
  uint64_t last_seq_ = 0;  // the connection's last ExchangeKey::seq
  BlockFields scratch_;  // the header block being decoded
  std::vector<CapturedHeader> scratch_captured_;  // its captured headers
  // What collects a block's fields into scratch_: plain_collector_, or with
  // --capture-headers capturing_collector_, which fills scratch_captured_ too.
  FieldCollector plain_collector_{scratch_, options_.max_header_bytes};
  std::optional<CapturingFieldCollector> capturing_collector_;
  FieldCollector* collector_ = &plain_collector_;
  CachedAddress local_address_;
  CachedAddress remote_address_;
  // Set for the duration of a ConnectionDecoder call (the visitor callbacks
  // run inside it).
  DecodeContext* ctx_ = nullptr;
  Direction dir_ = Direction::kIngress;
};

}  // namespace

std::unique_ptr<ConnectionDecoder> CreateDecoder(const ConnInfo& conn,
                                                 const DecoderOptions& options) {
  return std::make_unique<Http2Decoder>(conn, options, nullptr);
}

std::unique_ptr<ConnectionDecoder> CreateUpgradedDecoder(const ConnInfo& conn,
                                                         const DecoderOptions& options,
                                                         const ProtocolUpgrade& upgrade) {
  return std::make_unique<Http2Decoder>(conn, options, &upgrade);
}

}  // namespace loupe::http2
