#include "agent/recording.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

extern "C" {
#include "bpf/loupe_events.h"
}

namespace loupe {

namespace {

constexpr char kMagic[8] = {'L', 'O', 'U', 'P', 'E', 'R', 'E', 'C'};

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutI64(std::vector<uint8_t>* out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(u >> (8 * i)));
}
void PutU64(std::vector<uint8_t>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutString(std::vector<uint8_t>* out, const std::string& s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->insert(out->end(), s.begin(), s.end());
}

class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  bool U8(uint8_t* v) {
    if (bytes_.size() < 1) return false;
    *v = bytes_[0];
    bytes_ = bytes_.subspan(1);
    return true;
  }
  bool U32(uint32_t* v) {
    if (bytes_.size() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= static_cast<uint32_t>(bytes_[i]) << (8 * i);
    bytes_ = bytes_.subspan(4);
    return true;
  }
  bool U64(uint64_t* v) {
    if (bytes_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(bytes_[i]) << (8 * i);
    bytes_ = bytes_.subspan(8);
    return true;
  }
  // The next n bytes, as a cursor of their own.
  bool Sub(uint32_t n, Cursor* sub) {
    if (bytes_.size() < n) return false;
    *sub = Cursor(bytes_.first(n));
    bytes_ = bytes_.subspan(n);
    return true;
  }
  bool String(std::string* s, uint32_t max) {
    uint32_t n = 0;
    if (!U32(&n) || n > max || bytes_.size() < n) return false;
    s->assign(reinterpret_cast<const char*>(bytes_.data()), n);
    bytes_ = bytes_.subspan(n);
    return true;
  }
  bool done() const { return bytes_.empty(); }

 private:
  std::span<const uint8_t> bytes_;
};

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RecordingWriter>> RecordingWriter::Create(
    const std::string& path, const RecordingHeader& header) {
  // Owner-only: a recording holds payload bytes as sent, secrets included.
  // An existing file keeps its mode; it is truncated, then tightened.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::FILE* file = fd >= 0 ? fdopen(fd, "wb") : nullptr;
  if (file == nullptr) {
    const int error = errno;
    if (fd >= 0) close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create recording ", path, ": ", std::strerror(error)));
  }
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) fchmod(fd, 0600);
  std::vector<uint8_t> head(kMagic, kMagic + sizeof(kMagic));
  PutU32(&head, kRecordingFormatVersion);
  PutU32(&head, header.abi_version);
  PutI64(&head, header.realtime_offset_ns);
  PutString(&head, header.host_name);
  std::unique_ptr<RecordingWriter> writer(new RecordingWriter(file));
  if (std::fwrite(head.data(), 1, head.size(), file) != head.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write recording ", path, ": ", std::strerror(errno)));
  }
  return writer;
}

RecordingWriter::~RecordingWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void RecordingWriter::WriteRecord(uint32_t type, std::span<const uint8_t> body) {
  std::vector<uint8_t> head;
  PutU32(&head, type);
  PutU32(&head, static_cast<uint32_t>(body.size()));
  if (std::fwrite(head.data(), 1, head.size(), file_) != head.size() ||
      std::fwrite(body.data(), 1, body.size(), file_) != body.size()) {
    if (error_ == 0) error_ = errno ? errno : EIO;
    return;
  }
  ++records_;
}

void RecordingWriter::WriteEvent(std::span<const uint8_t> raw) {
  WriteRecord(static_cast<uint32_t>(RecordingReader::RecordType::kEvent), raw);
}

std::vector<uint8_t> EncodeProcessInfo(const ProcessInfo& info) {
  std::vector<uint8_t> body;
  PutU32(&body, info.tgid);
  body.push_back(info.from_proc ? 1 : 0);
  PutString(&body, info.comm);
  PutString(&body, info.exe_path);
  PutString(&body, info.service_name);
  // Format 2: the extension, its length patched in once written.
  PutU32(&body, kProcessExtensionVersion);
  const size_t length_at = body.size();
  PutU32(&body, 0);
  PutString(&body, info.cmdline);
  PutU32(&body, info.uid);
  PutString(&body, info.owner);
  PutU64(&body, info.start_time_unix_ns);
  PutString(&body, info.cgroup_path);
  PutU64(&body, info.cgroup_id);
  PutString(&body, info.container_id);
  PutString(&body, info.container_runtime);
  PutString(&body, info.pod_uid);
  PutString(&body, info.pod_qos);
  PutString(&body, info.systemd_unit);
  const auto length = static_cast<uint32_t>(body.size() - length_at - 4);
  for (int i = 0; i < 4; ++i) body[length_at + i] = static_cast<uint8_t>(length >> (8 * i));
  return body;
}

void RecordingWriter::WriteProcess(const ProcessInfo& info) {
  WriteRecord(static_cast<uint32_t>(RecordingReader::RecordType::kProcess),
              EncodeProcessInfo(info));
}

absl::Status RecordingWriter::Flush() {
  if (std::fflush(file_) != 0 && error_ == 0) error_ = errno;
  if (error_ != 0) {
    return absl::DataLossError(absl::StrCat("writing the recording failed: ", std::strerror(error_)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RecordingReader>> RecordingReader::Open(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open recording ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<RecordingReader> reader(new RecordingReader(file));
  uint8_t fixed[sizeof(kMagic) + 4 + 4 + 8 + 4];
  if (std::fread(fixed, 1, sizeof(fixed), file) != sizeof(fixed) ||
      std::memcmp(fixed, kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a Loupe recording (made with loupe --record)"));
  }
  RecordingHeader& h = reader->header_;
  h.format_version = LoadU32(fixed + 8);
  h.abi_version = LoadU32(fixed + 12);
  uint64_t offset = 0;
  for (int i = 0; i < 8; ++i) offset |= static_cast<uint64_t>(fixed[16 + i]) << (8 * i);
  h.realtime_offset_ns = static_cast<int64_t>(offset);
  const uint32_t host_len = LoadU32(fixed + 24);
  if (h.format_version < kOldestRecordingFormatVersion ||
      h.format_version > kRecordingFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " has recording format ", h.format_version, "; this loupe reads ",
                     kOldestRecordingFormatVersion, " to ", kRecordingFormatVersion));
  }
  // Kernel events are append-only (bpf/loupe_events.h): older ABIs read the
  // same, a newer one may hold event types this loupe does not know.
  if (h.abi_version == 0 || h.abi_version > LOUPE_ABI_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds kernel events of ABI ", h.abi_version, "; this loupe reads 1 to ",
                     LOUPE_ABI_VERSION));
  }
  if (host_len > 4096) return absl::InvalidArgumentError(absl::StrCat(path, ": corrupt header"));
  h.host_name.resize(host_len);
  if (std::fread(h.host_name.data(), 1, host_len, file) != host_len) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header"));
  }
  reader->offset_ = sizeof(fixed) + host_len;
  return reader;
}

RecordingReader::~RecordingReader() {
  if (file_ != nullptr) std::fclose(file_);
}

absl::StatusOr<bool> RecordingReader::Next(Record* record) {
  uint8_t head[8];
  const size_t got = std::fread(head, 1, sizeof(head), file_);
  if (got == 0 && std::feof(file_)) return false;
  if (got != sizeof(head)) {
    return absl::DataLossError(
        absl::StrCat("recording truncated at byte ", offset_, " (inside a record header)"));
  }
  const uint32_t type = LoadU32(head);
  const uint32_t length = LoadU32(head + 4);
  if ((type != static_cast<uint32_t>(RecordType::kEvent) &&
       type != static_cast<uint32_t>(RecordType::kProcess)) ||
      length > kMaxRecordBytes) {
    return absl::DataLossError(absl::StrCat("recording corrupt at byte ", offset_,
                                            " (record type ", type, ", length ", length, ")"));
  }
  record->type = static_cast<RecordType>(type);
  record->body.resize(length);
  if (std::fread(record->body.data(), 1, length, file_) != length) {
    return absl::DataLossError(
        absl::StrCat("recording truncated at byte ", offset_, " (inside a record body)"));
  }
  offset_ += sizeof(head) + length;
  return true;
}

absl::StatusOr<ProcessInfo> DecodeProcessInfo(std::span<const uint8_t> body) {
  // Bounds well above what ReadProcessInfo produces, to refuse corruption.
  constexpr uint32_t kMaxName = 4096;
  constexpr uint32_t kMaxLong = 64 * 1024;  // command line, cgroup path
  Cursor c(body);
  ProcessInfo info;
  uint8_t from_proc = 0;
  if (!c.U32(&info.tgid) || !c.U8(&from_proc) || !c.String(&info.comm, kMaxName) ||
      !c.String(&info.exe_path, kMaxName) || !c.String(&info.service_name, kMaxName)) {
    return absl::DataLossError("corrupt process record");
  }
  info.from_proc = from_proc != 0;
  if (c.done()) return info;  // format 1: no extension
  uint32_t version = 0, length = 0;
  Cursor ext(std::span<const uint8_t>{});
  if (!c.U32(&version) || version == 0 || !c.U32(&length) || !c.Sub(length, &ext) || !c.done()) {
    return absl::DataLossError("corrupt process record extension");
  }
  // Version 1 fields; a later version appends fields, skipped here.
  if (!ext.String(&info.cmdline, kMaxLong) || !ext.U32(&info.uid) ||
      !ext.String(&info.owner, kMaxName) || !ext.U64(&info.start_time_unix_ns) ||
      !ext.String(&info.cgroup_path, kMaxLong) || !ext.U64(&info.cgroup_id) ||
      !ext.String(&info.container_id, kMaxName) || !ext.String(&info.container_runtime, kMaxName) ||
      !ext.String(&info.pod_uid, kMaxName) || !ext.String(&info.pod_qos, kMaxName) ||
      !ext.String(&info.systemd_unit, kMaxName) || (version == 1 && !ext.done())) {
    return absl::DataLossError("corrupt process record extension");
  }
  return info;
}

}  // namespace loupe
