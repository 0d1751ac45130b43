// Kubernetes pod metadata: which pod and workload a container belongs to.
//
// The cgroup path of a process gives its container id and pod UID
// (cgroup.h); this module maps those to the pod's namespace, name, labels and
// owning workload, from the API server. PodWatcher lists the pods scheduled
// on this node and then watches them; PodCache holds what it learnt and
// answers lookups from any thread. Outside a cluster nothing here runs
// (PodWatcherOptions::FromEnvironment() returns nullopt).
//
// Pure parts (ParsePod, the workload heuristics, PodCache) do no I/O; only
// PodWatcher talks to the network.
#ifndef LOUPE_AGENT_KUBERNETES_H_
#define LOUPE_AGENT_KUBERNETES_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace loupe {

// What Loupe keeps of a v1 Pod. Workload fields are "" when the pod has no
// such owner.
struct PodMetadata {
  std::string namespace_name;
  std::string pod_name;
  std::string pod_uid;
  std::string node_name;
  std::map<std::string, std::string> labels;
  std::string deployment;   // from a ReplicaSet owner (heuristic, see DeploymentFromReplicaSet)
  std::string statefulset;
  std::string daemonset;
  std::string job;
  std::string cronjob;      // from a Job owner (heuristic, see CronJobFromJob)
  std::string replicaset;
  // (container name, container id without the "containerd://" style prefix)
  // from status.containerStatuses then status.initContainerStatuses; only
  // containers that have an id (a created container) are listed.
  std::vector<std::pair<std::string, std::string>> containers;
  bool operator==(const PodMetadata&) const = default;
};

// Parses a v1 Pod object (as listed, or the object of a watch event).
// metadata.uid is required; every other field is optional.
absl::StatusOr<PodMetadata> ParsePod(const nlohmann::json& pod);

// "containerd://0123..." -> "0123..."; an id without "://" is returned as is.
// containerStatuses[].containerID is "<runtime>://<id>" (docker://,
// containerd://, cri-o://).
std::string_view StripContainerIdPrefix(std::string_view container_id);

// The Deployment a ReplicaSet belongs to, from the ReplicaSet's name alone:
// the Deployment controller names its ReplicaSets "<deployment>-<pod template
// hash>", so the name without its last "-<segment>" is the Deployment. This
// is what Beyla and the OpenTelemetry Collector's k8sattributes processor do
// to avoid fetching every ReplicaSet (and needing RBAC for them). It is wrong
// for a ReplicaSet created by hand whose name happens to contain a dash; a
// hash segment must be non-empty and alphanumeric, else "" is returned.
std::string DeploymentFromReplicaSet(std::string_view replicaset_name);

// The CronJob a Job belongs to, by the same kind of heuristic: the CronJob
// controller names its Jobs "<cronjob>-<scheduled time in minutes>", a
// decimal number. "" when the last segment is not all digits (a Job created
// by hand, or by other controllers).
std::string CronJobFromJob(std::string_view job_name);

enum class PodEventType { kAdded, kModified, kDeleted };

// Pods by UID and container id -> pod. Thread-safe: the watcher's thread
// writes, any thread reads. Bounded: when a new pod would exceed max_pods the
// pod added longest ago is forgotten (and counted); a node runs at most a few
// hundred pods (kubelet --max-pods defaults to 110), so the bound only
// matters against a misconfigured field selector.
class PodCache {
 public:
  static constexpr size_t kDefaultMaxPods = 10000;

  struct ContainerMatch {
    std::shared_ptr<const PodMetadata> pod;
    std::string container_name;
  };

  explicit PodCache(size_t max_pods = kDefaultMaxPods);

  // ADDED and MODIFIED insert or replace the pod (by UID); DELETED removes it.
  void Apply(PodEventType type, PodMetadata pod);
  // The result of a (re)list: exactly these pods, whatever was known before.
  void Replace(std::vector<PodMetadata> pods);

  // `container_id` without runtime prefix (as in CgroupIdentity).
  std::optional<ContainerMatch> LookupContainer(std::string_view container_id) const;
  std::shared_ptr<const PodMetadata> LookupPod(std::string_view pod_uid) const;

  size_t size() const;
  uint64_t evictions() const;
  // Grows with every change (Apply, Replace): a reader that found no pod for
  // a container can tell cheaply whether asking again may help.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // service.name for a container of `pod`: the label app.kubernetes.io/name,
  // else the label app, else the workload's name (deployment, statefulset,
  // daemonset, cronjob, job, in that order), else "" (the caller then falls
  // back to the executable's name). `container_name` does not change the
  // answer today: every container of a pod gets the same name; it is part of
  // the signature so a per-container rule can be added without touching
  // callers.
  static std::string ServiceNameFor(const PodMetadata& pod, std::string_view container_name);

 private:
  struct Entry {
    std::shared_ptr<const PodMetadata> pod;
    uint64_t sequence = 0;  // insertion order, for eviction
  };
  void InsertLocked(PodMetadata pod) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& uid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_pods_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> pods_ ABSL_GUARDED_BY(mu_);
  // container id -> (pod UID, container name)
  absl::flat_hash_map<std::string, std::pair<std::string, std::string>> containers_
      ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> order_ ABSL_GUARDED_BY(mu_);  // sequence -> pod UID
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> generation_{0};
};

