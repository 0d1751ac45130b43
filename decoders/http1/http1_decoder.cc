// The HTTP/1 ConnectionDecoder: one MessageParser per direction, a stitcher
// that pairs each final response with the oldest unanswered request (HTTP/1
// answers in order, pipelined or not: RFC 9112 section 9.3.2), and the
// mapping of each exchange to a SpanRecord with OpenTelemetry HTTP semantic
// convention attributes. Each request is announced to the sink
// (SpanSink::OnExchangeStart) as soon as its header block is parsed, before
// any response can answer it; its span later carries the same key.
#include "decoders/http1/http1_decoder.h"

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "decoders/http1/http1_parser.h"
#include "decoders/model/route.h"
#include "decoders/model/trace_context.h"

namespace loupe::http1 {

namespace {

// Who a request's exchange belongs to, fixed when the request is announced
// so that its span says the same even if the connection's role is learned in
// between.
struct Exchange {
  ExchangeKey key;  // seq 0: not announced (the span carries no key)
  SpanKind kind = SpanKind::kServer;
  std::optional<TraceContext> context;
};

// Requests waiting for their response, in arrival order. A ring of Message
// slots that keep their string capacity, so a keep-alive connection reaches
// a steady state without allocating per request.
class RequestQueue {
 public:
  struct Entry {
    Message message;
    Direction dir = Direction::kIngress;
    Exchange exchange;
  };

  bool empty() const { return count_ == 0; }
  size_t size() const { return count_; }
  Entry& front() { return slots_[head_]; }
  const Entry& front() const { return slots_[head_]; }

  // Copies `message` into a free slot, whose strings keep their capacity.
  void Push(const Message& message, Direction dir, Exchange&& exchange) {
    if (count_ == slots_.size()) Grow();
    Entry& slot = slots_[(head_ + count_) % slots_.size()];
    slot.message = message;
    slot.dir = dir;
    slot.exchange = std::move(exchange);
    ++count_;
  }
  void Pop() {
    head_ = (head_ + 1) % slots_.size();
    --count_;
  }
  void Clear() {
    head_ = 0;
    count_ = 0;
  }

 private:
  void Grow() {
    std::vector<Entry> grown(std::max<size_t>(4, slots_.size() * 2));
    for (size_t i = 0; i < count_; ++i) {
      grown[i] = std::move(slots_[(head_ + i) % slots_.size()]);
    }
    slots_ = std::move(grown);
    head_ = 0;
  }

  std::vector<Entry> slots_;
  size_t head_ = 0;
  size_t count_ = 0;
};

// host [ ":" port ], host possibly an IP-literal in brackets (RFC 9110
// section 7.2, RFC 3986 section 3.2.2).
struct HostPort {
  std::string_view host;
  std::optional<uint16_t> port;
};

std::optional<uint16_t> ParsePort(std::string_view digits) {
  if (digits.empty() || digits.size() > 5) return std::nullopt;
  uint32_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

HostPort SplitHostPort(std::string_view authority) {
  // userinfo never belongs to Host, but CONNECT targets and sloppy clients...
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
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
    out.host = authority;  // no port, or a bare IPv6 address
    return out;
  }
  out.host = authority.substr(0, colon);
  out.port = ParsePort(authority.substr(colon + 1));
  return out;
}

Direction RequestDirection(Role role) {
  return role == Role::kServer ? Direction::kIngress : Direction::kEgress;
}

// A blocking read's entry time says when the reader started waiting, not
// when the bytes came: received messages start at the syscall's exit, sent
// ones at the write's entry.
uint64_t StartTime(const Message& request, Direction request_dir) {
  return request_dir == Direction::kIngress ? request.first_byte.end_ns
                                            : request.first_byte.start_ns;
}

std::optional<TraceContext> RequestContext(const Message& request) {
  if (request.trace_context.empty()) return std::nullopt;
  return ContextFromHeaders([&request](std::string_view name) -> std::optional<std::string_view> {
    for (const TraceContextHeader& h : request.trace_context) {
      if (h.name == name) return std::string_view(h.value);
    }
    return std::nullopt;
  });
}

// Whether an Upgrade field value (a comma-separated list of protocols, RFC
// 9110 section 7.8) offers "h2c": HTTP/2 over cleartext (RFC 7540 section
// 3.2).
bool OffersH2c(std::string_view upgrade) {
  while (!upgrade.empty()) {
    const size_t comma = upgrade.find(',');
    std::string_view token = upgrade.substr(0, comma);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (token.size() == 3 && (token[0] | 0x20) == 'h' && token[1] == '2' && (token[2] | 0x20) == 'c') {
      return true;
    }
    if (comma == std::string_view::npos) break;
    upgrade.remove_prefix(comma + 1);
  }
  return false;
}

class Http1Decoder final : public ConnectionDecoder {
 public:
  Http1Decoder(const ConnInfo& conn, const DecoderOptions& options)
      : capture_(options.http_capture != nullptr ? options.http_capture : HttpCapture::Default()),
        parsers_{MessageParser(options.max_header_bytes, std::nullopt, HeaderCapture()),
                 MessageParser(options.max_header_bytes, std::nullopt, HeaderCapture())} {
    SyncRole(conn);
  }

