// The manager server.
//
// Why one thread and an epoll loop: every request must be atomic, and a single thread makes
// each one atomic without a lock; the work per request (a hash lookup and a small copy) is far
// below the cost of the socket round trip, so one core is not the limit. Blocking ops are
// parked on their object (a FIFO of waiters) and answered by whatever request makes them
// possible, or by the timer at their timeout; the loop never waits for one client.
//
// Why a journal plus snapshot, and not a snapshot alone or a database:
//  - The fault model is a killed process, not a lost machine: data that write() has handed to
//    the kernel survives a SIGKILL, so the journal needs no fsync and an append costs one
//    write() per loop iteration (all changes of the iteration together), not per request.
//  - A change is journaled before its reply is sent (write-ahead), so every change a client
//    was told about survives; a change whose reply was lost is found again by the retry (the
//    per-lane seq memo is journaled with it), so a retried counter add is not applied twice.
//  - Rewriting a snapshot per change would cost O(state) per request; a journal alone grows
//    forever. So the journal is compacted into one snapshot at start-up (which also drops a
//    record torn by a kill mid-write) and whenever it outgrows both a floor and twice the last
//    snapshot, which keeps the file within a small multiple of the live state.
//  - Records are effects (counter = 42, pop the queue's head), not requests, so replay needs
//    none of the request logic and is idempotent per record. Each record carries a checksum:
//    a torn tail is recognised and dropped, never half-applied.
//  - Locks survive a restart with their lease: while the manager is down nobody can see the
//    holder die, so the lease bounds how long a dead holder keeps the lock. Parked ops are not
//    journaled: their clients resend them after reconnecting.
// SQLite would give the same guarantees at the price of a dependency in a process that must
// start in milliseconds and of a page write per change; the journal is ~300 lines.
//
// State file: "MRMGRST1" then records: u32 length, u64 checksum, codec message. The
// first record is a State (snapshot), the rest JournalRecords.
#include "launcher/manager_server.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ipc/codec.hpp"
#include "ipc/manager_protocol.hpp"
#include "ipc/posix_call.hpp"
#include "launcher/commands.hpp"

namespace millrace::launcher {
namespace {

using SteadyClock = std::chrono::steady_clock;
using ipc::Bytes;
using ipc::ManagerError;
using ipc::ObjectKind;
using ipc::Op;
using ipc::OpCode;
using ipc::OpReply;
using ipc::OpStatus;

constexpr std::size_t kMaxHelloSize = 4096;  // what an unauthenticated peer may make us buffer
constexpr std::size_t kMaxValueSize = ipc::kMaxFrameSize - 4096;  // so any one value's reply fits
constexpr std::size_t kMaxNameSize = 1024;
constexpr std::size_t kMaxKeySize = 64 * 1024;
constexpr std::size_t kMaxConnections = 4096;
// What a connection may have queued behind a parked request: one more request of any size.
constexpr std::size_t kMaxHeldInput = ipc::kFramePrefixSize + ipc::kMaxFrameSize;
// How long accepting pauses when the process is out of file descriptors.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
constexpr std::int64_t kMaxQueueCapacity = std::int64_t{1} << 20;
constexpr std::int64_t kMaxLeaseMs = 24LL * 3600 * 1000;
constexpr std::int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;
constexpr auto kHelloTimeout = std::chrono::seconds(5);
constexpr std::int64_t kMemoKeepNs = 10LL * 60 * 1000 * 1000 * 1000;  // forget idle lanes after 10 min
constexpr char kStateMagic[8] = {'M', 'R', 'M', 'G', 'R', 'S', 'T', '1'};
constexpr std::size_t kRecordPrefix = 4 + 8;

// The loop's spin after serving: the same bounds and back-off as the client's (see
// spin_for_frame() in ipc/manager_client.cpp).
constexpr auto kSpinLimit = std::chrono::microseconds(100);
constexpr auto kSpinAlone = std::chrono::microseconds(15);
constexpr std::uint32_t kSpinSkip = 255;
constexpr std::uint32_t kSpinMaxMisses = 8;  // (1 << 8) - 1 == kSpinSkip

bool spinning_can_help() {
  static const bool many_cpus = ::sysconf(_SC_NPROCESSORS_ONLN) > 1;
  return many_cpus;
}

volatile sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

void log_line(const std::string& text) { std::fprintf(stderr, "millrace manager: %s\n", text.c_str()); }

Error state_error(std::string message, int err = 0) {
  return Error{"manager", static_cast<int>(ManagerError::kState), std::move(message), err};
}

std::int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --- Persistent state ------------------------------------------------------------------------

enum class EffectCode : std::uint8_t {
  kCreate = 1,  // kind, number = queue capacity
  kDictSet,
  kDictErase,
  kListAppend,
  kValueSet,
  kCounterSet,  // number
  kEventSet,    // number: 0 or 1
  kQueuePush,
  kQueuePop,
  kLockGrant,  // client, token, lease_ms, wall_ns = lease end
  kLockFree,
};

struct Effect {
  static constexpr std::string_view kTransferName = "millrace.manager.Effect";
  EffectCode code = EffectCode::kCreate;
  std::string object;
  ObjectKind kind = ObjectKind::kDict;
  std::string key;
  Bytes value;
  std::int64_t number = 0;
  std::uint64_t client = 0;
  std::uint64_t token = 0;
  std::int64_t lease_ms = 0;
  std::int64_t wall_ns = 0;

  // Most fields are at their defaults for most effects: a bitmask says which follow.
  template <class A>
  void save(A& ar) const {
    const std::uint32_t present =
        (key.empty() ? 0u : 1u) | (value.empty() ? 0u : 2u) | (number == 0 ? 0u : 4u) |
        (client == 0 ? 0u : 8u) | (token == 0 ? 0u : 16u) | (lease_ms == 0 ? 0u : 32u) |
        (wall_ns == 0 ? 0u : 64u);
    ar(code, object, kind, present);
    ipc::detail::save_if(ar, present, 1, key);
    ipc::detail::save_if(ar, present, 2, value);
    ipc::detail::save_if(ar, present, 4, number);
    ipc::detail::save_if(ar, present, 8, client);
    ipc::detail::save_if(ar, present, 16, token);
    ipc::detail::save_if(ar, present, 32, lease_ms);
    ipc::detail::save_if(ar, present, 64, wall_ns);
  }
  template <class A>
  void load(A& ar) {
    std::uint32_t present = 0;
    ar(code, object, kind, present);
    ipc::detail::refuse_unknown_fields(present, 127);
    ipc::detail::load_if(ar, present, 1, key);
    ipc::detail::load_if(ar, present, 2, value);
    ipc::detail::load_if(ar, present, 4, number);
    ipc::detail::load_if(ar, present, 8, client);
    ipc::detail::load_if(ar, present, 16, token);
    ipc::detail::load_if(ar, present, 32, lease_ms);
    ipc::detail::load_if(ar, present, 64, wall_ns);
  }
};

// A state-changing request of a lane and its reply: a resend of that seq gets the reply again
// instead of a second application.
struct LaneMemo {
  std::uint64_t seq = 0;
  ipc::Reply reply;
  std::int64_t wall_ns = 0;

  template <class A>
  void serialize(A& ar) {
    ar(seq, reply, wall_ns);
  }
};

// The memos a lane's client may still need, oldest first: those above the lane's `acked`
// mark, so a synchronous client keeps one and a pipelining one at most kMaxPipelineDepth.
struct LaneMemos {
  std::deque<LaneMemo> recent;

  void forget_up_to(std::uint64_t acked) {
    while (!recent.empty() && recent.front().seq <= acked) recent.pop_front();
  }
  void add(LaneMemo&& memo) {
    recent.push_back(std::move(memo));
    if (recent.size() > ipc::kMaxPipelineDepth) recent.pop_front();  // the client broke the limit
  }
  [[nodiscard]] const LaneMemo* find(std::uint64_t seq) const {
    for (const LaneMemo& m : recent) {
      if (m.seq == seq) return &m;
    }
    return nullptr;
  }
  [[nodiscard]] std::int64_t last_wall_ns() const {
    return recent.empty() ? 0 : recent.back().wall_ns;
  }

