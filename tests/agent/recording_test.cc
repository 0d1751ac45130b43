#include "agent/recording.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace loupe {
namespace {

std::string TempPath(const char* name) {
  return std::string("/tmp/loupe-rec-test-") + std::to_string(getpid()) + "-" + name;
}

// A process record of format 1 (no extension), as loupe 0.1 wrote it into
// tests/fixtures/recordings/nginx_curl.rec.
std::vector<uint8_t> FormatOneProcessBody() {
  return {0x30, 0x5d, 0x00, 0x00,                          // tgid 23856
          0x01,                                            // from_proc
          0x05, 0x00, 0x00, 0x00, 'n', 'g', 'i', 'n', 'x',  // comm
          0x0f, 0x00, 0x00, 0x00, '/', 'u', 's', 'r', '/', 's', 'b', 'i', 'n', '/', 'n', 'g',
          'i', 'n', 'x',                                   // exe path
          0x00, 0x00, 0x00, 0x00};                         // service name
}
const ProcessInfo kFormatOneProcess{23856, "nginx", "/usr/sbin/nginx", "", true};

ProcessInfo FullProcessInfo() {
  ProcessInfo info{4242, "nginx", "/usr/sbin/nginx", "frontend", true};
  info.cmdline = "nginx: master process /usr/sbin/nginx -g daemon off;";
  info.uid = 33;
  info.owner = "www-data";
  info.start_time_unix_ns = 1795295078866674890u;
  info.cgroup_path = "/system.slice/docker-9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd"
                     "4422cf3d.scope";
  info.cgroup_id = 0x1234567890abcdefu;
  info.container_id = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d";
  info.container_runtime = "docker";
  info.pod_uid = "74ba62da-1a3d-11e7-bb11-080027cb0e22";
  info.pod_qos = "besteffort";
  info.systemd_unit = "nginx.service";
  return info;
}

TEST(RecordingTest, RoundTripsEventsProcessesAndTheHeader) {
  const std::string path = TempPath("roundtrip");
  RecordingHeader header;
  header.abi_version = LOUPE_ABI_VERSION;
  header.realtime_offset_ns = -123456789012345;
  header.host_name = "node-7";
  const ProcessInfo info = FullProcessInfo();
  const std::vector<uint8_t> event1 = {1, 2, 3, 4, 5};
  const std::vector<uint8_t> event2(5000, 0xab);
  {
    auto writer = RecordingWriter::Create(path, header);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->WriteProcess(info);
    (*writer)->WriteEvent(event1);
    (*writer)->WriteEvent(event2);
    ASSERT_TRUE((*writer)->Flush().ok());
    EXPECT_EQ((*writer)->records(), 3u);
  }
  auto reader = RecordingReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->header().realtime_offset_ns, header.realtime_offset_ns);
  EXPECT_EQ((*reader)->header().host_name, "node-7");
  RecordingReader::Record r;
  ASSERT_TRUE(*(*reader)->Next(&r));
  ASSERT_EQ(r.type, RecordingReader::RecordType::kProcess);
  auto decoded = DecodeProcessInfo(r.body);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, info);
  ASSERT_TRUE(*(*reader)->Next(&r));
  EXPECT_EQ(r.type, RecordingReader::RecordType::kEvent);
  EXPECT_EQ(r.body, event1);
  ASSERT_TRUE(*(*reader)->Next(&r));
  EXPECT_EQ(r.body, event2);
  auto end = (*reader)->Next(&r);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
  unlink(path.c_str());
}

TEST(RecordingTest, TruncatedTailIsReportedAfterTheGoodRecords) {
  const std::string path = TempPath("truncated");
  RecordingHeader header;
  header.abi_version = LOUPE_ABI_VERSION;
  {
    auto writer = RecordingWriter::Create(path, header);
    ASSERT_TRUE(writer.ok());
    (*writer)->WriteEvent(std::vector<uint8_t>(100, 1));
    (*writer)->WriteEvent(std::vector<uint8_t>(100, 2));
  }
  // Cut the second record in half.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() - 50);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;

  auto reader = RecordingReader::Open(path);
  ASSERT_TRUE(reader.ok());
  RecordingReader::Record r;
  ASSERT_TRUE(*(*reader)->Next(&r));
  EXPECT_EQ(r.body[0], 1);
  auto bad = (*reader)->Next(&r);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("truncated"), std::string::npos);
  unlink(path.c_str());
}

// A recording holds payloads as sent (secrets included): owner-only, also
// when it overwrites a file that was readable by all.
TEST(RecordingTest, IsReadableByItsOwnerOnly) {
  const std::string path = TempPath("mode");
  std::ofstream(path) << "old";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  RecordingHeader header;
  header.abi_version = LOUPE_ABI_VERSION;
  ASSERT_TRUE(RecordingWriter::Create(path, header).ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::remove(path.c_str());
}

TEST(RecordingTest, RejectsWhatIsNotARecording) {
  const std::string path = TempPath("notrec");
  std::ofstream(path) << "GET / HTTP/1.1\r\n\r\n this is not a recording at all";
  auto reader = RecordingReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find("is not a Loupe recording"), std::string::npos);
  unlink(path.c_str());
  auto missing = RecordingReader::Open("/nonexistent/dir/x.rec");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos);
}

