// The manager protocol: how a client and the manager (a Python-Manager-like object server)
// talk over a Unix stream socket. Messages, framing, and the challenge-response that keeps
// everyone but the run's own processes out.
//
// Who calls what: the manager server (launcher/manager_server.cpp) and ManagerClient
// (ipc/manager_client.hpp). Everything here is a pure function or a plain message type; any
// thread of any process may use it.
//
// Framing: every message is `u32 length` (this machine's byte order: both ends share the
// machine) followed by `length` bytes holding one codec message (ipc/codec.hpp), so every
// message carries its type tag and version and a peer of another build gets a clear error.
// A frame longer than kMaxFrameSize is refused before anything is allocated for it; the
// stream cannot be trusted after that, so the connection is closed.
//
// Conversation:
//   server -> client   ServerHello { protocol version, server nonce }
//   client -> server   ClientHello { protocol version, client id, lane, pid, client nonce,
//                                    proof = auth_digest(key, 'C', server nonce) }
//   server -> client   Welcome { accepted or the reason not, proof = auth_digest(key, 'S',
//                                client nonce) }   (the connection closes when refused)
//   then, any number of times:
//   client -> server   Request { seq, acked, ops }
//   server -> client   Reply { seq, error, one OpReply per op }
// The secret never crosses the wire: each side proves it knows it by keying a hash of the
// other side's fresh random nonce with it (SipHash-2-4, a keyed PRF). The role byte ('C' or
// 'S') keeps one side's proof from being replayed as the other's.
//
// Invariants:
//  - A Request's ops run atomically: no other client's op runs between them, and when one op
//    is invalid (unknown code, wrong object kind, a value that is not a codec message) none
//    runs and Reply::error says why. A blocking op (lock acquire, event wait, queue put/get)
//    must be the only op of its Request.
//  - Up to kMaxPipelineDepth Requests may be in flight per connection ("lane"); the server
//    runs them in the order sent and answers in that order. seq increases by one per Request
//    on a lane, and a resend after a reconnect repeats the same seq. `acked` is the highest
//    seq whose Reply the client has read, with every lower one. The server remembers, per
//    (client id, lane), each Reply to a state-changing Request above `acked`, and answers a
//    repeated seq from that memory: a resent mutation is applied once. A resent read runs
//    again (it may then see writes sent after it on the same lane).
//  - Values are stored on the server as the codec message the client encoded (type tag and
//    version included). A typed read names the type it expects; the server refuses to hand
//    out (or, for a queue, to remove) a value of another type.
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/codec.hpp"
#include "ipc/result.hpp"
#include "ipc/version.hpp"

