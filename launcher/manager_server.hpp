// The manager server: the run's object server (dicts, lists, values, counters, locks, events,
// bounded queues) that stages reach through ipc::ManagerClient. Started by the launcher as
// `millrace __manager CONFIG` and restarted by it like a stage when it dies.
//
// One thread runs an epoll loop over every connection, so every request is atomic without a
// lock. Blocking ops (lock acquire, event wait, queue put/get) are parked on their object and
// answered when they can be or at their timeout; the loop keeps serving everyone else.
//
// State survives a restart: every change is appended to a journal in the state file before its
// reply is sent, and the file is compacted into one snapshot at start-up and whenever the
// journal outgrows the snapshot (see the comment at the top of manager_server.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>

#include "ipc/result.hpp"

namespace millrace::launcher {

struct ManagerServerOptions {
  std::filesystem::path socket_path;  // created with mode 0600; a stale one is replaced
  std::filesystem::path secret_path;  // the run's secret (ipc::create_secret_file)
  std::filesystem::path state_path;   // snapshot + journal; "<state_path>.lock" guards it
  // When >= 0, "ready\n" is written to this descriptor once the socket accepts clients, and it
  // is closed: how a parent waits for the manager without polling its socket.
  int ready_fd = -1;
  // The journal is compacted when it exceeds both this and twice the last snapshot's size.
  std::size_t compact_min_bytes = std::size_t{8} << 20;
};

// Runs the server until SIGTERM, SIGINT or SIGHUP (then returns ok) or a fatal error: the state
// file cannot be read, locked or written, or the socket cannot be made.
Status serve_manager(const ManagerServerOptions& options);

// run_manager() (declared in launcher/commands.hpp), for `millrace __manager CONFIG`, is
// serve_manager() with the paths from the environment:
//   MILLRACE_MANAGER        the socket path (required)
//   MILLRACE_SECRET         the secret file (required; the launcher creates it first)
//   MILLRACE_MANAGER_STATE  the state file (default: manager.state beside the socket)
//   MILLRACE_MANAGER_READY_FD  optional, see ManagerServerOptions::ready_fd
// It returns kExitOk after a signal, kExitUsage for a missing variable, else kExitRunFailed.

}  // namespace millrace::launcher
