// Kubernetes pod metadata (agent/kubernetes.*): pods parsed from v1 Pod JSON
// as the API server returns it, the pod cache, and the watcher's list, watch,
// resume and relist against a mock API server.
#include "agent/kubernetes.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loupe {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using Json = nlohmann::json;

// ---- ParsePod -----------------------------------------------------------------

// A pod of a Deployment as `kubectl get pod -o json` prints it (trimmed of
// fields Loupe does not read, such as most of the spec).
constexpr char kDeploymentPod[] = R"json({
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "creationTimestamp": "2026-11-20T08:14:03Z",
    "generateName": "checkout-7d9f8b6c5d-",
    "labels": {
      "app.kubernetes.io/name": "checkout",
      "app.kubernetes.io/part-of": "shop",
      "pod-template-hash": "7d9f8b6c5d"
    },
    "name": "checkout-7d9f8b6c5d-x2kq9",
    "namespace": "shop",
    "ownerReferences": [{
      "apiVersion": "apps/v1",
      "blockOwnerDeletion": true,
      "controller": true,
      "kind": "ReplicaSet",
      "name": "checkout-7d9f8b6c5d",
      "uid": "0b1c4c47-5a55-4d4e-9d2b-6f7a1f8e2c11"
    }],
    "resourceVersion": "884213",
    "uid": "6f1e9c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
  },
  "spec": {
    "containers": [{"image": "shop/checkout:1.4.2", "name": "checkout"},
                   {"image": "envoyproxy/envoy:v1.30", "name": "envoy"}],
    "initContainers": [{"image": "busybox:1.36", "name": "wait-for-db"}],
    "nodeName": "worker-2",
    "serviceAccountName": "checkout"
  },
  "status": {
    "containerStatuses": [{
      "containerID": "containerd://9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "image": "docker.io/shop/checkout:1.4.2",
      "name": "checkout",
      "ready": true,
      "restartCount": 0,
      "started": true,
      "state": {"running": {"startedAt": "2026-11-20T08:14:09Z"}}
    }, {
      "containerID": "containerd://60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
      "name": "envoy",
      "ready": true,
      "state": {"running": {"startedAt": "2026-11-20T08:14:09Z"}}
    }],
    "hostIP": "10.0.3.12",
    "initContainerStatuses": [{
      "containerID": "containerd://fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13",
      "name": "wait-for-db",
      "ready": true,
      "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
    }],
    "phase": "Running",
    "podIP": "10.244.2.17",
    "qosClass": "Burstable"
  }
})json";

TEST(ParsePodTest, DeploymentPodThroughItsReplicaSet) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(kDeploymentPod));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->namespace_name, "shop");
  EXPECT_EQ(pod->pod_name, "checkout-7d9f8b6c5d-x2kq9");
  EXPECT_EQ(pod->pod_uid, "6f1e9c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(pod->node_name, "worker-2");
  EXPECT_EQ(pod->labels.at("app.kubernetes.io/name"), "checkout");
  EXPECT_EQ(pod->labels.size(), 3u);
  EXPECT_EQ(pod->replicaset, "checkout-7d9f8b6c5d");
  EXPECT_EQ(pod->deployment, "checkout");
  EXPECT_EQ(pod->statefulset, "");
  EXPECT_EQ(pod->job, "");
  EXPECT_EQ(pod->cronjob, "");
  // Containers first, then init containers; ids without "containerd://".
  EXPECT_THAT(pod->containers,
              ElementsAre(Pair("checkout", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
                          Pair("envoy", "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"),
                          Pair("wait-for-db", "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13")));
}

TEST(ParsePodTest, StatefulSetPodOnCriO) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(R"json({
    "metadata": {"name": "postgres-0", "namespace": "db", "uid": "uid-pg-0",
                 "labels": {"app": "postgres", "statefulset.kubernetes.io/pod-name": "postgres-0"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "name": "postgres", "controller": true, "uid": "x"}]},
    "spec": {"nodeName": "worker-1"},
    "status": {"containerStatuses": [{"name": "postgres",
      "containerID": "cri-o://3c9909afec25354d551dae21590bb26e38d53f2173b8d3dc3eee4c047e7ab1c1"}]}
  })json"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->statefulset, "postgres");
  EXPECT_EQ(pod->deployment, "");
  EXPECT_EQ(pod->replicaset, "");
  EXPECT_THAT(pod->containers,
              ElementsAre(Pair("postgres", "3c9909afec25354d551dae21590bb26e38d53f2173b8d3dc3eee4c047e7ab1c1")));
}

