#include "agent/process_info.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace loupe {

namespace {

// /proc/PID/environ can be large; the variables we want are usually early.
constexpr size_t kMaxEnvironBytes = 256 * 1024;

bool ReadFile(const std::string& path, size_t max_bytes, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->resize(max_bytes);
  in.read(out->data(), static_cast<std::streamsize>(max_bytes));
  out->resize(static_cast<size_t>(in.gcount()));
  return true;
}

std::string Basename(std::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 && HexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

std::string ServiceNameFromEnviron(std::string_view environ_block) {
  // absl's string_view is not std::string_view in Debian's abseil build.
  const absl::string_view block(environ_block.data(), environ_block.size());
  std::string from_attributes;
  for (absl::string_view var : absl::StrSplit(block, '\0', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&var, "OTEL_SERVICE_NAME=")) {
      if (!var.empty()) return std::string(var);
    } else if (absl::ConsumePrefix(&var, "OTEL_RESOURCE_ATTRIBUTES=")) {
      // W3C-baggage-like list: key=value pairs separated by commas, blanks
      // around keys and values ignored, values percent-encoded (OTel SDK
      // specification, "Specifying resource information via an environment
      // variable").
      for (absl::string_view kv : absl::StrSplit(var, ',', absl::SkipEmpty())) {
        const size_t eq = kv.find('=');
        if (eq == absl::string_view::npos) continue;
        if (absl::StripAsciiWhitespace(kv.substr(0, eq)) != "service.name") continue;
        from_attributes = PercentDecode(absl::StripAsciiWhitespace(kv.substr(eq + 1)));
      }
    }
  }
  return from_attributes;
}

ProcessInfo ReadProcessInfo(const std::string& proc_root, uint32_t tgid, std::string comm) {
  ProcessInfo info;
  info.tgid = tgid;
  info.comm = std::move(comm);
  const std::string dir = absl::StrCat(proc_root, "/", tgid);
  char exe[4096];
  const ssize_t n = readlink(absl::StrCat(dir, "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n > 0) {
    info.exe_path.assign(exe, static_cast<size_t>(n));
    // A replaced binary reads as "/usr/sbin/nginx (deleted)".
    if (absl::EndsWith(info.exe_path, " (deleted)")) info.exe_path.resize(info.exe_path.size() - 10);
    info.from_proc = true;
  }
  std::string comm_file;
  if (ReadFile(absl::StrCat(dir, "/comm"), 64, &comm_file)) {
    comm_file = std::string(absl::StripTrailingAsciiWhitespace(comm_file));
    if (!comm_file.empty()) {
      info.comm = comm_file;
      info.from_proc = true;
    }
  }
  std::string environ_block;
  if (ReadFile(absl::StrCat(dir, "/environ"), kMaxEnvironBytes, &environ_block)) {
    info.service_name = ServiceNameFromEnviron(environ_block);
  }
  return info;
}

std::shared_ptr<const Resource> MakeAgentResource(const std::string& host_name,
                                                  const ExtraAttributes& extra) {
  auto resource = std::make_shared<Resource>();
  resource->attributes.Set("service.name", "loupe");
  resource->attributes.Set("process.pid", static_cast<int64_t>(getpid()));
  resource->attributes.Set("host.name", host_name);
  resource->attributes.Set("service.instance.id", absl::StrCat(host_name, ":loupe"));
  resource->attributes.Set("telemetry.sdk.name", "loupe");
  resource->attributes.Set("telemetry.sdk.language", "cpp");
  for (const auto& [key, value] : extra) {
    if (resource->attributes.Find(key) == nullptr) resource->attributes.Set(key, value);
  }
  return resource;
}

std::shared_ptr<const Resource> MakeProcessResource(const ProcessInfo& info,
                                                    const std::string& host_name,
                                                    const ExtraAttributes& extra) {
  auto resource = std::make_shared<Resource>();
  std::string exe_name = info.exe_path.empty() ? info.comm : Basename(info.exe_path);
  if (exe_name.empty()) exe_name = "unknown";
  // service.name: the process's own OTEL_SERVICE_NAME, else its executable.
  resource->attributes.Set("service.name",
                           info.service_name.empty() ? exe_name : info.service_name);
  resource->attributes.Set("process.pid", static_cast<int64_t>(info.tgid));
  resource->attributes.Set("process.executable.name", exe_name);
  if (!info.exe_path.empty()) resource->attributes.Set("process.executable.path", info.exe_path);
  if (!info.comm.empty()) resource->attributes.Set("process.command", info.comm);
  resource->attributes.Set("host.name", host_name);
  // Unique per observed process on this host (semantic conventions: unique
  // per service.name instance).
  resource->attributes.Set("service.instance.id", absl::StrCat(host_name, ":", info.tgid));
  resource->attributes.Set("telemetry.sdk.name", "loupe");
  resource->attributes.Set("telemetry.sdk.language", "cpp");
  for (const auto& [key, value] : extra) {
    if (resource->attributes.Find(key) == nullptr) resource->attributes.Set(key, value);
  }
  return resource;
}

ProcessTable::ProcessTable(std::string host_name, Resolver resolver, size_t max_entries,
                           ExtraAttributes extra)
    : host_name_(std::move(host_name)),
      extra_(std::move(extra)),
      resolver_(std::move(resolver)),
      max_entries_(max_entries) {}

ProcessTable::Entry& ProcessTable::Insert(ProcessInfo info) {
  const uint32_t tgid = info.tgid;
  auto it = entries_.find(tgid);
  if (it == entries_.end()) {
    while (entries_.size() >= max_entries_ && !order_.empty()) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(tgid);
    it = entries_.emplace(tgid, Entry{}).first;
  }
  it->second.resource = MakeProcessResource(info, host_name_, extra_);
  it->second.info = std::move(info);
  return it->second;
}

void ProcessTable::Observe(uint32_t tgid, const std::string& comm) {
  auto it = entries_.find(tgid);
  if (it != entries_.end()) return;
  if (!resolver_) return;
  Entry& entry = Insert(resolver_(tgid, comm));
  if (observer_) observer_(entry.info);
}

void ProcessTable::Add(const ProcessInfo& info) { Insert(info); }

std::shared_ptr<const Resource> ProcessTable::ForProcess(uint32_t tgid) {
  auto it = entries_.find(tgid);
  if (it != entries_.end()) return it->second.resource;
  ProcessInfo info;
  info.tgid = tgid;
  if (resolver_) {
    Entry& entry = Insert(resolver_(tgid, ""));
    if (observer_) observer_(entry.info);
    return entry.resource;
  }
  return Insert(info).resource;
}

}  // namespace loupe
