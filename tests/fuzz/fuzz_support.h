// What every fuzz target shares: a cursor over the fuzz input and the
// user-space pipeline the agent runs (agent/pipeline.h) from the connection
// tracker down to the RED metrics, with the invariants the context linker
// relies on checked on the way.
//
// A broken invariant aborts with a message on stderr, which libFuzzer
// reports as a crash and saves the input of.
#ifndef LOUPE_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define LOUPE_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "decoders/conn/conn_tracker.h"
#include "decoders/model/context_linker.h"
#include "decoders/model/metrics.h"
#include "decoders/model/span_assembler.h"
#include "decoders/protocol.h"

namespace loupe::fuzz {

// Reads the fuzz input front to back. Past the end every read returns 0 and
// Bytes() returns what is left, so any input is a valid program.
//
// Not LLVM's FuzzedDataProvider: it takes integers from the end of the input
// and bytes from the front, which makes seeds impossible to write from the
// captured fixtures (tests/fuzz/make_seeds.cc writes them in this format).
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  uint8_t U8() { return empty() ? 0 : data_[at_++]; }
  uint16_t U16() {
    const uint16_t lo = U8();
    return static_cast<uint16_t>(lo | (U8() << 8));
  }
  std::span<const uint8_t> Bytes(size_t n) {
    n = std::min(n, size_ - at_);
    std::span<const uint8_t> out(data_ + at_, n);
    at_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

[[noreturn]] void Fail(const char* what, uint64_t a = 0, uint64_t b = 0);

// Every capture option on: url.query, the Redis key, and HTTP headers
// including the credential ones and a configured redacted one (x-api-key),
// with a configured redacted query parameter (session) besides the default
// ones. The pipeline checks that what must be redacted is.
void CaptureEverything(DecoderOptions& options);

// ConnTracker -> invariant checks -> ContextLinker -> SpanAssembler ->
// MetricsRecorder, deterministic (fixed id seeds, clocks and resources).
class Pipeline {
 public:
  Pipeline(const TrackerOptions& options, const LinkerOptions& linker);
  ~Pipeline();

  ConnTracker& tracker() { return *tracker_; }
  // Event time reached now_ns: the tracker's and the linker's housekeeping.
  void Advance(uint64_t now_ns);
  // After every event: the tracker's memory bound holds.
  void CheckBounds() const;
  // Ends every connection, flushes the linker, reads the metrics back.
  void Finish(uint64_t now_ns);

 private:
  class CheckingSink;
  class Resources;

  TrackerOptions options_;
  std::unique_ptr<Resources> resources_;
  std::unique_ptr<MetricsRecorder> metrics_;
  std::unique_ptr<SpanAssembler> assembler_;
  std::unique_ptr<ContextLinker> linker_;
  std::unique_ptr<CheckingSink> checking_;
  std::unique_ptr<ConnTracker> tracker_;
};

}  // namespace loupe::fuzz

#endif  // LOUPE_TESTS_FUZZ_FUZZ_SUPPORT_H_