  void OnData(Direction dir, ByteStream& stream, DecodeContext& ctx) override {
    SyncRole(ctx.conn);
    Drain(dir, stream, ctx);
  }

  void OnStreamReset(Direction dir, DecodeContext& ctx) override {
    MessageParser& parser = parsers_[Index(dir)];
    const Message* partial = parser.partial_message();
    const bool answered = partial != nullptr && IsAnsweredPartial(*partial, dir);
    // A message whose bytes were dropped under the parser is cut by a loss.
    if (parser.in_message() && !answered) ++ctx.stats.truncated;
    if (answered) answered_partial_.reset();
    // An announced partial request that is lost gets no span.
    if (announced_partial_.has_value() && announced_partial_->dir == dir) {
      announced_partial_.reset();
    }
    parser.Reset();
  }

  void OnClose(bool closed, std::span<ByteStream, kDirections> streams,
               DecodeContext& ctx) override {
    SyncRole(ctx.conn);
    // Requests first, so that the last responses find them.
    const Direction first = request_dir_.value_or(
        ctx.conn.role == Role::kUnknown ? Direction::kIngress : RequestDirection(ctx.conn.role));
    const std::array<Direction, kDirections> order = {first, Opposite(first)};
    for (Direction dir : order) Drain(dir, streams[Index(dir)], ctx);
    // h2c: the rest of both streams (and the close) belong to HTTP/2, whose
    // decoder the tracker creates next.
    if (Upgraded(ctx)) return;
    for (Direction dir : order) {
      MessageParser& parser = parsers_[Index(dir)];
      const Message* partial = parser.partial_message();
      // A request already answered early (417 before its body) is not an
      // error if the client then gave up sending the body.
      const bool answered = partial != nullptr && IsAnsweredPartial(*partial, dir);
      switch (parser.Finish(closed)) {
        case ParseState::kSuccess:
          OnMessage(dir, parser.message(), ctx);
          break;
        case ParseState::kInvalid:
          if (!answered) ++ctx.stats.parse_errors;  // a truncated stream
          break;
        default:
          break;
      }
    }
    if (!ctx.abort_reason.empty()) {
      // The process died while serving these (ConnTracker::EndProcess): the
      // server spans end there, as errors.
      for (; !queue_.empty(); queue_.Pop()) {
        const RequestQueue::Entry& request = queue_.front();
        if (request.exchange.kind != SpanKind::kServer) {
          ++ctx.stats.unanswered_requests;
          continue;
        }
        EmitSpan(request.message, request.dir, request.exchange, nullptr, ctx);
        ++ctx.stats.aborted_requests;
      }
    }
    ctx.stats.unanswered_requests += queue_.size();
    queue_.Clear();
    answered_partial_.reset();
    announced_partial_.reset();
    for (MessageParser& parser : parsers_) parser.EnterEndOfStream();
  }

 private:
  // What each direction carries follows ConnInfo::role once it is known;
  // until then, the first good message of a direction decides, and the
  // other direction is its opposite.
  void SyncRole(const ConnInfo& conn) {
    if (conn.role != Role::kUnknown) {
      const Direction requests = RequestDirection(conn.role);
      parsers_[Index(requests)].SetType(MessageType::kRequest);
      parsers_[Index(Opposite(requests))].SetType(MessageType::kResponse);
      return;
    }
    for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
      const std::optional<MessageType> type = parsers_[Index(dir)].type();
      MessageParser& other = parsers_[Index(Opposite(dir))];
      if (type.has_value() && !other.type().has_value()) {
        other.SetType(*type == MessageType::kRequest ? MessageType::kResponse
                                                     : MessageType::kRequest);
      }
    }
  }

