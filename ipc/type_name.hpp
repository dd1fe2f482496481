// Compile-time type names and their stable 32-bit hash, for tagging what crosses a process
// boundary (codec messages, shared values) so that a reader can tell a foreign type.
//
// Any process may call these; everything here is constexpr.
#pragma once

#include <cstdint>
#include <string_view>

namespace millrace::ipc {

constexpr std::uint32_t fnv1a_32(std::string_view text) {
  std::uint32_t hash = 2166136261u;
  for (const char c : text) {
    hash ^= static_cast<std::uint8_t>(c);
    hash *= 16777619u;
  }
  return hash;
}

namespace detail {

template <class T>
constexpr const char* pretty_function() {
  return __PRETTY_FUNCTION__;
}

}  // namespace detail

// The spelling of T's name by this compiler, e.g. "myapp::Order": stable across builds of one
// compiler and standard library, not across compilers.
template <class T>
constexpr std::string_view compiler_type_name() {
  // gcc: "... pretty_function() [with T = myapp::Order]"; clang: "... [T = myapp::Order]".
  const std::string_view all = detail::pretty_function<T>();
  const std::size_t start = all.find("T = ") + 4;
  const std::size_t end = all.rfind(']');
  return all.substr(start, end - start);
}

}  // namespace millrace::ipc