TEST(ParsePodTest, DaemonSetPodOnDocker) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(R"json({
    "metadata": {"name": "node-exporter-8xk2p", "namespace": "monitoring", "uid": "uid-ne",
                 "ownerReferences": [{"kind": "DaemonSet", "name": "node-exporter", "controller": true}]},
    "status": {"containerStatuses": [{"name": "node-exporter",
      "containerID": "docker://b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"}]}
  })json"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->daemonset, "node-exporter");
  EXPECT_EQ(pod->node_name, "");
  EXPECT_THAT(pod->containers,
              ElementsAre(Pair("node-exporter", "b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c")));
}

TEST(ParsePodTest, CronJobThroughItsJob) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(R"json({
    "metadata": {"name": "nightly-report-29012345-7xkzq", "namespace": "batch", "uid": "uid-cj",
                 "labels": {"batch.kubernetes.io/job-name": "nightly-report-29012345"},
                 "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                      "name": "nightly-report-29012345", "controller": true}]},
    "status": {"containerStatuses": [{"name": "report",
      "containerID": "containerd://7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730"}]}
  })json"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->job, "nightly-report-29012345");
  EXPECT_EQ(pod->cronjob, "nightly-report");
}

TEST(ParsePodTest, JobWithoutCronJob) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(R"json({
    "metadata": {"name": "migrate-db-5kq2x", "uid": "uid-job",
                 "ownerReferences": [{"kind": "Job", "name": "migrate-db"}]}
  })json"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->job, "migrate-db");
  EXPECT_EQ(pod->cronjob, "");
}

TEST(ParsePodTest, BarePodAndContainersNotYetCreated) {
  const absl::StatusOr<PodMetadata> pod = ParsePod(Json::parse(R"json({
    "metadata": {"name": "debug", "namespace": "default", "uid": "uid-bare"},
    "spec": {"nodeName": "worker-3"},
    "status": {"phase": "Pending",
               "containerStatuses": [{"name": "shell", "ready": false,
                                      "state": {"waiting": {"reason": "ContainerCreating"}}}]}
  })json"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->deployment, "");
  EXPECT_EQ(pod->statefulset, "");
  EXPECT_EQ(pod->daemonset, "");
  EXPECT_EQ(pod->job, "");
  EXPECT_TRUE(pod->labels.empty());
  EXPECT_TRUE(pod->containers.empty());
}

TEST(ParsePodTest, RejectsWhatIsNotAPod) {
  EXPECT_FALSE(ParsePod(Json::parse("[]")).ok());
  EXPECT_FALSE(ParsePod(Json::parse(R"({"metadata": {"name": "x"}})")).ok());
  EXPECT_FALSE(ParsePod(Json::parse(R"({"metadata": {"uid": 7}})")).ok());
  // Wrongly typed optional fields are ignored, never thrown on.
  const absl::StatusOr<PodMetadata> odd = ParsePod(Json::parse(
      R"({"metadata": {"uid": "u", "labels": {"a": 1, "b": "x"}, "ownerReferences": {}},
          "spec": [], "status": {"containerStatuses": [7, {"name": 3}]}})"));
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_THAT(odd->labels, ElementsAre(Pair("b", "x")));
}