  template <class A>
  void serialize(A& ar) {
    ar(recent);
  }
};

struct Object {
  ObjectKind kind = ObjectKind::kDict;
  std::unordered_map<std::string, Bytes> dict;  // keys() sorts: it is the rare call
  std::deque<Bytes> items;     // list or queue
  std::optional<Bytes> value;  // value
  std::int64_t number = 0;     // counter value; event flag; queue capacity
  std::uint64_t holder = 0;    // lock: the holder's client id, 0 when free
  std::uint64_t token = 0;
  std::int64_t lease_ms = 0;
  std::int64_t lease_end_wall_ns = 0;
  // Not persisted:
  SteadyClock::time_point lease_end{};
  std::deque<std::uint64_t> waiters;  // parked ops, oldest first

  template <class A>
  void serialize(A& ar) {
    ar(kind, dict, items, value, number, holder, token, lease_ms, lease_end_wall_ns);
  }
};

using LaneKey = std::pair<std::uint64_t, std::uint32_t>;  // (client id, lane)

struct State {
  static constexpr std::string_view kTransferName = "millrace.manager.State";
  static constexpr std::uint32_t kTransferVersion = 2;  // 2: a window of memos per lane
  std::uint64_t next_token = 1;
  std::unordered_map<std::string, Object> objects;
  std::map<LaneKey, LaneMemos> lanes;

  template <class A>
  void serialize(A& ar) {
    ar(next_token, objects, lanes);
  }
};

struct JournalRecord {
  static constexpr std::string_view kTransferName = "millrace.manager.JournalRecord";
  std::vector<Effect> effects;
  bool has_memo = false;
  LaneKey lane{};
  LaneMemo memo;

  template <class A>
  void serialize(A& ar) {
    ar(effects, has_memo, lane, memo);
  }
};

// The checksum that tells a record torn by a kill from a whole one. Not a defence against an
// adversary (the file is private), so it is a cheap multiply-rotate hash of 8-byte words in the
// manner of xxHash64, not SipHash: it runs over every byte the manager journals.
std::uint64_t record_checksum(std::span<const std::byte> data) {
  constexpr std::uint64_t kP1 = 0x9E3779B185EBCA87ULL;
  constexpr std::uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
  std::uint64_t h = 0x27D4EB2F165667C5ULL ^ (data.size() * kP1);
  std::size_t i = 0;
  for (; i + 8 <= data.size(); i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, data.data() + i, 8);
    h ^= std::rotl(w * kP2, 31) * kP1;
    h = std::rotl(h, 27) * kP1 + 0x85EBCA77C2B2AE63ULL;
  }
  for (; i < data.size(); ++i) {
    h ^= static_cast<std::uint64_t>(data[i]) * kP1;
    h = std::rotl(h, 11) * kP2;
  }
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  return h;
}

template <ipc::Transferable T>
void append_record(const T& message, std::vector<std::byte>& out) {
  const std::size_t start = out.size();
  const auto length = static_cast<std::uint32_t>(ipc::append_after_prefix(message, out, kRecordPrefix));
  const std::uint64_t sum =
      record_checksum(std::span<const std::byte>(out.data() + start + kRecordPrefix, length));
  std::memcpy(out.data() + start, &length, sizeof length);
  std::memcpy(out.data() + start + 4, &sum, sizeof sum);
}

// --- Connections and parked ops --------------------------------------------------------------

struct Connection {
  std::uint64_t id = 0;
  int fd = -1;
  bool ready = false;  // authenticated
  ipc::Nonce nonce{};
  std::uint64_t client = 0;
  std::uint32_t lane = 0;
  pid_t pid = 0;
  uid_t uid = 0;
  SteadyClock::time_point hello_deadline{};
  std::vector<std::byte> in;
  std::size_t in_used = 0;
  std::vector<std::byte> out;
  std::size_t out_sent = 0;
  std::uint64_t parked = 0;  // its parked waiter, 0 when none
  std::uint32_t watched = 0; // the epoll events it is registered for
  bool queued = false;       // in Server::sending_
  bool closing = false;      // close once `out` is sent
  bool dead = false;         // close at the end of this loop iteration

  [[nodiscard]] bool output_pending() const { return out_sent < out.size(); }
};

struct Waiter {
  std::uint64_t conn = 0;
  std::uint64_t seq = 0;
  Op op;
  SteadyClock::time_point deadline{};
};

std::string describe_peer(const Connection& c) {
  return "pid " + std::to_string(c.pid) + ", uid " + std::to_string(c.uid);
}

// (type version << 32 | type tag) of a stored value, as OpStatus::kTypeMismatch reports it.
std::int64_t type_word(const Bytes& value) {
  auto header = ipc::read_header(ipc::as_byte_span(value));
  if (!header) return 0;
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(header->type_version) << 32) |
                                   header->type_tag);
}

bool type_matches(const Op& op, const Bytes& value) {
  if (op.type_tag == 0) return true;
  auto header = ipc::read_header(ipc::as_byte_span(value));
  return header && header->type_tag == op.type_tag && header->type_version == op.type_version;
}

OpReply mismatch_reply(const Bytes& value) {
  OpReply r;
  r.status = OpStatus::kTypeMismatch;
  r.number = type_word(value);
  return r;
}

OpReply status_reply(OpStatus status, std::string error = {}) {
  OpReply r;
  r.status = status;
  r.error = std::move(error);
  return r;
}

