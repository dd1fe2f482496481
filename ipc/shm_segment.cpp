#include "ipc/shm_segment.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>

#include "ipc/posix_call.hpp"
#include "ipc/version.hpp"

namespace millrace::ipc {
namespace {

// "MILLRSEG" / "MILLRBLD" as little-endian words: recognisable in a hex dump of /dev/shm.
constexpr std::uint64_t kMagic = 0x4745'5352'4c4c'494dULL;
constexpr std::uint64_t kBuildingMagic = 0x444c'4252'4c4c'494dULL;

// The header's layout is part of kSegmentFormatVersion: the sweep reads it with pread(), field by
// field at these offsets, from segments written by other processes.
struct SegmentHeader {
  std::atomic<std::uint64_t> magic;     // kMagic, stored last (release) by publish()
  std::atomic<std::uint64_t> building;  // kBuildingMagic, stored right after mapping
  std::uint32_t format_version;
  std::uint32_t kind;
  std::uint64_t payload_size;
  std::uint64_t payload_offset;
  std::atomic<std::int32_t> creator_pid;
  std::uint32_t reserved;
  std::atomic<std::uint64_t> creator_start_time;
  // Owner identity, written under a sequence count (odd while being written) so that a sweep
  // never judges a half-updated (pid, start time) pair.
  std::atomic<std::uint32_t> owner_seq;
  std::atomic<std::int32_t> owner_pid;
  std::atomic<std::uint64_t> owner_start_time;
};

static_assert(std::is_standard_layout_v<SegmentHeader>, "the header is read at fixed offsets");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free &&
                  std::atomic<std::int32_t>::is_always_lock_free,
              "header atomics are shared between processes: they must be lock-free");
static_assert(sizeof(std::atomic<std::uint64_t>) == sizeof(std::uint64_t) &&
                  sizeof(std::atomic<std::int32_t>) == sizeof(std::int32_t),
              "atomics must have the size of their value for the pread-based sweep");

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
constexpr std::size_t kPayloadOffset = round_up(sizeof(SegmentHeader), kSegmentPayloadAlignment);

Error shm_error(ShmError code, std::string message, int err = 0) {
  if (err != 0) message.append(" (").append(errno_text(err)).append(")");
  return Error{"shm", static_cast<int>(code), std::move(message), err};
}

Error shm_sys_error(std::string_view call, std::string_view name, int err) {
  Error e = sys_error("shm", call, name, err);
  e.code = static_cast<int>(ShmError::kSystem);
  return e;
}

SegmentHeader* header_of(void* base) { return std::launder(static_cast<SegmentHeader*>(base)); }

bool valid_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool valid_part(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!valid_name_char(c)) return false;
  }
  return true;
}

Error bad_name(std::string_view name) {
  return shm_error(ShmError::kBadName,
                   "invalid shared-memory segment name '" + std::string(name) +
                       "': it must be '/' followed by 1.." + std::to_string(NAME_MAX - 1) +
                       " characters of [A-Za-z0-9._-]");
}

struct ProcStat {
  char state = '?';
  std::uint64_t start_time = 0;
};

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  // Field 2 (comm) is parenthesised and may itself contain spaces and ')': fields 3.. follow the
  // last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcStat st;
  std::string field;
  for (int index = 3; index <= 22 && (rest >> field); ++index) {
    if (index == 3) st.state = field.empty() ? '?' : field[0];
    if (index == 22) {
      st.start_time = std::strtoull(field.c_str(), nullptr, 10);
      return st;
    }
  }
  return std::nullopt;
}

// A field of a header image read with pread().
template <typename T>
T field_at(const unsigned char* image, std::size_t offset) {
  T value;
  std::memcpy(&value, image + offset, sizeof value);
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// names

bool valid_segment_name(std::string_view name) {
  return name.size() >= 2 && name.size() < NAME_MAX && name[0] == '/' && valid_part(name.substr(1));
}

std::string segment_name(std::string_view run_id, std::string_view what) {
  assert(valid_part(run_id) && "segment_name: run id must be non-empty [A-Za-z0-9._-]");
  assert(valid_part(what) && "segment_name: segment role must be non-empty [A-Za-z0-9._-]");
  std::string name;
  name.reserve(10 + run_id.size() + 1 + what.size());
  name.append("/millrace-").append(run_id).append("-").append(what);
  assert(name.size() < NAME_MAX && "segment_name: name too long (run id or role too long)");
  return name;
}

// ---------------------------------------------------------------------------------------------
// processes

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  auto st = read_proc_stat(pid);
  if (!st) return std::nullopt;
  return st->start_time;
}

