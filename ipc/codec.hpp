// The codec: how a Transferable value becomes bytes that cross a process boundary, and back.
//
// Who may call what: any process, any thread; nothing here has shared state except a
// process-wide table of type names used only to word errors (filled before main, guarded).
//
// Message layout (both ends run on the same machine, so multi-byte values use its byte order):
//
//   offset 0  u8   kCodecMagic
//          1  u8   codec format version (kCodecFormatVersion)
//          2  u16  the type's version (T::kTransferVersion, default 1)
//          4  u32  the type's tag: FNV-1a of its transfer name (T::kTransferName, or the name
//                  the compiler gives the type)
//          8  ...  the value in cereal's binary archive format
//
// Invariants:
//  - decode<T>() accepts only a message of T's tag and version, read to its last byte. Anything
//    else (another type or version, a truncated or garbled message, bytes left over) is an
//    Error of component "codec", never a crash, never a half-read value reported as good.
//  - A length field larger than the bytes left in the input is rejected before anything is
//    allocated, so a garbled message costs at most (its size x the element size) of memory.
//    This holds because every element takes at least one byte: Transferable refuses
//    containers of empty classes, and a class whose serialize() writes nothing for a
//    non-empty object cannot be sent in a container of more elements than bytes follow.
//  - No allocation on the encode path. decode() loads into the caller's object: strings and
//    vectors keep their capacity, optionals and variants holding the same alternative are
//    loaded in place; maps and sets rebuild their nodes.
//
// Type tags: a type without kTransferName is named by the compiler, which is stable across
// builds of one compiler and standard library, not across compilers or renames. Types that
// are stored or sent between different builds should declare
//   static constexpr std::string_view kTransferName = "myapp.Order";
//   static constexpr std::uint32_t kTransferVersion = 2;  // bump when the members change
#pragma once

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "ipc/link.hpp"
#include "ipc/result.hpp"
#include "ipc/transferable.hpp"
#include "ipc/type_name.hpp"
#include "ipc/version.hpp"

namespace millrace::ipc {

// Error codes of the codec component (Error::component == "codec").
enum class CodecError : int {
  kTruncated = 1,  // the input ends inside the header or inside a value
  kNotAMessage,    // the first byte is not kCodecMagic
  kFormatVersion,  // another codec format version wrote it
  kTypeMismatch,   // it holds another type
  kTypeVersion,    // it holds another version of the type
  kCorrupt,        // an impossible length, index or flag, or bytes left after the value
  kTooLarge,       // the message can never fit in the link's largest record
};

inline constexpr std::byte kCodecMagic{0xC5};
inline constexpr std::size_t kMessageHeaderSize = 8;
static_assert(kCodecFormatVersion <= 0xFF, "the header stores the codec format version in a byte");

struct MessageHeader {
  std::uint32_t format_version = 0;
  std::uint32_t type_version = 0;
  std::uint32_t type_tag = 0;
};

// What encode() did: when `fit`, the message occupies out[0, size); otherwise nothing usable
// was written and `size` is the number of bytes the message needs.
struct EncodeResult {
  bool fit = false;
  std::size_t size = 0;
};

// --- Type identity -----------------------------------------------------------------------

// The name T is tagged with: T::kTransferName if it declares one, else the compiler's name.
template <class T>
constexpr std::string_view transfer_name() {
  if constexpr (requires { std::string_view{T::kTransferName}; }) {
    return std::string_view{T::kTransferName};
  } else {
    return compiler_type_name<T>();
  }
}

template <class T>
constexpr std::uint32_t transfer_tag() {
  return fnv1a_32(transfer_name<T>());
}

template <class T>
constexpr std::uint32_t transfer_version() {
  if constexpr (requires { T::kTransferVersion; }) {
    static_assert(T::kTransferVersion >= 1 && T::kTransferVersion <= 0xFFFF,
                  "kTransferVersion must be in 1..65535 (the header stores it in 16 bits)");
    return static_cast<std::uint32_t>(T::kTransferVersion);
  } else {
    return 1;
  }
}

// Reads and checks the header (magic, codec format version); the type is not checked here.
Result<MessageHeader> read_header(std::span<const std::byte> message);

namespace detail {

// Remembers tag -> name for the types this process encodes or decodes, so that a decode of
// the wrong type can name what it found. Aborts at start-up if two names share a tag.
bool register_transfer_type(std::uint32_t tag, std::string_view name);
std::string describe_tag(std::uint32_t tag);

template <class T>
struct TransferTypeRegistration {
  static inline const bool registered = register_transfer_type(transfer_tag<T>(), transfer_name<T>());
};

Error mismatch_error(const MessageHeader& found, std::string_view expected_name,
                     std::uint32_t expected_tag, std::uint32_t expected_version);
Error decode_error(CodecError code, std::string_view type_name, std::string_view what);
Error too_large_error(std::string_view type_name, std::size_t size, std::size_t max_record);

void write_header(std::byte* out, std::uint32_t type_tag, std::uint32_t type_version);

// Thrown inside the input archive, caught by decode() and turned into an Error.
struct DecodeFailure {
  CodecError code;
  std::string what;
};

// cereal's binary archive format, written straight into a fixed span. When the span is too
// small it stops writing and keeps counting, so one pass tells the caller the size it needs.
class SpanOutputArchive
    : public cereal::OutputArchive<SpanOutputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit SpanOutputArchive(std::span<std::byte> out)
      : cereal::OutputArchive<SpanOutputArchive, cereal::AllowEmptyClassElision>(this), out_(out) {}
  SpanOutputArchive(const SpanOutputArchive&) = delete;
  SpanOutputArchive& operator=(const SpanOutputArchive&) = delete;

