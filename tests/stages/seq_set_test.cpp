#include "stages/seq_set.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <random>
#include <set>

namespace millrace::stages {
namespace {

std::uint64_t test_seed() {
  const char* env = std::getenv("MILLRACE_SEED");
  std::uint64_t seed = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
  std::cout << "seed=" << seed << " (set MILLRACE_SEED to replay)\n";
  return seed;
}

TEST(SeqSet, LowIsFirstMissingPosition) {
  SeqSet s;
  EXPECT_EQ(s.low(), 1u);
  EXPECT_TRUE(s.covers_prefix(0));
  s.insert(2);
  EXPECT_EQ(s.low(), 1u);
  s.insert(1);
  EXPECT_EQ(s.low(), 3u);
  EXPECT_TRUE(s.covers_prefix(2));
  EXPECT_FALSE(s.covers_prefix(3));
}

TEST(SeqSet, InsertReportsDuplicates) {
  SeqSet s;
  EXPECT_TRUE(s.insert(5));
  EXPECT_FALSE(s.insert(5));
  EXPECT_TRUE(s.contains(5));
  EXPECT_FALSE(s.contains(4));
}

TEST(SeqSet, MatchesAReferenceSetUnderRandomInserts) {
  const std::uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> order(5000);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i + 1;
  std::shuffle(order.begin(), order.end(), rng);
  SeqSet s;
  std::set<std::uint64_t> ref;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::uint64_t v = order[i];
    EXPECT_EQ(s.insert(v), ref.insert(v).second);
    if (i % 97 == 0) {
      std::uint64_t low = 1;
      while (ref.count(low)) ++low;
      ASSERT_EQ(s.low(), low) << "seed=" << seed;
      ASSERT_EQ(s.size(), ref.size());
      auto round = SeqSet::parse(s.to_string());
      ASSERT_TRUE(round.has_value());
      ASSERT_TRUE(*round == s);
    }
  }
  EXPECT_EQ(s.intervals().size(), 1u);
  EXPECT_TRUE(s.covers_prefix(5000));
}

TEST(SeqSet, MergeJoinsOverlappingAndAdjacentIntervals) {
  SeqSet a, b;
  for (std::uint64_t v : {1, 2, 3, 10, 11}) a.insert(v);
  for (std::uint64_t v : {4, 5, 11, 12, 20}) b.insert(v);
  a.merge(b);
  EXPECT_EQ(a.to_string(), "1-5,10-12,20");
}

TEST(SeqSet, ParseRejectsMalformedText) {
  for (const char* bad : {"0", "a", "1-", "3-2", "1,1", "1-3,3", "1,", ",1", "1;2", "1-2,3"}) {
    EXPECT_FALSE(SeqSet::parse(bad).has_value()) << bad;
  }
  EXPECT_TRUE(SeqSet::parse("").has_value());
  EXPECT_EQ(SeqSet::parse("1-4,9")->size(), 5u);
}

}  // namespace
}  // namespace millrace::stages
