// Must not compile: the pointer hides one level down, in a member's member.
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "ipc/codec.hpp"

struct Inner {
  const char* label = nullptr;
  template <class A>
  void serialize(A& ar) {
    ar(label);
  }
};

struct Outer {
  std::string name;
  std::vector<Inner> inners;
  template <class A>
  void serialize(A& ar) {
    ar(name, inners);
  }
};

void send_outer(const Outer& outer) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(outer, out));
}
