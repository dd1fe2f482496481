// Value, Array, RawValue, RawArray: Python's multiprocessing Value and Array, placed in shared
// memory (a SharedSegment payload, or any MAP_SHARED mapping).
//
// Who calls what:
//  - The creator of the memory calls init() once, on memory no other process uses yet (e.g.
//    before SharedSegment::publish()); every other process calls attach() on its mapping.
//  - Any thread of any process then uses the object. Each object is a standard-layout struct
//    whose address is the start of the memory given to init() / attach().
//
// Two ways to use a Value / Array:
//  - Lock-free, when std::atomic<T> is always lock-free: load, store, exchange and (integral
//    T) fetch_add / fetch_sub on the value or one element. Python's `Value += 1` is not
//    atomic; fetch_add is.
//  - Under the lock: get_lock() returns a Guard for updates that touch several fields or
//    elements (or update(fn)). The lock is a RobustMutex: a holder killed mid-update is
//    detected by the next locker, which rolls the half-done update back from the object's
//    undo journal. Every locked reader therefore sees the state before or after an update,
//    never half of one. Lock-free reads of single elements see each element's latest value.
//    The lock and the lock-free read-modify-writes do not exclude each other: update a given
//    value either one way or the other.
//
// Crash consistency of locked updates (the undo journal, inside the object):
//    1. lock; if the previous holder died and journal_state == kSaved: copy journal_old back
//       (idempotent: a repairer that dies is repaired by the next locker);
//    2. journal_old = current state; journal_state = kSaved (release);
//    3. the caller writes the state in place;
//    4. commit: journal_state = kClean (release) -- the one store that makes the update final;
//       abandon (or an exception leaving the Guard's scope): copy journal_old back, then kClean;
//    5. unlock.
//    A Value whose T is lock-free needs no journal: its Guard edits a copy and commits it with
//    one atomic store.
//
// RawValue / RawArray: no lock, only the lock-free operations (multiprocessing.RawValue).
//
// Layout: each object starts with a header {magic, format version, type tag, size}; init()
// stores the magic last with release order, so attach() (acquire) on memory whose creator died
// mid-init, or that holds another type or format version, is an Error naming both.
#pragma once

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

#include "ipc/result.hpp"
#include "ipc/robust_mutex.hpp"
#include "ipc/type_name.hpp"

namespace millrace::ipc {

// Bump when the layout of any shared value changes.
inline constexpr std::uint32_t kSharedValueFormatVersion = 1;

// Error codes of the shared value component (Error::component == "value").
enum class SharedValueError : int {
  kNotInitialised = 1,  // no magic: never initialised, or its creator died during init()
  kVersion,             // another kSharedValueFormatVersion
  kType,                // another type or size
  kSystem,              // initialising the lock failed
};

namespace detail {

inline constexpr std::uint32_t kSharedValueMagic = 0x4C415653;  // "SVAL"
inline constexpr std::uint32_t kJournalClean = 0;
inline constexpr std::uint32_t kJournalSaved = 1;

struct SharedValueHeader {
  std::atomic<std::uint32_t> magic{0};  // stored last by init(), with release order
  std::uint32_t format_version = 0;
  std::uint32_t type_tag = 0;  // fnv1a_32 of the object's type name
  std::uint32_t size = 0;      // sizeof the object
};

void publish_header(SharedValueHeader& header, std::uint32_t type_tag, std::size_t size);
Status check_header(const SharedValueHeader& header, std::string_view type_name,
                    std::uint32_t type_tag, std::size_t size);
// A lock failure here means the memory is not what it claims or a thread locked twice.
[[noreturn]] void lock_failed(std::string_view type_name, const Error& error);

template <class T>
constexpr void check_element_type() {
  static_assert(std::is_trivially_copyable_v<T>,
                "shared values copy T byte-wise between processes: T must be trivially copyable");
  static_assert(std::is_standard_layout_v<T>,
                "shared values live in shared memory: T must be standard-layout");
  static_assert(!std::is_pointer_v<T> && !std::is_member_pointer_v<T>,
                "a pointer means nothing in another process: store an offset or an id");
}

template <class Object>
Result<Object*> attach_object(void* memory) {
  assert(reinterpret_cast<std::uintptr_t>(memory) % alignof(Object) == 0 &&
         "shared value memory is misaligned");
  auto* object = std::launder(reinterpret_cast<Object*>(memory));
  if (auto st = check_header(object->header_, compiler_type_name<Object>(),
                             fnv1a_32(compiler_type_name<Object>()), sizeof(Object));
      !st) {
    return st.error();
  }
  return object;
}

template <class Object>
void finish_init(Object* object) {
  publish_header(object->header_, fnv1a_32(compiler_type_name<Object>()), sizeof(Object));
}

}  // namespace detail

// --- Value ----------------------------------------------------------------------------------

template <class T>
class Value {
 public:
  static constexpr bool kLockFree = std::atomic<T>::is_always_lock_free;
  class Guard;

