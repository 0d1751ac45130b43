#include "exporters/otlp/http_transport.h"

#include <curl/curl.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "exporters/curl_handles.h"
#include "exporters/otlp/rpc_status.h"
#include "exporters/otlp/tls_files.h"

namespace loupe {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Enough for any Export*ServiceResponse or google.rpc.Status worth logging;
// the rest of a large error page is read and discarded.
constexpr size_t kMaxResponseBody = 16 * 1024;
constexpr int64_t kMaxRetryAfterSeconds = 86400;

// The part of one exchange the callbacks fill in.
struct ResponseCapture {
  std::string body;
  std::string retry_after;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* capture = static_cast<ResponseCapture*>(user);
  const size_t n = size * count;
  const size_t room = kMaxResponseBody - std::min(kMaxResponseBody, capture->body.size());
  capture->body.append(data, std::min(n, room));
  return n;  // the rest is read and dropped, not an error
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* capture = static_cast<ResponseCapture*>(user);
  const size_t n = size * count;
  const absl::string_view line(data, n);
  // A new status line (after "100 Continue", say) starts a new response.
  if (absl::StartsWith(line, "HTTP/")) {
    capture->retry_after.clear();
    capture->body.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(line.substr(0, colon)), "retry-after")) {
    capture->retry_after = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return n;
}

// RFC 9110 section 5.1: a field name is a token.
bool IsToken(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool IsFieldValue(std::string_view value) {
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

// Local configuration problems that no retry can fix; every other curl error
// (connection refused or reset, timeout, DNS, TLS handshake) is the peer
// being unreachable: OTLP specification, "OTLP/HTTP Connection" and "All
// Other Responses": the client SHOULD retry.
bool IsPermanentCurlError(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CIPHER:
      return true;
    default:
      return false;
  }
}

class HttpTransport : public OtlpTransport {
 public:
  HttpTransport(CurlEasy easy, CurlSlist headers, bool gzip, std::string url)
      : easy_(std::move(easy)), headers_(std::move(headers)), gzip_(gzip), url_(std::move(url)) {}

  // Serialised: one easy handle, one request at a time.
  ExportOutcome Export(const std::string& request_body) override {
    absl::MutexLock lock(&mu_);
    std::string compressed;
    std::string_view body = request_body;
    if (gzip_) {
      std::optional<std::string> gz = GzipCompress(request_body);
      if (!gz) {
        return ExportOutcome{ExportOutcome::Kind::kRetryable, "gzip compression failed",
                             std::nullopt};
      }
      compressed = *std::move(gz);
      body = compressed;
    }
    ResponseCapture capture;
    CURL* h = easy_.get();
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &capture);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &capture);
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    const CURLcode result = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
    if (result != CURLE_OK) {
      ExportOutcome outcome;
      outcome.kind = IsPermanentCurlError(result) ? ExportOutcome::Kind::kPermanent
                                                  : ExportOutcome::Kind::kRetryable;
      outcome.message = absl::StrCat("HTTP POST ", url_, ": ", curl_easy_strerror(result),
                                     error[0] != '\0' ? absl::StrCat(" (", error, ")") : "");
      return outcome;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    std::optional<std::chrono::milliseconds> retry_after;
    if (!capture.retry_after.empty()) {
      retry_after = ParseRetryAfter(capture.retry_after, std::chrono::system_clock::now());
    }
    return ClassifyHttpResponse(status, capture.body, retry_after);
  }

 private:
  absl::Mutex mu_;
  CurlEasy easy_ ABSL_GUARDED_BY(mu_);
  const CurlSlist headers_;  // referenced by easy_
  const bool gzip_;
  const std::string url_;
};

}  // namespace

