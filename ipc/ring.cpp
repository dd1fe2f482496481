#include "ipc/ring.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "ipc/futex.hpp"
#include "ipc/version.hpp"

namespace millrace::ipc {
namespace {

using detail::RingHeader;
using Clock = std::chrono::steady_clock;

// Frame markers; anything else in a frame header is corruption.
constexpr std::uint32_t kRecordMarker = 0x44524352;   // "RCRD"
constexpr std::uint32_t kPaddingMarker = 0x44444150;  // "PADD"

// Spinning a few microseconds catches a peer that is mid-batch (a cache-line round trip is
// ~150 ns here) without stealing a core for long (the machine has 2 cores and 4+ processes).
constexpr auto kSpinFor = std::chrono::microseconds(4);
constexpr int kRelaxPerCheck = 16;
// How often a long wait checks that the peer still exists.
constexpr auto kLivenessEvery = std::chrono::milliseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

constexpr std::uint64_t frame_bytes(std::uint64_t payload) {
  return (Ring::kFrameHeaderBytes + payload + Ring::kFrameAlignment - 1) &
         ~std::uint64_t{Ring::kFrameAlignment - 1};
}

struct FrameHeader {
  std::uint32_t length;
  std::uint32_t marker;
};
static_assert(sizeof(FrameHeader) == Ring::kFrameHeaderBytes, "frame header is 8 bytes");

Error link_error(LinkError code, std::string message, int err = 0) {
  return Error{"link", static_cast<int>(code), std::move(message), err};
}

Clock::time_point deadline_after(Clock::time_point start, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return start;
  if (timeout >= Clock::time_point::max() - start) return Clock::time_point::max();
  return start + std::chrono::duration_cast<Clock::duration>(timeout);
}

RingHeader* header_of(void* payload) { return std::launder(static_cast<RingHeader*>(payload)); }

void add_relaxed(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
  // Single writer per counter: a load and a store are enough, and cheaper than a locked add.
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void register_self(std::atomic<std::int32_t>& pid, std::atomic<std::uint64_t>& start) {
  const pid_t self = ::getpid();
  start.store(process_start_time(self).value_or(0), std::memory_order_relaxed);
  // Release: a peer that loads this pid with acquire sees the start time stored above.
  pid.store(self, std::memory_order_release);
}

bool peer_dead(const std::atomic<std::int32_t>& pid, const std::atomic<std::uint64_t>& start) {
  const pid_t p = pid.load(std::memory_order_acquire);
  if (p == 0) return false;  // never attached: not known to be dead
  if (process_alive(p, start.load(std::memory_order_relaxed))) return false;
  // A restarted peer may have registered between the loads: judge only a stable pid.
  return pid.load(std::memory_order_acquire) == p;
}

// Wakes the side sleeping on `word` if it announced so. Caller: after storing its index and a
// seq_cst fence (see wait_until).
Status wake_if_sleeping(std::atomic<std::uint32_t>& word, const std::string& name) {
  if (word.load(std::memory_order_relaxed) == 0) return ok_status();
  if (word.exchange(0, std::memory_order_relaxed) == 0) return ok_status();
  auto woken = futex_wake(&word, 1);
  if (!woken) {
    return link_error(LinkError::kSystem,
                      "ring " + name + ": waking the peer failed: " + woken.error().message,
                      woken.error().sys_errno);
  }
  return ok_status();
}

// Waits until ready() (which reloads the peer's index) holds: spins for kSpinFor, then sleeps
// on `sleep_word`, checking the peer every kLivenessEvery. Adds the time waited to `waited_ns`.
template <typename Ready>
Status wait_until(Ready&& ready, std::atomic<std::uint32_t>& sleep_word,
                  const std::atomic<std::int32_t>& peer_pid,
                  const std::atomic<std::uint64_t>& peer_start, std::chrono::nanoseconds timeout,
                  std::atomic<std::uint64_t>& waited_ns, const std::string& name,
                  const char* waiting_for) {
  const auto start = Clock::now();
  const auto deadline = deadline_after(start, timeout);
  auto finish = [&](Status st) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    add_relaxed(waited_ns, static_cast<std::uint64_t>(ns.count()));
    return st;
  };

  const auto spin_until = std::min(start + kSpinFor, deadline);
  do {
    for (int i = 0; i < kRelaxPerCheck; ++i) cpu_relax();
    if (ready()) return finish(ok_status());
  } while (Clock::now() < spin_until);

  auto next_liveness = start + kLivenessEvery;
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline) {
      return finish(link_error(LinkError::kTimeout,
                               "ring " + name + ": timed out waiting for " + waiting_for));
    }
    sleep_word.store(1, std::memory_order_relaxed);
    // The sleep/wake handshake (Dekker): we store our announcement, fence, then reload the
    // peer's index; the peer stores its index, fences, then loads our announcement. The two
    // seq_cst fences guarantee that at least one side sees the other's store: either the peer
    // wakes us, or ready() sees its progress here. Acquire/release alone would allow both to
    // miss each other and sleep forever.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
      sleep_word.store(0, std::memory_order_relaxed);
      return finish(ok_status());
    }
    const auto slice = std::min(deadline, next_liveness) - now;
    auto slept = futex_wait(&sleep_word, 1, std::chrono::duration_cast<std::chrono::nanoseconds>(slice));
    sleep_word.store(0, std::memory_order_relaxed);
    if (!slept) {
      return finish(link_error(LinkError::kSystem,
                               "ring " + name + ": sleeping failed: " + slept.error().message,
                               slept.error().sys_errno));
    }
    if (ready()) return finish(ok_status());
    now = Clock::now();
    if (now >= next_liveness) {
      if (peer_dead(peer_pid, peer_start)) {
        return finish(link_error(
            LinkError::kPeerGone,
            "ring " + name + ": the peer process (pid " +
                std::to_string(peer_pid.load(std::memory_order_relaxed)) +
                ") is gone while waiting for " + waiting_for +
                "; wait again to resume with a restarted one"));
      }
      next_liveness = now + kLivenessEvery;
    }
  }
}

