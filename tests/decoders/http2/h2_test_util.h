// Helpers for the HTTP/2 tests: frames as byte literals, header blocks from
// nghttp2's deflater or hand-made HPACK representations, and a connection
// harness that feeds both directions to the decoder as syscall events.
#ifndef LOUPE_TESTS_DECODERS_HTTP2_H2_TEST_UTIL_H_
#define LOUPE_TESTS_DECODERS_HTTP2_H2_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "decoders/http2/frame_reader.h"
#include "decoders/http2/http2_decoder.h"
#include "decoders/protocol.h"
#include "tests/decoders/checking_sink.h"

namespace loupe::http2::testing {

constexpr Direction kIn = Direction::kIngress;
constexpr Direction kOut = Direction::kEgress;

// --- Frames (RFC 9113 section 4.1) -------------------------------------------

inline std::string RawFrame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  const uint32_t n = static_cast<uint32_t>(payload.size());
  f.push_back(static_cast<char>(n >> 16));
  f.push_back(static_cast<char>(n >> 8));
  f.push_back(static_cast<char>(n));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f.push_back(static_cast<char>((stream >> 24) & 0x7f));
  f.push_back(static_cast<char>(stream >> 16));
  f.push_back(static_cast<char>(stream >> 8));
  f.push_back(static_cast<char>(stream));
  f.append(payload);
  return f;
}

inline std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

inline std::string Settings(std::vector<std::pair<uint16_t, uint32_t>> params = {}) {
  std::string payload;
  for (const auto& [id, value] : params) {
    payload.push_back(static_cast<char>(id >> 8));
    payload.push_back(static_cast<char>(id));
    payload += Be32(value);
  }
  return RawFrame(kSettings, 0, 0, payload);
}
inline std::string SettingsAck() { return RawFrame(kSettings, kFlagAck, 0, ""); }
inline std::string Headers(uint32_t stream, std::string_view block, bool end_stream) {
  return RawFrame(kHeaders, kFlagEndHeaders | (end_stream ? kFlagEndStream : 0), stream, block);
}
inline std::string Data(uint32_t stream, std::string_view payload, bool end_stream) {
  return RawFrame(kData, end_stream ? kFlagEndStream : 0, stream, payload);
}
inline std::string RstStream(uint32_t stream, uint32_t code) {
  return RawFrame(kRstStream, 0, stream, Be32(code));
}
inline std::string Goaway(uint32_t last_stream, uint32_t code) {
  return RawFrame(kGoaway, 0, 0, Be32(last_stream) + Be32(code) + "debug");
}
inline std::string Ping() { return RawFrame(kPing, 0, 0, std::string(8, 'p')); }
inline std::string WindowUpdate(uint32_t stream, uint32_t inc) {
  return RawFrame(kWindowUpdate, 0, stream, Be32(inc));
}
// Concatenation in written order. Frames that carry header blocks must be
// built in wire order (the encoders' tables change with each block), and
// the operands of `a + b` are evaluated in an unspecified order; the
// elements of a braced list are not.
inline std::string Cat(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& part : parts) out += part;
  return out;
}

// A gRPC length-prefixed message (uncompressed).
inline std::string GrpcMessage(std::string_view message) {
  return std::string(1, '\0') + Be32(static_cast<uint32_t>(message.size())) + std::string(message);
}