TEST(WorkloadHeuristicsTest, NamesOfOwners) {
  EXPECT_EQ(StripContainerIdPrefix("containerd://abc"), "abc");
  EXPECT_EQ(StripContainerIdPrefix("cri-o://abc"), "abc");
  EXPECT_EQ(StripContainerIdPrefix("docker://abc"), "abc");
  EXPECT_EQ(StripContainerIdPrefix("abc"), "abc");
  EXPECT_EQ(DeploymentFromReplicaSet("web-frontend-5f7b9c8d4"), "web-frontend");
  EXPECT_EQ(DeploymentFromReplicaSet("nohash"), "");
  EXPECT_EQ(DeploymentFromReplicaSet("web-"), "");
  EXPECT_EQ(DeploymentFromReplicaSet("-abc"), "");
  EXPECT_EQ(DeploymentFromReplicaSet("web-Not_A_Hash"), "");
  EXPECT_EQ(CronJobFromJob("backup-29012345"), "backup");
  EXPECT_EQ(CronJobFromJob("backup-abc"), "");
  EXPECT_EQ(CronJobFromJob("29012345"), "");
}

// ---- PodCache -----------------------------------------------------------------

PodMetadata MakePod(std::string uid, std::vector<std::pair<std::string, std::string>> containers) {
  PodMetadata pod;
  pod.namespace_name = "ns";
  pod.pod_name = "pod-" + uid;
  pod.pod_uid = std::move(uid);
  pod.containers = std::move(containers);
  return pod;
}

TEST(PodCacheTest, AddModifyDelete) {
  PodCache cache;
  cache.Apply(PodEventType::kAdded, MakePod("a", {{"app", "c1"}, {"sidecar", "c2"}}));
  ASSERT_EQ(cache.size(), 1u);
  std::optional<PodCache::ContainerMatch> match = cache.LookupContainer("c2");
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->container_name, "sidecar");
  EXPECT_EQ(match->pod->pod_uid, "a");
  EXPECT_EQ(cache.LookupPod("a")->pod_name, "pod-a");
  EXPECT_EQ(cache.LookupPod("b"), nullptr);
  EXPECT_FALSE(cache.LookupContainer("c3").has_value());

  // A restarted sidecar has a new id; the old one no longer matches.
  PodMetadata modified = MakePod("a", {{"app", "c1"}, {"sidecar", "c3"}});
  modified.labels["app"] = "web";
  cache.Apply(PodEventType::kModified, modified);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_FALSE(cache.LookupContainer("c2").has_value());
  ASSERT_TRUE(cache.LookupContainer("c3").has_value());
  EXPECT_EQ(cache.LookupContainer("c3")->pod->labels.at("app"), "web");
  // A reader keeps the pod it looked up, whatever happens next.
  const std::shared_ptr<const PodMetadata> held = cache.LookupPod("a");

  cache.Apply(PodEventType::kDeleted, MakePod("a", {}));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.LookupPod("a"), nullptr);
  EXPECT_FALSE(cache.LookupContainer("c1").has_value());
  EXPECT_FALSE(cache.LookupContainer("c3").has_value());
  EXPECT_EQ(held->pod_name, "pod-a");
  // Deleting what is unknown is harmless.
  cache.Apply(PodEventType::kDeleted, MakePod("zzz", {}));
  EXPECT_EQ(cache.evictions(), 0u);
}

TEST(PodCacheTest, ReplaceForgetsWhatTheListDoesNotHave) {
  PodCache cache;
  cache.Apply(PodEventType::kAdded, MakePod("a", {{"x", "ca"}}));
  cache.Apply(PodEventType::kAdded, MakePod("b", {{"x", "cb"}}));
  cache.Replace({MakePod("b", {{"x", "cb2"}}), MakePod("c", {{"x", "cc"}})});
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.LookupPod("a"), nullptr);
  EXPECT_FALSE(cache.LookupContainer("ca").has_value());
  EXPECT_FALSE(cache.LookupContainer("cb").has_value());
  EXPECT_EQ(cache.LookupContainer("cb2")->pod->pod_uid, "b");
  EXPECT_EQ(cache.LookupContainer("cc")->pod->pod_uid, "c");
}