  void Drain(Direction dir, ByteStream& stream, DecodeContext& ctx) {
    MessageParser& parser = parsers_[Index(dir)];
    for (;;) {
      // After a request offering h2c, the client's next bytes are HTTP/2 if
      // the server switches (RFC 7540 section 3.2): they wait, unparsed,
      // until the response says which protocol they are.
      if (h2c_request_dir_ == dir || Upgraded(ctx)) return;
      UpdateMethodHint();
      const ParseState state = parser.Parse(stream, method_hint_);
      // A request whose body is still arriving is announced now: its
      // response may come first (an early 413 or 417).
      if (state != ParseState::kSuccess) AnnouncePartialRequest(dir, ctx);
      switch (state) {
        case ParseState::kSuccess:
          OnMessage(dir, parser.message(), ctx);
          if (!parser.type().has_value() || !parsers_[Index(Opposite(dir))].type().has_value()) {
            SyncRole(ctx.conn);
          }
          continue;
        case ParseState::kInvalid:
          ++ctx.stats.parse_errors;
          continue;
        case ParseState::kIgnored:
          continue;
        case ParseState::kNeedsMoreData:
        case ParseState::kEndOfStream:
          return;
      }
    }
  }

  // The method of the oldest unanswered request, which a response parser
  // needs to frame the response (HEAD, CONNECT). Copied: the parser that
  // holds a partial request may reuse that storage.
  void UpdateMethodHint() {
    if (!queue_.empty()) {
      method_hint_.assign(queue_.front().message.method);
      return;
    }
    const PartialRequest partial = FindPartialRequest();
    if (partial.message != nullptr && !IsAnsweredPartial(*partial.message, partial.dir)) {
      method_hint_.assign(partial.message->method);
    } else {
      method_hint_.clear();
    }
  }

  struct PartialRequest {
    const Message* message = nullptr;
    Direction dir = Direction::kIngress;
  };
  // A request whose header block is parsed and whose body is still arriving.
  PartialRequest FindPartialRequest() const {
    for (Direction dir : {Direction::kIngress, Direction::kEgress}) {
      const Message* m = parsers_[Index(dir)].partial_message();
      if (m != nullptr && m->type == MessageType::kRequest) return {m, dir};
    }
    return {};
  }
  bool IsAnsweredPartial(const Message& m, Direction dir) const {
    return answered_partial_.has_value() && answered_partial_->first == dir &&
           answered_partial_->second == m.start_offset;
  }

  void OnMessage(Direction dir, const Message& message, DecodeContext& ctx) {
    ++ctx.stats.messages;
    switch (message.completeness) {
      case Completeness::kTruncated:
        ++ctx.stats.truncated;
        break;
      case Completeness::kBadFraming:
        ++ctx.stats.parse_errors;
        break;
      case Completeness::kComplete:
        break;
    }
    if (message.type == MessageType::kRequest) {
      OnRequest(dir, message, ctx);
    } else {
      OnResponse(dir, message, ctx);
    }
  }

  void OnRequest(Direction dir, const Message& request, DecodeContext& ctx) {
    if (!request_dir_.has_value()) request_dir_ = dir;
    if (answered_partial_.has_value() && answered_partial_->first == dir &&
        answered_partial_->second == request.start_offset) {
      answered_partial_.reset();  // its response came early and made the span already
      return;
    }
    // Announced while its body was arriving: it was admitted then.
    std::optional<Exchange> exchange = TakeAnnouncedPartial(dir, request);
    if (!exchange.has_value()) {
      if (queue_.size() >= ctx.options.max_pending_requests) {
        // Keep the oldest: responses answer them first, so dropping the
        // newest keeps every later pairing right until the queue drains.
        // Not announced: it will never have a span.
        ++ctx.stats.dropped_requests;
        return;
      }
      exchange = Announce(dir, request, ctx);
    }
    queue_.Push(request, dir, std::move(*exchange));
    // Only where the tracker can switch decoders (ctx.upgrade set).
    if (ctx.upgrade != nullptr && OffersH2c(request.upgrade)) h2c_request_dir_ = dir;
  }

