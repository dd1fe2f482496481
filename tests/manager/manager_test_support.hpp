// What the manager tests share: a per-test directory, the real `millrace __manager` started
// with fork+exec (ready when it writes to a pipe: no sleep, no polling of the socket), child
// processes that report through their exit status, and a raw authenticated connection for
// speaking the protocol by hand.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/manager_client.hpp"
#include "ipc/manager_protocol.hpp"

extern char** environ;

namespace millrace::testing {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// MILLRACE_SEED when set, else `fallback`; printed so that a failure can be replayed.
inline std::uint64_t test_seed(std::uint64_t fallback) {
  std::uint64_t seed = fallback;
  if (const char* env = std::getenv("MILLRACE_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 10);
  }
  std::cout << "seed=" << seed << " (set MILLRACE_SEED to replay)\n";
  return seed;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A private directory per test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/millrace-mgr-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    EXPECT_NE(made, nullptr) << "mkdtemp: " << std::strerror(errno);
    path_ = made == nullptr ? fs::path("/tmp") : fs::path(made);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (path_ != "/tmp") fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The real manager binary, run as the launcher runs it.
class ManagerProcess {
 public:
  explicit ManagerProcess(const fs::path& dir)
      : dir_(dir),
        socket_(dir / "manager.sock"),
        secret_(dir / "secret"),
        state_(dir / "manager.state"),
        log_(dir / "manager.log"),
        config_(dir / "config.ini") {
    std::ofstream(config_) << "; the manager reads its paths from the environment\n";
    EXPECT_TRUE(ipc::create_secret_file(secret_).ok());
  }
  ManagerProcess(const ManagerProcess&) = delete;
  ManagerProcess& operator=(const ManagerProcess&) = delete;
  ~ManagerProcess() {
    if (pid_ > 0) kill9();
  }

  // Starts the manager and returns once it accepts clients (it writes "ready" to a pipe).
  void start() {
    ASSERT_EQ(pid_, 0) << "already running";
    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    const int log = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(log, 0);
    // Everything the child needs is built before fork(): after it only async-signal-safe calls.
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "MILLRACE_", 9) != 0) env_text.emplace_back(*e);
    }
    env_text.push_back("MILLRACE_MANAGER=" + socket_.string());
    env_text.push_back("MILLRACE_SECRET=" + secret_.string());
    env_text.push_back("MILLRACE_MANAGER_STATE=" + state_.string());
    env_text.push_back("MILLRACE_MANAGER_READY_FD=" + std::to_string(ready[1]));
    std::vector<char*> envp;
    for (std::string& s : env_text) envp.push_back(s.data());
    envp.push_back(nullptr);
    const std::string bin = std::string(MILLRACE_BIN_DIR) + "/millrace";
    const std::string config = config_.string();
    const char* argv[] = {bin.c_str(), "__manager", config.c_str(), nullptr};
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(log, 2);
      ::fcntl(ready[1], F_SETFD, 0);
      if (fd_limit_ > 0) {
        const rlimit limit{fd_limit_, fd_limit_};
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(126);
      }
      ::execve(bin.c_str(), const_cast<char* const*>(argv), envp.data());
      ::_exit(127);
    }
    ::close(log);
    ::close(ready[1]);
    pid_ = pid;
    char buf[16] = {};
    ssize_t n = 0;
    do {
      n = ::read(ready[0], buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    ::close(ready[0]);
    ASSERT_GT(n, 0) << "the manager died before it was ready; its log:\n" << log_text();
  }

  void kill9() {
    ASSERT_GT(pid_, 0);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  // SIGTERM; the manager must exit 0.
  void stop() {
    ASSERT_GT(pid_, 0);
    ::kill(pid_, SIGTERM);
    int status = 0;
    ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
    pid_ = 0;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n"
                                                               << log_text();
  }

  [[nodiscard]] Result<ipc::ManagerClient> connect(std::chrono::milliseconds timeout = 5s) const {
    return ipc::ManagerClient::connect(socket_, secret_, timeout);
  }

  // The open-files limit (soft and hard) of managers started from now on; 0 leaves it as is.
  void set_fd_limit(rlim_t limit) { fd_limit_ = limit; }

  [[nodiscard]] std::string log_text() const { return read_text(log_); }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const fs::path& socket() const { return socket_; }
  [[nodiscard]] const fs::path& secret() const { return secret_; }
  [[nodiscard]] const fs::path& state() const { return state_; }
  [[nodiscard]] const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_, socket_, secret_, state_, log_, config_;
  pid_t pid_ = 0;
  rlim_t fd_limit_ = 0;
};

// Runs `body` in a child process; its return value is the child's exit status. The child
// never returns into the test framework.
inline pid_t spawn_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int rc = 1;
    try {
      rc = body();
    } catch (...) {
      rc = 99;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// Waits for `pid` and returns its exit status (or 128 + signal).
inline int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// A pipe for handshakes between this process and its children.
class Signal {
 public:
  Signal() { EXPECT_EQ(::pipe(fds_), 0); }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;
  ~Signal() {
    if (fds_[0] >= 0) ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  void notify(char c = '!') const {
    while (::write(fds_[1], &c, 1) < 0 && errno == EINTR) {
    }
  }
  // Returns the byte, or 0 when every writer closed or `timeout` passed.
  char wait(std::chrono::milliseconds timeout = 30s) const {
    pollfd p{fds_[0], POLLIN, 0};
    int rc = 0;
    do {
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) return 0;
    char c = 0;
    return ::read(fds_[0], &c, 1) == 1 ? c : 0;
  }

 private:
  int fds_[2] = {-1, -1};
};

// A connection that speaks the protocol by hand.
// Kills and restarts `manager` `kills` times while children send `reports` progress reports in
// all on `progress`: before each kill a seeded number of reports passes, so kills land mid-stream.
inline void kill_manager_during_progress(ManagerProcess& manager, const Signal& progress,
                                         int reports, int kills, std::mt19937_64& rng) {
  int seen = 0;
  for (int kill = 0; kill < kills; ++kill) {
    const int wait_for =
        1 + static_cast<int>(rng() % static_cast<std::uint64_t>(reports / (kills + 2)));
    for (int r = 0; r < wait_for && seen < reports; ++r, ++seen) ASSERT_EQ(progress.wait(), '!');
    manager.kill9();
    manager.start();
  }
}

class RawConnection {
 public:
  explicit RawConnection(const fs::path& socket) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }

  [[nodiscard]] bool connected() const { return connected_; }
  [[nodiscard]] int fd() const { return fd_; }

  bool send_bytes(const void* data, std::size_t size) {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::send(fd_, p, size, MSG_NOSIGNAL);
      if (n <= 0) return false;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  template <ipc::Transferable T>
  bool send_message(const T& message) {
    std::vector<std::byte> frame;
    ipc::append_frame(message, frame);
    return send_bytes(frame.data(), frame.size());
  }
  // One frame's message, or nullopt at EOF / error / 10 s without one.
  std::optional<std::vector<std::byte>> read_message() {
    std::uint32_t length = 0;
    if (!read_exact(&length, sizeof length)) return std::nullopt;
    std::vector<std::byte> message(length);
    if (!read_exact(message.data(), length)) return std::nullopt;
    return message;
  }
  template <ipc::Transferable T>
  std::optional<T> read() {
    auto message = read_message();
    if (!message) return std::nullopt;
    auto decoded = ipc::decode_from<T>(*message);
    if (!decoded) {
      ADD_FAILURE() << decoded.error().what();
      return std::nullopt;
    }
    return std::move(*decoded);
  }
  // True when the server closed the connection (EOF) before 10 s.
  bool closed_by_peer() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }
  // The whole hello exchange with `key` as (client_id, lane); returns the Welcome.
  std::optional<ipc::Welcome> authenticate(const ipc::SipKey& key,
                                           std::uint32_t version = kManagerProtocolVersion,
                                           std::uint64_t client_id = 0, std::uint32_t lane = 0) {
    auto hello = read<ipc::ServerHello>();
    if (!hello) return std::nullopt;
    ipc::ClientHello mine;
    mine.protocol_version = version;
    mine.client_id =
        client_id != 0 ? client_id : 0x5eed0000u + static_cast<std::uint64_t>(::getpid());
    mine.lane = lane;
    mine.pid = static_cast<std::int32_t>(::getpid());
    mine.nonce = {1, 2};
    mine.proof = ipc::auth_digest(key, 'C', hello->nonce);
    if (!send_message(mine)) return std::nullopt;
    return read<ipc::Welcome>();
  }

 private:
  bool read_exact(void* out, std::size_t size) {
    auto* p = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t n = ::recv(fd_, p, size, 0);
      if (n <= 0) return false;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
};

}  // namespace millrace::testing
