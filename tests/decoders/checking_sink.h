// A SpanSink for decoder tests that records announcements and spans in the
// order they came, and checks on the way, for every test, what the context
// linker relies on: keys are unique per connection; a span with a key was
// announced before it, with the same kind, thread, start, process, socket
// and context; no key ends two spans.
#ifndef LOUPE_TESTS_DECODERS_CHECKING_SINK_H_
#define LOUPE_TESTS_DECODERS_CHECKING_SINK_H_

#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "decoders/model/span.h"

namespace loupe::testing {

class CheckingSink : public SpanSink {
 public:
  // `streams`: the protocol has stream ids (HTTP/2); otherwise keys must
  // have stream_id 0.
  explicit CheckingSink(bool streams) : streams_(streams) {}

  void OnExchangeStart(const ExchangeStart& start) override {
    EXPECT_NE(start.key.seq, 0u);
    if (!streams_) {
      EXPECT_EQ(start.key.stream_id, 0u);
    }
    for (const ExchangeStart& s : starts) {
      EXPECT_FALSE(s.key.conn_id == start.key.conn_id && s.key.seq == start.key.seq)
          << "seq " << start.key.seq << " announced twice";
    }
    starts.push_back(start);
    order.push_back('S');
  }
  void OnSpan(SpanRecord&& record) override {
    if (record.key.seq != 0) {
      EXPECT_EQ(record.key.conn_id, record.conn_id);
      const ExchangeStart* start = FindStart(record.key);
      EXPECT_NE(start, nullptr) << "span with a key never announced: " << record.key.seq;
      if (start != nullptr) {
        EXPECT_EQ(start->kind, record.kind) << record.name;
        EXPECT_EQ(start->tgid, record.tgid) << record.name;
        EXPECT_EQ(start->tid, record.tid) << record.name;
        EXPECT_EQ(start->start_mono_ns, record.start_mono_ns) << record.name;
        EXPECT_TRUE(start->tuple == record.tuple) << record.name;
        EXPECT_TRUE(start->context == record.context) << record.name;
      }
      for (const SpanRecord& earlier : spans) {
        EXPECT_FALSE(earlier.key == record.key) << "two spans with key " << record.key.seq;
      }
    }
    spans.push_back(std::move(record));
    order.push_back('R');
  }
  const ExchangeStart* FindStart(const ExchangeKey& key) const {
    for (const ExchangeStart& s : starts) {
      if (s.key == key) return &s;
    }
    return nullptr;
  }

  std::vector<ExchangeStart> starts;
  std::vector<SpanRecord> spans;
  std::string order;  // 'S' per announcement, 'R' per span

 private:
  bool streams_;
};

}  // namespace loupe::testing

#endif  // LOUPE_TESTS_DECODERS_CHECKING_SINK_H_
