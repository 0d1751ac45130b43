#include "agent/config.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "agent/version.h"

#define LOUPE_STRINGIFY_ARG(x) #x
#define LOUPE_STRINGIFY(x) LOUPE_STRINGIFY_ARG(x)

namespace loupe {

namespace {

// Where a value came from, for error messages: "--otlp-timeout" or
// "OTEL_EXPORTER_OTLP_TIMEOUT".
using Source = std::string;
using Setter = std::function<absl::Status(AgentConfig&, absl::string_view value, const Source&)>;

struct Flag {
  const char* name;      // without the leading "--"
  const char* arg;       // nullptr for a switch
  const char* fallback;  // default, as shown in --help
  std::string help;
  const char* section;
  Setter set;
  const char* env = nullptr;  // the environment variable it can also come from
};

absl::Status Invalid(const Source& source, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid value '", value, "' for ", source, ": ", why));
}

template <typename T>
absl::Status ParseNumber(const Source& source, absl::string_view value, T min, T max, T* out) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &v)) {
    return Invalid(source, value, "expected a whole number");
  }
  if (v < static_cast<uint64_t>(min) || v > static_cast<uint64_t>(max)) {
    return Invalid(source, value, absl::StrCat("must be between ", min, " and ", max));
  }
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

absl::Status ParseMillis(const Source& source, absl::string_view value,
                         std::chrono::milliseconds* out) {
  uint64_t ms = 0;
  if (absl::Status s = ParseNumber<uint64_t>(source, value, 0, 86400000, &ms); !s.ok()) return s;
  *out = std::chrono::milliseconds(ms);
  return absl::OkStatus();
}

absl::Status ParseBool(const Source& source, absl::string_view value, bool* out) {
  const std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
  if (v == "true") {
    *out = true;
  } else if (v == "false" || v.empty()) {
    *out = false;
  } else {
    return Invalid(source, value, "expected true or false");
  }
  return absl::OkStatus();
}

absl::Status ParseProtocol(const Source& source, absl::string_view value, OtlpProtocol* out) {
  const absl::string_view v = absl::StripAsciiWhitespace(value);
  if (v == "grpc") {
    *out = OtlpProtocol::kGrpc;
  } else if (v == "http/protobuf") {
    *out = OtlpProtocol::kHttpProtobuf;
  } else if (v == "http/json") {
    return Invalid(source, value, "http/json is not supported; use grpc or http/protobuf");
  } else {
    return Invalid(source, value, "expected grpc or http/protobuf");
  }
  return absl::OkStatus();
}

absl::Status ParseCompression(const Source& source, absl::string_view value,
                              OtlpCompression* out) {
  const absl::string_view v = absl::StripAsciiWhitespace(value);
  if (v == "gzip") {
    *out = OtlpCompression::kGzip;
  } else if (v == "none" || v.empty()) {
    *out = OtlpCompression::kNone;
  } else {
    return Invalid(source, value, "expected gzip or none");
  }
  return absl::OkStatus();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexDigit(in[i + 1]) >= 0 &&
        HexDigit(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(in[i + 1]) * 16 + HexDigit(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// "k1=v1,k2=v2" with percent-encoded values, blanks around keys and values
// ignored (the W3C Baggage-like format of OTEL_EXPORTER_OTLP_HEADERS and
// OTEL_RESOURCE_ATTRIBUTES).
absl::Status ParseKeyValues(const Source& source, absl::string_view value,
                            std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    const size_t eq = item.find('=');
    const absl::string_view key = absl::StripAsciiWhitespace(item.substr(0, eq));
    if (eq == absl::string_view::npos || key.empty()) {
      return Invalid(source, value, absl::StrCat("'", item, "' is not key=value"));
    }
    out->emplace_back(PercentDecode(key),
                      PercentDecode(absl::StripAsciiWhitespace(item.substr(eq + 1))));
  }
  return absl::OkStatus();
}

absl::Status ParseList(const Source& source, absl::string_view value,
                       const std::set<std::string>& allowed, std::vector<std::string>* out) {
  out->clear();
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(item));
    if (allowed.count(name) == 0) {
      return Invalid(source, value,
                     absl::StrCat("'", name, "' is not one of ", absl::StrJoin(allowed, ", ")));
    }
    out->push_back(name);
  }
  return absl::OkStatus();
}

