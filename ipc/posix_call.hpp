// posix_call: the one wrapper for system calls. It retries on EINTR, captures errno, and turns
// a failure into an Error that names the call and what it was acting on.
//
//   auto fd = posix_call("shm_open", name, [&] { return ::shm_open(name.c_str(), flags, 0600); });
//   if (!fd) return fd.error();
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "ipc/result.hpp"

namespace millrace {

// Text of an errno value ("No such file or directory").
inline std::string errno_text(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer, which may or may not be buf.
  return std::string(::strerror_r(err, buf, sizeof buf));
}

// An Error for a failed system call `call` acting on `subject` (a path, a segment name...).
inline Error sys_error(std::string_view component, std::string_view call, std::string_view subject,
                       int err) {
  std::string msg;
  msg.reserve(64 + subject.size());
  msg.append(call).append("(");
  msg.append(subject).append("): ").append(errno_text(err));
  return Error{std::string(component), err, std::move(msg), err};
}

// Runs `fn` (a system call returning -1 and setting errno on failure), retrying on EINTR.
template <typename Fn>
auto posix_call(std::string_view call, std::string_view subject, Fn&& fn)
    -> Result<decltype(fn())> {
  for (;;) {
    auto rc = fn();
    if (rc != -1) return rc;
    if (errno == EINTR) continue;
    return sys_error("os", call, subject, errno);
  }
}

}  // namespace millrace
