// The subcommands of `millrace`: each takes the parsed command line and returns the process's
// exit code (kExitOk, kExitRunFailed, kExitUsage), having printed what the user needs.
#pragma once

#include <string>

#include "launcher/cli.hpp"

namespace millrace::ipc {
class ManagerClient;
}  // namespace millrace::ipc

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

// `millrace __manager CONFIG`: the run's object server (launcher/manager_server.hpp), started
// by the launcher with its paths in the environment.
int run_manager(const Invocation& invocation);

// `millrace set CONFIG KEY VALUE`: changes a live setting of the running pipeline through its
// manager (load.rate_limit: records/s >= 0, 0 = unlimited; pipeline.paused: true|false) and
// prints the new value. kExitUsage for an unknown key or a bad value, kExitRunFailed when the
// run's manager cannot be reached.
int run_set(const Invocation& invocation);

// The reject samples the stages kept in the manager (ipc::sample_reject), one block per
// reason, for `millrace stats --rejects`. Never fails: a problem becomes a line of the text.
std::string render_reject_samples(ipc::ManagerClient& client);

}  // namespace millrace::launcher
