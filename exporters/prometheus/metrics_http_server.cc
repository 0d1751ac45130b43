#include "exporters/prometheus/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "civetweb.h"
#include "exporters/prometheus/prometheus_format.h"

namespace loupe {

namespace {

// The content type Prometheus asks for and expects from text 0.0.4.
constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";
constexpr char kJsonContentType[] = "application/json";
// Scrapes are rare and small: a handful of threads is plenty, and a slow
// client cannot hold one past the request timeout.
constexpr char kThreads[] = "4";
constexpr char kRequestTimeoutMs[] = "10000";

uint64_t RealtimeNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// civetweb reports why it could not start (e.g. "cannot bind to
// 127.0.0.1:80: 98 (Address already in use)") only through its log
// callback, on the thread calling mg_start2; collect it there. Later
// messages (client errors while serving) are dropped: civetweb would print
// them on the agent's stderr.
thread_local std::string* t_start_log = nullptr;

int OnCivetLog(const mg_connection*, const char* message) {
  if (t_start_log != nullptr && message != nullptr) {
    if (!t_start_log->empty()) t_start_log->append("; ");
    t_start_log->append(message);
  }
  return 1;  // handled: civetweb prints nothing
}

// "HOST:PORT" -> civetweb's listening_ports syntax, or an error naming the
// address. civetweb itself accepts some malformed hosts silently (it read
// "999.1.1.1:80" as a valid spec), hence the strict parse here.
absl::StatusOr<std::string> CivetListenSpec(const std::string& listen) {
  auto bad = [&](const char* why) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics endpoint: bad listen address \"", listen, "\": ", why));
  };
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return bad("expected HOST:PORT, e.g. 127.0.0.1:9464");
  const std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  unsigned value = 0;
  const auto parsed = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || port.size() > 5 || parsed.ec != std::errc() ||
      parsed.ptr != port.data() + port.size() || value > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }
  const std::string port_number = std::to_string(value);
  if (host.empty() || host == "*" || host == "0.0.0.0") return port_number;  // every interface
  if (host.front() == '[') {
    if (mg_check_feature(8) == 0) return bad("IPv6 is not supported by this build of civetweb");
    in6_addr addr6{};
    if (host.back() != ']' ||
        inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &addr6) != 1) {
      return bad("not an IPv6 address in brackets");
    }
    return absl::StrCat(host, ":", port_number);
  }
  if (host == "localhost") return absl::StrCat("127.0.0.1:", port_number);
  in_addr addr{};
  if (inet_pton(AF_INET, host.c_str(), &addr) != 1) {
    return bad("the host must be an IPv4 address, localhost or 0.0.0.0");
  }
  return absl::StrCat(host, ":", port_number);
}

void Reply(mg_connection* conn, int status, const char* content_type, std::string_view body,
           bool head, const char* allow = nullptr) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  const std::string length = std::to_string(body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  if (allow != nullptr) mg_response_header_add(conn, "Allow", allow, -1);
  mg_response_header_send(conn);
  if (!head && !body.empty()) mg_write(conn, body.data(), body.size());
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    std::string listen, const MetricsRecorder& recorder, SelfMetricsSource self,
    std::function<bool()> ready) {
  absl::StatusOr<std::string> spec = CivetListenSpec(listen);
  if (!spec.ok()) return spec.status();

  static std::once_flag init_once;
  // Process-wide and never undone: civetweb's library state outlives any
  // one server.
  std::call_once(init_once, [] { mg_init_library(0); });

  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(std::move(listen), recorder, std::move(self), std::move(ready)));
  const char* options[] = {
      "listening_ports", spec->c_str(),       "num_threads", kThreads, "request_timeout_ms",
      kRequestTimeoutMs, "enable_keep_alive", "no",          nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &OnCivetLog;
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = server.get();
  init.configuration_options = options;
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error{};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  // civetweb's threads inherit this thread's signal mask: block everything
  // while they are created so that process signals reach the thread that
  // waits for them, never a request thread.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  std::string start_log;
  t_start_log = &start_log;
  server->context_ = mg_start2(&init, &error);
  t_start_log = nullptr;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);

  if (server->context_ == nullptr) {
    const std::string why = !start_log.empty() ? start_log : std::string(error_text);
    return absl::UnavailableError(absl::StrCat("metrics endpoint: cannot listen on ",
                                               server->listen_, ": ",
                                               why.empty() ? "civetweb failed to start" : why));
  }
  mg_set_request_handler(server->context_, "/", &MetricsHttpServer::HandleRequest, server.get());
  mg_server_port ports[4];
  std::memset(ports, 0, sizeof(ports));
  if (mg_get_server_ports(server->context_, 4, ports) >= 1) {
    server->port_ = static_cast<uint16_t>(ports[0].port);
  }
  // Where the destructor knocks: the bound address, or loopback for "every
  // interface".
  const size_t colon = spec->rfind(':');
  server->wake_address_.s_addr = htonl(INADDR_LOOPBACK);
  if (colon != std::string::npos) {
    inet_pton(AF_INET, spec->substr(0, colon).c_str(), &server->wake_address_);
  }
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (context_ == nullptr) return;
  // civetweb's master thread notices mg_stop's flag only when its poll() on
  // the listening socket returns, which it does every 2 seconds
  // (SOCKET_TIMEOUT_QUANTUM in 1.15): every shutdown would wait that long.
  // Connecting to the listener wakes it at once; keep knocking until the
  // stop is through, since a knock that lands before the flag is set is
  // simply served as an empty connection.
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    mg_stop(context_);
    stopped.store(true);
  });
  while (!stopped.load()) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port_);
      addr.sin_addr = wake_address_;
      connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
}