// Adds the comma-separated header names of `value` to `out`, lower case,
// each once.
absl::Status AddHeaderNames(const Source& source, absl::string_view value,
                            std::vector<std::string>* out) {
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    const absl::string_view name = absl::StripAsciiWhitespace(part);
    if (!IsHeaderFieldName(std::string_view(name.data(), name.size()))) {
      return Invalid(source, value,
                     absl::StrCat("'", name, "' is not a header name (1 to ",
                                  kMaxConfiguredNameBytes,
                                  " letters, digits or !#$%&'*+-.^_`|~)"));
    }
    std::string lower = absl::AsciiStrToLower(name);
    if (std::find(out->begin(), out->end(), lower) == out->end()) out->push_back(std::move(lower));
  }
  return absl::OkStatus();
}

// The same for query parameter names; "none" drops the names before it,
// the default ones included.
absl::Status AddQueryParamNames(const Source& source, absl::string_view value,
                                std::vector<std::string>* out) {
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
    const absl::string_view name = absl::StripAsciiWhitespace(part);
    std::string lower = absl::AsciiStrToLower(name);
    if (lower == "none") {
      out->clear();
      continue;
    }
    if (!IsQueryParamName(std::string_view(name.data(), name.size()))) {
      return Invalid(source, value,
                     absl::StrCat("'", name, "' is not a query parameter name (1 to ",
                                  kMaxConfiguredNameBytes,
                                  " visible ASCII characters other than & ; = #)"));
    }
    if (std::find(out->begin(), out->end(), lower) == out->end()) out->push_back(std::move(lower));
  }
  return absl::OkStatus();
}

const char* DefaultQueryParamsText() {
  static const std::string text = [] {
    std::string out;
    for (const std::string_view name : DefaultRedactedQueryParams()) {
      if (!out.empty()) out.push_back(',');
      out.append(name);
    }
    return out;
  }();
  return text.c_str();
}

