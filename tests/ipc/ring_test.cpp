#include "ipc/ring.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/futex.hpp"
#include "ipc/version.hpp"

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;

std::uint64_t test_seed() {
  if (const char* env = std::getenv("MILLRACE_SEED")) return std::strtoull(env, nullptr, 0);
  return (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
}

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Record contents are a function of (seed, seq): a reader can check every byte.
void fill_record(std::span<std::byte> out, std::uint64_t seed, std::uint64_t seq) {
  std::uint64_t x = seed ^ (seq * 0xd1b54a32d192ed03ULL);
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const std::uint64_t v = splitmix(x);
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
  }
  if (out.size() >= 8) std::memcpy(out.data(), &seq, 8);
}

bool record_matches(std::span<const std::byte> in, std::uint64_t seed, std::uint64_t seq) {
  std::vector<std::byte> expected(in.size());
  fill_record(expected, seed, seq);
  return std::equal(in.begin(), in.end(), expected.begin());
}

// Mostly small records, some medium, a few up to the limit.
std::size_t random_size(std::mt19937_64& rng, std::size_t max) {
  const auto pick = rng() % 10;
  const std::size_t hi = pick < 5 ? 64 : pick < 9 ? 512 : max;
  return 1 + static_cast<std::size_t>(rng() % std::min(hi, max));
}

std::string test_prefix() { return "millrace-test-" + std::to_string(::getpid()) + "-"; }

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = test_seed();
    std::cout << "seed=" << seed_ << " (set MILLRACE_SEED to repeat)\n";
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    segments_.clear();
    for (const auto& n : names_) ::shm_unlink(n.c_str());
    std::vector<std::string> left;
    if (DIR* dir = ::opendir("/dev/shm")) {
      while (const dirent* e = ::readdir(dir)) {
        if (std::string_view(e->d_name).substr(0, test_prefix().size()) == test_prefix()) {
          left.emplace_back(e->d_name);
          ::shm_unlink(("/" + left.back()).c_str());
        }
      }
      ::closedir(dir);
    }
    EXPECT_TRUE(left.empty()) << "segments left behind, first: " << (left.empty() ? "" : left[0]);
  }

  // A fresh ring segment, unlinked in TearDown.
  SharedSegment& ring(std::size_t capacity) {
    const std::string name = "/" + test_prefix() + "ring-" + std::to_string(names_.size());
    names_.push_back(name);
    auto seg = create_ring_segment(name, capacity);
    if (!seg) throw std::runtime_error(seg.error().what());
    segments_.push_back(std::move(seg).value());
    return segments_.back();
  }

  static RingProducer producer(SharedSegment& seg) {
    auto p = RingProducer::attach(seg);
    if (!p) throw std::runtime_error(p.error().what());
    return std::move(p).value();
  }
  static RingConsumer consumer(SharedSegment& seg) {
    auto c = RingConsumer::attach(seg);
    if (!c) throw std::runtime_error(c.error().what());
    return std::move(c).value();
  }

  // Writes one record of `size` bytes with the contents of `seq`; false if the ring is full.
  bool write(RingProducer& p, std::size_t size, std::uint64_t seq) {
    auto span = p.try_reserve(size);
    if (span.empty()) return false;
    fill_record(span, seed_, seq);
    p.commit(size);
    return true;
  }

  template <typename Fn>
  pid_t fork_child(Fn&& fn) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(fn());
    children_.push_back(pid);
    return pid;
  }
  int reap(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    children_.erase(std::remove(children_.begin(), children_.end(), pid), children_.end());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::uint64_t seed_ = 0;
  std::deque<SharedSegment> segments_;
  std::vector<std::string> names_;
  std::vector<pid_t> children_;
};

TEST_F(RingTest, IsMoveOnly) {
  static_assert(!std::is_copy_constructible_v<RingProducer>);
  static_assert(!std::is_copy_constructible_v<RingConsumer>);
  static_assert(std::is_nothrow_move_constructible_v<RingProducer>);
  static_assert(std::is_nothrow_move_constructible_v<RingConsumer>);
  auto& seg = ring(4096);
  RingProducer p = producer(seg);
  RingProducer p2 = std::move(p);
  RingConsumer c = consumer(seg);
  RingConsumer c2 = std::move(c);
  ASSERT_TRUE(write(p2, 10, 1));
  ASSERT_TRUE(p2.publish().ok());
  auto rec = c2.try_peek();
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE(record_matches(*rec, seed_, 1));
}

