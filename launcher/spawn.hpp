// Starting a child process the way every child of a run is started: its own process group (a
// Ctrl-C at the terminal reaches the launcher alone, which then drains), killed with the
// launcher (PR_SET_PDEATHSIG), stdout and stderr appended to its log, no signal mask or
// descriptor leaked from the launcher except the ones it is meant to inherit.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "ipc/result.hpp"

namespace millrace::launcher {

struct SpawnRequest {
  std::string program;                 // absolute path
  std::vector<std::string> args;       // after argv[0]
  std::vector<std::string> env;        // "NAME=value", added to the launcher's environment
  std::filesystem::path log;           // stdout and stderr, appended
  std::vector<int> inherit_fds;        // kept open (and inheritable) at the same numbers
};

// Starts the child and returns its pid. The caller reaps it (waitpid); no handle kills it.
Result<pid_t> spawn_child(const SpawnRequest& request);

// The absolute path of a built-in program ("millrace-load", ...) beside this executable.
std::string builtin_program(const std::string& name);

}  // namespace millrace::launcher
