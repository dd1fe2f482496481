// Futex wrappers for words in shared memory.
//
// Who calls what: any thread of any process that maps the word. The futexes are shared (no
// FUTEX_PRIVATE_FLAG): waiter and waker live in different processes, and the kernel keys the
// wait queue on the physical page, so the word may sit at different addresses in each process.
//
// Contract: a waiter publishes that it is about to sleep (in shared memory) before calling
// futex_wait, and the waker reads that announcement after its own update; futex_wait then only
// sleeps if the word still holds `expected`, so a wake between the check and the sleep is
// never lost. Every outcome below may be spurious: callers re-check their condition.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "ipc/result.hpp"

namespace millrace::ipc {

// Error codes of the futex wrappers (Error::component == "futex").
enum class FutexError : int {
  kUnsupported = 1,  // the kernel lacks the call (futex_waitv needs Linux >= 5.16)
  kSystem,           // any other failure (errno in Error::sys_errno)
};

enum class FutexOutcome {
  kWoken,         // a wake arrived (or a spurious wake-up)
  kValueChanged,  // the word did not hold `expected` (EAGAIN): nothing to wait for
  kInterrupted,   // a signal handler ran (EINTR)
  kTimedOut,      // the timeout passed (ETIMEDOUT)
};

inline constexpr std::chrono::nanoseconds kWaitForever = std::chrono::nanoseconds::max();

// Sleeps while *word == expected, at most `timeout` (kWaitForever: no limit).
Result<FutexOutcome> futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                                std::chrono::nanoseconds timeout = kWaitForever);

// Wakes up to `count` waiters of `word`; returns how many were woken.
Result<int> futex_wake(std::atomic<std::uint32_t>* word, int count);

struct FutexWaitItem {
  std::atomic<std::uint32_t>* word = nullptr;
  std::uint32_t expected = 0;
};

struct FutexAnyOutcome {
  FutexOutcome outcome = FutexOutcome::kWoken;
  std::size_t index = 0;  // which word was woken (kWoken only)
};

inline constexpr std::size_t kFutexWaitAnyMax = 128;  // FUTEX_WAITV_MAX

// Sleeps until any of `items` is woken (futex_waitv), or one of them no longer holds its
// expected value (kValueChanged), at most `timeout`. 1..kFutexWaitAnyMax items.
Result<FutexAnyOutcome> futex_wait_any(std::span<const FutexWaitItem> items,
                                       std::chrono::nanoseconds timeout = kWaitForever);

}  // namespace millrace::ipc