  // A type that is not Transferable has already failed with its own message; skipping it
  // here spares the reader a second, longer error from cereal.
  template <class... Ts>
  SpanOutputArchive& operator()(Ts&&... args) {
    if constexpr ((is_transferable_shallow_v<std::remove_cvref_t<Ts>> && ...)) {
      cereal::OutputArchive<SpanOutputArchive, cereal::AllowEmptyClassElision>::operator()(
          std::forward<Ts>(args)...);
    }
    return *this;
  }
  template <class T>
  SpanOutputArchive& operator&(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }
  template <class T>
  SpanOutputArchive& operator<<(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }

  void saveBinary(const void* data, std::size_t size) {
    if (size != 0 && size <= out_.size() && used_ <= out_.size() - size) {
      std::memcpy(out_.data() + used_, data, size);
    }
    used_ += size;
  }
  [[nodiscard]] std::size_t size() const { return used_; }
  [[nodiscard]] bool fit() const { return used_ <= out_.size(); }

 private:
  std::span<std::byte> out_;
  std::size_t used_ = 0;
};

// Reads cereal's binary archive format from a span, refusing lengths the input cannot hold.
class SpanInputArchive
    : public cereal::InputArchive<SpanInputArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit SpanInputArchive(std::span<const std::byte> in)
      : cereal::InputArchive<SpanInputArchive, cereal::AllowEmptyClassElision>(this), in_(in) {}
  SpanInputArchive(const SpanInputArchive&) = delete;
  SpanInputArchive& operator=(const SpanInputArchive&) = delete;

  template <class... Ts>
  SpanInputArchive& operator()(Ts&&... args) {
    if constexpr ((is_transferable_shallow_v<std::remove_cvref_t<Ts>> && ...)) {
      cereal::InputArchive<SpanInputArchive, cereal::AllowEmptyClassElision>::operator()(
          std::forward<Ts>(args)...);
    }
    return *this;
  }
  template <class T>
  SpanInputArchive& operator&(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }
  template <class T>
  SpanInputArchive& operator>>(T&& arg) {
    return (*this)(std::forward<T>(arg));
  }

  void loadBinary(void* data, std::size_t size) {
    if (size > remaining()) [[unlikely]] {
      throw_truncated(size);
    }
    if (size != 0) std::memcpy(data, in_.data() + used_, size);
    used_ += size;
  }
  [[nodiscard]] std::size_t remaining() const { return in_.size() - used_; }
  [[nodiscard]] std::size_t offset() const { return used_; }