bool process_alive(pid_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // kill() succeeded or failed with EPERM: a process of that pid exists (possibly another
  // user's). Make sure it is the same process and not a zombie.
  auto st = read_proc_stat(pid);
  if (!st) return false;  // exited between the two checks
  if (st->state == 'Z' || st->state == 'X') return false;
  return start_time == 0 || st->start_time == start_time;
}

// ---------------------------------------------------------------------------------------------
// SharedSegment

SharedSegment::SharedSegment(std::string name, void* base, std::size_t map_size)
    : name_(std::move(name)), base_(base), map_size_(map_size) {
  const SegmentHeader* h = header_of(base_);
  payload_ = static_cast<std::byte*>(base_) + h->payload_offset;
  payload_size_ = h->payload_size;
  kind_ = h->kind;
}

SharedSegment::SharedSegment(SharedSegment&& other) noexcept
    : name_(std::move(other.name_)),
      base_(std::exchange(other.base_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      payload_(std::exchange(other.payload_, nullptr)),
      payload_size_(std::exchange(other.payload_size_, 0)),
      kind_(std::exchange(other.kind_, 0)) {}

SharedSegment& SharedSegment::operator=(SharedSegment&& other) noexcept {
  if (this != &other) {
    reset();
    name_ = std::move(other.name_);
    base_ = std::exchange(other.base_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    payload_ = std::exchange(other.payload_, nullptr);
    payload_size_ = std::exchange(other.payload_size_, 0);
    kind_ = std::exchange(other.kind_, 0);
  }
  return *this;
}

SharedSegment::~SharedSegment() { reset(); }

void SharedSegment::reset() {
  if (base_ != nullptr) ::munmap(base_, map_size_);
  base_ = nullptr;
  payload_ = nullptr;
}

Result<SharedSegment> SharedSegment::create(std::string name, std::size_t payload_size,
                                            std::uint32_t kind) {
  if (!valid_segment_name(name)) return bad_name(name);
  const std::size_t map_size = kPayloadOffset + payload_size;

  int fd = -1;
  for (;;) {
    fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EINTR) break;
  }
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) {
      return shm_error(ShmError::kExists,
                       "shared-memory segment " + name +
                           " already exists: another run uses this name, or a killed run left "
                           "it behind (a stale-segment sweep removes it once its owner is dead)");
    }
    return shm_sys_error("shm_open", name, err);
  }
  // From here on a failure must not leave a half-made object behind.
  auto fail = [&](std::string_view call, int err) -> Error {
    ::close(fd);
    ::shm_unlink(name.c_str());
    return shm_sys_error(call, name, err);
  };
  if (::fchmod(fd, 0600) != 0) return fail("fchmod", errno);  // whatever the umask said
  if (auto rc = posix_call("ftruncate", name,
                           [&] { return ::ftruncate(fd, static_cast<off_t>(map_size)); });
      !rc) {
    return fail("ftruncate", rc.error().sys_errno);
  }
  void* base = ::mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("mmap", errno);
  ::close(fd);

  SegmentHeader* h = ::new (base) SegmentHeader{};
  // Identify the creator first: if it dies before publish(), a sweep judges the segment by it.
  const pid_t self = ::getpid();
  const std::uint64_t start = process_start_time(self).value_or(0);
  h->creator_start_time.store(start, std::memory_order_relaxed);
  h->creator_pid.store(self, std::memory_order_relaxed);
  h->owner_start_time.store(start, std::memory_order_relaxed);
  h->owner_pid.store(self, std::memory_order_relaxed);
  h->format_version = kSegmentFormatVersion;
  h->kind = kind;
  h->payload_size = payload_size;
  h->payload_offset = kPayloadOffset;
  // Release: a sweep that sees the building marker also sees the creator identity above.
  h->building.store(kBuildingMagic, std::memory_order_release);
  return SharedSegment(std::move(name), base, map_size);
}