std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value_in, std::chrono::system_clock::time_point now) {
  const absl::string_view value = absl::StripAsciiWhitespace(AbslView(value_in));
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t seconds = 0;
    // Too many digits to parse is a very long delay: capped, not an error.
    if (!absl::SimpleAtoi(value, &seconds) || seconds > kMaxRetryAfterSeconds) {
      seconds = kMaxRetryAfterSeconds;
    }
    return std::chrono::milliseconds(seconds * 1000);
  }
  // curl_getdate reads all three HTTP-date forms. It wants a C string.
  const std::string text(value);
  const time_t when = curl_getdate(text.c_str(), nullptr);
  if (when == -1) return std::nullopt;
  const auto target = std::chrono::system_clock::from_time_t(when);
  if (target <= now) return std::chrono::milliseconds(0);
  const auto delay = std::chrono::ceil<std::chrono::milliseconds>(target - now);
  return std::min(delay, std::chrono::milliseconds(kMaxRetryAfterSeconds * 1000));
}

ExportOutcome ClassifyHttpResponse(long status, std::string_view body,
                                   std::optional<std::chrono::milliseconds> retry_after) {
  ExportOutcome outcome;
  if (status >= 200 && status < 300) {
    outcome.kind = ExportOutcome::Kind::kOk;
    if (std::optional<PartialSuccess> partial = ParsePartialSuccess(body)) {
      outcome.message = absl::StrCat("partial success: ", partial->rejected, " rejected: ",
                                     PrintableForLog(partial->error_message));
    }
    return outcome;
  }
  const bool retryable = status == 429 || status == 502 || status == 503 || status == 504;
  outcome.kind = retryable ? ExportOutcome::Kind::kRetryable : ExportOutcome::Kind::kPermanent;
  outcome.message = absl::StrCat("HTTP ", status);
  if (!body.empty()) {
    // "The response body for all HTTP 4xx and HTTP 5xx responses MUST be a
    // Protobuf-encoded Status message"; proxies in between answer with text.
    std::optional<RpcStatus> rpc = ParseRpcStatus(body);
    if (rpc && !rpc->message.empty()) {
      absl::StrAppend(&outcome.message, ": ", PrintableForLog(rpc->message));
    } else {
      absl::StrAppend(&outcome.message, ": ", PrintableForLog(body, 200));
    }
  }
  if (retryable && retry_after && retry_after->count() > 0) {
    outcome.retry_after = retry_after;
    absl::StrAppend(&outcome.message, " (Retry-After: ", retry_after->count(), "ms)");
  }
  return outcome;
}

std::optional<std::string> GzipCompress(std::string_view data) {
  z_stream stream{};
  // windowBits 15 + 16: a gzip wrapper rather than zlib's.
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return std::nullopt;
  }
  std::string out;
  out.resize(deflateBound(&stream, static_cast<uLong>(data.size())) + 32);
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&stream, Z_FINISH);
  const size_t produced = out.size() - stream.avail_out;
  deflateEnd(&stream);
  if (rc != Z_STREAM_END) return std::nullopt;
  out.resize(produced);
  return out;
}

