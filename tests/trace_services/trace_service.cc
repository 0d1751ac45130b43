// The services of the trace-context integration test
// (tests/integration/trace_context_test.cc): one binary, three modes, plain
// POSIX sockets and libpq, so that every hop is a syscall the agent sees and
// nothing in here knows about tracing.
//
//   trace_service --mode leaf --port P
//       Thread per connection; any GET is answered 200 with "leaf <path>\n".
//   trace_service --mode backend --port P --leaf-port L --pg CONNINFO
//       Thread per connection. The thread opens its own PostgreSQL
//       connection before it reads the first request (so the connection
//       start-up is never inside a request), then for each GET /api/<id>, on
//       that same thread: one query whose text carries <id>, one GET
//       /leaf/<id> to the leaf on a fresh connection (closed after use; no
//       trace headers are forwarded), and finally its own 200.
//   trace_service --mode eventloop --port P --leaf-port L --batch N
//       One thread with epoll: requests are held until N connections each
//       have a complete one; then one GET to the leaf, made while all N are
//       open, and all N are answered (and closed). The interleaved event loop
//       a thread-based context linker must not link.
//
// All modes listen on 127.0.0.1 (the leaf on --listen, for the test across
// network namespaces) and print "listening on P" once they accept.
// Requests may use keep-alive (HTTP/1.1) or not (HTTP/1.0, Connection:
// close); request bodies are skipped. Errors go to stderr.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMaxHeadBytes = 16 * 1024;      // a request or response head
constexpr size_t kMaxBodyBytes = 1024 * 1024;    // a request or response body
constexpr size_t kMaxIdLength = 48;              // "req-" + id stays < 63 (NAMEDATALEN)
constexpr int kLeafTimeoutSeconds = 10;          // one leaf call, each syscall
constexpr int kMaxEvents = 64;

struct Options {
  std::string mode;
  uint16_t port = 0;
  uint16_t leaf_port = 0;
  std::string pg;
  size_t batch = 2;
  in_addr listen_addr{htonl(INADDR_LOOPBACK)};
};

void Fail(const std::string& what) { std::fprintf(stderr, "trace_service: %s\n", what.c_str()); }