Result<SharedSegment> SharedSegment::attach(std::string name, std::uint32_t kind,
                                            std::chrono::milliseconds wait) {
  if (!valid_segment_name(name)) return bad_name(name);
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + wait;
  // Polling is acceptable here and only here: the creator is building the segment right now
  // (or died doing so), and there is nothing yet to sleep on.
  auto backoff = std::chrono::microseconds(50);
  auto pause = [&]() -> bool {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(5000));
    return true;
  };
  const std::string waited = std::to_string(wait.count()) + " ms";

  bool seen = false;
  for (;;) {
    int fd = -1;
    for (;;) {
      fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
      if (fd >= 0 || errno != EINTR) break;
    }
    if (fd < 0) {
      const int err = errno;
      if (err != ENOENT) return shm_sys_error("shm_open", name, err);
      if (pause()) continue;
      if (seen) {
        return shm_error(ShmError::kNotFound,
                         "shared-memory segment " + name + " disappeared while attaching to it");
      }
      return shm_error(ShmError::kNotFound, "shared-memory segment " + name +
                                                " does not exist (waited " + waited +
                                                "): is the run that creates it started?");
    }
    seen = true;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return shm_sys_error("fstat", name, err);
    }
    const auto file_size = static_cast<std::size_t>(st.st_size);
    if (file_size < kPayloadOffset) {
      // Created but not sized yet, or not one of ours.
      ::close(fd);
      if (pause()) continue;
      return shm_error(ShmError::kNotPublished,
                       "shared-memory segment " + name + " is " + std::to_string(file_size) +
                           " bytes, too small for a header, and did not grow within " + waited +
                           ": its creator died while building it, or it is not a millrace "
                           "segment");
    }
    void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int map_err = errno;
    ::close(fd);
    if (base == MAP_FAILED) return shm_sys_error("mmap", name, map_err);
    const SegmentHeader* h = header_of(base);

    // Acquire: pairs with publish(); the payload and header fields are complete once seen.
    while (h->magic.load(std::memory_order_acquire) != kMagic) {
      if (!pause()) {
        const pid_t creator = h->creator_pid.load(std::memory_order_relaxed);
        const bool building =
            h->building.load(std::memory_order_acquire) == kBuildingMagic;
        ::munmap(base, file_size);
        std::string msg = "shared-memory segment " + name + " was not published within " + waited;
        if (building) {
          msg += ": its creator (pid " + std::to_string(creator) + ") " +
                 (process_alive(creator, 0) ? "is still initialising it"
                                            : "died while initialising it; a stale-segment "
                                              "sweep removes it");
        } else {
          msg += ": it is not a millrace segment (no header)";
        }
        return shm_error(ShmError::kNotPublished, std::move(msg));
      }
    }
    auto mismatch = [&](ShmError code, std::string what) -> Error {
      ::munmap(base, file_size);
      return shm_error(code, "shared-memory segment " + name + ": " + what);
    };
    if (h->format_version != kSegmentFormatVersion) {
      return mismatch(ShmError::kVersion,
                      "segment format version " + std::to_string(h->format_version) +
                          ", this program reads version " +
                          std::to_string(kSegmentFormatVersion) +
                          "; run every process of a pipeline from the same millrace build");
    }
    if (h->kind != kind) {
      return mismatch(ShmError::kKind, "holds payload kind " + std::to_string(h->kind) +
                                           ", expected kind " + std::to_string(kind) +
                                           "; two links or stats segments share a name?");
    }
    if (h->payload_offset != kPayloadOffset || h->payload_offset + h->payload_size > file_size) {
      return mismatch(ShmError::kSize,
                      "header says " + std::to_string(h->payload_size) +
                          " payload bytes at offset " + std::to_string(h->payload_offset) +
                          " but the object is " + std::to_string(file_size) +
                          " bytes; it was truncated or damaged, remove it and restart the run");
    }
    return SharedSegment(std::move(name), base, file_size);
  }
}

void SharedSegment::publish() {
  assert(base_ != nullptr && "publish() on a moved-from SharedSegment");
  // Release: everything written to the payload before this store is visible to an attacher
  // that reads the magic with acquire order.
  header_of(base_)->magic.store(kMagic, std::memory_order_release);
}

bool SharedSegment::published() const {
  assert(base_ != nullptr && "published() on a moved-from SharedSegment");
  return header_of(base_)->magic.load(std::memory_order_acquire) == kMagic;
}

Status SharedSegment::unlink() {
  assert(!name_.empty() && "unlink() on a moved-from SharedSegment");
  if (::shm_unlink(name_.c_str()) != 0) return shm_sys_error("shm_unlink", name_, errno);
  return ok_status();
}

