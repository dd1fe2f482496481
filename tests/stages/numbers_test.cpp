#include "stages/numbers.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace millrace::stages {
namespace {

TEST(Numbers, ParsesStrictIntegers) {
  EXPECT_EQ(parse_int64("0", false), 0);
  EXPECT_EQ(parse_int64("007", false), 7);
  EXPECT_EQ(parse_int64("9223372036854775807", false), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_int64("-9223372036854775808", true), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(parse_int64("9223372036854775808", false), std::nullopt);
  EXPECT_EQ(parse_int64("-9223372036854775809", true), std::nullopt);
  EXPECT_EQ(parse_int64("-1", false), std::nullopt);
  EXPECT_EQ(parse_int64("-", true), std::nullopt);
  EXPECT_EQ(parse_int64("", true), std::nullopt);
  EXPECT_EQ(parse_int64("+1", true), std::nullopt);
  EXPECT_EQ(parse_int64(" 1", true), std::nullopt);
}

std::optional<std::int64_t> scaled(const char* text, int scale, bool allow_sign = false) {
  std::int64_t v = 0;
  if (parse_scaled_decimal(text, scale, allow_sign, v) != DecimalParse::kOk) return std::nullopt;
  return v;
}

TEST(Numbers, ParsesDecimalsAsScaledIntegers) {
  EXPECT_EQ(scaled("0.5", 2), 50);
  EXPECT_EQ(scaled("7", 2), 700);
  EXPECT_EQ(scaled("12.3", 2), 1230);
  EXPECT_EQ(scaled("12.34", 2), 1234);
  EXPECT_EQ(scaled("007.00", 2), 700);
  EXPECT_EQ(scaled("1000000.00", 2), 100000000);
  EXPECT_EQ(scaled("-2.5", 3, true), -2500);
  EXPECT_EQ(scaled("92233720368547758.07", 2), std::numeric_limits<std::int64_t>::max());
  std::int64_t v = 0;
  EXPECT_EQ(parse_scaled_decimal("12.345", 2, false, v), DecimalParse::kTooManyDecimals);
  EXPECT_EQ(parse_scaled_decimal("92233720368547758.08", 2, false, v), DecimalParse::kOverflow);
  EXPECT_EQ(parse_scaled_decimal("99999999999999999999", 0, false, v), DecimalParse::kOverflow);
  for (const char* bad : {"", ".5", "5.", "1.2.3", "1e3", "1,5", " 1", "-1", "0x1"}) {
    EXPECT_EQ(parse_scaled_decimal(bad, 2, false, v), DecimalParse::kMalformed) << bad;
  }
}

TEST(Numbers, FormatsScaledValues) {
  std::string s;
  append_scaled(s, 123456, 2, 2);
  s += ' ';
  append_scaled(s, 123456, 2, 1);
  s += ' ';
  append_scaled(s, 123456, 2, 0);
  s += ' ';
  append_scaled(s, 5, 2, 2);
  s += ' ';
  append_scaled(s, -5, 2, 2);
  s += ' ';
  append_int(s, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(s, "1234.56 1234.5 1234 0.05 -0.05 -9223372036854775808");
}

}  // namespace
}  // namespace millrace::stages