TEST(PodCacheTest, BoundedOldestFirst) {
  PodCache cache(/*max_pods=*/3);
  for (const char* uid : {"p1", "p2", "p3"}) {
    cache.Apply(PodEventType::kAdded, MakePod(uid, {{"c", std::string("id-") + uid}}));
  }
  // A modification does not make p1 younger.
  cache.Apply(PodEventType::kModified, MakePod("p1", {{"c", "id-p1"}}));
  cache.Apply(PodEventType::kAdded, MakePod("p4", {{"c", "id-p4"}}));
  cache.Apply(PodEventType::kAdded, MakePod("p5", {{"c", "id-p5"}}));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.evictions(), 2u);
  EXPECT_EQ(cache.LookupPod("p1"), nullptr);
  EXPECT_EQ(cache.LookupPod("p2"), nullptr);
  EXPECT_FALSE(cache.LookupContainer("id-p1").has_value());
  EXPECT_FALSE(cache.LookupContainer("id-p2").has_value());
  for (const char* uid : {"p3", "p4", "p5"}) EXPECT_NE(cache.LookupPod(uid), nullptr) << uid;
  EXPECT_TRUE(cache.LookupContainer("id-p5").has_value());
}

TEST(PodCacheTest, ServiceNameOrder) {
  PodMetadata pod = MakePod("u", {});
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "");
  pod.job = "nightly-report-29012345";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "nightly-report-29012345");
  pod.cronjob = "nightly-report";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "nightly-report");
  pod.daemonset = "agent";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "agent");
  pod.statefulset = "postgres";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "postgres");
  pod.deployment = "checkout";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "checkout");
  pod.labels["app"] = "";  // an empty label does not count
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "checkout");
  pod.labels["app"] = "legacy-app";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "legacy-app");
  pod.labels["app.kubernetes.io/name"] = "shop-checkout";
  EXPECT_EQ(PodCache::ServiceNameFor(pod, "c"), "shop-checkout");
}

TEST(PodCacheTest, ConcurrentReadersAndWriter) {
  PodCache cache(/*max_pods=*/64);
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      if (auto match = cache.LookupContainer("id-7")) {
        EXPECT_EQ(match->container_name, "c");
      }
      cache.LookupPod("p3");
    }
  });
  for (int round = 0; round < 200; ++round) {
    for (int i = 0; i < 16; ++i) {
      const std::string uid = "p" + std::to_string(i);
      cache.Apply(PodEventType::kModified, MakePod(uid, {{"c", "id-" + std::to_string(i)}}));
    }
    cache.Apply(PodEventType::kDeleted, MakePod("p7", {}));
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(cache.size(), 15u);
}

// ---- PodWatcher ---------------------------------------------------------------

// The mock stands in for a Kubernetes API server, which cannot run here. It
// serves one scripted response per request, in order, on 127.0.0.1, with the
// chunked transfer encoding the API server uses for lists and watch streams.
// It records each request's target and Authorization header.
class MockApiServer {
 public:
  struct Response {
    int status = 200;
    std::vector<std::string> chunks;   // each written as one HTTP chunk
    std::function<void()> on_request;  // when the request arrives
    std::function<void()> after_body;  // after the chunks, before the end
    bool hold_open = false;            // keep the stream open until the client leaves
  };
  struct Request {
    std::string target;
    std::string authorization;
  };

