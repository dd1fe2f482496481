// Must not compile: std::tie makes a tuple of references into this process's memory.
#include <array>
#include <cstddef>
#include <string>
#include <tuple>

#include "ipc/codec.hpp"

void send_tied(int& id, std::string& name) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(std::tie(id, name), out));
}