  // Creator only: builds a Value holding `initial` in `memory` (sizeof(Value) bytes, aligned
  // to alignof(Value)).
  static Result<Value*> init(void* memory, const T& initial = T{});
  // The Value another process built in `memory`.
  static Result<Value*> attach(void* memory) { return detail::attach_object<Value>(memory); }

  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;

  // Lock-free when kLockFree, else a copy taken under the lock.
  [[nodiscard]] T load(std::memory_order order = std::memory_order_seq_cst) const;
  // Lock-free when kLockFree, else a journaled write under the lock.
  void store(const T& value, std::memory_order order = std::memory_order_seq_cst);
  T exchange(const T& value, std::memory_order order = std::memory_order_seq_cst)
    requires kLockFree
  {
    return data_.exchange(value, order);
  }
  T fetch_add(T delta, std::memory_order order = std::memory_order_seq_cst)
    requires(kLockFree && std::is_integral_v<T>)
  {
    return data_.fetch_add(delta, order);
  }
  T fetch_sub(T delta, std::memory_order order = std::memory_order_seq_cst)
    requires(kLockFree && std::is_integral_v<T>)
  {
    return data_.fetch_sub(delta, order);
  }

  // Locks for an update of several fields; see Guard.
  [[nodiscard]] Guard get_lock();
  // get_lock(), then fn(T&); commits when fn returns, rolls back when it throws.
  template <class Fn>
  void update(Fn&& fn) {
    Guard guard = get_lock();
    std::forward<Fn>(fn)(*guard);
  }

 private:
  template <class Object>
  friend Result<Object*> detail::attach_object(void* memory);
  template <class Object>
  friend void detail::finish_init(Object* object);

  Value() = default;
  // Locks; true when a dead holder's update was rolled back.
  bool lock_and_repair();

  detail::SharedValueHeader header_;
  RobustMutex mutex_;
  std::atomic<std::uint32_t> journal_state_{detail::kJournalClean};
  T journal_old_{};
  std::conditional_t<kLockFree, std::atomic<T>, T> data_{};
};

// The lock of a Value, held for one update. Move-only; ends with commit(), abandon(), or its
// destructor (which commits, or abandons while an exception unwinds).
template <class T>
class Value<T>::Guard {
 public:
  Guard(Guard&& other) noexcept
      : value_(std::exchange(other.value_, nullptr)),
        recovered_(other.recovered_),
        uncaught_(other.uncaught_),
        copy_(other.copy_) {}
  Guard& operator=(Guard&&) = delete;
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  ~Guard() {
    if (value_ == nullptr) return;
    if (std::uncaught_exceptions() > uncaught_) {
      abandon();
    } else {
      commit();
    }
  }

