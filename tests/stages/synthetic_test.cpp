#include "stages/synthetic.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "stages/clean_rules.hpp"
#include "stages/iso_time.hpp"
#include "stages/numbers.hpp"
#include "tests/stages/ops_test_support.hpp"

namespace millrace::stages {
namespace {

using Fields = std::vector<std::string>;
using testing::test_seed;

const std::vector<std::string> kColumns = {"order_id", "ts",  "customer", "country", "amount",
                                           "currency", "qty", "sku",      "note"};

std::vector<ConfigLine> lines(std::initializer_list<const char*> texts, const char* key) {
  std::vector<ConfigLine> out;
  int n = 20;
  for (const char* t : texts) {
    out.push_back({t, "orders.ini:" + std::to_string(n++) + ", key " + key});
  }
  return out;
}

// The [load] gen lines of the reference workload.
std::vector<ConfigLine> workload_gen() {
  return lines({"order_id : serial dup=0.03", "ts : timestamp 2019..2025", "customer : word",
                "country : choice US DE GB FR JP CN", "amount : decimal 0..5000.00",
                "currency : choice USD EUR GBP JPY CNY", "qty : int 1..20",
                "sku : pattern SKU-#####", "note : text"},
               "gen");
}

Synthetic make(double dirt, std::uint64_t seed) {
  auto s = Synthetic::parse(workload_gen(), dirt, seed, kColumns);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return std::move(s).value();
}

TEST(Synthetic, SameSeqGivesSameFieldsInAnyOrder) {
  const std::uint64_t seed = test_seed(42);
  const Synthetic a = make(0.08, seed);
  const Synthetic b = make(0.08, seed);
  std::vector<Fields> forward(2000);
  for (std::uint64_t seq = 1; seq <= forward.size(); ++seq) a.generate(seq, forward[seq - 1]);
  Fields f;
  for (std::uint64_t seq = forward.size(); seq >= 1; --seq) {
    b.generate(seq, f);
    ASSERT_EQ(f, forward[seq - 1]) << "seq " << seq;
  }
  // Resuming far away costs nothing and still agrees.
  Fields far1, far2;
  a.generate(123456789012ULL, far1);
  b.generate(123456789012ULL, far2);
  EXPECT_EQ(far1, far2);
}

TEST(Synthetic, DifferentSeedsGiveDifferentRecords) {
  const std::uint64_t seed = test_seed(42);
  const Synthetic a = make(0.08, seed);
  const Synthetic b = make(0.08, seed + 1);
  int same = 0;
  Fields fa, fb;
  for (std::uint64_t seq = 1; seq <= 1000; ++seq) {
    a.generate(seq, fa);
    b.generate(seq, fb);
    same += fa == fb ? 1 : 0;
  }
  EXPECT_LT(same, 5);
}

TEST(Synthetic, CleanRecordsFollowTheirKinds) {
  const Synthetic s = make(0.0, test_seed(3));
  const std::set<std::string> countries = {"US", "DE", "GB", "FR", "JP", "CN"};
  const std::set<std::string> currencies = {"USD", "EUR", "GBP", "JPY", "CNY"};
  std::map<int, int> decimals_shown;
  std::set<std::string> customers;
  int notes_with_specials = 0;
  int dups = 0;
  Fields f;
  for (std::uint64_t seq = 1; seq <= 20000; ++seq) {
    s.generate(seq, f);
    ASSERT_EQ(f.size(), kColumns.size());
    const auto id = parse_int64(f[0], false);
    ASSERT_TRUE(id.has_value()) << f[0];
    ASSERT_LE(*id, static_cast<std::int64_t>(seq));
    ASSERT_GE(*id, static_cast<std::int64_t>(seq) - 1000);
    dups += *id != static_cast<std::int64_t>(seq) ? 1 : 0;
    ASSERT_TRUE(parse_iso_utc(f[1], 2019, 2025).has_value()) << f[1];
    ASSERT_FALSE(f[2].empty());
    customers.insert(f[2]);
    ASSERT_TRUE(countries.count(f[3])) << f[3];
    std::int64_t cents = 0;
    ASSERT_EQ(parse_scaled_decimal(f[4], 2, false, cents), DecimalParse::kOk) << f[4];
    ASSERT_LE(cents, 500000);
    const auto dot = f[4].find('.');
    ++decimals_shown[dot == std::string::npos ? 0 : static_cast<int>(f[4].size() - dot - 1)];
    ASSERT_TRUE(currencies.count(f[5])) << f[5];
    const auto qty = parse_int64(f[6], false);
    ASSERT_TRUE(qty && *qty >= 1 && *qty <= 20) << f[6];
    ASSERT_EQ(f[7].size(), 9u);
    ASSERT_EQ(f[7].substr(0, 4), "SKU-");
    ASSERT_TRUE(
        std::all_of(f[7].begin() + 4, f[7].end(), [](char c) { return c >= '0' && c <= '9'; }));
    notes_with_specials += f[8].find_first_of(",\"\n\r") != std::string::npos ? 1 : 0;
  }
  EXPECT_NEAR(dups / 20000.0, 0.03, 0.01);
  EXPECT_GT(decimals_shown[2], decimals_shown[1]);
  EXPECT_GT(decimals_shown[1], 0);
  EXPECT_GT(decimals_shown[0], 0);
  EXPECT_GT(customers.size(), 1000u);
  EXPECT_GT(notes_with_specials, 1000);
}

CleanRules workload_rules() {
  auto rules = CleanRules::parse(
      {"all", "orders.ini:30, key trim"}, ConfigLine{"9 -> bad_field_count", "orders.ini:31"},
      lines({"order_id : int 1..                     -> bad_order_id",
             "ts       : timestamp 1970..            -> bad_ts",
             "customer : lower, required             -> bad_customer",
             "country  : upper, match [A-Z]{2}       -> bad_country",
             "amount   : decimal 2 ..1000000.00      -> bad_amount",
             "currency : upper, oneof USD EUR GBP JPY CNY -> bad_currency",
             "qty      : int 1..1000                 -> bad_qty"},
            "check"),
      kColumns);
  EXPECT_TRUE(rules.ok()) << rules.error().message;
  return std::move(rules).value();
}

TEST(Synthetic, DirtyRecordsFailTheWorkloadRulesAtAboutTheDirtRate) {
  const std::uint64_t seed = test_seed(42);
  const Synthetic s = make(0.08, seed);
  const CleanRules rules = workload_rules();
  std::map<std::string, int> reasons;
  int passed = 0;
  constexpr int kRecords = 50000;
  Fields f;
  for (std::uint64_t seq = 1; seq <= kRecords; ++seq) {
    s.generate(seq, f);
    const auto reason = rules.apply(f);
    if (reason) {
      ++reasons[std::string(*reason)];
    } else {
      ++passed;
    }
  }
  const double pass_rate = static_cast<double>(passed) / kRecords;
  std::cout << "clean pass rate at dirt 0.08: " << pass_rate << "\n";
  // Some defects (padding, case, a blank note) are repaired or allowed by the rules.
  EXPECT_GT(pass_rate, 0.92);
  EXPECT_LT(pass_rate, 0.96);
  for (const char* r : {"bad_field_count", "bad_order_id", "bad_ts", "bad_customer", "bad_country",
                        "bad_amount", "bad_currency", "bad_qty"}) {
    EXPECT_GT(reasons[r], 20) << r;
  }
}

TEST(Synthetic, ZeroDirtPassesEveryRule) {
  const Synthetic s = make(0.0, test_seed(5));
  const CleanRules rules = workload_rules();
  Fields f;
  for (std::uint64_t seq = 1; seq <= 20000; ++seq) {
    s.generate(seq, f);
    const auto reason = rules.apply(f);
    ASSERT_FALSE(reason.has_value()) << "seq " << seq << ": " << *reason;
  }
}

TEST(SyntheticParse, ErrorsNameTheLine) {
  auto kind = Synthetic::parse(lines({"order_id : serail"}, "gen"), 0.1, 1, {"order_id"});
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.error().code, static_cast<int>(SyntheticErrc::kUnknownKind));
  EXPECT_NE(kind.error().message.find("orders.ini:20, key gen: unknown kind 'serail'; did you mean "
                                      "'serial'?"),
            std::string::npos)
      << kind.error().message;
  auto column = Synthetic::parse(lines({"order : serial"}, "gen"), 0.1, 1, {"order_id"});
  ASSERT_FALSE(column.ok());
  EXPECT_EQ(column.error().code, static_cast<int>(SyntheticErrc::kUnknownColumn));
  auto missing = Synthetic::parse(lines({"a : word"}, "gen"), 0.1, 1, {"a", "b"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("'b'"), std::string::npos);
  for (const char* bad : {"a : int 5..1", "a : decimal 1..x", "a : timestamp 2020", "a : choice",
                          "a : serial dup=2", "a : word extra", "a : pattern", "a"}) {
    EXPECT_FALSE(Synthetic::parse(lines({bad}, "gen"), 0.1, 1, {"a"}).ok()) << bad;
  }
  EXPECT_FALSE(Synthetic::parse(lines({"a : word"}, "gen"), 1.5, 1, {"a"}).ok());
}

}  // namespace
}  // namespace millrace::stages
