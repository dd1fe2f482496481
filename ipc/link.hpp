// Links: how framed records move from one producer process to one consumer process.
//
// A link has exactly one writer (LinkWriter, in the producer process) and one reader
// (LinkReader, in the consumer process). Two transports implement them: the shared-memory
// ring (ipc/ring.hpp) and the pipe link (ipc/pipe_link.hpp). Nothing above this interface may
// assume that both ends share memory.
//
// Thread safety: each object is used by one thread of its process at a time.
//
// Records are opaque byte strings of 1..max_record_size() bytes. The writer reserves space,
// fills it, commits it, and publishes a batch of commits at once; the reader peeks records one
// by one and releases every record it has peeked at once. Nothing committed is visible before
// publish(); nothing peeked is overwritten before release(). A process killed at any
// instruction leaves at most an unpublished batch (writer) or an unreleased batch (reader):
// the next writer starts after the last published record, the next reader re-reads the
// unreleased ones.
//
// Marks: kMarkSlots 64-bit words per link, written only by the writer, readable by both. On a
// shared-memory ring they live in the segment and outlive the writer process, which is how a
// restarted producer learns what it already forwarded. On a pipe they live in the writer's
// memory and die with it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "ipc/result.hpp"

namespace millrace::ipc {

// Error codes of the link component (Error::component == "link").
enum class LinkError : int {
  kTooLarge = 1,  // the record can never fit in this link
  kTimeout,       // the timed wait ended before space or data was there
  kPeerGone,      // the other side died or closed (pipe EOF / EPIPE; dead ring peer)
  kCorrupt,       // a frame failed validation
  kVersion,       // the other side speaks another format version
  kSystem,        // a system call failed (errno in Error::sys_errno)
};

inline constexpr std::size_t kMarkSlots = 64;

struct LinkStats {
  std::uint64_t records = 0;             // records published through the link, all time
  std::uint64_t bytes = 0;               // payload bytes published, all time
  std::uint64_t capacity_bytes = 0;
  std::uint64_t fill_bytes = 0;          // published and not yet released, approximately
  std::uint64_t high_water_bytes = 0;    // largest fill seen
  std::uint64_t producer_blocked_ns = 0; // time the writer waited for space (backpressure)
  std::uint64_t consumer_waiting_ns = 0; // time the reader waited for data (starvation)
};

// What a reader sleeps on, for wait_any(): a futex word and the value it must still hold, or a
// file descriptor to poll. `ready` means data arrived while arming: do not sleep.
struct WaitSpec {
  std::atomic<std::uint32_t>* futex = nullptr;
  std::uint32_t expected = 0;
  int fd = -1;
  bool ready = false;
};

class LinkWriter {
 public:
  virtual ~LinkWriter() = default;

  // Contiguous space for one record of up to `size` bytes, or an empty span if there is no room
  // now. The span is valid until commit(). `size` above max_record_size() is a contract error.
  [[nodiscard]] virtual std::span<std::byte> try_reserve(std::size_t size) = 0;
  // Like try_reserve, waiting up to `timeout` (spin briefly, then sleep). Errors: kTooLarge,
  // kTimeout, kPeerGone, kSystem.
  virtual Result<std::span<std::byte>> reserve_for(std::size_t size,
                                                   std::chrono::nanoseconds timeout) = 0;
  // Completes the reserved record with its final length (1 <= used <= reserved size).
  virtual void commit(std::size_t used) = 0;
  // Makes every committed record visible to the reader and wakes it if it sleeps. Cheap when
  // there is nothing to publish. Errors: kPeerGone, kSystem (pipes only).
  virtual Status publish() = 0;

  [[nodiscard]] virtual std::size_t max_record_size() const = 0;
  [[nodiscard]] virtual LinkStats stats() const = 0;
  // The writer's marks (see the header comment).
  [[nodiscard]] virtual std::span<std::atomic<std::uint64_t>, kMarkSlots> marks() = 0;
  // False once the reader is known to be dead or gone.
  [[nodiscard]] virtual bool peer_alive() const = 0;
};

class LinkReader {
 public:
  virtual ~LinkReader() = default;

  // The next record after the ones already peeked, or nullopt if none is published yet.
  // The bytes stay valid until release().
  [[nodiscard]] virtual std::optional<std::span<const std::byte>> try_peek() = 0;
  // Like try_peek, waiting up to `timeout`. Errors: kTimeout, kPeerGone (pipe: writer closed
  // and nothing is left), kCorrupt, kSystem.
  virtual Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds timeout) = 0;
  // Gives back the space of every record peeked so far; wakes the writer if it sleeps.
  virtual Status release() = 0;
  // Number of records peeked and not yet released.
  [[nodiscard]] virtual std::size_t peeked() const = 0;

  [[nodiscard]] virtual LinkStats stats() const = 0;
  // The writer's marks, read-only here.
  [[nodiscard]] virtual std::span<const std::atomic<std::uint64_t>, kMarkSlots> marks() const = 0;
  [[nodiscard]] virtual bool peer_alive() const = 0;

  // For wait_any(): announce that this reader is about to sleep (so the writer will wake it)
  // and say what to sleep on; disarm_wait() after waking.
  virtual WaitSpec arm_wait() = 0;
  virtual void disarm_wait() = 0;
};

// Waits until at least one of `readers` has a record to peek, or `timeout` passes. Returns
// the index of a ready reader; kTimeout if none became ready. Sleeps without using CPU
// (futex_waitv for rings, poll for pipes).
Result<std::size_t> wait_any(std::span<LinkReader* const> readers,
                             std::chrono::nanoseconds timeout);

}  // namespace millrace::ipc
