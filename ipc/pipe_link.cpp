#include "ipc/pipe_link.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

using Clock = std::chrono::steady_clock;

Error link_error(LinkError code, std::string message, int err = 0) {
  return Error{"link", static_cast<int>(code), std::move(message), err};
}

std::string fd_name(int fd) { return "pipe fd " + std::to_string(fd); }

constexpr std::size_t padded(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

void store_u32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}
std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint32_t>(p[i]);
  return v;
}

// --- CRC-32C (Castagnoli): the SSE4.2 instruction when the CPU has it, else a table. ---

constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

std::uint32_t crc32c_table(std::uint32_t crc, const std::byte* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    crc = kCrc32cTable[(crc ^ static_cast<std::uint8_t>(p[i])) & 0xFF] ^ (crc >> 8);
  }
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                               const std::byte* p,
                                                               std::size_t n) {
  std::uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*p));
  return c32;
}
#endif

std::uint32_t crc32c_update(std::uint32_t crc, const std::byte* p, std::size_t n) {
#if defined(__x86_64__)
  static const bool have_sse42 = __builtin_cpu_supports("sse4.2");
  if (have_sse42) return crc32c_sse42(crc, p, n);
#endif
  return crc32c_table(crc, p, n);
}

// The frame checksum covers the length field too, so a garbled length is caught.
std::uint32_t frame_crc(const std::byte* length_field, const std::byte* payload, std::size_t n) {
  std::uint32_t crc = ~0u;
  crc = crc32c_update(crc, length_field, 4);
  crc = crc32c_update(crc, payload, n);
  return ~crc;
}

// Waits for `events` on fd until `deadline` (nullopt: no limit). Returns the revents, 0 on
// timeout; EINTR counts as a spurious wake-up.
Result<short> wait_fd(int fd, short events, std::optional<Clock::time_point> deadline) {
  pollfd pfd{fd, events, 0};
  timespec ts{};
  timespec* tsp = nullptr;
  if (deadline) {
    const auto left = std::max(Clock::duration::zero(), *deadline - Clock::now());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    tsp = &ts;
  }
  const int rc = ::ppoll(&pfd, 1, tsp, nullptr);
  if (rc < 0) {
    if (errno == EINTR) return short{0};
    return link_error(LinkError::kSystem, "poll(" + fd_name(fd) + "): " + errno_text(errno), errno);
  }
  return rc == 0 ? short{0} : pfd.revents;
}

short poll_now(int fd, short events) {
  pollfd pfd{fd, events, 0};
  return ::poll(&pfd, 1, 0) > 0 ? pfd.revents : short{0};
}

std::uint64_t bytes_in_pipe(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? static_cast<std::uint64_t>(n) : 0;
}

// Checks that fd is a pipe end opened for `mode` and sets O_NONBLOCK on it.
Status adopt_pipe_end(int fd, int mode, const char* end_name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return link_error(LinkError::kSystem, "fstat(" + fd_name(fd) + "): " + errno_text(errno),
                      errno);
  }
  if (!S_ISFIFO(st.st_mode)) {
    return link_error(LinkError::kSystem,
                      "fd " + std::to_string(fd) + " is not a pipe: a pipe link needs the " +
                          end_name + " end of a pipe");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    return link_error(LinkError::kSystem, "fcntl(" + fd_name(fd) + "): " + errno_text(errno),
                      errno);
  }
  if ((flags & O_ACCMODE) != mode) {
    return link_error(LinkError::kSystem, fd_name(fd) + " is not the " + end_name +
                                              " end of its pipe: swap the two ends");
  }
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return link_error(LinkError::kSystem,
                      "fcntl(" + fd_name(fd) + ", O_NONBLOCK): " + errno_text(errno), errno);
  }
  return ok_status();
}

Result<std::size_t> link_capacity(int fd, std::size_t capacity) {
  if (capacity == 0) {
    auto size = pipe_size(fd);
    if (!size) return size.error();
    capacity = *size;
  }
  capacity &= ~std::size_t{7};
  if (capacity < kPipeMinCapacity) {
    return link_error(LinkError::kSystem, fd_name(fd) + ": a pipe link needs a capacity of at least " +
                                              std::to_string(kPipeMinCapacity) + " bytes, not " +
                                              std::to_string(capacity));
  }
  return capacity;
}

