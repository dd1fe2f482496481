// The positive control of tests/ipc/compile_fail: every kind of type that may cross compiles,
// through the same API the compile-fail cases use, and round-trips.
#include "ipc/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <bitset>
#include <chrono>
#include <complex>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

namespace transferable_test {

enum class Color : std::uint8_t { kRed, kGreen };

// The fix for each compile-fail case: ids and values instead of pointers and handles.
struct Node {
  int value = 0;
  std::optional<std::uint32_t> next_id;  // instead of Node* next
  template <class A>
  void serialize(A& ar) {
    ar(value, next_id);
  }
  bool operator==(const Node&) const = default;
};

struct Output {
  std::string path;  // instead of FILE* file: open it on the receiving side
  template <class A>
  void serialize(A& ar) {
    ar(path);
  }
  bool operator==(const Output&) const = default;
};

struct Everything {
  bool flag = false;
  char c = 0;
  std::int64_t i64 = 0;
  double d = 0;
  Color color = Color::kRed;
  std::string text;
  std::array<std::int16_t, 3> arr{};
  int c_array[2] = {0, 0};
  std::vector<Node> nodes;
  std::deque<std::string> deque;
  std::list<double> list;
  std::optional<Output> output;
  std::pair<int, std::string> pair;
  std::tuple<int, float, std::string> tuple;
  std::variant<std::monostate, int, std::string> variant;
  std::map<std::string, std::vector<int>> map;
  std::multimap<int, int> multimap;
  std::unordered_map<std::string, int> umap;
  std::set<int> set;
  std::multiset<int> multiset;
  std::unordered_set<std::string> uset;
  std::bitset<12> bits;
  std::complex<double> complex;
  std::chrono::milliseconds duration{0};
  std::chrono::system_clock::time_point when;

  template <class A>
  void serialize(A& ar) {
    ar(flag, c, i64, d, color, text, arr, c_array, nodes, deque, list, output, pair, tuple,
       variant, map, multimap, umap, set, multiset, uset, bits, complex, duration, when);
  }
  bool operator==(const Everything&) const = default;
};

}  // namespace transferable_test

namespace millrace::ipc {
namespace {

using namespace transferable_test;

static_assert(Transferable<int>);
static_assert(Transferable<Color>);
static_assert(Transferable<std::string>);
static_assert(Transferable<std::vector<std::map<std::string, std::optional<Node>>>>);
static_assert(Transferable<Everything>);

// The shallow trait answers without failing the build.
static_assert(!is_transferable_shallow_v<int*>);
static_assert(!is_transferable_shallow_v<const char*>);
static_assert(!is_transferable_shallow_v<std::string_view>);
static_assert(!is_transferable_shallow_v<std::span<int>>);
static_assert(!is_transferable_shallow_v<std::unique_ptr<int>>);
static_assert(!is_transferable_shallow_v<std::shared_ptr<int>>);
static_assert(!is_transferable_shallow_v<std::function<void()>>);
static_assert(!is_transferable_shallow_v<std::FILE*>);
static_assert(!is_transferable_shallow_v<Fd>);
static_assert(!is_transferable_shallow_v<std::mutex>);
static_assert(!is_transferable_shallow_v<std::atomic<int>>);
static_assert(!is_transferable_shallow_v<std::thread>);
static_assert(!is_transferable_shallow_v<std::vector<int*>>);
static_assert(!is_transferable_shallow_v<std::tuple<int&>>);
static_assert(!is_transferable_shallow_v<std::reference_wrapper<int>>);
static_assert(is_transferable_shallow_v<Everything>);

struct Socket : ProcessLocal {};
static_assert(is_process_local_v<Socket>);
static_assert(!is_transferable_shallow_v<Socket>);

struct Handle {
  int raw = -1;
  template <class A>
  void serialize(A& ar) {
    ar(raw);
  }
};
}  // namespace
}  // namespace millrace::ipc

// A user's own process-local type, marked by specialising the trait.
template <>
struct millrace::ipc::is_process_local<millrace::ipc::Handle> : std::true_type {};

namespace millrace::ipc {
namespace {

static_assert(!is_transferable_shallow_v<Handle>);

TEST(Transferable, EveryAllowedKindCompilesAndRoundTrips) {
  Everything e;
  e.flag = true;
  e.c = 'x';
  e.i64 = -1;
  e.d = 3.5;
  e.color = Color::kGreen;
  e.text = "text";
  e.arr = {1, 2, 3};
  e.c_array[1] = 7;
  e.nodes = {Node{1, 2u}, Node{2, std::nullopt}};
  e.deque = {"d"};
  e.list = {1.5};
  e.output = Output{"/tmp/out"};
  e.pair = {1, "p"};
  e.tuple = {1, 2.5f, "t"};
  e.variant = std::string("v");
  e.map = {{"k", {1, 2}}};
  e.multimap = {{1, 1}, {1, 2}, {1, 3}, {0, 9}};
  e.umap = {{"u", 1}};
  e.set = {3, 1};
  e.multiset = {2, 2, 1};
  e.uset = {"s"};
  e.bits.set(3);
  e.complex = {1.0, -1.0};
  e.duration = std::chrono::milliseconds(1500);
  e.when = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

  std::array<std::byte, 4096> out{};
  const EncodeResult r = encode(e, out);
  ASSERT_TRUE(r.fit);
  Everything back;
  const Status status = decode(std::span<const std::byte>(out).first(r.size), back);
  ASSERT_TRUE(status.ok()) << status.error().what();
  EXPECT_EQ(back.flag, e.flag);
  EXPECT_EQ(back.c, e.c);
  EXPECT_EQ(back.i64, e.i64);
  EXPECT_EQ(back.d, e.d);
  EXPECT_EQ(back.color, e.color);
  EXPECT_EQ(back.text, e.text);
  EXPECT_EQ(back.arr, e.arr);
  EXPECT_EQ(back.c_array[1], e.c_array[1]);
  EXPECT_EQ(back.nodes, e.nodes);
  EXPECT_EQ(back.deque, e.deque);
  EXPECT_EQ(back.list, e.list);
  EXPECT_EQ(back.output, e.output);
  EXPECT_EQ(back.pair, e.pair);
  EXPECT_EQ(back.tuple, e.tuple);
  EXPECT_EQ(back.variant, e.variant);
  EXPECT_EQ(back.map, e.map);
  EXPECT_EQ(back.multimap, e.multimap);
  EXPECT_EQ(back.umap, e.umap);
  EXPECT_EQ(back.set, e.set);
  EXPECT_EQ(back.multiset, e.multiset);
  EXPECT_EQ(back.uset, e.uset);
  EXPECT_EQ(back.bits, e.bits);
  EXPECT_EQ(back.complex, e.complex);
  EXPECT_EQ(back.duration, e.duration);
  EXPECT_EQ(back.when, e.when);
  EXPECT_EQ(back, e);
}

}  // namespace
}  // namespace millrace::ipc
