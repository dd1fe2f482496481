// ManagerClient and the typed proxies: how a process uses the run's shared objects (dict, list,
// value, counter, lock, event, queue) served by the manager, like Python's Manager() proxies.
//
// Who calls what:
//  - Any process of the run that can read the run's secret file: ManagerClient::connect().
//  - Any thread of that process: every member of ManagerClient and of the proxies. A client
//    keeps a small pool of connections ("lanes"): a call takes a free lane (or opens one) for
//    its duration, so a thread parked in a blocking call (a lock acquire, a queue get, an event
//    wait) never holds up another thread of the process.
//  - Not a child of the process after fork(): the lanes belong to the parent; a child
//    connects its own client (a call from a child is an Error, kForked).
//
// Invariants:
//  - Every call is one Request, atomic on the server. A call made while the manager is down
//    (killed, restarting) reconnects by itself and retries until the client's call timeout,
//    then returns an Error (kUnreachable) that names the socket. A retried call that changes
//    state is applied exactly once (the server keeps every reply the lane has not acknowledged).
//  - A lock is held by the client, not the thread: it is released when the client's last
//    connection closes (the process died) and when its lease ends, whichever comes first.
//    Its holder learns that at release() (kLockLost) or from held().
//  - A proxy is a name plus a pointer to its client: cheap to copy, valid while the client
//    lives. Objects are created by the first call that changes them; reading a missing one
//    reads as empty (nullopt, 0, false, size 0).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipc/codec.hpp"
#include "ipc/manager_protocol.hpp"
#include "ipc/result.hpp"

namespace millrace::ipc {

template <Transferable V>
class DictProxy;
template <Transferable V>
class ListProxy;
template <Transferable V>
class ValueProxy;
template <Transferable V>
class QueueProxy;
class CounterProxy;
class LockProxy;
class EventProxy;
class WriteBatch;
class CallPipeline;

inline constexpr std::chrono::milliseconds kDefaultLockLease{30000};
inline constexpr std::size_t kDefaultPipelineDepth = 64;

// A lock held by this client. `token` is a fencing token: every grant of any lock gets a
// larger one, so a resource can refuse a writer whose lease was taken over.
struct LockLease {
  std::string lock;
  std::uint64_t token = 0;
  std::chrono::milliseconds lease{0};
  std::chrono::steady_clock::time_point expires{};  // estimate: the lease measured from the call
};

class ManagerClient {
 public:
  // Connects to the manager at `socket_path`, authenticating with the secret in
  // `secret_path`. Waits up to `timeout` for a manager that is starting; `timeout` is also the
  // call timeout (see set_call_timeout). Errors: kSecret, kUnreachable, kAuthFailed, kVersion.
  static Result<ManagerClient> connect(const std::filesystem::path& socket_path,
                                       const std::filesystem::path& secret_path,
                                       std::chrono::milliseconds timeout);

  ManagerClient(ManagerClient&& other) noexcept;
  ManagerClient& operator=(ManagerClient&& other) noexcept;
  ManagerClient(const ManagerClient&) = delete;
  ManagerClient& operator=(const ManagerClient&) = delete;
  ~ManagerClient();

  // How long a call may try to reach a manager that is down before it fails (a blocking op
  // gets its own timeout on top).
  void set_call_timeout(std::chrono::milliseconds timeout);
  [[nodiscard]] std::chrono::milliseconds call_timeout() const;
  [[nodiscard]] const std::filesystem::path& socket_path() const;
  // Connections currently open (one per thread that had a call in flight at once, and one per
  // live CallPipeline).
  [[nodiscard]] std::size_t lanes() const;

  template <Transferable V>
  DictProxy<V> dict(std::string name) {
    return DictProxy<V>(*this, std::move(name));
  }
  template <Transferable V>
  ListProxy<V> list(std::string name) {
    return ListProxy<V>(*this, std::move(name));
  }
  template <Transferable V>
  ValueProxy<V> value(std::string name) {
    return ValueProxy<V>(*this, std::move(name));
  }
  template <Transferable V>
  QueueProxy<V> queue(std::string name, std::size_t capacity) {
    return QueueProxy<V>(*this, std::move(name), capacity);
  }
  CounterProxy counter(std::string name);
  LockProxy lock(std::string name);
  EventProxy event(std::string name);

