#include "decoders/model/metrics.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace loupe {

const std::vector<double>& DurationBucketsSeconds() {
  // OpenTelemetry semantic conventions, http.server.request.duration and
  // http.client.request.duration: ExplicitBucketBoundaries advice.
  static const auto* const kBounds = new std::vector<double>{
      0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};
  return *kBounds;
}

const std::vector<double>& RpcDurationBucketsMilliseconds() {
  // The advisory boundaries of rpc.server.duration / rpc.client.duration
  // (semantic conventions v1.37, in ms).
  static const auto* const kBounds = new std::vector<double>{
      0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000};
  return *kBounds;
}

const std::vector<double>& DbDurationBucketsSeconds() {
  // The advisory boundaries of db.client.operation.duration (semantic
  // conventions, "Database metrics").
  static const auto* const kBounds =
      new std::vector<double>{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
  return *kBounds;
}

const std::vector<double>& ServiceGraphBucketsSeconds() {
  // Tempo's metrics-generator default for traces_service_graph_request_*_seconds
  // (exponential, 0.1 s doubling 8 times), so dashboards built for Tempo's
  // series read ours with the same resolution.
  static const auto* const kBounds =
      new std::vector<double>{0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8};
  return *kBounds;
}

const std::vector<double>& BodySizeBucketsBytes() {
  // The conventions give no advice for body sizes, and the SDK default
  // (0, 5, 10, 25, ... 10000) is made for milliseconds: every body above
  // 10 kB would land in +Inf. Powers of 4 from 64 B to 64 MiB instead, plus
  // 0 on its own because empty bodies (HEAD, 204, 304, bodiless POSTs) are
  // common and telling them apart from tiny ones matters. A factor of 4 keeps
  // the bucket count (13) close to the duration histogram's (15), so a series
  // costs about the same, at a resolution of one bucket per 2 bits of size;
  // the steps at 4 KiB, 16 KiB and 64 KiB line up with pages, TLS records
  // and socket buffers, and the exact total is in the sum anyway.
  static const auto* const kBounds = new std::vector<double>{
      0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
  return *kBounds;
}

const ObservedInstrumentInfo& ObservedInstrumentInfoOf(ObservedInstrument instrument) {
  // Names and units: semantic conventions, "OS process metrics" and
  // "Container metrics". container.memory.usage is a Counter there, but it
  // is a level that goes down as well as up: a non-monotonic sum here, so
  // that Prometheus sees a gauge (a counter would read every drop as a
  // reset). The conventions have no names for a cgroup's limit, CFS
  // throttling or OOM kills: loupe.container.*.
  static constexpr std::array<ObservedInstrumentInfo, kObservedInstrumentCount> kInfo = {{
      {"process.cpu.time", "CPU time used by the process, by mode.", "s", true},
      {"process.memory.usage", "Physical memory in use by the process (resident set size).",
       "By", false},
      {"process.memory.virtual", "Virtual memory mapped by the process.", "By", false},
      {"process.paging.faults", "Page faults taken by the process, by type.", "{fault}", true},
      {"process.thread.count", "Threads of the process.", "{thread}", false},
      {"container.cpu.time", "CPU time used by the container's cgroup, by mode.", "s", true},
      {"container.memory.usage", "Memory charged to the container's cgroup, page cache included.",
       "By", false},
      {"container.memory.working_set",
       "Memory usage of the container's cgroup minus its inactive file pages.", "By", false},
      {"container.memory.rss", "Anonymous memory of the container's cgroup.", "By", false},
      {"loupe.container.memory.limit", "Memory limit of the container's cgroup.", "By", false},
      {"loupe.container.cpu.periods", "CFS enforcement periods the cgroup had runnable tasks in.",
       "{period}", true},
      {"loupe.container.cpu.throttled.periods",
       "CFS enforcement periods in which the cgroup was throttled.", "{period}", true},
      {"loupe.container.cpu.throttled.time", "Time the cgroup's tasks spent throttled.", "s",
       true},
      {"loupe.container.memory.oom_kills", "Processes of the cgroup killed by the OOM killer.",
       "{kill}", true},
  }};
  const size_t i = static_cast<size_t>(instrument);
  return kInfo[i < kInfo.size() ? i : 0];
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kSlots = MetricsRecorder::kMaxDeltaReadersWithMinMax;
// A full table looks for idle series at most this often (span time): a
// burst of new attribute sets must not turn every point into a table scan.
constexpr uint64_t kSweepIntervalNs = 1'000'000'000;
// Resource pointers remembered for the fast path; the cache is simply
// cleared when full (a miss costs one hash of the resource's attributes).
constexpr size_t kMaxCachedResourcePointers = 4096;

uint64_t RealtimeNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// ---- Attribute values of a series -----------------------------------------
//
// Every instrument family has a fixed schema (the attribute keys it may
// carry, in output order), so a series' attribute set is an array of values
// in schema order. Lookups borrow the values from the span (ValueView: no
// copy, no allocation); a new series stores its own copy (StoredValue).

enum class ValueType : uint8_t { kAbsent, kString, kInt };

struct ValueView {
  ValueType type = ValueType::kAbsent;
  std::string_view str;
  int64_t num = 0;
};

struct StoredValue {
  ValueType type = ValueType::kAbsent;
  std::string str;
  int64_t num = 0;
};

// HTTP metrics (semantic conventions, "HTTP metrics"): the attributes of
// http.{server,client}.request.duration and the body size histograms.
enum HttpAttr : size_t {
  kMethod,
  kStatusCode,
  kRoute,
  kScheme,         // server only: Required there, Opt-In for clients
  kServerAddress,  // client only: Opt-In for servers
  kServerPort,
  kProtocolVersion,
  kErrorType,
  kHttpAttrCount
};
constexpr std::array<std::string_view, kHttpAttrCount> kHttpAttrKeys = {"http.request.method",
                                                                        "http.response.status_code",
                                                                        "http.route",
                                                                        "url.scheme",
                                                                        "server.address",
                                                                        "server.port",
                                                                        "network.protocol.version",
                                                                        "error.type"};

// RPC metrics (semantic conventions v1.37, "RPC metrics": rpc.server.duration
// and rpc.client.duration in ms, the names and attributes the RPC spans use).
enum RpcAttr : size_t {
  kRpcSystem,
  kRpcService,
  kRpcMethod,
  kRpcGrpcStatus,
  kRpcServerAddress,  // client only
  kRpcServerPort,
  kRpcProtocolVersion,
  kRpcErrorType,
  kRpcAttrCount
};
constexpr std::array<std::string_view, kRpcAttrCount> kRpcAttrKeys = {
    "rpc.system",          "rpc.service", "rpc.method",  "rpc.grpc.status_code", "server.address",
    "server.port",         "network.protocol.version",    "error.type"};

// Database client metrics (semantic conventions, "Database metrics"):
// db.client.operation.duration with the span's database attributes.
enum DbAttr : size_t {
  kDbSystem,
  kDbNamespace,
  kDbOperation,
  kDbCollection,
  kDbStatusCode,
  kDbServerAddress,
  kDbServerPort,
  kDbErrorType,
  kDbAttrCount
};
constexpr std::array<std::string_view, kDbAttrCount> kDbAttrKeys = {
    "db.system.name",          "db.namespace",   "db.operation.name", "db.collection.name",
    "db.response.status_code", "server.address", "server.port",       "error.type"};

// Service graph (Tempo / Collector servicegraph): the two services of an edge.
enum ServiceGraphAttr : size_t { kGraphClient, kGraphServer, kGraphAttrCount };
constexpr std::array<std::string_view, kGraphAttrCount> kGraphAttrKeys = {"client", "server"};

constexpr size_t kMaxAttrs = std::max<size_t>(
    {static_cast<size_t>(kHttpAttrCount), static_cast<size_t>(kRpcAttrCount),
     static_cast<size_t>(kDbAttrCount), static_cast<size_t>(kGraphAttrCount)});
using ValueViews = std::array<ValueView, kMaxAttrs>;
using StoredValues = std::array<StoredValue, kMaxAttrs>;

struct HashableViews {
  const ValueViews* values;
  template <typename H>
  friend H AbslHashValue(H h, const HashableViews& x) {
    for (const ValueView& v : *x.values) {
      h = H::combine(std::move(h), static_cast<uint8_t>(v.type),
                     absl::string_view(v.str.data(), v.str.size()), v.num);
    }
    return h;
  }
};

size_t SeriesHash(size_t values_hash, uint64_t resource_id) {
  return absl::Hash<std::pair<size_t, uint64_t>>{}({values_hash, resource_id});
}

// Equal strings, without std::string_view::compare's out-of-line call and
// three-way result: this runs for every attribute of every lookup.
bool SameString(std::string_view a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool SameValue(const StoredValue& a, const ValueView& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case ValueType::kAbsent:
      return true;
    case ValueType::kString:
      return SameString(a.str, b.str);
    case ValueType::kInt:
      return a.num == b.num;
  }
  return false;
}

bool SameValue(const StoredValue& a, const StoredValue& b) {
  return a.type == b.type && a.str == b.str && a.num == b.num;
}

struct SeriesKey {
  uint64_t resource = 0;
  StoredValues values;
  size_t hash = 0;
};

struct SeriesKeyView {
  uint64_t resource = 0;
  const ValueViews* values = nullptr;
  size_t hash = 0;
};

struct SeriesKeyHash {
  using is_transparent = void;
  size_t operator()(const SeriesKey& k) const { return k.hash; }
  size_t operator()(const SeriesKeyView& k) const { return k.hash; }
};

struct SeriesKeyEq {
  using is_transparent = void;
  bool operator()(const SeriesKey& a, const SeriesKey& b) const {
    if (a.resource != b.resource) return false;
    for (size_t i = 0; i < kMaxAttrs; ++i) {
      if (!SameValue(a.values[i], b.values[i])) return false;
    }
    return true;
  }
  bool operator()(const SeriesKey& a, const SeriesKeyView& b) const {
    if (a.resource != b.resource) return false;
    for (size_t i = 0; i < kMaxAttrs; ++i) {
      if (!SameValue(a.values[i], (*b.values)[i])) return false;
    }
    return true;
  }
  bool operator()(const SeriesKeyView& a, const SeriesKey& b) const { return (*this)(b, a); }
};

// ---- Resource identity ----------------------------------------------------
//
// Two Resource objects with the same attribute values are one resource: the
// process table makes a new object whenever it re-reads a process. Order of
// the attributes does not matter.

size_t HashAttributes(const Attributes& attributes) {
  // Order-insensitive: a sum of per-attribute hashes.
  size_t sum = attributes.size();
  for (const Attribute& a : attributes.items()) {
    const absl::string_view key(a.key.data(), a.key.size());
    size_t h = 0;
    if (const auto* s = std::get_if<std::string>(&a.value)) {
      h = absl::Hash<std::pair<absl::string_view, absl::string_view>>{}(
          {key, absl::string_view(s->data(), s->size())});
    } else if (const auto* i = std::get_if<int64_t>(&a.value)) {
      h = absl::Hash<std::pair<absl::string_view, int64_t>>{}({key, *i});
    } else if (const auto* d = std::get_if<double>(&a.value)) {
      h = absl::Hash<std::pair<absl::string_view, double>>{}({key, *d});
    } else if (const auto* b = std::get_if<bool>(&a.value)) {
      h = absl::Hash<std::tuple<absl::string_view, bool, uint8_t>>{}({key, *b, 1});
    }
    sum += h;
  }
  return sum;
}

bool SameAttributeSet(const Attributes& a, const Attributes& b) {
  if (a.size() != b.size()) return false;
  for (const Attribute& item : a.items()) {
    const AttributeValue* other = b.Find(item.key);
    if (other == nullptr || !(*other == item.value)) return false;
  }
  return true;
}

struct ResourceKey {
  std::shared_ptr<const Resource> resource;
  size_t hash = 0;
};

struct ResourceKeyView {
  const Attributes* attributes = nullptr;
  size_t hash = 0;
};

struct ResourceKeyHash {
  using is_transparent = void;
  size_t operator()(const ResourceKey& k) const { return k.hash; }
  size_t operator()(const ResourceKeyView& k) const { return k.hash; }
};

struct ResourceKeyEq {
  using is_transparent = void;
  bool operator()(const ResourceKey& a, const ResourceKey& b) const {
    return SameAttributeSet(a.resource->attributes, b.resource->attributes);
  }
  bool operator()(const ResourceKey& a, const ResourceKeyView& b) const {
    return SameAttributeSet(a.resource->attributes, *b.attributes);
  }
  bool operator()(const ResourceKeyView& a, const ResourceKey& b) const { return (*this)(b, a); }
};

// ---- Aggregation state ----------------------------------------------------

struct MinMax {
  double min = kInf;
  double max = -kInf;
};

// One instrument of one series. A histogram uses every field; a sum keeps
// its total in `count`.
struct Hist {
  // The series exists (and is exported, even when a sum is still 0).
  bool live = false;
  uint64_t count = 0;
  double sum = 0;
  double min = kInf;
  double max = -kInf;
  // Min/max since each delta reader's previous collection.
  std::array<MinMax, kSlots> slots;
  std::vector<uint64_t> buckets;  // sized on the first point: bounds + 1
};

constexpr size_t kInstrumentsPerFamily = 4;

struct InstrumentDef {
  std::string_view name;
  std::string_view description;
  std::string_view unit;
  std::shared_ptr<const std::vector<double>> bounds;  // histograms only
  MetricType type = MetricType::kHistogram;
  bool monotonic = false;
};

// One series, i.e. one attribute set of one resource, holding the state
// of every instrument of its family.
struct Group {
  uint64_t uid = 0;  // unique for the recorder's life: delta readers key on it
  uint64_t resource = 0;
  uint64_t start_unix_ns = 0;
  uint64_t last_span_ns = 0;  // end of the newest span measured (idle eviction)
  // As exported; built once, shared so a collection copies it outside the lock.
  std::shared_ptr<const Attributes> attributes;
  std::array<Hist, kInstrumentsPerFamily> hists;
};

// The series of one span kind's instruments (duration, request body,
// response body), or of the service graph's.
struct Family {
  absl::flat_hash_map<SeriesKey, Group, SeriesKeyHash, SeriesKeyEq> groups;
  absl::flat_hash_map<uint64_t, Group> overflow;  // by resource id
  uint64_t next_sweep_ns = 0;
};

// HTTP server, HTTP client, RPC server, RPC client, DB client, service graph.
constexpr size_t kFamilyCount = 6;
constexpr size_t kRpcFamilyBase = 2;
constexpr size_t kDbFamily = 4;
constexpr size_t kGraphFamily = 5;
// The service graph family's instruments, in Group::hists order.
enum GraphInstrument : size_t {
  kGraphRequests,
  kGraphFailed,
  kGraphServerSeconds,
  kGraphClientSeconds
};

// The attribute keys of a family's series, indexed like its ValueViews.
const std::string_view* FamilyKeys(size_t family, size_t* count) {
  if (family < kRpcFamilyBase) {
    *count = kHttpAttrCount;
    return kHttpAttrKeys.data();
  }
  if (family == kDbFamily) {
    *count = kDbAttrCount;
    return kDbAttrKeys.data();
  }
  if (family == kGraphFamily) {
    *count = kGraphAttrCount;
    return kGraphAttrKeys.data();
  }
  *count = kRpcAttrCount;
  return kRpcAttrKeys.data();
}

std::shared_ptr<const std::vector<double>> SharedBounds(const std::vector<double>& bounds) {
  return std::make_shared<const std::vector<double>>(bounds);
}

// What one HTTP span contributes.
struct HttpMeasurement {
  ValueViews values;
  size_t values_hash = 0;
  double duration_s = 0;
  bool has_request_body = false;
  bool has_response_body = false;
  double request_body = 0;
  double response_body = 0;
};

void ViewString(const AttributeValue& value, ValueView* out) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    out->type = ValueType::kString;
    out->str = *s;
  }
}

void ViewInt(const AttributeValue& value, ValueView* out) {
  if (const auto* i = std::get_if<int64_t>(&value)) {
    out->type = ValueType::kInt;
    out->num = *i;
  }
}

// `key` (already known to have the literal's length) equals `literal`: a
// memcmp of constant length, which the compiler turns into a few compares
// (std::string_view::operator== ends up in an out-of-line compare()).
template <size_t N>
bool KeyIs(std::string_view key, const char (&literal)[N]) {
  return std::memcmp(key.data(), literal, N - 1) == 0;
}

// One pass over the span's attributes, dispatching on the key length first:
// the span carries ~15 attributes and we want 10 of them, so comparing every
// key with every wanted name would dominate the recording cost.
bool ExtractHttp(const Span& span, HttpMeasurement* m) {
  ValueViews& v = m->values;
  ValueView scheme, error_type;
  const int64_t* request_body = nullptr;
  const int64_t* response_body = nullptr;
  for (const Attribute& a : span.attributes.items()) {
    const std::string_view k = a.key;
    switch (k.size()) {
      case 10:
        if (KeyIs(k, "http.route")) {
          ViewString(a.value, &v[kRoute]);
        } else if (KeyIs(k, "url.scheme")) {
          ViewString(a.value, &scheme);
        } else if (KeyIs(k, "error.type")) {
          ViewString(a.value, &error_type);
        }
        break;
      case 11:
        if (KeyIs(k, "server.port")) ViewInt(a.value, &v[kServerPort]);
        break;
      case 14:
        if (KeyIs(k, "server.address")) ViewString(a.value, &v[kServerAddress]);
        break;
      case 19:
        if (KeyIs(k, "http.request.method")) ViewString(a.value, &v[kMethod]);
        break;
      case 22:
        if (KeyIs(k, "http.request.body.size")) request_body = std::get_if<int64_t>(&a.value);
        break;
      case 23:
        if (KeyIs(k, "http.response.body.size")) response_body = std::get_if<int64_t>(&a.value);
        break;
      case 24:
        if (KeyIs(k, "network.protocol.version")) ViewString(a.value, &v[kProtocolVersion]);
        break;
      case 25:
        if (KeyIs(k, "http.response.status_code")) ViewInt(a.value, &v[kStatusCode]);
        break;
      default:
        break;
    }
  }
  // Not an HTTP span (a later protocol): no HTTP metrics.
  if (v[kMethod].type == ValueType::kAbsent) return false;

  if (span.kind == SpanKind::kServer) {
    // Server metrics: url.scheme is Required; the span says it when it knows
    // (TLS), else this is cleartext HTTP read from the socket. server.address
    // is Opt-In (the Host header is client-controlled cardinality).
    v[kScheme] =
        scheme.type == ValueType::kString ? scheme : ValueView{ValueType::kString, "http", 0};
    v[kServerAddress] = ValueView{};
  }
  // error.type only for failures; a failed span without one says _OTHER, as
  // the conventions ask.
  if (span.status == StatusCode::kError) {
    v[kErrorType] = error_type.type == ValueType::kString
                        ? error_type
                        : ValueView{ValueType::kString, "_OTHER", 0};
  }
  const uint64_t duration_ns =
      span.end_unix_ns > span.start_unix_ns ? span.end_unix_ns - span.start_unix_ns : 0;
  m->duration_s = static_cast<double>(duration_ns) / 1e9;
  if (request_body != nullptr && *request_body >= 0) {
    m->has_request_body = true;
    m->request_body = static_cast<double>(*request_body);
  }
  if (response_body != nullptr && *response_body >= 0) {
    m->has_response_body = true;
    m->response_body = static_cast<double>(*response_body);
  }
  m->values_hash = absl::Hash<HashableViews>{}(HashableViews{&v});
  return true;
}

// An RPC span (rpc.system set): one duration point, in milliseconds.
bool ExtractRpc(const Span& span, HttpMeasurement* m) {
  ValueViews& v = m->values;
  ValueView error_type;
  for (const Attribute& a : span.attributes.items()) {
    const std::string_view k = a.key;
    switch (k.size()) {
      case 10:
        if (KeyIs(k, "rpc.system")) {
          ViewString(a.value, &v[kRpcSystem]);
        } else if (KeyIs(k, "rpc.method")) {
          ViewString(a.value, &v[kRpcMethod]);
        } else if (KeyIs(k, "error.type")) {
          ViewString(a.value, &error_type);
        }
        break;
      case 11:
        if (KeyIs(k, "rpc.service")) {
          ViewString(a.value, &v[kRpcService]);
        } else if (KeyIs(k, "server.port")) {
          ViewInt(a.value, &v[kRpcServerPort]);
        }
        break;
      case 14:
        if (KeyIs(k, "server.address")) ViewString(a.value, &v[kRpcServerAddress]);
        break;
      case 20:
        if (KeyIs(k, "rpc.grpc.status_code")) ViewInt(a.value, &v[kRpcGrpcStatus]);
        break;
      case 24:
        if (KeyIs(k, "network.protocol.version")) ViewString(a.value, &v[kRpcProtocolVersion]);
        break;
      default:
        break;
    }
  }
  if (v[kRpcSystem].type == ValueType::kAbsent) return false;
  // server.address is Opt-In on the server side (as for HTTP).
  if (span.kind == SpanKind::kServer) v[kRpcServerAddress] = ValueView{};
  if (span.status == StatusCode::kError) {
    v[kRpcErrorType] = error_type.type == ValueType::kString
                           ? error_type
                           : ValueView{ValueType::kString, "_OTHER", 0};
  }
  const uint64_t duration_ns =
      span.end_unix_ns > span.start_unix_ns ? span.end_unix_ns - span.start_unix_ns : 0;
  m->duration_s = static_cast<double>(duration_ns) / 1e6;  // the instrument's unit is ms
  m->values_hash = absl::Hash<HashableViews>{}(HashableViews{&v});
  return true;
}

// A database CLIENT span (db.system.name set): one duration point, seconds.
bool ExtractDb(const Span& span, HttpMeasurement* m) {
  if (span.kind != SpanKind::kClient) return false;
  ValueViews& v = m->values;
  ValueView error_type;
  for (const Attribute& a : span.attributes.items()) {
    const std::string_view k = a.key;
    switch (k.size()) {
      case 10:
        if (KeyIs(k, "error.type")) ViewString(a.value, &error_type);
        break;
      case 11:
        if (KeyIs(k, "server.port")) ViewInt(a.value, &v[kDbServerPort]);
        break;
      case 12:
        if (KeyIs(k, "db.namespace")) ViewString(a.value, &v[kDbNamespace]);
        break;
      case 14:
        if (KeyIs(k, "db.system.name")) {
          ViewString(a.value, &v[kDbSystem]);
        } else if (KeyIs(k, "server.address")) {
          ViewString(a.value, &v[kDbServerAddress]);
        }
        break;
      case 17:
        if (KeyIs(k, "db.operation.name")) ViewString(a.value, &v[kDbOperation]);
        break;
      case 18:
        if (KeyIs(k, "db.collection.name")) ViewString(a.value, &v[kDbCollection]);
        break;
      case 23:
        if (KeyIs(k, "db.response.status_code")) {
          ViewString(a.value, &v[kDbStatusCode]);
          if (v[kDbStatusCode].type == ValueType::kAbsent) ViewInt(a.value, &v[kDbStatusCode]);
        }
        break;
      default:
        break;
    }
  }
  if (v[kDbSystem].type == ValueType::kAbsent) return false;
  if (span.status == StatusCode::kError) {
    v[kDbErrorType] = error_type.type == ValueType::kString
                          ? error_type
                          : ValueView{ValueType::kString, "_OTHER", 0};
  }
  const uint64_t duration_ns =
      span.end_unix_ns > span.start_unix_ns ? span.end_unix_ns - span.start_unix_ns : 0;
  m->duration_s = static_cast<double>(duration_ns) / 1e9;
  m->values_hash = absl::Hash<HashableViews>{}(HashableViews{&v});
  return true;
}

// ---- Observed series --------------------------------------------------------

// One attribute set of one observed instrument of one resource.
struct ObservedSeries {
  uint64_t uid = 0;  // from the recorder's uid sequence, like a Group's
  ObservedInstrument instrument = ObservedInstrument::kProcessCpuTime;
  size_t attributes_hash = 0;
  std::shared_ptr<const Attributes> attributes;
  uint64_t start_unix_ns = 0;
  uint64_t last_unix_ns = 0;  // time of the newest value (idle eviction)
  double value = 0;
};

// The observed series of one resource: a handful (a process has 7), so a
// linear search finds one faster than a hash table would.
struct ObservedResource {
  std::vector<ObservedSeries> series;
  uint64_t last_unix_ns = 0;
};

// Observed series sort after every span family in a collection; their
// PointMeta::instrument numbers follow the families'.
constexpr size_t kObservedFamily = kFamilyCount;

const Attributes& EmptyAttributes() {
  static const auto* const kEmpty = new Attributes();
  return *kEmpty;
}

const std::shared_ptr<const Resource>& EmptyResource() {
  static const auto* const kEmpty =
      new std::shared_ptr<const Resource>(std::make_shared<Resource>());
  return *kEmpty;
}

// The service graph's resource until the agent sets its own.
const std::shared_ptr<const Resource>& DefaultServiceGraphResource() {
  static const auto* const kLoupe = new std::shared_ptr<const Resource>([] {
    auto r = std::make_shared<Resource>();
    r->attributes.Set("service.name", "loupe");
    return r;
  }());
  return *kLoupe;
}

// A duration as measured, or 0 when it is none (negative, NaN).
double Seconds(double seconds) { return seconds >= 0 ? seconds : 0; }

}  // namespace

