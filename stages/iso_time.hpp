// Exact ISO-8601 UTC timestamps (`YYYY-MM-DDTHH:MM:SSZ`) and the proleptic Gregorian calendar,
// in plain integer arithmetic: no timegm, no locale, no time zone database, so any two
// machines agree on every value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace millrace::stages {

struct CivilTime {
  int year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..days_in_month
  int hour = 0;   // 0..23
  int minute = 0;
  int second = 0;  // 0..59: no leap seconds
};

inline constexpr int kMinIsoYear = 0;
inline constexpr int kMaxIsoYear = 9999;

bool is_leap_year(int year);
int days_in_month(int year, int month);

// Days since 1970-01-01 of a proleptic Gregorian date (negative before it).
std::int64_t days_from_civil(int year, int month, int day);
// Epoch seconds of a civil UTC time; the fields must be valid.
std::int64_t epoch_from_civil(const CivilTime& t);
CivilTime civil_from_epoch(std::int64_t epoch_seconds);

// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (ASCII digits, nothing before or after) that names a
// real time: month 1-12, day valid for the month (leap years honoured), hour 0-23, minute and
// second 0-59, and min_year <= year <= max_year. Anything else is nullopt.
std::optional<CivilTime> parse_iso_utc(std::string_view text, int min_year = kMinIsoYear,
                                       int max_year = kMaxIsoYear);
// The same, as epoch seconds.
std::optional<std::int64_t> parse_iso_utc_epoch(std::string_view text, int min_year = kMinIsoYear,
                                                int max_year = kMaxIsoYear);

// True when epoch_seconds falls in years kMinIsoYear..kMaxIsoYear, the range the formatting
// functions below accept.
bool epoch_in_iso_range(std::int64_t epoch_seconds);

// Appends `YYYY-MM-DD` of the UTC day holding epoch_seconds (years 0..9999).
void append_date(std::string& out, std::int64_t epoch_seconds);
// Appends `YYYY-MM-DDTHH:MM:SSZ` (years 0..9999).
void append_iso_utc(std::string& out, std::int64_t epoch_seconds);
// 0..23: the UTC hour of epoch_seconds.
int hour_of_epoch(std::int64_t epoch_seconds);

}  // namespace millrace::stages
