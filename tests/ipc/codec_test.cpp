#include "ipc/codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cereal/archives/binary.hpp>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <list>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

// Counts allocations made by this thread while a test asks for it, and the largest one.
namespace {
thread_local bool g_counting = false;
thread_local std::size_t g_allocations = 0;
thread_local std::size_t g_largest_allocation = 0;

void* counted_alloc(std::size_t size) {
  if (g_counting) {
    ++g_allocations;
    g_largest_allocation = std::max(g_largest_allocation, size);
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

struct AllocationCounter {
  AllocationCounter() {
    g_allocations = 0;
    g_largest_allocation = 0;
    g_counting = true;
  }
  ~AllocationCounter() { g_counting = false; }
  AllocationCounter(const AllocationCounter&) = delete;
  AllocationCounter& operator=(const AllocationCounter&) = delete;
  [[nodiscard]] std::size_t allocations() const { return g_allocations; }
  [[nodiscard]] std::size_t largest() const { return g_largest_allocation; }
};
}  // namespace

void* operator new(std::size_t size) { return counted_alloc(size); }
void* operator new[](std::size_t size) { return counted_alloc(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace codec_test {

enum class Side : std::uint8_t { kBuy, kSell };

struct Order {
  std::uint64_t seq = 0;
  std::string symbol;
  double price = 0;
  std::int32_t qty = 0;
  Side side = Side::kBuy;
  bool urgent = false;
  std::vector<std::string> tags;
  std::optional<std::string> note;
  std::map<std::string, std::int64_t> attrs;
  std::variant<std::monostate, std::int64_t, std::string> extra;

  template <class A>
  void serialize(A& ar) {
    ar(seq, symbol, price, qty, side, urgent, tags, note, attrs, extra);
  }
  bool operator==(const Order&) const = default;
};

struct Invoice {
  std::uint64_t id = 0;
  std::string customer;
  template <class A>
  void serialize(A& ar) {
    ar(id, customer);
  }
  bool operator==(const Invoice&) const = default;
};

struct NamedV3 {
  static constexpr std::string_view kTransferName = "codec_test.Named";
  static constexpr std::uint32_t kTransferVersion = 3;
  std::int32_t x = 0;
  template <class A>
  void serialize(A& ar) {
    ar(x);
  }
};

struct NamedV4 {
  static constexpr std::string_view kTransferName = "codec_test.Named";
  static constexpr std::uint32_t kTransferVersion = 4;
  std::int32_t x = 0;
  template <class A>
  void serialize(A& ar) {
    ar(x);
  }
};

// A free serialize function.
struct Point {
  double x = 0;
  double y = 0;
  bool operator==(const Point&) const = default;
};
template <class A>
void serialize(A& ar, Point& p) {
  ar(p.x, p.y);
}

// save/load pair, private members.
class Money {
 public:
  Money() = default;
  Money(std::int64_t cents, std::string currency) : cents_(cents), currency_(std::move(currency)) {}
  bool operator==(const Money&) const = default;

 private:
  friend class cereal::access;
  template <class A>
  void save(A& ar) const {
    ar(cents_, currency_);
  }
  template <class A>
  void load(A& ar) {
    ar(cents_, currency_);
  }
  std::int64_t cents_ = 0;
  std::string currency_;
};

// save_minimal / load_minimal.
struct Celsius {
  double degrees = 0;
  template <class A>
  double save_minimal(const A&) const {
    return degrees;
  }
  template <class A>
  void load_minimal(const A&, const double& value) {
    degrees = value;
  }
  bool operator==(const Celsius&) const = default;
};

// A base class and named members.
struct Base {
  std::int32_t id = 0;
  template <class A>
  void serialize(A& ar) {
    ar(CEREAL_NVP(id));
  }
};
struct Derived : Base {
  std::string name;
  template <class A>
  void serialize(A& ar) {
    ar(cereal::base_class<Base>(this), CEREAL_NVP(name));
  }
};

struct Empty {
  template <class A>
  void serialize(A&) {}
};

std::uint64_t test_seed() {
  if (const char* env = std::getenv("MILLRACE_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

Order sample_order() {
  Order o;
  o.seq = 42;
  o.symbol = "ACME";
  o.price = 12.5;
  o.qty = -7;
  o.side = Side::kSell;
  o.urgent = true;
  o.tags = {"a", "bb", std::string(100, 'c')};
  o.note = "fragile";
  o.attrs = {{"x", 1}, {"y", -2}};
  o.extra = std::string("extra text");
  return o;
}

template <class T>
T round_trip(const T& value) {
  std::vector<std::byte> bytes = millrace::ipc::encode_to_vector(value);
  auto back = millrace::ipc::decode_from<T>(bytes);
  EXPECT_TRUE(back.ok()) << (back.ok() ? "" : back.error().what());
  return back.ok() ? std::move(back).value() : T{};
}

}  // namespace codec_test

namespace millrace::ipc {
namespace {

using namespace codec_test;

TEST(Codec, RoundTripsScalarsAndStrings) {
  EXPECT_EQ(round_trip(std::int8_t{-5}), -5);
  EXPECT_EQ(round_trip(std::uint64_t{0xFFFFFFFFFFFFFFFFull}), 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(round_trip(-1.25), -1.25);
  EXPECT_EQ(round_trip(true), true);
  EXPECT_EQ(round_trip('z'), 'z');
  EXPECT_EQ(round_trip(Side::kSell), Side::kSell);
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(round_trip(std::string(100000, 'q')), std::string(100000, 'q'));
  EXPECT_EQ(round_trip(std::string("nul\0inside", 10)), std::string("nul\0inside", 10));
}

TEST(Codec, RoundTripsStandardContainers) {
  const std::vector<std::int32_t> ints{1, -2, 3};
  EXPECT_EQ(round_trip(ints), ints);
  const std::vector<bool> bools{true, false, true};
  EXPECT_EQ(round_trip(bools), bools);
  const std::array<double, 3> arr{1.5, 2.5, 3.5};
  EXPECT_EQ(round_trip(arr), arr);
  const std::optional<std::string> some = "x";
  EXPECT_EQ(round_trip(some), some);
  const std::optional<std::string> none;
  EXPECT_EQ(round_trip(none), none);
  const std::map<std::string, std::vector<int>> map{{"a", {1}}, {"b", {}}};
  EXPECT_EQ(round_trip(map), map);
  const std::unordered_map<int, std::string> umap{{1, "one"}, {2, "two"}};
  EXPECT_EQ(round_trip(umap), umap);
  const std::pair<int, std::string> pair{3, "three"};
  EXPECT_EQ(round_trip(pair), pair);
  const std::tuple<int, double, std::string> tuple{1, 2.0, "3"};
  EXPECT_EQ(round_trip(tuple), tuple);
  const std::variant<int, std::string> variant = std::string("v");
  EXPECT_EQ(round_trip(variant), variant);
  const std::set<std::string> set{"x", "y"};
  EXPECT_EQ(round_trip(set), set);
  const std::deque<int> deque{4, 5};
  EXPECT_EQ(round_trip(deque), deque);
  const std::list<std::string> list{"l1", "l2"};
  EXPECT_EQ(round_trip(list), list);
  const std::chrono::nanoseconds ns{123456789};
  EXPECT_EQ(round_trip(ns), ns);
  const std::vector<std::optional<std::map<int, std::tuple<std::string, bool>>>> nested{
      std::nullopt, std::map<int, std::tuple<std::string, bool>>{{1, {"n", true}}}};
  EXPECT_EQ(round_trip(nested), nested);
}

TEST(Codec, RoundTripsUserTypesOfEverySerializationStyle) {
  EXPECT_EQ(round_trip(sample_order()), sample_order());
  EXPECT_EQ(round_trip(Point{1, 2}), (Point{1, 2}));
  EXPECT_EQ(round_trip(Money{1999, "EUR"}), (Money{1999, "EUR"}));
  EXPECT_EQ(round_trip(Celsius{21.5}), Celsius{21.5});
  Derived d;
  d.id = 9;
  d.name = "derived";
  const Derived back = round_trip(d);
  EXPECT_EQ(back.id, 9);
  EXPECT_EQ(back.name, "derived");
  const std::vector<Order> orders{sample_order(), Order{}, sample_order()};
  EXPECT_EQ(round_trip(orders), orders);
}

// A user type may write its own length with a size type narrower than cereal's.
struct Bytes32 {
  std::vector<std::int8_t> items;
  template <class Archive>
  void save(Archive& ar) const {
    auto n = static_cast<std::uint32_t>(items.size());
    ar(cereal::make_size_tag(n));
    for (const std::int8_t i : items) ar(i);
  }
  template <class Archive>
  void load(Archive& ar) {
    std::uint32_t n = 0;
    ar(cereal::make_size_tag(n));
    items.resize(n);
    for (std::int8_t& i : items) ar(i);
  }
  bool operator==(const Bytes32&) const = default;
};

TEST(Codec, SizeTagsOfANarrowerTypeRoundTripAndAreBoundsChecked) {
  const Bytes32 b{{1, 2, 3}};
  EXPECT_EQ(round_trip(b), b);
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive ar(os);
    ar(b);
  }
  const std::vector<std::byte> message = encode_to_vector(b);
  ASSERT_EQ(message.size(), kMessageHeaderSize + os.str().size());
  EXPECT_EQ(std::memcmp(message.data() + kMessageHeaderSize, os.str().data(), os.str().size()), 0);
  // A length larger than what follows is refused before anything is allocated.
  std::vector<std::byte> lying = message;
  lying[kMessageHeaderSize] = std::byte{0xFF};
  Bytes32 out;
  auto st = decode(std::span<const std::byte>(lying), out);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, static_cast<int>(CodecError::kCorrupt)) << st.error().message;
}

TEST(Codec, PayloadIsCerealsBinaryFormat) {
  const Order order = sample_order();
  std::ostringstream os;
  {
    cereal::BinaryOutputArchive ar(os);
    ar(order);
  }
  const std::string expected = os.str();
  const std::vector<std::byte> message = encode_to_vector(order);
  ASSERT_EQ(message.size(), kMessageHeaderSize + expected.size());
  EXPECT_EQ(std::memcmp(message.data() + kMessageHeaderSize, expected.data(), expected.size()), 0);
}

TEST(Codec, HeaderCarriesMagicFormatTagAndVersion) {
  const std::vector<std::byte> message = encode_to_vector(NamedV3{7});
  auto header = read_header(message);
  ASSERT_TRUE(header.ok()) << header.error().what();
  EXPECT_EQ(message[0], kCodecMagic);
  EXPECT_EQ(header->format_version, kCodecFormatVersion);
  EXPECT_EQ(header->type_version, 3u);
  EXPECT_EQ(header->type_tag, fnv1a_32("codec_test.Named"));
  static_assert(transfer_tag<NamedV3>() == fnv1a_32("codec_test.Named"));
  static_assert(transfer_version<Order>() == 1);
  static_assert(transfer_name<Order>() == "codec_test::Order");
}

TEST(Codec, EncodeReportsTheNeededSizeAndNeverWritesPastTheSpan) {
  const Order order = sample_order();
  const std::size_t needed = encoded_size(order);
  std::vector<std::byte> buffer(needed + 16, std::byte{0xEE});
  for (std::size_t size = 0; size < needed; ++size) {
    const EncodeResult r = encode(order, std::span<std::byte>(buffer).first(size));
    EXPECT_FALSE(r.fit) << "span of " << size;
    EXPECT_EQ(r.size, needed);
    for (std::size_t i = size; i < buffer.size(); ++i) {
      ASSERT_EQ(buffer[i], std::byte{0xEE}) << "wrote byte " << i << " with a span of " << size;
    }
  }
  const EncodeResult r = encode(order, std::span<std::byte>(buffer).first(needed));
  EXPECT_TRUE(r.fit);
  EXPECT_EQ(r.size, needed);
  Order back;
  ASSERT_TRUE(decode(std::span<const std::byte>(buffer).first(needed), back).ok());
  EXPECT_EQ(back, order);
}

TEST(Codec, DecodeOfAnotherTypeNamesBothTypes) {
  const std::vector<std::byte> message = encode_to_vector(Invoice{1, "c"});
  Order order;
  const Status status = decode(message, order);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().component, "codec");
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kTypeMismatch));
  EXPECT_NE(status.error().what().find("codec_test::Order"), std::string::npos)
      << status.error().what();
  EXPECT_NE(status.error().what().find("codec_test::Invoice"), std::string::npos)
      << status.error().what();
}

TEST(Codec, DecodeOfAnotherVersionNamesBothVersions) {
  const std::vector<std::byte> message = encode_to_vector(NamedV3{5});
  NamedV4 v4;
  const Status status = decode(message, v4);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kTypeVersion));
  EXPECT_NE(status.error().what().find("codec_test.Named version 4"), std::string::npos)
      << status.error().what();
  EXPECT_NE(status.error().what().find("codec_test.Named version 3"), std::string::npos)
      << status.error().what();
}

TEST(Codec, DecodeRejectsBadMagicAndOtherFormatVersion) {
  std::vector<std::byte> message = encode_to_vector(Invoice{1, "c"});
  Invoice out;
  message[0] = std::byte{0x00};
  Status status = decode(message, out);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kNotAMessage));
  message[0] = kCodecMagic;
  message[1] = std::byte{kCodecFormatVersion + 1};
  status = decode(message, out);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kFormatVersion));
  EXPECT_NE(status.error().what().find("codec format " + std::to_string(kCodecFormatVersion + 1)),
            std::string::npos)
      << status.error().what();
}