  // SpanSink::OnExchangeStart for a request whose header block is parsed:
  // the next key of the connection, and the kind, thread and start time its
  // span will have.
  Exchange Announce(Direction dir, const Message& request, DecodeContext& ctx) {
    const ConnInfo& conn = ctx.conn;
    ExchangeStart start;
    start.key = ExchangeKey{conn.conn_id, ++last_seq_, /*stream_id=*/0};
    start.kind = SpanKindFor(conn.role, dir);
    start.tgid = conn.tgid;
    start.tid = request.first_byte.tid;
    start.start_mono_ns = StartTime(request, dir);
    start.tuple = conn.tuple;
    start.context = RequestContext(request);
    ctx.sink.OnExchangeStart(start);
    return Exchange{start.key, start.kind, std::move(start.context)};
  }

  // A request that no announcement covers gets a span without a key.
  static Exchange Unannounced(Direction dir, const Message& request, const DecodeContext& ctx) {
    return Exchange{ExchangeKey{}, SpanKindFor(ctx.conn.role, dir), RequestContext(request)};
  }

  // Announces the request whose header block `dir`'s parser has finished
  // while its body is still to come, once; only while the queue has room
  // for it, so that an announced request is never dropped.
  void AnnouncePartialRequest(Direction dir, DecodeContext& ctx) {
    const Message* m = parsers_[Index(dir)].partial_message();
    if (m == nullptr || m->type != MessageType::kRequest) return;
    if (announced_partial_.has_value() && announced_partial_->dir == dir &&
        announced_partial_->start_offset == m->start_offset) {
      return;
    }
    if (IsAnsweredPartial(*m, dir)) return;
    if (queue_.size() >= ctx.options.max_pending_requests) return;  // decided when it completes
    announced_partial_ = AnnouncedPartial{dir, m->start_offset, Announce(dir, *m, ctx)};
  }

  // The announcement of `request` made while it was partial, if any.
  std::optional<Exchange> TakeAnnouncedPartial(Direction dir, const Message& request) {
    if (!announced_partial_.has_value() || announced_partial_->dir != dir) return std::nullopt;
    std::optional<Exchange> out;
    // Another start offset: that message was lost under the parser.
    if (announced_partial_->start_offset == request.start_offset) {
      out = std::move(announced_partial_->exchange);
    }
    announced_partial_.reset();
    return out;
  }

  static bool Upgraded(const DecodeContext& ctx) {
    return ctx.upgrade != nullptr && ctx.upgrade->to != Protocol::kUnknown;
  }

  // 101 Switching Protocols to a request that offered h2c: no HTTP/1 span;
  // the request becomes HTTP/2 stream 1 (RFC 7540 section 3.2). Both parsers
  // stop where HTTP/1 ends: the response parser right after the 101, the
  // request parser right after the request (its body included), so the
  // tracker can hand the rest of both streams to the HTTP/2 decoder.
  void SwitchToH2c(const RequestQueue::Entry& request, DecodeContext& ctx) {
    ProtocolUpgrade& up = *ctx.upgrade;
    const Message& m = request.message;
    up.to = Protocol::kHttp2;
    up.has_request = true;
    up.request_direction = request.dir;
    up.method = m.method;
    up.target = m.target;
    up.authority = m.host;
    up.request_start_ns = StartTime(m, request.dir);
    up.request_tid = m.first_byte.tid;
    up.request_key = request.exchange.key;
    up.request_context = request.exchange.context;
    up.request_headers = m.captured_headers;
    up.request_body_size =
        m.framing == BodyFraming::kContentLength || m.framing == BodyFraming::kChunked
            ? m.body_size
            : 0;
    for (MessageParser& parser : parsers_) parser.EnterEndOfStream();
    h2c_request_dir_.reset();
  }