  explicit MockApiServer(std::vector<Response> script) : script_(std::move(script)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 8) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~MockApiServer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void Serve() {
    while (!stop_.load()) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (poll(&pfd, 1, 20) <= 0) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      Handle(fd);
      close(fd);
    }
  }

  void Handle(int fd) {
    std::string head;
    char buffer[4096];
    while (head.find("\r\n\r\n") == std::string::npos && !stop_.load()) {
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, 20) <= 0) continue;
      const ssize_t n = read(fd, buffer, sizeof(buffer));
      if (n <= 0) return;
      head.append(buffer, static_cast<size_t>(n));
    }
    Request request;
    const size_t first_space = head.find(' ');
    request.target = head.substr(first_space + 1, head.find(' ', first_space + 1) - first_space - 1);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t auth = lower.find("\r\nauthorization: ");
    if (auth != std::string::npos) {
      const size_t start = auth + std::string("\r\nauthorization: ").size();
      request.authorization = head.substr(start, head.find("\r\n", start) - start);
    }
    size_t index;
    {
      std::lock_guard<std::mutex> lock(mu_);
      index = requests_.size();
      requests_.push_back(request);
    }
    // Past the script: a watch that never sends anything.
    Response response;
    response.hold_open = true;
    if (index < script_.size()) response = script_[index];
    if (response.on_request) response.on_request();

    Send(fd, "HTTP/1.1 " + std::to_string(response.status) +
                 (response.status == 200 ? " OK" : " Error") +
                 "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                 "Connection: close\r\n\r\n");
    for (const std::string& chunk : response.chunks) {
      char size[32];
      snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
      Send(fd, size + chunk + "\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // separate reads
    }
    if (response.after_body) response.after_body();
    if (response.hold_open) {
      // Until the client hangs up (or the test ends).
      while (!stop_.load()) {
        pollfd pfd{fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) > 0 && read(fd, buffer, sizeof(buffer)) <= 0) return;
      }
      return;
    }
    Send(fd, "0\r\n\r\n");
  }

  static void Send(int fd, const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  const std::vector<Response> script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Request> requests_;
};

std::string PodJson(const std::string& uid, const std::string& name, const std::string& version,
                    const std::string& container_id, const std::string& app = "") {
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", name},
                {"namespace", "default"},
                {"uid", uid},
                {"resourceVersion", version},
                {"labels", Json::object()}}},
              {"spec", {{"nodeName", "node-1"}}},
              {"status",
               {{"containerStatuses",
                 Json::array({{{"name", "main"}, {"containerID", "containerd://" + container_id}}})}}}};
  if (!app.empty()) pod["metadata"]["labels"]["app"] = app;
  return pod.dump();
}

std::string ListJson(const std::string& version, const std::vector<std::string>& pods) {
  std::string items;
  for (const std::string& pod : pods) items += (items.empty() ? "" : ",") + pod;
  return R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":")" + version +
         R"("},"items":[)" + items + "]}";
}

std::string Event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}

std::string Bookmark(const std::string& version) {
  return Event("BOOKMARK", R"({"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":")" +
                               version + R"("}})");
}

constexpr char kGoneStatus[] =
    R"j({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)j"
    R"j("message":"too old resource version: 104 (150)","reason":"Expired","code":410})j";

constexpr char kListTarget[] = "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1";

class PodWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("loupe_k8s_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    WriteToken("token-one\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteToken(const std::string& token) {
    std::ofstream(dir_ / "token", std::ios::trunc) << token;
  }

  PodWatcherOptions Options(const MockApiServer& server) {
    PodWatcherOptions options;
    options.api_base_url = server.base_url();
    options.token_path = (dir_ / "token").string();
    options.ca_path = "";
    options.node_name = "node-1";
    options.initial_backoff = std::chrono::milliseconds(10);
    options.max_backoff = std::chrono::milliseconds(50);
    return options;
  }

  // Polls `done` for up to five seconds.
  static bool WaitFor(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
  }

  std::filesystem::path dir_;
};

