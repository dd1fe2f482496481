#include "stages/clean_rules.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace millrace::stages {
namespace {

using Fields = std::vector<std::string>;

const std::vector<std::string> kColumns = {"order_id", "ts",  "customer", "country", "amount",
                                           "currency", "qty", "sku",      "note"};

std::vector<ConfigLine> lines(std::initializer_list<const char*> texts) {
  std::vector<ConfigLine> out;
  int n = 40;
  for (const char* t : texts)
    out.push_back({t, "orders.ini:" + std::to_string(n++) + ", key check"});
  return out;
}

// The [clean] section of the reference workload.
CleanRules workload_rules() {
  auto rules =
      CleanRules::parse({"all", "orders.ini:30, key trim"},
                        ConfigLine{"9 -> bad_field_count", "orders.ini:31, key fields"},
                        lines({"order_id : int 1..                     -> bad_order_id",
                               "ts       : timestamp 1970..            -> bad_ts",
                               "customer : lower, required             -> bad_customer",
                               "country  : upper, match [A-Z]{2}       -> bad_country",
                               "amount   : decimal 2 ..1000000.00      -> bad_amount",
                               "currency : upper, oneof USD EUR GBP JPY CNY -> bad_currency",
                               "qty      : int 1..1000                 -> bad_qty"}),
                        kColumns);
  EXPECT_TRUE(rules.ok()) << rules.error().message;
  return std::move(rules).value();
}

Fields good() {
  return {"17", "2024-02-29T23:59:59Z", "Alice", "de", "12.30", "eur", "3", "SKU-00001", "note"};
}

// The reason `fields` with field `column` set to `value` gets, or "" when it passes.
std::string reason_with(const std::string& column, const std::string& value) {
  static const CleanRules rules = workload_rules();
  Fields f = good();
  const auto it = std::find(kColumns.begin(), kColumns.end(), column);
  f[static_cast<std::size_t>(it - kColumns.begin())] = value;
  const auto reason = rules.apply(f);
  return reason ? std::string(*reason) : std::string();
}

TEST(CleanRules, PassesAValidRecordAndNormalisesCase) {
  const CleanRules rules = workload_rules();
  Fields f = good();
  EXPECT_EQ(rules.apply(f), std::nullopt);
  EXPECT_EQ(f, (Fields{"17", "2024-02-29T23:59:59Z", "alice", "DE", "12.30", "EUR", "3",
                       "SKU-00001", "note"}));
}

TEST(CleanRules, TrimsSpacesAndTabsButNothingElse) {
  const CleanRules rules = workload_rules();
  Fields f = good();
  f[0] = " \t17\t ";
  f[7] = "\t SKU-1 ";
  f[8] = "  a note, kept inside  ";
  EXPECT_EQ(rules.apply(f), std::nullopt);
  EXPECT_EQ(f[0], "17");
  EXPECT_EQ(f[7], "SKU-1");
  EXPECT_EQ(f[8], "a note, kept inside");
  EXPECT_EQ(reason_with("order_id", "17\n"), "bad_order_id");
  EXPECT_EQ(reason_with("order_id", "\r17"), "bad_order_id");
  EXPECT_EQ(reason_with("order_id",
                        "\xC2\xA0"
                        "17"),
            "bad_order_id")
      << "no-break space stays";
  EXPECT_EQ(reason_with("order_id", "\v17"), "bad_order_id");
  EXPECT_EQ(reason_with("customer", " \t "), "bad_customer") << "blank after trimming";
}

TEST(CleanRules, FieldCountIsCheckedBeforeAnyField) {
  const CleanRules rules = workload_rules();
  Fields f = good();
  f[1] = "not a time";
  f.pop_back();
  EXPECT_EQ(rules.apply(f), "bad_field_count");
  Fields more = good();
  more.push_back("");
  EXPECT_EQ(rules.apply(more), "bad_field_count");
  Fields one = {""};
  EXPECT_EQ(rules.apply(one), "bad_field_count");
}

TEST(CleanRules, FirstFailingCheckWins) {
  const CleanRules rules = workload_rules();
  Fields f = good();
  f[1] = "2023-02-29T00:00:00Z";
  f[4] = "abc";
  f[6] = "0";
  EXPECT_EQ(rules.apply(f), "bad_ts");
}

TEST(CleanRules, IdIsDigitsAtLeastOneWithinInt64) {
  EXPECT_EQ(reason_with("order_id", "1"), "");
  EXPECT_EQ(reason_with("order_id", "007"), "") << "leading zeros: 7";
  EXPECT_EQ(reason_with("order_id", "9223372036854775807"), "");
  EXPECT_EQ(reason_with("order_id", "0009223372036854775807"), "");
  for (const char* bad : {"0", "000", "", "-1", "+1", "1.0", "1e3", "12a", "9223372036854775808",
                          "99999999999999999999", "\xD9\xA1"}) {
    EXPECT_EQ(reason_with("order_id", bad), "bad_order_id") << bad;
  }
}

TEST(CleanRules, TimestampMustBeARealUtcTimeFrom1970) {
  EXPECT_EQ(reason_with("ts", "2024-02-29T00:00:00Z"), "");
  EXPECT_EQ(reason_with("ts", "2000-02-29T00:00:00Z"), "");
  EXPECT_EQ(reason_with("ts", "1970-01-01T00:00:00Z"), "");
  EXPECT_EQ(reason_with("ts", "2023-12-31T23:59:59Z"), "");
  for (const char* bad : {"2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
                          "2023-12-31T24:00:00Z", "1969-12-31T23:59:59Z", "2024-01-01T00:00:00",
                          "2024-01-01 00:00:00Z", "2024-01-01T00:00:00z", ""}) {
    EXPECT_EQ(reason_with("ts", bad), "bad_ts") << bad;
  }
}

TEST(CleanRules, CustomerIsLowerCasedAsciiAndRequired) {
  const CleanRules rules = workload_rules();
  Fields f = good();
  f[2] = "\xC3\x84LICE Smith";
  EXPECT_EQ(rules.apply(f), std::nullopt);
  EXPECT_EQ(f[2], "\xC3\x84lice smith") << "only ASCII letters change";
  EXPECT_EQ(reason_with("customer", ""), "bad_customer");
}

TEST(CleanRules, CountryIsTwoAsciiLettersAfterUpperCasing) {
  EXPECT_EQ(reason_with("country", "gb"), "");
  EXPECT_EQ(reason_with("country", "Gb"), "");
  for (const char* bad : {"DEU", "D", "", "D1", "d\xC3\xA9", "D E"}) {
    EXPECT_EQ(reason_with("country", bad), "bad_country") << bad;
  }
}

TEST(CleanRules, AmountIsAnExactDecimalUpToTheBound) {
  for (const char* ok :
       {"0", "0.5", "7", "12.3", "12.30", "007.10", "1000000.00", "1000000", "999999.99"}) {
    EXPECT_EQ(reason_with("amount", ok), "") << ok;
  }
  for (const char* bad : {"1000000.01", "1000001", "12.345", ".5", "5.", "1e3", "1,000", "-1", "+1",
                          "12.3.4", "", "99999999999999999999", "0x10"}) {
    EXPECT_EQ(reason_with("amount", bad), "bad_amount") << bad;
  }
}

TEST(CleanRules, CurrencyIsOneOfTheListAfterUpperCasing) {
  EXPECT_EQ(reason_with("currency", "usd"), "");
  EXPECT_EQ(reason_with("currency", "Jpy"), "");
  for (const char* bad : {"USDX", "US", "", "XXX", "U SD"}) {
    EXPECT_EQ(reason_with("currency", bad), "bad_currency") << bad;
  }
}

TEST(CleanRules, QuantityIsWithinItsRange) {
  EXPECT_EQ(reason_with("qty", "1"), "");
  EXPECT_EQ(reason_with("qty", "1000"), "");
  EXPECT_EQ(reason_with("qty", "0001000"), "");
  for (const char* bad : {"0", "1001", "5000", "-3", "2.0", ""}) {
    EXPECT_EQ(reason_with("qty", bad), "bad_qty") << bad;
  }
}

TEST(CleanRules, TrimListAndNoneLimitTrimming) {
  const std::vector<std::string> cols = {"a", "b"};
  auto some = CleanRules::parse({"b", "t.ini:1, key trim"}, std::nullopt, {}, cols);
  ASSERT_TRUE(some.ok()) << some.error().message;
  Fields f = {" x ", " y "};
  EXPECT_EQ(some->apply(f), std::nullopt);
  EXPECT_EQ(f, (Fields{" x ", "y"}));
  auto none = CleanRules::parse({"none", "t.ini:1, key trim"}, std::nullopt, {}, cols);
  ASSERT_TRUE(none.ok());
  f = {" x ", " y "};
  EXPECT_EQ(none->apply(f), std::nullopt);
  EXPECT_EQ(f, (Fields{" x ", " y "}));
  f = {"x"};
  EXPECT_EQ(none->apply(f), "bad_field_count") << "the default count is the columns'";
}

TEST(CleanRules, OtherOpForms) {
  const std::vector<std::string> cols = {"n", "d", "t", "code"};
  auto rules = CleanRules::parse(
      {"all", "t.ini:1, key trim"}, std::nullopt,
      lines({"n : int ..5 -> small", "n : int -> int", "d : decimal 0 -> whole",
             "d : decimal 3 -2.5..10.125 -> range", "t : timestamp 2000..2010 -> decade",
             "code : match [A-Z]{1,3}-[0-9]+ -> code"}),
      cols);
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  const auto check = [&](Fields f) {
    const auto r = rules->apply(f);
    return r ? std::string(*r) : std::string();
  };
  EXPECT_EQ(check({"5", "10", "2005-06-01T00:00:00Z", "AB-12"}), "");
  EXPECT_EQ(check({"6", "10", "2005-06-01T00:00:00Z", "AB-12"}), "small");
  EXPECT_EQ(check({"5", "10.5", "2005-06-01T00:00:00Z", "AB-12"}), "whole");
  EXPECT_EQ(check({"5", "11", "2005-06-01T00:00:00Z", "AB-12"}), "range");
  EXPECT_EQ(check({"5", "10", "2011-01-01T00:00:00Z", "AB-12"}), "decade");
  EXPECT_EQ(check({"5", "10", "2005-06-01T00:00:00Z", "ABCD-12"}), "code") << "full match only";
  EXPECT_EQ(check({"5", "10", "2005-06-01T00:00:00Z", "xAB-12"}), "code");
}

Error parse_error(const char* check) {
  auto r =
      CleanRules::parse({"all", "orders.ini:30, key trim"}, std::nullopt, lines({check}), kColumns);
  EXPECT_FALSE(r.ok()) << check;
  return r.ok() ? Error{} : r.error();
}

TEST(CleanRulesParse, UnknownOpSuggestsTheClosestAndListsAccepted) {
  const Error e = parse_error("customer : lowr, required -> bad_customer");
  EXPECT_EQ(e.code, static_cast<int>(RulesErrc::kUnknownOp));
  EXPECT_NE(e.message.find("orders.ini:40, key check: "), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("unknown op 'lowr'; did you mean 'lower'?"), std::string::npos)
      << e.message;
  EXPECT_NE(
      e.message.find("accepted: lower, upper, required, int, decimal, timestamp, match, oneof"),
      std::string::npos)
      << e.message;
}

TEST(CleanRulesParse, UnknownFieldSuggestsAColumn) {
  const Error e = parse_error("custmer : lower -> bad_customer");
  EXPECT_EQ(e.code, static_cast<int>(RulesErrc::kUnknownField));
  EXPECT_NE(e.message.find("unknown field 'custmer'; did you mean 'customer'?"), std::string::npos)
      << e.message;
}

TEST(CleanRulesParse, BadArgumentsAreExplained) {
  EXPECT_NE(parse_error("amount : decimal 2 ..1000000.001 -> bad").message.find("more decimals"),
            std::string::npos);
  EXPECT_NE(parse_error("amount : decimal x -> bad").message.find("decimal SCALE"),
            std::string::npos);
  EXPECT_NE(parse_error("qty : int 10..1 -> bad").message.find("empty"), std::string::npos);
  EXPECT_NE(parse_error("qty : int 1-10 -> bad").message.find("LO..HI"), std::string::npos);
  EXPECT_NE(parse_error("qty : int 1..x -> bad").message.find("'x'"), std::string::npos);
  EXPECT_NE(parse_error("ts : timestamp 1970..10000 -> bad").message.find("year"),
            std::string::npos);
  EXPECT_NE(parse_error("country : match [A-Z -> bad").message.find("bad regex"),
            std::string::npos);
  EXPECT_NE(parse_error("country : oneof -> bad").message.find("at least one"), std::string::npos);
  EXPECT_NE(parse_error("customer : lower x -> bad").message.find("no arguments"),
            std::string::npos);
  EXPECT_EQ(parse_error("customer : lower").code, static_cast<int>(RulesErrc::kSyntax));
  EXPECT_EQ(parse_error("customer lower -> bad").code, static_cast<int>(RulesErrc::kSyntax));
  EXPECT_EQ(parse_error("customer : lower -> two words").code,
            static_cast<int>(RulesErrc::kSyntax));
  EXPECT_EQ(parse_error("customer : -> bad").code, static_cast<int>(RulesErrc::kSyntax));
}

TEST(CleanRulesParse, FieldsAndTrimLinesAreChecked) {
  auto count = CleanRules::parse({"all", "w"}, ConfigLine{"8 -> bad", "orders.ini:31, key fields"},
                                 {}, kColumns);
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.error().message.find("orders.ini:31, key fields"), std::string::npos);
  auto shape = CleanRules::parse({"all", "w"}, ConfigLine{"nine", "orders.ini:31, key fields"}, {},
                                 kColumns);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.error().message.find("COUNT -> REASON"), std::string::npos);
  auto trim = CleanRules::parse({"customer, contry", "orders.ini:30, key trim"}, std::nullopt, {},
                                kColumns);
  ASSERT_FALSE(trim.ok());
  EXPECT_NE(trim.error().message.find("did you mean 'country'"), std::string::npos)
      << trim.error().message;
}

}  // namespace
}  // namespace millrace::stages
