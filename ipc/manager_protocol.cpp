#include "ipc/manager_protocol.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

Error manager_error(ManagerError code, std::string message, int err = 0) {
  return Error{"manager", static_cast<int>(code), std::move(message), err};
}

std::uint64_t load64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

struct SipState {
  std::uint64_t v0, v1, v2, v3;

  void round() {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }
  void absorb(std::uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

// Fixed keys that turn the secret file's bytes into the 128-bit authentication key.
constexpr SipKey kDeriveLow{0x6d696c6c72616365ULL, 0x2d7365637265742dULL};
constexpr SipKey kDeriveHigh{0x6b65792d64657269ULL, 0x766174696f6e2d32ULL};

}  // namespace

std::uint64_t siphash24(const SipKey& key, std::span<const std::byte> data) {
  SipState s{key.k0 ^ 0x736f6d6570736575ULL, key.k1 ^ 0x646f72616e646f6dULL,
             key.k0 ^ 0x6c7967656e657261ULL, key.k1 ^ 0x7465646279746573ULL};
  const std::size_t whole = data.size() - data.size() % 8;
  for (std::size_t i = 0; i < whole; i += 8) s.absorb(load64_le(data.data() + i));
  std::uint64_t last = static_cast<std::uint64_t>(data.size() & 0xff) << 56;
  for (std::size_t i = whole; i < data.size(); ++i) {
    last |= static_cast<std::uint64_t>(data[i]) << (8 * (i - whole));
  }
  s.absorb(last);
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

Result<Nonce> random_nonce() {
  Nonce nonce{};
  auto* out = reinterpret_cast<unsigned char*>(nonce.data());
  std::size_t got = 0;
  while (got < sizeof nonce) {
    const ssize_t n = ::getrandom(out + got, sizeof nonce - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("manager", "getrandom", "nonce", errno);
    }
    got += static_cast<std::size_t>(n);
  }
  return nonce;
}

std::uint64_t auth_digest(const SipKey& key, char role, const Nonce& peer_nonce) {
  static constexpr std::string_view kContext = "millrace-manager-auth-v1:";
  std::byte message[kContext.size() + 1 + sizeof(Nonce)];
  std::memcpy(message, kContext.data(), kContext.size());
  message[kContext.size()] = static_cast<std::byte>(role);
  std::memcpy(message + kContext.size() + 1, peer_nonce.data(), sizeof(Nonce));
  return siphash24(key, message);
}

Result<SipKey> read_secret(const std::filesystem::path& path) {
  const std::string p = path.string();
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return manager_error(ManagerError::kSecret,
                         "cannot open the manager secret " + p + ": " + errno_text(err) +
                             " (the launcher creates it when the run starts: is the pipeline "
                             "running, and is this its run directory?)",
                         err);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return sys_error("manager", "fstat", p, err);
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return manager_error(ManagerError::kSecret,
                         "the manager secret " + p + " is accessible by other users (mode " +
                             std::to_string(st.st_mode & 0777) +
                             " in decimal): run `chmod 600 " + p + "`");
  }
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return sys_error("manager", "read", p, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > 4096) break;  // a secret is short; do not slurp a wrong file
  }
  ::close(fd);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.empty()) {
    return manager_error(ManagerError::kSecret, "the manager secret " + p + " is empty");
  }
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(text.data()),
                                         text.size());
  return SipKey{siphash24(kDeriveLow, bytes), siphash24(kDeriveHigh, bytes)};
}

