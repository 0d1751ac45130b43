#include "tests/packaging/unit_file.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace loupe::testing {

namespace {

std::string Trim(const std::string& s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return s.substr(begin, end - begin);
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool ValidKey(const std::string& key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key[0]))) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

}  // namespace

std::string UnitFile::Last(const std::string& key) const {
  auto it = values.find(key);
  return it == values.end() || it->second.empty() ? "" : it->second.back();
}

std::optional<UnitFile> ParseUnitFile(const std::string& text, std::string* error) {
  UnitFile unit;
  std::istringstream in(text);
  std::string section;
  std::string pending;  // a line continued with a trailing backslash
  int number = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++number;
    std::string line = Trim(raw);
    if (pending.empty() && (line.empty() || line[0] == '#' || line[0] == ';')) continue;
    if (!line.empty() && line.back() == '\\') {
      pending += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    line = pending + line;
    pending.clear();
    if (line.front() == '[') {
      if (line.back() != ']') {
        *error = "line " + std::to_string(number) + ": bad section header";
        return std::nullopt;
      }
      section = line.substr(1, line.size() - 2);
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos || section.empty()) {
      *error = "line " + std::to_string(number) + ": expected Key=Value in a section";
      return std::nullopt;
    }
    unit.values[section + "." + Trim(line.substr(0, eq))].push_back(Trim(line.substr(eq + 1)));
  }
  return unit;
}

std::vector<std::string> UnitCapabilities(const UnitFile& unit, std::string* error) {
  const std::vector<std::string> bounding = Words(unit.Last("Service.CapabilityBoundingSet"));
  const std::vector<std::string> ambient = Words(unit.Last("Service.AmbientCapabilities"));
  if (bounding.empty()) {
    *error = "the unit sets no CapabilityBoundingSet=";
    return {};
  }
  std::vector<std::string> a = bounding, b = ambient;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  if (a != b) {
    *error = "CapabilityBoundingSet= and AmbientCapabilities= differ";
    return {};
  }
  return bounding;
}

std::optional<EnvironmentList> ParseEnvironmentFile(const std::string& text, std::string* error) {
  EnvironmentList env;
  std::istringstream in(text);
  int number = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++number;
    const std::string line = Trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    const std::string where = "line " + std::to_string(number) + ": ";
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      *error = where + "expected KEY=VALUE";
      return std::nullopt;
    }
    const std::string key = Trim(line.substr(0, eq));
    std::string value = Trim(line.substr(eq + 1));
    if (!ValidKey(key)) {
      *error = where + "invalid variable name '" + key + "'";
      return std::nullopt;
    }
    const char quote = value.empty() ? '\0' : value.front();
    if (quote == '"' || quote == '\'') {
      if (value.size() < 2 || value.back() != quote) {
        *error = where + "a quoted value must end with its quote on the same line";
        return std::nullopt;
      }
      std::string inner = value.substr(1, value.size() - 2);
      std::string out;
      for (size_t i = 0; i < inner.size(); ++i) {
        const char c = inner[i];
        if (c == quote) {  // escaped ones are consumed below
          *error = where + "quotes inside a value are not reproduced by this emulation";
          return std::nullopt;
        }
        if (quote == '"' && c == '\\') {
          if (i + 1 < inner.size() && (inner[i + 1] == '"' || inner[i + 1] == '\\')) {
            out.push_back(inner[++i]);
            continue;
          }
          *error = where + "only \\\" and \\\\ escapes are reproduced by this emulation";
          return std::nullopt;
        }
        out.push_back(c);
      }
      value = out;
    } else if (value.find_first_of("\\\"'") != std::string::npos) {
      *error = where + "backslashes and quotes inside an unquoted value are not reproduced "
                       "by this emulation";
      return std::nullopt;
    }
    env.emplace_back(key, value);
  }
  return env;
}

std::optional<std::vector<std::string>> ExecStartArgv(const std::string& exec_start,
                                                      const EnvironmentList& env,
                                                      std::string* error) {
  auto lookup = [&env](const std::string& name) -> std::optional<std::string> {
    std::optional<std::string> found;
    for (const auto& [k, v] : env) {
      if (k == name) found = v;  // the last assignment wins
    }
    return found;
  };
  const std::vector<std::string> words = Words(exec_start);
  if (words.empty() || words[0].empty() || words[0][0] != '/') {
    *error = "ExecStart= must start with an absolute path and no prefix characters";
    return std::nullopt;
  }
  std::vector<std::string> argv;
  for (const std::string& w : words) {
    if (w.find_first_of("\"'\\") != std::string::npos) {
      *error = "quoting in ExecStart= is not reproduced by this emulation";
      return std::nullopt;
    }
    if (w.size() > 3 && w.rfind("${", 0) == 0 && w.back() == '}') {
      argv.push_back(lookup(w.substr(2, w.size() - 3)).value_or(""));
    } else if (w.size() > 1 && w[0] == '$') {
      for (const std::string& part : Words(lookup(w.substr(1)).value_or(""))) argv.push_back(part);
    } else if (w.find('$') != std::string::npos) {
      *error = "a variable inside a word of ExecStart= is not reproduced by this emulation";
      return std::nullopt;
    } else {
      argv.push_back(w);
    }
  }
  return argv;
}

std::vector<std::string> SetprivArgv(const std::vector<std::string>& caps,
                                     std::optional<unsigned> uid, bool no_new_privs) {
  std::string list = "-all";
  for (std::string cap : caps) {
    std::transform(cap.begin(), cap.end(), cap.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (cap.rfind("cap_", 0) == 0) cap = cap.substr(4);
    list += ",+" + cap;
  }
  std::vector<std::string> argv = {"/usr/bin/setpriv"};
  if (uid) {
    argv.push_back("--reuid=" + std::to_string(*uid));
    argv.push_back("--regid=" + std::to_string(*uid));
    argv.push_back("--clear-groups");
  }
  argv.push_back("--inh-caps=" + list);
  argv.push_back("--ambient-caps=" + list);
  argv.push_back("--bounding-set=" + list);
  if (no_new_privs) argv.push_back("--no-new-privs");
  return argv;
}

}  // namespace loupe::testing