// A write to a pipe whose reader died must fail with EPIPE, not kill the process.
void ignore_sigpipe_once() {
  static const bool done = [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigemptyset(&ignore.sa_mask);
      ::sigaction(SIGPIPE, &ignore, nullptr);
    }
    return true;
  }();
  static_cast<void>(done);
}

std::uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

}  // namespace

// --- Pipe size --------------------------------------------------------------------------------

Result<std::size_t> pipe_size(int fd) {
  const int size = ::fcntl(fd, F_GETPIPE_SZ);
  if (size < 0) {
    return link_error(LinkError::kSystem,
                      "fcntl(" + fd_name(fd) + ", F_GETPIPE_SZ): " + errno_text(errno), errno);
  }
  return static_cast<std::size_t>(size);
}

Status set_pipe_size(int fd, std::size_t bytes) {
  if (bytes > static_cast<std::size_t>(INT32_MAX)) bytes = static_cast<std::size_t>(INT32_MAX);
  if (::fcntl(fd, F_SETPIPE_SZ, static_cast<int>(bytes)) >= 0) return ok_status();
  const int err = errno;
  if (err == EPERM || err == EINVAL) {
    std::string limit = "unknown";
    std::ifstream in("/proc/sys/fs/pipe-max-size");
    if (std::string text; in >> text) limit = text;
    return link_error(
        LinkError::kSystem,
        "cannot size " + fd_name(fd) + " to " + std::to_string(bytes) +
            " bytes: the limit for unprivileged processes is " + limit +
            " bytes (/proc/sys/fs/pipe-max-size); lower the link's capacity to at most " + limit +
            ", raise the limit (sysctl fs.pipe-max-size=" + std::to_string(bytes) +
            "), or use a shared-memory link",
        err);
  }
  return link_error(LinkError::kSystem,
                    "fcntl(" + fd_name(fd) + ", F_SETPIPE_SZ, " + std::to_string(bytes) +
                        "): " + errno_text(err),
                    err);
}

// --- PipeWriter -------------------------------------------------------------------------------

Result<PipeWriter> PipeWriter::from_fd(int fd, std::size_t capacity) {
  if (auto st = adopt_pipe_end(fd, O_WRONLY, "write"); !st) return st.error();
  auto cap = link_capacity(fd, capacity);
  if (!cap) return cap.error();
  ignore_sigpipe_once();
  return PipeWriter(fd, *cap);
}

PipeWriter::PipeWriter(int fd, std::size_t capacity)
    : fd_(fd),
      capacity_(capacity),
      buffer_(capacity),
      marks_(std::make_unique<std::array<std::atomic<std::uint64_t>, kMarkSlots>>()) {
  auto size = pipe_size(fd);
  stats_.capacity_bytes = size ? *size : 0;
}

