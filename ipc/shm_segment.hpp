// SharedSegment: a named POSIX shared-memory object holding one typed payload, guarded by a
// header so that nobody ever uses a half-built or foreign segment.
//
// Who calls what:
//  - The creator (usually the launcher) calls create(), initialises payload(), then publish().
//    It may name another process as the segment's owner with set_owner() (the launcher, when a
//    helper created the segment for it).
//  - Any other process calls attach(); it waits (bounded) until the creator has published.
//  - Exactly one process, the run's owner, calls unlink() when the run ends. Destroying a
//    SharedSegment only unmaps it: a segment outlives every process until it is unlinked.
//  - sweep_stale_segments() may run in any process at any time: it removes only segments whose
//    owner (or, while unpublished, whose creator) is provably dead.
//
// Invariants:
//  - The header's magic is stored last, with release order, after the payload was initialised;
//    an attacher that reads it with acquire order sees a complete payload.
//  - format version, kind and payload size are constant once the magic is visible.
//  - The payload starts 64-byte aligned (a cache line), so payloads may hold alignas(64) types.
//  - Files are created with mode 0600: only the run's user can map them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/result.hpp"

namespace millrace::ipc {

// Error codes of the shared-memory component (Error::component == "shm").
enum class ShmError : int {
  kBadName = 1,   // not "/name" with [A-Za-z0-9._-] only, or too long
  kExists,        // create(): a segment of that name exists already
  kNotFound,      // attach(): no segment of that name appeared within the wait
  kNotPublished,  // attach(): the segment exists but its creator never published it
  kVersion,       // another segment format version
  kKind,          // another payload kind (e.g. a stats segment attached as a ring)
  kSize,          // the header's payload size does not fit the object's actual size
  kSystem,        // a system call failed (errno in Error::sys_errno)
};

inline constexpr std::size_t kSegmentPayloadAlignment = 64;

class SharedSegment {
 public:
  // Creates the object `name` ("/millrace-..."; see segment_name()) with room for
  // `payload_size` bytes (zero-filled) tagged `kind`. Fails with kExists if it exists already:
  // create never adopts a segment somebody else built.
  static Result<SharedSegment> create(std::string name, std::size_t payload_size,
                                      std::uint32_t kind);

  // Maps an existing segment, waiting up to `wait` for it to appear and be published (it may
  // be under construction by another process). Fails with kNotFound, kNotPublished, kVersion,
  // kKind or kSize, each naming the segment and what differs.
  static Result<SharedSegment> attach(std::string name, std::uint32_t kind,
                                      std::chrono::milliseconds wait = std::chrono::seconds(2));

  SharedSegment(SharedSegment&& other) noexcept;
  SharedSegment& operator=(SharedSegment&& other) noexcept;
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;
  ~SharedSegment();  // unmaps; never unlinks

  // Creator only, once, after the payload is initialised: makes the segment attachable.
  void publish();
  [[nodiscard]] bool published() const;

  [[nodiscard]] void* payload() { return payload_; }
  [[nodiscard]] const void* payload() const { return payload_; }
  [[nodiscard]] std::size_t payload_size() const { return payload_size_; }
  [[nodiscard]] std::uint32_t kind() const { return kind_; }
  [[nodiscard]] const std::string& name() const { return name_; }

  // Removes the name (shm_unlink); mappings stay valid until unmapped. Owner only.
  Status unlink();

  // Records `pid` (and its start time) as the process whose death makes this segment stale.
  // Defaults to the creator. Creator or owner only; safe against a concurrent sweep.
  void set_owner(pid_t pid);
  [[nodiscard]] pid_t owner() const;

 private:
  SharedSegment(std::string name, void* base, std::size_t map_size);
  void reset();

  std::string name_;
  void* base_ = nullptr;  // the header
  std::size_t map_size_ = 0;
  void* payload_ = nullptr;
  std::size_t payload_size_ = 0;
  std::uint32_t kind_ = 0;
};

// "/millrace-<run_id>-<what>". Both parts must be non-empty and use [A-Za-z0-9._-] only, and
// the whole must stay below NAME_MAX; violating that is a contract error (assert): run ids and
// link names are validated where they enter (config, command line).
std::string segment_name(std::string_view run_id, std::string_view what);

// True if `name` is a valid shared-memory object name of ours: "/" + [A-Za-z0-9._-]{1..NAME_MAX-1}.
bool valid_segment_name(std::string_view name);

// Removes every object in /dev/shm whose name starts with `prefix` (no leading slash) and that
// is one of our segments whose owner is dead: the owner pid does not exist, is a zombie, or now
// belongs to another process (its start time differs). An unpublished segment is judged by its
// creator instead. Objects that are not our segments (other magic, other format version) are
// left alone; so is one too short to hold a header, unless it has not changed for
// kUnclaimedGrace (its creator died between creating and sizing it). Returns the removed names
// ("/millrace-...").
inline constexpr std::chrono::seconds kUnclaimedGrace{10};
Result<std::vector<std::string>> sweep_stale_segments(std::string_view prefix = "millrace-");

// Start time of process `pid` in clock ticks since boot (/proc/PID/stat field 22), or nullopt
// if it does not exist. Together with the pid it names one process for good: pids are reused,
// (pid, start time) pairs are not.
std::optional<std::uint64_t> process_start_time(pid_t pid);

// False if `pid` does not exist, is a zombie, or (when start_time != 0) is not the process that
// started at `start_time`. True for a process of another user.
bool process_alive(pid_t pid, std::uint64_t start_time);

}  // namespace millrace::ipc
