// The agent's HTTP endpoint: Prometheus /metrics plus /healthz and /readyz
// on one listener.
//
//   GET /metrics  200, text exposition format 0.0.4: the recorder's RED
//                 histograms (cumulative), target_info, whatever the
//                 SelfMetricsSource returns, and the endpoint's own
//                 loupe_prometheus_scrapes_total / _scrape_errors_total
//   GET /healthz  200 "ok" while the process serves
//   GET /readyz   200 "ready" when ready() is true, else 503 "not ready"
//   GET <path>    200 application/json from a ServeJson() callback (/oom)
//   anything else 404; other methods on those paths 405
//
// Built on civetweb directly rather than prometheus-cpp's Exposer: the
// Exposer owns its civetweb server and only serves registered collectables
// on metric paths, so /healthz and /readyz (plain text, a 503 state) could
// not share the listener. prometheus-cpp still writes the exposition
// (TextSerializer).
//
// Requests are served on civetweb's own threads (a few; scrapes are rare),
// which start with every signal blocked so the agent's sigtimedwait keeps
// receiving SIGINT/SIGTERM.
#ifndef LOUPE_EXPORTERS_PROMETHEUS_METRICS_HTTP_SERVER_H_
#define LOUPE_EXPORTERS_PROMETHEUS_METRICS_HTTP_SERVER_H_

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "decoders/model/metrics.h"
#include "exporters/self_metrics.h"

struct mg_context;
struct mg_connection;

namespace loupe {

struct MetricsHttpServerStats {
  uint64_t scrapes = 0;         // GET /metrics answered
  uint64_t scrape_errors = 0;   // /metrics requests answered 500
  uint64_t other_requests = 0;  // health, readiness, 404, 405
};

class MetricsHttpServer {
 public:
  // Listens on `listen` ("HOST:PORT": an IPv4 address, "localhost", or
  // "0.0.0.0"/"" for every interface; port 0 picks a free port, see port()).
  // `recorder` must outlive the server; `self` may be empty; `ready` may be
  // empty (always ready). Both callbacks run on the server's threads and must
  // be thread-safe. Fails with InvalidArgument for a malformed address and
  // Unavailable when the address cannot be bound, naming the address.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(std::string listen,
                                                                  const MetricsRecorder& recorder,
                                                                  SelfMetricsSource self,
                                                                  std::function<bool()> ready);
  // Stops listening and waits for requests in progress.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when started with port 0).
  uint16_t port() const { return port_; }
  // What was asked for, e.g. "127.0.0.1:9464".
  const std::string& listen() const { return listen_; }
  MetricsHttpServerStats stats() const;

  // The /metrics body as served now (also what tests compare against).
  std::string RenderMetrics() const;

  // Serves GET `path` with the JSON `body()` returns (called on the
  // server's threads: it must be thread-safe). Call before requests for the
  // path arrive; a later call for the same path replaces the callback.
  void ServeJson(std::string path, std::function<std::string()> body);

 private:
  MetricsHttpServer(std::string listen, const MetricsRecorder& recorder, SelfMetricsSource self,
                    std::function<bool()> ready)
      : listen_(std::move(listen)),
        recorder_(recorder),
        self_(std::move(self)),
        ready_(std::move(ready)) {}
  static int HandleRequest(mg_connection* conn, void* server);
  int Handle(mg_connection* conn);

  const std::string listen_;
  const MetricsRecorder& recorder_;
  const SelfMetricsSource self_;
  const std::function<bool()> ready_;
  mg_context* context_ = nullptr;
  uint16_t port_ = 0;
  in_addr wake_address_{};  // IPv4, network order: where ~MetricsHttpServer connects
  mutable std::mutex json_mutex_;
  absl::flat_hash_map<std::string, std::function<std::string()>> json_ ABSL_GUARDED_BY(json_mutex_);
  std::atomic<uint64_t> scrapes_{0};
  std::atomic<uint64_t> scrape_errors_{0};
  std::atomic<uint64_t> other_requests_{0};
};

}  // namespace loupe

#endif  // LOUPE_EXPORTERS_PROMETHEUS_METRICS_HTTP_SERVER_H_
