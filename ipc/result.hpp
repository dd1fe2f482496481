// Result<T>: the value of an operation that can fail at run time, or the Error saying why.
//
// Error policy (one for the whole project):
//  - Operations on OS resources and on input a user controls return Result<T>; factories of
//    resource-owning types return Result<Type>, never a half-built object.
//  - Types that own an OS resource are move-only RAII.
//  - Broken contracts (a caller misusing an API) are asserts with a message, not Results.
//  - An Error carries a component, a specific code, the context where it happened (path,
//    segment name, stage, record) and errno's text when a system call failed.
#pragma once

#include <cassert>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace millrace {

struct Error {
  std::string component;  // "shm", "ring", "pipe", "codec", "config", "stage", ...
  int code = 0;           // the component's enum value
  std::string message;    // what failed, where, and what to do; complete on its own
  int sys_errno = 0;      // errno of the failed call, 0 when none

  [[nodiscard]] const std::string& what() const { return message; }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}    // NOLINT: implicit by design

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok() && "Result::value() on an error");
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok() && "Result::value() on an error");
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok() && "Result::value() on an error");
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const Error& error() const {
    assert(!ok() && "Result::error() on a value");
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success, or an Error.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  [[nodiscard]] bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_ && "Result::error() on success");
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status{}; }

}  // namespace millrace
