// Must not compile: a std::mutex member.
#include <array>
#include <cstddef>
#include <mutex>

#include "ipc/codec.hpp"

struct Counter {
  long count = 0;
  std::mutex lock;
  template <class A>
  void serialize(A& ar) {
    ar(count, lock);
  }
};

void send_counter(const Counter& counter) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(counter, out));
}
