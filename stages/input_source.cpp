#include "stages/input_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "ipc/posix_call.hpp"

namespace millrace::stages {
namespace {

constexpr std::string_view kComponent = "input";

Error input_error(InputErrc code, std::string message, int err = 0) {
  if (err != 0) message += std::string(" (") + errno_text(err) + ")";
  return Error{std::string(kComponent), static_cast<int>(code), std::move(message), err};
}

}  // namespace

Result<InputSource> InputSource::open_file(const std::string& path) {
  auto fd = posix_call("open", path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (!fd) {
    const int err = fd.error().sys_errno;
    if (err == ENOENT || err == ENOTDIR) {
      return input_error(InputErrc::kNotFound,
                         "input file '" + path + "' does not exist: check the path", err);
    }
    return input_error(InputErrc::kNotReadable,
                       "input file '" + path + "' cannot be opened for reading: check its " +
                           "permissions and owner",
                       err);
  }
  InputSource source(*fd, {}, false, path);
  struct stat st {};
  if (::fstat(source.fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
    return input_error(InputErrc::kIsDirectory,
                       "input '" + path + "' is a directory, not a file: name a file");
  }
  return source;
}

InputSource InputSource::from_fd(int fd, std::string name) {
  return InputSource(fd, {}, false, std::move(name));
}

InputSource InputSource::from_memory(std::string_view data, std::string name) {
  return InputSource(-1, data, true, std::move(name));
}

InputSource::InputSource(InputSource&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      memory_(other.memory_),
      memory_pos_(other.memory_pos_),
      is_memory_(other.is_memory_),
      name_(std::move(other.name_)) {}

InputSource& InputSource::operator=(InputSource&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    memory_ = other.memory_;
    memory_pos_ = other.memory_pos_;
    is_memory_ = other.is_memory_;
    name_ = std::move(other.name_);
  }
  return *this;
}

InputSource::~InputSource() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::size_t> InputSource::read(char* buf, std::size_t capacity) {
  if (is_memory_) {
    const std::size_t n = std::min(capacity, memory_.size() - memory_pos_);
    if (n > 0) std::memcpy(buf, memory_.data() + memory_pos_, n);
    memory_pos_ += n;
    return n;
  }
  assert(fd_ >= 0 && "InputSource::read on a moved-from source");
  auto n = posix_call("read", name_, [&] { return ::read(fd_, buf, capacity); });
  if (!n) {
    return input_error(InputErrc::kRead, "reading input '" + name_ + "' failed",
                       n.error().sys_errno);
  }
  return static_cast<std::size_t>(*n);
}

Status InputSource::seek(std::uint64_t offset) {
  if (is_memory_) {
    if (offset > memory_.size()) {
      return input_error(InputErrc::kBeyondEnd, "cannot resume input '" + name_ + "' at byte " +
                                                    std::to_string(offset) + ": it has only " +
                                                    std::to_string(memory_.size()) + " bytes");
    }
    memory_pos_ = static_cast<std::size_t>(offset);
    return ok_status();
  }
  assert(fd_ >= 0 && "InputSource::seek on a moved-from source");
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) &&
      offset > static_cast<std::uint64_t>(st.st_size)) {
    return input_error(InputErrc::kBeyondEnd,
                       "cannot resume input '" + name_ + "' at byte " + std::to_string(offset) +
                           ": the file has only " + std::to_string(st.st_size) +
                           " bytes; it changed since the checkpoint: start over with a new output");
  }
  const auto target = static_cast<off_t>(offset);
  auto pos = posix_call("lseek", name_, [&] { return ::lseek(fd_, target, SEEK_SET); });
  if (!pos) {
    return input_error(InputErrc::kSeek,
                       "cannot resume input '" + name_ + "' at byte " + std::to_string(offset) +
                           ": it does not support seeking (a pipe?); use a regular file",
                       pos.error().sys_errno);
  }
  return ok_status();
}

// --- ReadBuffer ---------------------------------------------------------------------------

namespace {
constexpr std::size_t kMinCapacity = 4;  // a byte order mark must fit
}  // namespace

ReadBuffer::ReadBuffer(InputSource source, std::size_t capacity, std::size_t padding)
    : source_(std::move(source)),
      capacity_(std::max(capacity, kMinCapacity)),
      buf_(std::make_unique<char[]>(capacity_ + padding)) {}

Result<bool> ReadBuffer::refill() {
  assert(pos == end && "ReadBuffer::refill with unread bytes");
  buf_offset_ += end;
  pos = 0;
  end = 0;
  if (eof_) return false;
  auto n = source_.read(buf_.get(), capacity_);
  if (!n) return n.error();
  end = *n;
  if (end == 0) eof_ = true;
  return end > 0;
}

Status ReadBuffer::skip_bom() {
  bom_checked_ = true;
  // A short read may deliver the mark in pieces: read until 3 bytes or the end of input.
  while (end - pos < kUtf8Bom.size() && !eof_) {
    auto n = source_.read(buf_.get() + end, capacity_ - end);
    if (!n) return n.error();
    if (*n == 0) eof_ = true;
    end += *n;
  }
  if (end - pos >= kUtf8Bom.size() &&
      std::memcmp(buf_.get() + pos, kUtf8Bom.data(), kUtf8Bom.size()) == 0) {
    pos += kUtf8Bom.size();
  }
  return ok_status();
}

Status ReadBuffer::seek(std::uint64_t offset) {
  if (auto st = source_.seek(offset); !st) return st;
  buf_offset_ = offset;
  pos = 0;
  end = 0;
  eof_ = false;
  bom_checked_ = offset != 0;
  return ok_status();
}

}  // namespace millrace::stages
