#include "agent/kubernetes.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/log.h"
#include "exporters/curl_handles.h"

namespace loupe {
namespace {

using Json = nlohmann::json;

// Debian's Abseil has its own string_view, which heterogeneous lookup wants.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The string at `key` of a JSON object, or "" when absent or not a string.
std::string StringAt(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

const Json* ObjectAt(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_object()) return nullptr;
  return &*it;
}

const Json* ArrayAt(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_array()) return nullptr;
  return &*it;
}

void AddContainers(const Json& status, const char* key,
                   std::vector<std::pair<std::string, std::string>>* out) {
  const Json* statuses = ArrayAt(status, key);
  if (statuses == nullptr) return;
  for (const Json& container : *statuses) {
    std::string name = StringAt(container, "name");
    // containerID is unset while the container is still being created.
    const std::string id = StringAt(container, "containerID");
    const std::string_view bare = StripContainerIdPrefix(id);
    if (name.empty() || bare.empty()) continue;
    out->emplace_back(std::move(name), std::string(bare));
  }
}

bool IsLowerAlnum(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ---- HTTP through libcurl ---------------------------------------------------

// A list of pods on one node is small (kubelet --max-pods defaults to 110),
// so one minute is generous even for a slow API server.
constexpr long kListTimeoutMs = 60000;
// Kept of an error response, for the log.
constexpr size_t kMaxErrorBody = 4096;
// A service-account token is a JWT of about a kilobyte.
constexpr size_t kMaxTokenBytes = 64 * 1024;

// What one GET hands to the callbacks and gets back from them.
struct Transfer {
  CURL* handle = nullptr;
  const std::atomic<bool>* stop = nullptr;
  // Streaming (a watch): each complete line of a 200 response goes to
  // on_line, which returns false to end the transfer. Otherwise the body is
  // collected into `body`, up to body_limit.
  std::function<bool(std::string_view)> on_line;
  size_t line_limit = 0;
  size_t body_limit = 0;
  std::string body;
  long status = 0;
  bool overflow = false;   // a line or body over its limit
  bool ended_by_line = false;
};

size_t OnWrite(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->status == 0) curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &t->status);
  if (!t->on_line || t->status != 200) {
    // An error body is cut and kept for the log; a list body over its limit
    // is an error.
    const size_t limit = t->status == 200 ? t->body_limit : kMaxErrorBody;
    const size_t room = limit - std::min(limit, t->body.size());
    if (t->status == 200 && n > room) {
      t->overflow = true;
      return 0;
    }
    t->body.append(data, std::min(n, room));
    return n;
  }
  // Watch events are newline-delimited JSON; a chunk may end anywhere.
  const size_t scanned = t->body.size();
  t->body.append(data, n);
  size_t start = 0;
  for (size_t nl = t->body.find('\n', scanned); nl != std::string::npos;
       nl = t->body.find('\n', start)) {
    const std::string_view line(t->body.data() + start, nl - start);
    start = nl + 1;
    if (line.size() > t->line_limit) {
      t->overflow = true;
      return 0;
    }
    if (!t->on_line(line)) {
      t->ended_by_line = true;
      return 0;
    }
  }
  t->body.erase(0, start);
  if (t->body.size() > t->line_limit) {
    t->overflow = true;
    return 0;
  }
  return n;
}

// Called about once a second even when nothing arrives: how Stop() ends a
// watch that waits for events.
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* t = static_cast<const Transfer*>(user);
  return t->stop->load(std::memory_order_relaxed) ? 1 : 0;
}

// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
std::string QueryEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::string token;
  token.resize(kMaxTokenBytes);
  in.read(token.data(), static_cast<std::streamsize>(token.size()));
  token.resize(static_cast<size_t>(in.gcount()));
  // Secrets mounted from files often end with a newline.
  return std::string(absl::StripAsciiWhitespace(token));
}