absl::StatusOr<std::unique_ptr<OtlpTransport>> MakeHttpTransport(const OtlpEndpointConfig& config) {
  CurlGlobalInit();
  const std::string& url = config.endpoint;
  // OTLP exporter specification, "Endpoint (OTLP/HTTP)": "a valid URL with
  // scheme (http or https) and host".
  const bool https = absl::StartsWithIgnoreCase(url, "https://");
  if (!https && !absl::StartsWithIgnoreCase(url, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint: '", url, "': OTLP/HTTP needs an http:// or https:// URL"));
  }
  {
    CURLU* parsed = curl_url();
    if (parsed == nullptr) return absl::ResourceExhaustedError("endpoint: out of memory");
    const CURLUcode rc = curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0);
    char* host = nullptr;
    const bool has_host = rc == CURLUE_OK &&
                          curl_url_get(parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                          host != nullptr && host[0] != '\0';
    curl_free(host);
    curl_url_cleanup(parsed);
    if (!has_host) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint: '", url, "' is not a valid URL"));
    }
  }
  if (https) {
    if (!config.certificate_file.empty()) {
      if (absl::StatusOr<std::string> ca = ReadTlsFile("certificate_file", config.certificate_file);
          !ca.ok()) {
        return ca.status();
      }
    }
    if (config.client_key_file.empty() != config.client_certificate_file.empty()) {
      return absl::InvalidArgumentError(
          "client_key_file and client_certificate_file: set both for mTLS, or neither");
    }
    if (!config.client_key_file.empty()) {
      if (absl::StatusOr<std::string> key = ReadTlsFile("client_key_file", config.client_key_file);
          !key.ok()) {
        return key.status();
      }
      if (absl::StatusOr<std::string> cert =
              ReadTlsFile("client_certificate_file", config.client_certificate_file);
          !cert.ok()) {
        return cert.status();
      }
    }
  }

  // OTLP specification, "Binary Protobuf Encoding": the client MUST set
  // "Content-Type: application/x-protobuf"; "OTLP/HTTP Request": a gzipped
  // body MUST carry "Content-Encoding: gzip". "Expect:" stops curl from
  // waiting for a "100 Continue" before sending larger bodies.
  std::vector<std::string> lines = {"Content-Type: application/x-protobuf", "Expect:"};
  if (config.compression == OtlpCompression::kGzip) lines.push_back("Content-Encoding: gzip");
  for (const auto& [name, value] : config.headers) {
    if (!IsToken(name)) {
      return absl::InvalidArgumentError(absl::StrCat("headers: '", name, "' is not a header name"));
    }
    if (!IsFieldValue(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("headers: the value of '", name, "' has a control character"));
    }
    if (absl::EqualsIgnoreCase(name, "content-type") ||
        absl::EqualsIgnoreCase(name, "content-encoding") ||
        absl::EqualsIgnoreCase(name, "content-length")) {
      return absl::InvalidArgumentError(
          absl::StrCat("headers: '", name, "' is set by the exporter itself"));
    }
    // "Name;" is curl's way to send a header with an empty value.
    lines.push_back(value.empty() ? absl::StrCat(name, ";") : absl::StrCat(name, ": ", value));
  }
  curl_slist* raw = nullptr;
  for (const std::string& line : lines) {
    curl_slist* next = curl_slist_append(raw, line.c_str());
    if (next == nullptr) {
      curl_slist_free_all(raw);
      return absl::ResourceExhaustedError("headers: out of memory");
    }
    raw = next;
  }
  CurlSlist headers(raw);

  CurlEasy easy(curl_easy_init());
  if (!easy) return absl::ResourceExhaustedError("endpoint: curl_easy_init failed");
  CURL* h = easy.get();
  const long timeout_ms = static_cast<long>(std::max<int64_t>(config.timeout.count(), 1));
  bool ok = true;
  auto set = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  set(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  set(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(h, CURLOPT_POST, 1L));
  set(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get()));
  set(curl_easy_setopt(h, CURLOPT_USERAGENT, "loupe-otlp"));
  // Threads: no signals (a resolver timeout would otherwise use SIGALRM).
  set(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  // OTLP exporter specification, "Timeout": the longest one export waits,
  // connecting included.
  set(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody));
  set(curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader));
  if (https) {
    if (!config.certificate_file.empty()) {
      set(curl_easy_setopt(h, CURLOPT_CAINFO, config.certificate_file.c_str()));
    }
    if (!config.client_certificate_file.empty()) {
      set(curl_easy_setopt(h, CURLOPT_SSLCERT, config.client_certificate_file.c_str()));
      set(curl_easy_setopt(h, CURLOPT_SSLKEY, config.client_key_file.c_str()));
    }
  }
  if (!ok) return absl::InternalError("endpoint: libcurl refused an option");
  return std::unique_ptr<OtlpTransport>(
      new HttpTransport(std::move(easy), std::move(headers),
                        config.compression == OtlpCompression::kGzip, url));
}

}  // namespace loupe