  // The value being updated: the shared state itself, or (kLockFree) a copy of it.
  T& operator*() { return data(); }
  T* operator->() { return &**this; }
  // True when taking this lock rolled back the half-done update of a holder that died.
  [[nodiscard]] bool recovered() const { return recovered_; }

  void commit() {
    assert(value_ != nullptr && "Guard already ended");
    if constexpr (kLockFree) {
      // Release: a lock-free load (acquire) of the new value sees everything before it.
      value_->data_.store(copy_, std::memory_order_release);
    } else {
      // The update is final once this store lands; before it, the next locker rolls back.
      value_->journal_state_.store(detail::kJournalClean, std::memory_order_release);
    }
    std::exchange(value_, nullptr)->mutex_.unlock();
  }

  void abandon() {
    assert(value_ != nullptr && "Guard already ended");
    if constexpr (!kLockFree) {
      value_->data_ = value_->journal_old_;
      value_->journal_state_.store(detail::kJournalClean, std::memory_order_release);
    }
    std::exchange(value_, nullptr)->mutex_.unlock();
  }

 private:
  friend class Value;
  Guard(Value* value, bool recovered)
      : value_(value), recovered_(recovered), uncaught_(std::uncaught_exceptions()) {}
  T& data() {
    if constexpr (kLockFree) {
      return copy_;
    } else {
      return value_->data_;
    }
  }

  Value* value_;
  bool recovered_;
  int uncaught_;
  T copy_{};  // kLockFree only
};

template <class T>
Result<Value<T>*> Value<T>::init(void* memory, const T& initial) {
  detail::check_element_type<T>();
  static_assert(std::is_standard_layout_v<Value>, "Value lives in shared memory");
  static_assert(offsetof(Value, header_) == 0, "the header comes first");
  assert(reinterpret_cast<std::uintptr_t>(memory) % alignof(Value) == 0 &&
         "Value::init: misaligned memory");
  auto* value = new (memory) Value();
  if (auto st = value->mutex_.init(); !st) {
    return Error{"value", static_cast<int>(SharedValueError::kSystem), st.error().message,
                 st.error().sys_errno};
  }
  if constexpr (kLockFree) {
    value->data_.store(initial, std::memory_order_relaxed);
  } else {
    value->data_ = initial;
  }
  detail::finish_init(value);
  return value;
}

template <class T>
bool Value<T>::lock_and_repair() {
  auto died = mutex_.lock();
  if (!died) detail::lock_failed(compiler_type_name<Value>(), died.error());
  if constexpr (!kLockFree) {
    if (*died && journal_state_.load(std::memory_order_acquire) == detail::kJournalSaved) {
      data_ = journal_old_;
      journal_state_.store(detail::kJournalClean, std::memory_order_release);
      return true;
    }
  }
  return false;
}

template <class T>
typename Value<T>::Guard Value<T>::get_lock() {
  const bool recovered = lock_and_repair();
  Guard guard(this, recovered);
  if constexpr (kLockFree) {
    guard.copy_ = data_.load(std::memory_order_acquire);
  } else {
    journal_old_ = data_;
    // Release: whoever sees kSaved after our death also sees the complete journal_old_.
    journal_state_.store(detail::kJournalSaved, std::memory_order_release);
  }
  return guard;
}

template <class T>
T Value<T>::load(std::memory_order order) const {
  if constexpr (kLockFree) {
    return data_.load(order);
  } else {
    // The lock may repair the state, which is no change of the value a caller can observe.
    auto* self = const_cast<Value*>(this);
    self->lock_and_repair();
    const T copy = data_;
    self->mutex_.unlock();
    return copy;
  }
}

template <class T>
void Value<T>::store(const T& value, std::memory_order order) {
  if constexpr (kLockFree) {
    data_.store(value, order);
  } else {
    Guard guard = get_lock();
    *guard = value;
  }
}

// --- Array ----------------------------------------------------------------------------------

template <class T, std::size_t N>
class Array {
 public:
  static constexpr bool kLockFree = std::atomic<T>::is_always_lock_free;
  using Element = std::conditional_t<kLockFree, std::atomic<T>, T>;
  class Guard;