// Delta readers' min/max slots. Shared between the recorder and its readers
// so that a reader outliving the recorder can still hand its slot back.
struct SlotPool {
  std::atomic<uint32_t> free_mask{(1u << kSlots) - 1};

  int Acquire() {
    uint32_t mask = free_mask.load();
    while (mask != 0) {
      const int slot = __builtin_ctz(mask);
      if (free_mask.compare_exchange_weak(mask, mask & ~(1u << slot))) return slot;
    }
    return -1;
  }
  void Release(int slot) { free_mask.fetch_or(1u << slot); }
};

// One exported point's bookkeeping for delta readers, in snapshot order.
struct PointMeta {
  uint64_t uid = 0;
  uint32_t instrument = 0;  // family * kInstrumentsPerFamily + index
  bool slot_valid = false;
  MinMax since_previous;
};

struct DeltaReader::Previous {
  struct Values {
    uint64_t count = 0;  // a histogram's count, or an observed counter's start
    double sum = 0;  // a histogram's sum, or a sum's value
    std::vector<uint64_t> buckets;
  };
  std::shared_ptr<SlotPool> pool;  // identifies the recorder read
  int slot = -1;
  uint64_t last_time_ns = 0;
  absl::flat_hash_map<std::pair<uint64_t, uint32_t>, Values> values;  // (uid, instrument)

