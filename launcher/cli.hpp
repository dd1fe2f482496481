// The command line of `millrace`: what a user types, parsed into one Invocation.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace millrace::launcher {

enum class Command { kNone, kRun, kCheck, kStats, kKill, kRestart, kStop, kLogs, kSet, kManager };

struct Invocation {
  Command command = Command::kNone;
  std::string config_path;
  std::vector<std::string> overrides;  // "section.key=value", in order given
  // stats
  bool json = false;
  bool watch = false;
  bool rejects = false;
  // kill / restart / logs
  std::string stage;
  std::optional<int> worker;
  std::string signal = "KILL";
  bool follow = false;
  // set
  std::string key;
  std::string value;
};

// Exit codes of `millrace`, as documented in --help.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRunFailed = 1;
inline constexpr int kExitUsage = 2;

// Parses argv. On --help/--version or a usage error, prints what it must and returns the exit
// code to leave with; otherwise returns the invocation.
struct ParseOutcome {
  std::optional<Invocation> invocation;
  int exit_code = kExitOk;
};
ParseOutcome parse_command_line(int argc, const char* const* argv);

}  // namespace millrace::launcher