  void OnResponse(Direction dir, const Message& response, DecodeContext& ctx) {
    const int status = response.status_code;
    // Interim responses (RFC 9110 section 15.2: 100 Continue, 102, 103) come
    // before the final response to the same request and pair with nothing.
    // 101 is final for the HTTP/1 part of the connection.
    if (status / 100 == 1 && status != 101) {
      return;
    }
    if (!queue_.empty() && CanAnswer(queue_.front().message, response)) {
      const RequestQueue::Entry& request = queue_.front();
      if (status == 101 && ctx.upgrade != nullptr && OffersH2c(request.message.upgrade)) {
        SwitchToH2c(request, ctx);
        queue_.Pop();
        return;
      }
      // A final answer in HTTP/1 (the server ignored the offer): the
      // client's later bytes are HTTP/1 too.
      if (h2c_request_dir_ == request.dir) h2c_request_dir_.reset();
      EmitSpan(request.message, request.dir, request.exchange, &response, ctx);
      queue_.Pop();
    } else if (const PartialRequest partial = FindPartialRequest();
               queue_.empty() && partial.message != nullptr &&
               !IsAnsweredPartial(*partial.message, partial.dir) &&
               CanAnswer(*partial.message, response)) {
      // The response finished before the request body did (an early 413 or
      // 417, or a server that does not read the body): the exchange is over.
      std::optional<Exchange> exchange = TakeAnnouncedPartial(partial.dir, *partial.message);
      EmitSpan(*partial.message, partial.dir,
               exchange.has_value() ? *exchange : Unannounced(partial.dir, *partial.message, ctx),
               &response, ctx);
      answered_partial_ = std::make_pair(partial.dir, partial.message->start_offset);
    } else {
      ++ctx.stats.unmatched_responses;
    }
    // 101 or a CONNECT tunnel: the response parser has stopped; what the
    // other direction carries from now on is not HTTP/1 either.
    if (parsers_[Index(dir)].at_end_of_stream()) {
      parsers_[Index(Opposite(dir))].EnterEndOfStream();
    }
  }