class Server {
 public:
  Server(const ManagerServerOptions& options, ipc::SipKey key) : options_(options), key_(key) {}
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() {
    for (auto& [id, c] : conns_) ::close(c.fd);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (listen_fd_ >= 0) {
      ::close(listen_fd_);
      ::unlink(options_.socket_path.c_str());
    }
    if (state_fd_ >= 0) ::close(state_fd_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status open_state();
  Status listen();
  Status run(const sigset_t& wait_mask);

 private:
  // State changes: every one goes through emit(), in the live loop and in replay alike.
  void apply(const Effect& e, SteadyClock::time_point now, std::int64_t wall_now);
  void emit(Effect e);
  void ensure(const Op& op);
  Object* find(const std::string& name);
  void commit_effects();
  void commit(const Connection& c, std::uint64_t seq, ipc::Reply&& reply, bool memo);
  Status load(const std::vector<std::byte>& file);
  Status compact();
  Status flush_journal();

  // Requests.
  void accept_all(SteadyClock::time_point now);
  void read_from(Connection& c);
  void process_frames(Connection& c);
  void handle_hello(Connection& c, std::span<const std::byte> message);
  void handle_request(Connection& c, const ipc::Request& request);
  std::optional<std::pair<ManagerError, std::string>> validate(const ipc::Request& request);
  OpReply execute(const Op& op);
  std::optional<OpReply> try_blocking(const Op& op, std::uint64_t client, bool queued);
  void park(Connection& c, std::uint64_t seq, const Op& op, SteadyClock::time_point now);
  void send_reply(Connection& c, const ipc::Reply& reply);
  void refuse(Connection& c, std::uint64_t seq, ManagerError code, std::string error);
  template <ipc::Transferable T>
  void send_message(Connection& c, const T& message);

  // Parked ops and timers.
  void wake_touched();
  void wake(const std::string& name);
  void finish_waiter(std::uint64_t waiter_id, OpReply reply);
  void unpark(std::uint64_t waiter_id);
  void expire(SteadyClock::time_point now);
  void release_locks_of(std::uint64_t client, const std::string& why);
  int poll_timeout_ms(SteadyClock::time_point now) const;

  void fit_connections_to_fd_limit();
  void pause_accepting(SteadyClock::time_point now, int err);
  void resume_accepting(SteadyClock::time_point now);

  // Closing.
  void kill(Connection& c);
  void close_dead();
  void flush_outputs();
  void watch(Connection& c);

  const ManagerServerOptions& options_;
  ipc::SipKey key_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int state_fd_ = -1;
  int lock_fd_ = -1;

  State state_;
  JournalRecord record_;  // the record being built: effects of the current action
  std::vector<std::byte> journal_;  // records not yet written
  std::size_t journal_bytes_ = 0;   // written since the last snapshot
  std::size_t snapshot_bytes_ = 0;

  std::unordered_map<std::uint64_t, Connection> conns_;
  std::uint64_t next_conn_ = 1;
  std::map<LaneKey, std::uint64_t> lane_conns_;              // the lane's current connection
  std::unordered_map<std::uint64_t, int> client_conns_;      // client -> open connections
  std::unordered_map<std::uint64_t, std::set<std::string>> held_by_;  // client -> lock names
  std::unordered_map<std::uint64_t, Waiter> waiters_;
  std::uint64_t next_waiter_ = 1;
  std::set<std::pair<SteadyClock::time_point, std::uint64_t>> deadlines_;  // (deadline, waiter)
  std::set<std::pair<SteadyClock::time_point, std::string>> leases_;      // (end, lock)
  std::vector<std::string> touched_;  // objects whose waiters may now proceed
  std::vector<std::uint64_t> sending_;  // connections with output queued, in queueing order
  bool any_dead_ = false;

  ipc::Request request_;  // reused between requests
  ipc::Reply reply_;
  bool warned_connections_ = false;
  std::size_t max_connections_ = kMaxConnections;  // lowered to fit the descriptor limit
  std::optional<SteadyClock::time_point> accept_resume_;  // accepting paused (out of fds) until
  bool warned_fds_ = false;  // said so since the last connection accepted
  std::int64_t wall_now_ = wall_now_ns();  // per loop iteration: memo ages need no precision
  std::uint32_t spin_skip_ = 0;            // busy iterations left before spinning again
  std::uint32_t spin_misses_ = 0;          // spins in a row that found nothing
};

// --- State changes ---------------------------------------------------------------------------

Object* Server::find(const std::string& name) {
  auto it = state_.objects.find(name);
  return it == state_.objects.end() ? nullptr : &it->second;
}

void Server::apply(const Effect& e, SteadyClock::time_point now, std::int64_t wall_now) {
  if (e.code == EffectCode::kCreate) {
    Object& o = state_.objects[e.object];
    o.kind = e.kind;
    o.number = e.number;
    return;
  }
  Object& o = state_.objects[e.object];
  switch (e.code) {
    case EffectCode::kCreate: break;
    case EffectCode::kDictSet: o.dict[e.key] = e.value; break;
    case EffectCode::kDictErase: o.dict.erase(e.key); break;
    case EffectCode::kListAppend:
    case EffectCode::kQueuePush: o.items.push_back(e.value); break;
    case EffectCode::kQueuePop:
      if (!o.items.empty()) o.items.pop_front();
      break;
    case EffectCode::kValueSet: o.value = e.value; break;
    case EffectCode::kCounterSet:
    case EffectCode::kEventSet: o.number = e.number; break;
    case EffectCode::kLockGrant:
      if (o.holder != 0) {
        leases_.erase({o.lease_end, e.object});
        held_by_[o.holder].erase(e.object);
      }
      o.holder = e.client;
      o.token = e.token;
      o.lease_ms = e.lease_ms;
      o.lease_end_wall_ns = e.wall_ns;
      o.lease_end = now + std::chrono::nanoseconds(e.wall_ns - wall_now);
      leases_.insert({o.lease_end, e.object});
      held_by_[o.holder].insert(e.object);
      state_.next_token = std::max(state_.next_token, e.token + 1);
      break;
    case EffectCode::kLockFree:
      if (o.holder != 0) {
        leases_.erase({o.lease_end, e.object});
        auto held = held_by_.find(o.holder);
        if (held != held_by_.end()) {
          held->second.erase(e.object);
          if (held->second.empty()) held_by_.erase(held);
        }
      }
      o.holder = 0;
      break;
  }
}

void Server::emit(Effect e) {
  if (e.code == EffectCode::kLockGrant) {
    apply(e, SteadyClock::now(), wall_now_ns());
  } else {
    apply(e, SteadyClock::time_point{}, 0);  // only a lock grant reads the clocks
  }
  record_.effects.push_back(std::move(e));
}

// Creates the object `op` names when it does not exist (validate() checked the kind).
void Server::ensure(const Op& op) {
  if (find(op.object) != nullptr) return;
  Effect e;
  e.code = EffectCode::kCreate;
  e.object = op.object;
  e.kind = ipc::kind_of(op.code);
  if (e.kind == ObjectKind::kQueue) e.number = op.number;
  emit(std::move(e));
}

// Journals the effects of an action that answers nobody (a lease expiry, a disconnect...).
void Server::commit_effects() {
  if (record_.effects.empty()) return;
  record_.has_memo = false;
  append_record(record_, journal_);
  record_.effects.clear();
}

// Journals the current effects together with the reply to (c's lane, seq), which is memoised
// when `memo` (the request could change state). The reply must be encoded for sending first:
// it is moved into the memo.
void Server::commit(const Connection& c, std::uint64_t seq, ipc::Reply&& reply, bool memo) {
  if (!memo) {
    commit_effects();
    return;
  }
  const LaneKey lane{c.client, c.lane};
  record_.has_memo = true;
  record_.lane = lane;
  record_.memo.seq = seq;
  record_.memo.reply = std::move(reply);
  record_.memo.wall_ns = wall_now_;
  append_record(record_, journal_);
  state_.lanes[lane].add(std::move(record_.memo));
  record_.effects.clear();
  record_.has_memo = false;
}

Status Server::load(const std::vector<std::byte>& file) {
  const std::string path = options_.state_path.string();
  if (file.empty()) return ok_status();
  if (file.size() < sizeof kStateMagic || std::memcmp(file.data(), kStateMagic, sizeof kStateMagic) != 0) {
    return state_error("the manager state file " + path +
                       " is not one (wrong magic): move it away to start with no shared objects");
  }
  const auto now = SteadyClock::now();
  const std::int64_t wall = wall_now_ns();
  std::size_t at = sizeof kStateMagic;
  std::size_t records = 0;
  JournalRecord record;
  while (at < file.size()) {
    if (file.size() - at < kRecordPrefix) break;
    std::uint32_t length = 0;
    std::uint64_t sum = 0;
    std::memcpy(&length, file.data() + at, sizeof length);
    std::memcpy(&sum, file.data() + at + 4, sizeof sum);
    if (file.size() - at - kRecordPrefix < length) break;
    const std::span<const std::byte> message(file.data() + at + kRecordPrefix, length);
    if (record_checksum(message) != sum) break;
    if (records == 0) {
      Status st = ipc::decode(message, state_);
      if (!st) {
        return state_error("cannot read the snapshot in the manager state file " + path + ": " +
                           st.error().what() + " (written by another build? move it away to "
                           "start with no shared objects)");
      }
      // Rebuild what is not persisted.
      for (auto& [name, o] : state_.objects) {
        if (o.kind != ObjectKind::kLock || o.holder == 0) continue;
        o.lease_end = now + std::chrono::nanoseconds(o.lease_end_wall_ns - wall);
        leases_.insert({o.lease_end, name});
        held_by_[o.holder].insert(name);
      }
    } else {
      Status st = ipc::decode(message, record);
      if (!st) {
        return state_error("cannot read journal record " + std::to_string(records) +
                           " of the manager state file " + path + ": " + st.error().what());
      }
      for (const Effect& e : record.effects) apply(e, now, wall);
      if (record.has_memo) state_.lanes[record.lane].add(std::move(record.memo));
    }
    at += kRecordPrefix + length;
    ++records;
  }
  if (at < file.size()) {
    log_line("dropped " + std::to_string(file.size() - at) + " bytes at the end of " + path +
             " (a record cut short when the manager was killed while writing it)");
  }
  log_line("restored " + std::to_string(state_.objects.size()) + " objects from " + path + " (" +
           std::to_string(records == 0 ? 0 : records - 1) + " journal records)");
  return ok_status();
}

// Writes the whole state as one snapshot to a new file and renames it over the state file;
// later records are appended to it.
Status Server::compact() {
  const std::int64_t wall = wall_now_ns();
  for (auto it = state_.lanes.begin(); it != state_.lanes.end();) {
    const bool connected = client_conns_.count(it->first.first) != 0;
    if (it->second.recent.empty() || (!connected && wall - it->second.last_wall_ns() > kMemoKeepNs)) {
      it = state_.lanes.erase(it);
    } else {
      ++it;
    }
  }
  const std::string path = options_.state_path.string();
  const std::string tmp = path + ".tmp";
  std::vector<std::byte> bytes(sizeof kStateMagic);
  std::memcpy(bytes.data(), kStateMagic, sizeof kStateMagic);
  append_record(state_, bytes);
  auto fd = posix_call("open", tmp, [&] {
    return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  });
  if (!fd) return state_error("cannot write the manager state " + tmp + ": " + fd.error().what());
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(*fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(*fd);
      ::unlink(tmp.c_str());
      return state_error("cannot write the manager state " + tmp + ": " + errno_text(err), err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::close(*fd);
    ::unlink(tmp.c_str());
    return state_error("cannot replace the manager state " + path + ": " + errno_text(err), err);
  }
  if (state_fd_ >= 0) ::close(state_fd_);
  state_fd_ = *fd;
  snapshot_bytes_ = bytes.size();
  journal_bytes_ = 0;
  return ok_status();
}

Status Server::flush_journal() {
  std::size_t done = 0;
  while (done < journal_.size()) {
    const ssize_t n = ::write(state_fd_, journal_.data() + done, journal_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      return state_error("cannot append to the manager journal " + options_.state_path.string() +
                             ": " + errno_text(err) +
                             "; stopping so that no acknowledged change is lost",
                         err);
    }
    done += static_cast<std::size_t>(n);
  }
  journal_bytes_ += journal_.size();
  journal_.clear();
  if (journal_bytes_ > std::max(options_.compact_min_bytes, 2 * snapshot_bytes_)) return compact();
  return ok_status();
}

Status Server::open_state() {
  const std::string path = options_.state_path.string();
  const std::string lock_path = path + ".lock";
  auto lock = posix_call("open", lock_path, [&] {
    return ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  });
  if (!lock) return state_error("cannot open " + lock_path + ": " + lock.error().what());
  lock_fd_ = *lock;
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return state_error("another manager is using the state file " + path +
                       " (its lock " + lock_path + " is held): one manager per run");
  }
  std::vector<std::byte> file;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) {
    return state_error("cannot read the manager state " + path + ": " + errno_text(errno), errno);
  }
  if (fd >= 0) {
    std::byte buf[64 * 1024];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return state_error("cannot read the manager state " + path + ": " + errno_text(err), err);
      }
      if (n == 0) break;
      file.insert(file.end(), buf, buf + n);
    }
    ::close(fd);
  }
  Status loaded = load(file);
  if (!loaded) return loaded;
  return compact();
}

