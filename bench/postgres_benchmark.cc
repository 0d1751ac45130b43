// PostgreSQL decode throughput: Loupe's real decoder path (ByteStream +
// ConnectionDecoder, one syscall event per recorded read, spans delivered to
// a sink) on conversations recorded from pgbench against PostgreSQL 15
// (tests/fixtures/postgres: 5 TPC-B-like transactions each, simple,
// extended and prepared query modes, start-up included). Reports bytes/s
// and protocol messages/s.
//
// Run a Release build: postgres_benchmark --benchmark_repetitions=5
#include <string>

#include "bench/recorded_conversation.h"
#include "decoders/postgres/postgres_decoder.h"

namespace loupe {
namespace {

void BM_Postgres(benchmark::State& state, const char* fixture, uint64_t spans_per_connection) {
  bench::DecodeRecordedConversation(
      state, std::string(LOUPE_SOURCE_DIR) + "/tests/fixtures/postgres/" + fixture,
      Protocol::kPostgres, 5432, &postgres::CreateDecoder, spans_per_connection);
}

// Each recorded connection (5 pgbench transactions) makes 35 spans.
BENCHMARK_CAPTURE(BM_Postgres, pgbench_simple, "pgbench_simple.events", 35);
BENCHMARK_CAPTURE(BM_Postgres, pgbench_extended, "pgbench_extended.events", 35);
BENCHMARK_CAPTURE(BM_Postgres, pgbench_prepared, "pgbench_prepared.events", 35);

}  // namespace
}  // namespace loupe

BENCHMARK_MAIN();