  // Creator only: builds an Array with every element `fill` in `memory`.
  static Result<Array*> init(void* memory, const T& fill = T{});
  static Result<Array*> attach(void* memory) { return detail::attach_object<Array>(memory); }

  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  static constexpr std::size_t size() { return N; }

  // One element: lock-free when kLockFree, else under the lock.
  [[nodiscard]] T load(std::size_t i, std::memory_order order = std::memory_order_seq_cst) const;
  void store(std::size_t i, const T& value, std::memory_order order = std::memory_order_seq_cst);
  T fetch_add(std::size_t i, T delta, std::memory_order order = std::memory_order_seq_cst)
    requires(kLockFree && std::is_integral_v<T>)
  {
    assert(i < N && "Array index out of range");
    return elements_[i].fetch_add(delta, order);
  }
  T fetch_sub(std::size_t i, T delta, std::memory_order order = std::memory_order_seq_cst)
    requires(kLockFree && std::is_integral_v<T>)
  {
    assert(i < N && "Array index out of range");
    return elements_[i].fetch_sub(delta, order);
  }

  // Every element, as of one moment between locked updates.
  [[nodiscard]] std::array<T, N> snapshot() const;
  // Locks for an update of several elements; see Guard. Costs a copy of all N elements.
  [[nodiscard]] Guard get_lock();
  // get_lock(), then fn(Guard&); commits when fn returns, rolls back when it throws.
  template <class Fn>
  void update(Fn&& fn) {
    Guard guard = get_lock();
    std::forward<Fn>(fn)(guard);
  }

 private:
  template <class Object>
  friend Result<Object*> detail::attach_object(void* memory);
  template <class Object>
  friend void detail::finish_init(Object* object);

  Array() = default;
  bool lock_and_repair();
  T get(std::size_t i) const {
    if constexpr (kLockFree) {
      return elements_[i].load(std::memory_order_relaxed);
    } else {
      return elements_[i];
    }
  }
  void set(std::size_t i, const T& value) {
    if constexpr (kLockFree) {
      // Release: a lock-free load (acquire) of this element sees everything before it.
      elements_[i].store(value, std::memory_order_release);
    } else {
      elements_[i] = value;
    }
  }
  void restore_from_journal() {
    for (std::size_t i = 0; i < N; ++i) set(i, journal_old_[i]);
  }

  detail::SharedValueHeader header_;
  RobustMutex mutex_;
  std::atomic<std::uint32_t> journal_state_{detail::kJournalClean};
  std::array<T, N> journal_old_{};
  std::array<Element, N> elements_{};
};

// The lock of an Array, held for one update of several elements, written in place (the
// journal holds the old ones). Move-only; ends like Value::Guard.
template <class T, std::size_t N>
class Array<T, N>::Guard {
 public:
  Guard(Guard&& other) noexcept
      : array_(std::exchange(other.array_, nullptr)),
        recovered_(other.recovered_),
        uncaught_(other.uncaught_) {}
  Guard& operator=(Guard&&) = delete;
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
  ~Guard() {
    if (array_ == nullptr) return;
    if (std::uncaught_exceptions() > uncaught_) {
      abandon();
    } else {
      commit();
    }
  }

  [[nodiscard]] T get(std::size_t i) const {
    assert(i < N && "Array index out of range");
    return array_->get(i);
  }
  void set(std::size_t i, const T& value) {
    assert(i < N && "Array index out of range");
    array_->set(i, value);
  }
  [[nodiscard]] bool recovered() const { return recovered_; }

