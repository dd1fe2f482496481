// The pipe link: LinkWriter / LinkReader over the two ends of a pipe, for comparison with the
// shared-memory ring and for peers that cannot map memory.
//
// Who calls what:
//  - The launcher creates the pipe, may size it with set_pipe_size(), and hands the write end
//    to the producer process and the read end to the consumer process.
//  - The producer wraps its end with PipeWriter::from_fd(), the consumer with
//    PipeReader::from_fd(); each object is used by one thread at a time (link.hpp).
//
// Frames: [u32 length][u32 CRC-32C of the length and payload][payload][zero padding to 8].
// Lengths are 1..max_record_size(). Padding keeps every payload 8-byte aligned, as on a ring.
//
// Invariants:
//  - The writer fills its own batch buffer (`capacity` bytes); publish() writes the whole
//    batch into the pipe, handling partial writes and EINTR, and blocks while the pipe is full
//    (backpressure). reserve_for() publishes what is committed before it waits for space, like
//    the ring. So no record is visible before publish(), and a killed writer leaves at most an
//    unpublished batch plus one torn frame in the pipe.
//  - The reader reads large chunks into its buffer (3 x capacity) and hands out whole frames
//    only: a frame that fails its length or CRC check is kCorrupt and the link stays failed
//    (a byte stream cannot be resynchronised); a torn frame at end of file is reported as
//    kPeerGone once every complete frame before it has been peeked. Peeked spans stay valid
//    until release(). A reader that holds more than `capacity` bytes of peeked records may get
//    no more until it releases them (peek_for() then says so at once).
//  - Both ends must agree on `capacity` (the largest frame). By default both take the pipe's
//    own size (F_GETPIPE_SZ), which is the same number at both ends.
//  - SIGPIPE: creating a PipeWriter sets SIGPIPE to "ignore" for the process if it was at its
//    default (a write to a pipe whose reader died then fails with EPIPE, reported as
//    kPeerGone, instead of killing the process).
//  - Marks live in the writer's memory and die with it (link.hpp): a restarted producer on a
//    pipe starts with zero marks, and PipeReader::marks() is always zero.
//  - Stats are local to each end: the writer counts what it published and the time it was
//    blocked, the reader what it peeked and the time it waited; fill_bytes is approximate
//    (FIONREAD on the pipe plus the end's own buffered bytes).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ipc/link.hpp"
#include "ipc/result.hpp"

namespace millrace::ipc {

inline constexpr std::size_t kPipeFrameHeader = 8;
// Smallest capacity a pipe link accepts: one page, the smallest pipe the kernel makes.
inline constexpr std::size_t kPipeMinCapacity = 4096;

// Sets the kernel buffer of the pipe `fd` to at least `bytes` (the kernel rounds up to a power
// of two pages). Above /proc/sys/fs/pipe-max-size an unprivileged process gets an Error that
// names the limit and how to raise it.
Status set_pipe_size(int fd, std::size_t bytes);
// The kernel buffer size of the pipe `fd`.
Result<std::size_t> pipe_size(int fd);

class PipeWriter final : public LinkWriter {
 public:
  // Takes ownership of `fd`, the write end of a pipe (closed by the destructor). `capacity`:
  // bytes of the batch buffer, which bounds a record to capacity - 8; 0 means the pipe's size.
  // Sets O_NONBLOCK on the write end (the writer polls instead of blocking in write()).
  static Result<PipeWriter> from_fd(int fd, std::size_t capacity = 0);

  PipeWriter(PipeWriter&& other) noexcept;
  PipeWriter& operator=(PipeWriter&& other) noexcept;
  PipeWriter(const PipeWriter&) = delete;
  PipeWriter& operator=(const PipeWriter&) = delete;
  ~PipeWriter() override;  // unpublished commits are dropped, as on a kill

  // No system call: empty when the batch buffer is full. A new reservation abandons an
  // uncommitted one.
  [[nodiscard]] std::span<std::byte> try_reserve(std::size_t size) override;
  // Publishes the committed records first when the buffer is full, then waits for the pipe.
  // A size of 0 or above max_record_size() is kTooLarge.
  Result<std::span<std::byte>> reserve_for(std::size_t size,
                                           std::chrono::nanoseconds timeout) override;
  void commit(std::size_t used) override;
  // Blocks until the pipe has taken the whole batch or the reader is gone (kPeerGone).
  Status publish() override;

