#include "ipc/shared_value.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace millrace::ipc::detail {
namespace {

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

Error value_error(SharedValueError code, std::string message) {
  return Error{"value", static_cast<int>(code), std::move(message), 0};
}

}  // namespace

void publish_header(SharedValueHeader& header, std::uint32_t type_tag, std::size_t size) {
  header.format_version = kSharedValueFormatVersion;
  header.type_tag = type_tag;
  header.size = static_cast<std::uint32_t>(size);
  // Release: an attacher that sees the magic (acquire) sees the whole initialised object.
  header.magic.store(kSharedValueMagic, std::memory_order_release);
}

Status check_header(const SharedValueHeader& header, std::string_view type_name,
                    std::uint32_t type_tag, std::size_t size) {
  const std::string expected = std::string(type_name) + " (tag " + hex(type_tag) + ", " +
                               std::to_string(size) + " bytes)";
  if (header.magic.load(std::memory_order_acquire) != kSharedValueMagic) {
    return value_error(SharedValueError::kNotInitialised,
                       "attach " + expected +
                           ": the memory holds no initialised shared value (its creator has not "
                           "called init(), or died during it)");
  }
  if (header.format_version != kSharedValueFormatVersion) {
    return value_error(SharedValueError::kVersion,
                       "attach " + expected + ": shared value format " +
                           std::to_string(header.format_version) + ", this build uses format " +
                           std::to_string(kSharedValueFormatVersion) +
                           ": run every process from the same build");
  }
  if (header.type_tag != type_tag || header.size != size) {
    return value_error(SharedValueError::kType,
                       "attach " + expected + ": the memory holds another type (tag " +
                           hex(header.type_tag) + ", " + std::to_string(header.size) +
                           " bytes): the creator and this process disagree on its type");
  }
  return ok_status();
}

void lock_failed(std::string_view type_name, const Error& error) {
  std::fprintf(stderr, "millrace: locking %.*s failed: %s\n", static_cast<int>(type_name.size()),
               type_name.data(), error.message.c_str());
  std::abort();
}

}  // namespace millrace::ipc::detail