inline constexpr char kServiceAccountTokenPath[] =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
inline constexpr char kServiceAccountCaPath[] =
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
// The environment variable the DaemonSet fills from the downward API:
//   env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
inline constexpr char kNodeNameEnv[] = "NODE_NAME";

struct PodWatcherOptions {
  // "https://10.96.0.1:443"; tests use "http://127.0.0.1:PORT" (no TLS).
  std::string api_base_url;
  // Read again before every request: projected service-account tokens
  // rotate (about hourly). "" sends no Authorization header.
  std::string token_path = kServiceAccountTokenPath;
  // CA bundle for https; "" uses the system's.
  std::string ca_path = kServiceAccountCaPath;
  // Only pods with spec.nodeName == node_name are listed and watched.
  std::string node_name;
  // Reconnect delay after a failure: doubles from initial to max, each delay
  // drawn from [d * (1 - jitter), d]; reset after a successful list or a
  // watch that delivered events.
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  double backoff_jitter = 0.2;
  // A watch event longer than this is an error (the watch is reconnected).
  size_t max_line_bytes = 4 << 20;
  // A list response longer than this is an error.
  size_t max_list_bytes = 256 << 20;
  std::chrono::milliseconds connect_timeout{10000};
  // Asked of the server (timeoutSeconds); it ends the watch cleanly, and the
  // watcher resumes from the last resourceVersion. The client gives up
  // 30 s after this if the server does not.
  std::chrono::seconds watch_timeout{300};

  // In-cluster configuration: KUBERNETES_SERVICE_HOST and
  // KUBERNETES_SERVICE_PORT (default 443), the node from $node_name_env.
  // nullopt without KUBERNETES_SERVICE_HOST: without a cluster, this is
  // simply off. A missing node name is reported by PodWatcher::Start().
  static std::optional<PodWatcherOptions> FromEnvironment(const char* node_name_env = kNodeNameEnv);
};

struct PodWatcherStats {
  uint64_t lists = 0;         // successful lists, the first one included
  uint64_t relists = 0;       // lists forced by 410 Gone
  uint64_t watch_events = 0;  // ADDED, MODIFIED, DELETED, BOOKMARK and ERROR events read
  uint64_t reconnects = 0;    // watches started again after one ended
  uint64_t errors = 0;        // failed requests, bad responses, unparsable events
};

// Lists then watches the node's pods into a PodCache, on its own thread:
//   GET /api/v1/pods?fieldSelector=spec.nodeName=<node>       -> Replace()
//   GET ...&watch=1&resourceVersion=<rv>&allowWatchBookmarks=true
//       newline-delimited events                               -> Apply()
// A watch that ends is resumed from the last resourceVersion seen (from
// events and bookmarks), after a backoff when it failed. 410 Gone (as the
// HTTP status or as an ERROR event) means that version is no longer kept:
// the watcher lists again. Needs get/list/watch on pods (docs/kubernetes.md).
class PodWatcher {
 public:
  // `cache` must outlive the watcher.
  PodWatcher(PodWatcherOptions options, PodCache* cache);
  ~PodWatcher();  // Stop()
  PodWatcher(const PodWatcher&) = delete;
  PodWatcher& operator=(const PodWatcher&) = delete;

  // Starts the thread; fails on options that cannot work (no URL, no node).
  absl::Status Start();
  // Ends the thread within about a second (the transfer in progress is
  // aborted from libcurl's progress callback). Idempotent.
  void Stop();

  PodWatcherStats stats() const;
  // The version the next watch resumes from ("" before the first list).
  std::string resource_version() const;

 private:
  enum class WatchEnd { kClosed, kGone, kFailed, kStopped };
  void Run();
  // Lists into the cache; sets resource_version_.
  absl::Status List();
  // *progressed: an event other than ERROR arrived.
  WatchEnd Watch(bool* progressed);
  // Sleeps `delay` unless stopped first; false when stopped.
  bool SleepUnlessStopped(std::chrono::milliseconds delay);
  std::chrono::milliseconds NextBackoff();

  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  // One event of a watch stream; sets *end to stop reading, *delivered when
  // the event moved the cache or the resourceVersion on.
  void HandleWatchLine(std::string_view line, WatchEnd* end, bool* delivered);
  void SetResourceVersion(std::string version);

  const PodWatcherOptions options_;
  PodCache* const cache_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;

  std::chrono::milliseconds backoff_{0};
  uint64_t jitter_state_;

  mutable absl::Mutex rv_mu_;
  std::string resource_version_ ABSL_GUARDED_BY(rv_mu_);

  std::atomic<uint64_t> lists_{0};
  std::atomic<uint64_t> relists_{0};
  std::atomic<uint64_t> watch_events_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> errors_{0};
};

}  // namespace loupe

#endif  // LOUPE_AGENT_KUBERNETES_H_
