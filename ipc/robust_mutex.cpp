#include "ipc/robust_mutex.hpp"

#include <cassert>
#include <cerrno>
#include <utility>

#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

Error lock_error(int err, const char* call) {
  LockError code = LockError::kSystem;
  std::string msg = std::string(call) + ": " + errno_text(err);
  if (err == EINVAL) {
    code = LockError::kNotInitialised;
    msg += " (the shared memory holds no initialised RobustMutex: its creator must call init())";
  } else if (err == EDEADLK) {
    code = LockError::kRelock;
    msg += " (this thread holds the lock already)";
  }
  return Error{"lock", static_cast<int>(code), std::move(msg), err};
}

}  // namespace

Status RobustMutex::init() {
  pthread_mutexattr_t attr;
  int rc = ::pthread_mutexattr_init(&attr);
  if (rc != 0) return lock_error(rc, "pthread_mutexattr_init");
  struct AttrGuard {
    pthread_mutexattr_t* attr;
    ~AttrGuard() { ::pthread_mutexattr_destroy(attr); }
  } guard{&attr};
  if ((rc = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) != 0) {
    return lock_error(rc, "pthread_mutexattr_setpshared");
  }
  if ((rc = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0) {
    return lock_error(rc, "pthread_mutexattr_setrobust");
  }
  // A second lock by the holder is reported instead of deadlocking.
  if ((rc = ::pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK)) != 0) {
    return lock_error(rc, "pthread_mutexattr_settype");
  }
  if ((rc = ::pthread_mutex_init(&mutex_, &attr)) != 0) return lock_error(rc, "pthread_mutex_init");
  return ok_status();
}

Result<bool> RobustMutex::lock() {
  const int rc = ::pthread_mutex_lock(&mutex_);
  if (rc == 0) return false;
  if (rc == EOWNERDEAD) {
    // Consistent at once: whatever the caller does next, the mutex stays usable.
    const int c = ::pthread_mutex_consistent(&mutex_);
    if (c != 0) return lock_error(c, "pthread_mutex_consistent");
    return true;
  }
  return lock_error(rc, "pthread_mutex_lock");
}

void RobustMutex::unlock() {
  const int rc = ::pthread_mutex_unlock(&mutex_);
  assert(rc == 0 && "RobustMutex::unlock by a thread that does not hold it");
  static_cast<void>(rc);
}

Result<RobustLock> RobustLock::acquire(RobustMutex& mutex) {
  auto died = mutex.lock();
  if (!died) return died.error();
  return RobustLock(&mutex, *died);
}

RobustLock::RobustLock(RobustLock&& other) noexcept
    : mutex_(std::exchange(other.mutex_, nullptr)), owner_died_(other.owner_died_) {}

RobustLock& RobustLock::operator=(RobustLock&& other) noexcept {
  if (this != &other) {
    unlock();
    mutex_ = std::exchange(other.mutex_, nullptr);
    owner_died_ = other.owner_died_;
  }
  return *this;
}

RobustLock::~RobustLock() { unlock(); }

void RobustLock::unlock() {
  if (mutex_ != nullptr) std::exchange(mutex_, nullptr)->unlock();
}

}  // namespace millrace::ipc
