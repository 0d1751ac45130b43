// A curl client that stays alive for a second after its request.
//
// The agent reads a process's /proc entry when it execs and when it first
// connects; a curl that is gone a few milliseconds later can beat that read
// on a busy machine, and its span then carries only the kernel's process
// name. Tests that check what the agent read from /proc (service.name from
// OTEL_SERVICE_NAME, process.executable.path) keep curl alive with a second
// transfer to a socket that accepts connections but never answers.
#ifndef LOUPE_TESTS_PACKAGING_LINGERING_CLIENT_H_
#define LOUPE_TESTS_PACKAGING_LINGERING_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loupe::testing {

class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
        listen(fd_, 16) == 0 && getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~SilentListener() {
    if (fd_ >= 0) close(fd_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  uint16_t port() const { return port_; }  // 0 if it could not listen

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// argv: env OTEL_SERVICE_NAME=... curl URL, then a one-second wait on
// `silent`. Prints the status code of the first transfer; exits 28 (curl's
// timeout, from the second).
inline std::vector<std::string> LingeringCurlArgv(const std::string& service_name,
                                                  const std::string& url,
                                                  const SilentListener& silent) {
  return {"/usr/bin/env", "OTEL_SERVICE_NAME=" + service_name, "/usr/bin/curl", "-s", "-o",
          "/dev/null", "-w", "%{http_code}\n", url, "--next", "-s", "-o", "/dev/null",
          "--max-time", "1", "http://127.0.0.1:" + std::to_string(silent.port()) + "/"};
}
inline constexpr int kLingeringCurlExit = 28;

}  // namespace loupe::testing

#endif  // LOUPE_TESTS_PACKAGING_LINGERING_CLIENT_H_