TEST(Codec, EveryTruncationIsAnError) {
  const std::vector<std::byte> message = encode_to_vector(sample_order());
  for (std::size_t size = 0; size < message.size(); ++size) {
    Order out;
    const Status status = decode(std::span<const std::byte>(message).first(size), out);
    ASSERT_FALSE(status.ok()) << "prefix of " << size << " bytes decoded";
    EXPECT_EQ(status.error().component, "codec");
  }
}

TEST(Codec, TrailingBytesAreAnError) {
  std::vector<std::byte> message = encode_to_vector(Invoice{1, "c"});
  message.push_back(std::byte{0});
  Invoice out;
  const Status status = decode(message, out);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kCorrupt));
  EXPECT_NE(status.error().what().find("1 bytes are left"), std::string::npos)
      << status.error().what();
}

TEST(Codec, HugeLengthFieldIsRejectedBeforeAllocating) {
  // Header of std::string, then a length of 2^60.
  std::vector<std::byte> message = encode_to_vector(std::string("abc"));
  const std::uint64_t huge = 1ull << 60;
  std::memcpy(message.data() + kMessageHeaderSize, &huge, sizeof huge);
  std::string out;
  Status status = ok_status();
  std::size_t largest = 0;
  {
    AllocationCounter counter;
    status = decode(message, out);
    largest = counter.largest();
  }
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kCorrupt));
  EXPECT_NE(status.error().what().find("length field"), std::string::npos) << status.error().what();
  EXPECT_LT(largest, 4096u);  // the error text only
}

