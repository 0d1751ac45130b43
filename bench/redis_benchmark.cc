// Redis decode throughput: Loupe's real decoder path (ByteStream +
// ConnectionDecoder, one syscall event per recorded read, spans delivered to
// a sink) on conversations recorded from redis-server 7.0
// (tests/fixtures/redis/README.md): redis-benchmark's pipelined SET and GET
// (16 commands per write, 64 per connection), and a redis-cli session whose
// first reply is COMMAND DOCS (172 KB of nested maps). Each iteration
// decodes one whole connection. Reports bytes/s, RESP values/s (commands +
// replies) and spans/s.
//
// Run a Release build: redis_benchmark --benchmark_repetitions=5
#include <string>

#include "bench/recorded_conversation.h"
#include "decoders/redis/redis_decoder.h"

namespace loupe {
namespace {

void BM_Redis(benchmark::State& state, const char* fixture, uint64_t spans_per_connection) {
  bench::DecodeRecordedConversation(
      state, std::string(LOUPE_SOURCE_DIR) + "/tests/fixtures/redis/" + fixture,
      Protocol::kRedis, 6379, &redis::CreateDecoder, spans_per_connection);
}

BENCHMARK_CAPTURE(BM_Redis, benchmark_set_pipelined, "redis_benchmark_set.events", 64);
BENCHMARK_CAPTURE(BM_Redis, benchmark_get_pipelined, "redis_benchmark_get.events", 64);
BENCHMARK_CAPTURE(BM_Redis, cli_session_command_docs, "redis_cli.events", 15);

}  // namespace
}  // namespace loupe

BENCHMARK_MAIN();