// Validates a ring in `segment` and returns its header.
Result<RingHeader*> open_ring(SharedSegment& segment) {
  const std::string& name = segment.name();
  if (segment.payload_size() < sizeof(RingHeader)) {
    return link_error(LinkError::kCorrupt, "ring " + name + ": segment payload of " +
                                               std::to_string(segment.payload_size()) +
                                               " bytes is too small for a ring header");
  }
  RingHeader* h = header_of(segment.payload());
  if (h->format_version != kRingFormatVersion) {
    return link_error(LinkError::kVersion,
                      "ring " + name + ": ring format version " +
                          std::to_string(h->format_version) + ", this program speaks version " +
                          std::to_string(kRingFormatVersion) +
                          "; run every stage of a pipeline from the same millrace build");
  }
  const std::uint64_t cap = h->capacity;
  if (!Ring::valid_capacity(static_cast<std::size_t>(cap)) ||
      Ring::payload_bytes(static_cast<std::size_t>(cap)) > segment.payload_size()) {
    return link_error(LinkError::kCorrupt,
                      "ring " + name + ": capacity " + std::to_string(cap) +
                          " is not a power of two >= 4096 that fits the " +
                          std::to_string(segment.payload_size()) + "-byte segment payload");
  }
  const std::uint64_t tail = h->tail.load(std::memory_order_acquire);
  const std::uint64_t head = h->head.load(std::memory_order_acquire);
  if (tail > head || head - tail > cap || head % Ring::kFrameAlignment != 0 ||
      tail % Ring::kFrameAlignment != 0) {
    return link_error(LinkError::kCorrupt, "ring " + name + ": impossible indices head=" +
                                               std::to_string(head) +
                                               " tail=" + std::to_string(tail) +
                                               "; remove the segment and restart the run");
  }
  return h;
}

