#include "stages/iso_time.hpp"

#include <gtest/gtest.h>

#include <string>

namespace millrace::stages {
namespace {

bool valid(const char* text, int min_year = kMinIsoYear, int max_year = kMaxIsoYear) {
  return parse_iso_utc(text, min_year, max_year).has_value();
}

TEST(IsoTime, AcceptsLeapDayOnlyInLeapYears) {
  EXPECT_TRUE(valid("2024-02-29T00:00:00Z"));
  EXPECT_FALSE(valid("2023-02-29T00:00:00Z"));
  EXPECT_FALSE(valid("1900-02-29T00:00:00Z")) << "divisible by 100, not by 400: not leap";
  EXPECT_TRUE(valid("2000-02-29T00:00:00Z")) << "divisible by 400: leap";
  EXPECT_FALSE(valid("2024-02-30T00:00:00Z"));
}

TEST(IsoTime, HonoursDaysPerMonth) {
  EXPECT_TRUE(valid("2023-01-31T00:00:00Z"));
  EXPECT_TRUE(valid("2023-04-30T00:00:00Z"));
  EXPECT_FALSE(valid("2023-04-31T00:00:00Z"));
  EXPECT_FALSE(valid("2023-06-31T00:00:00Z"));
  EXPECT_FALSE(valid("2023-09-31T00:00:00Z"));
  EXPECT_FALSE(valid("2023-11-31T00:00:00Z"));
  EXPECT_TRUE(valid("2023-12-31T00:00:00Z"));
  EXPECT_FALSE(valid("2023-13-01T00:00:00Z"));
  EXPECT_FALSE(valid("2023-00-01T00:00:00Z"));
  EXPECT_FALSE(valid("2023-01-00T00:00:00Z"));
}

TEST(IsoTime, AcceptsLastSecondOfDayAndRejectsHour24AndLeapSeconds) {
  EXPECT_TRUE(valid("2023-12-31T23:59:59Z"));
  EXPECT_FALSE(valid("2023-12-31T24:00:00Z"));
  EXPECT_FALSE(valid("2023-12-31T23:60:00Z"));
  EXPECT_FALSE(valid("2016-12-31T23:59:60Z")) << "no leap seconds";
}

TEST(IsoTime, EnforcesYearBounds) {
  EXPECT_FALSE(valid("1969-12-31T23:59:59Z", 1970));
  EXPECT_TRUE(valid("1970-01-01T00:00:00Z", 1970));
  EXPECT_TRUE(valid("2025-12-31T23:59:59Z", 1970, 2025));
  EXPECT_FALSE(valid("2026-01-01T00:00:00Z", 1970, 2025));
  EXPECT_TRUE(valid("0000-01-01T00:00:00Z"));
}

TEST(IsoTime, RejectsAnyOtherShape) {
  for (const char* text :
       {"2024-01-05T10:00:00", "2024-01-05t10:00:00Z", "2024-01-05 10:00:00Z",
        "2024-01-05T10:00:00+00:00", "2024-1-05T10:00:00Z", "2024-01-05T10:00:00Z ",
        " 2024-01-05T10:00:00Z", "2024/01/05T10:00:00Z", "2024-01-05T10:00:0aZ",
        "+024-01-05T10:00:00Z", "2024-01-05T10:00:00.5Z", "",
        "\xEF\xBC\x92"
        "024-01-05T10:00:00Z"}) {
    EXPECT_FALSE(valid(text)) << text;
  }
}

TEST(IsoTime, EpochSecondsOfKnownTimes) {
  EXPECT_EQ(parse_iso_utc_epoch("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_iso_utc_epoch("1969-12-31T23:59:59Z"), -1);
  EXPECT_EQ(parse_iso_utc_epoch("2000-03-01T00:00:00Z"), 951868800);
  EXPECT_EQ(parse_iso_utc_epoch("2024-02-29T12:34:56Z"), 1709210096);
  EXPECT_EQ(parse_iso_utc_epoch("2038-01-19T03:14:08Z"), 2147483648LL);
  EXPECT_EQ(parse_iso_utc_epoch("0001-01-01T00:00:00Z"), -62135596800LL);
  EXPECT_EQ(parse_iso_utc_epoch("9999-12-31T23:59:59Z"), 253402300799LL);
}

TEST(IsoTime, CivilAndEpochRoundTripOverEveryDayOfManyCenturies) {
  const std::int64_t first = days_from_civil(1, 1, 1);
  const std::int64_t last = days_from_civil(9999, 12, 31);
  CivilTime previous = civil_from_epoch(first * 86400);
  EXPECT_EQ(previous.year, 1);
  for (std::int64_t day = first + 1; day <= last; ++day) {
    const CivilTime t = civil_from_epoch(day * 86400 + 3661);
    ASSERT_EQ(days_from_civil(t.year, t.month, t.day), day);
    ASSERT_EQ(t.hour, 1);
    ASSERT_EQ(t.minute, 1);
    ASSERT_EQ(t.second, 1);
    // Consecutive days: the next day of the month, or the 1st of the next month.
    if (t.day != 1) {
      ASSERT_EQ(t.day, previous.day + 1);
    } else {
      ASSERT_EQ(previous.day, days_in_month(previous.year, previous.month));
    }
    previous = t;
  }
}

TEST(IsoTime, FormatsDateHourAndFullTime) {
  std::string s;
  append_date(s, 0);
  EXPECT_EQ(s, "1970-01-01");
  s.clear();
  append_date(s, -1);
  EXPECT_EQ(s, "1969-12-31");
  EXPECT_EQ(hour_of_epoch(-1), 23);
  EXPECT_EQ(hour_of_epoch(1709251199), 23);
  EXPECT_EQ(hour_of_epoch(1709251200), 0);
  s.clear();
  append_iso_utc(s, 1709210096);
  EXPECT_EQ(s, "2024-02-29T12:34:56Z");
  s.clear();
  append_iso_utc(s, 253402300799LL);
  EXPECT_EQ(s, "9999-12-31T23:59:59Z");
  EXPECT_TRUE(epoch_in_iso_range(253402300799LL));
  EXPECT_FALSE(epoch_in_iso_range(253402300800LL));
}

TEST(IsoTime, LeapYearRule) {
  EXPECT_TRUE(is_leap_year(2024));
  EXPECT_FALSE(is_leap_year(2023));
  EXPECT_FALSE(is_leap_year(1900));
  EXPECT_TRUE(is_leap_year(2000));
  EXPECT_EQ(days_in_month(2024, 2), 29);
  EXPECT_EQ(days_in_month(2100, 2), 28);
}

}  // namespace
}  // namespace millrace::stages