namespace millrace::ipc {

// Error codes of the manager component (Error::component == "manager").
enum class ManagerError : int {
  kUnreachable = 1,  // no manager answered at the socket within the timeout
  kAuthFailed,       // the secret did not match (either side)
  kVersion,          // the peer speaks another protocol version
  kProtocol,         // a message out of place, a garbled frame, a bad reply
  kTooLarge,         // a message over kMaxFrameSize
  kSecret,           // the secret file is missing, empty or readable by others
  kTimeout,          // a blocking op timed out (the lock, queue or event was not ready)
  kTypeMismatch,     // the stored value has another type than the one asked for
  kWrongKind,        // the name is already an object of another kind
  kLockLost,         // the lease expired or the holder's connection closed
  kOutOfRange,       // a list index outside the list
  kBadRequest,       // the server refused the request (see the message)
  kForked,           // a ManagerClient used in a child of the process that connected it
  kState,            // the server's state file cannot be read or written
};

inline constexpr std::size_t kFramePrefixSize = 4;
// The largest message either side sends or accepts (values, keys() lists and slices count).
inline constexpr std::size_t kMaxFrameSize = std::size_t{1} << 20;
// The most Requests a client may have sent on one lane without having read their Replies.
inline constexpr std::size_t kMaxPipelineDepth = 128;

// --- Authentication -------------------------------------------------------------------------

// A 128-bit SipHash key.
struct SipKey {
  std::uint64_t k0 = 0;
  std::uint64_t k1 = 0;
};

// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit PRF; short and fast.
std::uint64_t siphash24(const SipKey& key, std::span<const std::byte> data);

using Nonce = std::array<std::uint64_t, 2>;

// 128 bits from the kernel's random source (getrandom).
Result<Nonce> random_nonce();

// The proof that a side of role `role` ('C' client, 'S' server) knows the key: a hash of the
// peer's nonce keyed with the secret.
std::uint64_t auth_digest(const SipKey& key, char role, const Nonce& peer_nonce);

// Reads the run's secret file and derives the key from its bytes. Errors (kSecret): missing,
// empty, or readable or writable by group or others (the run's secret must stay private).
Result<SipKey> read_secret(const std::filesystem::path& path);

// Writes a fresh random secret (64 hex digits) to `path` with mode 0600, replacing any file
// there. The launcher calls it before starting the manager.
Status create_secret_file(const std::filesystem::path& path);

// --- Messages -------------------------------------------------------------------------------

// Bytes of one encoded codec message: how values travel and how the server stores them.
using Bytes = std::vector<std::uint8_t>;

inline std::span<const std::byte> as_byte_span(const Bytes& bytes) {
  return {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()};
}

namespace detail {

// Per thread and type: the room to reserve before encoding, from the last message's size.
template <class T>
inline thread_local std::size_t frame_size_guess = 256;

}  // namespace detail

// Encodes `value` as a codec message into `out` (replacing its contents, keeping capacity), in
// one pass when the last value of this type was not smaller.
template <Transferable T>
void encode_value(const T& value, Bytes& out) {
  std::size_t& guess = detail::frame_size_guess<T>;
  out.resize(guess);
  auto span = [&out] {
    return std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size());
  };
  EncodeResult r = encode(value, span());
  if (!r.fit) {
    out.resize(r.size);
    r = encode(value, span());
    assert(r.fit && "encode() needs more room than it said");
  }
  out.resize(r.size);
  guess = std::min<std::size_t>(r.size + r.size / 4 + 16, 64 * 1024);
}

enum class ObjectKind : std::uint8_t {
  kDict = 1,
  kList,
  kValue,
  kCounter,
  kLock,
  kEvent,
  kQueue,
};

std::string_view kind_name(ObjectKind kind);

enum class OpCode : std::uint8_t {
  kDictSet = 1,
  kDictGet,
  kDictErase,
  kDictKeys,
  kDictSize,
  kListAppend = 10,  // Op::number > 0: append only while the list is shorter than that
  kListGet,
  kListSize,
  kListSlice,
  kValueSet = 20,
  kValueGet,
  kCounterAdd = 30,
  kCounterGet,
  kLockAcquire = 40,
  kLockRelease,
  kLockHeld,
  kEventSet = 50,
  kEventClear,
  kEventWait,
  kEventIsSet,
  kQueuePut = 60,
  kQueueGet,
  kQueueSize,
};

// False for a byte that names no op (a peer of another version, or garbage).
bool is_known_op(OpCode code);
ObjectKind kind_of(OpCode code);
// Ops that may wait on the server (they park without blocking other clients).
bool is_blocking_op(OpCode code);
// Ops that may change state (journaled, and answered once per seq).
bool is_mutating_op(OpCode code);
std::string_view op_name(OpCode code);

enum class OpStatus : std::uint8_t {
  kOk = 0,
  kNotFound,      // dict key, value or list item absent (reads only)
  kTimeout,       // a blocking op was not satisfied within its timeout
  kTypeMismatch,  // OpReply::number holds the stored value's (type version << 32 | type tag)
  kLockLost,
  kOutOfRange,
  kFailed,        // see OpReply::error
};

struct ServerHello {
  static constexpr std::string_view kTransferName = "millrace.manager.ServerHello";
  std::uint32_t protocol_version = kManagerProtocolVersion;
  Nonce nonce{};

  template <class A>
  void serialize(A& ar) {
    ar(protocol_version, nonce);
  }
};

struct ClientHello {
  static constexpr std::string_view kTransferName = "millrace.manager.ClientHello";
  std::uint32_t protocol_version = kManagerProtocolVersion;
  std::uint64_t client_id = 0;  // random per ManagerClient; every lane of one client shares it
  std::uint32_t lane = 0;       // the connection's lane within the client
  std::int32_t pid = 0;         // for the server's log only
  Nonce nonce{};                // the client's challenge to the server
  std::uint64_t proof = 0;      // auth_digest(key, 'C', server's nonce)