TEST_F(RingTest, OneByteRecordRoundTrips) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  auto span = p.try_reserve(1);
  ASSERT_EQ(span.size(), 1U);
  span[0] = std::byte{0x42};
  p.commit(1);
  ASSERT_TRUE(p.publish().ok());
  auto rec = c.try_peek();
  ASSERT_TRUE(rec.has_value());
  ASSERT_EQ(rec->size(), 1U);
  EXPECT_EQ((*rec)[0], std::byte{0x42});
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(rec->data()) % 8, 0U);
  EXPECT_FALSE(c.try_peek().has_value());
  EXPECT_EQ(c.peeked(), 1U);
  ASSERT_TRUE(c.release().ok());
  EXPECT_EQ(c.peeked(), 0U);
}

TEST_F(RingTest, MaxSizeRecordRoundTripsAcrossTheWrap) {
  for (std::size_t cap : {std::size_t{4096}, std::size_t{1} << 16}) {
    SCOPED_TRACE("capacity=" + std::to_string(cap));
    auto& seg = ring(cap);
    auto p = producer(seg);
    auto c = consumer(seg);
    const std::size_t max = p.max_record_size();
    ASSERT_EQ(max, cap / 2 - 8);
    // Move the write position to cap/2 + 16 so that the next max-size record must wrap.
    ASSERT_TRUE(write(p, max, 1));  // a frame of cap/2 bytes
    ASSERT_TRUE(write(p, 1, 2));    // a frame of 16 bytes
    ASSERT_TRUE(p.publish().ok());
    ASSERT_TRUE(c.try_peek().has_value());
    ASSERT_TRUE(c.try_peek().has_value());
    ASSERT_TRUE(c.release().ok());
    for (std::uint64_t seq = 3; seq < 8; ++seq) {
      ASSERT_TRUE(write(p, max, seq)) << seq;
      ASSERT_TRUE(p.publish().ok());
      auto rec = c.try_peek();
      ASSERT_TRUE(rec.has_value()) << seq;
      ASSERT_EQ(rec->size(), max);
      EXPECT_TRUE(record_matches(*rec, seed_, seq)) << seq;
      ASSERT_TRUE(c.release().ok());
    }
  }
}

TEST_F(RingTest, TooLargeRecordIsRejectedWithTheLimit) {
  auto& seg = ring(8192);
  auto p = producer(seg);
  auto r = p.reserve_for(p.max_record_size() + 1, 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().component, "link");
  EXPECT_EQ(r.error().code, static_cast<int>(LinkError::kTooLarge));
  EXPECT_NE(r.error().what().find(std::to_string(p.max_record_size())), std::string::npos)
      << r.error().what();
  auto ok = p.reserve_for(p.max_record_size(), 1s);
  EXPECT_TRUE(ok.ok());
}

TEST_F(RingTest, WrapAroundDeliversEveryRecordOnceInOrder) {
  SCOPED_TRACE("seed=" + std::to_string(seed_));
  std::mt19937_64 rng(seed_);
  for (std::size_t cap : {4096, 8192, 16384, 65536, 1 << 20}) {
    SCOPED_TRACE("capacity=" + std::to_string(cap));
    auto& seg = ring(cap);
    auto p = producer(seg);
    auto c = consumer(seg);
    // Up to the limit in small rings; in large ones big records would only slow the test.
    const std::size_t max = std::min<std::size_t>(p.max_record_size(), 8192);
    std::deque<std::pair<std::uint64_t, std::size_t>> in_flight;
    std::uint64_t next = 1;
    std::uint64_t expected = 1;
    const std::uint64_t total = 20'000;
    while (expected <= total) {
      // Write a random batch until full, publish; then read a random batch, release.
      const auto batch = 1 + rng() % 40;
      for (std::uint64_t i = 0; i < batch && next <= total; ++i) {
        const std::size_t size = random_size(rng, max);
        if (!write(p, size, next)) break;
        in_flight.emplace_back(next++, size);
      }
      ASSERT_TRUE(p.publish().ok());
      const auto take = 1 + rng() % 40;
      for (std::uint64_t i = 0; i < take; ++i) {
        auto rec = c.try_peek();
        if (!rec) break;
        ASSERT_FALSE(in_flight.empty());
        const auto [seq, size] = in_flight.front();
        in_flight.pop_front();
        ASSERT_EQ(seq, expected);
        ASSERT_EQ(rec->size(), size) << "seq " << seq;
        ASSERT_TRUE(record_matches(*rec, seed_, seq)) << "seq " << seq;
        ++expected;
      }
      ASSERT_TRUE(c.release().ok());
    }
    EXPECT_FALSE(c.try_peek().has_value());
    EXPECT_EQ(p.stats().records, total);
    EXPECT_GT(p.stats().bytes / cap, 2U) << "the ring must have wrapped several times";
  }
}

