// libFuzzer entry point of the protocol targets (http1_fuzzer, ...): the
// build compiles this file once per protocol with LOUPE_FUZZ_PROTOCOL set to
// its Protocol enumerator. Input format: conversation.h.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/conversation.h"

#ifndef LOUPE_FUZZ_PROTOCOL
#error "LOUPE_FUZZ_PROTOCOL must name a loupe::Protocol enumerator (tests/fuzz/CMakeLists.txt)"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loupe::fuzz::FuzzConversation(loupe::Protocol::LOUPE_FUZZ_PROTOCOL, data, size);
  return 0;
}