// --- Socket ----------------------------------------------------------------------------------

Status Server::listen() {
  const std::string path = options_.socket_path.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Error{"manager", static_cast<int>(ManagerError::kUnreachable),
                 "manager socket path " + path + " is too long for a Unix socket (" +
                     std::to_string(sizeof addr.sun_path - 1) +
                     " bytes at most): use a shorter pipeline.run_dir",
                 0};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{"manager", static_cast<int>(ManagerError::kUnreachable),
                   path + " exists and is not a socket: refusing to replace it", 0};
    }
    ::unlink(path.c_str());  // a dead manager's socket: we hold the state lock, so it is stale
  }
  auto fd = posix_call("socket", path, [] {
    return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  });
  if (!fd) return fd.error();
  listen_fd_ = *fd;
  const mode_t old = ::umask(0177);  // the socket exists with mode 0600 from its first instant
  const int rc = ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return sys_error("manager", "bind", path, errno);
  if (::chmod(path.c_str(), 0600) != 0) return sys_error("manager", "chmod", path, errno);
  if (::listen(listen_fd_, 128) != 0) return sys_error("manager", "listen", path, errno);
  // epoll rather than poll(): the interest set persists, so a loop iteration costs nothing per
  // idle connection, and an event names its connection (data.u64 = id; 0 is the listener).
  auto ep = posix_call("epoll_create1", path, [] { return ::epoll_create1(EPOLL_CLOEXEC); });
  if (!ep) return ep.error();
  epoll_fd_ = *ep;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
    return sys_error("manager", "epoll_ctl", path, errno);
  }
  fit_connections_to_fd_limit();
  return ok_status();
}

// Raises the soft descriptor limit towards kMaxConnections (plus room for the state file and
// the like), and serves no more connections than the limit allows, so accept() never runs out
// of descriptors under a limit that this process knows about.
void Server::fit_connections_to_fd_limit() {
  constexpr rlim_t kSpare = 64;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = kMaxConnections + kSpare;
  if (limit.rlim_cur < wanted && limit.rlim_cur != RLIM_INFINITY) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    max_connections_ = limit.rlim_cur > 2 * kSpare ? static_cast<std::size_t>(limit.rlim_cur - kSpare)
                                                   : static_cast<std::size_t>(limit.rlim_cur / 2);
    log_line("serving at most " + std::to_string(max_connections_) +
             " connections (the open-files limit is " + std::to_string(limit.rlim_cur) + ")");
  }
}

void Server::accept_all(SteadyClock::time_point now) {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // EAGAIN, or a connection that died before we got to it. Out of descriptors, the
      // listener stays readable: accepting pauses instead of spinning on it.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pause_accepting(now, errno);
      }
      return;
    }
    if (conns_.size() >= max_connections_) {
      if (!warned_connections_) {
        log_line("refusing connections: " + std::to_string(max_connections_) + " are open");
        warned_connections_ = true;
      }
      ::close(fd);
      continue;
    }
    auto nonce = ipc::random_nonce();
    if (!nonce) {
      log_line(nonce.error().what());
      ::close(fd);
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = next_conn_;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      log_line("refusing a connection: epoll_ctl: " + errno_text(errno));
      ::close(fd);
      continue;
    }
    warned_fds_ = false;
    Connection& c = conns_[next_conn_];
    c.id = next_conn_++;
    c.fd = fd;
    c.watched = EPOLLIN;
    c.nonce = *nonce;
    c.hello_deadline = now + kHelloTimeout;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c.pid = cred.pid;
      c.uid = cred.uid;
    }
    ipc::ServerHello hello;
    hello.nonce = c.nonce;
    send_message(c, hello);
  }
}

void Server::pause_accepting(SteadyClock::time_point now, int err) {
  epoll_event ev{};
  ev.events = 0;
  ev.data.u64 = 0;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev) != 0) return;  // keep trying then
  if (!warned_fds_) {
    log_line("cannot accept connections (" + errno_text(err) + ", " +
             std::to_string(conns_.size()) + " open); trying again every " +
             std::to_string(kAcceptPause.count()) + " ms until descriptors are free");
    warned_fds_ = true;
  }
  accept_resume_ = now + kAcceptPause;
}

void Server::resume_accepting(SteadyClock::time_point now) {
  if (!accept_resume_ || now < *accept_resume_) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev) == 0) {
    accept_resume_.reset();
  } else {
    accept_resume_ = now + kAcceptPause;
  }
}

template <ipc::Transferable T>
void Server::send_message(Connection& c, const T& message) {
  if (c.out_sent == c.out.size()) {
    c.out.clear();
    c.out_sent = 0;
  }
  ipc::append_frame(message, c.out);
  if (!c.queued) {
    c.queued = true;
    sending_.push_back(c.id);
  }
}

void Server::send_reply(Connection& c, const ipc::Reply& reply) {
  if (!c.output_pending()) {
    c.out.clear();
    c.out_sent = 0;
  }
  const std::size_t start = c.out.size();
  send_message(c, reply);
  if (c.out.size() - start - ipc::kFramePrefixSize > ipc::kMaxFrameSize) {
    c.out.resize(start);
    ipc::Reply refusal;
    refusal.seq = reply.seq;
    refusal.error_code = static_cast<std::int32_t>(ManagerError::kTooLarge);
    refusal.error = "the reply would take " + std::to_string(c.out.size() - start) +
                    " bytes, over the " + std::to_string(ipc::kMaxFrameSize) +
                    "-byte limit: ask for fewer keys or a shorter slice";
    send_message(c, refusal);
  }
}

void Server::refuse(Connection& c, std::uint64_t seq, ManagerError code, std::string error) {
  ipc::Reply r;
  r.seq = seq;
  r.error_code = static_cast<std::int32_t>(code);
  r.error = std::move(error);
  send_reply(c, r);
}

