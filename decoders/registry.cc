// The protocol table. Adding a protocol adds one line here.
#include "decoders/http1/http1_decoder.h"
#include "decoders/http2/http2_decoder.h"
#include "decoders/mysql/mysql_decoder.h"
#include "decoders/postgres/postgres_decoder.h"
#include "decoders/protocol.h"
#include "decoders/redis/redis_decoder.h"

namespace loupe {

namespace {
constexpr ProtocolDescriptor kProtocols[] = {
    {Protocol::kHttp1, "http1", &http1::CreateDecoder},
    {Protocol::kHttp2, "http2", &http2::CreateDecoder, &http2::CreateUpgradedDecoder},
    {Protocol::kPostgres, "postgresql", &postgres::CreateDecoder},
    {Protocol::kMysql, "mysql", &mysql::CreateDecoder},
    {Protocol::kRedis, "redis", &redis::CreateDecoder},
};
}  // namespace

std::span<const ProtocolDescriptor> RegisteredProtocols() { return kProtocols; }

const ProtocolDescriptor* FindProtocol(Protocol id) {
  for (const ProtocolDescriptor& p : kProtocols) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

ProtocolStats& ProtocolStats::operator+=(const ProtocolStats& o) {
  messages += o.messages;
  records += o.records;
  parse_errors += o.parse_errors;
  truncated += o.truncated;
  unmatched_responses += o.unmatched_responses;
  unanswered_requests += o.unanswered_requests;
  aborted_requests += o.aborted_requests;
  dropped_requests += o.dropped_requests;
  hpack_recoveries += o.hpack_recoveries;
  hpack_unknown_fields += o.hpack_unknown_fields;
  resyncs += o.resyncs;
  upgrades += o.upgrades;
  return *this;
}

}  // namespace loupe