  // Applies every change in `batch` as one atomic request (one round trip), then clears it.
  // Nothing is applied when any change is refused.
  Status write(WriteBatch& batch);

  // Calls sent without waiting for each reply, on a lane of their own; `depth` (clamped to 1 ..
  // kMaxPipelineDepth) is how many may be unanswered at once.
  CallPipeline pipeline(std::size_t depth = kDefaultPipelineDepth);

  // The raw layer under the proxies: runs `ops` as one Request and returns one OpReply per
  // op. `park` is how long the server may park a blocking op (it extends the call's
  // deadline). `ops` is left as it was given, except that a blocking op's timeout_ms is
  // shortened by the time spent reconnecting.
  Result<std::vector<OpReply>> call(std::vector<Op>& ops, std::chrono::milliseconds park);
  // One op; its per-op outcome (not found, timeout, ...) is in the OpReply.
  Result<OpReply> call_one(const Op& op,
                           std::chrono::milliseconds park = std::chrono::milliseconds(0));

 private:
  friend class CallPipeline;
  struct Impl;
  explicit ManagerClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

namespace detail {

Op make_op(OpCode code, const std::string& object);

template <Transferable V>
Op make_typed_read(OpCode code, const std::string& object) {
  Op op = make_op(code, object);
  op.type_tag = transfer_tag<V>();
  op.type_version = transfer_version<V>();
  return op;
}

// The Error for an op the server did not do as asked: names the op, object, key, and for a
// type mismatch both types (`wanted` is the type the caller decodes).
Error op_error(const Op& op, const OpReply& reply, std::string_view wanted = {});

// Decodes a value the server returned for `op`.
template <Transferable V>
Result<V> decode_value(const Op& op, const Bytes& bytes) {
  auto value = decode_from<V>(as_byte_span(bytes));
  if (!value) {
    return Error{"manager", static_cast<int>(ManagerError::kTypeMismatch),
                 "manager " + std::string(op_name(op.code)) + " on '" + op.object +
                     "': " + value.error().what(),
                 0};
  }
  return value;
}

}  // namespace detail

// --- Proxies --------------------------------------------------------------------------------

// A dict of string keys to values of type V (Python's Manager().dict()). Other value types
// may live under other keys of the same dict; reading a key as the wrong type is an Error
// (kTypeMismatch) naming both types.
template <Transferable V>
class DictProxy {
 public:
  DictProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  Status set(std::string_view key, const V& value) {
    Op op = detail::make_op(OpCode::kDictSet, name_);
    op.key = key;
    encode_value(value, op.value);
    return expect_ok(std::move(op));
  }
  // nullopt when the key is absent.
  Result<std::optional<V>> get(std::string_view key) {
    Op op = detail::make_typed_read<V>(OpCode::kDictGet, name_);
    op.key = key;
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status == OpStatus::kNotFound) return std::optional<V>{};
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply, transfer_name<V>());
    auto value = detail::decode_value<V>(op, reply->value);
    if (!value) return value.error();
    return std::optional<V>(std::move(*value));
  }
  // True when the key was there.
  Result<bool> erase(std::string_view key) {
    Op op = detail::make_op(OpCode::kDictErase, name_);
    op.key = key;
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return reply->flag;
  }
  // Sorted.
  Result<std::vector<std::string>> keys() {
    Op op = detail::make_op(OpCode::kDictKeys, name_);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return std::move(reply->keys);
  }
  Result<std::size_t> size() {
    Op op = detail::make_op(OpCode::kDictSize, name_);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return static_cast<std::size_t>(reply->number);
  }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  Status expect_ok(Op op) {
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return ok_status();
  }

  ManagerClient* client_;
  std::string name_;
};