TEST(Codec, InvalidBoolAndVariantIndexAreCorrupt) {
  std::vector<std::byte> message = encode_to_vector(true);
  message[kMessageHeaderSize] = std::byte{7};
  bool flag = false;
  Status status = decode(message, flag);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kCorrupt));

  using V = std::variant<int, std::string>;
  message = encode_to_vector(V{1});
  const std::int32_t index = 5;
  std::memcpy(message.data() + kMessageHeaderSize, &index, sizeof index);
  V v;
  status = decode(message, v);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kCorrupt));
  EXPECT_NE(status.error().what().find("alternative 5"), std::string::npos) << status.error().what();
}

// Random garbage after a valid header, and random corruptions of a valid message: decode must
// return (ok or an Error), and allocate no more than the input could justify.
TEST(Codec, GarbageInputGivesErrorsNotCrashesOrHugeAllocations) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::cout << "seed=" << seed << " (set MILLRACE_SEED to repeat)\n";
  std::mt19937_64 rng(seed);
  const std::vector<std::byte> valid = encode_to_vector(sample_order());
  std::size_t errors = 0;
  for (int round = 0; round < 20000; ++round) {
    std::vector<std::byte> input;
    if (round % 2 == 0) {
      input.assign(valid.begin(), valid.begin() + kMessageHeaderSize);
      const std::size_t extra = rng() % 256;
      for (std::size_t i = 0; i < extra; ++i) input.push_back(static_cast<std::byte>(rng()));
    } else {
      input = valid;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const std::size_t at = kMessageHeaderSize + rng() % (valid.size() - kMessageHeaderSize);
        input[at] = static_cast<std::byte>(rng());
      }
    }
    Order out;
    Status status = ok_status();
    std::size_t largest = 0;
    {
      AllocationCounter counter;
      status = decode(input, out);
      largest = counter.largest();
    }
    // A std::map node or a string is the largest thing an element can need per input byte.
    ASSERT_LE(largest, 4096 + input.size() * sizeof(std::string)) << "round " << round;
    if (!status.ok()) {
      ++errors;
      ASSERT_EQ(status.error().component, "codec");
      ASSERT_FALSE(status.error().what().empty());
    }
  }
  EXPECT_GT(errors, 0u);
}