PipeWriter::PipeWriter(PipeWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      capacity_(other.capacity_),
      buffer_(std::move(other.buffer_)),
      written_(std::exchange(other.written_, 0)),
      committed_(std::exchange(other.committed_, 0)),
      reserved_size_(std::exchange(other.reserved_size_, 0)),
      peer_gone_(other.peer_gone_),
      pending_records_(std::exchange(other.pending_records_, 0)),
      pending_bytes_(std::exchange(other.pending_bytes_, 0)),
      stats_(other.stats_),
      marks_(std::move(other.marks_)) {}

PipeWriter& PipeWriter::operator=(PipeWriter&& other) noexcept {
  if (this != &other) {
    close_fd();
    fd_ = std::exchange(other.fd_, -1);
    capacity_ = other.capacity_;
    buffer_ = std::move(other.buffer_);
    written_ = std::exchange(other.written_, 0);
    committed_ = std::exchange(other.committed_, 0);
    reserved_size_ = std::exchange(other.reserved_size_, 0);
    peer_gone_ = other.peer_gone_;
    pending_records_ = std::exchange(other.pending_records_, 0);
    pending_bytes_ = std::exchange(other.pending_bytes_, 0);
    stats_ = other.stats_;
    marks_ = std::move(other.marks_);
  }
  return *this;
}

PipeWriter::~PipeWriter() { close_fd(); }

void PipeWriter::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::span<std::byte> PipeWriter::reserve_in_buffer(std::size_t size) {
  if (committed_ + kPipeFrameHeader + padded(size) > capacity_) return {};
  reserved_size_ = size;
  return {buffer_.data() + committed_ + kPipeFrameHeader, size};
}

std::span<std::byte> PipeWriter::try_reserve(std::size_t size) {
  assert(size >= 1 && size <= max_record_size() && "PipeWriter::try_reserve: size out of range");
  reserved_size_ = 0;
  return reserve_in_buffer(size);
}

Result<std::span<std::byte>> PipeWriter::reserve_for(std::size_t size,
                                                     std::chrono::nanoseconds timeout) {
  if (size == 0 || size > max_record_size()) {
    return link_error(LinkError::kTooLarge,
                      fd_name(fd_) + ": a record of " + std::to_string(size) +
                          " bytes can never fit; records on this link are 1.." +
                          std::to_string(max_record_size()) + " bytes");
  }
  reserved_size_ = 0;
  if (auto span = reserve_in_buffer(size); !span.empty()) return span;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
  Status flushed = flush(deadline);
  if (auto span = reserve_in_buffer(size); !span.empty()) return span;
  if (!flushed) return flushed.error();
  assert(false && "a flushed pipe buffer holds any record");
  return link_error(LinkError::kSystem, fd_name(fd_) + ": no room after a full flush");
}

void PipeWriter::commit(std::size_t used) {
  assert(reserved_size_ > 0 && "PipeWriter::commit without a reservation");
  assert(used >= 1 && used <= reserved_size_ && "PipeWriter::commit: used out of range");
  std::byte* frame = buffer_.data() + committed_;
  store_u32(frame, static_cast<std::uint32_t>(used));
  store_u32(frame + 4, frame_crc(frame, frame + kPipeFrameHeader, used));
  const std::size_t frame_size = kPipeFrameHeader + padded(used);
  std::memset(frame + kPipeFrameHeader + used, 0, frame_size - kPipeFrameHeader - used);
  committed_ += frame_size;
  reserved_size_ = 0;
  ++pending_records_;
  pending_bytes_ += used;
}

Status PipeWriter::publish() {
  if (written_ == committed_) return ok_status();
  return flush(std::nullopt);
}

Status PipeWriter::flush(std::optional<Clock::time_point> deadline) {
  if (peer_gone_) {
    return link_error(LinkError::kPeerGone,
                      fd_name(fd_) + ": the reader closed the pipe or died; records not sent");
  }
  while (written_ < committed_) {
    const ssize_t n = ::write(fd_, buffer_.data() + written_, committed_ - written_);
    if (n > 0) {
      written_ += static_cast<std::size_t>(n);
      continue;
    }
    const int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0 && err == EPIPE) {
      peer_gone_ = true;
      return link_error(LinkError::kPeerGone,
                        fd_name(fd_) + ": the reader closed the pipe or died; records not sent",
                        err);
    }
    if (n < 0 && err != EAGAIN) {
      return link_error(LinkError::kSystem, "write(" + fd_name(fd_) + "): " + errno_text(err),
                        err);
    }
    // The pipe is full: backpressure.
    stats_.high_water_bytes = std::max(stats_.high_water_bytes, stats_.capacity_bytes);
    if (deadline && Clock::now() >= *deadline) {
      return link_error(LinkError::kTimeout,
                        fd_name(fd_) + ": the pipe stayed full until the timeout (the reader is "
                                       "slow or stopped)");
    }
    const auto start = Clock::now();
    auto ready = wait_fd(fd_, POLLOUT, deadline);
    stats_.producer_blocked_ns += elapsed_ns(start);
    if (!ready) return ready.error();
    // POLLERR means the reader is gone: the next write() says EPIPE.
  }
  stats_.records += pending_records_;
  stats_.bytes += pending_bytes_;
  pending_records_ = 0;
  pending_bytes_ = 0;
  if (reserved_size_ == 0) {
    written_ = committed_ = 0;
  } else {
    written_ = committed_;  // an open reservation starts at committed_: leave it in place
  }
  return ok_status();
}