  // Reads a container's length, refusing one the rest of the input cannot hold: every
  // element takes at least one byte (see the header comment).
  // Length is the type the writer used: cereal's size_type for its own containers, anything
  // a user type passes to cereal::make_size_tag.
  template <class Length = cereal::size_type>
  Length load_length() {
    Length length{};
    loadBinary(&length, sizeof length);
    if (static_cast<std::uint64_t>(length) > remaining()) [[unlikely]] {
      throw_bad_length(static_cast<std::uint64_t>(length));
    }
    return length;
  }
  // The next `size` bytes of the input, consumed; the caller has checked they are there.
  const char* take(std::size_t size) {
    const char* bytes = reinterpret_cast<const char*>(in_.data() + used_);
    used_ += size;
    return bytes;
  }

 private:
  // Out of line, so that the checks above stay small enough to inline into every load.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_truncated(std::size_t size) const {
    throw DecodeFailure{CodecError::kTruncated,
                        "the input ends " + std::to_string(remaining()) + " bytes into a " +
                            std::to_string(size) + "-byte field at payload offset " +
                            std::to_string(used_)};
  }
  [[noreturn, gnu::cold, gnu::noinline]] void throw_bad_length(std::uint64_t length) const {
    throw DecodeFailure{CodecError::kCorrupt,
                        "a length field says " + std::to_string(length) + " elements but only " +
                            std::to_string(remaining()) + " bytes follow (payload offset " +
                            std::to_string(used_ - sizeof length) + ")"};
  }

  std::span<const std::byte> in_;
  std::size_t used_ = 0;
};

// The archive functions of cereal's binary archive, for the span archives (found by ADL).
template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(SpanOutputArchive& ar,
                                                                     const T& value) {
  ar.saveBinary(std::addressof(value), sizeof value);
}
template <class T>
std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>> CEREAL_LOAD_FUNCTION_NAME(
    SpanInputArchive& ar, T& value) {
  ar.loadBinary(std::addressof(value), sizeof value);
}
// Any byte other than 0 or 1 in a bool is garbage, and loading it as bool is undefined.
inline void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, bool& value) {
  std::uint8_t byte = 0;
  ar.loadBinary(&byte, 1);
  if (byte > 1) {
    throw DecodeFailure{CodecError::kCorrupt, "a bool holds the byte " + std::to_string(byte) +
                                                  " at payload offset " +
                                                  std::to_string(ar.offset() - 1)};
  }
  value = byte == 1;
}
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(SpanInputArchive, SpanOutputArchive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& nvp) {
  ar(nvp.value);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(SpanOutputArchive& ar, const cereal::SizeTag<T>& tag) {
  ar(tag.size);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, cereal::SizeTag<T>& tag) {
  tag.size = ar.load_length<std::remove_reference_t<T>>();
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(SpanOutputArchive& ar, const cereal::BinaryData<T>& bytes) {
  ar.saveBinary(bytes.data, static_cast<std::size_t>(bytes.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, cereal::BinaryData<T>& bytes) {
  ar.loadBinary(bytes.data, static_cast<std::size_t>(bytes.size));
}

// Strings are most of what crosses a link, so they skip cereal's generic path: the same
// bytes (length, then the characters), one copy each way, and no zero-filling before the
// copy on load.
template <class Traits, class Alloc>
void CEREAL_SAVE_FUNCTION_NAME(SpanOutputArchive& ar,
                               const std::basic_string<char, Traits, Alloc>& str) {
  const cereal::size_type length = str.size();
  ar.saveBinary(&length, sizeof length);
  ar.saveBinary(str.data(), str.size());
}
template <class Traits, class Alloc>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::basic_string<char, Traits, Alloc>& str) {
  const auto length = static_cast<std::size_t>(ar.load_length());
  str.assign(ar.take(length), length);
}

// Same bytes as cereal's, but an engaged optional is loaded in place (keeps its storage).
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::optional<T>& optional) {
  bool nullopt = false;
  ar(nullopt);
  if (nullopt) {
    optional.reset();
    return;
  }
  if (!optional.has_value()) optional.emplace();
  ar(*optional);
}

// Same bytes as cereal's, but the alternative already held is loaded in place.
template <std::size_t I, class... Ts>
void load_variant_alternative(SpanInputArchive& ar, std::variant<Ts...>& variant) {
  if (variant.index() != I) variant.template emplace<I>();
  ar(std::get<I>(variant));
}
template <class... Ts, std::size_t... Is>
void load_variant(SpanInputArchive& ar, std::variant<Ts...>& variant, std::size_t index,
                  std::index_sequence<Is...>) {
  static_cast<void>(((Is == index ? (load_variant_alternative<Is>(ar, variant), true) : false) ||
                     ...));
}
template <class... Ts>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::variant<Ts...>& variant) {
  std::int32_t index = 0;
  ar(index);
  if (index < 0 || static_cast<std::size_t>(index) >= sizeof...(Ts)) {
    throw DecodeFailure{CodecError::kCorrupt,
                        "a variant holds alternative " + std::to_string(index) + " of " +
                            std::to_string(sizeof...(Ts)) + " at payload offset " +
                            std::to_string(ar.offset() - sizeof index)};
  }
  load_variant(ar, variant, static_cast<std::size_t>(index), std::index_sequence_for<Ts...>{});
}

// cereal inserts each element before the previous one, which reverses equal keys: keep the
// sender's order instead (same bytes).
template <class K, class V, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::multimap<K, V, C, A>& map) {
  cereal::size_type size = 0;
  ar(cereal::make_size_tag(size));
  map.clear();
  for (cereal::size_type i = 0; i < size; ++i) {
    K key{};
    V value{};
    ar(key, value);
    map.emplace_hint(map.end(), std::move(key), std::move(value));
  }
}
template <class K, class C, class A>
void CEREAL_LOAD_FUNCTION_NAME(SpanInputArchive& ar, std::multiset<K, C, A>& set) {
  cereal::size_type size = 0;
  ar(cereal::make_size_tag(size));
  set.clear();
  for (cereal::size_type i = 0; i < size; ++i) {
    K key{};
    ar(key);
    set.emplace_hint(set.end(), std::move(key));
  }
}