void SharedSegment::set_owner(pid_t pid) {
  assert(base_ != nullptr && "set_owner() on a moved-from SharedSegment");
  SegmentHeader* h = header_of(base_);
  const std::uint64_t start = process_start_time(pid).value_or(0);
  const std::uint32_t seq = h->owner_seq.load(std::memory_order_relaxed);
  h->owner_seq.store(seq + 1, std::memory_order_relaxed);
  // Release fence: a reader that sees the new pid or start time also sees the odd count.
  std::atomic_thread_fence(std::memory_order_release);
  h->owner_pid.store(pid, std::memory_order_relaxed);
  h->owner_start_time.store(start, std::memory_order_relaxed);
  h->owner_seq.store(seq + 2, std::memory_order_release);
}

pid_t SharedSegment::owner() const {
  assert(base_ != nullptr && "owner() on a moved-from SharedSegment");
  return header_of(base_)->owner_pid.load(std::memory_order_acquire);
}

// ---------------------------------------------------------------------------------------------
// sweep

namespace {

enum class Verdict { kKeep, kStale };

// Judges one object of /dev/shm from its header, read with pread (never mapped: a foreign
// object could shrink under a mapping and fault the sweeper).
Verdict judge(int fd, const struct stat& st) {
  constexpr std::size_t kImage = sizeof(SegmentHeader);
  if (static_cast<std::size_t>(st.st_size) < kImage) {
    const auto age = std::chrono::system_clock::now() -
                     std::chrono::system_clock::from_time_t(st.st_mtim.tv_sec);
    return age > kUnclaimedGrace ? Verdict::kStale : Verdict::kKeep;
  }
  unsigned char first[kImage];
  unsigned char second[kImage];
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::pread(fd, first, kImage, 0) != static_cast<ssize_t>(kImage)) return Verdict::kKeep;
    const auto magic = field_at<std::uint64_t>(first, offsetof(SegmentHeader, magic));
    const auto building = field_at<std::uint64_t>(first, offsetof(SegmentHeader, building));
    if (magic != kMagic) {
      if (building != kBuildingMagic) return Verdict::kKeep;  // not ours
      const auto pid = field_at<std::int32_t>(first, offsetof(SegmentHeader, creator_pid));
      const auto start =
          field_at<std::uint64_t>(first, offsetof(SegmentHeader, creator_start_time));
      return process_alive(pid, start) ? Verdict::kKeep : Verdict::kStale;
    }
    if (field_at<std::uint32_t>(first, offsetof(SegmentHeader, format_version)) !=
        kSegmentFormatVersion) {
      return Verdict::kKeep;  // another build's layout: not ours to judge
    }
    const auto seq = field_at<std::uint32_t>(first, offsetof(SegmentHeader, owner_seq));
    if (seq % 2 != 0) continue;  // set_owner() in progress
    if (::pread(fd, second, kImage, 0) != static_cast<ssize_t>(kImage)) return Verdict::kKeep;
    if (field_at<std::uint32_t>(second, offsetof(SegmentHeader, owner_seq)) != seq) continue;
    const auto pid = field_at<std::int32_t>(first, offsetof(SegmentHeader, owner_pid));
    const auto start = field_at<std::uint64_t>(first, offsetof(SegmentHeader, owner_start_time));
    return process_alive(pid, start) ? Verdict::kKeep : Verdict::kStale;
  }
  return Verdict::kKeep;  // the owner keeps changing: certainly somebody is alive
}

}  // namespace

Result<std::vector<std::string>> sweep_stale_segments(std::string_view prefix) {
  constexpr const char* kDir = "/dev/shm";
  DIR* dir = ::opendir(kDir);
  if (dir == nullptr) return shm_sys_error("opendir", kDir, errno);
  const int dfd = ::dirfd(dir);
  std::vector<std::string> removed;
  int err = 0;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      err = errno;
      break;
    }
    const std::string_view file = entry->d_name;
    if (file.substr(0, prefix.size()) != prefix) continue;
    const std::string name = "/" + std::string(file);
    if (!valid_segment_name(name)) continue;
    const int fd = ::openat(dfd, entry->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;  // vanished, or not ours to read
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    const Verdict verdict = regular ? judge(fd, st) : Verdict::kKeep;
    ::close(fd);
    if (verdict != Verdict::kStale) continue;
    // Unlink only the object we judged: the name may have been removed and re-created since.
    struct stat now {};
    if (::fstatat(dfd, entry->d_name, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino ||
        now.st_dev != st.st_dev) {
      continue;
    }
    if (::shm_unlink(name.c_str()) == 0) removed.push_back(name);
  }
  ::closedir(dir);
  if (err != 0) return shm_sys_error("readdir", kDir, err);
  return removed;
}

}  // namespace millrace::ipc