MetricsHttpServerStats MetricsHttpServer::stats() const {
  MetricsHttpServerStats s;
  s.scrapes = scrapes_.load();
  s.scrape_errors = scrape_errors_.load();
  s.other_requests = other_requests_.load();
  return s;
}

std::string MetricsHttpServer::RenderMetrics() const {
  std::vector<SelfMetric> self;
  if (self_) self = self_();
  // The endpoint's own counters; the recorder's (points, overflow, series)
  // are the agent's to report through `self`, for OTLP too.
  SelfMetric scrapes;
  scrapes.name = "loupe_prometheus_scrapes_total";
  scrapes.help = "Requests for /metrics answered, this one included.";
  scrapes.type = SelfMetric::Type::kCounter;
  scrapes.value = static_cast<double>(scrapes_.load() + 1);
  self.push_back(std::move(scrapes));
  SelfMetric errors;
  errors.name = "loupe_prometheus_scrape_errors_total";
  errors.help = "Requests for /metrics that failed with status 500.";
  errors.type = SelfMetric::Type::kCounter;
  errors.value = static_cast<double>(scrape_errors_.load());
  self.push_back(std::move(errors));
  return RenderPrometheusText(recorder_.CollectCumulative(RealtimeNowNs()), self);
}

void MetricsHttpServer::ServeJson(std::string path, std::function<std::string()> body) {
  std::lock_guard<std::mutex> lock(json_mutex_);
  json_[std::move(path)] = std::move(body);
}

int MetricsHttpServer::HandleRequest(mg_connection* conn, void* server) {
  return static_cast<MetricsHttpServer*>(server)->Handle(conn);
}

int MetricsHttpServer::Handle(mg_connection* conn) {
  const mg_request_info* request = mg_get_request_info(conn);
  const std::string_view path =
      request != nullptr && request->local_uri != nullptr ? request->local_uri : "";
  const std::string_view method =
      request != nullptr && request->request_method != nullptr ? request->request_method : "";
  const bool head = method == "HEAD";
  const bool get = head || method == "GET";
  std::function<std::string()> json;
  {
    std::lock_guard<std::mutex> lock(json_mutex_);
    if (auto it = json_.find(std::string(path)); it != json_.end()) json = it->second;
  }
  const bool known =
      path == "/metrics" || path == "/healthz" || path == "/readyz" || json != nullptr;
  // Exceptions must not unwind through civetweb's C frames; whatever throws
  // here (allocation, a callback) becomes a 500.
  try {
    if (!known) {
      ++other_requests_;
      Reply(conn, 404, kTextContentType, "not found", head);
      return 404;
    }
    if (!get) {
      ++other_requests_;
      Reply(conn, 405, kTextContentType, "method not allowed", false, "GET, HEAD");
      return 405;
    }
    if (path == "/metrics") {
      const std::string body = RenderMetrics();
      ++scrapes_;
      Reply(conn, 200, kExpositionContentType, body, head);
      return 200;
    }
    ++other_requests_;
    if (json) {
      Reply(conn, 200, kJsonContentType, json(), head);
      return 200;
    }
    if (path == "/healthz") {
      Reply(conn, 200, kTextContentType, "ok", head);
      return 200;
    }
    if (!ready_ || ready_()) {
      Reply(conn, 200, kTextContentType, "ready", head);
      return 200;
    }
    Reply(conn, 503, kTextContentType, "not ready", head);
    return 503;
  } catch (const std::exception& e) {
    if (path == "/metrics") ++scrape_errors_;
    Reply(conn, 500, kTextContentType, absl::StrCat("internal error: ", e.what()), head);
    return 500;
  } catch (...) {
    if (path == "/metrics") ++scrape_errors_;
    Reply(conn, 500, kTextContentType, "internal error", head);
    return 500;
  }
}

}  // namespace loupe
