// The shared-memory ring: a single-producer single-consumer queue of variable-length records in
// a SharedSegment, the fast transport behind LinkWriter/LinkReader (ipc/link.hpp).
//
// Who calls what:
//  - The creator (the launcher) calls create_ring_segment(), or Ring::init() on a payload of
//    Ring::payload_bytes(capacity) bytes before publishing the segment itself.
//  - One producer process attaches a RingProducer, one consumer process a RingConsumer; each is
//    used by one thread at a time. A restarted side simply attaches again: the producer resumes
//    at the published head (a dead producer's unpublished bytes are overwritten), the consumer
//    at the released tail (records a dead consumer peeked but did not release are read again).
//  - stats() and marks() may be read from either side; only the producer writes marks.
//
// Invariants:
//  - Positions are byte counts since the ring was created: head = bytes published, tail = bytes
//    released; tail <= head <= tail + capacity. The producer writes only in [head, tail +
//    capacity), the consumer reads only in [tail, head): no byte is ever shared by a writer and
//    a reader at the same time, so no lock is needed.
//  - head is stored with release order after the frames it covers are written; the consumer
//    loads it with acquire order before reading them. Symmetrically for tail and reuse of space.
//  - Each side caches the other's index and reloads the shared one only when its cached copy
//    says full (producer) or empty (consumer): the fast path touches no shared cache line but
//    its own, makes no system call and allocates nothing.
//  - A side sleeps on a futex only after announcing it in its wait word, and the other side
//    issues a wake only when it sees that announcement: an active pipeline makes no system
//    calls, an idle one burns no CPU.
//
// Frames: an 8-byte header {u32 length, u32 marker} followed by the payload, padded to 8 bytes.
// A record never wraps: when it does not fit before the end of the data area, a padding frame
// fills the rest and the record starts at offset 0. Hence the largest record is
// capacity / 2 - 8 bytes (Ring::max_record_size): with any larger one, the padding plus the
// record could exceed the capacity even in an empty ring. Payloads are 8-byte aligned.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

#include "ipc/link.hpp"
#include "ipc/result.hpp"
#include "ipc/shm_segment.hpp"

namespace millrace::ipc {

// SharedSegment kind tag of ring segments ("RING").
inline constexpr std::uint32_t kRingSegmentKind = 0x474e4952;

inline constexpr std::size_t kCacheLine = 64;

namespace detail {

// The ring's control block, at the start of the segment payload; the data area follows it.
// Its layout is part of kRingFormatVersion.
struct RingHeader {
  // Constant after Ring::init().
  std::uint32_t format_version = 0;
  std::uint32_t reserved = 0;
  std::uint64_t capacity = 0;

  // Producer-owned: written only by the producer. Stats use relaxed order (approximate, never
  // used for synchronisation) and survive producer restarts.
  alignas(kCacheLine) std::atomic<std::uint64_t> head{0};  // bytes published, all time
  std::atomic<std::int32_t> producer_pid{0};               // 0: no producer attached yet
  std::atomic<std::uint64_t> producer_start_time{0};
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> producer_blocked_ns{0};
  std::atomic<std::uint64_t> high_water_bytes{0};

  // Producer-owned, read rarely by anyone: see link.hpp.
  alignas(kCacheLine) std::atomic<std::uint64_t> marks[kMarkSlots] = {};

  // Consumer-owned.
  alignas(kCacheLine) std::atomic<std::uint64_t> tail{0};  // bytes released, all time
  std::atomic<std::int32_t> consumer_pid{0};
  std::atomic<std::uint64_t> consumer_start_time{0};
  std::atomic<std::uint64_t> consumer_waiting_ns{0};

