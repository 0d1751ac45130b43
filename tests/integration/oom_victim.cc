// The victim of tests/integration/oom_test.cc: allocates and touches memory
// 1 MiB at a time until the OOM killer ends it. Started already inside the
// memory cgroup under test.
//
//   oom_victim [--max-mib N] [--hold]
//
// Exits 3 (instead of growing forever) if N MiB were touched and no OOM
// kill came: the cgroup's limit was not enforced. With --hold it keeps the
// N MiB and waits to be killed instead.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  long max_mib = 512;
  bool hold = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max-mib") == 0 && i + 1 < argc) {
      max_mib = std::strtol(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--hold") == 0) {
      hold = true;
    }
  }
  constexpr size_t kStep = 1 << 20;
  const long page = sysconf(_SC_PAGESIZE);
  std::vector<char*> blocks;
  for (long mib = 0; mib < max_mib; ++mib) {
    char* block = static_cast<char*>(std::malloc(kStep));
    if (block == nullptr) return 2;
    // One write per page makes every page resident (anonymous RSS).
    for (size_t off = 0; off < kStep; off += static_cast<size_t>(page)) block[off] = 1;
    blocks.push_back(block);
  }
  if (hold) {
    for (;;) pause();
  }
  std::fprintf(stderr, "oom_victim: touched %ld MiB and was not killed\n", max_mib);
  return 3;
}