absl::Status SetString(absl::string_view v, const Source& source, std::string* out,
                       absl::string_view what) {
  if (v.empty()) return Invalid(source, v, absl::StrCat("expected ", what));
  *out = std::string(v);
  return absl::OkStatus();
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> kFlags = {
      // --- Output ----------------------------------------------------------
      {"console", nullptr, "on without an OTLP endpoint", "print one line per span on stdout",
       "Output",
       [](AgentConfig& c, absl::string_view, const Source&) {
         c.console = true;
         c.console_set = true;
         return absl::OkStatus();
       }},
      {"no-console", nullptr, "", "do not print spans on stdout", "Output",
       [](AgentConfig& c, absl::string_view, const Source&) {
         c.console = false;
         c.console_set = true;
         return absl::OkStatus();
       }},
      {"jsonl", "PATH", "off",
       "write each finished span as one JSON object per line to PATH ('-' for stdout, which "
       "turns the console lines off unless --console is given)",
       "Output",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.jsonl_path, "a file path or '-'");
       }},
      // --- Metrics ---------------------------------------------------------
      {"metrics-listen", "HOST:PORT", "0.0.0.0:9464",
       "serve Prometheus /metrics, /healthz, /readyz and /oom here ('off' for none)", "Metrics",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         if (v == "off" || v == "none") {
           c.metrics_listen.clear();
           return absl::OkStatus();
         }
         const size_t colon = v.rfind(':');
         uint16_t port = 0;
         if (colon == absl::string_view::npos ||
             !ParseNumber<uint16_t>(s, v.substr(colon + 1), 0, 65535, &port).ok()) {
           return Invalid(s, v, "expected HOST:PORT, e.g. 0.0.0.0:9464, or 'off'");
         }
         c.metrics_listen = std::string(v);
         return absl::OkStatus();
       },
       "LOUPE_METRICS_LISTEN"},
      {"max-series", "N", "2000",
       "attribute sets per metric; beyond it points go to an otel.metric.overflow series",
       "Metrics",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 1, 1000000, &c.max_series);
       }},
      {"resource-interval", "SECONDS", "10",
       "period of the CPU and memory metrics of traced processes and their containers "
       "(0: off)",
       "Metrics",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 0, 86400, &c.resource_interval_s);
       }},
      // --- OpenTelemetry ---------------------------------------------------
      {"otlp-endpoint", "URL", "none",
       "send traces, metrics and log records over OTLP to this collector (gRPC: "
       "http://host:4317; http/protobuf: http://host:4318, /v1/traces, /v1/metrics and "
       "/v1/logs are appended)",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.endpoint, "a URL");
       },
       "OTEL_EXPORTER_OTLP_ENDPOINT"},
      {"otlp-traces-endpoint", "URL", "none",
       "OTLP endpoint for traces only, used as given (no path appended)", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.traces_endpoint, "a URL");
       },
       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
      {"otlp-metrics-endpoint", "URL", "none",
       "OTLP endpoint for metrics only, used as given (no path appended)", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.metrics_endpoint, "a URL");
       },
       "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"},
      {"otlp-logs-endpoint", "URL", "none",
       "OTLP endpoint for log records (OOM kills) only, used as given (no path appended)",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.logs_endpoint, "a URL");
       },
       "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"},
      {"otlp-protocol", "PROTOCOL", "http/protobuf", "grpc or http/protobuf", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseProtocol(s, v, &c.otlp.protocol);
       },
       "OTEL_EXPORTER_OTLP_PROTOCOL"},
      {"otlp-headers", "K=V[,K=V...]", "none",
       "headers (gRPC metadata) sent with every export, values percent-encoded",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseKeyValues(s, v, &c.otlp.headers);
       },
       "OTEL_EXPORTER_OTLP_HEADERS"},
      {"otlp-timeout", "MS", "10000", "time limit of one export attempt, in milliseconds",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseMillis(s, v, &c.otlp.timeout);
       },
       "OTEL_EXPORTER_OTLP_TIMEOUT"},
      {"otlp-compression", "gzip|none", "none", "compress export requests", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseCompression(s, v, &c.otlp.compression);
       },
       "OTEL_EXPORTER_OTLP_COMPRESSION"},
      {"otlp-insecure", nullptr, "false",
       "gRPC without TLS even when the endpoint has no http:// scheme (variable: true/false)",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseBool(s, v, &c.otlp.insecure);
       },
       "OTEL_EXPORTER_OTLP_INSECURE"},
      {"otlp-certificate", "FILE", "system roots",
       "PEM file of the certificate authorities to trust for the collector's TLS",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.certificate_file, "a file path");
       },
       "OTEL_EXPORTER_OTLP_CERTIFICATE"},
      {"otlp-client-key", "FILE", "none", "PEM private key for mutual TLS", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.client_key_file, "a file path");
       },
       "OTEL_EXPORTER_OTLP_CLIENT_KEY"},
      {"otlp-client-certificate", "FILE", "none", "PEM certificate chain for mutual TLS",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.otlp.client_certificate_file, "a file path");
       },
       "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"},
      {"metric-export-interval", "MS", "60000", "period of OTLP metric exports, in milliseconds",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         absl::Status st = ParseMillis(s, v, &c.otlp.metric_export_interval);
         if (st.ok() && c.otlp.metric_export_interval.count() == 0) {
           return Invalid(s, v, "must be at least 1");
         }
         return st;
       },
       "OTEL_METRIC_EXPORT_INTERVAL"},
      {"metrics-temporality", "PREFERENCE", "cumulative",
       "OTLP metric temporality: cumulative, delta or lowmemory (histograms as delta)",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         const std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(v));
         if (t == "cumulative") {
           c.otlp.temporality = Temporality::kCumulative;
         } else if (t == "delta" || t == "lowmemory") {
           c.otlp.temporality = Temporality::kDelta;
         } else {
           return Invalid(s, v, "expected cumulative, delta or lowmemory");
         }
         return absl::OkStatus();
       },
       "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"},
      {"traces-exporter", "LIST", "otlp with an endpoint, else console",
       "where spans go: otlp, console, none", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseList(s, v, {"otlp", "console", "none"}, &c.otlp.traces_exporters);
       },
       "OTEL_TRACES_EXPORTER"},
      {"metrics-exporter", "LIST", "prometheus, plus otlp with an endpoint",
       "where RED metrics go: prometheus, otlp, none", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseList(s, v, {"otlp", "prometheus", "none"}, &c.otlp.metrics_exporters);
       },
       "OTEL_METRICS_EXPORTER"},
      {"logs-exporter", "LIST", "otlp with an endpoint, else none",
       "where log records of diagnosed events (OOM kills) go: otlp, none; the console "
       "line is always logged",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseList(s, v, {"otlp", "none"}, &c.otlp.logs_exporters);
       },
       "OTEL_LOGS_EXPORTER"},
      {"traces-sampler", "NAME", "parentbased_always_on",
       "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "
       "parentbased_traceidratio (metrics always count every request)",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source&) {
         c.otlp.sampler_name = std::string(absl::StripAsciiWhitespace(v));
         return absl::OkStatus();
       },
       "OTEL_TRACES_SAMPLER"},
      {"traces-sampler-arg", "RATIO", "1.0", "the sampling ratio of the traceidratio samplers",
       "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source&) {
         c.otlp.sampler_arg = std::string(absl::StripAsciiWhitespace(v));
         return absl::OkStatus();
       },
       "OTEL_TRACES_SAMPLER_ARG"},
      {"resource-attributes", "K=V[,K=V...]", "none",
       "attributes added to every resource (a process's own attributes win)", "OpenTelemetry",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseKeyValues(s, v, &c.resource_attributes);
       },
       "OTEL_RESOURCE_ATTRIBUTES"},
      // --- Capture ---------------------------------------------------------
      {"payload-bytes", "N", "4096",
       absl::StrCat("bytes of payload copied per syscall; longer messages are decoded from "
                    "their first N bytes (1..",
                    LOUPE_PAYLOAD_MAX, ")"),
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 1, LOUPE_PAYLOAD_MAX, &c.payload_bytes);
       }},
      {"payload-bytes-framed", "N", LOUPE_STRINGIFY(LOUPE_PAYLOAD_MAX),
       absl::StrCat("the same for HTTP/2, gRPC and database connections, whose message "
                    "headers can sit anywhere in a large read: losing one loses the framing (1..",
                    LOUPE_PAYLOAD_MAX, ")"),
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 1, LOUPE_PAYLOAD_MAX, &c.payload_bytes_framed);
       }},
      {"pid", "PID[,PID...]", "all", "trace only these processes (repeatable)", "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
           uint32_t pid = 0;
           if (absl::Status st = ParseNumber<uint32_t>(s, part, 1, 4194304, &pid); !st.ok()) {
             return st;
           }
           c.pids.push_back(pid);
         }
         return absl::OkStatus();
       }},
      {"port", "PORT[,PORT...]", "all",
       "trace only connections whose local or remote port is one of these (repeatable)",
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
           uint16_t port = 0;
           if (absl::Status st = ParseNumber<uint16_t>(s, part, 1, 65535, &port); !st.ok()) {
             return st;
           }
           c.ports.push_back(port);
         }
         return absl::OkStatus();
       }},
      {"ringbuf-bytes", "N", "16777216",
       "size of the kernel ring buffer; a power of two, at least 65536", "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         uint64_t n = 0;
         if (absl::Status st = ParseNumber<uint64_t>(s, v, 65536, 1ull << 30, &n); !st.ok()) {
           return st;
         }
         if ((n & (n - 1)) != 0) return Invalid(s, v, "must be a power of two");
         c.ringbuf_bytes = n;
         return absl::OkStatus();
       }},
      {"capture-url-query", nullptr, "off",
       "record the query string as url.query (it may carry secrets)", "Capture",
       [](AgentConfig& c, absl::string_view, const Source&) {
         c.capture_url_query = true;
         return absl::OkStatus();
       }},
      {"capture-headers", "NAME[,NAME...]", "none",
       absl::StrCat(
           "record these request and response headers on HTTP spans as "
           "http.request.header.NAME and http.response.header.NAME (gRPC: "
           "rpc.grpc.request.metadata.NAME, ...): one string, several values joined with ', ', "
           "at most ",
           kMaxCapturedValueBytes, " bytes; at most ", kMaxCapturedHeaders,
           " names; redacted headers only as REDACTED (repeatable)"),
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         if (absl::Status st = AddHeaderNames(s, v, &c.capture_headers); !st.ok()) return st;
         if (c.capture_headers.size() > kMaxCapturedHeaders) {
           return Invalid(s, v, absl::StrCat("at most ", kMaxCapturedHeaders, " header names"));
         }
         return absl::OkStatus();
       },
       "LOUPE_CAPTURE_HEADERS"},
      {"redact-headers", "NAME[,NAME...]", "authorization,proxy-authorization,cookie,set-cookie",
       "captured headers whose value is recorded as REDACTED, added to the default ones, which "
       "are always redacted (repeatable)",
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return AddHeaderNames(s, v, &c.redact_headers);
       },
       "LOUPE_REDACT_HEADERS"},
      {"redact-query-params", "NAME[,NAME...]", DefaultQueryParamsText(),
       "query parameters whose value becomes REDACTED in url.query, matched "
       "case-insensitively; added to the default list, 'none' drops the names before it "
       "(repeatable)",
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return AddQueryParamNames(s, v, &c.redact_query_params);
       },
       "LOUPE_REDACT_QUERY_PARAMS"},
      {"no-sanitize-sql", nullptr, "sanitized",
       "record SQL statements with their literals (values, possibly secrets) instead of '?'",
       "Capture",
       [](AgentConfig& c, absl::string_view, const Source&) {
         c.sanitize_sql = false;
         return absl::OkStatus();
       }},
      {"redis-capture-key", nullptr, "off",
       "record the first key of Redis data commands in db.query.text (keys may be personal "
       "data)",
       "Capture",
       [](AgentConfig& c, absl::string_view, const Source&) {
         c.redis_capture_key = true;
         return absl::OkStatus();
       }},
      {"max-connections", "N", "16384",
       "connections decoded at once; the least recently active is dropped beyond it",
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 16, 1u << 22, &c.max_connections);
       }},
      {"skip-hooks", "NAME[,NAME...]", "none",
       "do not attach these syscall tracepoints (e.g. sys_enter_sendfile64,sys_exit_sendfile64); "
       "for troubleshooting a kernel where one misbehaves",
       "Capture",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty())) {
           if (!absl::StartsWith(part, "sys_enter_") && !absl::StartsWith(part, "sys_exit_")) {
             return Invalid(s, part, "expected a syscall tracepoint name such as sys_enter_readv");
           }
           c.skip_hooks.emplace_back(part);
         }
         return absl::OkStatus();
       }},
      // --- Recording -------------------------------------------------------
      {"record", "FILE", "off",
       "also write the raw kernel events and process metadata to FILE, for --replay and bug "
       "reports; it holds payload bytes as sent, secrets included (nothing is redacted): "
       "treat it as sensitive",
       "Recording",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.record_path, "a file path");
       }},
      {"replay", "FILE", "off",
       "decode a recording made with --record instead of tracing the kernel (no privileges "
       "needed)",
       "Recording",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return SetString(v, s, &c.replay_path, "a file path");
       }},
      // --- Logging ---------------------------------------------------------
      {"log-level", "LEVEL", "info", "debug, info, warn or error", "Logging",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         if (!ParseLogLevel(std::string_view(v.data(), v.size()), &c.log_level)) {
           return Invalid(s, v, "expected debug, info, warn or error");
         }
         return absl::OkStatus();
       }},
      {"stats-interval", "SECONDS", "10",
       "period of the self-telemetry log line (0: only at exit)", "Logging",
       [](AgentConfig& c, absl::string_view v, const Source& s) {
         return ParseNumber<uint32_t>(s, v, 0, 86400, &c.stats_interval_s);
       }},
  };
  return kFlags;
}