// Performs one GET. Returns "" on success, else what went wrong at the
// transport level (the HTTP status is in transfer->status either way).
std::string PerformGet(const PodWatcherOptions& options, const std::string& url,
                       const std::string& token, long timeout_ms, Transfer* transfer) {
  CurlEasy easy(curl_easy_init());
  if (!easy) return "curl_easy_init failed";
  CURL* h = easy.get();
  transfer->handle = h;

  curl_slist* raw = curl_slist_append(nullptr, "Accept: application/json");
  CurlSlist headers(raw);
  if (raw != nullptr && !token.empty()) {
    raw = curl_slist_append(raw, absl::StrCat("Authorization: Bearer ", token).c_str());
    if (raw == nullptr) return "out of memory";
  }
  if (raw == nullptr) return "out of memory";

  char error[CURL_ERROR_SIZE] = {0};
  bool ok = true;
  auto set = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  set(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  set(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(h, CURLOPT_HTTPGET, 1L));
  set(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get()));
  set(curl_easy_setopt(h, CURLOPT_USERAGENT, "loupe"));
  // Threads: no signals (a resolver timeout would otherwise use SIGALRM).
  set(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                       static_cast<long>(std::max<int64_t>(options.connect_timeout.count(), 1))));
  set(curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L));
  set(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error));
  set(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnWrite));
  set(curl_easy_setopt(h, CURLOPT_WRITEDATA, transfer));
  set(curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L));
  set(curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &OnProgress));
  set(curl_easy_setopt(h, CURLOPT_XFERINFODATA, transfer));
  if (!options.ca_path.empty() && url.rfind("https://", 0) == 0) {
    set(curl_easy_setopt(h, CURLOPT_CAINFO, options.ca_path.c_str()));
  }
  if (!ok) return "libcurl refused an option";

  const CURLcode result = curl_easy_perform(h);
  if (transfer->status == 0) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &transfer->status);
  if (result == CURLE_OK) return "";
  return absl::StrCat(curl_easy_strerror(result), error[0] != '\0' ? ": " : "", error);
}

}  // namespace

// ---- Pods -------------------------------------------------------------------

std::string_view StripContainerIdPrefix(std::string_view container_id) {
  const size_t scheme = container_id.find("://");
  return scheme == std::string_view::npos ? container_id : container_id.substr(scheme + 3);
}

std::string DeploymentFromReplicaSet(std::string_view replicaset_name) {
  const size_t dash = replicaset_name.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return "";
  if (!IsLowerAlnum(replicaset_name.substr(dash + 1))) return "";
  return std::string(replicaset_name.substr(0, dash));
}

std::string CronJobFromJob(std::string_view job_name) {
  const size_t dash = job_name.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return "";
  if (!IsDigits(job_name.substr(dash + 1))) return "";
  return std::string(job_name.substr(0, dash));
}

absl::StatusOr<PodMetadata> ParsePod(const nlohmann::json& pod) {
  const Json* metadata = ObjectAt(pod, "metadata");
  if (metadata == nullptr) return absl::InvalidArgumentError("pod without metadata");
  PodMetadata out;
  out.pod_uid = StringAt(*metadata, "uid");
  if (out.pod_uid.empty()) return absl::InvalidArgumentError("pod without metadata.uid");
  out.namespace_name = StringAt(*metadata, "namespace");
  out.pod_name = StringAt(*metadata, "name");
  if (const Json* labels = ObjectAt(*metadata, "labels")) {
    for (const auto& [key, value] : labels->items()) {
      if (value.is_string()) out.labels.emplace(key, value.get<std::string>());
    }
  }
  if (const Json* owners = ArrayAt(*metadata, "ownerReferences")) {
    for (const Json& owner : *owners) {
      const std::string kind = StringAt(owner, "kind");
      std::string name = StringAt(owner, "name");
      if (name.empty()) continue;
      if (kind == "ReplicaSet") {
        out.deployment = DeploymentFromReplicaSet(name);
        out.replicaset = std::move(name);
      } else if (kind == "Job") {
        out.cronjob = CronJobFromJob(name);
        out.job = std::move(name);
      } else if (kind == "StatefulSet") {
        out.statefulset = std::move(name);
      } else if (kind == "DaemonSet") {
        out.daemonset = std::move(name);
      }
    }
  }
  if (const Json* spec = ObjectAt(pod, "spec")) out.node_name = StringAt(*spec, "nodeName");
  if (const Json* status = ObjectAt(pod, "status")) {
    AddContainers(*status, "containerStatuses", &out.containers);
    AddContainers(*status, "initContainerStatuses", &out.containers);
  }
  return out;
}

// ---- PodCache ---------------------------------------------------------------

PodCache::PodCache(size_t max_pods) : max_pods_(std::max<size_t>(max_pods, 1)) {}

void PodCache::RemoveLocked(const std::string& uid) {
  const auto it = pods_.find(uid);
  if (it == pods_.end()) return;
  for (const auto& [name, id] : it->second.pod->containers) {
    const auto c = containers_.find(id);
    if (c != containers_.end() && c->second.first == uid) containers_.erase(c);
  }
  order_.erase(it->second.sequence);
  pods_.erase(it);
}

