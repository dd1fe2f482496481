// The control socket: how `millrace stop`, `kill` and `restart` from another terminal reach
// a running launcher. A Unix stream socket in the run directory, mode 0600 (only the run's
// user gets in). One request line per connection, one reply line:
//
//   stop                          -> ok draining
//   kill STAGE WORKER|* SIGNAL    -> ok N signalled | error ...
//   restart STAGE WORKER|*        -> ok N restarting | error ...
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "ipc/result.hpp"

namespace millrace::launcher {

class ControlServer {
 public:
  static Result<ControlServer> listen(const std::filesystem::path& path);
  ControlServer(ControlServer&& other) noexcept;
  ControlServer& operator=(ControlServer&& other) noexcept;
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ~ControlServer();

  [[nodiscard]] int fd() const { return fd_; }
  // Accepts one pending connection, reads its request line (bounded time and size), and
  // writes handler(request) back. Never blocks the caller for long.
  void serve_one(const std::function<std::string(const std::string&)>& handler);

 private:
  ControlServer(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

// Sends `request` to the launcher listening at `path` and returns its reply line.
Result<std::string> control_request(const std::filesystem::path& path, const std::string& request,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace millrace::launcher