std::string Errno(const char* call) { return std::string(call) + ": " + std::strerror(errno); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of header `name` in a head (start line and header lines, each
// ending in CRLF), or nullopt.
std::optional<std::string_view> Header(std::string_view head, std::string_view name) {
  size_t line = head.find("\r\n");
  while (line != std::string_view::npos && line + 2 < head.size()) {
    line += 2;
    const size_t end = head.find("\r\n", line);
    const std::string_view text = head.substr(line, end - line);
    const size_t colon = text.find(':');
    if (colon != std::string_view::npos && EqualsIgnoreCase(Trim(text.substr(0, colon)), name)) {
      return Trim(text.substr(colon + 1));
    }
    line = end;
  }
  return std::nullopt;
}

// Content-Length as a number; nullopt when malformed or too large.
std::optional<size_t> ContentLength(std::string_view head) {
  const auto value = Header(head, "content-length");
  if (!value) return 0;
  if (value->empty() || value->size() > 9) return std::nullopt;
  size_t n = 0;
  for (char c : *value) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  if (n > kMaxBodyBytes) return std::nullopt;
  return n;
}

struct Request {
  std::string method;
  std::string path;
  bool keep_alive = false;
  size_t body_length = 0;
};

// Parses a request head (without its final empty line's CRLF pair).
std::optional<Request> ParseRequestHead(std::string_view head) {
  const size_t line_end = head.find("\r\n");
  const std::string_view start = head.substr(0, line_end);
  const size_t sp1 = start.find(' ');
  const size_t sp2 = start.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return std::nullopt;
  const std::string_view version = start.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return std::nullopt;
  // Chunked request bodies are not needed by the test; refuse them.
  if (Header(head, "transfer-encoding")) return std::nullopt;
  const auto length = ContentLength(head);
  if (!length) return std::nullopt;
  Request r;
  r.method = std::string(start.substr(0, sp1));
  r.path = std::string(start.substr(sp1 + 1, sp2 - sp1 - 1));
  const auto connection = Header(head, "connection");
  r.keep_alive = version == "HTTP/1.1" ? !(connection && EqualsIgnoreCase(*connection, "close"))
                                       : connection && EqualsIgnoreCase(*connection, "keep-alive");
  r.body_length = *length;
  return r;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool SendResponse(int fd, int status, std::string_view reason, std::string_view body,
                  bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                    "\r\nContent-Type: text/plain\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: " +
                    (keep_alive ? "keep-alive" : "close") + "\r\n\r\n";
  out.append(body);
  return SendAll(fd, out);
}

// A blocking connection with its unread bytes.
class Stream {
 public:
  explicit Stream(int fd) : fd_(fd) {}
  ~Stream() { close(fd_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  int fd() const { return fd_; }

  // The next head (up to and including its blank line) with the head itself
  // consumed; nullopt at end of stream, on error or when it is too long.
  std::optional<std::string> ReadHead() {
    while (true) {
      const size_t end = buffer_.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::string head = buffer_.substr(0, end + 2);
        buffer_.erase(0, end + 4);
        return head;
      }
      if (buffer_.size() > kMaxHeadBytes) {
        Fail("head longer than " + std::to_string(kMaxHeadBytes) + " bytes");
        return std::nullopt;
      }
      if (!Fill()) return std::nullopt;
    }
  }

  // Consumes exactly n body bytes, returning them.
  std::optional<std::string> ReadBody(size_t n) {
    while (buffer_.size() < n) {
      if (!Fill()) return std::nullopt;
    }
    std::string body = buffer_.substr(0, n);
    buffer_.erase(0, n);
    return body;
  }

 private:
  bool Fill() {
    char chunk[4096];
    while (true) {
      const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) Fail(Errno("recv"));
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  int fd_;
  std::string buffer_;
};

int ConnectLoopback(uint16_t port, std::string* error) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = Errno("socket");
    return -1;
  }
  timeval timeout{kLeafTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = Errno("connect to the leaf");
    close(fd);
    return -1;
  }
  return fd;
}

// GET `path` from the leaf on a fresh connection, closed afterwards. Returns
// the status code, or 0 with *error set.
int CallLeaf(uint16_t leaf_port, const std::string& path, std::string* error) {
  const int fd = ConnectLoopback(leaf_port, error);
  if (fd < 0) return 0;
  Stream stream(fd);
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(leaf_port) +
                              "\r\nUser-Agent: trace_service\r\nAccept: */*\r\n\r\n";
  if (!SendAll(fd, request)) {
    *error = Errno("send to the leaf");
    return 0;
  }
  const auto head = stream.ReadHead();
  if (!head || head->compare(0, 9, "HTTP/1.1 ") != 0 || head->size() < 12) {
    *error = "no HTTP/1.1 response from the leaf";
    return 0;
  }
  const auto length = ContentLength(*head);
  if (!length || !stream.ReadBody(*length)) {
    *error = "bad or short response body from the leaf";
    return 0;
  }
  return std::atoi(head->c_str() + 9);
}

// Reads one request with its body; nullopt at end of stream. A malformed
// request is answered 400 before nullopt.
std::optional<Request> NextRequest(Stream& stream) {
  const auto head = stream.ReadHead();
  if (!head) return std::nullopt;
  auto request = ParseRequestHead(*head);
  if (!request) {
    SendResponse(stream.fd(), 400, "Bad Request", "bad request\n", false);
    return std::nullopt;
  }
  if (!stream.ReadBody(request->body_length)) return std::nullopt;
  return request;
}

void ServeLeaf(int fd) {
  Stream stream(fd);
  while (auto request = NextRequest(stream)) {
    const bool ok = request->method == "GET";
    const bool sent = ok ? SendResponse(fd, 200, "OK", "leaf " + request->path + "\n",
                                        request->keep_alive)
                         : SendResponse(fd, 405, "Method Not Allowed", "GET only\n", false);
    if (!sent || !ok || !request->keep_alive) return;
  }
}

// The id of "/api/<id>": 1..kMaxIdLength of [A-Za-z0-9_-], so that it can sit
// in a quoted SQL identifier as is.
std::optional<std::string> ApiId(const std::string& path) {
  constexpr std::string_view kPrefix = "/api/";
  if (path.compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  const std::string id = path.substr(kPrefix.size());
  if (id.empty() || id.size() > kMaxIdLength) return std::nullopt;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return std::nullopt;
  }
  return id;
}

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgConn = std::unique_ptr<PGconn, PgConnDeleter>;
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// One query carrying the id twice: as a parameter, and in a quoted column
// alias, which (unlike literals) survives the agent's SQL sanitizing, so
// that the span's db.query.text names its request.
bool QueryWithId(PGconn* pg, const std::string& id, std::string* error) {
  const std::string sql = "SELECT $1::text AS \"req-" + id + "\"";
  const char* values[1] = {id.c_str()};
  PgResult result(PQexecParams(pg, sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0));
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    *error = std::string("query failed: ") + PQerrorMessage(pg);
    return false;
  }
  if (PQntuples(result.get()) != 1 || id != PQgetvalue(result.get(), 0, 0)) {
    *error = "query returned something else than " + id;
    return false;
  }
  return true;
}

void ServeBackend(int fd, const Options& options) {
  Stream stream(fd);
  PgConn pg(PQconnectdb(options.pg.c_str()));
  std::string pg_error;
  if (PQstatus(pg.get()) != CONNECTION_OK) {
    pg_error = std::string("PostgreSQL connection failed: ") + PQerrorMessage(pg.get());
    Fail(pg_error);
  }
  while (auto request = NextRequest(stream)) {
    const auto id = request->method == "GET" ? ApiId(request->path) : std::nullopt;
    if (!id) {
      SendResponse(fd, 404, "Not Found", "GET /api/<id> only\n", false);
      return;
    }
    std::string error = pg_error;
    if (error.empty() && QueryWithId(pg.get(), *id, &error)) {
      const int status = CallLeaf(options.leaf_port, "/leaf/" + *id, &error);
      if (status != 200 && error.empty()) error = "leaf answered " + std::to_string(status);
    }
    if (!error.empty()) {
      Fail("/api/" + *id + ": " + error);
      SendResponse(fd, 502, "Bad Gateway", error + "\n", false);
      return;
    }
    if (!SendResponse(fd, 200, "OK", "backend " + *id + "\n", request->keep_alive) ||
        !request->keep_alive) {
      return;
    }
  }
}

// A connection of the event loop, and its request once complete.
struct Pending {
  std::string buffer;
  bool complete = false;
};

bool ServeEventLoop(int listen_fd, const Options& options) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    Fail(Errno("epoll_create1"));
    return false;
  }
  auto watch = [epoll_fd](int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0;
  };
  if (!watch(listen_fd)) {
    Fail(Errno("epoll_ctl"));
    return false;
  }
  std::map<int, Pending> connections;
  auto drop = [&](int fd) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    connections.erase(fd);
  };
  uint64_t batches = 0;
  epoll_event events[kMaxEvents];
  while (true) {
    const int n = epoll_wait(epoll_fd, events, kMaxEvents, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Fail(Errno("epoll_wait"));
      return false;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd) {
        const int conn = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0) {
          Fail(Errno("accept4"));
        } else if (watch(conn)) {
          connections[conn] = Pending{};
        } else {
          Fail(Errno("epoll_ctl"));
          close(conn);
        }
        continue;
      }
      Pending& pending = connections[fd];
      char chunk[4096];
      const ssize_t got = recv(fd, chunk, sizeof(chunk), 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0 || pending.buffer.size() + static_cast<size_t>(got) > kMaxHeadBytes) {
        drop(fd);  // closed by the peer, failed, or not a request we take
        continue;
      }
      pending.buffer.append(chunk, static_cast<size_t>(got));
      if (pending.complete) continue;  // a pipelined request: kept for later, then dropped
      const size_t end = pending.buffer.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (!ParseRequestHead(std::string_view(pending.buffer).substr(0, end + 2))) {
        SendResponse(fd, 400, "Bad Request", "bad request\n", false);
        drop(fd);
        continue;
      }
      pending.complete = true;
    }
    std::vector<int> ready;
    for (const auto& [fd, pending] : connections) {
      if (pending.complete) ready.push_back(fd);
    }
    if (ready.size() < options.batch) continue;
    // All `ready` requests are open on this thread while the leaf is called.
    std::string error;
    const std::string path = "/leaf/batch-" + std::to_string(++batches);
    const int status = CallLeaf(options.leaf_port, path, &error);
    if (status != 200) {
      Fail(path + ": " + (error.empty() ? "leaf answered " + std::to_string(status) : error));
    }
    for (int fd : ready) {
      // Blocking for the answer: it is small, and the socket buffer is empty.
      if (status == 200) {
        SendResponse(fd, 200, "OK", "eventloop " + path + "\n", false);
      } else {
        SendResponse(fd, 502, "Bad Gateway", "leaf call failed\n", false);
      }
      drop(fd);
    }
  }
}

