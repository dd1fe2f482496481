// The subcommands of `millrace`: each takes the parsed command line and returns the process's
// exit code (kExitOk, kExitRunFailed, kExitUsage), having printed what the user needs.
#pragma once

#include "launcher/cli.hpp"

namespace millrace::launcher {

// `millrace check CONFIG [--set section.key=value]...`: validates without running. Prints
// "CONFIG: ok (N stages, M workers, links: ...)" to stdout and returns kExitOk, or prints every
// problem to stderr and returns kExitUsage.
int run_check(const Invocation& invocation);

// `millrace run CONFIG [--set ...]`: runs the pipeline in the foreground until every record is
// stored (kExitOk), it fails (kExitRunFailed), or the config is wrong (kExitUsage).
int run_pipeline(const Invocation& invocation);

// `millrace stats CONFIG [--json] [--watch]`: reads the run's stats segment.
int run_stats(const Invocation& invocation);

// `millrace stop|kill|restart CONFIG ...`: asks the run's launcher through its control socket.
int run_control(const Invocation& invocation);

// `millrace logs CONFIG STAGE [--worker I] [-f]`.
int run_logs(const Invocation& invocation);

}  // namespace millrace::launcher