TEST_F(RingTest, TwoThreadsDeliverEveryRecordOnceInOrder) {
  SCOPED_TRACE("seed=" + std::to_string(seed_));
  for (std::size_t cap : {4096, 65536}) {
    SCOPED_TRACE("capacity=" + std::to_string(cap));
    auto& seg = ring(cap);
    auto p = producer(seg);
    auto c = consumer(seg);
    const std::uint64_t total = 50'000;
    std::mt19937_64 sizes(seed_ + cap);
    std::vector<std::size_t> size_of(total + 1);
    for (auto& s : size_of) s = random_size(sizes, p.max_record_size());

    std::string producer_error;
    std::thread writer([&] {
      std::mt19937_64 rng(seed_ ^ 1);
      std::uint64_t seq = 1;
      while (seq <= total) {
        const auto batch = 1 + rng() % 64;
        for (std::uint64_t i = 0; i < batch && seq <= total; ++i, ++seq) {
          auto span = p.reserve_for(size_of[seq], 30s);
          if (!span) {
            producer_error = span.error().what();
            return;
          }
          fill_record(*span, seed_, seq);
          p.commit(size_of[seq]);
        }
        if (auto st = p.publish(); !st) {
          producer_error = st.error().what();
          return;
        }
      }
    });
    std::mt19937_64 rng(seed_ ^ 2);
    std::uint64_t expected = 1;
    std::string consumer_error;
    while (expected <= total && consumer_error.empty()) {
      // Wait for the first record of a batch only: waiting while holding peeked records
      // could wait forever on a ring they fill.
      auto first = c.peek_for(30s);
      if (!first) {
        consumer_error = first.error().what();
        break;
      }
      std::optional<std::span<const std::byte>> rec = *first;
      const auto batch = 1 + rng() % 64;
      for (std::uint64_t i = 1;; ++i) {
        if (rec->size() != size_of[expected] || !record_matches(*rec, seed_, expected)) {
          consumer_error = "record " + std::to_string(expected) + " damaged or out of order";
          break;
        }
        ++expected;
        if (i == batch || expected > total || !(rec = c.try_peek())) break;
      }
      if (auto st = c.release(); !st) consumer_error = st.error().what();
    }
    writer.join();
    ASSERT_EQ(producer_error, "");
    ASSERT_EQ(consumer_error, "");
    EXPECT_FALSE(c.try_peek().has_value());
  }
}

TEST_F(RingTest, CommittedRecordsAreInvisibleUntilPublish) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE(write(p, 100, seq));
  EXPECT_EQ(p.unpublished_bytes(), 3U * 112);
  EXPECT_FALSE(c.try_peek().has_value());
  EXPECT_EQ(c.stats().records, 0U);
  ASSERT_TRUE(p.publish().ok());
  EXPECT_EQ(p.unpublished_bytes(), 0U);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    auto rec = c.try_peek();
    ASSERT_TRUE(rec.has_value());
    EXPECT_TRUE(record_matches(*rec, seed_, seq));
  }
  EXPECT_FALSE(c.try_peek().has_value());
}