  void commit() {
    assert(array_ != nullptr && "Guard already ended");
    array_->journal_state_.store(detail::kJournalClean, std::memory_order_release);
    std::exchange(array_, nullptr)->mutex_.unlock();
  }
  void abandon() {
    assert(array_ != nullptr && "Guard already ended");
    array_->restore_from_journal();
    array_->journal_state_.store(detail::kJournalClean, std::memory_order_release);
    std::exchange(array_, nullptr)->mutex_.unlock();
  }

 private:
  friend class Array;
  Guard(Array* array, bool recovered)
      : array_(array), recovered_(recovered), uncaught_(std::uncaught_exceptions()) {}

  Array* array_;
  bool recovered_;
  int uncaught_;
};

template <class T, std::size_t N>
Result<Array<T, N>*> Array<T, N>::init(void* memory, const T& fill) {
  detail::check_element_type<T>();
  static_assert(std::is_standard_layout_v<Array>, "Array lives in shared memory");
  static_assert(offsetof(Array, header_) == 0, "the header comes first");
  assert(reinterpret_cast<std::uintptr_t>(memory) % alignof(Array) == 0 &&
         "Array::init: misaligned memory");
  auto* array = new (memory) Array();
  if (auto st = array->mutex_.init(); !st) {
    return Error{"value", static_cast<int>(SharedValueError::kSystem), st.error().message,
                 st.error().sys_errno};
  }
  for (std::size_t i = 0; i < N; ++i) array->set(i, fill);
  detail::finish_init(array);
  return array;
}

template <class T, std::size_t N>
bool Array<T, N>::lock_and_repair() {
  auto died = mutex_.lock();
  if (!died) detail::lock_failed(compiler_type_name<Array>(), died.error());
  if (*died && journal_state_.load(std::memory_order_acquire) == detail::kJournalSaved) {
    restore_from_journal();
    journal_state_.store(detail::kJournalClean, std::memory_order_release);
    return true;
  }
  return false;
}

template <class T, std::size_t N>
typename Array<T, N>::Guard Array<T, N>::get_lock() {
  const bool recovered = lock_and_repair();
  for (std::size_t i = 0; i < N; ++i) journal_old_[i] = get(i);
  // Release: whoever sees kSaved after our death also sees the complete journal.
  journal_state_.store(detail::kJournalSaved, std::memory_order_release);
  return Guard(this, recovered);
}

template <class T, std::size_t N>
T Array<T, N>::load(std::size_t i, std::memory_order order) const {
  assert(i < N && "Array index out of range");
  if constexpr (kLockFree) {
    return elements_[i].load(order);
  } else {
    auto* self = const_cast<Array*>(this);
    self->lock_and_repair();
    const T copy = elements_[i];
    self->mutex_.unlock();
    return copy;
  }
}

template <class T, std::size_t N>
void Array<T, N>::store(std::size_t i, const T& value, std::memory_order order) {
  assert(i < N && "Array index out of range");
  if constexpr (kLockFree) {
    elements_[i].store(value, order);
  } else {
    Guard guard = get_lock();
    guard.set(i, value);
  }
}

template <class T, std::size_t N>
std::array<T, N> Array<T, N>::snapshot() const {
  auto* self = const_cast<Array*>(this);
  self->lock_and_repair();
  std::array<T, N> copy;
  for (std::size_t i = 0; i < N; ++i) copy[i] = get(i);
  self->mutex_.unlock();
  return copy;
}

// --- RawValue, RawArray -------------------------------------------------------------------

// A lock-free value with no lock at all (multiprocessing.RawValue).
template <class T>
class RawValue {
 public:
  static_assert(std::atomic<T>::is_always_lock_free,
                "RawValue<T> has no lock: std::atomic<T> must be lock-free; use Value<T> and "
                "get_lock() for larger types");