  ~Previous() {
    if (slot >= 0) pool->Release(slot);
  }
};

struct MetricsRecorder::Impl {
  explicit Impl(MetricsOptions o)
      : options(o), pool(std::make_shared<SlotPool>()), instruments(MakeInstruments()) {}

  using FamilyInstruments = std::array<InstrumentDef, kInstrumentsPerFamily>;
  static std::array<FamilyInstruments, kFamilyCount> MakeInstruments() {
    auto duration = SharedBounds(DurationBucketsSeconds());
    auto bytes = SharedBounds(BodySizeBucketsBytes());
    auto rpc_duration = SharedBounds(RpcDurationBucketsMilliseconds());
    auto db_duration = SharedBounds(DbDurationBucketsSeconds());
    auto graph_duration = SharedBounds(ServiceGraphBucketsSeconds());
    // Slots a family does not use stay empty: a series there never becomes
    // live, so it is never exported.
    return {FamilyInstruments{InstrumentDef{"http.server.request.duration",
                                            "Duration of HTTP server requests.", "s", duration},
                              InstrumentDef{"http.server.request.body.size",
                                            "Size of HTTP server request bodies.", "By", bytes},
                              InstrumentDef{"http.server.response.body.size",
                                            "Size of HTTP server response bodies.", "By", bytes},
                              InstrumentDef{}},
            FamilyInstruments{InstrumentDef{"http.client.request.duration",
                                            "Duration of HTTP client requests.", "s", duration},
                              InstrumentDef{"http.client.request.body.size",
                                            "Size of HTTP client request bodies.", "By", bytes},
                              InstrumentDef{"http.client.response.body.size",
                                            "Size of HTTP client response bodies.", "By", bytes},
                              InstrumentDef{}},
            // RPC and DB families measure duration only.
            FamilyInstruments{InstrumentDef{"rpc.server.duration",
                                            "Measures the duration of inbound RPC.", "ms",
                                            rpc_duration},
                              InstrumentDef{}, InstrumentDef{}, InstrumentDef{}},
            FamilyInstruments{InstrumentDef{"rpc.client.duration",
                                            "Measures the duration of outbound RPC.", "ms",
                                            rpc_duration},
                              InstrumentDef{}, InstrumentDef{}, InstrumentDef{}},
            FamilyInstruments{InstrumentDef{"db.client.operation.duration",
                                            "Duration of database client operations.", "s",
                                            db_duration},
                              InstrumentDef{}, InstrumentDef{}, InstrumentDef{}},
            // Names, units and buckets as Tempo's metrics-generator and the
            // Collector's servicegraph connector write them (the names are
            // already Prometheus names; the Prometheus translation leaves
            // them as they are). In GraphInstrument order.
            FamilyInstruments{
                InstrumentDef{"traces_service_graph_request_total",
                              "Total count of requests between two nodes.", "{request}", nullptr,
                              MetricType::kSum, true},
                InstrumentDef{"traces_service_graph_request_failed_total",
                              "Total count of failed requests between two nodes.", "{request}",
                              nullptr, MetricType::kSum, true},
                InstrumentDef{"traces_service_graph_request_server_seconds",
                              "Time for a request between two nodes as seen from the server.",
                              "s", graph_duration},
                InstrumentDef{"traces_service_graph_request_client_seconds",
                              "Time for a request between two nodes as seen from the client.",
                              "s", graph_duration}}};
  }