// An append-only list (Python's Manager().list() without insert/remove). Indexes may be
// negative (from the end), as in Python.
template <Transferable V>
class ListProxy {
 public:
  ListProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  // Returns the list's new size.
  Result<std::size_t> append(const V& value) {
    Op op = detail::make_op(OpCode::kListAppend, name_);
    encode_value(value, op.value);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return static_cast<std::size_t>(reply->number);
  }
  // Appends only while the list holds fewer than `max_size` items (checked and appended
  // atomically); true when it appended.
  Result<bool> append_if_shorter(const V& value, std::size_t max_size) {
    assert(max_size > 0 && "append_if_shorter needs a limit of at least 1");
    Op op = detail::make_op(OpCode::kListAppend, name_);
    encode_value(value, op.value);
    op.number = static_cast<std::int64_t>(max_size);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return reply->flag;
  }
  // Error kOutOfRange outside the list.
  Result<V> get(std::int64_t index) {
    Op op = detail::make_typed_read<V>(OpCode::kListGet, name_);
    op.number = index;
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply, transfer_name<V>());
    return detail::decode_value<V>(op, reply->value);
  }
  Result<std::size_t> size() {
    Op op = detail::make_op(OpCode::kListSize, name_);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return static_cast<std::size_t>(reply->number);
  }
  // Items [start, stop), clamped to the list like Python's list[start:stop].
  Result<std::vector<V>> slice(std::int64_t start, std::int64_t stop) {
    Op op = detail::make_typed_read<V>(OpCode::kListSlice, name_);
    op.number = start;
    op.number2 = stop;
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply, transfer_name<V>());
    std::vector<V> out;
    out.reserve(reply->values.size());
    for (const Bytes& bytes : reply->values) {
      auto value = detail::decode_value<V>(op, bytes);
      if (!value) return value.error();
      out.push_back(std::move(*value));
    }
    return out;
  }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  ManagerClient* client_;
  std::string name_;
};

// One value (Python's Manager().Value() / Namespace attribute).
template <Transferable V>
class ValueProxy {
 public:
  ValueProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  Status set(const V& value) {
    Op op = detail::make_op(OpCode::kValueSet, name_);
    encode_value(value, op.value);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return ok_status();
  }
  // nullopt until the first set().
  Result<std::optional<V>> get() {
    Op op = detail::make_typed_read<V>(OpCode::kValueGet, name_);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status == OpStatus::kNotFound) return std::optional<V>{};
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply, transfer_name<V>());
    auto value = detail::decode_value<V>(op, reply->value);
    if (!value) return value.error();
    return std::optional<V>(std::move(*value));
  }
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  ManagerClient* client_;
  std::string name_;
};

// A 64-bit counter with atomic add (what Python's `Value += 1` is not).
class CounterProxy {
 public:
  CounterProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  // Returns the new value.
  Result<std::int64_t> add(std::int64_t delta = 1);
  Result<std::int64_t> get();
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  ManagerClient* client_;
  std::string name_;
};

// A mutual-exclusion lock that a dead holder cannot keep: released when the holder's
// connections close and when its lease ends.
class LockProxy {
 public:
  LockProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  // Waits up to `timeout` (0: try once) for the lock; the lease starts when it is granted.
  // Errors: kTimeout when another client held it all along.
  Result<LockLease> acquire(std::chrono::milliseconds timeout,
                            std::chrono::milliseconds lease = kDefaultLockLease);
  // Error kLockLost when the lease had already ended (expired, or taken over after this
  // client's connections closed): whatever the lock protected may have been changed by
  // another holder meanwhile.
  Status release(const LockLease& lease);
  // Whether `lease` still holds the lock, asked of the manager.
  Result<bool> held(const LockLease& lease);
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  ManagerClient* client_;
  std::string name_;
};

// A flag processes wait on (Python's Manager().Event()).
class EventProxy {
 public:
  EventProxy(ManagerClient& client, std::string name) : client_(&client), name_(std::move(name)) {}

  Status set();
  Status clear();
  Result<bool> is_set();
  // True when the event is set (at once or within `timeout`), false when the timeout passed.
  Result<bool> wait(std::chrono::milliseconds timeout);
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  ManagerClient* client_;
  std::string name_;
};