TEST_F(RingTest, PeekedSpaceIsNotReusedUntilRelease) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  // 56-byte records take 64-byte frames: exactly 64 fill the ring.
  std::uint64_t seq = 1;
  while (write(p, 56, seq)) ++seq;
  ASSERT_EQ(seq - 1, 64U);
  ASSERT_TRUE(p.publish().ok());
  std::vector<std::span<const std::byte>> held;
  while (auto rec = c.try_peek()) held.push_back(*rec);
  ASSERT_EQ(held.size(), 64U);
  EXPECT_TRUE(p.try_reserve(1).empty()) << "space of peeked records must not be reused";
  for (std::uint64_t i = 0; i < held.size(); ++i) {
    EXPECT_TRUE(record_matches(held[i], seed_, i + 1)) << i;
  }
  ASSERT_TRUE(c.release().ok());
  // The producer's cached tail is stale (it saw the ring full): it must reload it now.
  for (std::uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(write(p, 56, seq++)) << i;
  EXPECT_TRUE(p.try_reserve(1).empty());
}

TEST_F(RingTest, StaleCachedHeadIsReloadedWhenEmpty) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  EXPECT_FALSE(c.try_peek().has_value());  // caches head == tail
  for (std::uint64_t round = 1; round <= 200; ++round) {
    ASSERT_TRUE(write(p, 200, round));
    ASSERT_TRUE(p.publish().ok());
    auto rec = c.try_peek();
    ASSERT_TRUE(rec.has_value()) << round;
    EXPECT_TRUE(record_matches(*rec, seed_, round));
    EXPECT_FALSE(c.try_peek().has_value());
    ASSERT_TRUE(c.release().ok());
  }
}

TEST_F(RingTest, PublishAndReleaseWithNothingNewChangeNothing) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  ASSERT_TRUE(p.publish().ok());
  ASSERT_TRUE(c.release().ok());
  ASSERT_TRUE(write(p, 10, 1));
  ASSERT_TRUE(p.publish().ok());
  ASSERT_TRUE(p.publish().ok());
  EXPECT_EQ(p.stats().records, 1U);
  EXPECT_EQ(p.stats().bytes, 10U);
  ASSERT_TRUE(c.try_peek().has_value());
  ASSERT_TRUE(c.release().ok());
  ASSERT_TRUE(c.release().ok());
  EXPECT_EQ(c.stats().fill_bytes, 0U);
}

TEST_F(RingTest, TimedWaitsReturnTimeout) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  auto empty = c.peek_for(20ms);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, static_cast<int>(LinkError::kTimeout));
  EXPECT_NE(empty.error().what().find(seg.name()), std::string::npos);
  auto zero = c.peek_for(0ns);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, static_cast<int>(LinkError::kTimeout));

  std::uint64_t seq = 1;
  while (write(p, 500, seq)) ++seq;
  ASSERT_TRUE(p.publish().ok());
  auto full = p.reserve_for(500, 20ms);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, static_cast<int>(LinkError::kTimeout));
  EXPECT_GT(p.stats().producer_blocked_ns, 0U);
  EXPECT_GT(c.stats().consumer_waiting_ns, 0U);
}

TEST_F(RingTest, StatsCountRecordsBytesFillAndHighWater) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  for (std::uint64_t seq = 1; seq <= 10; ++seq) ASSERT_TRUE(write(p, 100, seq));
  ASSERT_TRUE(p.publish().ok());
  LinkStats s = c.stats();
  EXPECT_EQ(s.records, 10U);
  EXPECT_EQ(s.bytes, 1000U);
  EXPECT_EQ(s.capacity_bytes, 4096U);
  EXPECT_EQ(s.fill_bytes, 10U * 112);
  EXPECT_EQ(s.high_water_bytes, 10U * 112);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.try_peek().has_value());
  EXPECT_EQ(c.stats().fill_bytes, 10U * 112) << "peeked records still fill the ring";
  ASSERT_TRUE(c.release().ok());
  s = p.stats();
  EXPECT_EQ(s.fill_bytes, 5U * 112);
  EXPECT_EQ(s.high_water_bytes, 10U * 112);
  // Draining then refilling less does not lower the high-water mark.
  while (c.try_peek()) {
  }
  ASSERT_TRUE(c.release().ok());
  ASSERT_TRUE(write(p, 100, 11));
  ASSERT_TRUE(p.publish().ok());
  s = p.stats();
  EXPECT_EQ(s.fill_bytes, 112U);
  EXPECT_EQ(s.high_water_bytes, 10U * 112);
  EXPECT_EQ(s.records, 11U);
  EXPECT_EQ(s.bytes, 1100U);
}