LinkStats read_stats(const RingHeader& h) {
  LinkStats s;
  // Tail first, with acquire: the head loaded after it is at least the head the consumer had
  // seen when it released up to this tail, so fill never goes negative.
  const std::uint64_t tail = h.tail.load(std::memory_order_acquire);
  const std::uint64_t head = h.head.load(std::memory_order_relaxed);
  s.records = h.records.load(std::memory_order_relaxed);
  s.bytes = h.bytes.load(std::memory_order_relaxed);
  s.capacity_bytes = h.capacity;
  s.fill_bytes = head >= tail ? head - tail : 0;
  s.high_water_bytes = h.high_water_bytes.load(std::memory_order_relaxed);
  s.producer_blocked_ns = h.producer_blocked_ns.load(std::memory_order_relaxed);
  s.consumer_waiting_ns = h.consumer_waiting_ns.load(std::memory_order_relaxed);
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ring

void Ring::init(void* payload, std::size_t capacity) {
  assert(valid_capacity(capacity) && "Ring::init: capacity must be a power of two >= 4096");
  assert(reinterpret_cast<std::uintptr_t>(payload) % kCacheLine == 0 &&
         "Ring::init: payload must be 64-byte aligned");
  auto* h = ::new (payload) RingHeader{};
  h->format_version = kRingFormatVersion;
  h->capacity = capacity;
  // The data area needs no initialisation: no byte beyond head is ever read.
}

Result<SharedSegment> create_ring_segment(std::string name, std::size_t capacity) {
  assert(Ring::valid_capacity(capacity) &&
         "create_ring_segment: capacity must be a power of two >= 4096");
  auto segment = SharedSegment::create(std::move(name), Ring::payload_bytes(capacity),
                                       kRingSegmentKind);
  if (!segment) return segment.error();
  Ring::init(segment->payload(), capacity);
  segment->publish();
  return std::move(segment).value();
}

// ---------------------------------------------------------------------------------------------
// RingProducer

RingProducer::RingProducer(RingHeader* header, std::byte* data, std::string name)
    : header_(header),
      data_(data),
      capacity_(header->capacity),
      mask_(header->capacity - 1),
      write_pos_(header->head.load(std::memory_order_acquire)),
      published_(write_pos_),
      cached_tail_(header->tail.load(std::memory_order_acquire)),
      name_(std::move(name)) {}

RingProducer::RingProducer(RingProducer&& other) noexcept
    : header_(std::exchange(other.header_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      capacity_(other.capacity_),
      mask_(other.mask_),
      write_pos_(other.write_pos_),
      published_(other.published_),
      cached_tail_(other.cached_tail_),
      reserved_pos_(other.reserved_pos_),
      reserved_size_(std::exchange(other.reserved_size_, 0)),
      pending_records_(std::exchange(other.pending_records_, 0)),
      pending_bytes_(std::exchange(other.pending_bytes_, 0)),
      name_(std::move(other.name_)) {}

RingProducer& RingProducer::operator=(RingProducer&& other) noexcept {
  if (this != &other) {
    header_ = std::exchange(other.header_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = other.capacity_;
    mask_ = other.mask_;
    write_pos_ = other.write_pos_;
    published_ = other.published_;
    cached_tail_ = other.cached_tail_;
    reserved_pos_ = other.reserved_pos_;
    reserved_size_ = std::exchange(other.reserved_size_, 0);
    pending_records_ = std::exchange(other.pending_records_, 0);
    pending_bytes_ = std::exchange(other.pending_bytes_, 0);
    name_ = std::move(other.name_);
  }
  return *this;
}

Result<RingProducer> RingProducer::attach(SharedSegment& segment) {
  auto header = open_ring(segment);
  if (!header) return header.error();
  RingHeader* h = *header;
  // A predecessor killed in its sleep leaves its announcement behind.
  h->producer_sleeping.store(0, std::memory_order_relaxed);
  register_self(h->producer_pid, h->producer_start_time);
  auto* data = static_cast<std::byte*>(segment.payload()) + sizeof(RingHeader);
  return RingProducer(h, data, segment.name());
}

bool RingProducer::fits(std::uint64_t need, std::uint64_t tail, std::uint64_t* frame_pos) const {
  const std::uint64_t to_end = capacity_ - (write_pos_ & mask_);
  const std::uint64_t pos = need <= to_end ? write_pos_ : write_pos_ + to_end;
  *frame_pos = pos;
  return pos + need - tail <= capacity_;
}

std::span<std::byte> RingProducer::try_reserve(std::size_t size) {
  assert(header_ != nullptr && "try_reserve() on a moved-from RingProducer");
  assert(size >= 1 && size <= max_record_size() &&
         "try_reserve: size must be 1..max_record_size() (reserve_for reports kTooLarge)");
  const std::uint64_t need = frame_bytes(size);
  std::uint64_t pos = 0;
  if (!fits(need, cached_tail_, &pos)) {
    // Only now look at the consumer's line. Acquire: the consumer finished reading the space
    // it released before it stored this tail.
    cached_tail_ = header_->tail.load(std::memory_order_acquire);
    if (!fits(need, cached_tail_, &pos)) return {};
  }
  reserved_pos_ = pos;
  reserved_size_ = size;
  return {data_ + (pos & mask_) + Ring::kFrameHeaderBytes, size};
}

Result<std::span<std::byte>> RingProducer::reserve_for(std::size_t size,
                                                       std::chrono::nanoseconds timeout) {
  assert(header_ != nullptr && "reserve_for() on a moved-from RingProducer");
  if (size == 0 || size > max_record_size()) {
    return link_error(LinkError::kTooLarge,
                      "ring " + name_ + ": a record of " + std::to_string(size) +
                          " bytes can never fit; records are 1.." +
                          std::to_string(max_record_size()) + " bytes with a " +
                          std::to_string(capacity_) +
                          "-byte ring (the largest is capacity/2 - 8): raise the link's capacity");
  }
  const auto start = Clock::now();
  const auto deadline = deadline_after(start, timeout);
  for (;;) {
    if (auto span = try_reserve(size); !span.empty()) return span;
    if (write_pos_ != published_) {
      if (auto st = publish(); !st) return st.error();
    }
    const std::uint64_t need = frame_bytes(size);
    auto has_space = [&] {
      std::uint64_t pos = 0;
      cached_tail_ = header_->tail.load(std::memory_order_acquire);
      return fits(need, cached_tail_, &pos);
    };
    const auto now = Clock::now();
    const auto left = deadline > now ? deadline - now : Clock::duration::zero();
    auto st = wait_until(has_space, header_->producer_sleeping, header_->consumer_pid,
                         header_->consumer_start_time,
                         std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                         header_->producer_blocked_ns, name_, "space");
    if (!st) return st.error();
  }
}

void RingProducer::commit(std::size_t used) {
  assert(header_ != nullptr && "commit() on a moved-from RingProducer");
  assert(reserved_size_ != 0 && "commit() without a reservation");
  assert(used >= 1 && used <= reserved_size_ && "commit: used must be 1..reserved size");
  if (reserved_pos_ != write_pos_) {
    // The record wraps: a padding frame covers the rest of the data area.
    const FrameHeader pad{
        static_cast<std::uint32_t>(reserved_pos_ - write_pos_ - Ring::kFrameHeaderBytes),
        kPaddingMarker};
    std::memcpy(data_ + (write_pos_ & mask_), &pad, sizeof pad);
  }
  const FrameHeader frame{static_cast<std::uint32_t>(used), kRecordMarker};
  std::memcpy(data_ + (reserved_pos_ & mask_), &frame, sizeof frame);
  write_pos_ = reserved_pos_ + frame_bytes(used);
  reserved_size_ = 0;
  ++pending_records_;
  pending_bytes_ += used;
}

Status RingProducer::publish() {
  assert(header_ != nullptr && "publish() on a moved-from RingProducer");
  if (write_pos_ == published_) return ok_status();
  // Release: the frames written above are visible to a consumer that acquires this head.
  header_->head.store(write_pos_, std::memory_order_release);
  published_ = write_pos_;
  add_relaxed(header_->records, pending_records_);
  add_relaxed(header_->bytes, pending_bytes_);
  pending_records_ = 0;
  pending_bytes_ = 0;
  // High water: write_pos_ - cached_tail_ bounds the fill from above; reload the real tail
  // only when that bound beats the record, so this costs a shared-line read only rarely.
  const std::uint64_t high = header_->high_water_bytes.load(std::memory_order_relaxed);
  if (write_pos_ - cached_tail_ > high) {
    cached_tail_ = header_->tail.load(std::memory_order_acquire);
    const std::uint64_t fill = write_pos_ - cached_tail_;
    if (fill > high) header_->high_water_bytes.store(fill, std::memory_order_relaxed);
  }
  // Pairs with the fence in the consumer's wait (see wait_until): the head store above is
  // ordered before the load of the consumer's sleep announcement.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return wake_if_sleeping(header_->consumer_sleeping, name_);
}

std::size_t RingProducer::max_record_size() const {
  return Ring::max_record_size(static_cast<std::size_t>(capacity_));
}

LinkStats RingProducer::stats() const {
  assert(header_ != nullptr && "stats() on a moved-from RingProducer");
  return read_stats(*header_);
}

std::span<std::atomic<std::uint64_t>, kMarkSlots> RingProducer::marks() {
  assert(header_ != nullptr && "marks() on a moved-from RingProducer");
  return std::span<std::atomic<std::uint64_t>, kMarkSlots>(header_->marks);
}

bool RingProducer::peer_alive() const {
  assert(header_ != nullptr && "peer_alive() on a moved-from RingProducer");
  return !peer_dead(header_->consumer_pid, header_->consumer_start_time);
}

// ---------------------------------------------------------------------------------------------
// RingConsumer

RingConsumer::RingConsumer(RingHeader* header, std::byte* data, std::string name)
    : header_(header),
      data_(data),
      capacity_(header->capacity),
      mask_(header->capacity - 1),
      read_pos_(header->tail.load(std::memory_order_acquire)),
      released_(read_pos_),
      cached_head_(read_pos_),
      name_(std::move(name)) {}

RingConsumer::RingConsumer(RingConsumer&& other) noexcept
    : header_(std::exchange(other.header_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      capacity_(other.capacity_),
      mask_(other.mask_),
      read_pos_(other.read_pos_),
      released_(other.released_),
      cached_head_(other.cached_head_),
      peeked_records_(std::exchange(other.peeked_records_, 0)),
      corrupt_(other.corrupt_),
      name_(std::move(other.name_)) {}

RingConsumer& RingConsumer::operator=(RingConsumer&& other) noexcept {
  if (this != &other) {
    header_ = std::exchange(other.header_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = other.capacity_;
    mask_ = other.mask_;
    read_pos_ = other.read_pos_;
    released_ = other.released_;
    cached_head_ = other.cached_head_;
    peeked_records_ = std::exchange(other.peeked_records_, 0);
    corrupt_ = other.corrupt_;
    name_ = std::move(other.name_);
  }
  return *this;
}

Result<RingConsumer> RingConsumer::attach(SharedSegment& segment) {
  auto header = open_ring(segment);
  if (!header) return header.error();
  RingHeader* h = *header;
  h->consumer_sleeping.store(0, std::memory_order_relaxed);
  register_self(h->consumer_pid, h->consumer_start_time);
  auto* data = static_cast<std::byte*>(segment.payload()) + sizeof(RingHeader);
  return RingConsumer(h, data, segment.name());
}

bool RingConsumer::data_available() {
  // Acquire: frames below the loaded head are completely written.
  cached_head_ = header_->head.load(std::memory_order_acquire);
  return cached_head_ != read_pos_;
}

std::optional<std::span<const std::byte>> RingConsumer::try_peek() {
  assert(header_ != nullptr && "try_peek() on a moved-from RingConsumer");
  for (;;) {
    if (corrupt_) return std::nullopt;
    if (read_pos_ == cached_head_ && !data_available()) return std::nullopt;
    const std::uint64_t offset = read_pos_ & mask_;
    const std::uint64_t avail = cached_head_ - read_pos_;
    const std::uint64_t to_end = capacity_ - offset;
    if (cached_head_ < read_pos_ || cached_head_ - released_ > capacity_ ||
        avail < Ring::kFrameHeaderBytes) {
      corrupt_ = true;
      return std::nullopt;
    }
    FrameHeader frame{};
    std::memcpy(&frame, data_ + offset, sizeof frame);
    if (frame.marker == kPaddingMarker) {
      if (frame.length + Ring::kFrameHeaderBytes != to_end || to_end > avail) {
        corrupt_ = true;
        return std::nullopt;
      }
      read_pos_ += to_end;
      continue;
    }
    const std::uint64_t bytes = frame_bytes(frame.length);
    if (frame.marker != kRecordMarker || frame.length == 0 ||
        frame.length > Ring::max_record_size(static_cast<std::size_t>(capacity_)) ||
        bytes > to_end || bytes > avail) {
      corrupt_ = true;
      return std::nullopt;
    }
    read_pos_ += bytes;
    ++peeked_records_;
    return std::span<const std::byte>(data_ + offset + Ring::kFrameHeaderBytes, frame.length);
  }
}

Error RingConsumer::corrupt_error() const {
  return link_error(LinkError::kCorrupt,
                    "ring " + name_ + ": invalid frame at byte " + std::to_string(read_pos_) +
                        " (published up to " + std::to_string(cached_head_) +
                        "); the segment was damaged: remove it and restart the run");
}

Result<std::span<const std::byte>> RingConsumer::peek_for(std::chrono::nanoseconds timeout) {
  assert(header_ != nullptr && "peek_for() on a moved-from RingConsumer");
  const auto deadline = deadline_after(Clock::now(), timeout);
  for (;;) {
    if (auto record = try_peek()) return *record;
    if (corrupt_) return corrupt_error();
    const auto now = Clock::now();
    const auto left = deadline > now ? deadline - now : Clock::duration::zero();
    auto st = wait_until([this] { return data_available(); }, header_->consumer_sleeping,
                         header_->producer_pid, header_->producer_start_time,
                         std::chrono::duration_cast<std::chrono::nanoseconds>(left),
                         header_->consumer_waiting_ns, name_, "data");
    if (!st) return st.error();
  }
}

Status RingConsumer::release() {
  assert(header_ != nullptr && "release() on a moved-from RingConsumer");
  if (read_pos_ == released_) return ok_status();
  // Release: our reads of the records below this tail are done before the producer, which
  // acquires the tail, reuses their space.
  header_->tail.store(read_pos_, std::memory_order_release);
  released_ = read_pos_;
  peeked_records_ = 0;
  // Pairs with the fence in the producer's wait (see wait_until).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return wake_if_sleeping(header_->producer_sleeping, name_);
}

LinkStats RingConsumer::stats() const {
  assert(header_ != nullptr && "stats() on a moved-from RingConsumer");
  return read_stats(*header_);
}

std::span<const std::atomic<std::uint64_t>, kMarkSlots> RingConsumer::marks() const {
  assert(header_ != nullptr && "marks() on a moved-from RingConsumer");
  return std::span<const std::atomic<std::uint64_t>, kMarkSlots>(header_->marks);
}

bool RingConsumer::peer_alive() const {
  assert(header_ != nullptr && "peer_alive() on a moved-from RingConsumer");
  return !peer_dead(header_->producer_pid, header_->producer_start_time);
}

WaitSpec RingConsumer::arm_wait() {
  assert(header_ != nullptr && "arm_wait() on a moved-from RingConsumer");
  header_->consumer_sleeping.store(1, std::memory_order_relaxed);
  // Same handshake as wait_until: announce, fence, then re-check the head.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  WaitSpec spec;
  spec.futex = &header_->consumer_sleeping;
  spec.expected = 1;
  spec.ready = corrupt_ || data_available();
  return spec;
}

void RingConsumer::disarm_wait() {
  assert(header_ != nullptr && "disarm_wait() on a moved-from RingConsumer");
  header_->consumer_sleeping.store(0, std::memory_order_relaxed);
}

}  // namespace millrace::ipc