// A bounded FIFO queue (Python's Manager().Queue(maxsize)). Blocking put/get wait on the
// server without holding up other clients. The first call that creates the queue fixes its
// capacity; later proxies with another capacity use the existing one.
template <Transferable V>
class QueueProxy {
 public:
  QueueProxy(ManagerClient& client, std::string name, std::size_t capacity)
      : client_(&client), name_(std::move(name)), capacity_(capacity) {
    assert(capacity > 0 && "a queue needs a capacity of at least 1");
  }

  // Waits up to `timeout` (0: try once) for room. Error kTimeout when the queue stayed full.
  Status put(const V& value, std::chrono::milliseconds timeout) {
    Op op = detail::make_op(OpCode::kQueuePut, name_);
    encode_value(value, op.value);
    op.number = static_cast<std::int64_t>(capacity_);
    op.timeout_ms = timeout.count();
    auto reply = client_->call_one(op, timeout);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return ok_status();
  }
  // Waits up to `timeout` (0: try once) for an item. Error kTimeout when the queue stayed
  // empty; kTypeMismatch (and the item stays queued) when the head item is another type.
  Result<V> get(std::chrono::milliseconds timeout) {
    Op op = detail::make_typed_read<V>(OpCode::kQueueGet, name_);
    op.number = static_cast<std::int64_t>(capacity_);
    op.timeout_ms = timeout.count();
    auto reply = client_->call_one(op, timeout);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply, transfer_name<V>());
    return detail::decode_value<V>(op, reply->value);
  }
  Result<std::size_t> size() {
    Op op = detail::make_op(OpCode::kQueueSize, name_);
    auto reply = client_->call_one(op);
    if (!reply) return reply.error();
    if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
    return static_cast<std::size_t>(reply->number);
  }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  ManagerClient* client_;
  std::string name_;
  std::size_t capacity_;
};

// Changes collected locally and applied by ManagerClient::write() in one atomic round trip,
// like leveldb's WriteBatch: many counter adds or dict sets for the price of one call.
class WriteBatch {
 public:
  void counter_add(std::string_view counter, std::int64_t delta = 1);
  void dict_erase(std::string_view dict, std::string_view key);
  template <Transferable V>
  void dict_set(std::string_view dict, std::string_view key, const V& value) {
    Op& op = next(OpCode::kDictSet, dict);
    op.key = key;
    encode_value(value, op.value);
  }
  template <Transferable V>
  void list_append(std::string_view list, const V& value) {
    encode_value(value, next(OpCode::kListAppend, list).value);
  }
  template <Transferable V>
  void value_set(std::string_view value_name, const V& value) {
    encode_value(value, next(OpCode::kValueSet, value_name).value);
  }

  [[nodiscard]] std::size_t size() const { return used_; }
  [[nodiscard]] bool empty() const { return used_ == 0; }
  // Forgets the changes; keeps the storage for the next batch.
  void clear() { used_ = 0; }

 private:
  friend class ManagerClient;
  Op& next(OpCode code, std::string_view object);

  std::vector<Op> ops_;  // ops_[0, used_) are the batch; the rest is reusable storage
  std::size_t used_ = 0;
};

// Calls sent without waiting for each reply, like Redis pipelining: a run of calls pays for
// one round trip (and one system call each way) per batch instead of one per call. Unlike a
// WriteBatch, every call is its own Request: atomic by itself, applied exactly once (also
// when the manager restarts mid-flight: unanswered calls are resent, and the server answers
// a resent mutation from memory), and it may read. Replies come back in the order of the
// calls. A resent read runs again, so it may see a write submitted after it.
//
// Who calls what: one thread at a time, while its ManagerClient lives (like a proxy). It holds
// one lane of its client while it lives. In a child forked meanwhile, every call is an Error
// (kForked) and dropping it only closes the child's copy of the socket.
// Blocking ops (lock acquire, event wait, queue put/get) are refused: they would hold up
// every call behind them; use the proxies.
class CallPipeline {
 public:
  CallPipeline(CallPipeline&& other) noexcept;
  CallPipeline& operator=(CallPipeline&& other) noexcept;
  CallPipeline(const CallPipeline&) = delete;
  CallPipeline& operator=(const CallPipeline&) = delete;
  // Waits for the calls in flight (up to the call timeout), so everything submitted is applied.
  ~CallPipeline();

