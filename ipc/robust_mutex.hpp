// RobustMutex: a mutex in shared memory that survives the death of the process holding it.
//
// Who calls what:
//  - The creator of the shared memory calls init() once, before any other process uses the
//    mutex (e.g. before SharedSegment::publish()).
//  - Any thread of any process that maps the memory calls lock() / unlock(), or uses
//    RobustLock. The same thread must not lock it twice (an Error, not a deadlock).
//
// Invariants:
//  - It is a pthread mutex with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST: when its
//    holder dies, the kernel releases it and the next locker is told (EOWNERDEAD).
//  - lock() marks the mutex consistent at once (pthread_mutex_consistent) and returns true
//    for "the previous owner died": the caller holds the lock and must repair the state it
//    protects before unlocking. So the mutex never becomes ENOTRECOVERABLE, and if the
//    repairer dies too, the next locker is told again: repairs must be idempotent.
//  - Not Boost.Interprocess: its mutex throws on EOWNERDEAD without marking the mutex
//    consistent, which leaves it unusable for good.
#pragma once

#include <pthread.h>

#include <type_traits>

#include "ipc/result.hpp"

namespace millrace::ipc {

// Error codes of the lock component (Error::component == "lock").
enum class LockError : int {
  kNotInitialised = 1,  // EINVAL: the memory does not hold an initialised mutex
  kRelock,              // EDEADLK: this thread holds it already
  kSystem,              // anything else (errno in Error::sys_errno)
};

class RobustMutex {
 public:
  RobustMutex() = default;
  RobustMutex(const RobustMutex&) = delete;
  RobustMutex& operator=(const RobustMutex&) = delete;

  // Creator only, once, on memory no process uses yet.
  Status init();
  // Blocks until this thread holds the mutex. True when the previous holder died holding it.
  [[nodiscard]] Result<bool> lock();
  // Holder only.
  void unlock();

 private:
  pthread_mutex_t mutex_;
};

static_assert(std::is_standard_layout_v<RobustMutex>, "RobustMutex lives in shared memory");

// Holds a RobustMutex for a scope. Move-only.
class RobustLock {
 public:
  // Locks `mutex`; see owner_died() and the error from lock().
  static Result<RobustLock> acquire(RobustMutex& mutex);
  RobustLock(RobustLock&& other) noexcept;
  RobustLock& operator=(RobustLock&& other) noexcept;
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  ~RobustLock();

  // True when the previous holder died: repair the protected state before this lock ends.
  [[nodiscard]] bool owner_died() const { return owner_died_; }
  void unlock();

 private:
  RobustLock(RobustMutex* mutex, bool owner_died) : mutex_(mutex), owner_died_(owner_died) {}
  RobustMutex* mutex_ = nullptr;
  bool owner_died_ = false;
};

}  // namespace millrace::ipc
