// The protocol fuzz targets: one connection of a given protocol, both
// directions fed as syscall events through the connection tracker (as the
// agent does), then ended.
//
// Input format (make_seeds.cc writes fixtures in it):
//
//   input  := config record*
//   config := 1 byte
//     bits 0-1  the role the connection is announced with: 0 unknown,
//               1 client, 2 server, 3 the traced process's real role
//     bit 2     the traced process is the server (client bytes are ingress);
//               else it is the client
//     bit 3     the connection ends with a close() seen; else it is
//               reclaimed as idle
//     bit 4     no open event: the first data event creates the connection
//     bit 5     tight bounds: 1 KiB buffered per direction, 2 held
//               out-of-order events, 512-byte headers, 4 pending requests,
//               16 exchanges in the context linker
//     bit 6     url.query, HTTP headers (fuzz_support.h) and the Redis key
//               captured
//     bit 7     SQL text not sanitized
//   record := flags len:u16le [extra:u16le] [lost:u16le] [piece:u8] payload
//     flags bit 0  sent by the server; else by the client
//           bit 1  `extra` follows: the syscall moved that many more bytes
//                  than were captured (prefix limit, sendfile)
//           bit 2  `lost` follows: that many bytes of this direction before
//                  the record never arrived (a hole in the stream)
//           bit 3  `piece` follows: the payload is moved by syscalls of
//                  `piece` bytes each (0 counts as 1)
//           bit 4  held: delivered after the next record of the same
//                  direction (events out of order); never, if none follows
//           bit 5  time jumps past the reorder wait after the record
//           bit 6  every event of the record is delivered twice
//           bit 7  carried by a second thread of the process
//     payload is `len` bytes, or what is left of the input.
#ifndef LOUPE_TESTS_FUZZ_CONVERSATION_H_
#define LOUPE_TESTS_FUZZ_CONVERSATION_H_

#include <cstddef>
#include <cstdint>

#include "decoders/events.h"

namespace loupe::fuzz {

namespace conversation {
inline constexpr uint8_t kRoleMask = 0x03;
inline constexpr uint8_t kRoleReal = 0x03;
inline constexpr uint8_t kTracedIsServer = 0x04;
inline constexpr uint8_t kCloseSeen = 0x08;
inline constexpr uint8_t kNoOpen = 0x10;
inline constexpr uint8_t kTightBounds = 0x20;
inline constexpr uint8_t kCaptureExtras = 0x40;
inline constexpr uint8_t kRawSql = 0x80;

inline constexpr uint8_t kFromServer = 0x01;
inline constexpr uint8_t kExtra = 0x02;
inline constexpr uint8_t kLost = 0x04;
inline constexpr uint8_t kPiece = 0x08;
inline constexpr uint8_t kHeld = 0x10;
inline constexpr uint8_t kTick = 0x20;
inline constexpr uint8_t kTwice = 0x40;
inline constexpr uint8_t kOtherThread = 0x80;
}  // namespace conversation

void FuzzConversation(Protocol protocol, const uint8_t* data, size_t size);

}  // namespace loupe::fuzz

#endif  // LOUPE_TESTS_FUZZ_CONVERSATION_H_