const Flag* FindFlag(absl::string_view name) {
  for (const Flag& f : Flags()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

// Whether the command line gives flag `name`. Its variable is then not read
// at all, so that a repeatable flag's values replace the variable's instead
// of adding to them.
bool GivenOnCommandLine(int argc, const char* const* argv, absl::string_view name) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--")) continue;
    const size_t eq = arg.find('=');
    const absl::string_view flag = arg.substr(0, eq);
    if (flag == name) return true;
    // A separate value is not a flag, even one that looks like it.
    const Flag* f = FindFlag(flag);
    if (f != nullptr && f->arg != nullptr && eq == absl::string_view::npos) ++i;
  }
  return false;
}

// Per-signal variables, which exist only in the environment; they take
// precedence over the generic OTEL_EXPORTER_OTLP_* value unless the generic
// setting was given as a flag.
struct SignalVariable {
  const char* suffix;  // after OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_
  const char* generic_flag;
  const char* help;
};
constexpr SignalVariable kSignalVariables[] = {
    {"PROTOCOL", "otlp-protocol", "grpc or http/protobuf"},
    {"HEADERS", "otlp-headers", "K=V,... headers"},
    {"TIMEOUT", "otlp-timeout", "milliseconds per attempt"},
    {"COMPRESSION", "otlp-compression", "gzip or none"},
    {"INSECURE", "otlp-insecure", "true or false"},
    {"CERTIFICATE", "otlp-certificate", "CA PEM file"},
    {"CLIENT_KEY", "otlp-client-key", "mTLS key PEM file"},
    {"CLIENT_CERTIFICATE", "otlp-client-certificate", "mTLS certificate PEM file"},
};

