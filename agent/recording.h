// Recording files: the raw kernel events of a live run, with what the agent
// learned about processes and the clock, so --replay reproduces the run's
// spans without BPF or root. Users attach them to bug reports; tests replay
// committed recordings.
//
// Layout (little-endian):
//   header:  "LOUPEREC" | u32 format version | u32 kernel event ABI |
//            i64 CLOCK_REALTIME - CLOCK_MONOTONIC (ns) | u32 n | n bytes host name
//   records: u32 type | u32 length | length bytes
//     type 1: one raw kernel event, exactly as read from the ring buffer
//     type 2: process: u32 tgid | u8 from_proc | 3 x string: comm, exe path,
//             service name; since format 2 followed by an extension:
//             u32 extension version | u32 n | n bytes. Extension version 1:
//             string cmdline | u32 uid | string owner | u64 start time (Unix ns) |
//             string cgroup path | u64 cgroup id | 5 x string: container id,
//             container runtime, pod uid, pod QoS class, systemd unit.
//   (string: u32 n | n bytes; integers little-endian)
//
// Compatibility: a reader accepts every format from
// kOldestRecordingFormatVersion on; fields a record does not carry stay
// empty, so an old recording replays exactly as it did. A later extension
// version only appends fields; a reader takes those it knows and skips the
// rest of the extension.
#ifndef LOUPE_AGENT_RECORDING_H_
#define LOUPE_AGENT_RECORDING_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/process_info.h"

namespace loupe {

// 2: process records carry the extension (cmdline, owner, start time,
// cgroup, container).
inline constexpr uint32_t kRecordingFormatVersion = 2;
inline constexpr uint32_t kOldestRecordingFormatVersion = 1;
// The process extension version this loupe writes.
inline constexpr uint32_t kProcessExtensionVersion = 1;
// Longest record accepted when reading: a data event is at most its header
// plus LOUPE_PAYLOAD_MAX; anything far larger is corruption.
inline constexpr uint32_t kMaxRecordBytes = 1u << 20;

// The process record's body (also how the reader thread hands a process it
// read from /proc to the decoding thread). Decoding accepts the bodies of
// every format (with or without the extension, of any extension version).
std::vector<uint8_t> EncodeProcessInfo(const ProcessInfo& info);
absl::StatusOr<ProcessInfo> DecodeProcessInfo(std::span<const uint8_t> body);

struct RecordingHeader {
  uint32_t format_version = kRecordingFormatVersion;
  uint32_t abi_version = 0;
  int64_t realtime_offset_ns = 0;
  std::string host_name;
};

class RecordingWriter {
 public:
  static absl::StatusOr<std::unique_ptr<RecordingWriter>> Create(const std::string& path,
                                                                 const RecordingHeader& header);
  ~RecordingWriter();
  void WriteEvent(std::span<const uint8_t> raw);
  void WriteProcess(const ProcessInfo& info);
  // Flushes to the kernel; returns the first write error seen, if any.
  absl::Status Flush();
  uint64_t records() const { return records_; }

 private:
  explicit RecordingWriter(std::FILE* file) : file_(file) {}
  void WriteRecord(uint32_t type, std::span<const uint8_t> body);
  std::FILE* file_;
  uint64_t records_ = 0;
  int error_ = 0;
};

class RecordingReader {
 public:
  enum class RecordType : uint32_t { kEvent = 1, kProcess = 2 };
  struct Record {
    RecordType type = RecordType::kEvent;
    std::vector<uint8_t> body;
  };

  static absl::StatusOr<std::unique_ptr<RecordingReader>> Open(const std::string& path);
  ~RecordingReader();
  const RecordingHeader& header() const { return header_; }
  // Next record; false at the end. A truncated or corrupt tail ends the
  // file with an error status (the records before it were still read).
  absl::StatusOr<bool> Next(Record* record);

 private:
  explicit RecordingReader(std::FILE* file) : file_(file) {}
  std::FILE* file_;
  RecordingHeader header_;
  uint64_t offset_ = 0;
};

}  // namespace loupe

#endif  // LOUPE_AGENT_RECORDING_H_
