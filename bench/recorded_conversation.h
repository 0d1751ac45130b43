// Decode throughput on a recorded conversation, shared by the database
// benchmarks: the real decoder path (ByteStream + ConnectionDecoder, one
// syscall event per recorded read, spans delivered to a sink), one whole
// connection per iteration. Reports bytes/s, protocol messages/s and
// spans/s; the run is marked an error unless the decoder made exactly the
// expected spans without a parse error.
//
// Fixture format (tests/fixtures/<protocol>/README.md): records of
// "<C|S> <length> <entry> <exit>\n<bytes>\n", C for what the client sent.
#ifndef LOUPE_BENCH_RECORDED_CONVERSATION_H_
#define LOUPE_BENCH_RECORDED_CONVERSATION_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "decoders/conn/byte_stream.h"
#include "decoders/protocol.h"

namespace loupe::bench {

struct RecordedEvent {
  Direction dir;  // the client's view: what it sent is egress
  std::string bytes;
};

inline std::vector<RecordedEvent> LoadRecordedEvents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<RecordedEvent> events;
  size_t pos = 0;
  while (pos < content.size()) {
    const size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) break;
    std::istringstream header(content.substr(pos, nl - pos));
    char tag = 0;
    size_t length = 0;
    header >> tag >> length;
    if (!header || nl + 1 + length > content.size()) break;
    events.push_back(
        {tag == 'C' ? Direction::kEgress : Direction::kIngress, content.substr(nl + 1, length)});
    pos = nl + 1 + length + 1;
  }
  return events;
}

class CountingSink : public SpanSink {
 public:
  void OnSpan(SpanRecord&& record) override {
    ++spans;
    benchmark::DoNotOptimize(record.name.data());
  }
  uint64_t spans = 0;
};

using DecoderFactory = std::unique_ptr<ConnectionDecoder> (*)(const ConnInfo&,
                                                              const DecoderOptions&);

// Decodes `fixture_path` (the client side of a loopback connection to
// `server_port`) once per iteration with a decoder from `create`.
inline void DecodeRecordedConversation(benchmark::State& state, const std::string& fixture_path,
                                       Protocol protocol, uint16_t server_port,
                                       DecoderFactory create, uint64_t spans_per_connection) {
  const std::vector<RecordedEvent> events = LoadRecordedEvents(fixture_path);
  if (events.empty()) {
    state.SkipWithError("fixture missing");
    return;
  }
  ConnInfo conn;
  conn.conn_id = 1;
  conn.tgid = 100;
  conn.role = Role::kClient;
  conn.role_source = RoleSource::kConnect;
  conn.protocol = protocol;
  conn.tuple.local.addr.family = AF_INET;
  conn.tuple.local.addr.bytes = {127, 0, 0, 1};
  conn.tuple.local.port = 51234;
  conn.tuple.remote.addr.family = AF_INET;
  conn.tuple.remote.addr.bytes = {127, 0, 0, 1};
  conn.tuple.remote.port = server_port;
  const DecoderOptions options;
  CountingSink sink;
  ProtocolStats stats;
  DecodeContext ctx{conn, options, sink, stats};
  uint64_t bytes = 0;
  uint64_t now = 1;
  for (auto _ : state) {
    std::unique_ptr<ConnectionDecoder> decoder = create(conn, options);
    std::array<ByteStream, kDirections> streams;
    for (const RecordedEvent& e : events) {
      ByteStream& stream = streams[Index(e.dir)];
      stream.Add(stream.end(),
                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(e.bytes.data()),
                                          e.bytes.size()),
                 e.bytes.size(), EventTime{now, now + 1, 7});
      now += 2;
      decoder->OnData(e.dir, stream, ctx);
      bytes += e.bytes.size();
    }
    decoder->OnClose(true, streams, ctx);
  }
  if (stats.parse_errors != 0 ||
      sink.spans != spans_per_connection * static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("decoder did not produce the expected spans");
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["messages/s"] =
      benchmark::Counter(static_cast<double>(stats.messages), benchmark::Counter::kIsRate);
  state.counters["spans/s"] =
      benchmark::Counter(static_cast<double>(sink.spans), benchmark::Counter::kIsRate);
}

}  // namespace loupe::bench

#endif  // LOUPE_BENCH_RECORDED_CONVERSATION_H_
