#include "ipc/codec.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>

namespace millrace::ipc {
namespace {

std::string hex_tag(std::uint32_t tag) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, tag);
  return buf;
}

struct TypeNames {
  std::mutex mutex;
  std::unordered_map<std::uint32_t, std::string_view> by_tag;
};

TypeNames& type_names() {
  static TypeNames names;  // built on first use: registrations run during static initialisation
  return names;
}

std::uint32_t load_le(const std::byte* p, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint32_t>(p[i]);
  return v;
}

}  // namespace

Result<MessageHeader> read_header(std::span<const std::byte> message) {
  if (message.size() < kMessageHeaderSize) {
    return Error{"codec", static_cast<int>(CodecError::kTruncated),
                 "message of " + std::to_string(message.size()) +
                     " bytes is shorter than the codec header (" +
                     std::to_string(kMessageHeaderSize) +
                     " bytes): it was cut short, or is not a codec message",
                 0};
  }
  if (message[0] != kCodecMagic) {
    return Error{"codec", static_cast<int>(CodecError::kNotAMessage),
                 "not a codec message: first byte is " +
                     std::to_string(static_cast<unsigned>(message[0])) + ", expected " +
                     std::to_string(static_cast<unsigned>(kCodecMagic)) +
                     " (a byte stream out of step, or a peer speaking another protocol)",
                 0};
  }
  MessageHeader header;
  header.format_version = load_le(&message[1], 1);
  header.type_version = load_le(&message[2], 2);
  header.type_tag = load_le(&message[4], 4);
  if (header.format_version != kCodecFormatVersion) {
    return Error{"codec", static_cast<int>(CodecError::kFormatVersion),
                 "message written with codec format " + std::to_string(header.format_version) +
                     ", this build reads format " + std::to_string(kCodecFormatVersion) +
                     ": run every process of the pipeline from the same build",
                 0};
  }
  return header;
}

namespace detail {

bool register_transfer_type(std::uint32_t tag, std::string_view name) {
  TypeNames& names = type_names();
  std::lock_guard lock(names.mutex);
  auto [it, inserted] = names.by_tag.emplace(tag, name);
  if (!inserted && it->second != name) {
    // Two types with one tag would decode as each other: refuse to run.
    std::fprintf(stderr,
                 "millrace: transferable types '%.*s' and '%.*s' have the same type tag %s; "
                 "give one of them a different kTransferName\n",
                 static_cast<int>(it->second.size()), it->second.data(),
                 static_cast<int>(name.size()), name.data(), hex_tag(tag).c_str());
    std::abort();
  }
  return true;
}

std::string describe_tag(std::uint32_t tag) {
  TypeNames& names = type_names();
  std::lock_guard lock(names.mutex);
  const auto it = names.by_tag.find(tag);
  if (it == names.by_tag.end()) {
    return "a type unknown to this process (tag " + hex_tag(tag) + ")";
  }
  return std::string(it->second) + " (tag " + hex_tag(tag) + ")";
}

Error mismatch_error(const MessageHeader& found, std::string_view expected_name,
                     std::uint32_t expected_tag, std::uint32_t expected_version) {
  std::string msg;
  if (found.type_tag != expected_tag) {
    msg = "decode: expected " + std::string(expected_name) + " (tag " + hex_tag(expected_tag) +
          ") version " + std::to_string(expected_version) + ", but the message holds " +
          describe_tag(found.type_tag) + " version " + std::to_string(found.type_version) +
          ": the sender and receiver disagree on what this link or call carries";
    return Error{"codec", static_cast<int>(CodecError::kTypeMismatch), std::move(msg), 0};
  }
  msg = "decode: expected " + std::string(expected_name) + " version " +
        std::to_string(expected_version) + ", but the message holds " +
        std::string(expected_name) + " version " + std::to_string(found.type_version) +
        ": the sender was built with another version of the type; run both from the same build";
  return Error{"codec", static_cast<int>(CodecError::kTypeVersion), std::move(msg), 0};
}

Error decode_error(CodecError code, std::string_view type_name, std::string_view what) {
  std::string msg = "decode " + std::string(type_name) + ": ";
  msg.append(what);
  msg += code == CodecError::kTruncated ? " (the message was cut short)"
                                        : " (the message is corrupt)";
  return Error{"codec", static_cast<int>(code), std::move(msg), 0};
}

Error too_large_error(std::string_view type_name, std::size_t size, std::size_t max_record) {
  return Error{"codec", static_cast<int>(CodecError::kTooLarge),
               "send " + std::string(type_name) + ": the message takes " + std::to_string(size) +
                   " bytes but this link's records hold at most " + std::to_string(max_record) +
                   "; raise the link's size or send smaller values",
               0};
}

void write_header(std::byte* out, std::uint32_t type_tag, std::uint32_t type_version) {
  out[0] = kCodecMagic;
  out[1] = static_cast<std::byte>(kCodecFormatVersion);
  out[2] = static_cast<std::byte>(type_version & 0xFF);
  out[3] = static_cast<std::byte>((type_version >> 8) & 0xFF);
  for (int i = 0; i < 4; ++i) out[4 + i] = static_cast<std::byte>((type_tag >> (8 * i)) & 0xFF);
}

}  // namespace detail
}  // namespace millrace::ipc