TEST(Codec, DecodeReusesStorageAndDoesNotAllocateWhenCapacitySuffices) {
  Order big = sample_order();
  big.symbol = std::string(200, 's');
  big.tags = {std::string(64, 'a'), std::string(64, 'b'), std::string(64, 'c')};
  big.note = std::string(100, 'n');
  big.attrs.clear();
  big.extra = std::string(80, 'e');
  Order small = big;
  small.symbol = "S";
  small.tags = {"x", "y"};
  small.note = "n";
  small.extra = std::string("e");

  Order out;
  ASSERT_TRUE(decode(encode_to_vector(big), out).ok());
  const char* symbol_data = out.symbol.data();
  const std::string* tags_data = out.tags.data();
  const char* tag0_data = out.tags[0].data();
  const char* note_data = out.note->data();
  const char* extra_data = std::get<std::string>(out.extra).data();

  const std::vector<std::byte> message = encode_to_vector(small);
  std::size_t allocations = 0;
  {
    AllocationCounter counter;
    ASSERT_TRUE(decode(message, out).ok());
    allocations = counter.allocations();
  }
  EXPECT_EQ(allocations, 0u);
  EXPECT_EQ(out, small);
  EXPECT_EQ(out.symbol.data(), symbol_data);
  EXPECT_EQ(out.tags.data(), tags_data);
  EXPECT_EQ(out.tags[0].data(), tag0_data);
  EXPECT_EQ(out.note->data(), note_data);
  EXPECT_EQ(std::get<std::string>(out.extra).data(), extra_data);
}