int Listen(in_addr address, uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Fail(Errno("socket"));
    return -1;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr = address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    char text[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &address, text, sizeof(text));
    Fail(Errno(("bind " + std::string(text) + ":" + std::to_string(port)).c_str()));
    close(fd);
    return -1;
  }
  if (listen(fd, 512) != 0) {
    Fail(Errno("listen"));
    close(fd);
    return -1;
  }
  return fd;
}

bool ParsePort(const char* text, uint16_t* out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v <= 0 || v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

const char kUsage[] =
    "usage: trace_service --mode leaf --port P [--listen IPV4]\n"
    "       trace_service --mode backend --port P --leaf-port L --pg CONNINFO\n"
    "       trace_service --mode eventloop --port P --leaf-port L --batch N\n";

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    bool ok = true;
    if (flag == "--mode") {
      o.mode = value;
    } else if (flag == "--port") {
      ok = ParsePort(value, &o.port);
    } else if (flag == "--leaf-port") {
      ok = ParsePort(value, &o.leaf_port);
    } else if (flag == "--listen") {
      ok = inet_pton(AF_INET, value, &o.listen_addr) == 1;
    } else if (flag == "--pg") {
      o.pg = value;
    } else if (flag == "--batch") {
      const long batch = std::strtol(value, nullptr, 10);
      ok = batch >= 1 && batch <= 1000;
      o.batch = static_cast<size_t>(batch);
    } else {
      ok = false;
    }
    if (!ok) {
      Fail("bad flag or value: " + std::string(flag) + " " + value);
      return std::nullopt;
    }
  }
  const bool complete = argc % 2 == 1 && o.port != 0 &&
                        (o.mode == "leaf" || (o.mode == "backend" && o.leaf_port != 0 &&
                                              !o.pg.empty()) ||
                         (o.mode == "eventloop" && o.leaf_port != 0));
  if (!complete) return std::nullopt;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = ParseArgs(argc, argv);
  if (!options) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const int listen_fd = Listen(options->listen_addr, options->port);
  if (listen_fd < 0) return 1;
  std::printf("listening on %u\n", options->port);
  std::fflush(stdout);

  if (options->mode == "eventloop") return ServeEventLoop(listen_fd, *options) ? 0 : 1;
  while (true) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      Fail(Errno("accept4"));
      return 1;
    }
    if (options->mode == "leaf") {
      std::thread(ServeLeaf, fd).detach();
    } else {
      std::thread(ServeBackend, fd, *options).detach();
    }
  }
}
