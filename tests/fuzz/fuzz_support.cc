#include "tests/fuzz/fuzz_support.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "decoders/model/http_capture.h"

namespace loupe::fuzz {

void Fail(const char* what, uint64_t a, uint64_t b) {
  std::fprintf(stderr, "loupe fuzz invariant broken: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  std::abort();
}

namespace {

// Spans must not depend on the wall clock: a crash has to reproduce.
uint64_t FixedUnixNanos() { return 1'700'000'000'000'000'000ull; }

constexpr std::string_view kConfiguredRedactedHeader = "x-api-key";
constexpr std::string_view kConfiguredRedactedParam = "session";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsRedactedHeader(std::string_view name) {
  if (name == kConfiguredRedactedHeader) return true;
  for (std::string_view always : kAlwaysRedactedHeaders) {
    if (name == always) return true;
  }
  return false;
}

bool IsRedactedParam(std::string_view raw_name) {
  // Plain names only; percent-encoded ones are the library's own tests'.
  const std::string name = Lower(raw_name);
  if (name == kConfiguredRedactedParam) return true;
  for (std::string_view listed : DefaultRedactedQueryParams()) {
    if (name == listed) return true;
  }
  return false;
}

// Credentials never leave the agent: a captured header that must be
// redacted says "REDACTED", and so does every listed url.query parameter.
// Returns how many values it checked.
size_t CheckRedaction(const SpanRecord& record) {
  size_t checked = 0;
  static constexpr std::string_view kHeaderPrefixes[] = {
      "http.request.header.", "http.response.header.", "rpc.grpc.request.metadata.",
      "rpc.grpc.response.metadata."};
  for (const Attribute& attribute : record.attributes.items()) {
    const std::string_view key = attribute.key;
    const auto* value = std::get_if<std::string>(&attribute.value);
    for (std::string_view prefix : kHeaderPrefixes) {
      if (key.starts_with(prefix) && IsRedactedHeader(key.substr(prefix.size())) &&
          (value == nullptr || *value != kRedacted)) {
        Fail("a credential header left the agent unredacted", key.size());
      }
      if (key.starts_with(prefix)) ++checked;
    }
    if (key != "url.query" || value == nullptr) continue;
    std::string_view query = *value;
    while (true) {
      const size_t end = std::min(query.find_first_of("&;"), query.size());
      const std::string_view param = query.substr(0, end);
      const size_t eq = param.find('=');
      if (eq != std::string_view::npos && IsRedactedParam(param.substr(0, eq))) {
        if (param.substr(eq + 1) != kRedacted) {
          Fail("a listed query parameter left the agent unredacted", eq);
        }
        ++checked;
      }
      if (end == query.size()) break;
      query.remove_prefix(end + 1);
    }
  }
  return checked;
}

}  // namespace

void CaptureEverything(DecoderOptions& options) {
  options.capture_url_query = true;
  options.redis_capture_key = true;
  HttpCapture::Settings settings;
  settings.capture_headers = {"Authorization", "proxy-authorization", "cookie",
                              "Set-Cookie",    "x-api-key",           "user-agent",
                              "content-type",  "grpc-status",         "x-request-id"};
  settings.redact_headers = {std::string(kConfiguredRedactedHeader)};
  for (std::string_view name : DefaultRedactedQueryParams()) {
    settings.redact_query_params.emplace_back(name);
  }
  settings.redact_query_params.emplace_back(kConfiguredRedactedParam);
  options.http_capture = std::make_shared<const HttpCapture>(settings);
}

// One resource per process, as the agent's process table gives.
class Pipeline::Resources : public ResourceProvider {
 public:
  std::shared_ptr<const Resource> ForProcess(uint32_t tgid) override {
    std::shared_ptr<const Resource>& slot = by_tgid_[tgid];
    if (slot == nullptr) {
      auto resource = std::make_shared<Resource>();
      resource->attributes.Set("service.name", "svc-" + std::to_string(tgid));
      slot = std::move(resource);
    }
    return slot;
  }

 private:
  std::map<uint32_t, std::shared_ptr<const Resource>> by_tgid_;
};

// What tests/decoders/checking_sink.h checks in the unit tests, here for
// every input: the ContextLinker matches a record to its announcement by
// key and trusts that the two agree.
class Pipeline::CheckingSink : public SpanSink {
 public:
  explicit CheckingSink(SpanSink& out) : out_(out) {}

  void OnExchangeStart(const ExchangeStart& start) override {
    if (start.key.seq == 0) Fail("exchange announced with seq 0", start.key.conn_id);
    Exchanges& conn = conns_[start.key.conn_id];
    if (!conn.starts.emplace(start.key.seq, start).second) {
      Fail("exchange announced twice", start.key.conn_id, start.key.seq);
    }
    out_.OnExchangeStart(start);
  }

  void OnSpan(SpanRecord&& record) override {
    redaction_checks_ += CheckRedaction(record);
    if (record.key.seq != 0) {
      if (record.key.conn_id != record.conn_id) {
        Fail("span key names another connection", record.key.conn_id, record.conn_id);
      }
      Exchanges& conn = conns_[record.key.conn_id];
      auto it = conn.starts.find(record.key.seq);
      if (it == conn.starts.end()) Fail("span with a key never announced", record.key.seq);
      const ExchangeStart& start = it->second;
      if (start.key.stream_id != record.key.stream_id) {
        Fail("span and announcement differ in stream id", start.key.stream_id,
             record.key.stream_id);
      }
      if (start.kind != record.kind) Fail("span and announcement differ in kind", record.key.seq);
      if (start.tgid != record.tgid || start.tid != record.tid) {
        Fail("span and announcement differ in process or thread", record.key.seq);
      }
      if (start.start_mono_ns != record.start_mono_ns) {
        Fail("span and announcement differ in start", start.start_mono_ns, record.start_mono_ns);
      }
      if (!(start.tuple == record.tuple)) Fail("span and announcement differ in socket");
      if (start.context != record.context) Fail("span and announcement differ in context");
      if (!conn.ended.insert({record.key.seq, true}).second) {
        Fail("two spans end one exchange", record.key.seq);
      }
    }
    out_.OnSpan(std::move(record));
  }

  size_t redaction_checks() const { return redaction_checks_; }

  void OnConnectionEnd(uint64_t conn_id, uint64_t last_active_ns) override {
    // A connection id may come back (a hostile event stream reuses it); its
    // sequence numbers start again.
    conns_.erase(conn_id);
    out_.OnConnectionEnd(conn_id, last_active_ns);
  }

 private:
  struct Exchanges {
    absl::flat_hash_map<uint64_t, ExchangeStart> starts;  // by seq
    absl::flat_hash_map<uint64_t, bool> ended;
  };
  SpanSink& out_;
  absl::flat_hash_map<uint64_t, Exchanges> conns_;
  size_t redaction_checks_ = 0;
};

Pipeline::Pipeline(const TrackerOptions& options, const LinkerOptions& linker)
    : options_(options), resources_(std::make_unique<Resources>()) {
  MetricsOptions metrics;
  metrics.now_unix_ns = &FixedUnixNanos;
  metrics_ = std::make_unique<MetricsRecorder>(metrics);
  assembler_ = std::make_unique<SpanAssembler>(*resources_, *metrics_,
                                               /*realtime_offset_ns=*/1'000'000'000'000, 1);
  linker_ = std::make_unique<ContextLinker>(linker, *assembler_, /*pairs=*/nullptr, 2);
  checking_ = std::make_unique<CheckingSink>(*linker_);
  tracker_ = std::make_unique<ConnTracker>(options_, *checking_);
}

// Members go in reverse order: the tracker (which may still hold decoders)
// before the sinks it points at.
Pipeline::~Pipeline() = default;

void Pipeline::Advance(uint64_t now_ns) {
  tracker_->Tick(now_ns);
  linker_->Advance(now_ns);
  CheckBounds();
}

void Pipeline::CheckBounds() const {
  // conn_tracker.h: at most 2 * max_buffered_bytes_per_direction per
  // connection between calls.
  const size_t bound = tracker_->open_connections() * 2 * options_.max_buffered_bytes_per_direction;
  if (tracker_->buffered_bytes() > bound) {
    Fail("tracker holds more bytes than its bound", tracker_->buffered_bytes(), bound);
  }
}

void Pipeline::Finish(uint64_t now_ns) {
  CheckBounds();
  tracker_->CloseAll();
  if (tracker_->open_connections() != 0 || tracker_->buffered_bytes() != 0) {
    Fail("connections left after CloseAll", tracker_->open_connections());
  }
  linker_->Advance(now_ns);
  linker_->Flush();
  const TrackerStats stats = tracker_->stats();
  // For a person replaying one input: what it did.
  static const bool verbose = std::getenv("LOUPE_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr,
                 "connections %llu, messages %llu, exchanges %llu, parse errors %llu, "
                 "resyncs %llu, gap bytes %llu, spans out %llu, captured headers and "
                 "redacted parameters checked %zu\n",
                 static_cast<unsigned long long>(stats.connections_opened),
                 static_cast<unsigned long long>(stats.protocol.messages),
                 static_cast<unsigned long long>(stats.protocol.records),
                 static_cast<unsigned long long>(stats.protocol.parse_errors),
                 static_cast<unsigned long long>(stats.protocol.resyncs),
                 static_cast<unsigned long long>(stats.gap_bytes),
                 static_cast<unsigned long long>(assembler_->spans_produced()),
                 checking_->redaction_checks());
  }
  if (stats.protocol.records > stats.protocol.messages) {
    Fail("more exchanges than messages", stats.protocol.records, stats.protocol.messages);
  }
  // The exporters read the metrics back; a histogram's buckets add up to its
  // count.
  const MetricsSnapshot snapshot = metrics_->CollectCumulative(FixedUnixNanos());
  for (const ResourceMetrics& resource : snapshot.resources) {
    for (const MetricData& metric : resource.metrics) {
      for (const HistogramPoint& point : metric.points) {
        uint64_t in_buckets = 0;
        for (uint64_t n : point.bucket_counts) in_buckets += n;
        if (in_buckets != point.count) Fail("histogram buckets do not add up", in_buckets, point.count);
      }
    }
  }
}

}  // namespace loupe::fuzz