  // Wait words, each alone on its line because both sides write them: 1 while the named side
  // is (about to be) asleep on it, reset to 0 by whoever wakes it.
  alignas(kCacheLine) std::atomic<std::uint32_t> consumer_sleeping{0};  // waits for data
  alignas(kCacheLine) std::atomic<std::uint32_t> producer_sleeping{0};  // waits for space
};

static_assert(std::is_standard_layout_v<RingHeader>, "the ring header is shared by processes");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free &&
                  std::atomic<std::int32_t>::is_always_lock_free,
              "ring atomics are shared between processes: they must be lock-free");
static_assert(offsetof(RingHeader, head) % kCacheLine == 0 &&
                  offsetof(RingHeader, tail) % kCacheLine == 0,
              "head and tail must each start a cache line");
static_assert(offsetof(RingHeader, marks) - offsetof(RingHeader, head) >= kCacheLine &&
                  offsetof(RingHeader, tail) - offsetof(RingHeader, marks) >=
                      kMarkSlots * sizeof(std::uint64_t),
              "producer line, marks and consumer line must not share a cache line");
static_assert(offsetof(RingHeader, consumer_sleeping) - offsetof(RingHeader, tail) >=
                      kCacheLine &&
                  offsetof(RingHeader, producer_sleeping) -
                          offsetof(RingHeader, consumer_sleeping) >=
                      kCacheLine,
              "each wait word must have a cache line of its own");
static_assert(sizeof(RingHeader) % kCacheLine == 0, "the data area must start a cache line");

}  // namespace detail

// Sizes and initialisation of a ring, for its creator.
class Ring {
 public:
  static constexpr std::size_t kMinCapacity = 4096;
  static constexpr std::size_t kMaxCapacity = std::size_t{1} << 32;  // lengths are u32
  static constexpr std::size_t kFrameHeaderBytes = 8;
  static constexpr std::size_t kFrameAlignment = 8;

  // A power of two in [kMinCapacity, kMaxCapacity].
  static constexpr bool valid_capacity(std::size_t capacity) {
    return capacity >= kMinCapacity && capacity <= kMaxCapacity &&
           (capacity & (capacity - 1)) == 0;
  }
  // Bytes of segment payload a ring of `capacity` data bytes needs.
  static constexpr std::size_t payload_bytes(std::size_t capacity) {
    return sizeof(detail::RingHeader) + capacity;
  }
  // The largest record a ring of `capacity` accepts (see the header comment).
  static constexpr std::size_t max_record_size(std::size_t capacity) {
    return capacity / 2 - kFrameHeaderBytes;
  }
  // Builds an empty ring in `payload` (64-byte aligned, payload_bytes(capacity) bytes).
  // Creator only, before the segment is published. valid_capacity(capacity) is a contract.
  static void init(void* payload, std::size_t capacity);
};

// Creates, initialises and publishes the ring segment `name`. valid_capacity(capacity) is a
// contract (configuration is validated before). The caller owns the name: unlink() it at the
// end of the run.
Result<SharedSegment> create_ring_segment(std::string name, std::size_t capacity);

// The writing end. Producer process only.
class RingProducer final : public LinkWriter {
 public:
  // Registers this process as the ring's producer and resumes at the published head. Errors
  // (component "link"): kVersion (another ring format), kCorrupt (impossible sizes or
  // indices). `segment` must outlive the producer.
  static Result<RingProducer> attach(SharedSegment& segment);

  RingProducer(RingProducer&& other) noexcept;
  RingProducer& operator=(RingProducer&& other) noexcept;
  RingProducer(const RingProducer&) = delete;
  RingProducer& operator=(const RingProducer&) = delete;
  ~RingProducer() override = default;  // unpublished commits are dropped, as on a kill

  // No system call, no allocation. A new try_reserve abandons an uncommitted reservation.
  [[nodiscard]] std::span<std::byte> try_reserve(std::size_t size) override;
  // Publishes the records committed so far before it waits (otherwise a batch larger than the
  // free space would wait forever), then spins briefly and sleeps. kPeerGone once the
  // consumer has been dead for ~100 ms of the wait; calling again keeps waiting for a
  // restarted one.
  Result<std::span<std::byte>> reserve_for(std::size_t size,
                                           std::chrono::nanoseconds timeout) override;
  void commit(std::size_t used) override;
  // Stores head (release) and wakes the consumer only if it announced it sleeps. Free when
  // nothing was committed since the last publish.
  Status publish() override;

