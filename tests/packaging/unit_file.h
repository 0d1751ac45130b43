// packaging/systemd/loupe.service and loupe.env read the way systemd reads
// them, for the tests that start the agent as the unit would. This machine
// has no systemd as PID 1, so the tests apply the unit's user,
// capabilities and environment themselves (setpriv, env); everything the
// emulation does not reproduce faithfully is refused, never guessed.
#ifndef LOUPE_TESTS_PACKAGING_UNIT_FILE_H_
#define LOUPE_TESTS_PACKAGING_UNIT_FILE_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loupe::testing {

// Assignments of a unit file by "Section.Key", in file order (keys such as
// Wants= may repeat).
struct UnitFile {
  std::map<std::string, std::vector<std::string>> values;
  // The last assignment of `key` ("Service.ExecStart"), or "".
  std::string Last(const std::string& key) const;
};

// Unit-file syntax (systemd.syntax(7)): [Section] headers, Key=Value,
// comment lines starting with '#' or ';', a backslash at the end of a line
// continuing it. nullopt with *error set on anything else.
std::optional<UnitFile> ParseUnitFile(const std::string& text, std::string* error);

// The capability names (e.g. "CAP_BPF") of CapabilityBoundingSet=, which
// must equal those of AmbientCapabilities= (Loupe's unit grants what it
// bounds). Empty with *error set otherwise.
std::vector<std::string> UnitCapabilities(const UnitFile& unit, std::string* error);

using EnvironmentList = std::vector<std::pair<std::string, std::string>>;

// An EnvironmentFile= (systemd.exec(5)): blank lines and lines starting with
// '#' or ';' are skipped; each other line is KEY=VALUE, spaces around the
// key and the value trimmed, the value optionally in single quotes (taken
// as is) or double quotes (\" and \\ unescaped). No variable expansion, as
// systemd does none here. Backslash escapes outside quotes, quotes inside a
// value and continuation lines are refused (nullopt, *error set): systemd
// accepts them, this emulation does not reproduce them.
std::optional<EnvironmentList> ParseEnvironmentFile(const std::string& text, std::string* error);

// ExecStart= as argv, with "$VAR" words replaced by VAR's value split at
// whitespace (none when unset) and "${VAR}" by the value as one word
// (systemd.service(5), "Command lines"). nullopt with *error set for prefix
// characters (@-:+!) or quoting, which Loupe's unit does not use.
std::optional<std::vector<std::string>> ExecStartArgv(const std::string& exec_start,
                                                      const EnvironmentList& env,
                                                      std::string* error);

// setpriv(1) arguments giving the next program what systemd gives a service
// with CapabilityBoundingSet= and AmbientCapabilities= set to `caps` (names
// such as "CAP_BPF"): bounding, inheritable and ambient sets; with `uid`,
// that user and group and no supplementary groups (DynamicUser=); with
// `no_new_privs`, NoNewPrivileges=yes.
std::vector<std::string> SetprivArgv(const std::vector<std::string>& caps,
                                     std::optional<unsigned> uid, bool no_new_privs);

}  // namespace loupe::testing

#endif  // LOUPE_TESTS_PACKAGING_UNIT_FILE_H_
