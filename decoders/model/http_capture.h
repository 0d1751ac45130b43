// HTTP header capture and redaction, shared by the HTTP/1 and HTTP/2
// decoders: which header values are recorded on spans (--capture-headers),
// which of those only say that the header was there (--redact-headers and the
// always-redacted credential headers), and which URL query parameters lose
// their value when url.query is recorded (--redact-query-params).
//
// Only headers that were asked for are ever stored, and a redacted header's
// value is never copied at all: the decoders hand it to HttpCapture::Add,
// which stores the fixed string "REDACTED" in its place. Everything here is
// decided once, at start-up; the per-header cost on the parsing path is one
// length test for a name of a length no captured name has, and one
// case-insensitive compare per captured name of the same length otherwise.
#ifndef LOUPE_DECODERS_MODEL_HTTP_CAPTURE_H_
#define LOUPE_DECODERS_MODEL_HTTP_CAPTURE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decoders/model/span.h"

namespace loupe {

// What a redacted header or query parameter value becomes (the semantic
// conventions' own word for url.query scrubbing).
inline constexpr std::string_view kRedacted = "REDACTED";

// Header names whose values are credentials: redacted whatever the
// configuration says.
inline constexpr std::string_view kAlwaysRedactedHeaders[] = {
    "authorization", "proxy-authorization", "cookie", "set-cookie"};

// Bounds: header names that may be captured, bytes of one captured value
// (several occurrences joined included), and the length of a configured
// header or query parameter name.
inline constexpr size_t kMaxCapturedHeaders = 32;
inline constexpr size_t kMaxCapturedValueBytes = 256;
inline constexpr size_t kMaxConfiguredNameBytes = 128;

// Query parameters redacted unless configured otherwise: OAuth 2.0 / OpenID
// Connect tokens and secrets, generic credentials, and signed-URL
// credentials (AWS SigV4, Google Cloud Storage, Azure SAS `sig`), which
// includes the semantic conventions' own default list (AWSAccessKeyId,
// Signature, sig, X-Goog-Signature). Lower case; matched case-insensitively.
std::span<const std::string_view> DefaultRedactedQueryParams();

// Whether `name` can be a header field name: a token (RFC 9110 section
// 5.1), 1 to kMaxConfiguredNameBytes bytes.
bool IsHeaderFieldName(std::string_view name);
// Whether `name` can be a query parameter name to redact: 1 to
// kMaxConfiguredNameBytes visible ASCII bytes other than '&', ';', '=' and '#'.
bool IsQueryParamName(std::string_view name);

// One captured header of a message: its position in HttpCapture's names and
// its value, bounded (several occurrences joined with ", "), or "REDACTED".
struct CapturedHeader {
  uint32_t index = 0;
  std::string value;
  bool full = false;  // the value reached kMaxCapturedValueBytes: later occurrences are dropped
  bool operator==(const CapturedHeader&) const = default;
};

// Where a captured header is recorded: the HTTP semantic conventions'
// http.{request,response}.header.<name>, or the RPC conventions'
// rpc.grpc.{request,response}.metadata.<name> for gRPC calls.
enum class HeaderSide : uint8_t { kRequest, kResponse, kGrpcRequest, kGrpcResponse };

class HttpCapture {
 public:
  struct Settings {
    // Header names to record (any case; duplicates and names that are not
    // IsHeaderFieldName are ignored, and names past kMaxCapturedHeaders;
    // the agent's configuration rejects them before they get here).
    std::vector<std::string> capture_headers;
    // Header names recorded as "REDACTED", besides kAlwaysRedactedHeaders.
    std::vector<std::string> redact_headers;
    // Query parameters whose value becomes "REDACTED" in url.query.
    std::vector<std::string> redact_query_params;
  };

  explicit HttpCapture(const Settings& settings);

  // Nothing captured; the default query parameters redacted. What
  // DecoderOptions holds unless the agent configures something else.
  static const std::shared_ptr<const HttpCapture>& Default();

  bool captures_headers() const { return !names_.empty(); }
  // The captured names, lower case, in the order configured.
  const std::vector<std::string>& names() const { return names_; }
  bool redacted(uint32_t index) const { return redacted_[index] != 0; }

  // The index of header `name` (any case) among names(), or -1.
  int Find(std::string_view name) const {
    if (((length_mask_ >> LengthBit(name.size())) & 1) == 0) return -1;
    return FindSlow(name);
  }

  // Records one occurrence of header names()[index] with `value` (OWS
  // trimmed) in `headers`, the message's captured headers: a redacted
  // header's value is never looked at; several occurrences join with ", "
  // up to kMaxCapturedValueBytes, cut on a UTF-8 character boundary.
  void Add(std::vector<CapturedHeader>& headers, uint32_t index, std::string_view value) const;

  // Sets one attribute per captured header. The conventions want a string
  // array per header; Loupe's attributes are scalars, so the value is the
  // one string Add built.
  void SetAttributes(std::span<const CapturedHeader> headers, HeaderSide side,
                     Attributes& attributes) const;

  // `query` (after '?', without fragment) with the value of every listed
  // parameter replaced by "REDACTED"; everything else kept byte for byte.
  // Parameters are separated by '&' or ';' and matched by name, percent-
  // decoded, case-insensitively.
  std::string RedactQuery(std::string_view query) const;

  const std::vector<std::string>& redacted_query_params() const { return query_params_; }

 private:
  static unsigned LengthBit(size_t n) { return n < 63 ? static_cast<unsigned>(n) : 63u; }
  int FindSlow(std::string_view name) const;
  bool IsRedactedParam(std::string_view raw_name) const;

  std::vector<std::string> names_;
  std::vector<uint8_t> redacted_;
  // Attribute keys by HeaderSide, then index.
  std::vector<std::string> keys_[4];
  uint64_t length_mask_ = 0;  // bit n: a captured name has n bytes (bit 63: 63 or more)
  std::vector<std::string> query_params_;  // lower case
};

}  // namespace loupe

#endif  // LOUPE_DECODERS_MODEL_HTTP_CAPTURE_H_