void Server::read_from(Connection& c) {
  const std::size_t want = c.in_used + 64 * 1024;
  if (c.in.size() < want) c.in.resize(want);
  const ssize_t n = ::recv(c.fd, c.in.data() + c.in_used, c.in.size() - c.in_used, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    kill(c);
    return;
  }
  c.in_used += static_cast<std::size_t>(n);
  process_frames(c);
  if (c.parked != 0 && !c.dead) watch(c);  // its input may have reached kMaxHeldInput
}

void Server::process_frames(Connection& c) {
  std::size_t at = 0;
  while (!c.dead && !c.closing && c.parked == 0 &&
         c.out.size() - c.out_sent <= 2 * ipc::kMaxFrameSize) {
    const std::span<const std::byte> rest(c.in.data() + at, c.in_used - at);
    if (rest.size() < ipc::kFramePrefixSize) break;
    const ipc::FrameCheck check = ipc::check_frame(rest);
    const std::size_t limit = c.ready ? ipc::kMaxFrameSize : kMaxHelloSize;
    if (check.state == ipc::FrameState::kOversized || check.message_size > limit) {
      const std::string why = "a frame of " + std::to_string(check.message_size) +
                              " bytes, over the " + std::to_string(limit) + "-byte limit";
      log_line("closing a connection (" + describe_peer(c) + "): it sent " + why);
      if (c.ready) {
        refuse(c, 0, ManagerError::kTooLarge, "the request is " + why + "; closing the connection");
      } else {
        ipc::Welcome w;
        w.error_code = static_cast<std::int32_t>(ManagerError::kTooLarge);
        w.error = "the hello is " + why;
        send_message(c, w);
      }
      c.closing = true;
      at = c.in_used;
      break;
    }
    if (check.state == ipc::FrameState::kIncomplete) break;
    const auto message = rest.subspan(ipc::kFramePrefixSize, check.message_size);
    if (!c.ready) {
      handle_hello(c, message);
    } else {
      Status decoded = ipc::decode(message, request_);
      if (!decoded) {
        log_line("unreadable request from " + describe_peer(c) + ": " + decoded.error().what());
        refuse(c, 0, ManagerError::kProtocol, "cannot read the request: " + decoded.error().what());
      } else {
        handle_request(c, request_);
      }
    }
    at += ipc::kFramePrefixSize + check.message_size;
  }
  if (at > 0) {
    std::memmove(c.in.data(), c.in.data() + at, c.in_used - at);
    c.in_used -= at;
  }
  if (c.in.size() > 4 * 64 * 1024 && c.in_used < 64 * 1024) {
    c.in.resize(64 * 1024);  // give back the room a large request took
    c.in.shrink_to_fit();
  }
}

void Server::handle_hello(Connection& c, std::span<const std::byte> message) {
  ipc::Welcome w;
  auto hello = ipc::decode_from<ipc::ClientHello>(message);
  if (!hello) {
    w.error_code = static_cast<std::int32_t>(ManagerError::kProtocol);
    w.error = "expected a manager client's hello: " + hello.error().what();
    log_line("refused a connection (" + describe_peer(c) + "): not a manager client: " +
             hello.error().what());
  } else if (hello->protocol_version != kManagerProtocolVersion) {
    w.error_code = static_cast<std::int32_t>(ManagerError::kVersion);
    w.error = "the client speaks protocol version " + std::to_string(hello->protocol_version) +
              ", this manager speaks " + std::to_string(kManagerProtocolVersion) +
              ": run every process of the pipeline from the same build";
    log_line("refused a connection (" + describe_peer(c) + "): " + w.error);
  } else if (hello->proof != ipc::auth_digest(key_, 'C', c.nonce)) {
    w.error_code = static_cast<std::int32_t>(ManagerError::kAuthFailed);
    w.error = "authentication failed: this process does not hold the run's secret";
    log_line("authentication failed for a client (" + describe_peer(c) +
             "): wrong secret; connection refused");
  }
  if (w.error_code != 0) {
    send_message(c, w);
    c.closing = true;
    return;
  }
  c.ready = true;
  c.client = hello->client_id;
  c.lane = hello->lane;
  if (c.pid == 0) c.pid = hello->pid;
  // The lane reconnected: its old connection is defunct (the client closed it before), and
  // whatever it had parked must not take an item or a lock for a reply nobody reads.
  const LaneKey lane{c.client, c.lane};
  auto old = lane_conns_.find(lane);
  if (old != lane_conns_.end() && old->second != c.id) {
    auto prev = conns_.find(old->second);
    if (prev != conns_.end()) kill(prev->second);
  }
  lane_conns_[lane] = c.id;
  ++client_conns_[c.client];
  w.accepted = true;
  w.proof = ipc::auth_digest(key_, 'S', hello->nonce);
  send_message(c, w);
}

// --- Requests --------------------------------------------------------------------------------

std::optional<std::pair<ManagerError, std::string>> Server::validate(const ipc::Request& request) {
  using Refusal = std::pair<ManagerError, std::string>;
  if (request.ops.empty()) return Refusal{ManagerError::kBadRequest, "the request holds no op"};
  std::unordered_map<std::string, ObjectKind> planned;  // objects earlier ops will create
  for (std::size_t i = 0; i < request.ops.size(); ++i) {
    const Op& op = request.ops[i];
    // Only a refusal needs the words: built then, not for every op of every request.
    auto which = [&request, i]() -> std::string {
      return request.ops.size() > 1 ? "op " + std::to_string(i + 1) + ": " : "";
    };
    if (!ipc::is_known_op(op.code)) {
      return Refusal{ManagerError::kBadRequest,
                     which() + "unknown op code " + std::to_string(static_cast<int>(op.code)) +
                         " (a client of another version?)"};
    }
    const std::string_view name = ipc::op_name(op.code);
    if (ipc::is_blocking_op(op.code) && request.ops.size() > 1) {
      return Refusal{ManagerError::kBadRequest,
                     which() + std::string(name) + " may wait, so it must be alone in its request"};
    }
    if (op.object.empty() || op.object.size() > kMaxNameSize) {
      return Refusal{ManagerError::kBadRequest,
                     which() + std::string(name) + ": an object name must have 1 to " +
                         std::to_string(kMaxNameSize) + " bytes"};
    }
    if (op.key.size() > kMaxKeySize) {
      return Refusal{ManagerError::kBadRequest, which() + std::string(name) + " on '" + op.object +
                                                    "': the key is over " +
                                                    std::to_string(kMaxKeySize) + " bytes"};
    }
    const ObjectKind kind = ipc::kind_of(op.code);
    const Object* existing = find(op.object);
    ObjectKind actual = kind;
    if (existing != nullptr) {
      actual = existing->kind;
    } else if (auto p = planned.find(op.object); p != planned.end()) {
      actual = p->second;
    } else if (ipc::is_mutating_op(op.code)) {
      planned.emplace(op.object, kind);
    }
    if (actual != kind) {
      return Refusal{ManagerError::kWrongKind,
                     which() + "'" + op.object + "' is a " + std::string(ipc::kind_name(actual)) +
                         ", not a " + std::string(ipc::kind_name(kind)) +
                         ": use another name for the " + std::string(ipc::kind_name(kind))};
    }
    const bool writes_value = op.code == OpCode::kDictSet || op.code == OpCode::kListAppend ||
                              op.code == OpCode::kValueSet || op.code == OpCode::kQueuePut;
    if (writes_value) {
      if (op.value.size() > kMaxValueSize) {
        return Refusal{ManagerError::kTooLarge,
                       which() + std::string(name) + " on '" + op.object + "': the value takes " +
                           std::to_string(op.value.size()) + " bytes, over the limit of " +
                           std::to_string(kMaxValueSize)};
      }
      auto header = ipc::read_header(ipc::as_byte_span(op.value));
      if (!header) {
        return Refusal{ManagerError::kBadRequest, which() + std::string(name) + " on '" + op.object +
                                                      "': the value is not a codec message: " +
                                                      header.error().what()};
      }
    }
    if ((op.code == OpCode::kQueuePut || op.code == OpCode::kQueueGet) &&
        (op.number < 1 || op.number > kMaxQueueCapacity)) {
      return Refusal{ManagerError::kBadRequest,
                     which() + std::string(name) + " on '" + op.object + "': capacity " +
                         std::to_string(op.number) + " is outside 1.." +
                         std::to_string(kMaxQueueCapacity)};
    }
    if (op.code == OpCode::kLockAcquire && (op.lease_ms < 1 || op.lease_ms > kMaxLeaseMs)) {
      return Refusal{ManagerError::kBadRequest,
                     which() + "lock acquire on '" + op.object + "': lease " +
                         std::to_string(op.lease_ms) + "ms is outside 1ms..24h"};
    }
    if (ipc::is_blocking_op(op.code) && (op.timeout_ms < 0 || op.timeout_ms > kMaxTimeoutMs)) {
      return Refusal{ManagerError::kBadRequest,
                     which() + std::string(name) + " on '" + op.object + "': timeout " +
                         std::to_string(op.timeout_ms) + "ms is outside 0..7 days"};
    }
  }
  return std::nullopt;
}