struct EnvOnlyVariable {
  const char* name;
  const char* fallback;
  const char* help;
};
constexpr EnvOnlyVariable kEnvOnly[] = {
    {"OTEL_METRIC_EXPORT_TIMEOUT", "30000",
     "milliseconds an OTLP metric export may take, retries included"},
    {"OTEL_BSP_SCHEDULE_DELAY", "1000", "milliseconds a span waits for its batch"},
    {"OTEL_BSP_EXPORT_TIMEOUT", "30000",
     "milliseconds a span batch export may take, retries included"},
    {"OTEL_BSP_MAX_QUEUE_SIZE", "2048", "spans queued for OTLP; beyond it spans are dropped"},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512", "spans per OTLP request"},
};

bool Contains(const std::vector<std::string>& list, const char* item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

absl::Status ApplyEnvOnly(AgentConfig& c, const Environment& env) {
  auto get = [&](const char* name) -> const char* { return env(name); };
  if (const char* v = get("OTEL_METRIC_EXPORT_TIMEOUT")) {
    if (auto s = ParseMillis("OTEL_METRIC_EXPORT_TIMEOUT", v, &c.otlp.metric_export_timeout);
        !s.ok()) {
      return s;
    }
  }
  if (const char* v = get("OTEL_BSP_SCHEDULE_DELAY")) {
    if (auto s = ParseMillis("OTEL_BSP_SCHEDULE_DELAY", v, &c.otlp.batch.schedule_delay);
        !s.ok()) {
      return s;
    }
  }
  if (const char* v = get("OTEL_BSP_EXPORT_TIMEOUT")) {
    if (auto s = ParseMillis("OTEL_BSP_EXPORT_TIMEOUT", v, &c.otlp.batch.retry_deadline);
        !s.ok()) {
      return s;
    }
  }
  if (const char* v = get("OTEL_BSP_MAX_QUEUE_SIZE")) {
    if (auto s = ParseNumber<size_t>("OTEL_BSP_MAX_QUEUE_SIZE", v, 1, 1 << 22,
                                     &c.otlp.batch.max_queue_size);
        !s.ok()) {
      return s;
    }
  }
  if (const char* v = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")) {
    if (auto s = ParseNumber<size_t>("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", v, 1, 1 << 22,
                                     &c.otlp.batch.max_export_batch_size);
        !s.ok()) {
      return s;
    }
  }
  // The specification: a batch larger than the queue is clamped to it.
  c.otlp.batch.max_export_batch_size =
      std::min(c.otlp.batch.max_export_batch_size, c.otlp.batch.max_queue_size);
  return absl::OkStatus();
}

// One signal's endpoint settings: generic inputs, overridden by that
// signal's variables unless a flag set the generic value.
absl::StatusOr<OtlpEndpointConfig> ResolveSignal(const AgentConfig& c, OtlpSignal signal,
                                                 const Environment& env,
                                                 const std::set<std::string>& flags_given) {
  const OtlpInputs& in = c.otlp;
  OtlpEndpointConfig out;
  out.protocol = in.protocol;
  out.headers = in.headers;
  out.timeout = in.timeout;
  out.compression = in.compression;
  out.insecure = in.insecure;
  out.certificate_file = in.certificate_file;
  out.client_key_file = in.client_key_file;
  out.client_certificate_file = in.client_certificate_file;
  std::string prefix = "OTEL_EXPORTER_OTLP_TRACES_";
  const std::string* specific_endpoint = &in.traces_endpoint;
  const char* path = "v1/traces";
  switch (signal) {
    case OtlpSignal::kTraces:
      break;
    case OtlpSignal::kMetrics:
      prefix = "OTEL_EXPORTER_OTLP_METRICS_";
      specific_endpoint = &in.metrics_endpoint;
      path = "v1/metrics";
      break;
    case OtlpSignal::kLogs:
      prefix = "OTEL_EXPORTER_OTLP_LOGS_";
      specific_endpoint = &in.logs_endpoint;
      path = "v1/logs";
      break;
  }
  for (const SignalVariable& var : kSignalVariables) {
    if (flags_given.count(var.generic_flag) != 0) continue;
    const std::string name = prefix + var.suffix;
    const char* value = env(name.c_str());
    if (value == nullptr) continue;
    absl::Status s;
    const std::string suffix = var.suffix;
    if (suffix == "PROTOCOL") {
      s = ParseProtocol(name, value, &out.protocol);
    } else if (suffix == "HEADERS") {
      s = ParseKeyValues(name, value, &out.headers);
    } else if (suffix == "TIMEOUT") {
      s = ParseMillis(name, value, &out.timeout);
    } else if (suffix == "COMPRESSION") {
      s = ParseCompression(name, value, &out.compression);
    } else if (suffix == "INSECURE") {
      s = ParseBool(name, value, &out.insecure);
    } else if (suffix == "CERTIFICATE") {
      out.certificate_file = value;
    } else if (suffix == "CLIENT_KEY") {
      out.client_key_file = value;
    } else if (suffix == "CLIENT_CERTIFICATE") {
      out.client_certificate_file = value;
    }
    if (!s.ok()) return s;
  }
  const std::string& specific = *specific_endpoint;
  if (!specific.empty()) {
    out.endpoint = specific;  // used as given (specification)
  } else {
    std::string base = in.endpoint;
    if (base.empty()) {
      base = out.protocol == OtlpProtocol::kGrpc ? "http://localhost:4317"
                                                 : "http://localhost:4318";
    }
    if (out.protocol == OtlpProtocol::kHttpProtobuf) {
      // The base URL gets the signal's path appended (specification,
      // "Endpoint URLs for OTLP/HTTP").
      if (!absl::EndsWith(base, "/")) base.push_back('/');
      base += path;
    }
    out.endpoint = base;
  }
  if (out.client_key_file.empty() != out.client_certificate_file.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs both a client key and a client certificate "
        "(--otlp-client-key/OTEL_EXPORTER_OTLP_CLIENT_KEY and "
        "--otlp-client-certificate/OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)");
  }
  return out;
}