TEST_F(RingTest, MarksAndStatsSurviveReattach) {
  auto& seg = ring(4096);
  {
    auto p = producer(seg);
    p.marks()[0].store(42, std::memory_order_release);
    p.marks()[kMarkSlots - 1].store(7, std::memory_order_release);
    ASSERT_TRUE(write(p, 30, 1));
    ASSERT_TRUE(p.publish().ok());
  }
  auto p = producer(seg);
  auto c = consumer(seg);
  EXPECT_EQ(p.marks()[0].load(std::memory_order_acquire), 42U);
  EXPECT_EQ(c.marks()[0].load(std::memory_order_acquire), 42U);
  EXPECT_EQ(c.marks()[kMarkSlots - 1].load(std::memory_order_acquire), 7U);
  EXPECT_EQ(c.stats().records, 1U);
  EXPECT_EQ(c.stats().bytes, 30U);
}

TEST_F(RingTest, ProducerReattachResumesAtPublishedHead) {
  auto& seg = ring(4096);
  auto c = consumer(seg);
  {
    auto p = producer(seg);
    ASSERT_TRUE(write(p, 40, 1));
    ASSERT_TRUE(p.publish().ok());
    ASSERT_TRUE(write(p, 40, 666));  // committed, never published: dies with its producer
    ASSERT_TRUE(write(p, 40, 667));
  }
  auto p = producer(seg);
  ASSERT_TRUE(write(p, 40, 2));
  ASSERT_TRUE(p.publish().ok());
  for (std::uint64_t seq = 1; seq <= 2; ++seq) {
    auto rec = c.try_peek();
    ASSERT_TRUE(rec.has_value());
    EXPECT_TRUE(record_matches(*rec, seed_, seq)) << seq;
  }
  EXPECT_FALSE(c.try_peek().has_value());
  EXPECT_EQ(c.stats().records, 2U);
}

TEST_F(RingTest, ConsumerReattachRereadsUnreleasedRecords) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  for (std::uint64_t seq = 1; seq <= 5; ++seq) ASSERT_TRUE(write(p, 64, seq));
  ASSERT_TRUE(p.publish().ok());
  {
    auto c = consumer(seg);
    ASSERT_TRUE(c.try_peek().has_value());
    ASSERT_TRUE(c.try_peek().has_value());
    ASSERT_TRUE(c.release().ok());
    ASSERT_TRUE(c.try_peek().has_value());  // 3 and 4 peeked, never released
    ASSERT_TRUE(c.try_peek().has_value());
  }
  auto c = consumer(seg);
  for (std::uint64_t seq = 3; seq <= 5; ++seq) {
    auto rec = c.try_peek();
    ASSERT_TRUE(rec.has_value()) << seq;
    EXPECT_TRUE(record_matches(*rec, seed_, seq)) << seq;
  }
  EXPECT_FALSE(c.try_peek().has_value());
}

TEST_F(RingTest, ConsumerGetsPeerGoneWhenProducerDiesAndResumesWithANewOne) {
  auto& seg = ring(4096);
  auto c = consumer(seg);
  const pid_t child = fork_child([&] { return RingProducer::attach(seg).ok() ? 0 : 1; });
  ASSERT_EQ(reap(child), 0);
  auto r = c.peek_for(10s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<int>(LinkError::kPeerGone)) << r.error().what();
  EXPECT_NE(r.error().what().find(std::to_string(child)), std::string::npos);
  EXPECT_FALSE(c.peer_alive());

  auto p = producer(seg);  // the restarted producer registers itself
  EXPECT_TRUE(c.peer_alive());
  ASSERT_TRUE(write(p, 8, 1));
  ASSERT_TRUE(p.publish().ok());
  auto rec = c.peek_for(10s);
  ASSERT_TRUE(rec.ok()) << rec.error().what();
  EXPECT_TRUE(record_matches(*rec, seed_, 1));
}

TEST_F(RingTest, ProducerGetsPeerGoneWhenConsumerDies) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  EXPECT_TRUE(p.peer_alive()) << "no consumer yet is not a dead consumer";
  const pid_t child = fork_child([&] { return RingConsumer::attach(seg).ok() ? 0 : 1; });
  ASSERT_EQ(reap(child), 0);
  std::uint64_t seq = 1;
  while (write(p, 200, seq)) ++seq;
  auto r = p.reserve_for(200, 10s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<int>(LinkError::kPeerGone)) << r.error().what();
  EXPECT_FALSE(p.peer_alive());
}