  [[nodiscard]] std::size_t max_record_size() const override { return capacity_ - kPipeFrameHeader; }
  [[nodiscard]] LinkStats stats() const override;
  [[nodiscard]] std::span<std::atomic<std::uint64_t>, kMarkSlots> marks() override;
  // False once a write failed with EPIPE or the pipe reports that its reader is gone.
  [[nodiscard]] bool peer_alive() const override;

  [[nodiscard]] int fd() const { return fd_; }

 private:
  PipeWriter(int fd, std::size_t capacity);
  // Writes buffered frames until none is left or `deadline` passes (nullopt: no limit).
  // Errors: kTimeout, kPeerGone, kSystem.
  Status flush(std::optional<std::chrono::steady_clock::time_point> deadline);
  std::span<std::byte> reserve_in_buffer(std::size_t size);
  void close_fd();

  int fd_ = -1;
  std::size_t capacity_ = 0;
  std::vector<std::byte> buffer_;
  std::size_t written_ = 0;         // buffer_[written_, committed_) is committed, not yet written
  std::size_t committed_ = 0;
  std::size_t reserved_size_ = 0;   // 0: no open reservation; it starts at committed_
  bool peer_gone_ = false;
  std::uint64_t pending_records_ = 0;  // committed, counted in stats_ once written
  std::uint64_t pending_bytes_ = 0;
  LinkStats stats_{};
  // In the writer's memory (see the header comment); boxed so that moves keep the address.
  std::unique_ptr<std::array<std::atomic<std::uint64_t>, kMarkSlots>> marks_;
};

class PipeReader final : public LinkReader {
 public:
  // Takes ownership of `fd`, the read end of a pipe (closed by the destructor). `capacity`
  // must equal the writer's; 0 means the pipe's size. Sets O_NONBLOCK on the read end.
  static Result<PipeReader> from_fd(int fd, std::size_t capacity = 0);

  PipeReader(PipeReader&& other) noexcept;
  PipeReader& operator=(PipeReader&& other) noexcept;
  PipeReader(const PipeReader&) = delete;
  PipeReader& operator=(const PipeReader&) = delete;
  ~PipeReader() override;

  // nullopt also when the link has failed or the writer is gone: peek_for() says which.
  [[nodiscard]] std::optional<std::span<const std::byte>> try_peek() override;
  Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds timeout) override;
  Status release() override;
  [[nodiscard]] std::size_t peeked() const override { return peeked_; }

  [[nodiscard]] LinkStats stats() const override;
  // Always zero: a pipe's marks live in the writer's memory.
  [[nodiscard]] std::span<const std::atomic<std::uint64_t>, kMarkSlots> marks() const override;
  // False once end of file was read or the pipe reports that its writer is gone.
  [[nodiscard]] bool peer_alive() const override;

  WaitSpec arm_wait() override;
  void disarm_wait() override {}

  [[nodiscard]] int fd() const { return fd_; }

 private:
  PipeReader(int fd, std::size_t capacity);
  enum class FrameState { kIncomplete, kComplete, kBad };
  // Validates the frame at parsed_ as far as it is buffered; sets error_ when it is bad.
  FrameState frame_state();
  // The next whole frame after parsed_, if buffered.
  std::optional<std::span<const std::byte>> next_buffered();
  // One non-blocking read into the buffer. False when nothing could be read (empty pipe, end
  // of file, no room until release(), or an error recorded in error_).
  bool read_more();
  void close_fd();

  int fd_ = -1;
  std::size_t capacity_ = 0;
  std::vector<std::byte> buffer_;
  std::size_t released_ = 0;  // buffer_[released_, parsed_) holds the peeked frames
  std::size_t parsed_ = 0;    // buffer_[parsed_, filled_) is read and not yet peeked
  std::size_t filled_ = 0;
  std::size_t peeked_ = 0;
  std::uint64_t stream_offset_ = 0;  // stream position of buffer_[0], for error messages
  bool eof_ = false;
  std::optional<Error> error_;  // sticky: kCorrupt or kSystem
  LinkStats stats_{};
  std::unique_ptr<std::array<std::atomic<std::uint64_t>, kMarkSlots>> marks_;
};

}  // namespace millrace::ipc
