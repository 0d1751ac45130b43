// The victim of tests/integration/oom_test.cc: allocates and touches memory
// 1 MiB at a time until the OOM killer ends it. Started already inside the
// memory cgroup under test.
//
//   oom_victim [--max-mib N] [--hold] [--serve PORT] [--step-ms MS]
//
// Exits 3 (instead of growing forever) if N MiB were touched and no OOM
// kill came: the cgroup's limit was not enforced. With --hold it keeps the
// N MiB and waits to be killed instead. With --serve it is an HTTP server
// on 127.0.0.1:PORT that takes one request and, instead of answering it,
// grows until it is killed (a server OOM-killed while serving), sleeping
// MS milliseconds after each MiB (so that memory samples see it grow).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Listens, accepts one connection and reads its request head; the
// connection stays open (the answer never comes). Exits 4 on failure.
int ServeOneRequest(int port) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0) {
    std::perror("oom_victim: listen");
    std::exit(4);
  }
  const int conn = accept(listener, nullptr, nullptr);
  std::string head;
  char buf[1024];
  while (conn >= 0 && head.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = read(conn, buf, sizeof(buf));
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  if (conn < 0 || head.find("\r\n\r\n") == std::string::npos) {
    std::fprintf(stderr, "oom_victim: no request\n");
    std::exit(4);
  }
  return conn;
}

}  // namespace

int main(int argc, char** argv) {
  long max_mib = 512;
  bool hold = false;
  int serve_port = 0;
  long step_ms = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max-mib") == 0 && i + 1 < argc) {
      max_mib = std::strtol(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--hold") == 0) {
      hold = true;
    } else if (std::strcmp(argv[i], "--serve") == 0 && i + 1 < argc) {
      serve_port = static_cast<int>(std::strtol(argv[++i], nullptr, 10));
    } else if (std::strcmp(argv[i], "--step-ms") == 0 && i + 1 < argc) {
      step_ms = std::strtol(argv[++i], nullptr, 10);
    }
  }
  if (serve_port != 0) ServeOneRequest(serve_port);
  constexpr size_t kStep = 1 << 20;
  const long page = sysconf(_SC_PAGESIZE);
  std::vector<char*> blocks;
  for (long mib = 0; mib < max_mib; ++mib) {
    char* block = static_cast<char*>(std::malloc(kStep));
    if (block == nullptr) return 2;
    // One write per page makes every page resident (anonymous RSS).
    for (size_t off = 0; off < kStep; off += static_cast<size_t>(page)) block[off] = 1;
    blocks.push_back(block);
    if (step_ms > 0) usleep(static_cast<useconds_t>(step_ms) * 1000);
  }
  if (hold) {
    for (;;) pause();
  }
  std::fprintf(stderr, "oom_victim: touched %ld MiB and was not killed\n", max_mib);
  return 3;
}
