#include "launcher/cli.hpp"
#include "launcher/commands.hpp"
#include "launcher/config.hpp"
#include "launcher/validate.hpp"

int main(int argc, char** argv) {
  using namespace millrace::launcher;
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (!parsed.invocation) return parsed.exit_code;
  set_stage_validator(validate_builtin_stage);
  const Invocation& inv = *parsed.invocation;
  switch (inv.command) {
    case Command::kCheck: return run_check(inv);
    case Command::kRun: return run_pipeline(inv);
    case Command::kStats: return run_stats(inv);
    case Command::kKill:
    case Command::kRestart:
    case Command::kStop: return run_control(inv);
    case Command::kLogs: return run_logs(inv);
    case Command::kManager: return run_manager(inv);
    case Command::kSet: return run_set(inv);
    case Command::kNone: break;
  }
  return kExitUsage;
}
