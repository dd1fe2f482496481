// InputSource: the bytes a load stage reads, from a file (by path or by an owned descriptor) or
// from a memory buffer (tests and fuzzing). Sequential reads plus an absolute seek, which is all
// a checkpointed reader needs to resume. Move-only: it owns its descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "ipc/result.hpp"

namespace millrace::stages {

// Error codes of component "input".
enum class InputErrc : int {
  kNotFound = 1,     // the path does not exist
  kNotReadable = 2,  // permission denied or another open() failure
  kIsDirectory = 3,  // the path names a directory
  kRead = 4,         // read() failed
  kSeek = 5,         // the input cannot seek (a pipe) or lseek failed
  kBeyondEnd = 6,    // a checkpoint offset past the end of the file: the file changed
};

class InputSource {
 public:
  // Opens `path` read-only. Errors name the path and say what to check.
  static Result<InputSource> open_file(const std::string& path);
  // Takes ownership of `fd` (closed by the destructor); `name` is used in messages.
  static InputSource from_fd(int fd, std::string name);
  // Reads `data`, which the caller keeps alive and unchanged while this source is used.
  static InputSource from_memory(std::string_view data, std::string name);

  InputSource(const InputSource&) = delete;
  InputSource& operator=(const InputSource&) = delete;
  InputSource(InputSource&& other) noexcept;
  InputSource& operator=(InputSource&& other) noexcept;
  ~InputSource();

  // Reads up to `capacity` bytes at the current position into `buf`; 0 means end of input.
  Result<std::size_t> read(char* buf, std::size_t capacity);
  // Moves the read position to the absolute byte `offset`.
  Status seek(std::uint64_t offset);

  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  InputSource(int fd, std::string_view memory, bool is_memory, std::string name)
      : fd_(fd), memory_(memory), is_memory_(is_memory), name_(std::move(name)) {}

  int fd_ = -1;
  std::string_view memory_;
  std::size_t memory_pos_ = 0;
  bool is_memory_ = false;
  std::string name_;
};

// The UTF-8 byte order mark, which a reader skips at the start of its input.
inline constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// What the CSV and JSON Lines readers share: a buffer over an InputSource, refilled when
// every byte in it is consumed, that skips a UTF-8 byte order mark at the start of the input
// and maps buffer positions to input offsets (the readers' resume points). The reader scans
// data()[pos, end) itself and advances `pos`; `end` is the buffer's business.
class ReadBuffer {
 public:
  // `capacity` bytes (at least 4), followed by `padding` zero bytes so that a wide load that
  // starts at any valid byte stays inside the allocation.
  ReadBuffer(InputSource source, std::size_t capacity, std::size_t padding = 0);

  // Reads the next chunk into the whole buffer; only when pos == end. False at end of input.
  Result<bool> refill();
  // True before the first record: skip_bom() has yet to run, and no seek went past the start.
  [[nodiscard]] bool bom_pending() const { return !bom_checked_; }
  // Skips a byte order mark at the very start of the input (it reads until 3 bytes are there).
  Status skip_bom();
  // Continues reading at the absolute input offset `offset` (a resume point).
  Status seek(std::uint64_t offset);

  [[nodiscard]] const char* data() const { return buf_.get(); }
  // The input offset of data()[i].
  [[nodiscard]] std::uint64_t offset_of(std::size_t i) const { return buf_offset_ + i; }
  [[nodiscard]] const std::string& name() const { return source_.name(); }

  std::size_t pos = 0;  // the next unconsumed byte of data()
  std::size_t end = 0;  // the end of the valid bytes of data()

 private:
  InputSource source_;
  std::size_t capacity_;
  std::unique_ptr<char[]> buf_;
  std::uint64_t buf_offset_ = 0;  // input offset of data()[0]
  bool eof_ = false;
  bool bom_checked_ = false;
};

}  // namespace millrace::stages