  [[nodiscard]] std::size_t max_record_size() const override;
  [[nodiscard]] LinkStats stats() const override;
  [[nodiscard]] std::span<std::atomic<std::uint64_t>, kMarkSlots> marks() override;
  [[nodiscard]] bool peer_alive() const override;

  [[nodiscard]] std::size_t capacity() const { return static_cast<std::size_t>(capacity_); }
  // Bytes committed and not yet published.
  [[nodiscard]] std::size_t unpublished_bytes() const {
    return static_cast<std::size_t>(write_pos_ - published_);
  }

 private:
  RingProducer(detail::RingHeader* header, std::byte* data, std::string name);
  // Room for a frame of `need` bytes at write_pos_ (plus the padding a wrap needs) given the
  // tail `tail`; sets *frame_pos.
  [[nodiscard]] bool fits(std::uint64_t need, std::uint64_t tail,
                          std::uint64_t* frame_pos) const;

  detail::RingHeader* header_ = nullptr;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t write_pos_ = 0;    // end of the committed frames
  std::uint64_t published_ = 0;    // head as last stored
  std::uint64_t cached_tail_ = 0;  // the consumer's tail as last loaded
  std::uint64_t reserved_pos_ = 0;  // frame start of the open reservation (after any padding)
  std::uint64_t reserved_size_ = 0; // 0: no open reservation
  std::uint64_t pending_records_ = 0;
  std::uint64_t pending_bytes_ = 0;
  std::string name_;
};

// The reading end. Consumer process only.
class RingConsumer final : public LinkReader {
 public:
  // Registers this process as the ring's consumer and resumes at the released tail. Errors as
  // for RingProducer::attach. `segment` must outlive the consumer.
  static Result<RingConsumer> attach(SharedSegment& segment);

  RingConsumer(RingConsumer&& other) noexcept;
  RingConsumer& operator=(RingConsumer&& other) noexcept;
  RingConsumer(const RingConsumer&) = delete;
  RingConsumer& operator=(const RingConsumer&) = delete;
  ~RingConsumer() override = default;  // unreleased records will be read again

  // No system call, no allocation. nullopt when nothing is published, or when the next frame
  // is corrupt (then corrupt() is true and peek_for reports kCorrupt).
  [[nodiscard]] std::optional<std::span<const std::byte>> try_peek() override;
  // Never releases: a consumer holding every published record peeked must release (after
  // publishing their outputs, invariant 3) before waiting, or a full ring waits forever.
  Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds timeout) override;
  // Stores tail (release) and wakes the producer only if it announced it sleeps. Free when
  // nothing was peeked since the last release.
  Status release() override;
  [[nodiscard]] std::size_t peeked() const override {
    return static_cast<std::size_t>(peeked_records_);
  }

  [[nodiscard]] LinkStats stats() const override;
  [[nodiscard]] std::span<const std::atomic<std::uint64_t>, kMarkSlots> marks() const override;
  [[nodiscard]] bool peer_alive() const override;

  WaitSpec arm_wait() override;
  void disarm_wait() override;

  [[nodiscard]] bool corrupt() const { return corrupt_; }
  [[nodiscard]] std::size_t capacity() const { return static_cast<std::size_t>(capacity_); }

 private:
  RingConsumer(detail::RingHeader* header, std::byte* data, std::string name);
  [[nodiscard]] bool data_available();
  Error corrupt_error() const;

  detail::RingHeader* header_ = nullptr;
  const std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t read_pos_ = 0;     // end of the frames peeked
  std::uint64_t released_ = 0;     // tail as last stored
  std::uint64_t cached_head_ = 0;  // the producer's head as last loaded
  std::uint64_t peeked_records_ = 0;
  bool corrupt_ = false;
  std::string name_;
};

}  // namespace millrace::ipc
