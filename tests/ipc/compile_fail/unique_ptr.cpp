// Must not compile: a std::unique_ptr member.
#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "ipc/codec.hpp"

struct Document {
  std::unique_ptr<std::string> body;
  template <class A>
  void serialize(A& ar) {
    ar(body);
  }
};

void send_document(const Document& document) {
  std::array<std::byte, 64> out{};
  static_cast<void>(millrace::ipc::encode(document, out));
}
