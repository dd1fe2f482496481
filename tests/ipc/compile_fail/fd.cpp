// Must not compile: a file descriptor (ipc::Fd) member.
#include <array>
#include <cstddef>
#include <string>

#include "ipc/codec.hpp"

struct Connection {
  std::string peer;
  millrace::ipc::Fd socket;
  template <class A>
  void serialize(A& ar) {
    ar(peer, socket);
  }
};

void send_connection(const Connection& connection) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(connection, out));
}