// --- HPACK -------------------------------------------------------------------

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// nghttp2's encoder: one per direction, as a real peer has.
class Encoder {
 public:
  explicit Encoder(size_t table_size = 4096) {
    nghttp2_hd_deflate_new(&deflater_, table_size);
  }
  ~Encoder() { nghttp2_hd_deflate_del(deflater_); }
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Names in `no_index` are sent as literals never indexed.
  std::string Encode(const HeaderList& headers, const std::vector<std::string>& no_index = {}) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : headers) {
      nghttp2_nv nv;
      nv.name = reinterpret_cast<uint8_t*>(const_cast<char*>(name.data()));
      nv.namelen = name.size();
      nv.value = reinterpret_cast<uint8_t*>(const_cast<char*>(value.data()));
      nv.valuelen = value.size();
      nv.flags = NGHTTP2_NV_FLAG_NONE;
      for (const std::string& n : no_index) {
        if (n == name) nv.flags = NGHTTP2_NV_FLAG_NO_INDEX;
      }
      nva.push_back(nv);
    }
    std::string out(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<uint8_t*>(out.data()),
                                            out.size(), nva.data(), nva.size());
    EXPECT_GE(n, 0);
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }
  size_t dynamic_entries() {
    return nghttp2_hd_deflate_get_num_table_entries(deflater_) - 61;
  }

 private:
  nghttp2_hd_deflater* deflater_ = nullptr;
};

// Hand-made representations (RFC 7541 sections 5 and 6), plain strings.
inline std::string HpackInt(uint8_t first_bits, int prefix, uint64_t v) {
  std::string out;
  const uint64_t max = (1u << prefix) - 1;
  if (v < max) {
    out.push_back(static_cast<char>(first_bits | v));
    return out;
  }
  out.push_back(static_cast<char>(first_bits | max));
  v -= max;
  while (v >= 128) {
    out.push_back(static_cast<char>(0x80 | (v & 0x7f)));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
inline std::string HpackString(std::string_view s) {
  return HpackInt(0, 7, s.size()) + std::string(s);
}
inline std::string Indexed(uint64_t index) { return HpackInt(0x80, 7, index); }
inline std::string LiteralIncremental(uint64_t name_index, std::string_view value) {
  return HpackInt(0x40, 6, name_index) + HpackString(value);
}
inline std::string LiteralIncrementalNewName(std::string_view name, std::string_view value) {
  return std::string(1, '\x40') + HpackString(name) + HpackString(value);
}
inline std::string LiteralWithoutIndexing(uint64_t name_index, std::string_view value) {
  return HpackInt(0x00, 4, name_index) + HpackString(value);
}
inline std::string LiteralNeverIndexedNewName(std::string_view name, std::string_view value) {
  return std::string(1, '\x10') + HpackString(name) + HpackString(value);
}
inline std::string SizeUpdate(uint64_t size) { return HpackInt(0x20, 5, size); }

// Static table indices used in tests (RFC 7541 appendix A).
constexpr int kAuthority = 1;
constexpr int kMethodGet = 2;
constexpr int kMethodPost = 3;
constexpr int kPathRoot = 4;
constexpr int kSchemeHttp = 6;
constexpr int kStatus200 = 8;
constexpr int kStatus404 = 13;
constexpr int kContentType = 31;
constexpr int kUserAgent = 58;

// --- A connection ------------------------------------------------------------

// Records and checks announcements and spans (tests/decoders/checking_sink.h).
class RecordingSink : public ::loupe::testing::CheckingSink {
 public:
  RecordingSink() : CheckingSink(/*streams=*/true) {}
};

inline IpAddress V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress addr;
  addr.family = AF_INET;
  addr.bytes[0] = a;
  addr.bytes[1] = b;
  addr.bytes[2] = c;
  addr.bytes[3] = d;
  return addr;
}

// The traced process is 10.0.0.1:8080 (a server) or 10.0.0.1:40000 talking
// to 10.0.0.2:443 (a client).
class Connection {
 public:
  explicit Connection(Role role, DecoderOptions options = {},
                      const ProtocolUpgrade* upgrade = nullptr)
      : options_(options) {
    conn_.conn_id = 77;
    conn_.tgid = 1234;
    conn_.role = role;
    conn_.protocol = Protocol::kHttp2;
    if (role == Role::kClient) {
      conn_.tuple.local = Endpoint{V4(10, 0, 0, 1), 40000};
      conn_.tuple.remote = Endpoint{V4(10, 0, 0, 2), 443};
    } else {
      conn_.tuple.local = Endpoint{V4(10, 0, 0, 1), 8080};
      conn_.tuple.remote = Endpoint{V4(10, 0, 0, 2), 54321};
    }
    decoder_ = upgrade != nullptr ? CreateUpgradedDecoder(conn_, options_, *upgrade)
                                  : CreateDecoder(conn_, options_);
  }

  // One syscall moving `bytes` in `dir`; total_len > bytes.size() means only
  // a prefix was copied. `offset`: where the stream starts (first event only).
  void Send(Direction dir, std::string_view bytes, EventTime time = {},
            std::optional<uint64_t> total_len = std::nullopt,
            std::optional<uint64_t> offset = std::nullopt) {
    ByteStream& stream = streams_[Index(dir)];
    stream.Add(offset.value_or(stream.end()),
               std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size()),
               total_len.value_or(bytes.size()), time);
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnData(dir, stream, ctx);
  }

  // The same, cut into syscalls of `piece` bytes, all with `time`.
  void SendInPieces(Direction dir, std::string_view bytes, size_t piece, EventTime time = {}) {
    for (size_t at = 0; at < bytes.size(); at += piece) Send(dir, bytes.substr(at, piece), time);
  }

  void Close(bool closed = true) {
    DecodeContext ctx{conn_, options_, sink_, stats_};
    decoder_->OnClose(closed, streams_, ctx);
  }

  ConnInfo& conn() { return conn_; }
  const std::vector<SpanRecord>& spans() const { return sink_.spans; }
  const std::vector<ExchangeStart>& starts() const { return sink_.starts; }
  const std::string& order() const { return sink_.order; }
  RecordingSink& sink() { return sink_; }
  const ProtocolStats& stats() const { return stats_; }
  const ByteStream& stream(Direction dir) const { return streams_[Index(dir)]; }

 private:
  ConnInfo conn_;
  DecoderOptions options_;
  RecordingSink sink_;
  ProtocolStats stats_;
  std::array<ByteStream, kDirections> streams_;
  std::unique_ptr<ConnectionDecoder> decoder_;
};