void PodCache::InsertLocked(PodMetadata pod) {
  uint64_t sequence;
  if (const auto it = pods_.find(pod.pod_uid); it != pods_.end()) {
    // A modified pod keeps its place in the eviction order.
    sequence = it->second.sequence;
    RemoveLocked(pod.pod_uid);
  } else {
    while (pods_.size() >= max_pods_ && !order_.empty()) {
      const std::string oldest = order_.begin()->second;
      RemoveLocked(oldest);
      ++evictions_;
    }
    sequence = next_sequence_++;
  }
  auto shared = std::make_shared<const PodMetadata>(std::move(pod));
  for (const auto& [name, id] : shared->containers) {
    containers_.insert_or_assign(id, std::make_pair(shared->pod_uid, name));
  }
  order_.emplace(sequence, shared->pod_uid);
  pods_.insert_or_assign(shared->pod_uid, Entry{shared, sequence});
}

void PodCache::Apply(PodEventType type, PodMetadata pod) {
  absl::MutexLock lock(&mu_);
  if (type == PodEventType::kDeleted) {
    RemoveLocked(pod.pod_uid);
  } else {
    InsertLocked(std::move(pod));
  }
  generation_.fetch_add(1, std::memory_order_release);
}

void PodCache::Replace(std::vector<PodMetadata> pods) {
  absl::MutexLock lock(&mu_);
  pods_.clear();
  containers_.clear();
  order_.clear();
  for (PodMetadata& pod : pods) InsertLocked(std::move(pod));
  generation_.fetch_add(1, std::memory_order_release);
}

std::optional<PodCache::ContainerMatch> PodCache::LookupContainer(
    std::string_view container_id) const {
  absl::MutexLock lock(&mu_);
  const auto c = containers_.find(AbslView(container_id));
  if (c == containers_.end()) return std::nullopt;
  const auto p = pods_.find(c->second.first);
  if (p == pods_.end()) return std::nullopt;
  return ContainerMatch{p->second.pod, c->second.second};
}

std::shared_ptr<const PodMetadata> PodCache::LookupPod(std::string_view pod_uid) const {
  absl::MutexLock lock(&mu_);
  const auto it = pods_.find(AbslView(pod_uid));
  return it == pods_.end() ? nullptr : it->second.pod;
}

size_t PodCache::size() const {
  absl::MutexLock lock(&mu_);
  return pods_.size();
}

uint64_t PodCache::evictions() const {
  absl::MutexLock lock(&mu_);
  return evictions_;
}

std::string PodCache::ServiceNameFor(const PodMetadata& pod, std::string_view /*container_name*/) {
  for (const char* label : {"app.kubernetes.io/name", "app"}) {
    const auto it = pod.labels.find(label);
    if (it != pod.labels.end() && !it->second.empty()) return it->second;
  }
  for (const std::string* workload :
       {&pod.deployment, &pod.statefulset, &pod.daemonset, &pod.cronjob, &pod.job}) {
    if (!workload->empty()) return *workload;
  }
  return "";
}

// ---- PodWatcher -------------------------------------------------------------

std::optional<PodWatcherOptions> PodWatcherOptions::FromEnvironment(const char* node_name_env) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (host == nullptr || host[0] == '\0') return std::nullopt;
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  PodWatcherOptions options;
  const std::string_view host_view(host);
  // An IPv6 service address (dual-stack or IPv6-only clusters) needs brackets.
  const bool ipv6 = host_view.find(':') != std::string_view::npos;
  options.api_base_url = absl::StrCat("https://", ipv6 ? "[" : "", host, ipv6 ? "]" : "", ":",
                                      port != nullptr && port[0] != '\0' ? port : "443");
  if (node_name_env != nullptr) {
    const char* node = std::getenv(node_name_env);
    if (node != nullptr) options.node_name = node;
  }
  return options;
}

PodWatcher::PodWatcher(PodWatcherOptions options, PodCache* cache)
    : options_(std::move(options)),
      cache_(cache),
      jitter_state_(static_cast<uint64_t>(
                        std::chrono::steady_clock::now().time_since_epoch().count()) |
                    1) {}

PodWatcher::~PodWatcher() { Stop(); }

absl::Status PodWatcher::Start() {
  if (options_.api_base_url.empty()) {
    return absl::InvalidArgumentError("kubernetes: no API server URL");
  }
  if (options_.node_name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kubernetes: node name unknown; pass spec.nodeName through the downward API as ",
        kNodeNameEnv));
  }
  if (cache_ == nullptr) return absl::InvalidArgumentError("kubernetes: no pod cache");
  if (thread_.joinable()) return absl::FailedPreconditionError("kubernetes: already started");
  CurlGlobalInit();
  stop_.store(false);
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void PodWatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    stop_.store(true);
  }
  sleep_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