TEST(Codec, EncodeDoesNotAllocate) {
  const Order order = sample_order();
  std::vector<std::byte> buffer(4096);
  std::size_t allocations = 0;
  EncodeResult r;
  {
    AllocationCounter counter;
    r = encode(order, buffer);
    allocations = counter.allocations();
  }
  EXPECT_TRUE(r.fit);
  EXPECT_EQ(allocations, 0u);
}

TEST(Codec, EncodeToVectorAppendsAfterExistingBytes) {
  std::vector<std::byte> out{std::byte{1}, std::byte{2}};
  encode_to_vector(Invoice{3, "inv"}, out);
  ASSERT_GT(out.size(), 2 + kMessageHeaderSize);
  EXPECT_EQ(out[0], std::byte{1});
  auto back = decode_from<Invoice>(std::span<const std::byte>(out).subspan(2));
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(back.value(), (Invoice{3, "inv"}));
}

TEST(Codec, EmptyClassesRoundTripButContainersOfThemAreNotTransferable) {
  static_cast<void>(round_trip(Empty{}));
  static_cast<void>(round_trip(std::optional<Empty>(Empty{})));
  EXPECT_FALSE(is_transferable_shallow_v<std::vector<Empty>>);
  EXPECT_FALSE((is_transferable_shallow_v<std::map<Empty, std::monostate>>));
  EXPECT_TRUE((is_transferable_shallow_v<std::map<int, Empty>>));
}

// An in-memory link: enough of LinkWriter/LinkReader to test send() and receive().
class MemoryLink final : public LinkWriter, public LinkReader {
 public:
  explicit MemoryLink(std::size_t capacity, std::size_t max_record)
      : capacity_(capacity), max_record_(max_record) {}

