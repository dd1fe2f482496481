#include "launcher/run_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "ipc/posix_call.hpp"
#include "ipc/shm_segment.hpp"

namespace millrace::launcher {
namespace fs = std::filesystem;

namespace {

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hex(std::uint64_t v, int digits) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return std::string(buf + 16 - digits);
}

Error run_error(std::string msg, int err = 0) { return Error{"run", 1, std::move(msg), err}; }

}  // namespace

std::string run_id_of(const fs::path& dir) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(fs::absolute(dir), ec);
  if (ec) canonical = fs::absolute(dir);
  return hex(fnv1a(canonical.string()), 12);
}

Result<RunDir> RunDir::open(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir / "logs", ec);
  if (ec) {
    return run_error("cannot create run directory " + dir.string() + ": " + ec.message() +
                     " (set pipeline.run_dir to a writable place)");
  }
  ::chmod(dir.c_str(), 0700);
  return RunDir(fs::absolute(dir), run_id_of(dir));
}

RunDir::RunDir(RunDir&& other) noexcept
    : dir_(std::move(other.dir_)), run_id_(std::move(other.run_id_)), lock_fd_(other.lock_fd_) {
  other.lock_fd_ = -1;
}

RunDir& RunDir::operator=(RunDir&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    dir_ = std::move(other.dir_);
    run_id_ = std::move(other.run_id_);
    lock_fd_ = other.lock_fd_;
    other.lock_fd_ = -1;
  }
  return *this;
}

RunDir::~RunDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status RunDir::lock() {
  const fs::path path = dir_ / "lock";
  auto fd = posix_call("open", path.string(),
                       [&] { return ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); });
  if (!fd) return fd.error();
  // A launcher killed while forking leaves a child that shares its lock until the child
  // execs or dies (within moments: it has PR_SET_PDEATHSIG). If the recorded launcher is dead,
  // wait briefly for that child rather than refusing the run.
  int locked = ::flock(*fd, LOCK_EX | LOCK_NB);
  for (int attempt = 0; locked != 0 && errno == EWOULDBLOCK && attempt < 50; ++attempt) {
    char buf[32] = {};
    const ssize_t n = ::pread(*fd, buf, sizeof buf - 1, 0);
    const long holder = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    if (holder <= 0 || (::kill(static_cast<pid_t>(holder), 0) != 0 && errno == ESRCH)) {
      ::usleep(100'000);  // the dead launcher's last child is on its way out
      locked = ::flock(*fd, LOCK_EX | LOCK_NB);
    } else {
      break;
    }
  }
  if (locked != 0) {
    const int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(*fd, buf, sizeof buf - 1, 0);
    ::close(*fd);
    std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK) {
      return run_error("another launcher (pid " + holder + ") is running this pipeline in " +
                       dir_.string() + "; watch it with `millrace stats`, or stop it with " +
                       "`millrace stop`");
    }
    return sys_error("run", "flock", path.string(), err);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(*fd, 0) != 0 || ::pwrite(*fd, pid.data(), pid.size(), 0) < 0) {
    const int err = errno;
    ::close(*fd);
    return sys_error("run", "write", path.string(), err);
  }
  lock_fd_ = *fd;
  return ok_status();
}

fs::path RunDir::log_path(const std::string& stage, unsigned worker) const {
  return dir_ / "logs" / (stage + "." + std::to_string(worker) + ".log");
}

std::string RunDir::stats_segment() const { return ipc::segment_name(run_id_, "stats"); }

Result<std::string> input_identity(const std::string& path) {
  auto fd = posix_call("open", path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (!fd) return fd.error();
  struct stat st {};
  if (::fstat(*fd, &st) != 0) {
    const int err = errno;
    ::close(*fd);
    return sys_error("run", "fstat", path, err);
  }
  constexpr std::size_t kChunk = 64 * 1024;
  std::string buf(kChunk, '\0');
  std::uint64_t h = fnv1a(std::to_string(st.st_size));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  for (std::uint64_t offset : {std::uint64_t{0}, size > kChunk ? size - kChunk : std::uint64_t{0}}) {
    ssize_t n = ::pread(*fd, buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0) {
      const int err = errno;
      ::close(*fd);
      return sys_error("run", "pread", path, err);
    }
    h = fnv1a(std::string_view(buf.data(), static_cast<std::size_t>(n)), h);
  }
  ::close(*fd);
  return std::to_string(size) + ":" + hex(h, 16);
}

void remove_run_segments(const std::string& run_id) {
  const std::string prefix = "millrace-" + run_id + "-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/dev/shm", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) ::shm_unlink(("/" + name).c_str());
  }
}

Status write_file_atomically(const fs::path& path, const std::string& text, unsigned mode) {
  const fs::path tmp = path.string() + ".tmp";
  auto fd = posix_call("open", tmp.string(), [&] {
    return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  });
  if (!fd) return fd.error();
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(*fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(*fd);
      return sys_error("run", "write", tmp.string(), err);
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(*fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("run", "rename", path.string(), errno);
  return ok_status();
}

}  // namespace millrace::launcher
