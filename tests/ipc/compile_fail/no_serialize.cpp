// Must not compile: a struct without a serialize() function.
#include <array>
#include <cstddef>
#include <string>

#include "ipc/codec.hpp"

struct Plain {
  int id = 0;
  std::string name;
};

void send_plain(const Plain& plain) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(plain, out));
}
