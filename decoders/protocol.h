// The seam between the connection tracker and protocol decoders.
//
// A protocol lives in its own folder (decoders/<protocol>/) and provides a
// ConnectionDecoder: parser (bytes -> frames) and stitcher (frames ->
// request/response exchanges) for one connection, turning each exchange into
// a SpanRecord. It is registered with one line in decoders/registry.cc.
// Decoders are pure: bytes in, records out; no I/O, clocks or globals.
#ifndef LOUPE_DECODERS_PROTOCOL_H_
#define LOUPE_DECODERS_PROTOCOL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/conn/byte_stream.h"
#include "decoders/events.h"
#include "decoders/model/http_capture.h"
#include "decoders/model/span.h"

namespace loupe {

// What is known about a connection; owned by the ConnTracker, which may
// learn the role later (ConnectionDecoder sees the update on its next call).
struct ConnInfo {
  uint64_t conn_id = 0;
  uint32_t tgid = 0;
  ConnTuple tuple;
  Role role = Role::kUnknown;
  RoleSource role_source = RoleSource::kNone;
  Protocol protocol = Protocol::kUnknown;
  uint64_t start_ns = 0;
  std::string comm;
};

// The kind of span an exchange makes: the connection's role when known,
// else whoever received the request is the server.
inline SpanKind SpanKindFor(Role role, Direction request_dir) {
  switch (role) {
    case Role::kServer:
      return SpanKind::kServer;
    case Role::kClient:
      return SpanKind::kClient;
    case Role::kUnknown:
      break;
  }
  return request_dir == Direction::kIngress ? SpanKind::kServer : SpanKind::kClient;
}

struct DecoderOptions {
  bool capture_url_query = false;  // url.query attribute (may carry secrets)
  // HTTP header values recorded on spans, those redacted, and the query
  // parameters redacted in url.query (decoders/model/http_capture.h).
  // Shared and immutable, so that copying DecoderOptions stays cheap.
  std::shared_ptr<const HttpCapture> http_capture = HttpCapture::Default();
  // A message's start line and headers larger than this are invalid.
  size_t max_header_bytes = 64 * 1024;
  // Requests waiting for their response, per connection.
  size_t max_pending_requests = 256;
  bool sanitize_sql = true;  // db.query.text with literals replaced (sql::Sanitize)
  bool redis_capture_key = false;  // Redis db.query.text with the first key (decoders/redis)
};

// Per-protocol counters; the tracker sums them for self-telemetry.
struct ProtocolStats {
  uint64_t messages = 0;        // requests + responses parsed
  uint64_t records = 0;         // exchanges turned into spans
  uint64_t parse_errors = 0;    // invalid input skipped (resynchronised)
  uint64_t truncated = 0;       // messages cut by a gap (prefix limit, loss)
  uint64_t unmatched_responses = 0;  // response without a request
  uint64_t unanswered_requests = 0;  // request without a response at close
  // Server requests cut short by their process's death (DecodeContext::
  // abort_reason), emitted as error spans.
  uint64_t aborted_requests = 0;
  uint64_t dropped_requests = 0;     // over max_pending_requests (HTTP/2: tracked streams)
  // HTTP/2 (decoders/http2/). A direction's HPACK dynamic table became
  // (partly) unknown: joined a connection mid-way, or bytes that may have
  // changed it were lost; its headers are recovered where possible.
  uint64_t hpack_recoveries = 0;
  uint64_t hpack_unknown_fields = 0;  // header fields that could not be recovered
  uint64_t resyncs = 0;               // frame boundaries lost and searched for again
  uint64_t upgrades = 0;              // protocol switches (HTTP/1.1 -> h2c), by the tracker
  ProtocolStats& operator+=(const ProtocolStats& o);
};

// A connection that switches protocols mid-way (HTTP/1.1 "Upgrade: h2c" and
// 101 Switching Protocols, RFC 7540 section 3.2). The decoder that sees the
// switch fills this in and stops consuming where its protocol ends; the
// tracker then creates the next protocol's decoder (with
// ProtocolDescriptor::create_upgraded) and offers it the rest of both
// streams.
struct ProtocolUpgrade {
  Protocol to = Protocol::kUnknown;
  // The request that asked for the upgrade: for h2c it is answered on
  // HTTP/2 stream 1.
  bool has_request = false;
  Direction request_direction = Direction::kIngress;
  std::string method;
  std::string target;
  std::string authority;  // Host header
  uint64_t request_start_ns = 0;
  uint32_t request_tid = 0;
  uint64_t request_body_size = 0;
  // What the request was announced with (SpanSink::OnExchangeStart) by the
  // decoder that saw it: stream 1's span carries the same key and context,
  // with no second announcement. key.seq 0: it was not announced.
  ExchangeKey request_key;
  std::optional<TraceContext> request_context;
  // Its headers captured (DecoderOptions::http_capture), for stream 1's span.
  std::vector<CapturedHeader> request_headers;
};

struct DecodeContext {
  const ConnInfo& conn;
  const DecoderOptions& options;
  SpanSink& sink;
  ProtocolStats& stats;
  // Set by the tracker; a decoder that switches protocols fills it in (to !=
  // kUnknown). Null where switching is not supported (tests).
  ProtocolUpgrade* upgrade = nullptr;
  // Set for OnClose when the connection ends because its process died
  // (ConnTracker::EndProcess), e.g. "OOMKilled": a server request still
  // waiting for its response was being served when the process died. A
  // decoder that can emits such requests as error spans with this reason as
  // status message and error.type, ending at abort_ns (counted as
  // aborted_requests); the others count them as unanswered.
  std::string_view abort_reason;
  uint64_t abort_ns = 0;
};

class ConnectionDecoder {
 public:
  virtual ~ConnectionDecoder() = default;
  // `stream` (direction `dir`) has new bytes or gaps: parse and Consume()
  // what can be, emit finished exchanges to ctx.sink. Bytes left unconsumed
  // are offered again with more data next time.
  virtual void OnData(Direction dir, ByteStream& stream, DecodeContext& ctx) = 0;
  // `stream` lost bytes at its head outside the decoder's control (memory
  // bound): forget partial parse state for that direction.
  virtual void OnStreamReset(Direction dir, DecodeContext& ctx) = 0;
  // The connection ended. `closed` is true for a close() seen in the kernel
  // (a body delimited by the close is complete), false for a connection
  // reclaimed as idle or evicted (in-flight messages are abandoned).
  // `streams` are the connection's two directions, indexed by Direction.
  virtual void OnClose(bool closed, std::span<ByteStream, kDirections> streams,
                       DecodeContext& ctx) = 0;
};

struct ProtocolDescriptor {
  Protocol id;
  std::string_view name;
  std::unique_ptr<ConnectionDecoder> (*create)(const ConnInfo& conn,
                                               const DecoderOptions& options);
  // For a connection upgraded to this protocol; null: the protocol cannot
  // be upgraded to.
  std::unique_ptr<ConnectionDecoder> (*create_upgraded)(const ConnInfo& conn,
                                                        const DecoderOptions& options,
                                                        const ProtocolUpgrade& upgrade) = nullptr;
};

// The registered protocols (decoders/registry.cc).
std::span<const ProtocolDescriptor> RegisteredProtocols();
const ProtocolDescriptor* FindProtocol(Protocol id);

}  // namespace loupe

#endif  // LOUPE_DECODERS_PROTOCOL_H_