  // A response cannot answer a request that started after the response was
  // already received or sent in full: then the request's own response was
  // lost and pairing them would shift every later exchange.
  static bool CanAnswer(const Message& request, const Message& response) {
    return response.first_byte.end_ns >= request.first_byte.start_ns;
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

  // `exchange`: what the request was announced with (Announce), whose kind,
  // key and context the span repeats; its thread and start time follow the
  // same rules as the announcement's. No `response`: the process died
  // serving the request (ctx.abort_reason, ctx.abort_ns).
  void EmitSpan(const Message& request, Direction request_dir, const Exchange& exchange,
                const Message* response, DecodeContext& ctx) {
    const ConnInfo& conn = ctx.conn;
    SpanRecord span;
    span.kind = exchange.kind;
    const bool server_span = span.kind == SpanKind::kServer;
    span.start_mono_ns = StartTime(request, request_dir);
    span.end_mono_ns =
        std::max(response != nullptr ? response->last_byte.end_ns : ctx.abort_ns,
                 span.start_mono_ns);
    span.tgid = conn.tgid;
    span.tid = request.first_byte.tid;
    span.conn_id = conn.conn_id;
    span.tuple = conn.tuple;
    span.key = exchange.key;
    span.context = exchange.context;

    const bool standard_method = IsStandardMethod(request.method);
    const std::string_view method = standard_method ? std::string_view(request.method) : "_OTHER";
    // CONNECT carries an authority, not a path (RFC 9112 section 3.2.3).
    const bool authority_form = request.method == "CONNECT";
    Attributes& attrs = span.attributes;
    attrs.Reserve(16);  // what an HTTP span carries; one allocation
    attrs.Set("http.request.method", std::string(method));
    if (!standard_method) attrs.Set("http.request.method_original", request.method);

    // Semantic conventions: the name is "{method} {route}", "HTTP" standing
    // for a method outside the known set, and just the method without a route.
    const std::string_view name_method = standard_method ? method : std::string_view("HTTP");
    if (authority_form) {
      span.name = std::string(name_method);
    } else {
      std::string route = NormalizeRoute(request.target);
      span.name.reserve(name_method.size() + 1 + route.size());
      span.name.append(name_method).append(" ").append(route);
      const SplitTarget split = SplitRequestTarget(request.target);
      attrs.Set("url.path", split.path.empty() ? std::string("/") : std::string(split.path));
      if (ctx.options.capture_url_query && !split.query.empty()) {
        attrs.Set("url.query", capture_->RedactQuery(split.query));
      }
      attrs.Set("http.route", std::move(route));
    }
    if (response != nullptr) {
      attrs.Set("http.response.status_code", static_cast<int64_t>(response->status_code));
    }

    // server.*: the Host header (for CONNECT, the target) names the server;
    // else the server end of the socket.
    const Endpoint& server_end = server_span ? conn.tuple.local : conn.tuple.remote;
    const bool have_socket = conn.tuple.local.addr.family != 0;
    HostPort authority;
    if (!request.host.empty()) {
      authority = SplitHostPort(request.host);
    } else if (authority_form) {
      authority = SplitHostPort(request.target);
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
      if (server_span) {
        attrs.Set("client.address", peer);
        attrs.Set("client.port", static_cast<int64_t>(conn.tuple.remote.port));
      }
      attrs.Set("network.peer.address", peer);
      attrs.Set("network.peer.port", static_cast<int64_t>(conn.tuple.remote.port));
    }
    attrs.Set("network.protocol.version", request.minor_version == 0 ? "1.0" : "1.1");
    if (request.framing == BodyFraming::kContentLength ||
        request.framing == BodyFraming::kChunked) {
      attrs.Set("http.request.body.size", static_cast<int64_t>(request.body_size));
    }
    if (!request.captured_headers.empty()) {
      capture_->SetAttributes(request.captured_headers, HeaderSide::kRequest, attrs);
    }
    if (response == nullptr) {
      span.status = StatusCode::kError;
      span.status_message = std::string(ctx.abort_reason);
      attrs.Set("error.type", std::string(ctx.abort_reason));
      ctx.sink.OnSpan(std::move(span));
      ++ctx.stats.records;
      return;
    }
    if (response->framing != BodyFraming::kNone) {
      attrs.Set("http.response.body.size", static_cast<int64_t>(response->body_size));
    }
    if (!response->captured_headers.empty()) {
      capture_->SetAttributes(response->captured_headers, HeaderSide::kResponse, attrs);
    }

    // Status (semantic conventions, HTTP spans): 4xx is the client's fault,
    // an error only from the client's side; 5xx is an error on both.
    const int status = response->status_code;
    if (status >= 500 || (!server_span && status >= 400)) {
      span.status = StatusCode::kError;
      attrs.Set("error.type", std::to_string(status));
    }
    ctx.sink.OnSpan(std::move(span));
    ++ctx.stats.records;
  }

  struct CachedAddress {
    IpAddress addr;
    std::string text;
    bool valid = false;
  };

  // What the parsers keep of header values: null unless some are asked for,
  // so that the common case skips the lookup.
  const HttpCapture* HeaderCapture() const {
    return capture_->captures_headers() ? capture_.get() : nullptr;
  }

  std::shared_ptr<const HttpCapture> capture_;  // never null; the parsers point into it
  std::array<MessageParser, kDirections> parsers_;
  RequestQueue queue_;
  std::string method_hint_;   // see UpdateMethodHint()
  // The direction the first request came from (kind inference when the role
  // is unknown, parse order at close).
  std::optional<Direction> request_dir_;
  // A partial request (direction, start offset) already paired with an early
  // response: when it completes it is not queued again.
  std::optional<std::pair<Direction, uint64_t>> answered_partial_;
  // The direction whose last request offered h2c and awaits its answer:
  // not parsed further until then (see Drain).
  std::optional<Direction> h2c_request_dir_;
  // The partial request (header block parsed, body arriving) announced
  // already, identified by direction and start offset: when it completes (or
  // an early response answers it) it is not announced again.
  struct AnnouncedPartial {
    Direction dir = Direction::kIngress;
    uint64_t start_offset = 0;
    Exchange exchange;
  };
  std::optional<AnnouncedPartial> announced_partial_;
  uint64_t last_seq_ = 0;  // the connection's last ExchangeKey::seq
  CachedAddress local_address_;
  CachedAddress remote_address_;
};

}  // namespace

std::unique_ptr<ConnectionDecoder> CreateDecoder(const ConnInfo& conn,
                                                 const DecoderOptions& options) {
  return std::make_unique<Http1Decoder>(conn, options);
}

}  // namespace loupe::http1