  template <class A>
  void serialize(A& ar) {
    ar(protocol_version, client_id, lane, pid, nonce, proof);
  }
};

struct Welcome {
  static constexpr std::string_view kTransferName = "millrace.manager.Welcome";
  std::uint32_t protocol_version = kManagerProtocolVersion;
  bool accepted = false;
  std::int32_t error_code = 0;  // a ManagerError, when refused
  std::string error;            // why not, when refused
  std::uint64_t proof = 0;      // auth_digest(key, 'S', client's nonce), when accepted

  template <class A>
  void serialize(A& ar) {
    ar(protocol_version, accepted, error_code, error, proof);
  }
};

namespace detail {

// Op and OpReply are sent by the thousand and most of their fields are at their defaults: they
// are encoded as a bitmask of the fields that are not, then those fields only.
template <class A, class T>
void save_if(A& ar, std::uint32_t present, std::uint32_t bit, const T& field) {
  if ((present & bit) != 0) ar(field);
}
template <class A, class T>
void load_if(A& ar, std::uint32_t present, std::uint32_t bit, T& field) {
  if ((present & bit) != 0) {
    ar(field);
  } else if constexpr (requires { field.clear(); }) {
    field.clear();  // decode reuses objects: an absent field must read as its default
  } else {
    field = T{};
  }
}
void refuse_unknown_fields(std::uint32_t present, std::uint32_t known);

}  // namespace detail

// One operation on one named object. Fields an op does not use stay at their defaults.
struct Op {
  static constexpr std::string_view kTransferName = "millrace.manager.Op";
  OpCode code = OpCode::kCounterGet;
  std::string object;  // the object's name; created by the first op that changes it
  std::string key;     // dict key
  Bytes value;         // an encoded value (set, append, put)
  // Counter delta, list index or slice start, queue capacity, bounded-append limit.
  std::int64_t number = 0;
  std::int64_t number2 = 0;  // slice stop
  // Typed reads: the tag and version the caller decodes; 0 accepts any type.
  std::uint32_t type_tag = 0;
  std::uint32_t type_version = 0;
  std::int64_t timeout_ms = 0;  // blocking ops: how long the server may park the op
  std::int64_t lease_ms = 0;    // lock acquire
  std::uint64_t token = 0;      // lock release / held: the lease's token

  template <class A>
  void save(A& ar) const {
    const std::uint32_t present =
        (key.empty() ? 0u : 1u) | (value.empty() ? 0u : 2u) | (number == 0 ? 0u : 4u) |
        (number2 == 0 ? 0u : 8u) | (type_tag == 0 ? 0u : 16u) | (type_version == 0 ? 0u : 32u) |
        (timeout_ms == 0 ? 0u : 64u) | (lease_ms == 0 ? 0u : 128u) | (token == 0 ? 0u : 256u);
    ar(code, object, present);
    detail::save_if(ar, present, 1, key);
    detail::save_if(ar, present, 2, value);
    detail::save_if(ar, present, 4, number);
    detail::save_if(ar, present, 8, number2);
    detail::save_if(ar, present, 16, type_tag);
    detail::save_if(ar, present, 32, type_version);
    detail::save_if(ar, present, 64, timeout_ms);
    detail::save_if(ar, present, 128, lease_ms);
    detail::save_if(ar, present, 256, token);
  }
  template <class A>
  void load(A& ar) {
    std::uint32_t present = 0;
    ar(code, object, present);
    detail::refuse_unknown_fields(present, 511);
    detail::load_if(ar, present, 1, key);
    detail::load_if(ar, present, 2, value);
    detail::load_if(ar, present, 4, number);
    detail::load_if(ar, present, 8, number2);
    detail::load_if(ar, present, 16, type_tag);
    detail::load_if(ar, present, 32, type_version);
    detail::load_if(ar, present, 64, timeout_ms);
    detail::load_if(ar, present, 128, lease_ms);
    detail::load_if(ar, present, 256, token);
  }
};

