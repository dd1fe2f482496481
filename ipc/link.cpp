#include "ipc/link.hpp"

#include <poll.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <climits>
#include <string>

#include "ipc/futex.hpp"
#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

using Clock = std::chrono::steady_clock;

// A set mixing rings and pipes cannot sleep on both at once: it alternates between them in
// slices this long, which bounds the extra latency of either kind.
constexpr auto kMixedSlice = std::chrono::milliseconds(1);

Error link_error(LinkError code, std::string message, int err = 0) {
  return Error{"link", static_cast<int>(code), std::move(message), err};
}

int poll_ms(Clock::duration d) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, INT_MAX));
}

}  // namespace

Result<std::size_t> wait_any(std::span<LinkReader* const> readers,
                             std::chrono::nanoseconds timeout) {
  assert(!readers.empty() && readers.size() <= kFutexWaitAnyMax &&
         "wait_any: 1..128 readers");
  const auto start = Clock::now();
  const auto deadline = timeout.count() <= 0 ? start
                        : timeout >= Clock::time_point::max() - start
                            ? Clock::time_point::max()
                            : start + std::chrono::duration_cast<Clock::duration>(timeout);

  std::array<FutexWaitItem, kFutexWaitAnyMax> words{};
  std::array<pollfd, kFutexWaitAnyMax> fds{};
  std::array<std::size_t, kFutexWaitAnyMax> fd_owner{};

  for (;;) {
    std::size_t n_words = 0;
    std::size_t n_fds = 0;
    std::size_t armed = 0;
    std::size_t ready = readers.size();
    for (; armed < readers.size(); ++armed) {
      const WaitSpec spec = readers[armed]->arm_wait();
      if (spec.ready) {
        ready = armed++;
        break;
      }
      if (spec.futex != nullptr) {
        words[n_words++] = FutexWaitItem{spec.futex, spec.expected};
      } else {
        assert(spec.fd >= 0 && "arm_wait() gave neither a futex nor a file descriptor");
        fds[n_fds] = pollfd{spec.fd, POLLIN, 0};
        fd_owner[n_fds++] = armed;
      }
    }
    auto disarm = [&] {
      for (std::size_t i = 0; i < armed; ++i) readers[i]->disarm_wait();
    };
    if (ready < readers.size()) {
      disarm();
      return ready;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      disarm();
      return link_error(LinkError::kTimeout, "wait_any: no link of " +
                                                 std::to_string(readers.size()) +
                                                 " had a record before the timeout");
    }
    auto left = deadline - now;
    if (n_words > 0 && n_fds > 0) left = std::min<Clock::duration>(left, kMixedSlice);

    if (n_words > 0) {
      auto woke = futex_wait_any(std::span<const FutexWaitItem>(words.data(), n_words),
                                 std::chrono::duration_cast<std::chrono::nanoseconds>(left));
      if (!woke) {
        disarm();
        return link_error(LinkError::kSystem, "wait_any: " + woke.error().message,
                          woke.error().sys_errno);
      }
    }
    if (n_fds > 0) {
      const int wait_ms = n_words > 0 ? 0 : poll_ms(left);
      const int rc = ::poll(fds.data(), static_cast<nfds_t>(n_fds), wait_ms);
      if (rc < 0 && errno != EINTR) {
        const int err = errno;
        disarm();
        return link_error(LinkError::kSystem, "wait_any: poll: " + errno_text(err), err);
      }
      for (std::size_t i = 0; rc > 0 && i < n_fds; ++i) {
        // EOF and errors are events too: the reader must see them.
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          disarm();
          return fd_owner[i];
        }
      }
    }
    // Woken, timed slice or interrupted: disarm and re-arm, which re-checks every reader.
    disarm();
  }
}

}  // namespace millrace::ipc
