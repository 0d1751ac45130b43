// Writes the seed corpora of the fuzz targets from the fixtures captured
// from real peers (tests/fixtures/<protocol>/*.events, format in
// tests/fixtures/http1/README.md), in the targets' input formats
// (conversation.h, conn_tracker_fuzzer.cc). Run by the build:
//
//   make_seeds FIXTURES_DIR OUT_DIR
//
// OUT_DIR/<target>/ is replaced. Seeds are kept under kSeedBytes, below
// every target's -max_len (scripts/fuzz.sh): a fixture is cut into windows,
// the later ones starting mid-connection (the agent often joins late).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/conversation.h"

namespace fs = std::filesystem;

namespace {

constexpr size_t kSeedBytes = 4096;
constexpr size_t kWindowsPerFixture = 8;

struct Record {
  bool from_server = false;
  std::string bytes;
};

bool Load(const fs::path& path, std::vector<Record>& out) {
  std::ifstream in(path, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) break;
    char tag = 0;
    unsigned long long length = 0, entry = 0, exit = 0;
    const std::string line = data.substr(pos, eol - pos);
    if (std::sscanf(line.c_str(), "%c %llu %llu %llu", &tag, &length, &entry, &exit) != 4 ||
        (tag != 'C' && tag != 'S') || eol + 1 + length > data.size()) {
      std::fprintf(stderr, "make_seeds: %s: malformed record at byte %zu\n", path.c_str(), pos);
      return false;
    }
    out.push_back(Record{tag == 'S', data.substr(eol + 1, length)});
    pos = eol + 1 + length + 1;
  }
  return true;
}

void PutU16(std::string& out, uint64_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}

