#include "launcher/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
// The library part of Boost.Process v2 (not header-only in 1.81), compiled here once.
#include <boost/process/v2/src.hpp>

#include "ipc/posix_call.hpp"

extern char** environ;

namespace millrace::launcher {
namespace bp = boost::process::v2;

namespace {

// Runs in the child between fork and exec.
struct ChildSetup {
  pid_t parent;
  const std::vector<int>* fds;

  template <typename Launcher>
  bp::error_code on_exec_setup(Launcher& launcher, const bp::filesystem::path&,
                               const char* const*) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The launcher may have died between fork and prctl: then nobody would kill us.
    if (::getppid() != parent) ::_exit(1);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    for (int fd : *fds) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0) ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
      launcher.fd_whitelist.push_back(fd);
    }
    return {};
  }
};

}  // namespace

Result<pid_t> spawn_child(const SpawnRequest& request) {
  auto log = posix_call("open", request.log.string(), [&] {
    return ::open(request.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  });
  if (!log) return log.error();

  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("MILLRACE_", 0) != 0) env.emplace_back(*e);
  }
  env.insert(env.end(), request.env.begin(), request.env.end());

  boost::asio::io_context ctx;
  bp::error_code ec;
  bp::default_process_launcher launcher;
  auto proc = launcher(ctx, ec, bp::filesystem::path(request.program), request.args,
                       bp::process_stdio{nullptr, *log, *log}, bp::process_environment(env),
                       ChildSetup{::getpid(), &request.inherit_fds});
  ::close(*log);
  if (ec) {
    return Error{"run", 1, "cannot start " + request.program + ": " + ec.message(), ec.value()};
  }
  const pid_t pid = proc.id();
  proc.detach();  // reaping is the launcher's, through waitpid
  return pid;
}

std::string builtin_program(const std::string& name) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  const auto slash = self.rfind('/');
  return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/millrace-" + name;
}

}  // namespace millrace::launcher