TEST(RecordingTest, RejectsAnotherEventAbi) {
  const std::string path = TempPath("abi");
  RecordingHeader header;
  header.abi_version = LOUPE_ABI_VERSION + 1;
  ASSERT_TRUE(RecordingWriter::Create(path, header).ok());
  auto reader = RecordingReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find("ABI"), std::string::npos);
  unlink(path.c_str());
}

TEST(RecordingTest, DecodesFormatOneProcessRecords) {
  auto decoded = DecodeProcessInfo(FormatOneProcessBody());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  // Exactly the old fields; the new ones stay unknown.
  EXPECT_EQ(*decoded, kFormatOneProcess);
}

TEST(RecordingTest, RoundTripsEveryProcessField) {
  const ProcessInfo info = FullProcessInfo();
  auto decoded = DecodeProcessInfo(EncodeProcessInfo(info));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, info);
  // Unknown fields round-trip as unknown.
  const ProcessInfo bare{7, "curl", "", "", false};
  EXPECT_EQ(*DecodeProcessInfo(EncodeProcessInfo(bare)), bare);
  // The body starts with the format 1 fields, so format 1 is its prefix.
  const std::vector<uint8_t> body = EncodeProcessInfo(kFormatOneProcess);
  const std::vector<uint8_t> old = FormatOneProcessBody();
  ASSERT_GT(body.size(), old.size());
  EXPECT_TRUE(std::equal(old.begin(), old.end(), body.begin()));
}

TEST(RecordingTest, LaterExtensionVersionsKeepTheFieldsKnownHere) {
  // A future loupe appends fields and raises the extension version.
  std::vector<uint8_t> body = EncodeProcessInfo(FullProcessInfo());
  // The extension header comes right after the three format 1 strings.
  const ProcessInfo full = FullProcessInfo();
  const size_t base = 4 + 1 + (4 + full.comm.size()) + (4 + full.exe_path.size()) +
                      (4 + full.service_name.size());
  ASSERT_EQ(body[base], 1);  // extension version 1
  body[base] = 2;
  const std::vector<uint8_t> appended = {0xde, 0xad, 0xbe, 0xef, 9};
  body.insert(body.end(), appended.begin(), appended.end());
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= static_cast<uint32_t>(body[base + 4 + i]) << (8 * i);
  length += static_cast<uint32_t>(appended.size());
  for (int i = 0; i < 4; ++i) body[base + 4 + i] = static_cast<uint8_t>(length >> (8 * i));
  auto decoded = DecodeProcessInfo(body);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, full);
  // Version 1 itself allows no extra bytes: those are corruption.
  body[base] = 1;
  EXPECT_FALSE(DecodeProcessInfo(body).ok());
}

TEST(RecordingTest, CorruptProcessExtensionIsAnError) {
  const ProcessInfo full = FullProcessInfo();
  const std::vector<uint8_t> good = EncodeProcessInfo(full);
  const size_t base = 4 + 1 + (4 + full.comm.size()) + (4 + full.exe_path.size()) +
                      (4 + full.service_name.size());
  // Cut anywhere inside the extension.
  for (size_t cut = base + 1; cut < good.size(); cut += 7) {
    std::vector<uint8_t> body(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_FALSE(DecodeProcessInfo(body).ok()) << "cut at " << cut;
  }
  std::vector<uint8_t> zero_version = good;
  zero_version[base] = 0;
  EXPECT_FALSE(DecodeProcessInfo(zero_version).ok());
  std::vector<uint8_t> trailing = good;
  trailing.push_back(0);  // after the extension
  EXPECT_FALSE(DecodeProcessInfo(trailing).ok());
}

// Rewrites the format version in a recording's header.
void SetFormatVersion(const std::string& path, uint32_t version) {
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  file.seekp(8);
  for (int i = 0; i < 4; ++i) file.put(static_cast<char>(version >> (8 * i)));
}

TEST(RecordingTest, ReadsFormatOneFilesAndRefusesNewerOnes) {
  const std::string path = TempPath("format1");
  RecordingHeader header;
  header.abi_version = LOUPE_ABI_VERSION;
  header.host_name = "old-node";
  {
    auto writer = RecordingWriter::Create(path, header);
    ASSERT_TRUE(writer.ok());
    (*writer)->WriteEvent(std::vector<uint8_t>{1, 2, 3});
  }
  SetFormatVersion(path, 1);
  auto reader = RecordingReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->header().format_version, 1u);
  RecordingReader::Record r;
  ASSERT_TRUE(*(*reader)->Next(&r));
  EXPECT_EQ(r.body, (std::vector<uint8_t>{1, 2, 3}));

  SetFormatVersion(path, kRecordingFormatVersion + 1);
  auto newer = RecordingReader::Open(path);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("recording format"), std::string::npos);
  SetFormatVersion(path, 0);
  EXPECT_FALSE(RecordingReader::Open(path).ok());
  unlink(path.c_str());
}

TEST(RecordingTest, CorruptProcessRecordIsAnError) {
  const std::vector<uint8_t> body = {1, 0, 0, 0, 1, 200, 0, 0, 0};  // string longer than body
  EXPECT_FALSE(DecodeProcessInfo(body).ok());
}

}  // namespace
}  // namespace loupe