bool Write(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

// One conversation record; a payload over `budget` is cut and the rest
// reported as moved but not captured, as a short capture prefix would.
void AppendRecord(std::string& out, bool from_server, std::string_view bytes, size_t budget) {
  using namespace loupe::fuzz::conversation;
  const size_t copied = std::min(bytes.size(), budget);
  const uint64_t extra = std::min<uint64_t>(bytes.size() - copied, 0xffff);
  uint8_t flags = from_server ? kFromServer : 0;
  if (extra > 0) flags |= kExtra;
  out.push_back(static_cast<char>(flags));
  PutU16(out, copied);
  if (extra > 0) PutU16(out, extra);
  out.append(bytes.substr(0, copied));
}

constexpr size_t kRecordHeader = 5;  // flags, len, extra

// Conversation windows of one fixture: the first from the connection's start
// (seen from the server and from the client), later ones joined mid-way.
bool ConversationSeeds(const std::string& name, const std::vector<Record>& records,
                       const fs::path& dir) {
  using namespace loupe::fuzz::conversation;
  size_t next = 0;
  for (size_t window = 0; window < kWindowsPerFixture && next < records.size(); ++window) {
    std::string body;
    size_t i = next;
    while (i < records.size() && body.size() + kRecordHeader < kSeedBytes) {
      const size_t budget = kSeedBytes - body.size() - kRecordHeader;
      if (records[i].bytes.size() > budget && i != next && budget < 64) break;
      AppendRecord(body, records[i].from_server, records[i].bytes, budget);
      ++i;
    }
    next = i;
    const std::string stem = name + "-" + std::to_string(window);
    if (window == 0) {
      // The database decoders decode the client's side only; the role
      // inferred from the traffic is their other path.
      const char server = static_cast<char>(kRoleReal | kTracedIsServer | kCloseSeen);
      const char client = static_cast<char>(kRoleReal | kCloseSeen);
      const char inferred = static_cast<char>(kCloseSeen | kNoOpen | kCaptureExtras);
      if (!Write(dir / (stem + "-server"), server + body)) return false;
      if (!Write(dir / (stem + "-client"), client + body)) return false;
      if (!Write(dir / (stem + "-inferred"), inferred + body)) return false;
    } else {
      const char joined = static_cast<char>(kRoleReal | kTracedIsServer | kNoOpen);
      if (!Write(dir / (stem + "-joined"), joined + body)) return false;
    }
  }
  return true;
}

// conn_tracker_fuzzer ops (see its header comment).
void Op(std::string& out, uint8_t code, uint8_t sock) {
  out.push_back(static_cast<char>(code));
  out.push_back(static_cast<char>(sock));
}
void DataOp(std::string& out, uint8_t code, uint8_t sock, std::string_view bytes) {
  Op(out, code, sock);
  PutU16(out, bytes.size());
  out.append(bytes);
}

// The first part of a fixture as kernel events: from the client's side,
// from the server's side, and from both (the two processes on one node,
// which the context linker joins), each connection closed at the end.
bool TrackerSeeds(const std::string& name, const std::vector<Record>& records,
                  const fs::path& dir) {
  constexpr uint8_t kConnect = 0, kAccept = 1, kSend = 2, kRecv = 3, kClose = 4;
  constexpr uint8_t kClientSock = 0x00, kServerSock = 0x08;  // process 0 fd 3, process 1 fd 3
  // Config: the agent's prefixes; "both" with every capture option on.
  std::string client(1, '\0'), server(1, '\0'), both(1, '\x08'), unannounced(1, '\0');
  Op(client, kConnect, kClientSock);
  Op(server, kAccept, kServerSock);
  Op(both, kConnect, kClientSock);
  Op(both, kAccept, kServerSock);
  for (const Record& r : records) {
    if (both.size() + 2 * (r.bytes.size() + 4) > kSeedBytes) break;
    const std::string_view bytes = r.bytes;
    DataOp(client, r.from_server ? kRecv : kSend, kClientSock, bytes);
    DataOp(server, r.from_server ? kSend : kRecv, kServerSock, bytes);
    DataOp(unannounced, r.from_server ? kRecv : kSend, kClientSock, bytes);
    const uint8_t sender = r.from_server ? kServerSock : kClientSock;
    const uint8_t receiver = r.from_server ? kClientSock : kServerSock;
    DataOp(both, kSend, sender, bytes);
    DataOp(both, kRecv, receiver, bytes);
  }
  Op(client, kClose, kClientSock);
  Op(server, kClose, kServerSock);
  Op(both, kClose, kClientSock);
  Op(both, kClose, kServerSock);
  return Write(dir / (name + "-client"), client) && Write(dir / (name + "-server"), server) &&
         Write(dir / (name + "-both"), both) && Write(dir / (name + "-unannounced"), unannounced);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds FIXTURES_DIR OUT_DIR\n");
    return 2;
  }
  const fs::path fixtures = argv[1];
  const fs::path out = argv[2];
  // Fixture folder -> protocol target.
  const std::pair<const char*, const char*> kProtocols[] = {
      {"http1", "http1"}, {"http2", "http2"}, {"postgres", "postgres"},
      {"mysql", "mysql"}, {"redis", "redis"}};
  std::error_code ec;
  for (const char* target : {"http1", "http2", "postgres", "mysql", "redis", "conn_tracker"}) {
    fs::remove_all(out / target, ec);
    fs::create_directories(out / target, ec);
    if (ec) {
      std::fprintf(stderr, "make_seeds: cannot create %s: %s\n", (out / target).c_str(),
                   ec.message().c_str());
      return 1;
    }
  }
  size_t fixtures_read = 0;
  for (const auto& [folder, target] : kProtocols) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(fixtures / folder, ec)) {
      if (entry.path().extension() == ".events") files.push_back(entry.path());
    }
    if (ec || files.empty()) {
      std::fprintf(stderr, "make_seeds: no *.events fixtures in %s\n", (fixtures / folder).c_str());
      return 1;
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      std::vector<Record> records;
      if (!Load(file, records) || records.empty()) return 1;
      const std::string name = file.stem().string();
      if (!ConversationSeeds(name, records, out / target)) return 1;
      // A capture that starts as HTTP/1.1 and upgrades (h2c) is what the
      // kernel classifies as HTTP/1: the HTTP/1 target's too.
      if (std::string_view(folder) == "http2" && !records[0].bytes.starts_with("PRI * HTTP/2.0") &&
          !ConversationSeeds(name, records, out / "http1")) {
        return 1;
      }
      if (!TrackerSeeds(std::string(folder) + "-" + name, records, out / "conn_tracker")) return 1;
      ++fixtures_read;
    }
  }
  std::printf("make_seeds: %zu fixtures -> %s\n", fixtures_read, out.c_str());
  return 0;
}