PodWatcherStats PodWatcher::stats() const {
  PodWatcherStats s;
  s.lists = lists_.load();
  s.relists = relists_.load();
  s.watch_events = watch_events_.load();
  s.reconnects = reconnects_.load();
  s.errors = errors_.load();
  return s;
}

std::string PodWatcher::resource_version() const {
  absl::MutexLock lock(&rv_mu_);
  return resource_version_;
}

void PodWatcher::SetResourceVersion(std::string version) {
  absl::MutexLock lock(&rv_mu_);
  resource_version_ = std::move(version);
}

bool PodWatcher::SleepUnlessStopped(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(sleep_mu_);
  return !sleep_cv_.wait_for(lock, delay, [this] { return stopping(); });
}

std::chrono::milliseconds PodWatcher::NextBackoff() {
  backoff_ = backoff_.count() == 0 ? options_.initial_backoff
                                   : std::min(backoff_ * 2, options_.max_backoff);
  // xorshift64: spreads the reconnects of many agents after an API server
  // restart; no quality needed.
  jitter_state_ ^= jitter_state_ << 13;
  jitter_state_ ^= jitter_state_ >> 7;
  jitter_state_ ^= jitter_state_ << 17;
  const double unit = static_cast<double>(jitter_state_ >> 11) / static_cast<double>(1ULL << 53);
  const double jitter = std::clamp(options_.backoff_jitter, 0.0, 1.0);
  return std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(backoff_.count()) * (1.0 - jitter * unit)));
}

namespace {

std::string PodsUrl(const PodWatcherOptions& options) {
  std::string base = options.api_base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return absl::StrCat(base, "/api/v1/pods?fieldSelector=",
                      QueryEscape(absl::StrCat("spec.nodeName=", options.node_name)));
}

}  // namespace

absl::Status PodWatcher::List() {
  absl::StatusOr<std::string> token = ReadToken(options_.token_path);
  if (!token.ok()) return token.status();
  Transfer transfer;
  transfer.stop = &stop_;
  transfer.body_limit = options_.max_list_bytes;
  const std::string url = PodsUrl(options_);
  const std::string error = PerformGet(options_, url, *token, kListTimeoutMs, &transfer);
  if (stopping()) return absl::CancelledError("stopped");
  if (transfer.overflow) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pod list over ", options_.max_list_bytes, " bytes"));
  }
  if (!error.empty()) return absl::UnavailableError(absl::StrCat("GET ", url, ": ", error));
  if (transfer.status != 200) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, ": HTTP ", transfer.status, ": ", transfer.body));
  }
  const Json list = Json::parse(transfer.body, nullptr, /*allow_exceptions=*/false);
  const Json* metadata = ObjectAt(list, "metadata");
  const std::string version = metadata != nullptr ? StringAt(*metadata, "resourceVersion") : "";
  if (version.empty()) {
    return absl::DataLossError("pod list without metadata.resourceVersion");
  }
  std::vector<PodMetadata> pods;
  if (const Json* items = ArrayAt(list, "items")) {
    for (const Json& item : *items) {
      absl::StatusOr<PodMetadata> pod = ParsePod(item);
      if (pod.ok()) {
        pods.push_back(*std::move(pod));
      } else {
        errors_.fetch_add(1);
      }
    }
  }
  LogInfo("kubernetes: listed ", pods.size(), " pods on node ", options_.node_name,
          " at resourceVersion ", version);
  cache_->Replace(std::move(pods));
  SetResourceVersion(version);
  return absl::OkStatus();
}

void PodWatcher::HandleWatchLine(std::string_view line, WatchEnd* end, bool* delivered) {
  if (absl::StripAsciiWhitespace(AbslView(line)).empty()) return;
  const Json event = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  const Json* object = ObjectAt(event, "object");
  const std::string type = StringAt(event, "type");
  if (object == nullptr || type.empty()) {
    // Events after this one might depend on it: resume from the last good
    // version rather than skip it.
    errors_.fetch_add(1);
    LogWarn("kubernetes: unreadable watch event; reconnecting");
    *end = WatchEnd::kFailed;
    return;
  }
  watch_events_.fetch_add(1);
  if (type == "ERROR") {
    // The object is a v1 Status; 410 Gone: the version is older than the
    // API server keeps ("too old resource version").
    const auto code = object->find("code");
    if (code != object->end() && code->is_number_integer() && code->get<int64_t>() == 410) {
      *end = WatchEnd::kGone;
    } else {
      errors_.fetch_add(1);
      LogWarn("kubernetes: watch error: ", StringAt(*object, "message"));
      *end = WatchEnd::kFailed;
    }
    return;
  }
  const Json* metadata = ObjectAt(*object, "metadata");
  std::string version = metadata != nullptr ? StringAt(*metadata, "resourceVersion") : "";
  if (type == "ADDED" || type == "MODIFIED" || type == "DELETED") {
    absl::StatusOr<PodMetadata> pod = ParsePod(*object);
    if (pod.ok()) {
      const PodEventType event_type = type == "ADDED"      ? PodEventType::kAdded
                                      : type == "MODIFIED" ? PodEventType::kModified
                                                           : PodEventType::kDeleted;
      cache_->Apply(event_type, *std::move(pod));
    } else {
      errors_.fetch_add(1);
    }
  } else if (type != "BOOKMARK") {
    errors_.fetch_add(1);  // an event type this client does not know
  }
  if (!version.empty()) SetResourceVersion(std::move(version));
  *delivered = true;
}