  void Record(const Span& span);
  void RecordEdge(const ServiceGraphEdge& edge);
  void SetGraphResource(std::shared_ptr<const Resource> resource);
  MetricsSnapshot Collect(uint64_t now_unix_ns, DeltaReader::Previous* reader,
                          std::vector<PointMeta>* meta);
  MetricsStats Stats();

  struct ResourceEntry {
    std::shared_ptr<const Resource> resource;
    size_t hash = 0;
    size_t groups = 0;  // live groups, over all families
  };

  uint64_t Now() const { return options.now_unix_ns ? options.now_unix_ns() : RealtimeNowNs(); }
  void Observe(Hist& h, const std::vector<double>& bounds, double value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Add(Hist& h, uint64_t increment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  std::optional<uint64_t> KnownResourceId(const std::shared_ptr<const Resource>& resource)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  uint64_t EnsureResourceId(const std::shared_ptr<const Resource>& resource)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The series of `values` (hashing to `values_hash`) in family `f`: an
  // existing one, a new one, or the resource's overflow series (*overflow
  // set); nullptr when even that cannot be made.
  Group* SeriesFor(size_t f, const std::shared_ptr<const Resource>& resource,
                   const ValueViews& values, size_t values_hash, bool* overflow)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  Group* NewGroup(Family& family, const std::shared_ptr<const Resource>& resource,
                  size_t family_index, const ValueViews& values, size_t values_hash,
                  bool* overflow) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Sweep(Family& family) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Forget(const Group& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  void RecordObserved(const std::shared_ptr<const Resource>& resource,
                      std::span<const ObservedValue> values, uint64_t time_unix_ns);
  size_t ForgetObserved(const std::shared_ptr<const Resource>& resource);
  // Drops observed series without a value for idle_series_ns (at most once
  // a second of observation time).
  void SweepObserved(uint64_t now_unix_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Forgets one observed series' bookkeeping (not the series itself).
  void DropObservedSeries(const ObservedSeries& series, bool evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // One group of `rid` fewer; the resource goes when it has none left.
  // Returns true when it went (cached pointers may then name it).
  bool ReleaseGroup(uint64_t rid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void PruneCachedPointers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  const MetricsOptions options;
  const std::shared_ptr<SlotPool> pool;
  // Per family, in the order of Group::hists.
  const std::array<FamilyInstruments, kFamilyCount> instruments;

  // Recording (decoding thread) and collection (exporter threads) meet
  // here; a collection holds it for the copy only.
  std::mutex mu;
  std::array<Family, kFamilyCount> families ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, ResourceEntry> resources ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<ResourceKey, uint64_t, ResourceKeyHash, ResourceKeyEq> resource_ids
      ABSL_GUARDED_BY(mu);
  // Fast path: the Resource object a span points to -> its resource id. Holds
  // a reference so the address cannot be reused by another Resource while
  // cached.
  struct CachedPointer {
    std::shared_ptr<const Resource> keep;
    uint64_t id = 0;
  };
  absl::flat_hash_map<const Resource*, CachedPointer> by_pointer ABSL_GUARDED_BY(mu);
  uint64_t next_resource_id ABSL_GUARDED_BY(mu) = 1;
  uint64_t next_uid ABSL_GUARDED_BY(mu) = 1;
  uint64_t latest_span_ns ABSL_GUARDED_BY(mu) = 0;
  MetricsStats stats ABSL_GUARDED_BY(mu);
  std::shared_ptr<const Resource> graph_resource ABSL_GUARDED_BY(mu) =
      DefaultServiceGraphResource();
  // Observed series by resource id; each such resource counts as one group.
  absl::flat_hash_map<uint64_t, ObservedResource> observed ABSL_GUARDED_BY(mu);
  std::array<size_t, kObservedInstrumentCount> observed_series ABSL_GUARDED_BY(mu) = {};
  uint64_t next_observed_sweep_ns ABSL_GUARDED_BY(mu) = 0;
};

void MetricsRecorder::Impl::RecordObserved(const std::shared_ptr<const Resource>& resource_in,
                                           std::span<const ObservedValue> values,
                                           uint64_t time_unix_ns) {
  if (values.empty()) return;
  const std::shared_ptr<const Resource>& resource = resource_in ? resource_in : EmptyResource();
  std::lock_guard<std::mutex> lock(mu);
  stats.points_recorded += values.size();
  SweepObserved(time_unix_ns);
  ObservedResource* entry = nullptr;
  if (std::optional<uint64_t> rid = KnownResourceId(resource)) {
    auto it = observed.find(*rid);
    if (it != observed.end()) entry = &it->second;
  }
  for (const ObservedValue& v : values) {
    const size_t index = static_cast<size_t>(v.instrument);
    if (index >= kObservedInstrumentCount || !std::isfinite(v.value)) {
      ++stats.dropped_points;
      continue;
    }
    const Attributes& attributes = v.attributes != nullptr ? *v.attributes : EmptyAttributes();
    const size_t hash = HashAttributes(attributes);
    ObservedSeries* series = nullptr;
    if (entry != nullptr) {
      for (ObservedSeries& candidate : entry->series) {
        if (candidate.instrument == v.instrument && candidate.attributes_hash == hash &&
            SameAttributeSet(*candidate.attributes, attributes)) {
          series = &candidate;
          break;
        }
      }
    }
    if (series == nullptr) {
      if (observed_series[index] >= options.max_observed_series) {
        ++stats.dropped_points;
        continue;
      }
      if (entry == nullptr) {
        const uint64_t rid = EnsureResourceId(resource);
        entry = &observed[rid];
        ++resources[rid].groups;
      }
      ObservedSeries created;
      created.uid = next_uid++;
      created.instrument = v.instrument;
      created.attributes_hash = hash;
      created.attributes = std::make_shared<const Attributes>(attributes);
      created.start_unix_ns =
          v.start_unix_ns != 0 ? std::min(v.start_unix_ns, time_unix_ns) : time_unix_ns;
      created.last_unix_ns = time_unix_ns;
      created.value = v.value;
      entry->series.push_back(std::move(created));
      ++observed_series[index];
      ++stats.series;
      continue;
    }
    if (ObservedInstrumentInfoOf(v.instrument).monotonic) {
      // A counter below its previous value, or counting from after its
      // previous value was read, started over: so does the series. Its
      // start moves past the previous value's time (and never stays put,
      // which is how a DeltaReader tells).
      const bool restarted = v.value < series->value ||
                             (v.start_unix_ns != 0 && v.start_unix_ns > series->last_unix_ns);
      if (restarted) {
        const uint64_t start =
            std::max(series->last_unix_ns, std::min(v.start_unix_ns, time_unix_ns));
        series->start_unix_ns = std::max(start, series->start_unix_ns + 1);
      }
    }
    series->value = v.value;
    series->last_unix_ns = std::max(series->last_unix_ns, time_unix_ns);
  }
  if (entry != nullptr) entry->last_unix_ns = std::max(entry->last_unix_ns, time_unix_ns);
}

size_t MetricsRecorder::Impl::ForgetObserved(const std::shared_ptr<const Resource>& resource) {
  if (resource == nullptr) return 0;
  std::lock_guard<std::mutex> lock(mu);
  std::optional<uint64_t> rid = KnownResourceId(resource);
  if (!rid) return 0;
  auto it = observed.find(*rid);
  if (it == observed.end()) return 0;
  const size_t dropped = it->second.series.size();
  for (const ObservedSeries& series : it->second.series) DropObservedSeries(series, false);
  observed.erase(it);
  if (ReleaseGroup(*rid)) PruneCachedPointers();
  return dropped;
}

void MetricsRecorder::Impl::SweepObserved(uint64_t now_unix_ns) {
  if (options.idle_series_ns == 0 || now_unix_ns < next_observed_sweep_ns) return;
  next_observed_sweep_ns = now_unix_ns + kSweepIntervalNs;
  if (now_unix_ns < options.idle_series_ns) return;
  const uint64_t cutoff = now_unix_ns - options.idle_series_ns;
  bool removed = false;
  for (auto it = observed.begin(); it != observed.end();) {
    ObservedResource& r = it->second;
    if (r.last_unix_ns > cutoff) {
      // The resource is alive; a series it no longer reports goes alone.
      auto idle = [&](const ObservedSeries& series) {
        if (series.last_unix_ns > cutoff) return false;
        DropObservedSeries(series, true);
        return true;
      };
      r.series.erase(std::remove_if(r.series.begin(), r.series.end(), idle), r.series.end());
      ++it;
      continue;
    }
    for (const ObservedSeries& series : r.series) DropObservedSeries(series, true);
    removed |= ReleaseGroup(it->first);
    observed.erase(it++);
  }
  if (removed) PruneCachedPointers();
}

void MetricsRecorder::Impl::DropObservedSeries(const ObservedSeries& series, bool evicted) {
  --observed_series[static_cast<size_t>(series.instrument)];
  --stats.series;
  if (evicted) ++stats.series_evicted;
}

bool MetricsRecorder::Impl::ReleaseGroup(uint64_t rid) {
  auto it = resources.find(rid);
  if (it == resources.end()) return false;
  if (--it->second.groups > 0) return false;
  resource_ids.erase(ResourceKeyView{&it->second.resource->attributes, it->second.hash});
  resources.erase(it);
  return true;
}

void MetricsRecorder::Impl::PruneCachedPointers() {
  for (auto it = by_pointer.begin(); it != by_pointer.end();) {
    if (!resources.contains(it->second.id)) {
      by_pointer.erase(it++);
    } else {
      ++it;
    }
  }
}

void MetricsRecorder::Impl::Observe(Hist& h, const std::vector<double>& bounds, double value) {
  if (!h.live) {
    // A new series for this instrument: the only allocation on this path.
    h.live = true;
    h.buckets.assign(bounds.size() + 1, 0);
    ++stats.series;
  }
  ++h.count;
  h.sum += value;
  h.min = std::min(h.min, value);
  h.max = std::max(h.max, value);
  for (MinMax& s : h.slots) {
    s.min = std::min(s.min, value);
    s.max = std::max(s.max, value);
  }
  // Buckets are (bounds[i-1], bounds[i]]: the upper bound is inclusive
  // (Prometheus "le", OTLP explicit buckets), hence lower_bound.
  const size_t bucket =
      static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  ++h.buckets[bucket];
}

void MetricsRecorder::Impl::Add(Hist& h, uint64_t increment) {
  if (!h.live) {
    h.live = true;
    ++stats.series;
  }
  h.count += increment;
}

std::optional<uint64_t> MetricsRecorder::Impl::KnownResourceId(
    const std::shared_ptr<const Resource>& resource) {
  const Resource* key = resource.get();
  auto it = by_pointer.find(key);
  if (it != by_pointer.end()) return it->second.id;
  const size_t hash = HashAttributes(resource->attributes);
  auto id = resource_ids.find(ResourceKeyView{&resource->attributes, hash});
  if (id == resource_ids.end()) return std::nullopt;
  if (by_pointer.size() >= kMaxCachedResourcePointers) by_pointer.clear();
  by_pointer.emplace(key, CachedPointer{resource, id->second});
  return id->second;
}

uint64_t MetricsRecorder::Impl::EnsureResourceId(const std::shared_ptr<const Resource>& resource) {
  if (std::optional<uint64_t> known = KnownResourceId(resource)) return *known;
  const size_t hash = HashAttributes(resource->attributes);
  const uint64_t id = next_resource_id++;
  resource_ids.emplace(ResourceKey{resource, hash}, id);
  resources.emplace(id, ResourceEntry{resource, hash, 0});
  if (by_pointer.size() >= kMaxCachedResourcePointers) by_pointer.clear();
  by_pointer.emplace(resource.get(), CachedPointer{resource, id});
  return id;
}

void MetricsRecorder::Impl::Forget(const Group& group) {
  for (const Hist& h : group.hists) {
    if (h.live) {
      --stats.series;
      ++stats.series_evicted;
    }
  }
  auto it = resources.find(group.resource);
  if (it != resources.end()) --it->second.groups;
}

void MetricsRecorder::Impl::Sweep(Family& family) {
  if (options.idle_series_ns == 0 || latest_span_ns < family.next_sweep_ns) return;
  family.next_sweep_ns = latest_span_ns + kSweepIntervalNs;
  auto idle = [&](const Group& g) {
    return g.last_span_ns + options.idle_series_ns <= latest_span_ns;
  };
  for (auto it = family.groups.begin(); it != family.groups.end();) {
    if (idle(it->second)) {
      Forget(it->second);
      family.groups.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = family.overflow.begin(); it != family.overflow.end();) {
    if (idle(it->second)) {
      Forget(it->second);
      family.overflow.erase(it++);
    } else {
      ++it;
    }
  }
  // Resources left without series go too (processes that exited).
  bool removed = false;
  for (auto it = resources.begin(); it != resources.end();) {
    if (it->second.groups == 0) {
      resource_ids.erase(ResourceKeyView{&it->second.resource->attributes, it->second.hash});
      resources.erase(it++);
      removed = true;
    } else {
      ++it;
    }
  }
  // Cached pointers may name removed ids.
  if (removed) by_pointer.clear();
}

Group* MetricsRecorder::Impl::SeriesFor(size_t f, const std::shared_ptr<const Resource>& resource,
                                        const ValueViews& values, size_t values_hash,
                                        bool* overflow) {
  Family& family = families[f];
  if (std::optional<uint64_t> rid = KnownResourceId(resource)) {
    auto it = family.groups.find(SeriesKeyView{*rid, &values, SeriesHash(values_hash, *rid)});
    if (it != family.groups.end()) return &it->second;
  }
  return NewGroup(family, resource, f, values, values_hash, overflow);
}

Group* MetricsRecorder::Impl::NewGroup(Family& family,
                                       const std::shared_ptr<const Resource>& resource,
                                       size_t family_index, const ValueViews& values,
                                       size_t values_hash, bool* overflow) {
  if (family.groups.size() >= options.max_series) Sweep(family);
  if (family.groups.size() < options.max_series) {
    const uint64_t rid = EnsureResourceId(resource);
    SeriesKey key;
    key.resource = rid;
    key.hash = SeriesHash(values_hash, rid);
    Group group;
    group.uid = next_uid++;
    group.resource = rid;
    group.start_unix_ns = Now();
    size_t key_count = 0;
    const std::string_view* keys = FamilyKeys(family_index, &key_count);
    auto attributes = std::make_shared<Attributes>();
    attributes->Reserve(key_count);
    for (size_t i = 0; i < key_count; ++i) {
      const ValueView& v = values[i];
      StoredValue& s = key.values[i];
      s.type = v.type;
      if (v.type == ValueType::kString) {
        s.str = std::string(v.str);
        attributes->Set(keys[i], s.str);
      } else if (v.type == ValueType::kInt) {
        s.num = v.num;
        attributes->Set(keys[i], v.num);
      }
    }
    group.attributes = std::move(attributes);
    ++resources[rid].groups;
    return &family.groups.emplace(std::move(key), std::move(group)).first->second;
  }
  *overflow = true;
  if (std::optional<uint64_t> rid = KnownResourceId(resource)) {
    auto it = family.overflow.find(*rid);
    if (it != family.overflow.end()) return &it->second;
  }
  // One overflow series per resource, and no more of those than regular
  // series: beyond that even the overflow is full and the point is dropped
  // (counted by the caller).
  if (family.overflow.size() >= std::max<size_t>(options.max_series, 1)) return nullptr;
  const uint64_t rid = EnsureResourceId(resource);
  Group group;
  group.uid = next_uid++;
  group.resource = rid;
  group.start_unix_ns = Now();
  static const auto* const kOverflow = new std::shared_ptr<const Attributes>([] {
    auto a = std::make_shared<Attributes>();
    a->Set("otel.metric.overflow", true);
    return a;
  }());
  group.attributes = *kOverflow;
  ++resources[rid].groups;
  return &family.overflow.emplace(rid, std::move(group)).first->second;
}

void MetricsRecorder::Impl::Record(const Span& span) {
  HttpMeasurement m;
  size_t f = span.kind == SpanKind::kServer ? 0 : 1;
  if (!ExtractHttp(span, &m)) {
    m = HttpMeasurement{};
    if (ExtractRpc(span, &m)) {
      f += kRpcFamilyBase;
    } else {
      m = HttpMeasurement{};
      if (!ExtractDb(span, &m)) return;  // no RED metrics for this kind of span
      f = kDbFamily;
    }
  }
  const std::shared_ptr<const Resource>& resource = span.resource ? span.resource : EmptyResource();
  const uint64_t points = 1 + (m.has_request_body ? 1 : 0) + (m.has_response_body ? 1 : 0);

  std::lock_guard<std::mutex> lock(mu);
  const FamilyInstruments& defs = instruments[f];
  latest_span_ns = std::max(latest_span_ns, span.end_unix_ns);
  stats.points_recorded += points;
  bool overflow = false;
  Group* group = SeriesFor(f, resource, m.values, m.values_hash, &overflow);
  if (group == nullptr) {
    stats.dropped_points += points;
    return;
  }
  if (overflow) stats.overflow_points += points;
  group->last_span_ns = std::max(group->last_span_ns, span.end_unix_ns);
  Observe(group->hists[0], *defs[0].bounds, m.duration_s);
  if (m.has_request_body) Observe(group->hists[1], *defs[1].bounds, m.request_body);
  if (m.has_response_body) Observe(group->hists[2], *defs[2].bounds, m.response_body);
}

void MetricsRecorder::Impl::RecordEdge(const ServiceGraphEdge& edge) {
  ValueViews values;
  values[kGraphClient] = ValueView{ValueType::kString, edge.client, 0};
  values[kGraphServer] = ValueView{ValueType::kString, edge.server, 0};
  const size_t values_hash = absl::Hash<HashableViews>{}(HashableViews{&values});
  // The request, both durations, and the failure if any.
  const uint64_t points = edge.failed ? 4 : 3;

  std::lock_guard<std::mutex> lock(mu);
  const FamilyInstruments& defs = instruments[kGraphFamily];
  stats.points_recorded += points;
  bool overflow = false;
  Group* group = SeriesFor(kGraphFamily, graph_resource, values, values_hash, &overflow);
  if (group == nullptr) {
    stats.dropped_points += points;
    return;
  }
  if (overflow) stats.overflow_points += points;
  // An edge has no time of its own: it was joined just now, i.e. at about
  // the newest span end seen.
  group->last_span_ns = std::max(group->last_span_ns, latest_span_ns);
  Add(group->hists[kGraphRequests], 1);
  // Made at 0 with the pair's first request: Grafana divides failed by total.
  Add(group->hists[kGraphFailed], edge.failed ? 1 : 0);
  Observe(group->hists[kGraphServerSeconds], *defs[kGraphServerSeconds].bounds,
          Seconds(edge.server_seconds));
  Observe(group->hists[kGraphClientSeconds], *defs[kGraphClientSeconds].bounds,
          Seconds(edge.client_seconds));
}

void MetricsRecorder::Impl::SetGraphResource(std::shared_ptr<const Resource> resource) {
  if (resource == nullptr) resource = DefaultServiceGraphResource();
  std::lock_guard<std::mutex> lock(mu);
  graph_resource = std::move(resource);
}

MetricsSnapshot MetricsRecorder::Impl::Collect(uint64_t now_unix_ns, DeltaReader::Previous* reader,
                                               std::vector<PointMeta>* meta) {
  // What one point needs, copied under the lock; the snapshot (attribute
  // copies: the bulk of the allocations) is built after releasing it, so the
  // decoding thread waits for the copy of the numbers only.
  struct Raw {
    uint64_t resource;
    size_t family;
    bool overflow;
    uint64_t uid;
    size_t instrument;
    std::shared_ptr<const Attributes> attributes;
    uint64_t start_unix_ns;
    uint64_t count;
    double sum, min, max;
    size_t buckets_at, buckets_size;  // in `buckets` below
    bool slot_valid;
    MinMax since_previous;
  };
  std::vector<Raw> raw;
  // Every series' bucket counts in one array: two allocations under the
  // lock instead of one per series.
  std::vector<uint64_t> buckets;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Resource>> resource_of;
  {
    std::lock_guard<std::mutex> lock(mu);
    int slot = -1;
    bool slot_valid = false;
    if (reader != nullptr) {
      if (reader->slot < 0) {
        // A fresh slot starts empty; it says something from the next
        // collection on.
        reader->slot = pool->Acquire();
        if (reader->slot >= 0) {
          for (Family& f : families) {
            for (auto& [key, g] : f.groups) {
              for (Hist& h : g.hists) h.slots[reader->slot] = MinMax{};
            }
            for (auto& [rid, g] : f.overflow) {
              for (Hist& h : g.hists) h.slots[reader->slot] = MinMax{};
            }
          }
        }
      } else {
        slot_valid = true;
      }
      slot = reader->slot;
    }
    raw.reserve(stats.series);
    size_t max_buckets = 0;
    for (const FamilyInstruments& defs : instruments) {
      for (const InstrumentDef& def : defs) {
        if (def.bounds) max_buckets = std::max(max_buckets, def.bounds->size() + 1);
      }
    }
    buckets.reserve(stats.series * max_buckets);
    auto copy = [&](size_t f, bool overflow, Group& g) {
      for (size_t i = 0; i < kInstrumentsPerFamily; ++i) {
        Hist& h = g.hists[i];
        if (!h.live) continue;
        Raw r{g.resource,       f,       overflow, g.uid, i,     g.attributes,
              g.start_unix_ns,  h.count, h.sum,    h.min, h.max, buckets.size(),
              h.buckets.size(), false,   MinMax{}};
        buckets.insert(buckets.end(), h.buckets.begin(), h.buckets.end());
        if (slot >= 0) {
          r.slot_valid = slot_valid;
          r.since_previous = h.slots[slot];
          h.slots[slot] = MinMax{};
        }
        raw.push_back(std::move(r));
      }
    };
    for (size_t f = 0; f < kFamilyCount; ++f) {
      for (auto& [key, g] : families[f].groups) copy(f, false, g);
      for (auto& [rid, g] : families[f].overflow) copy(f, true, g);
    }
    for (const auto& [rid, r] : observed) {
      for (const ObservedSeries& series : r.series) {
        raw.push_back(Raw{rid, kObservedFamily, false, series.uid,
                          static_cast<size_t>(series.instrument), series.attributes,
                          series.start_unix_ns, 0, series.value, 0, 0, buckets.size(), 0, false,
                          MinMax{}});
      }
    }
    for (const auto& [id, entry] : resources) resource_of.emplace(id, entry.resource);
  }

  // Deterministic order: resources as first seen, instruments in family
  // order, series as created with the overflow series last.
  std::sort(raw.begin(), raw.end(), [](const Raw& a, const Raw& b) {
    return std::tie(a.resource, a.family, a.instrument, a.overflow, a.uid) <
           std::tie(b.resource, b.family, b.instrument, b.overflow, b.uid);
  });
  MetricsSnapshot snapshot;
  snapshot.time_unix_ns = now_unix_ns;
  if (meta != nullptr) meta->reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    Raw& r = raw[i];
    if (i == 0 || r.resource != raw[i - 1].resource) {
      snapshot.resources.emplace_back();
      snapshot.resources.back().resource = resource_of.at(r.resource);
    }
    ResourceMetrics& rm = snapshot.resources.back();
    if (i == 0 || r.resource != raw[i - 1].resource || r.family != raw[i - 1].family ||
        r.instrument != raw[i - 1].instrument) {
      MetricData data;
      data.temporality = Temporality::kCumulative;
      if (r.family == kObservedFamily) {
        const ObservedInstrumentInfo& info =
            ObservedInstrumentInfoOf(static_cast<ObservedInstrument>(r.instrument));
        data.name = std::string(info.name);
        data.description = std::string(info.description);
        data.unit = std::string(info.unit);
        data.type = MetricType::kSum;
        data.monotonic = info.monotonic;
      } else {
        const InstrumentDef& def = instruments[r.family][r.instrument];
        data.name = std::string(def.name);
        data.description = std::string(def.description);
        data.unit = std::string(def.unit);
        data.type = def.type;
        data.monotonic = def.monotonic;
        data.bounds = def.bounds;
      }
      rm.metrics.push_back(std::move(data));
    }
    if (meta != nullptr) {
      PointMeta pm;
      pm.uid = r.uid;
      pm.instrument = static_cast<uint32_t>(r.family * kInstrumentsPerFamily + r.instrument);
      pm.slot_valid = r.slot_valid;
      pm.since_previous = r.since_previous;
      meta->push_back(pm);
    }
    if (rm.metrics.back().type == MetricType::kSum) {
      SumPoint p;
      p.attributes = *r.attributes;
      p.start_unix_ns = std::min(r.start_unix_ns, now_unix_ns);
      p.time_unix_ns = now_unix_ns;
      // Counted sums keep their total in `count`, observed ones their value
      // in `sum`.
      p.value = r.family == kObservedFamily ? r.sum : static_cast<double>(r.count);
      rm.metrics.back().sum_points.push_back(std::move(p));
      continue;
    }
    HistogramPoint p;
    p.attributes = *r.attributes;
    p.start_unix_ns = std::min(r.start_unix_ns, now_unix_ns);
    p.time_unix_ns = now_unix_ns;
    p.count = r.count;
    p.sum = r.sum;
    p.min = r.min;
    p.max = r.max;
    p.bucket_counts.assign(buckets.begin() + static_cast<ptrdiff_t>(r.buckets_at),
                           buckets.begin() + static_cast<ptrdiff_t>(r.buckets_at + r.buckets_size));
    rm.metrics.back().points.push_back(std::move(p));
  }
  return snapshot;
}

MetricsStats MetricsRecorder::Impl::Stats() {
  std::lock_guard<std::mutex> lock(mu);
  MetricsStats s = stats;
  s.resources = resources.size();
  return s;
}

MetricsRecorder::MetricsRecorder(MetricsOptions options) : impl_(std::make_unique<Impl>(options)) {}

MetricsRecorder::~MetricsRecorder() = default;

void MetricsRecorder::Consume(Span&& span) { impl_->Record(span); }

void MetricsRecorder::Record(const Span& span) { impl_->Record(span); }

void MetricsRecorder::RecordServiceGraphEdge(const ServiceGraphEdge& edge) {
  impl_->RecordEdge(edge);
}

void MetricsRecorder::SetServiceGraphResource(std::shared_ptr<const Resource> resource) {
  impl_->SetGraphResource(std::move(resource));
}

void MetricsRecorder::RecordObserved(const std::shared_ptr<const Resource>& resource,
                                     std::span<const ObservedValue> values,
                                     uint64_t time_unix_ns) {
  impl_->RecordObserved(resource, values, time_unix_ns);
}

void MetricsRecorder::RecordObserved(const std::shared_ptr<const Resource>& resource,
                                     ObservedInstrument instrument, const Attributes& attributes,
                                     double value, uint64_t time_unix_ns) {
  const ObservedValue v{instrument, &attributes, value, 0};
  impl_->RecordObserved(resource, std::span<const ObservedValue>(&v, 1), time_unix_ns);
}

size_t MetricsRecorder::ForgetObserved(const std::shared_ptr<const Resource>& resource) {
  return impl_->ForgetObserved(resource);
}

MetricsSnapshot MetricsRecorder::CollectCumulative(uint64_t now_unix_ns) const {
  return impl_->Collect(now_unix_ns, nullptr, nullptr);
}

MetricsStats MetricsRecorder::stats() const { return impl_->Stats(); }

MetricsSnapshot DeltaReader::Collect(const MetricsRecorder& recorder, uint64_t now_unix_ns) {
  MetricsRecorder::Impl& impl = *recorder.impl_;
  if (!previous_ || previous_->pool != impl.pool) {
    previous_ = std::make_shared<Previous>();
    previous_->pool = impl.pool;
  }
  Previous& prev = *previous_;
  std::vector<PointMeta> meta;
  MetricsSnapshot cumulative = impl.Collect(now_unix_ns, &prev, &meta);

  MetricsSnapshot out;
  out.time_unix_ns = now_unix_ns;
  absl::flat_hash_map<std::pair<uint64_t, uint32_t>, Previous::Values> next;
  next.reserve(meta.size());
  size_t index = 0;
  for (ResourceMetrics& rm : cumulative.resources) {
    ResourceMetrics delta_rm;
    delta_rm.resource = rm.resource;
    for (MetricData& data : rm.metrics) {
      MetricData delta;
      delta.name = std::move(data.name);
      delta.description = std::move(data.description);
      delta.unit = std::move(data.unit);
      delta.type = data.type;
      delta.temporality = Temporality::kDelta;
      delta.monotonic = data.monotonic;
      delta.bounds = data.bounds;
      const bool observed =
          !data.sum_points.empty() &&
          meta[index].instrument >= static_cast<uint32_t>(kObservedFamily * kInstrumentsPerFamily);
      if (observed && !data.monotonic) {
        // A level (memory in use, threads): its change means nothing to a
        // delta consumer. Passed on cumulative, every series every time.
        delta.temporality = Temporality::kCumulative;
        index += data.sum_points.size();
        delta.sum_points = std::move(data.sum_points);
        data.sum_points.clear();  // moved from: nothing left for the loop below
      }
      for (SumPoint& p : data.sum_points) {
        const PointMeta& pm = meta[index++];
        const std::pair<uint64_t, uint32_t> key{pm.uid, pm.instrument};
        auto before = prev.values.find(key);
        const bool is_new = before == prev.values.end();
        SumPoint d;
        d.attributes = std::move(p.attributes);
        // New to this reader: everything since the series' start.
        d.start_unix_ns = is_new ? p.start_unix_ns : prev.last_time_ns;
        d.time_unix_ns = now_unix_ns;
        // Exact: counts are integers far below 2^53.
        d.value = is_new ? p.value : p.value - before->second.sum;
        // An observed counter that restarted (its start moved, see
        // RecordObserved) counts from its new start.
        if (observed && !is_new &&
            (p.start_unix_ns != before->second.count || p.value < before->second.sum)) {
          d.start_unix_ns = std::max(prev.last_time_ns, p.start_unix_ns);
          d.value = p.value;
        }
        // Observed counters remember their start (in `count`) to see a restart.
        next[key] = Previous::Values{observed ? p.start_unix_ns : 0, p.value, {}};
        // A new series is news even at 0 (a pair's failed counter).
        if (!is_new && d.value == 0) continue;
        delta.sum_points.push_back(std::move(d));
      }
      for (HistogramPoint& p : data.points) {
        const PointMeta& pm = meta[index++];
        const std::pair<uint64_t, uint32_t> key{pm.uid, pm.instrument};
        auto before = prev.values.find(key);
        HistogramPoint d;
        d.time_unix_ns = now_unix_ns;
        if (before == prev.values.end()) {
          // New to this reader: everything so far is the delta, min/max
          // included.
          d = p;
        } else {
          const Previous::Values& b = before->second;
          d.attributes = p.attributes;
          d.time_unix_ns = now_unix_ns;
          d.start_unix_ns = prev.last_time_ns;
          d.count = p.count - b.count;
          // Exact while the sum of integral byte counts stays below 2^53;
          // durations lose nothing that matters at nanosecond resolution.
          d.sum = p.sum - b.sum;
          d.bucket_counts.resize(p.bucket_counts.size());
          for (size_t i = 0; i < p.bucket_counts.size(); ++i) {
            d.bucket_counts[i] = p.bucket_counts[i] - (i < b.buckets.size() ? b.buckets[i] : 0);
          }
          d.has_min_max = pm.slot_valid;
          if (pm.slot_valid) {
            d.min = pm.since_previous.min;
            d.max = pm.since_previous.max;
          }
        }
        next[key] = Previous::Values{p.count, p.sum, std::move(p.bucket_counts)};
        if (d.count == 0) continue;
        delta.points.push_back(std::move(d));
      }
      if (delta.point_count() > 0) delta_rm.metrics.push_back(std::move(delta));
    }
    if (!delta_rm.metrics.empty()) out.resources.push_back(std::move(delta_rm));
  }
  // Series evicted since the last collection are forgotten here too.
  prev.values = std::move(next);
  prev.last_time_ns = now_unix_ns;
  return out;
}

}  // namespace loupe