TEST_F(PodWatcherTest, ListWatchResumeAndRelistAfterGone) {
  const std::string kIdA(64, 'a'), kIdB(64, 'b'), kIdC(64, 'c');
  PodCache cache;
  // What the cache held when the watcher came back after the first watch.
  size_t size_after_first_watch = 0;
  std::string app_of_a_after_first_watch;
  bool b_after_first_watch = true;

  std::vector<MockApiServer::Response> script(5);
  script[0].chunks = {ListJson("100", {PodJson("uid-a", "a", "99", kIdA)})};
  const std::string added_b = Event("ADDED", PodJson("uid-b", "b", "101", kIdB));
  script[1].chunks = {added_b.substr(0, 40), added_b.substr(40),  // an event across two reads
                      Event("MODIFIED", PodJson("uid-a", "a", "102", kIdA, "renamed")) +
                          Event("DELETED", PodJson("uid-b", "b", "103", kIdB)),
                      Bookmark("104")};
  script[1].after_body = [&] { WriteToken("token-two"); };  // the token rotates
  script[2].on_request = [&] {
    size_after_first_watch = cache.size();
    const auto a = cache.LookupContainer(kIdA);
    if (a) app_of_a_after_first_watch = a->pod->labels.at("app");
    b_after_first_watch = cache.LookupPod("uid-b") != nullptr;
  };
  script[2].chunks = {Event("ERROR", kGoneStatus)};
  script[3].chunks = {ListJson("200", {PodJson("uid-c", "c", "150", kIdC)})};
  script[4].chunks = {Bookmark("201")};
  script[4].hold_open = true;
  MockApiServer server(script);

  PodWatcher watcher(Options(server), &cache);
  ASSERT_TRUE(watcher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return watcher.resource_version() == "201"; }))
      << "resourceVersion " << watcher.resource_version();

  const std::vector<MockApiServer::Request> requests = server.requests();
  ASSERT_EQ(requests.size(), 5u);
  EXPECT_EQ(requests[0].target, kListTarget);
  EXPECT_THAT(requests[1].target, HasSubstr(std::string(kListTarget) + "&watch=1&resourceVersion=100"
                                            "&allowWatchBookmarks=true&timeoutSeconds="));
  // Resumed from the bookmark, the last version seen.
  EXPECT_THAT(requests[2].target, HasSubstr("&watch=1&resourceVersion=104&"));
  // 410 Gone: listed again, then watched from the new list's version.
  EXPECT_EQ(requests[3].target, kListTarget);
  EXPECT_THAT(requests[4].target, HasSubstr("&watch=1&resourceVersion=200&"));
  // The token file is read again for every connection.
  EXPECT_EQ(requests[0].authorization, "Bearer token-one");
  EXPECT_EQ(requests[1].authorization, "Bearer token-one");
  EXPECT_EQ(requests[2].authorization, "Bearer token-two");
  EXPECT_EQ(requests[4].authorization, "Bearer token-two");

  EXPECT_EQ(size_after_first_watch, 1u);
  EXPECT_EQ(app_of_a_after_first_watch, "renamed");
  EXPECT_FALSE(b_after_first_watch);
  // The relist replaced everything.
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.LookupPod("uid-a"), nullptr);
  ASSERT_TRUE(cache.LookupContainer(kIdC).has_value());
  EXPECT_EQ(cache.LookupContainer(kIdC)->container_name, "main");

  const PodWatcherStats stats = watcher.stats();
  EXPECT_EQ(stats.lists, 2u);
  EXPECT_EQ(stats.relists, 1u);
  EXPECT_EQ(stats.watch_events, 6u);  // 4 + the ERROR + the last bookmark
  EXPECT_EQ(stats.reconnects, 1u);
  EXPECT_EQ(stats.errors, 0u);

  // Stop() ends a watch that is waiting for events, promptly.
  const auto before = std::chrono::steady_clock::now();
  watcher.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(2500));
}

TEST_F(PodWatcherTest, HttpGoneOnWatchRelists) {
  std::vector<MockApiServer::Response> script(4);
  script[0].chunks = {ListJson("5", {})};
  script[1].status = 410;
  script[1].chunks = {kGoneStatus};
  script[2].chunks = {ListJson("6", {PodJson("uid-x", "x", "6", std::string(64, 'd'))})};
  script[3].hold_open = true;
  MockApiServer server(script);
  PodCache cache;
  PodWatcher watcher(Options(server), &cache);
  ASSERT_TRUE(watcher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return server.requests().size() >= 4; }));
  const std::vector<MockApiServer::Request> requests = server.requests();
  EXPECT_THAT(requests[1].target, HasSubstr("resourceVersion=5&"));
  EXPECT_EQ(requests[2].target, kListTarget);
  EXPECT_THAT(requests[3].target, HasSubstr("resourceVersion=6&"));
  EXPECT_EQ(watcher.stats().lists, 2u);
  EXPECT_EQ(watcher.stats().relists, 1u);
  EXPECT_NE(cache.LookupPod("uid-x"), nullptr);
  watcher.Stop();
}

