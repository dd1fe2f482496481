// InputSource: the bytes a load stage reads, from a file (by path or by an owned descriptor) or
// from a memory buffer (tests and fuzzing). Sequential reads plus an absolute seek, which is all
// a checkpointed reader needs to resume. Move-only: it owns its descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
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

}  // namespace millrace::stages