LinkStats PipeWriter::stats() const {
  LinkStats s = stats_;
  s.fill_bytes = bytes_in_pipe(fd_);
  s.high_water_bytes = std::max(s.high_water_bytes, s.fill_bytes);
  return s;
}

std::span<std::atomic<std::uint64_t>, kMarkSlots> PipeWriter::marks() { return *marks_; }

bool PipeWriter::peer_alive() const {
  return !peer_gone_ && (poll_now(fd_, 0) & POLLERR) == 0;
}

// --- PipeReader -------------------------------------------------------------------------------

Result<PipeReader> PipeReader::from_fd(int fd, std::size_t capacity) {
  if (auto st = adopt_pipe_end(fd, O_RDONLY, "read"); !st) return st.error();
  auto cap = link_capacity(fd, capacity);
  if (!cap) return cap.error();
  return PipeReader(fd, *cap);
}

PipeReader::PipeReader(int fd, std::size_t capacity)
    : fd_(fd),
      capacity_(capacity),
      buffer_(3 * capacity),
      marks_(std::make_unique<std::array<std::atomic<std::uint64_t>, kMarkSlots>>()) {
  auto size = pipe_size(fd);
  stats_.capacity_bytes = size ? *size : 0;
}

PipeReader::PipeReader(PipeReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      capacity_(other.capacity_),
      buffer_(std::move(other.buffer_)),
      released_(std::exchange(other.released_, 0)),
      parsed_(std::exchange(other.parsed_, 0)),
      filled_(std::exchange(other.filled_, 0)),
      peeked_(std::exchange(other.peeked_, 0)),
      stream_offset_(other.stream_offset_),
      eof_(other.eof_),
      error_(std::move(other.error_)),
      stats_(other.stats_),
      marks_(std::move(other.marks_)) {}

PipeReader& PipeReader::operator=(PipeReader&& other) noexcept {
  if (this != &other) {
    close_fd();
    fd_ = std::exchange(other.fd_, -1);
    capacity_ = other.capacity_;
    buffer_ = std::move(other.buffer_);
    released_ = std::exchange(other.released_, 0);
    parsed_ = std::exchange(other.parsed_, 0);
    filled_ = std::exchange(other.filled_, 0);
    peeked_ = std::exchange(other.peeked_, 0);
    stream_offset_ = other.stream_offset_;
    eof_ = other.eof_;
    error_ = std::move(other.error_);
    stats_ = other.stats_;
    marks_ = std::move(other.marks_);
  }
  return *this;
}

PipeReader::~PipeReader() { close_fd(); }

void PipeReader::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

PipeReader::FrameState PipeReader::frame_state() {
  if (error_) return FrameState::kBad;
  const std::size_t avail = filled_ - parsed_;
  if (avail < kPipeFrameHeader) return FrameState::kIncomplete;
  const std::byte* frame = buffer_.data() + parsed_;
  const std::uint32_t length = load_u32(frame);
  const std::size_t max = capacity_ - kPipeFrameHeader;
  if (length == 0 || length > max) {
    error_ = link_error(LinkError::kCorrupt,
                        fd_name(fd_) + ": the frame at stream offset " +
                            std::to_string(stream_offset_ + parsed_) + " claims " +
                            std::to_string(length) + " bytes, but records on this link are 1.." +
                            std::to_string(max) +
                            " bytes: the writer uses another capacity, or the stream is garbled");
    return FrameState::kBad;
  }
  if (avail < kPipeFrameHeader + padded(length)) return FrameState::kIncomplete;
  if (load_u32(frame + 4) != frame_crc(frame, frame + kPipeFrameHeader, length)) {
    error_ = link_error(LinkError::kCorrupt,
                        fd_name(fd_) + ": the " + std::to_string(length) +
                            "-byte frame at stream offset " +
                            std::to_string(stream_offset_ + parsed_) +
                            " fails its checksum: the stream is garbled (two writers on one "
                            "pipe?)");
    return FrameState::kBad;
  }
  return FrameState::kComplete;
}

std::optional<std::span<const std::byte>> PipeReader::next_buffered() {
  if (frame_state() != FrameState::kComplete) return std::nullopt;
  const std::byte* frame = buffer_.data() + parsed_;
  const std::uint32_t length = load_u32(frame);
  parsed_ += kPipeFrameHeader + padded(length);
  ++peeked_;
  ++stats_.records;
  stats_.bytes += length;
  return std::span<const std::byte>(frame + kPipeFrameHeader, length);
}

bool PipeReader::read_more() {
  if (eof_ || error_) return false;
  // Peeked spans point into the buffer: move the unread tail to the front only when there
  // are none.
  if (buffer_.size() - filled_ < capacity_ && released_ == parsed_ && released_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + released_, filled_ - released_);
    stream_offset_ += released_;
    filled_ -= released_;
    parsed_ = released_ = 0;
  }
  if (filled_ == buffer_.size()) return false;  // full of peeked records: release() first
  for (;;) {
    const ssize_t n = ::read(fd_, buffer_.data() + filled_, buffer_.size() - filled_);
    if (n > 0) {
      filled_ += static_cast<std::size_t>(n);
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return false;
    error_ = link_error(LinkError::kSystem, "read(" + fd_name(fd_) + "): " + errno_text(errno),
                        errno);
    return false;
  }
}

std::optional<std::span<const std::byte>> PipeReader::try_peek() {
  for (;;) {
    if (auto record = next_buffered()) return record;
    if (error_ || !read_more()) return std::nullopt;
  }
}

Result<std::span<const std::byte>> PipeReader::peek_for(std::chrono::nanoseconds timeout) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
  for (;;) {
    if (auto record = try_peek()) return *record;
    if (error_) return *error_;
    if (eof_) {
      const std::size_t torn = filled_ - parsed_;
      std::string msg = fd_name(fd_) + ": the writer closed the pipe or died";
      if (torn > 0) {
        msg += "; the " + std::to_string(torn) +
               " bytes of its last, incomplete record were discarded";
      }
      return link_error(LinkError::kPeerGone, std::move(msg));
    }
    if (filled_ == buffer_.size() && released_ != parsed_) {
      return link_error(LinkError::kTimeout,
                        fd_name(fd_) + ": " + std::to_string(peeked_) +
                            " peeked records fill the reader's buffer: release() them to read on");
    }
    if (Clock::now() >= deadline) {
      return link_error(LinkError::kTimeout,
                        fd_name(fd_) + ": no record arrived before the timeout");
    }
    const auto start = Clock::now();
    auto ready = wait_fd(fd_, POLLIN, deadline);
    stats_.consumer_waiting_ns += elapsed_ns(start);
    if (!ready) return ready.error();
  }
}