  static Result<RawValue*> init(void* memory, const T& initial = T{}) {
    detail::check_element_type<T>();
    static_assert(std::is_standard_layout_v<RawValue>, "RawValue lives in shared memory");
    static_assert(offsetof(RawValue, header_) == 0, "the header comes first");
    auto* value = new (memory) RawValue();
    value->data_.store(initial, std::memory_order_relaxed);
    detail::finish_init(value);
    return value;
  }
  static Result<RawValue*> attach(void* memory) { return detail::attach_object<RawValue>(memory); }

  RawValue(const RawValue&) = delete;
  RawValue& operator=(const RawValue&) = delete;

  [[nodiscard]] T load(std::memory_order order = std::memory_order_seq_cst) const {
    return data_.load(order);
  }
  void store(const T& value, std::memory_order order = std::memory_order_seq_cst) {
    data_.store(value, order);
  }
  T exchange(const T& value, std::memory_order order = std::memory_order_seq_cst) {
    return data_.exchange(value, order);
  }
  bool compare_exchange_strong(T& expected, const T& desired,
                               std::memory_order order = std::memory_order_seq_cst) {
    return data_.compare_exchange_strong(expected, desired, order);
  }
  T fetch_add(T delta, std::memory_order order = std::memory_order_seq_cst)
    requires std::is_integral_v<T>
  {
    return data_.fetch_add(delta, order);
  }
  T fetch_sub(T delta, std::memory_order order = std::memory_order_seq_cst)
    requires std::is_integral_v<T>
  {
    return data_.fetch_sub(delta, order);
  }

 private:
  template <class Object>
  friend Result<Object*> detail::attach_object(void* memory);
  template <class Object>
  friend void detail::finish_init(Object* object);
  RawValue() = default;

  detail::SharedValueHeader header_;
  std::atomic<T> data_{};
};

// Lock-free elements with no lock at all (multiprocessing.RawArray).
template <class T, std::size_t N>
class RawArray {
 public:
  static_assert(std::atomic<T>::is_always_lock_free,
                "RawArray<T, N> has no lock: std::atomic<T> must be lock-free; use Array<T, N> "
                "and get_lock() for larger types");

  static Result<RawArray*> init(void* memory, const T& fill = T{}) {
    detail::check_element_type<T>();
    static_assert(std::is_standard_layout_v<RawArray>, "RawArray lives in shared memory");
    static_assert(offsetof(RawArray, header_) == 0, "the header comes first");
    auto* array = new (memory) RawArray();
    for (auto& e : array->elements_) e.store(fill, std::memory_order_relaxed);
    detail::finish_init(array);
    return array;
  }
  static Result<RawArray*> attach(void* memory) { return detail::attach_object<RawArray>(memory); }

  RawArray(const RawArray&) = delete;
  RawArray& operator=(const RawArray&) = delete;

  static constexpr std::size_t size() { return N; }
  [[nodiscard]] T load(std::size_t i, std::memory_order order = std::memory_order_seq_cst) const {
    assert(i < N && "RawArray index out of range");
    return elements_[i].load(order);
  }
  void store(std::size_t i, const T& value, std::memory_order order = std::memory_order_seq_cst) {
    assert(i < N && "RawArray index out of range");
    elements_[i].store(value, order);
  }
  T fetch_add(std::size_t i, T delta, std::memory_order order = std::memory_order_seq_cst)
    requires std::is_integral_v<T>
  {
    assert(i < N && "RawArray index out of range");
    return elements_[i].fetch_add(delta, order);
  }
  T fetch_sub(std::size_t i, T delta, std::memory_order order = std::memory_order_seq_cst)
    requires std::is_integral_v<T>
  {
    assert(i < N && "RawArray index out of range");
    return elements_[i].fetch_sub(delta, order);
  }

 private:
  template <class Object>
  friend Result<Object*> detail::attach_object(void* memory);
  template <class Object>
  friend void detail::finish_init(Object* object);
  RawArray() = default;

  detail::SharedValueHeader header_;
  std::array<std::atomic<T>, N> elements_{};
};

}  // namespace millrace::ipc