inline int64_t Int(const SpanRecord& span, std::string_view key) {
  const int64_t* v = span.attributes.FindInt(key);
  return v ? *v : -1;
}
inline std::string Str(const SpanRecord& span, std::string_view key) {
  const std::string* v = span.attributes.FindString(key);
  return v ? *v : "<absent>";
}
inline bool Has(const SpanRecord& span, std::string_view key) {
  return span.attributes.Find(key) != nullptr;
}
inline bool Bool(const SpanRecord& span, std::string_view key) {
  const AttributeValue* v = span.attributes.Find(key);
  return v != nullptr && std::holds_alternative<bool>(*v) && std::get<bool>(*v);
}

inline void ExpectSameSpans(const std::vector<SpanRecord>& a, const std::vector<SpanRecord>& b,
                            const std::string& context) {
  ASSERT_EQ(a.size(), b.size()) << context;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name) << context << " span " << i;
    EXPECT_EQ(a[i].kind, b[i].kind) << context << " span " << i;
    EXPECT_EQ(a[i].start_mono_ns, b[i].start_mono_ns) << context << " span " << i;
    EXPECT_EQ(a[i].end_mono_ns, b[i].end_mono_ns) << context << " span " << i;
    EXPECT_EQ(a[i].status, b[i].status) << context << " span " << i;
    EXPECT_EQ(a[i].status_message, b[i].status_message) << context << " span " << i;
    EXPECT_EQ(a[i].tid, b[i].tid) << context << " span " << i;
    EXPECT_TRUE(a[i].attributes == b[i].attributes) << context << " span " << i;
  }
}

}  // namespace loupe::http2::testing

#endif  // LOUPE_TESTS_DECODERS_HTTP2_H2_TEST_UTIL_H_
