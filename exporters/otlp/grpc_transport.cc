#include "exporters/otlp/grpc_transport.h"

#include <grpc/grpc.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "exporters/otlp/rpc_status.h"
#include "exporters/otlp/tls_files.h"

namespace loupe {
namespace {

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr std::string_view kDefaultGrpcPort = "4317";

// Target forms gRPC resolves itself (gRPC "Name Syntax", doc/naming.md).
constexpr std::string_view kGrpcSchemes[] = {"dns:", "unix:", "unix-abstract:", "ipv4:",
                                             "ipv6:", "vsock:"};

absl::Status EndpointError(std::string_view endpoint, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("endpoint: '", AbslView(endpoint), "': ", AbslView(why)));
}

// gRPC metadata keys are lowercase [0-9a-z_.-] (gRPC "PROTOCOL-HTTP2",
// Custom-Metadata); values of non "-bin" keys are printable ASCII.
absl::Status ValidateMetadata(const std::string& key, const std::string& value) {
  if (key.empty()) return absl::InvalidArgumentError("headers: empty header name");
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                    c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "headers: '", key, "' is not a valid gRPC metadata key (allowed: 0-9 a-z - _ .)"));
    }
  }
  if (absl::StartsWith(key, "grpc-")) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers: '", key, "' is reserved by gRPC"));
  }
  if (!absl::EndsWith(key, "-bin")) {
    for (char c : value) {
      if (c < 0x20 || c > 0x7e) {
        return absl::InvalidArgumentError(
            absl::StrCat("headers: the value of '", key, "' has a non-printable byte"));
      }
    }
  }
  return absl::OkStatus();
}

// Where the completion callback of one call leaves its status.
struct CallDone {
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  grpc::Status status;
};

class GrpcTransport : public OtlpTransport {
 public:
  GrpcTransport(std::shared_ptr<grpc::Channel> channel, std::string method,
                const OtlpEndpointConfig& config,
                std::vector<std::pair<std::string, std::string>> metadata)
      : channel_(std::move(channel)),
        stub_(channel_),
        method_(std::move(method)),
        timeout_(config.timeout),
        gzip_(config.compression == OtlpCompression::kGzip),
        metadata_(std::move(metadata)) {}

  // Thread-safe: each call has its own context.
  ExportOutcome Export(const std::string& request_body) override {
    grpc::ClientContext context;
    // OTLP exporter specification, "Timeout": the longest one export waits.
    context.set_deadline(std::chrono::system_clock::now() + timeout_);
    for (const auto& [key, value] : metadata_) context.AddMetadata(key, value);
    // The request is gzip-compressed by gRPC's message compression
    // (grpc-encoding: gzip).
    if (gzip_) context.set_compression_algorithm(GRPC_COMPRESS_GZIP);

    grpc::Slice slice(request_body);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    // The callback API rather than a completion queue of our own: its calls
    // complete on gRPC's polling threads, which also keep polling between
    // exports. With a private queue nothing polls the channel while the
    // exporter backs off, so a reconnect to a collector that came back only
    // progresses on gRPC's slow backup poller (seconds per step).
    auto done = std::make_shared<CallDone>();
    stub_.UnaryCall(&context, method_, grpc::StubOptions(), &request, &response,
                    [done](grpc::Status status) {
                      std::lock_guard<std::mutex> lock(done->mu);
                      done->status = std::move(status);
                      done->finished = true;
                      done->cv.notify_all();
                    });
    grpc::Status status;
    {
      std::unique_lock<std::mutex> lock(done->mu);
      // The deadline ends the call; the extra second only guards against a
      // library that failed to honour it.
      if (!done->cv.wait_for(lock, timeout_ + std::chrono::seconds(1),
                             [&] { return done->finished; })) {
        lock.unlock();
        context.TryCancel();
        lock.lock();
        done->cv.wait(lock, [&] { return done->finished; });
      }
      status = done->status;
    }

    std::string response_bytes;
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      if (response.Dump(&slices).ok()) {
        for (const grpc::Slice& s : slices) {
          response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
    }
    return ClassifyGrpcStatus(static_cast<int>(status.error_code()), status.error_message(),
                              status.error_details(), response_bytes);
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  const std::string method_;
  const std::chrono::milliseconds timeout_;
  const bool gzip_;
  const std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace

std::string_view GrpcStatusCodeName(int code) {
  static constexpr std::string_view kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(std::size(kNames))) return "UNKNOWN_CODE";
  return kNames[code];
}

ExportOutcome ClassifyGrpcStatus(int code, std::string_view message,
                                 std::string_view status_details, std::string_view response) {
  ExportOutcome outcome;
  if (code == grpc::StatusCode::OK) {
    outcome.kind = ExportOutcome::Kind::kOk;
    // OTLP specification, "Partial Success": the request was accepted; a
    // populated partial_success MUST NOT be retried, only reported.
    if (std::optional<PartialSuccess> partial = ParsePartialSuccess(response)) {
      outcome.message = absl::StrCat("partial success: ", partial->rejected, " rejected: ",
                                     PrintableForLog(partial->error_message));
    }
    return outcome;
  }
  std::optional<RpcStatus> details;
  if (!status_details.empty()) details = ParseRpcStatus(status_details);
  const bool has_retry_info = details && details->has_retry_info;

  bool retryable = false;
  switch (code) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
      retryable = true;
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // "The client SHOULD interpret RESOURCE_EXHAUSTED code as retryable
      // only if the server signals that the recovery from resource
      // exhaustion is possible" (by returning RetryInfo).
      retryable = has_retry_info;
      break;
    default:
      retryable = false;
  }
  outcome.kind = retryable ? ExportOutcome::Kind::kRetryable : ExportOutcome::Kind::kPermanent;
  outcome.message = absl::StrCat("gRPC ", AbslView(GrpcStatusCodeName(code)), ": ",
                                 PrintableForLog(message));
  if (retryable && has_retry_info && details->retry_delay.count() > 0) {
    outcome.retry_after = details->retry_delay;
    absl::StrAppend(&outcome.message, " (server asks to retry in ", details->retry_delay.count(),
                    "ms)");
  }
  return outcome;
}

absl::StatusOr<GrpcTarget> ParseGrpcEndpoint(std::string_view endpoint_in, bool insecure) {
  const absl::string_view stripped = absl::StripAsciiWhitespace(AbslView(endpoint_in));
  const std::string_view endpoint(stripped.data(), stripped.size());
  if (endpoint.empty()) return EndpointError(endpoint_in, "empty");
  GrpcTarget result;
  std::string_view rest = endpoint;
  const absl::string_view lower_scheme_probe = AbslView(endpoint);
  if (absl::StartsWithIgnoreCase(lower_scheme_probe, "http://")) {
    result.tls = false;
    rest.remove_prefix(7);
  } else if (absl::StartsWithIgnoreCase(lower_scheme_probe, "https://")) {
    result.tls = true;
    rest.remove_prefix(8);
  } else {
    result.tls = !insecure;
    for (std::string_view scheme : kGrpcSchemes) {
      if (absl::StartsWithIgnoreCase(lower_scheme_probe, AbslView(scheme))) {
        result.target = std::string(endpoint);
        return result;
      }
    }
    if (endpoint.find("://") != std::string_view::npos) {
      return EndpointError(endpoint, "unsupported scheme (use http://, https:// or host:port)");
    }
  }
  // host[:port][/path][?query][#fragment]; userinfo is not a gRPC thing.
  const size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) {
    return EndpointError(endpoint, "user information is not supported");
  }
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return EndpointError(endpoint, "unclosed '['");
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return EndpointError(endpoint, "junk after ']'");
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos && authority.find(':') != colon) {
      return EndpointError(endpoint, "an IPv6 address must be written in brackets");
    }
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty() || host == "[]") return EndpointError(endpoint, "no host");
  if (port.empty()) {
    port = kDefaultGrpcPort;
  } else {
    uint32_t number = 0;
    if (!absl::SimpleAtoi(AbslView(port), &number) || number == 0 || number > 65535 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return EndpointError(endpoint, "bad port");
    }
  }
  result.target = absl::StrCat(AbslView(host), ":", AbslView(port));
  return result;
}