Status PipeReader::release() {
  released_ = parsed_;
  peeked_ = 0;
  // Nothing is peeked now, so the unread bytes may move. Keeping parsed_ <= capacity_ after a
  // release means a frame started later always fits in place unless more than capacity_
  // bytes of records are peeked (buffer_ holds 3 x capacity_).
  if (parsed_ == filled_ || parsed_ > capacity_) {
    std::memmove(buffer_.data(), buffer_.data() + parsed_, filled_ - parsed_);
    stream_offset_ += parsed_;
    filled_ -= parsed_;
    released_ = parsed_ = 0;
  }
  return ok_status();
}

LinkStats PipeReader::stats() const {
  LinkStats s = stats_;
  s.fill_bytes = bytes_in_pipe(fd_) + (filled_ - released_);
  s.high_water_bytes = std::max(s.high_water_bytes, s.fill_bytes);
  return s;
}

std::span<const std::atomic<std::uint64_t>, kMarkSlots> PipeReader::marks() const {
  return *marks_;
}

bool PipeReader::peer_alive() const {
  return !eof_ && (poll_now(fd_, POLLIN) & POLLHUP) == 0;
}

WaitSpec PipeReader::arm_wait() {
  WaitSpec spec;
  spec.fd = fd_;
  if (frame_state() != FrameState::kIncomplete || eof_) {
    spec.ready = true;  // a record, an error or the end to report: do not sleep
  } else if (filled_ == buffer_.size() && released_ != parsed_) {
    spec.ready = true;  // only release() makes progress
  }
  return spec;
}

}  // namespace millrace::ipc
