// Must not compile: a lambda (a local closure) cannot cross.
#include <array>
#include <cstddef>

#include "ipc/codec.hpp"

void send_lambda(int factor) {
  std::array<std::byte, 64> out{};
  auto scale = [factor](int x) { return x * factor; };
  static_cast<void>(millrace::ipc::encode(scale, out));
}