TEST_F(RingTest, ReserveForPublishesABatchLargerThanTheRing) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  const std::uint64_t total = 1000;  // ~100 KiB in one batch through a 4 KiB ring
  std::string error;
  std::thread writer([&] {
    for (std::uint64_t seq = 1; seq <= total; ++seq) {
      auto span = p.reserve_for(90, 30s);
      if (!span) {
        error = span.error().what();
        return;
      }
      fill_record(*span, seed_, seq);
      p.commit(90);
    }
    if (auto st = p.publish(); !st) error = st.error().what();
  });
  std::uint64_t got = 0;
  while (got < total) {
    auto rec = c.peek_for(30s);
    if (!rec) break;
    ASSERT_TRUE(record_matches(*rec, seed_, got + 1));
    ++got;
    ASSERT_TRUE(c.release().ok());
  }
  writer.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, total);
}

TEST_F(RingTest, WaitAnyReturnsTheReadyRing) {
  auto& s0 = ring(4096);
  auto& s1 = ring(4096);
  auto p0 = producer(s0);
  auto p1 = producer(s1);
  auto c0 = consumer(s0);
  auto c1 = consumer(s1);
  LinkReader* readers[] = {&c0, &c1};

  auto none = wait_any(readers, 10ms);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, static_cast<int>(LinkError::kTimeout));

  ASSERT_TRUE(write(p1, 16, 1));
  ASSERT_TRUE(p1.publish().ok());
  auto ready = wait_any(readers, 10s);
  ASSERT_TRUE(ready.ok()) << ready.error().what();
  EXPECT_EQ(*ready, 1U);
  ASSERT_TRUE(c1.try_peek().has_value());
  ASSERT_TRUE(c1.release().ok());

  // A publish from another thread wakes the sleeping waiter (whichever comes first).
  std::thread writer([&] {
    if (write(p0, 16, 2)) (void)p0.publish();
  });
  ready = wait_any(readers, 30s);
  writer.join();
  ASSERT_TRUE(ready.ok()) << ready.error().what();
  EXPECT_EQ(*ready, 0U);
  auto rec = c0.try_peek();
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE(record_matches(*rec, seed_, 2));
}

TEST_F(RingTest, AttachRejectsAnotherRingFormatVersion) {
  auto& seg = ring(4096);
  static_cast<detail::RingHeader*>(seg.payload())->format_version = kRingFormatVersion + 1;
  auto p = RingProducer::attach(seg);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, static_cast<int>(LinkError::kVersion));
  EXPECT_NE(p.error().what().find(seg.name()), std::string::npos);
  auto c = RingConsumer::attach(seg);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, static_cast<int>(LinkError::kVersion));
}

TEST_F(RingTest, AttachRejectsACapacityTheSegmentCannotHold) {
  auto& seg = ring(4096);
  static_cast<detail::RingHeader*>(seg.payload())->capacity = 8192;
  auto p = RingProducer::attach(seg);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, static_cast<int>(LinkError::kCorrupt));
  EXPECT_NE(p.error().what().find("8192"), std::string::npos) << p.error().what();
}

TEST_F(RingTest, CorruptFrameIsReportedNotDelivered) {
  auto& seg = ring(4096);
  auto p = producer(seg);
  auto c = consumer(seg);
  ASSERT_TRUE(write(p, 16, 1));
  ASSERT_TRUE(p.publish().ok());
  auto* data = static_cast<std::byte*>(seg.payload()) + sizeof(detail::RingHeader);
  const std::uint32_t huge = 1 << 20;
  std::memcpy(data, &huge, sizeof huge);  // the first frame's length
  EXPECT_FALSE(c.try_peek().has_value());
  EXPECT_TRUE(c.corrupt());
  auto r = c.peek_for(1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<int>(LinkError::kCorrupt));
}