  std::span<std::byte> try_reserve(std::size_t size) override {
    ++reserves;
    if (used_ + size > capacity_) return {};
    reservation_.assign(size, std::byte{0});
    return reservation_;
  }
  Result<std::span<std::byte>> reserve_for(std::size_t size, std::chrono::nanoseconds) override {
    auto span = try_reserve(size);
    if (span.empty()) return Error{"link", static_cast<int>(LinkError::kTimeout), "full", 0};
    return span;
  }
  void commit(std::size_t used) override {
    reservation_.resize(used);
    used_ += used;
    committed_.push_back(reservation_);
  }
  Status publish() override {
    for (auto& r : committed_) published_.push_back(std::move(r));
    committed_.clear();
    return ok_status();
  }
  std::size_t max_record_size() const override { return max_record_; }
  LinkStats stats() const override { return {}; }
  std::span<std::atomic<std::uint64_t>, kMarkSlots> marks() override { return marks_; }
  bool peer_alive() const override { return true; }

  std::optional<std::span<const std::byte>> try_peek() override {
    if (peeked_ == published_.size()) return std::nullopt;
    return std::span<const std::byte>(published_[peeked_++]);
  }
  Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds) override {
    auto r = try_peek();
    if (!r) return Error{"link", static_cast<int>(LinkError::kTimeout), "empty", 0};
    return *r;
  }
  Status release() override { return ok_status(); }
  std::size_t peeked() const override { return peeked_; }
  std::span<const std::atomic<std::uint64_t>, kMarkSlots> marks() const override { return marks_; }
  WaitSpec arm_wait() override { return {}; }
  void disarm_wait() override {}

  int reserves = 0;

 private:
  std::size_t capacity_;
  std::size_t max_record_;
  std::size_t used_ = 0;
  std::vector<std::byte> reservation_;
  std::vector<std::vector<std::byte>> committed_;
  std::deque<std::vector<std::byte>> published_;
  std::size_t peeked_ = 0;
  std::array<std::atomic<std::uint64_t>, kMarkSlots> marks_{};
};

TEST(CodecLink, SendCommitsAndReceiveDecodesInOrder) {
  MemoryLink link(1 << 20, 1 << 16);
  Order big = sample_order();
  big.symbol = std::string(5000, 'b');  // larger than the first guess: reserves again
  ASSERT_TRUE(send(static_cast<LinkWriter&>(link), sample_order(), std::chrono::seconds(1)).ok());
  ASSERT_TRUE(send(static_cast<LinkWriter&>(link), big, std::chrono::seconds(1)).ok());
  ASSERT_TRUE(send(static_cast<LinkWriter&>(link), big, std::chrono::seconds(1)).ok());
  Order out;
  auto none = receive(static_cast<LinkReader&>(link), out);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value()) << "nothing is visible before publish()";
  ASSERT_TRUE(link.publish().ok());
  auto got = receive(static_cast<LinkReader&>(link), out);
  ASSERT_TRUE(got.ok() && got.value());
  EXPECT_EQ(out, sample_order());
  ASSERT_TRUE(receive_for(static_cast<LinkReader&>(link), out, std::chrono::seconds(1)).ok());
  EXPECT_EQ(out, big);
  ASSERT_TRUE(receive_for(static_cast<LinkReader&>(link), out, std::chrono::seconds(1)).ok());
  EXPECT_EQ(out, big);
}

TEST(CodecLink, SendOfAMessageLargerThanAnyRecordIsTooLarge) {
  MemoryLink link(1 << 20, 512);
  Order big = sample_order();
  big.symbol = std::string(1000, 'b');
  const Status status = send(static_cast<LinkWriter&>(link), big, std::chrono::seconds(1));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().component, "codec");
  EXPECT_EQ(status.error().code, static_cast<int>(CodecError::kTooLarge));
  EXPECT_NE(status.error().what().find("at most 512"), std::string::npos) << status.error().what();
}

TEST(CodecLink, ReceiveOfAnotherTypeIsACodecError) {
  MemoryLink link(1 << 20, 1 << 16);
  ASSERT_TRUE(send(static_cast<LinkWriter&>(link), Invoice{1, "x"}, std::chrono::seconds(1)).ok());
  ASSERT_TRUE(link.publish().ok());
  Order out;
  auto got = receive(static_cast<LinkReader&>(link), out);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, static_cast<int>(CodecError::kTypeMismatch));
}

}  // namespace
}  // namespace millrace::ipc