struct OpReply {
  static constexpr std::string_view kTransferName = "millrace.manager.OpReply";
  OpStatus status = OpStatus::kOk;
  std::string error;        // for kFailed, and context for the other failures
  std::int64_t number = 0;  // counter value, size, lock token, found type tag
  bool flag = false;        // event state, appended, lock held
  std::int64_t lease_ms = 0;  // lock acquire: the lease granted
  Bytes value;                // one value
  std::vector<Bytes> values;  // a list slice
  std::vector<std::string> keys;

  template <class A>
  void save(A& ar) const {
    const std::uint32_t present = (error.empty() ? 0u : 1u) | (number == 0 ? 0u : 2u) |
                                  (flag ? 4u : 0u) | (lease_ms == 0 ? 0u : 8u) |
                                  (value.empty() ? 0u : 16u) | (values.empty() ? 0u : 32u) |
                                  (keys.empty() ? 0u : 64u);
    ar(status, present);
    detail::save_if(ar, present, 1, error);
    detail::save_if(ar, present, 2, number);
    detail::save_if(ar, present, 8, lease_ms);
    detail::save_if(ar, present, 16, value);
    detail::save_if(ar, present, 32, values);
    detail::save_if(ar, present, 64, keys);
  }
  template <class A>
  void load(A& ar) {
    std::uint32_t present = 0;
    ar(status, present);
    detail::refuse_unknown_fields(present, 127);
    detail::load_if(ar, present, 1, error);
    detail::load_if(ar, present, 2, number);
    flag = (present & 4u) != 0;
    detail::load_if(ar, present, 8, lease_ms);
    detail::load_if(ar, present, 16, value);
    detail::load_if(ar, present, 32, values);
    detail::load_if(ar, present, 64, keys);
  }
};

struct Request {
  static constexpr std::string_view kTransferName = "millrace.manager.Request";
  static constexpr std::uint32_t kTransferVersion = 2;  // 2: acked
  std::uint64_t seq = 0;
  std::uint64_t acked = 0;  // every Reply up to this seq has reached the client
  std::vector<Op> ops;

  template <class A>
  void serialize(A& ar) {
    ar(seq, acked, ops);
  }
};

struct Reply {
  static constexpr std::string_view kTransferName = "millrace.manager.Reply";
  std::uint64_t seq = 0;  // the Request's; 0 when the request could not even be read
  std::int32_t error_code = 0;   // a ManagerError when the whole request was refused
  std::string error;             // non-empty: the whole request was refused, nothing changed
  std::vector<OpReply> results;  // one per op, in order, when error is empty

  template <class A>
  void serialize(A& ar) {
    ar(seq, error_code, error, results);
  }
};

// --- Framing --------------------------------------------------------------------------------

// Appends the codec message of `message` to `out` after `prefix` bytes of room, in one encoding
// pass when the guess of its size holds (two otherwise), and returns the message's size.
template <Transferable T>
std::size_t append_after_prefix(const T& message, std::vector<std::byte>& out, std::size_t prefix) {
  const std::size_t start = out.size() + prefix;
  std::size_t& guess = detail::frame_size_guess<T>;
  out.resize(start + guess);
  EncodeResult r = encode(message, std::span<std::byte>(out).subspan(start));
  if (!r.fit) {
    out.resize(start + r.size);
    r = encode(message, std::span<std::byte>(out).subspan(start));
    assert(r.fit && "encode() needs more room than it said");
  }
  out.resize(start + r.size);
  guess = std::min<std::size_t>(r.size + r.size / 4 + 64, 64 * 1024);
  return r.size;
}

// Appends the frame of `message` (length prefix and codec message) to `out` and returns the
// message's size, which the caller compares with kMaxFrameSize.
template <Transferable T>
std::size_t append_frame(const T& message, std::vector<std::byte>& out) {
  const std::size_t size = append_after_prefix(message, out, kFramePrefixSize);
  const auto length = static_cast<std::uint32_t>(size);
  std::memcpy(out.data() + out.size() - size - kFramePrefixSize, &length, sizeof length);
  return size;
}

enum class FrameState { kIncomplete, kComplete, kOversized };

struct FrameCheck {
  FrameState state = FrameState::kIncomplete;
  std::size_t message_size = 0;  // the message's bytes after the prefix (kComplete, kOversized)
};

// Looks at the start of `buffered`: is a whole frame there?
FrameCheck check_frame(std::span<const std::byte> buffered);

}  // namespace millrace::ipc