TEST(Futex, WaitReportsValueChangedAndTimeoutDistinctly) {
  std::atomic<std::uint32_t> word{5};
  auto changed = futex_wait(&word, 4, 1s);
  ASSERT_TRUE(changed.ok()) << changed.error().what();
  EXPECT_EQ(*changed, FutexOutcome::kValueChanged);
  auto timed = futex_wait(&word, 5, 1ms);
  ASSERT_TRUE(timed.ok()) << timed.error().what();
  EXPECT_EQ(*timed, FutexOutcome::kTimedOut);

  const FutexWaitItem stale[] = {{&word, 4}};
  auto any_changed = futex_wait_any(stale, 1s);
  ASSERT_TRUE(any_changed.ok()) << any_changed.error().what();
  EXPECT_EQ(any_changed->outcome, FutexOutcome::kValueChanged);
  const FutexWaitItem current[] = {{&word, 5}};
  auto any_timed = futex_wait_any(current, 1ms);
  ASSERT_TRUE(any_timed.ok()) << any_timed.error().what();
  EXPECT_EQ(any_timed->outcome, FutexOutcome::kTimedOut);
  auto nobody = futex_wake(&word, 1);
  ASSERT_TRUE(nobody.ok());
  EXPECT_EQ(*nobody, 0);
}

TEST(Futex, WaitAnyNamesTheWokenWord) {
  std::atomic<std::uint32_t> a{0};
  std::atomic<std::uint32_t> b{0};
  // The waker changes the word before waking it, so the waiter cannot miss it: either it
  // sleeps and is woken on b, or it finds b changed.
  std::thread waker([&] {
    b.store(1, std::memory_order_release);
    (void)futex_wake(&b, 1);
  });
  const FutexWaitItem items[] = {{&a, 0}, {&b, 0}};
  auto r = futex_wait_any(items, 30s);
  waker.join();
  ASSERT_TRUE(r.ok()) << r.error().what();
  if (r->outcome == FutexOutcome::kWoken) {
    EXPECT_EQ(r->index, 1U);
  } else {
    EXPECT_EQ(r->outcome, FutexOutcome::kValueChanged);
  }
}

// Children that wait (one for data, one for space) for 2 s must use almost no CPU: a waiting
// stage must leave the machine's cores to the stages that work.
TEST_F(RingTest, IdleWaitersUseNoCpu) {
  auto& empty = ring(4096);
  auto& full = ring(4096);
  auto feeder = producer(empty);  // this process is the live peer of both waiters
  auto drain = consumer(full);
  constexpr auto kWait = 2s;
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  auto measure = [&](auto&& wait) {
    return [&, wait]() mutable {
      rusage before{};
      rusage after{};
      ::getrusage(RUSAGE_SELF, &before);
      const int code = wait();
      ::getrusage(RUSAGE_SELF, &after);
      auto us = [](const rusage& r) {
        return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1'000'000L + r.ru_utime.tv_usec +
               r.ru_stime.tv_usec;
      };
      const long used[2] = {code, us(after) - us(before)};
      return ::write(report[1], used, sizeof used) == sizeof used ? 0 : 1;
    };
  };
  const pid_t waiting_consumer = fork_child(measure([&] {
    auto c = RingConsumer::attach(empty);
    if (!c) return 10;
    auto r = c->peek_for(kWait);
    return !r && r.error().code == static_cast<int>(LinkError::kTimeout) ? 0 : 11;
  }));
  const pid_t waiting_producer = fork_child(measure([&] {
    auto p = RingProducer::attach(full);
    if (!p) return 20;
    while (!p->try_reserve(100).empty()) p->commit(100);
    if (!p->publish()) return 21;
    auto r = p->reserve_for(100, kWait);
    return !r && r.error().code == static_cast<int>(LinkError::kTimeout) ? 0 : 22;
  }));
  ::close(report[1]);
  for (int i = 0; i < 2; ++i) {
    long got[2] = {-1, -1};
    ASSERT_EQ(::read(report[0], got, sizeof got), static_cast<ssize_t>(sizeof got));
    EXPECT_EQ(got[0], 0) << "the child's wait did not end in kTimeout";
    std::cout << "idle waiter used " << got[1] << " us of CPU in 2 s\n";
    EXPECT_LT(got[1], 100'000) << "an idle waiter must use < 5% of a core";
  }
  ::close(report[0]);
  EXPECT_EQ(reap(waiting_consumer), 0);
  EXPECT_EQ(reap(waiting_producer), 0);
}

}  // namespace
}  // namespace millrace::ipc
