// Must not compile: a struct that serialises a raw pointer member.
#include <array>
#include <cstddef>

#include "ipc/codec.hpp"

struct Node {
  int value = 0;
  Node* next = nullptr;
  template <class A>
  void serialize(A& ar) {
    ar(value, next);
  }
};

void send_node(const Node& node) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(node, out));
}
