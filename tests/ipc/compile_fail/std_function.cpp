// Must not compile: a std::function member.
#include <array>
#include <cstddef>
#include <functional>
#include <string>

#include "ipc/codec.hpp"

struct Task {
  std::string name;
  std::function<int(int)> run;
  template <class A>
  void serialize(A& ar) {
    ar(name, run);
  }
};

void send_task(const Task& task) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(task, out));
}