template <class T>
void register_once() {
  static_cast<void>(&TransferTypeRegistration<T>::registered);
}

template <class T>
Status decode_payload(std::span<const std::byte> payload, T& out) {
  SpanInputArchive ar(payload);
  try {
    ar(out);
  } catch (const DecodeFailure& failure) {
    return decode_error(failure.code, transfer_name<T>(), failure.what);
  } catch (const std::exception& e) {
    // cereal's own checks, or an allocation the (bounded) lengths still could not get.
    return decode_error(CodecError::kCorrupt, transfer_name<T>(), e.what());
  }
  if (ar.remaining() != 0) {
    return decode_error(CodecError::kCorrupt, transfer_name<T>(),
                        std::to_string(ar.remaining()) + " bytes are left after the value");
  }
  return ok_status();
}

// Per thread and type: how many bytes to reserve before knowing the size.
template <class T>
inline thread_local std::size_t send_size_guess = 256;

}  // namespace detail

// --- Encoding and decoding ------------------------------------------------------------------

// Writes the message for `value` into `out`, with no intermediate buffer. See EncodeResult.
// Exceptions thrown by a type's own save()/serialize() propagate.
template <Transferable T>
[[nodiscard]] EncodeResult encode(const T& value, std::span<std::byte> out) {
  detail::register_once<T>();
  detail::SpanOutputArchive ar(out);
  std::byte header[kMessageHeaderSize];
  detail::write_header(header, transfer_tag<T>(), transfer_version<T>());
  ar.saveBinary(header, sizeof header);
  ar(value);
  return EncodeResult{ar.fit(), ar.size()};
}

// The size of the message for `value`, without writing it.
template <Transferable T>
[[nodiscard]] std::size_t encoded_size(const T& value) {
  return encode(value, std::span<std::byte>{}).size;
}

