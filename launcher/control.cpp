#include "launcher/control.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "ipc/posix_call.hpp"

namespace millrace::launcher {
namespace {

constexpr std::size_t kMaxLine = 4096;

// A socket address for `path`. A path too long for sun_path (108 bytes) is reached through
// its directory instead: /proc/self/fd/DIRFD/NAME, with DIRFD held open by the address.
class SocketAddress {
 public:
  static Result<SocketAddress> of(const std::filesystem::path& path) {
    SocketAddress a;
    a.addr_.sun_family = AF_UNIX;
    std::string s = path.string();
    if (s.size() >= sizeof a.addr_.sun_path) {
      const std::string dir = path.parent_path().string();
      a.dir_fd_ = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (a.dir_fd_ < 0) return sys_error("control", "open", dir, errno);
      s = "/proc/self/fd/" + std::to_string(a.dir_fd_) + "/" + path.filename().string();
      if (s.size() >= sizeof a.addr_.sun_path) {
        return Error{"control", 1, "socket name " + path.filename().string() + " is too long", 0};
      }
    }
    std::memcpy(a.addr_.sun_path, s.c_str(), s.size() + 1);
    return a;
  }
  SocketAddress(SocketAddress&& o) noexcept : addr_(o.addr_), dir_fd_(o.dir_fd_) { o.dir_fd_ = -1; }
  SocketAddress(const SocketAddress&) = delete;
  SocketAddress& operator=(const SocketAddress&) = delete;
  SocketAddress& operator=(SocketAddress&&) = delete;
  ~SocketAddress() {
    if (dir_fd_ >= 0) ::close(dir_fd_);
  }
  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  [[nodiscard]] socklen_t size() const { return sizeof addr_; }

 private:
  SocketAddress() = default;
  sockaddr_un addr_{};
  int dir_fd_ = -1;
};

// Reads one line (without its newline) from `fd` within `timeout`.
Result<std::string> read_line(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  char buf[512];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error{"control", 2, "no reply in time", 0};
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return line;
    line.append(buf, static_cast<std::size_t>(n));
    if (auto nl = line.find('\n'); nl != std::string::npos) return line.substr(0, nl);
    if (line.size() > kMaxLine) return Error{"control", 3, "request too long", 0};
  }
}

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

Result<ControlServer> ControlServer::listen(const std::filesystem::path& path) {
  auto addr = SocketAddress::of(path);
  if (!addr) return addr.error();
  ::unlink(path.c_str());  // a stale socket of a dead launcher: we hold the run lock
  auto fd = posix_call("socket", path.string(), [] {
    return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  });
  if (!fd) return fd.error();
  const mode_t old = ::umask(0177);
  const int rc = ::bind(*fd, addr->get(), addr->size());
  ::umask(old);
  if (rc != 0 || ::listen(*fd, 16) != 0) {
    const int err = errno;
    ::close(*fd);
    return sys_error("control", "bind", path.string(), err);
  }
  return ControlServer(*fd, path);
}

ControlServer::ControlServer(ControlServer&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

ControlServer& ControlServer::operator=(ControlServer&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

ControlServer::~ControlServer() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

void ControlServer::serve_one(const std::function<std::string(const std::string&)>& handler) {
  const int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return;
  auto line = read_line(conn, std::chrono::milliseconds(1000));
  const std::string reply = line ? handler(*line) : "error " + line.error().what();
  write_all(conn, reply + "\n");
  ::close(conn);
}

Result<std::string> control_request(const std::filesystem::path& path, const std::string& request,
                                    std::chrono::milliseconds timeout) {
  auto addr = SocketAddress::of(path);
  if (!addr) return addr.error();
  auto fd = posix_call("socket", path.string(),
                       [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  if (!fd) return fd.error();
  if (::connect(*fd, addr->get(), addr->size()) != 0) {
    const int err = errno;
    ::close(*fd);
    return Error{"control", 4,
                 "no launcher is running this pipeline (cannot reach " + path.string() + ": " +
                     errno_text(err) + ")",
                 err};
  }
  write_all(*fd, request + "\n");
  auto reply = read_line(*fd, timeout);
  ::close(*fd);
  return reply;
}

}  // namespace millrace::launcher
