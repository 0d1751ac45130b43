#include "decoders/model/http_capture.h"

#include <algorithm>
#include <array>

namespace loupe {

namespace {

constexpr std::string_view kDefaultQueryParams[] = {
    // OAuth 2.0 (RFC 6749, RFC 6750 section 2.3) and OpenID Connect.
    "access_token", "id_token", "refresh_token", "client_secret",
    // Generic credentials.
    "token", "auth", "password", "passwd", "pwd", "secret", "api_key", "apikey", "key",
    // Signed URLs: AWS SigV4 and legacy S3, Google Cloud Storage, Azure SAS.
    "signature", "sig", "awsaccesskeyid", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential"};

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

// `name` equals `lower` (lower case) with ASCII letters folded.
bool EqualsLower(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (Lower(name[i]) != lower[i]) return false;
  }
  return true;
}

// tchar (RFC 9110 section 5.6.2).
bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends as much of `text` to `out` as fits in kMaxCapturedValueBytes,
// never cutting a UTF-8 sequence (exporters would show the broken tail as
// U+FFFD). Returns false when `text` did not fit whole.
bool AppendBounded(std::string& out, std::string_view text) {
  const size_t room = kMaxCapturedValueBytes - std::min(out.size(), kMaxCapturedValueBytes);
  if (text.size() <= room) {
    out.append(text);
    return true;
  }
  size_t cut = room;
  // At most three continuation bytes precede a cut inside a sequence; more
  // is not UTF-8 anyway and is cut where it stands.
  for (int i = 0; i < 3 && cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80; ++i) {
    --cut;
  }
  if ((static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) cut = room;
  out.append(text.substr(0, cut));
  return false;
}

}  // namespace

std::span<const std::string_view> DefaultRedactedQueryParams() { return kDefaultQueryParams; }

bool IsHeaderFieldName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxConfiguredNameBytes &&
         std::all_of(name.begin(), name.end(), IsTchar);
}

bool IsQueryParamName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxConfiguredNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return c > 0x20 && c < 0x7f && c != '&' && c != ';' && c != '=' && c != '#';
         });
}

HttpCapture::HttpCapture(const Settings& settings) {
  std::vector<std::string> redact;
  for (const std::string_view name : kAlwaysRedactedHeaders) redact.emplace_back(name);
  for (const std::string& name : settings.redact_headers) redact.push_back(ToLower(name));
  for (const std::string& name : settings.capture_headers) {
    if (!IsHeaderFieldName(name) || names_.size() >= kMaxCapturedHeaders) continue;
    std::string lower = ToLower(name);
    if (std::find(names_.begin(), names_.end(), lower) != names_.end()) continue;
    const bool is_redacted = std::find(redact.begin(), redact.end(), lower) != redact.end();
    keys_[static_cast<int>(HeaderSide::kRequest)].push_back("http.request.header." + lower);
    keys_[static_cast<int>(HeaderSide::kResponse)].push_back("http.response.header." + lower);
    keys_[static_cast<int>(HeaderSide::kGrpcRequest)].push_back("rpc.grpc.request.metadata." +
                                                                lower);
    keys_[static_cast<int>(HeaderSide::kGrpcResponse)].push_back("rpc.grpc.response.metadata." +
                                                                 lower);
    length_mask_ |= uint64_t{1} << LengthBit(lower.size());
    redacted_.push_back(is_redacted ? 1 : 0);
    names_.push_back(std::move(lower));
  }
  for (const std::string& name : settings.redact_query_params) {
    std::string lower = ToLower(name);
    if (!lower.empty() &&
        std::find(query_params_.begin(), query_params_.end(), lower) == query_params_.end()) {
      query_params_.push_back(std::move(lower));
    }
  }
}

const std::shared_ptr<const HttpCapture>& HttpCapture::Default() {
  static const std::shared_ptr<const HttpCapture> kDefault = [] {
    Settings settings;
    for (const std::string_view name : kDefaultQueryParams) {
      settings.redact_query_params.emplace_back(name);
    }
    return std::make_shared<const HttpCapture>(settings);
  }();
  return kDefault;
}

int HttpCapture::FindSlow(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (EqualsLower(name, names_[i])) return static_cast<int>(i);
  }
  return -1;
}

void HttpCapture::Add(std::vector<CapturedHeader>& headers, uint32_t index,
                      std::string_view value) const {
  CapturedHeader* header = nullptr;
  for (CapturedHeader& h : headers) {
    if (h.index == index) header = &h;
  }
  const bool first = header == nullptr;
  if (first) {
    headers.push_back(CapturedHeader{index, {}, false});
    header = &headers.back();
  }
  if (redacted_[index] != 0) {
    // Only the presence is kept; repeated, it is still one "REDACTED".
    if (first) header->value.assign(kRedacted);
    return;
  }
  if (header->full) return;
  // Repeated fields combine with ", " (RFC 9110 section 5.3).
  if (!first && !AppendBounded(header->value, ", ")) {
    header->full = true;
    return;
  }
  if (!AppendBounded(header->value, value)) header->full = true;
}

void HttpCapture::SetAttributes(std::span<const CapturedHeader> headers, HeaderSide side,
                                Attributes& attributes) const {
  const std::vector<std::string>& keys = keys_[static_cast<int>(side)];
  for (const CapturedHeader& h : headers) {
    if (h.index < keys.size()) attributes.Set(keys[h.index], h.value);
  }
}

bool HttpCapture::IsRedactedParam(std::string_view raw_name) const {
  // Percent-decoding never makes a name longer, and shortens it at most
  // threefold: anything longer cannot be a listed name.
  if (raw_name.empty() || raw_name.size() > 3 * kMaxConfiguredNameBytes) return false;
  std::array<char, 3 * kMaxConfiguredNameBytes> buffer;
  size_t n = 0;
  for (size_t i = 0; i < raw_name.size(); ++i) {
    char c = raw_name[i];
    if (c == '%' && i + 2 < raw_name.size() && HexValue(raw_name[i + 1]) >= 0 &&
        HexValue(raw_name[i + 2]) >= 0) {
      c = static_cast<char>(HexValue(raw_name[i + 1]) * 16 + HexValue(raw_name[i + 2]));
      i += 2;
    } else if (c == '+') {
      c = ' ';  // application/x-www-form-urlencoded
    }
    buffer[n++] = Lower(c);
  }
  const std::string_view name(buffer.data(), n);
  return std::find(query_params_.begin(), query_params_.end(), name) != query_params_.end();
}

std::string HttpCapture::RedactQuery(std::string_view query) const {
  if (query_params_.empty()) return std::string(query);
  std::string out;
  out.reserve(query.size());
  size_t pos = 0;
  for (;;) {
    // ';' separates parameters too for some servers (the HTML 4 advice):
    // treating it as a separator keeps "a=1;token=x" from leaking.
    const size_t end = std::min(query.find_first_of("&;", pos), query.size());
    const std::string_view param = query.substr(pos, end - pos);
    const size_t eq = param.find('=');
    if (eq != std::string_view::npos && IsRedactedParam(param.substr(0, eq))) {
      out.append(param.substr(0, eq + 1));
      out.append(kRedacted);
    } else {
      out.append(param);
    }
    if (end == query.size()) break;
    out.push_back(query[end]);
    pos = end + 1;
  }
  return out;
}

}  // namespace loupe
