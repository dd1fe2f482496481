// Must not compile: a vector of empty elements has a length the receiver cannot bound.
#include <array>
#include <cstddef>
#include <vector>

#include "ipc/codec.hpp"

struct Tick {
  template <class A>
  void serialize(A&) {}
};

void send_ticks(const std::vector<Tick>& ticks) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(ticks, out));
}
