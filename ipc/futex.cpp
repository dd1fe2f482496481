#include "ipc/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <string>

#include "ipc/posix_call.hpp"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

namespace millrace::ipc {
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word is a plain 32-bit word: std::atomic<uint32_t> must be one");

constexpr long kNsPerSec = 1'000'000'000;

timespec to_timespec(std::chrono::nanoseconds d) {
  const auto ns = d.count() < 0 ? 0 : d.count();
  return timespec{static_cast<time_t>(ns / kNsPerSec), static_cast<long>(ns % kNsPerSec)};
}

Error futex_error(std::string_view call, int err) {
  Error e = sys_error("futex", call, "shared word", err);
  e.code = static_cast<int>(err == ENOSYS ? FutexError::kUnsupported : FutexError::kSystem);
  if (err == ENOSYS) e.message += "; futex_waitv needs Linux 5.16 or newer";
  return e;
}

std::uint32_t* raw(std::atomic<std::uint32_t>* word) {
  // The kernel compares and queues on the word's address; the static_assert above makes the
  // atomic's object representation that of the plain word.
  return reinterpret_cast<std::uint32_t*>(word);
}

}  // namespace

Result<FutexOutcome> futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                                std::chrono::nanoseconds timeout) {
  assert(word != nullptr && "futex_wait: null word");
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout != kWaitForever) {
    ts = to_timespec(timeout);  // FUTEX_WAIT takes a relative CLOCK_MONOTONIC timeout
    tsp = &ts;
  }
  const long rc = ::syscall(SYS_futex, raw(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
  if (rc == 0) return FutexOutcome::kWoken;
  switch (errno) {
    case EAGAIN: return FutexOutcome::kValueChanged;
    case EINTR: return FutexOutcome::kInterrupted;
    case ETIMEDOUT: return FutexOutcome::kTimedOut;
    default: return futex_error("futex_wait", errno);
  }
}

Result<int> futex_wake(std::atomic<std::uint32_t>* word, int count) {
  assert(word != nullptr && "futex_wake: null word");
  const long rc = ::syscall(SYS_futex, raw(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
  if (rc < 0) return futex_error("futex_wake", errno);
  return static_cast<int>(rc);
}

Result<FutexAnyOutcome> futex_wait_any(std::span<const FutexWaitItem> items,
                                       std::chrono::nanoseconds timeout) {
  assert(!items.empty() && items.size() <= kFutexWaitAnyMax &&
         "futex_wait_any: 1..kFutexWaitAnyMax words");
  std::array<futex_waitv, kFutexWaitAnyMax> waiters{};
  for (std::size_t i = 0; i < items.size(); ++i) {
    assert(items[i].word != nullptr && "futex_wait_any: null word");
    waiters[i].val = items[i].expected;
    waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(raw(items[i].word));
    waiters[i].flags = FUTEX_32;  // shared: no FUTEX_PRIVATE_FLAG
  }
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout != kWaitForever) {
    // futex_waitv takes an absolute deadline on the given clock.
    if (::clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return futex_error("clock_gettime", errno);
    const timespec rel = to_timespec(timeout);
    ts.tv_sec += rel.tv_sec;
    ts.tv_nsec += rel.tv_nsec;
    if (ts.tv_nsec >= kNsPerSec) {
      ts.tv_sec += 1;
      ts.tv_nsec -= kNsPerSec;
    }
    tsp = &ts;
  }
  const long rc = ::syscall(SYS_futex_waitv, waiters.data(),
                            static_cast<unsigned>(items.size()), 0U, tsp, CLOCK_MONOTONIC);
  if (rc >= 0) return FutexAnyOutcome{FutexOutcome::kWoken, static_cast<std::size_t>(rc)};
  switch (errno) {
    case EAGAIN: return FutexAnyOutcome{FutexOutcome::kValueChanged, 0};
    case EINTR: return FutexAnyOutcome{FutexOutcome::kInterrupted, 0};
    case ETIMEDOUT: return FutexAnyOutcome{FutexOutcome::kTimedOut, 0};
    default: return futex_error("futex_waitv", errno);
  }
}

}  // namespace millrace::ipc