TEST_F(PodWatcherTest, FailedListRetriedAfterBackoff) {
  std::vector<MockApiServer::Response> script(3);
  script[0].status = 403;
  script[0].chunks = {R"({"kind":"Status","status":"Failure","reason":"Forbidden","code":403})"};
  script[1].chunks = {ListJson("9", {})};
  script[2].hold_open = true;
  MockApiServer server(script);
  PodCache cache;
  PodWatcher watcher(Options(server), &cache);
  ASSERT_TRUE(watcher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return server.requests().size() >= 3; }));
  const std::vector<MockApiServer::Request> requests = server.requests();
  EXPECT_EQ(requests[0].target, kListTarget);
  EXPECT_EQ(requests[1].target, kListTarget);
  EXPECT_THAT(requests[2].target, HasSubstr("resourceVersion=9&"));
  EXPECT_EQ(watcher.stats().errors, 1u);
  EXPECT_EQ(watcher.stats().lists, 1u);
  watcher.Stop();
}

TEST_F(PodWatcherTest, OverlongEventReconnectsFromTheLastVersion) {
  std::vector<MockApiServer::Response> script(3);
  script[0].chunks = {ListJson("7", {})};
  script[1].chunks = {Bookmark("8"), std::string(3000, 'x')};  // no newline in sight
  script[2].hold_open = true;
  MockApiServer server(script);
  PodCache cache;
  PodWatcherOptions options = Options(server);
  options.max_line_bytes = 1024;
  PodWatcher watcher(options, &cache);
  ASSERT_TRUE(watcher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return server.requests().size() >= 3; }));
  EXPECT_THAT(server.requests()[2].target, HasSubstr("resourceVersion=8&"));
  EXPECT_THAT(server.requests()[2].target, Not(HasSubstr("resourceVersion=7")));
  EXPECT_EQ(watcher.stats().errors, 1u);
  EXPECT_EQ(watcher.stats().reconnects, 1u);
  watcher.Stop();
}

TEST(PodWatcherOptionsTest, StartNeedsANodeName) {
  PodCache cache;
  PodWatcherOptions options;
  options.api_base_url = "http://127.0.0.1:1";
  PodWatcher watcher(options, &cache);
  EXPECT_FALSE(watcher.Start().ok());
}

TEST(PodWatcherOptionsTest, FromEnvironment) {
  // Restores the variables this test changes.
  struct SavedEnv {
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    void Set(const char* name, const char* value) {
      const char* old = std::getenv(name);
      saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value) {
        setenv(name, value, 1);
      } else {
        unsetenv(name);
      }
    }
    ~SavedEnv() {
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
        if (it->second) {
          setenv(it->first.c_str(), it->second->c_str(), 1);
        } else {
          unsetenv(it->first.c_str());
        }
      }
    }
  } env;

  env.Set("KUBERNETES_SERVICE_HOST", nullptr);
  EXPECT_FALSE(PodWatcherOptions::FromEnvironment().has_value());

  env.Set("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  env.Set("KUBERNETES_SERVICE_PORT", "6443");
  env.Set("NODE_NAME", "worker-7");
  std::optional<PodWatcherOptions> options = PodWatcherOptions::FromEnvironment();
  ASSERT_TRUE(options.has_value());
  EXPECT_EQ(options->api_base_url, "https://10.96.0.1:6443");
  EXPECT_EQ(options->node_name, "worker-7");
  EXPECT_EQ(options->token_path, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(options->ca_path, "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");

  env.Set("KUBERNETES_SERVICE_HOST", "fd00:10:96::1");
  env.Set("KUBERNETES_SERVICE_PORT", nullptr);
  options = PodWatcherOptions::FromEnvironment("MY_NODE");
  ASSERT_TRUE(options.has_value());
  EXPECT_EQ(options->api_base_url, "https://[fd00:10:96::1]:443");
}

}  // namespace
}  // namespace loupe
