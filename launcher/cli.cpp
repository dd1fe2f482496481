#include "launcher/cli.hpp"

#include <CLI/CLI.hpp>

#include "ipc/version.hpp"

namespace millrace::launcher {
namespace {

// Every subcommand finds its run the same way: the config file plus --set overrides.
void add_config_args(CLI::App* sub, Invocation& inv) {
  sub->add_option("CONFIG", inv.config_path, "the pipeline's INI config file")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--set", inv.overrides,
                  "override a config key: --set section.key=value (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
}

}  // namespace

ParseOutcome parse_command_line(int argc, const char* const* argv) {
  Invocation inv;
  CLI::App app{"millrace: a multi-process data pipeline runtime that never loses a record.\n"};
  app.name("millrace");
  app.set_version_flag("--version", std::string("millrace ") + kVersion);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 done, 1 run failed, 2 usage or config error.\n"
      "Run `millrace SUBCOMMAND --help` for the options of one subcommand.");

  struct Sub {
    const char* name;
    const char* help;
    Command command;
  };
  const Sub subs[] = {
      {"run", "run the pipeline in the foreground until every record is stored", Command::kRun},
      {"check", "validate the config without running (exit 0 valid, 2 invalid)", Command::kCheck},
      {"stats", "show per-stage and per-link statistics of a running pipeline", Command::kStats},
      {"kill", "send a signal to a stage's worker(s) of a running pipeline", Command::kKill},
      {"restart", "restart a stage of a running pipeline", Command::kRestart},
      {"stop", "drain a running pipeline and stop it cleanly", Command::kStop},
      {"logs", "show the log of a stage's worker(s)", Command::kLogs},
      {"set", "change a live setting of a running pipeline", Command::kSet},
  };
  for (const Sub& s : subs) {
    CLI::App* sub = app.add_subcommand(s.name, s.help);
    add_config_args(sub, inv);
    sub->callback([&inv, c = s.command] { inv.command = c; });
    switch (s.command) {
      case Command::kStats:
        sub->add_flag("--json", inv.json, "print one JSON object, for scripts");
        sub->add_flag("--watch", inv.watch, "redraw a live view every second");
        sub->add_flag("--rejects", inv.rejects, "show sample records per reject reason");
        break;
      case Command::kKill:
        sub->add_option("STAGE", inv.stage, "stage name")->required();
        sub->add_option("--worker", inv.worker, "worker index (default: every worker)");
        sub->add_option("--signal", inv.signal, "signal name or number (default KILL)");
        break;
      case Command::kRestart:
        sub->add_option("STAGE", inv.stage, "stage name")->required();
        sub->add_option("--worker", inv.worker, "worker index (default: every worker)");
        break;
      case Command::kLogs:
        sub->add_option("STAGE", inv.stage, "stage name")->required();
        sub->add_option("--worker", inv.worker, "worker index (default: every worker)");
        sub->add_flag("-f,--follow", inv.follow, "keep printing as the log grows");
        break;
      case Command::kSet:
        sub->add_option("KEY", inv.key, "live setting, e.g. load.rate_limit or pipeline.paused")
            ->required();
        sub->add_option("VALUE", inv.value, "new value")->required();
        break;
      default:
        break;
    }
  }
  // The manager server is started by the launcher, not by people.
  CLI::App* manager = app.add_subcommand("__manager", "")->group("");
  add_config_args(manager, inv);
  manager->callback([&inv] { inv.command = Command::kManager; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return ParseOutcome{std::nullopt, rc == 0 ? kExitOk : kExitUsage};
  }
  return ParseOutcome{inv, kExitOk};
}

}  // namespace millrace::launcher