void Server::handle_request(Connection& c, const ipc::Request& request) {
  const LaneKey lane{c.client, c.lane};
  bool mutating = false;
  for (const Op& op : request.ops) mutating = mutating || ipc::is_mutating_op(op.code);
  if (request.acked >= request.seq) {
    refuse(c, request.seq, ManagerError::kProtocol,
           "request " + std::to_string(request.seq) + " claims its own reply (acked " +
               std::to_string(request.acked) + ")");
    return;
  }
  auto memos = state_.lanes.find(lane);
  if (memos != state_.lanes.end()) {
    memos->second.forget_up_to(request.acked);
    if (const LaneMemo* memo = memos->second.find(request.seq)) {
      send_reply(c, memo->reply);  // a resend after a reconnect: already applied
      return;
    }
  }
  // Before the order check: a resent request refused the first time gets the same reason.
  if (auto refusal = validate(request)) {
    refuse(c, request.seq, refusal->first, std::move(refusal->second));
    return;
  }
  // A mutation the lane has already passed without applying cannot come from a client that
  // sends in seq order: refuse it rather than apply it out of order. (A read may: it is one
  // whose reply was lost, and runs again.)
  if (mutating && memos != state_.lanes.end() && !memos->second.recent.empty() &&
      request.seq < memos->second.recent.back().seq) {
    refuse(c, request.seq, ManagerError::kProtocol,
           "request " + std::to_string(request.seq) + " is older than request " +
               std::to_string(memos->second.recent.back().seq) + " already applied on this lane");
    return;
  }
  reply_.seq = request.seq;
  reply_.error_code = 0;
  reply_.error.clear();
  reply_.results.clear();
  const Op& first = request.ops.front();
  if (ipc::is_blocking_op(first.code)) {
    std::optional<OpReply> done = try_blocking(first, c.client, false);
    if (!done && first.timeout_ms > 0) {
      park(c, request.seq, first, SteadyClock::now());
      return;
    }
    reply_.results.push_back(done ? std::move(*done) : status_reply(OpStatus::kTimeout));
  } else {
    for (const Op& op : request.ops) reply_.results.push_back(execute(op));
  }
  send_reply(c, reply_);
  commit(c, request.seq, std::move(reply_), mutating);
  wake_touched();
}

OpReply Server::execute(const Op& op) {
  OpReply r;
  Object* o = find(op.object);
  switch (op.code) {
    case OpCode::kDictSet: {
      ensure(op);
      Effect e;
      e.code = EffectCode::kDictSet;
      e.object = op.object;
      e.key = op.key;
      e.value = op.value;
      emit(std::move(e));
      break;
    }
    case OpCode::kDictGet: {
      if (o == nullptr) return status_reply(OpStatus::kNotFound);
      auto it = o->dict.find(op.key);
      if (it == o->dict.end()) return status_reply(OpStatus::kNotFound);
      if (!type_matches(op, it->second)) return mismatch_reply(it->second);
      r.value = it->second;
      break;
    }
    case OpCode::kDictErase:
      if (o != nullptr && o->dict.count(op.key) != 0) {
        Effect e;
        e.code = EffectCode::kDictErase;
        e.object = op.object;
        e.key = op.key;
        emit(std::move(e));
        r.flag = true;
      }
      break;
    case OpCode::kDictKeys:
      if (o != nullptr) {
        r.keys.reserve(o->dict.size());
        for (const auto& [key, value] : o->dict) r.keys.push_back(key);
        std::sort(r.keys.begin(), r.keys.end());
      }
      break;
    case OpCode::kDictSize: r.number = o == nullptr ? 0 : static_cast<std::int64_t>(o->dict.size()); break;
    case OpCode::kListAppend: {
      ensure(op);
      o = find(op.object);
      if (op.number > 0 && o->items.size() >= static_cast<std::size_t>(op.number)) {
        r.number = static_cast<std::int64_t>(o->items.size());
        break;
      }
      Effect e;
      e.code = EffectCode::kListAppend;
      e.object = op.object;
      e.value = op.value;
      emit(std::move(e));
      r.flag = true;
      r.number = static_cast<std::int64_t>(o->items.size());
      break;
    }
    case OpCode::kListGet: {
      const auto size = o == nullptr ? 0 : static_cast<std::int64_t>(o->items.size());
      const std::int64_t index = op.number < 0 ? op.number + size : op.number;
      if (index < 0 || index >= size) {
        return status_reply(OpStatus::kOutOfRange, "index " + std::to_string(op.number) +
                                                       " is outside the list of " +
                                                       std::to_string(size) + " items");
      }
      const Bytes& item = o->items[static_cast<std::size_t>(index)];
      if (!type_matches(op, item)) return mismatch_reply(item);
      r.value = item;
      break;
    }
    case OpCode::kListSize: r.number = o == nullptr ? 0 : static_cast<std::int64_t>(o->items.size()); break;
    case OpCode::kListSlice: {
      const auto size = o == nullptr ? 0 : static_cast<std::int64_t>(o->items.size());
      auto clamp = [size](std::int64_t i) {
        if (i < 0) i += size;
        return std::clamp<std::int64_t>(i, 0, size);
      };
      const std::int64_t start = clamp(op.number);
      const std::int64_t stop = clamp(op.number2);
      for (std::int64_t i = start; i < stop; ++i) {
        const Bytes& item = o->items[static_cast<std::size_t>(i)];
        if (!type_matches(op, item)) return mismatch_reply(item);
        r.values.push_back(item);
      }
      break;
    }
    case OpCode::kValueSet: {
      ensure(op);
      Effect e;
      e.code = EffectCode::kValueSet;
      e.object = op.object;
      e.value = op.value;
      emit(std::move(e));
      break;
    }
    case OpCode::kValueGet:
      if (o == nullptr || !o->value) return status_reply(OpStatus::kNotFound);
      if (!type_matches(op, *o->value)) return mismatch_reply(*o->value);
      r.value = *o->value;
      break;
    case OpCode::kCounterAdd: {
      const std::int64_t old = o == nullptr ? 0 : o->number;
      std::int64_t sum = 0;
      if (__builtin_add_overflow(old, op.number, &sum)) {
        return status_reply(OpStatus::kFailed, "adding " + std::to_string(op.number) + " to " +
                                                   std::to_string(old) +
                                                   " would overflow a 64-bit counter");
      }
      ensure(op);
      Effect e;
      e.code = EffectCode::kCounterSet;
      e.object = op.object;
      e.number = sum;
      emit(std::move(e));
      r.number = sum;
      break;
    }
    case OpCode::kCounterGet: r.number = o == nullptr ? 0 : o->number; break;
    case OpCode::kLockRelease: {
      if (o == nullptr || o->holder == 0 || o->token != op.token) {
        std::string why;
        if (o == nullptr || o->holder == 0) {
          why = "the lock is free: its lease ended or its holder's connections closed";
        } else {
          why = "the lock was taken over since (it is now held under token " +
                std::to_string(o->token) + ")";
        }
        return status_reply(OpStatus::kLockLost, why);
      }
      Effect e;
      e.code = EffectCode::kLockFree;
      e.object = op.object;
      emit(std::move(e));
      touched_.push_back(op.object);
      break;
    }
    case OpCode::kLockHeld: r.flag = o != nullptr && o->holder != 0 && o->token == op.token; break;
    case OpCode::kEventSet:
    case OpCode::kEventClear: {
      const std::int64_t flag = op.code == OpCode::kEventSet ? 1 : 0;
      if (o == nullptr && flag == 0) break;
      ensure(op);
      if (find(op.object)->number != flag) {
        Effect e;
        e.code = EffectCode::kEventSet;
        e.object = op.object;
        e.number = flag;
        emit(std::move(e));
      }
      if (flag == 1) touched_.push_back(op.object);
      break;
    }
    case OpCode::kEventIsSet: r.flag = o != nullptr && o->number == 1; break;
    case OpCode::kQueueSize: r.number = o == nullptr ? 0 : static_cast<std::int64_t>(o->items.size()); break;
    case OpCode::kLockAcquire:
    case OpCode::kEventWait:
    case OpCode::kQueuePut:
    case OpCode::kQueueGet: assert(false && "blocking ops go through try_blocking()"); break;
  }
  return r;
}