absl::Status Resolve(AgentConfig& c, const Environment& env,
                     const std::set<std::string>& flags_given) {
  if (absl::Status s = ApplyEnvOnly(c, env); !s.ok()) return s;
  absl::StatusOr<SamplerConfig> sampler = ParseSampler(c.otlp.sampler_name, c.otlp.sampler_arg);
  if (!sampler.ok()) return sampler.status();
  c.sampler = *sampler;

  const OtlpInputs& in = c.otlp;
  std::vector<std::string> traces = in.traces_exporters;
  if (traces.empty()) {
    traces.push_back(!in.endpoint.empty() || !in.traces_endpoint.empty() ? "otlp" : "console");
  }
  std::vector<std::string> metrics = in.metrics_exporters;
  if (metrics.empty()) {
    metrics.push_back("prometheus");
    if (!in.endpoint.empty() || !in.metrics_endpoint.empty()) metrics.push_back("otlp");
  }
  std::vector<std::string> logs = in.logs_exporters;
  if (logs.empty() && (!in.endpoint.empty() || !in.logs_endpoint.empty())) logs.push_back("otlp");
  if (!c.console_set) c.console = Contains(traces, "console");
  if (c.jsonl_path == "-" && !c.console_set) c.console = false;
  if (!Contains(metrics, "prometheus")) c.metrics_listen.clear();

  if (Contains(traces, "otlp")) {
    absl::StatusOr<OtlpEndpointConfig> endpoint =
        ResolveSignal(c, OtlpSignal::kTraces, env, flags_given);
    if (!endpoint.ok()) return endpoint.status();
    OtlpTracesConfig t;
    t.endpoint = *endpoint;
    t.batch = in.batch;
    c.otlp_traces = t;
  }
  if (Contains(metrics, "otlp")) {
    absl::StatusOr<OtlpEndpointConfig> endpoint =
        ResolveSignal(c, OtlpSignal::kMetrics, env, flags_given);
    if (!endpoint.ok()) return endpoint.status();
    OtlpMetricsConfig m;
    m.endpoint = *endpoint;
    m.export_interval = in.metric_export_interval;
    m.temporality = in.temporality;
    m.retry_deadline = std::min(in.metric_export_timeout, in.metric_export_interval);
    c.otlp_metrics = m;
  }
  if (Contains(logs, "otlp")) {
    absl::StatusOr<OtlpEndpointConfig> endpoint =
        ResolveSignal(c, OtlpSignal::kLogs, env, flags_given);
    if (!endpoint.ok()) return endpoint.status();
    OtlpLogsConfig l;
    l.endpoint = *endpoint;
    // OOM kills are rare: the span batching defaults suit them (the
    // OTEL_BLRP_* variables are not read).
    c.otlp_logs = l;
  }
  return absl::OkStatus();
}

}  // namespace