Status create_secret_file(const std::filesystem::path& path) {
  unsigned char raw[32];
  std::size_t got = 0;
  while (got < sizeof raw) {
    const ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("manager", "getrandom", "secret", errno);
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned char c : raw) {
    text += kHex[c >> 4];
    text += kHex[c & 15];
  }
  text += '\n';
  const std::string p = path.string();
  const std::string tmp = p + ".tmp";
  auto fd = posix_call("open", tmp, [&] {
    return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  });
  if (!fd) return fd.error();
  // O_CREAT's mode does not apply to a file that already existed.
  const bool wrote = ::fchmod(*fd, 0600) == 0 &&
                     ::write(*fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int err = errno;
  ::close(*fd);
  if (!wrote) {
    ::unlink(tmp.c_str());
    return sys_error("manager", "write", tmp, err);
  }
  if (::rename(tmp.c_str(), p.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(tmp.c_str());
    return sys_error("manager", "rename", p, rename_err);
  }
  return ok_status();
}

std::string_view kind_name(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::kDict: return "dict";
    case ObjectKind::kList: return "list";
    case ObjectKind::kValue: return "value";
    case ObjectKind::kCounter: return "counter";
    case ObjectKind::kLock: return "lock";
    case ObjectKind::kEvent: return "event";
    case ObjectKind::kQueue: return "queue";
  }
  return "unknown kind";
}

bool is_known_op(OpCode code) {
  switch (code) {
    case OpCode::kDictSet:
    case OpCode::kDictGet:
    case OpCode::kDictErase:
    case OpCode::kDictKeys:
    case OpCode::kDictSize:
    case OpCode::kListAppend:
    case OpCode::kListGet:
    case OpCode::kListSize:
    case OpCode::kListSlice:
    case OpCode::kValueSet:
    case OpCode::kValueGet:
    case OpCode::kCounterAdd:
    case OpCode::kCounterGet:
    case OpCode::kLockAcquire:
    case OpCode::kLockRelease:
    case OpCode::kLockHeld:
    case OpCode::kEventSet:
    case OpCode::kEventClear:
    case OpCode::kEventWait:
    case OpCode::kEventIsSet:
    case OpCode::kQueuePut:
    case OpCode::kQueueGet:
    case OpCode::kQueueSize: return true;
  }
  return false;
}

ObjectKind kind_of(OpCode code) {
  const auto c = static_cast<unsigned>(code);
  if (c < 10) return ObjectKind::kDict;
  if (c < 20) return ObjectKind::kList;
  if (c < 30) return ObjectKind::kValue;
  if (c < 40) return ObjectKind::kCounter;
  if (c < 50) return ObjectKind::kLock;
  if (c < 60) return ObjectKind::kEvent;
  return ObjectKind::kQueue;
}

bool is_blocking_op(OpCode code) {
  return code == OpCode::kLockAcquire || code == OpCode::kEventWait ||
         code == OpCode::kQueuePut || code == OpCode::kQueueGet;
}

bool is_mutating_op(OpCode code) {
  switch (code) {
    case OpCode::kDictSet:
    case OpCode::kDictErase:
    case OpCode::kListAppend:
    case OpCode::kValueSet:
    case OpCode::kCounterAdd:
    case OpCode::kLockAcquire:
    case OpCode::kLockRelease:
    case OpCode::kEventSet:
    case OpCode::kEventClear:
    case OpCode::kQueuePut:
    case OpCode::kQueueGet: return true;
    default: return false;
  }
}

std::string_view op_name(OpCode code) {
  switch (code) {
    case OpCode::kDictSet: return "dict set";
    case OpCode::kDictGet: return "dict get";
    case OpCode::kDictErase: return "dict erase";
    case OpCode::kDictKeys: return "dict keys";
    case OpCode::kDictSize: return "dict size";
    case OpCode::kListAppend: return "list append";
    case OpCode::kListGet: return "list get";
    case OpCode::kListSize: return "list size";
    case OpCode::kListSlice: return "list slice";
    case OpCode::kValueSet: return "value set";
    case OpCode::kValueGet: return "value get";
    case OpCode::kCounterAdd: return "counter add";
    case OpCode::kCounterGet: return "counter get";
    case OpCode::kLockAcquire: return "lock acquire";
    case OpCode::kLockRelease: return "lock release";
    case OpCode::kLockHeld: return "lock held";
    case OpCode::kEventSet: return "event set";
    case OpCode::kEventClear: return "event clear";
    case OpCode::kEventWait: return "event wait";
    case OpCode::kEventIsSet: return "event is_set";
    case OpCode::kQueuePut: return "queue put";
    case OpCode::kQueueGet: return "queue get";
    case OpCode::kQueueSize: return "queue size";
  }
  return "unknown op";
}

namespace detail {

void refuse_unknown_fields(std::uint32_t present, std::uint32_t known) {
  if ((present & ~known) != 0) {
    throw DecodeFailure{CodecError::kCorrupt,
                        "the field mask " + std::to_string(present) +
                            " names fields this build does not know (a peer of another version?)"};
  }
}

}  // namespace detail

FrameCheck check_frame(std::span<const std::byte> buffered) {
  if (buffered.size() < kFramePrefixSize) return {};
  std::uint32_t length = 0;
  std::memcpy(&length, buffered.data(), sizeof length);
  if (length > kMaxFrameSize) return {FrameState::kOversized, length};
  if (buffered.size() - kFramePrefixSize < length) return {FrameState::kIncomplete, length};
  return {FrameState::kComplete, length};
}

}  // namespace millrace::ipc
