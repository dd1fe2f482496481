// Must not compile: a FILE* member.
#include <array>
#include <cstddef>
#include <cstdio>
#include <string>

#include "ipc/codec.hpp"

struct Output {
  std::string path;
  std::FILE* file = nullptr;
  template <class A>
  void serialize(A& ar) {
    ar(path, file);
  }
};

void send_output(const Output& output) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(output, out));
}
