// MySQL/MariaDB decode throughput: Loupe's real decoder path (ByteStream +
// ConnectionDecoder, one syscall event per recorded read, spans delivered to
// a sink) on conversations recorded from MariaDB 10.11
// (tests/fixtures/mysql/README.md): the mariadb client's queries, its
// heavier session (3000 rows, a 70 KB value, LOAD DATA LOCAL INFILE, a
// CALL with two result sets), and libmariadb's binary prepared statements.
// Each iteration decodes one whole connection, handshake included. Reports
// bytes/s, protocol messages/s (commands + responses) and spans/s.
//
// Run a Release build: mysql_benchmark --benchmark_repetitions=5
#include <string>

#include "bench/recorded_conversation.h"
#include "decoders/mysql/mysql_decoder.h"

namespace loupe {
namespace {

void BM_Mysql(benchmark::State& state, const char* fixture, uint64_t spans_per_connection) {
  bench::DecodeRecordedConversation(
      state, std::string(LOUPE_SOURCE_DIR) + "/tests/fixtures/mysql/" + fixture,
      Protocol::kMysql, 3306, &mysql::CreateDecoder, spans_per_connection);
}

BENCHMARK_CAPTURE(BM_Mysql, cli_queries, "mariadb_cli_queries.events", 5);
BENCHMARK_CAPTURE(BM_Mysql, cli_rows_and_infile, "mariadb_cli_more.events", 7);
BENCHMARK_CAPTURE(BM_Mysql, libmariadb_prepared, "libmariadb_prepared.events", 14);

}  // namespace
}  // namespace loupe

BENCHMARK_MAIN();