// The blocking op done at once if it can be (its effects emitted), else nullopt. `queued`: the
// op is a parked one being retried (so the waiters ahead of it are not in its way).
std::optional<OpReply> Server::try_blocking(const Op& op, std::uint64_t client, bool queued) {
  OpReply r;
  Object* o = find(op.object);
  switch (op.code) {
    case OpCode::kLockAcquire: {
      if (o != nullptr && (o->holder != 0 || (!queued && !o->waiters.empty()))) return std::nullopt;
      ensure(op);
      Effect e;
      e.code = EffectCode::kLockGrant;
      e.object = op.object;
      e.client = client;
      e.token = state_.next_token;
      e.lease_ms = op.lease_ms;
      e.wall_ns = wall_now_ns() + op.lease_ms * 1000 * 1000;
      emit(std::move(e));
      r.number = static_cast<std::int64_t>(find(op.object)->token);
      r.lease_ms = op.lease_ms;
      return r;
    }
    case OpCode::kEventWait:
      if (o != nullptr && o->number == 1) return r;
      return std::nullopt;
    case OpCode::kQueuePut: {
      if (o != nullptr && (o->items.size() >= static_cast<std::size_t>(o->number))) {
        return std::nullopt;
      }
      ensure(op);
      Effect e;
      e.code = EffectCode::kQueuePush;
      e.object = op.object;
      e.value = op.value;
      emit(std::move(e));
      touched_.push_back(op.object);
      return r;
    }
    case OpCode::kQueueGet: {
      if (o == nullptr || o->items.empty()) return std::nullopt;
      if (!type_matches(op, o->items.front())) return mismatch_reply(o->items.front());
      r.value = std::move(o->items.front());
      Effect e;
      e.code = EffectCode::kQueuePop;
      e.object = op.object;
      emit(std::move(e));
      touched_.push_back(op.object);
      return r;
    }
    default: assert(false && "not a blocking op"); return std::nullopt;
  }
}

void Server::park(Connection& c, std::uint64_t seq, const Op& op, SteadyClock::time_point now) {
  ensure(op);  // an object to wait on (journaled: it would exist after the wait anyway)
  commit_effects();
  const std::uint64_t id = next_waiter_++;
  Waiter& w = waiters_[id];
  w.conn = c.id;
  w.seq = seq;
  w.op = op;
  w.deadline = now + std::chrono::milliseconds(op.timeout_ms);
  deadlines_.insert({w.deadline, id});
  find(op.object)->waiters.push_back(id);
  c.parked = id;
}

// --- Parked ops --------------------------------------------------------------------------------

void Server::wake_touched() {
  while (!touched_.empty()) {
    const std::string name = std::move(touched_.back());
    touched_.pop_back();
    wake(name);
  }
}

// Answers the waiters of `name` that can now proceed, oldest first.
void Server::wake(const std::string& name) {
  Object* o = find(name);
  if (o == nullptr) return;
  bool progress = true;
  while (progress && !o->waiters.empty()) {
    progress = false;
    for (std::size_t i = 0; i < o->waiters.size(); ++i) {
      const std::uint64_t id = o->waiters[i];
      Waiter& w = waiters_.at(id);
      const auto conn = conns_.find(w.conn);
      std::optional<OpReply> done;
      if (conn != conns_.end() && !conn->second.dead) {
        done = try_blocking(w.op, conn->second.client, true);
      }
      if (!done) {
        if (o->kind == ObjectKind::kLock) break;  // strictly first come, first served
        continue;
      }
      o->waiters.erase(o->waiters.begin() + static_cast<std::ptrdiff_t>(i));
      finish_waiter(id, std::move(*done));
      o = find(name);
      progress = true;
      break;
    }
  }
  touched_.erase(std::remove(touched_.begin(), touched_.end(), name), touched_.end());
}

// Replies to a parked op (already removed from its object's waiters) and forgets it.
void Server::finish_waiter(std::uint64_t waiter_id, OpReply reply) {
  auto it = waiters_.find(waiter_id);
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  deadlines_.erase({w.deadline, waiter_id});
  Connection& c = conns_.at(w.conn);
  c.parked = 0;
  ipc::Reply r;
  r.seq = w.seq;
  r.results.push_back(std::move(reply));
  send_reply(c, r);
  commit(c, w.seq, std::move(r), ipc::is_mutating_op(w.op.code));
}

// Forgets a parked op whose connection is gone.
void Server::unpark(std::uint64_t waiter_id) {
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  if (Object* o = find(it->second.op.object)) {
    o->waiters.erase(std::remove(o->waiters.begin(), o->waiters.end(), waiter_id), o->waiters.end());
    touched_.push_back(it->second.op.object);  // a queue putter gone may not matter; cheap
  }
  deadlines_.erase({it->second.deadline, waiter_id});
  waiters_.erase(it);
}

void Server::release_locks_of(std::uint64_t client, const std::string& why) {
  auto held = held_by_.find(client);
  if (held == held_by_.end()) return;
  const std::set<std::string> names = held->second;
  for (const std::string& name : names) {
    log_line("released lock '" + name + "': " + why);
    Effect e;
    e.code = EffectCode::kLockFree;
    e.object = name;
    emit(std::move(e));
    touched_.push_back(name);
  }
  commit_effects();
}

void Server::expire(SteadyClock::time_point now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const std::uint64_t id = deadlines_.begin()->second;
    Waiter& w = waiters_.at(id);
    if (Object* o = find(w.op.object)) {
      o->waiters.erase(std::remove(o->waiters.begin(), o->waiters.end(), id), o->waiters.end());
    }
    finish_waiter(id, status_reply(OpStatus::kTimeout));
  }
  while (!leases_.empty() && leases_.begin()->first <= now) {
    const std::string name = leases_.begin()->second;
    const Object* o = find(name);
    log_line("released lock '" + name + "': its lease of " + std::to_string(o->lease_ms) +
             "ms ended (token " + std::to_string(o->token) + ")");
    Effect e;
    e.code = EffectCode::kLockFree;
    e.object = name;
    emit(std::move(e));
    commit_effects();
    touched_.push_back(name);
  }
  for (auto& [id, c] : conns_) {
    if (!c.ready && !c.dead && !c.closing && c.hello_deadline <= now) {
      log_line("closing a connection (" + describe_peer(c) + "): no hello within 5s");
      kill(c);
    }
  }
  wake_touched();
}

int Server::poll_timeout_ms(SteadyClock::time_point now) const {
  SteadyClock::time_point next = SteadyClock::time_point::max();
  if (!deadlines_.empty()) next = std::min(next, deadlines_.begin()->first);
  if (!leases_.empty()) next = std::min(next, leases_.begin()->first);
  if (accept_resume_) next = std::min(next, *accept_resume_);
  for (const auto& [id, c] : conns_) {
    if (!c.ready) next = std::min(next, c.hello_deadline);
  }
  if (next == SteadyClock::time_point::max()) return -1;
  if (next <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 60 * 60 * 1000));
}

// --- Closing -----------------------------------------------------------------------------------

// Marks `c` for closing and at once drops what it had parked.
void Server::kill(Connection& c) {
  if (c.dead) return;
  c.dead = true;
  any_dead_ = true;
  if (c.parked != 0) {
    unpark(c.parked);
    c.parked = 0;
  }
}