Environment ProcessEnvironment() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

absl::StatusOr<AgentConfig> ParseFlags(int argc, const char* const* argv,
                                       const Environment& env) {
  AgentConfig config;
  // Environment first, so that flags override it.
  for (const Flag& flag : Flags()) {
    if (flag.env == nullptr || GivenOnCommandLine(argc, argv, flag.name)) continue;
    const char* value = env(flag.env);
    if (value == nullptr) continue;
    if (flag.arg == nullptr) {
      // A switch's variable says true or false.
      bool on = false;
      if (absl::Status s = ParseBool(flag.env, value, &on); !s.ok()) return s;
      if (!on) continue;
    }
    if (absl::Status s = flag.set(config, value, flag.env); !s.ok()) return s;
  }
  std::set<std::string> flags_given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      config.show_help = true;
      continue;
    }
    if (arg == "--version") {
      config.show_version = true;
      continue;
    }
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (see loupe --help)"));
    }
    arg.remove_prefix(2);
    absl::string_view name = arg, value;
    bool has_inline_value = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_inline_value = true;
    }
    const Flag* flag = FindFlag(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see loupe --help)"));
    }
    if (flag->arg == nullptr) {
      if (has_inline_value) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
      value = "true";
    } else if (!has_inline_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value (", flag->arg, ")"));
      }
      value = argv[++i];
    }
    if (absl::Status s = flag->set(config, value, absl::StrCat("--", name)); !s.ok()) return s;
    flags_given.insert(flag->name);
  }
  if (!config.replay_path.empty() && !config.record_path.empty()) {
    return absl::InvalidArgumentError("--record and --replay cannot be combined");
  }
  if (absl::Status s = Resolve(config, env, flags_given); !s.ok()) return s;
  return config;
}