PodWatcher::WatchEnd PodWatcher::Watch(bool* progressed) {
  absl::StatusOr<std::string> token = ReadToken(options_.token_path);
  if (!token.ok()) {
    errors_.fetch_add(1);
    LogWarn("kubernetes: ", token.status().message());
    return WatchEnd::kFailed;
  }
  const std::string url =
      absl::StrCat(PodsUrl(options_), "&watch=1&resourceVersion=", QueryEscape(resource_version()),
                   "&allowWatchBookmarks=true&timeoutSeconds=", options_.watch_timeout.count());
  WatchEnd end = WatchEnd::kClosed;
  bool& delivered = *progressed;
  delivered = false;
  Transfer transfer;
  transfer.stop = &stop_;
  transfer.line_limit = options_.max_line_bytes;
  transfer.body_limit = kMaxErrorBody;
  transfer.on_line = [&](std::string_view line) {
    HandleWatchLine(line, &end, &delivered);
    return end == WatchEnd::kClosed;
  };
  const auto started = std::chrono::steady_clock::now();
  const long timeout_ms = static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.watch_timeout).count() +
      30000);
  const std::string error = PerformGet(options_, url, *token, timeout_ms, &transfer);
  if (stopping()) return WatchEnd::kStopped;
  if (transfer.status == 410) return WatchEnd::kGone;
  if (transfer.status != 0 && transfer.status != 200) {
    errors_.fetch_add(1);
    LogWarn("kubernetes: watch: HTTP ", transfer.status, ": ", transfer.body);
    return WatchEnd::kFailed;
  }
  if (transfer.ended_by_line) return end;
  if (transfer.overflow) {
    errors_.fetch_add(1);
    LogWarn("kubernetes: watch event over ", options_.max_line_bytes, " bytes; reconnecting");
    return WatchEnd::kFailed;
  }
  if (!error.empty()) {
    errors_.fetch_add(1);
    LogWarn("kubernetes: watch: ", error);
    return WatchEnd::kFailed;
  }
  // A last event without its newline.
  if (!transfer.body.empty()) {
    HandleWatchLine(transfer.body, &end, &delivered);
    if (end != WatchEnd::kClosed) return end;
  }
  // A server that closes at once, again and again, is not healthy either.
  if (!delivered && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
    return WatchEnd::kFailed;
  }
  return WatchEnd::kClosed;
}

void PodWatcher::Run() {
  bool need_list = true;
  while (!stopping()) {
    if (need_list) {
      const absl::Status listed = List();
      if (stopping()) return;
      if (!listed.ok()) {
        errors_.fetch_add(1);
        LogWarn("kubernetes: ", listed.message());
        if (!SleepUnlessStopped(NextBackoff())) return;
        continue;
      }
      // The backoff is not reset here but after a watch that worked: a
      // server that answers every fresh list's watch with 410 must not be
      // listed in a tight loop.
      lists_.fetch_add(1);
      need_list = false;
    }
    bool progressed = false;
    const WatchEnd end = Watch(&progressed);
    switch (end) {
      case WatchEnd::kStopped:
        return;
      case WatchEnd::kGone:
        relists_.fetch_add(1);
        LogInfo("kubernetes: resourceVersion ", resource_version(), " expired (410); listing again");
        need_list = true;
        if (progressed) {
          backoff_ = std::chrono::milliseconds(0);
        } else if (!SleepUnlessStopped(NextBackoff())) {
          return;
        }
        break;
      case WatchEnd::kFailed:
        if (!SleepUnlessStopped(NextBackoff())) return;
        reconnects_.fetch_add(1);
        break;
      case WatchEnd::kClosed:
        backoff_ = std::chrono::milliseconds(0);
        reconnects_.fetch_add(1);
        break;
    }
  }
}

}  // namespace loupe