// Loads the message in `in` into `out`, reusing out's storage. On error `out` is valid but
// holds an unspecified mix of old and new values.
template <Transferable T>
Status decode(std::span<const std::byte> in, T& out) {
  detail::register_once<T>();
  auto header = read_header(in);
  if (!header) return header.error();
  if (header->type_tag != transfer_tag<T>() || header->type_version != transfer_version<T>()) {
    return detail::mismatch_error(*header, transfer_name<T>(), transfer_tag<T>(),
                                  transfer_version<T>());
  }
  return detail::decode_payload(in.subspan(kMessageHeaderSize), out);
}

// For byte streams (sockets): appends the message for `value` to `out` (clear it first to
// reuse its capacity), so a caller can put a length prefix before it.
template <Transferable T>
void encode_to_vector(const T& value, std::vector<std::byte>& out) {
  const std::size_t start = out.size();
  out.resize(start + encoded_size(value));
  const EncodeResult r = encode(value, std::span<std::byte>(out).subspan(start));
  assert(r.fit && "encoded_size() and encode() disagree");
  static_cast<void>(r);
}

template <Transferable T>
[[nodiscard]] std::vector<std::byte> encode_to_vector(const T& value) {
  std::vector<std::byte> out;
  encode_to_vector(value, out);
  return out;
}

// Decodes a whole message into a new T (default-constructed, then loaded).
template <Transferable T>
Result<T> decode_from(std::span<const std::byte> in) {
  T value{};
  auto status = decode(in, value);
  if (!status) return status.error();
  return value;
}

// --- Links ----------------------------------------------------------------------------------

// Encodes `value` as one record of `writer` and commits it, waiting up to `timeout` for space.
// It does not publish: call writer.publish() after a batch. Reserves a guess first (the size of
// this thread's last message of type T, plus a margin); when the message is larger, reserves
// again with the exact size, which replaces the unused reservation.
// Errors: codec kTooLarge when the message exceeds writer.max_record_size(); the link's
// errors of reserve_for (kTimeout, kPeerGone, kSystem).
template <Transferable T>
Status send(LinkWriter& writer, const T& value, std::chrono::nanoseconds timeout) {
  const std::size_t max_record = writer.max_record_size();
  std::size_t& guess = detail::send_size_guess<T>;
  std::span<std::byte> space = writer.try_reserve(std::min(guess, max_record));
  EncodeResult r;
  if (!space.empty()) {
    r = encode(value, space);
  } else {
    r.size = encoded_size(value);  // no room for the guess: wait only for what is needed
  }
  if (!r.fit) {
    if (r.size > max_record) {
      return detail::too_large_error(transfer_name<T>(), r.size, max_record);
    }
    auto exact = writer.reserve_for(r.size, timeout);
    if (!exact) return exact.error();
    r = encode(value, *exact);
    assert(r.fit && "reserve_for returned less space than asked");
  }
  guess = r.size + r.size / 4 + 16;
  writer.commit(r.size);
  return ok_status();
}

// Peeks the next record of `reader` and decodes it into `out`: true when a record was there,
// false when none is published yet. The record stays peeked: call reader.release() after a
// batch. A record that does not decode is an Error (it is peeked too; release() skips it).
template <Transferable T>
Result<bool> receive(LinkReader& reader, T& out) {
  const auto record = reader.try_peek();
  if (!record) return false;
  auto status = decode(*record, out);
  if (!status) return status.error();
  return true;
}

// Like receive(), waiting up to `timeout` for a record. Errors: the link's errors of
// peek_for (kTimeout, kPeerGone, kCorrupt, kSystem), or the codec's.
template <Transferable T>
Status receive_for(LinkReader& reader, T& out, std::chrono::nanoseconds timeout) {
  auto record = reader.peek_for(timeout);
  if (!record) return record.error();
  return decode(*record, out);
}

}  // namespace millrace::ipc

CEREAL_SETUP_ARCHIVE_TRAITS(millrace::ipc::detail::SpanInputArchive,
                            millrace::ipc::detail::SpanOutputArchive)