std::string HelpText() {
  std::string out = absl::StrCat(
      "Usage: loupe [FLAGS]\n\n"
      "Loupe traces every process on this host through eBPF syscall tracepoints and turns\n"
      "the HTTP/1.x, HTTP/2, gRPC, PostgreSQL, MySQL and Redis exchanges it sees into\n"
      "OpenTelemetry spans and RED metrics, with no change to the applications, and\n"
      "reports OOM kills. Live tracing needs root (CAP_BPF and CAP_PERFMON, or\n"
      "CAP_SYS_ADMIN). A flag overrides the environment variable shown after it.\n");
  std::string_view section;
  for (const Flag& f : Flags()) {
    if (section != f.section) {
      section = f.section;
      absl::StrAppend(&out, "\n", f.section, ":\n");
    }
    std::string left = absl::StrCat("  --", f.name, f.arg ? absl::StrCat(" ", f.arg) : "");
    if (left.size() < 34) left.resize(34, ' ');
    absl::StrAppend(&out, left, " ", f.help);
    if (f.fallback[0] != '\0') absl::StrAppend(&out, " [default: ", f.fallback, "]");
    if (f.env != nullptr) absl::StrAppend(&out, " [env: ", f.env, "]");
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, "\nEnvironment only:\n");
  for (const SignalVariable& var : kSignalVariables) {
    absl::StrAppend(&out, "  OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_", var.suffix, ": ",
                    var.help,
                    " for one signal (overrides the generic variable)\n");
  }
  for (const EnvOnlyVariable& var : kEnvOnly) {
    absl::StrAppend(&out, "  ", var.name, ": ", var.help, " [default: ", var.fallback, "]\n");
  }
  absl::StrAppend(&out,
                  "\nOther:\n"
                  "  -h, --help                         show this help and exit\n"
                  "  --version                          show the version and exit\n"
                  "\nFlags take their value as '--flag VALUE' or '--flag=VALUE'.\n"
                  "SIGINT or SIGTERM flushes what is buffered and exits with status 0.\n");
  return out;
}

std::string VersionText() {
  return absl::StrCat("loupe ", LOUPE_VERSION, " (kernel event ABI ", LOUPE_ABI_VERSION, ")\n");
}

}  // namespace loupe