absl::StatusOr<std::unique_ptr<OtlpTransport>> MakeGrpcTransport(
    OtlpSignal signal, const OtlpEndpointConfig& config) {
  absl::StatusOr<GrpcTarget> target = ParseGrpcEndpoint(config.endpoint, config.insecure);
  if (!target.ok()) return target.status();

  std::vector<std::pair<std::string, std::string>> metadata;
  for (const auto& [key, value] : config.headers) {
    std::string lower = absl::AsciiStrToLower(key);
    if (absl::Status s = ValidateMetadata(lower, value); !s.ok()) return s;
    metadata.emplace_back(std::move(lower), value);
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (target->tls) {
    grpc::SslCredentialsOptions options;
    if (!config.certificate_file.empty()) {
      absl::StatusOr<std::string> ca = ReadTlsFile("certificate_file", config.certificate_file);
      if (!ca.ok()) return ca.status();
      options.pem_root_certs = *std::move(ca);
    }
    if (config.client_key_file.empty() != config.client_certificate_file.empty()) {
      return absl::InvalidArgumentError(
          "client_key_file and client_certificate_file: set both for mTLS, or neither");
    }
    if (!config.client_key_file.empty()) {
      absl::StatusOr<std::string> key = ReadTlsFile("client_key_file", config.client_key_file);
      if (!key.ok()) return key.status();
      absl::StatusOr<std::string> cert =
          ReadTlsFile("client_certificate_file", config.client_certificate_file);
      if (!cert.ok()) return cert.status();
      options.pem_private_key = *std::move(key);
      options.pem_cert_chain = *std::move(cert);
    }
    credentials = grpc::SslCredentials(options);
  } else {
    // The TLS file settings only apply to a secure connection (OTLP exporter
    // specification, "Certificate File"); a plaintext endpoint ignores them.
    credentials = grpc::InsecureChannelCredentials();
  }
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("certificate_file: gRPC could not make TLS credentials");
  }

  grpc::ChannelArguments args;
  // Retries are the exporter's (with OTLP's rules), not the channel's.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  // A collector that comes back is found within seconds: gRPC's default
  // reconnect back-off grows to 120 s, during which every export would fail
  // at once with UNAVAILABLE (gRPC "Connection Backoff Protocol").
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Despite its name this is MIN_CONNECT_TIMEOUT, the least time one
  // connection attempt (TCP, TLS, HTTP/2 settings) is given: not the short
  // back-off above, or a far collector could never finish a handshake.
  const int64_t connect_ms = std::clamp<int64_t>(config.timeout.count(), 1000, 60000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(connect_ms));
  args.SetUserAgentPrefix("loupe-otlp");
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target->target, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint: gRPC could not make a channel to '", target->target, "'"));
  }
  std::string_view method = kOtlpTraceExportMethod;
  switch (signal) {
    case OtlpSignal::kTraces:
      break;
    case OtlpSignal::kMetrics:
      method = kOtlpMetricsExportMethod;
      break;
    case OtlpSignal::kLogs:
      method = kOtlpLogsExportMethod;
      break;
  }
  return std::unique_ptr<OtlpTransport>(
      new GrpcTransport(std::move(channel), std::string(method), config, std::move(metadata)));
}

}  // namespace loupe
