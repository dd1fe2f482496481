#include <cstdio>

#include "launcher/cli.hpp"

int main(int argc, char** argv) {
  using namespace millrace::launcher;
  ParseOutcome parsed = parse_command_line(argc, argv);
  if (!parsed.invocation) return parsed.exit_code;
  std::fprintf(stderr, "millrace: this subcommand is not implemented yet\n");
  return kExitRunFailed;
}