void Server::close_dead() {
  if (!any_dead_) return;
  any_dead_ = false;
  for (auto it = conns_.begin(); it != conns_.end();) {
    Connection& c = it->second;
    if (!c.dead) {
      ++it;
      continue;
    }
    ::close(c.fd);
    if (c.ready) {
      const LaneKey lane{c.client, c.lane};
      if (auto l = lane_conns_.find(lane); l != lane_conns_.end() && l->second == c.id) {
        lane_conns_.erase(l);
      }
      if (--client_conns_[c.client] == 0) {
        client_conns_.erase(c.client);
        release_locks_of(c.client, "its holder's connections closed (" + describe_peer(c) + ")");
      }
    }
    it = conns_.erase(it);
  }
  wake_touched();
}

// Sends what is queued, in queueing order. A connection the kernel will not take more from
// (its client reads slowly) waits for EPOLLOUT and is not read meanwhile: a client that
// never reads cannot make the server buffer without bound.
void Server::flush_outputs() {
  std::size_t keep = 0;
  for (const std::uint64_t id : sending_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Connection& c = it->second;
    while (!c.dead && c.output_pending()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.out_sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      kill(c);
    }
    if (!c.dead && c.output_pending()) {
      sending_[keep++] = id;
    } else {
      c.queued = false;
      c.out.clear();
      c.out_sent = 0;
      if (c.closing) kill(c);
    }
    if (!c.dead) watch(c);
  }
  sending_.resize(keep);
}

// What a connection is watched for: EPOLLOUT while its replies wait for room (it is not read
// meanwhile); nothing once closing; and while parked with kMaxHeldInput queued behind the
// parked request, only its close (which cancels what it parked). So no client makes the
// server buffer without bound, whether it never reads or keeps sending.
void Server::watch(Connection& c) {
  std::uint32_t want = EPOLLIN;
  if (c.output_pending()) {
    want = EPOLLOUT;
  } else if (c.closing) {
    want = 0;
  } else if (c.parked != 0 && c.in_used >= kMaxHeldInput) {
    want = EPOLLRDHUP;
  }
  if (want == c.watched) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = c.id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
    log_line("closing a connection (" + describe_peer(c) + "): epoll_ctl: " + errno_text(errno));
    kill(c);
    return;
  }
  c.watched = want;
}

Status Server::run(const sigset_t& wait_mask) {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  bool busy = false;  // the last wait found something to do
  while (g_stop == 0) {
    // Changes not yet journaled (from the end of the last iteration) are written at once.
    const int timeout = journal_.empty() ? poll_timeout_ms(SteadyClock::now()) : 0;
    int n = 0;
    bool waited = false;
    if (timeout != 0 && busy && spin_skip_ == 0 && spinning_can_help()) {
      // Right after serving, the next request often comes within microseconds: poll without
      // sleeping for a moment, yielding the CPU after kSpinAlone so that clients sharing it
      // can send (see the client's spin). Spins that find nothing skip spinning for 1, 3,
      // 7, ... up to kSpinSkip busy iterations, so a loaded machine just sleeps.
      const auto begin = SteadyClock::now();
      const auto until = begin + kSpinLimit;
      for (;;) {
        n = ::epoll_pwait(epoll_fd_, events, kMaxEvents, 0, &wait_mask);
        const auto t = SteadyClock::now();
        if (n != 0 || g_stop != 0 || t >= until) break;
        if (t - begin >= kSpinAlone) ::sched_yield();
      }
      if (n != 0) {
        spin_misses_ = 0;
      } else {
        spin_misses_ = std::min(spin_misses_ + 1, kSpinMaxMisses);
        spin_skip_ = std::min(kSpinSkip, (1u << spin_misses_) - 1);
      }
      waited = n != 0;
    } else if (spin_skip_ > 0 && busy) {
      --spin_skip_;
    }
    if (!waited) n = ::epoll_pwait(epoll_fd_, events, kMaxEvents, timeout, &wait_mask);
    busy = n > 0;
    if (n < 0 && errno != EINTR) return sys_error("manager", "epoll_pwait", "manager socket", errno);
    if (g_stop != 0) break;
    const auto now = SteadyClock::now();
    wall_now_ = wall_now_ns();
    bool accept = false;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t id = events[i].data.u64;
      if (id == 0) {
        accept = true;
        continue;
      }
      auto it = conns_.find(id);
      if (it == conns_.end() || it->second.dead) continue;
      Connection& c = it->second;
      if (c.watched == EPOLLIN) {
        read_from(c);  // also sees an EOF or an error
      } else if ((events[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) != 0) {
        kill(c);
      }
      // EPOLLOUT: flush_outputs() below sends what is queued.
    }
    resume_accepting(now);
    if (accept) accept_all(now);
    expire(now);
    close_dead();
    Status journaled = flush_journal();  // before any reply that reports these changes
    if (!journaled) return journaled;
    flush_outputs();
    close_dead();  // those whose last bytes just went out
    // Requests that arrived while their connection was parked or had replies queued: their
    // replies go out in the next iteration, after their changes are journaled. Watching for
    // EPOLLOUT makes that iteration come at once, even when nothing else happens.
    for (auto& [id, c] : conns_) {
      if (c.in_used > 0 && c.parked == 0 && !c.dead && !c.closing && !c.output_pending()) {
        process_frames(c);
        if (!c.dead) watch(c);
      }
    }
  }
  return flush_journal();
}

}  // namespace

Status serve_manager(const ManagerServerOptions& options) {
  auto key = ipc::read_secret(options.secret_path);
  if (!key) return key.error();
  Server server(options, *key);
  Status st = server.open_state();
  if (!st) return st;
  st = server.listen();
  if (!st) return st;

  // The stop signals are blocked except inside epoll_pwait(), so one cannot slip in between the
  // check of g_stop and the wait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  sigset_t old_mask;
  ::sigprocmask(SIG_BLOCK, &stop_signals, &old_mask);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_term {}, old_int {}, old_hup {}, old_pipe {};
  ::sigaction(SIGTERM, &action, &old_term);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGHUP, &action, &old_hup);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old_pipe);
  g_stop = 0;
  sigset_t wait_mask = old_mask;
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGHUP);

  log_line("serving " + options.socket_path.string() + " (pid " + std::to_string(::getpid()) + ")");
  if (options.ready_fd >= 0) {
    static constexpr char kReady[] = "ready\n";
    const ssize_t n = ::write(options.ready_fd, kReady, sizeof kReady - 1);
    static_cast<void>(n);  // a parent that stopped listening does not stop the manager
    ::close(options.ready_fd);
  }
  st = server.run(wait_mask);

  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGHUP, &old_hup, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  if (st) log_line("stopped");
  return st;
}

int run_manager(const Invocation& invocation) {
  static_cast<void>(invocation);  // every path comes from the environment the launcher sets
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  ManagerServerOptions options;
  options.socket_path = env("MILLRACE_MANAGER");
  options.secret_path = env("MILLRACE_SECRET");
  if (options.socket_path.empty() || options.secret_path.empty()) {
    std::fprintf(stderr,
                 "millrace __manager: MILLRACE_MANAGER (socket path) and MILLRACE_SECRET (secret "
                 "file) must be set; the launcher starts the manager, `millrace run` does it for "
                 "you\n");
    return kExitUsage;
  }
  const std::string state = env("MILLRACE_MANAGER_STATE");
  options.state_path = state.empty() ? options.socket_path.parent_path() / "manager.state"
                                     : std::filesystem::path(state);
  const std::string ready = env("MILLRACE_MANAGER_READY_FD");
  if (!ready.empty()) {
    char* end = nullptr;
    const long fd = std::strtol(ready.c_str(), &end, 10);
    if (end == ready.c_str() || *end != '\0' || fd < 0 || fd > std::numeric_limits<int>::max()) {
      std::fprintf(stderr, "millrace __manager: MILLRACE_MANAGER_READY_FD=%s is not a descriptor\n",
                   ready.c_str());
      return kExitUsage;
    }
    options.ready_fd = static_cast<int>(fd);
  }
  Status st = serve_manager(options);
  if (!st) {
    std::fprintf(stderr, "millrace manager: %s\n", st.error().what().c_str());
    return kExitRunFailed;
  }
  return kExitOk;
}

}  // namespace millrace::launcher