  // Queues `op` as one Request. Once `depth` calls are unanswered, sends what is queued and
  // reads replies until half are answered. Errors: kBadRequest (a blocking op), kTooLarge;
  // kUnreachable when the manager stayed unreachable for the call timeout, after which the
  // pipeline is broken: every later call returns that Error, and whether the unanswered
  // calls were applied is unknown (as for a synchronous call that times out).
  Status submit(const Op& op);
  Status counter_add(std::string_view counter, std::int64_t delta = 1);
  template <Transferable V>
  Status dict_set(std::string_view dict, std::string_view key, const V& value) {
    Op& op = scratch(OpCode::kDictSet, dict);
    op.key = key;
    encode_value(value, op.value);
    return submit(op);
  }
  // Its reply holds the value: read it with value_of<V>().
  template <Transferable V>
  Status dict_get(std::string_view dict, std::string_view key) {
    Op& op = scratch(OpCode::kDictGet, dict);
    op.key = key;
    op.type_tag = transfer_tag<V>();
    op.type_version = transfer_version<V>();
    return submit(op);
  }

  // Sends what is queued and waits for every reply. Returns one OpReply per call submitted
  // since the last flush, in order (a call the server refused as a whole has status kFailed
  // and says why), and forgets them.
  Result<std::vector<OpReply>> flush();
  // Calls submitted whose replies flush() has not returned yet.
  [[nodiscard]] std::size_t pending() const;
  // After a failure: the replies that had arrived before it, in order, for the first calls
  // since the last flush (those were applied; whether the calls after them were is unknown).
  // Empty otherwise. Forgets them.
  std::vector<OpReply> take_answered();

  // The value in the reply to a dict_get (or any read of one value): nullopt when absent.
  template <Transferable V>
  static Result<std::optional<V>> value_of(const OpReply& reply) {
    if (reply.status == OpStatus::kNotFound) return std::optional<V>{};
    Op op;
    op.code = OpCode::kDictGet;
    if (reply.status != OpStatus::kOk) return detail::op_error(op, reply, transfer_name<V>());
    auto value = detail::decode_value<V>(op, reply.value);
    if (!value) return value.error();
    return std::optional<V>(std::move(*value));
  }

 private:
  friend class ManagerClient;
  struct State;
  explicit CallPipeline(std::unique_ptr<State> state);
  Op& scratch(OpCode code, std::string_view object);

  std::unique_ptr<State> state_;
};

// --- Pipeline helpers -----------------------------------------------------------------------

// The settings a running pipeline follows, changed by `millrace set`. They live in the dict
// "settings" under "load.rate_limit" (double, records/s, 0 = unlimited) and
// "pipeline.paused" (bool).
inline constexpr std::string_view kSettingsDict = "settings";
inline constexpr std::string_view kRateLimitKey = "load.rate_limit";
inline constexpr std::string_view kPausedKey = "pipeline.paused";

struct LiveSettings {
  double rate_limit = 0;
  bool paused = false;
};

// Reads both settings in one round trip; a setting nobody has set reads as in `defaults`.
Result<LiveSettings> read_live_settings(ManagerClient& client, const LiveSettings& defaults = {});

// Reject samples: the dict "rejects" maps each reason to the name of the list holding its
// samples ("rejects/REASON").
inline constexpr std::string_view kRejectsDict = "rejects";
std::string reject_list_name(std::string_view reason);

// Keeps `record_text` as a sample of `reason` unless `per_reason` samples are kept already
// (checked atomically on the manager, so many workers together keep at most `per_reason`).
// Once a reason is full this process stops asking the manager about it.
Status sample_reject(ManagerClient& client, std::string_view reason, std::string_view record_text,
                     std::size_t per_reason = 5);

}  // namespace millrace::ipc
