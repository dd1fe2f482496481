#include "stages/iso_time.hpp"

#include <cassert>

namespace millrace::stages {
namespace {

constexpr std::int64_t kSecondsPerDay = 86400;

// Floor division: the calendar needs days and seconds that round towards minus infinity.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

void append_digits(std::string& out, int value, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out.append(buf, static_cast<std::size_t>(width));
}

}  // namespace

bool is_leap_year(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  assert(month >= 1 && month <= 12 && "days_in_month: month out of range");
  return month == 2 && is_leap_year(year) ? 29 : kDays[month - 1];
}

// Howard Hinnant's days_from_civil: eras of 400 years, years starting in March so that the
// leap day is the last day of the year.
std::int64_t days_from_civil(int year, int month, int day) {
  const std::int64_t y = static_cast<std::int64_t>(year) - (month <= 2 ? 1 : 0);
  const std::int64_t era = floor_div(y, 400);
  const std::int64_t yoe = y - era * 400;                          // [0, 399]
  const std::int64_t mp = (month + 9) % 12;                        // March = 0
  const std::int64_t doy = (153 * mp + 2) / 5 + day - 1;           // [0, 365]
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;  // [0, 146096]
  return era * 146097 + doe - 719468;
}

std::int64_t epoch_from_civil(const CivilTime& t) {
  return days_from_civil(t.year, t.month, t.day) * kSecondsPerDay + t.hour * 3600 + t.minute * 60 +
         t.second;
}

CivilTime civil_from_epoch(std::int64_t epoch_seconds) {
  const std::int64_t days = floor_div(epoch_seconds, kSecondsPerDay);
  const std::int64_t secs = epoch_seconds - days * kSecondsPerDay;
  const std::int64_t z = days + 719468;
  const std::int64_t era = floor_div(z, 146097);
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  CivilTime t;
  t.year = static_cast<int>(y);
  t.month = static_cast<int>(m);
  t.day = static_cast<int>(d);
  t.hour = static_cast<int>(secs / 3600);
  t.minute = static_cast<int>(secs / 60 % 60);
  t.second = static_cast<int>(secs % 60);
  return t;
}

std::optional<CivilTime> parse_iso_utc(std::string_view s, int min_year, int max_year) {
  // 0123456789012345678 9
  // YYYY-MM-DDTHH:MM:SS Z
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != 'Z') {
    return std::nullopt;
  }
  CivilTime t;
  if (!digits(s, 0, 4, t.year) || !digits(s, 5, 2, t.month) || !digits(s, 8, 2, t.day) ||
      !digits(s, 11, 2, t.hour) || !digits(s, 14, 2, t.minute) || !digits(s, 17, 2, t.second)) {
    return std::nullopt;
  }
  if (t.year < min_year || t.year > max_year || t.month < 1 || t.month > 12 || t.day < 1 ||
      t.day > days_in_month(t.year, t.month) || t.hour > 23 || t.minute > 59 || t.second > 59) {
    return std::nullopt;
  }
  return t;
}

std::optional<std::int64_t> parse_iso_utc_epoch(std::string_view text, int min_year, int max_year) {
  const auto t = parse_iso_utc(text, min_year, max_year);
  if (!t) return std::nullopt;
  return epoch_from_civil(*t);
}

void append_date(std::string& out, std::int64_t epoch_seconds) {
  const CivilTime t = civil_from_epoch(epoch_seconds);
  assert(t.year >= kMinIsoYear && t.year <= kMaxIsoYear && "append_date: year out of 0..9999");
  append_digits(out, t.year, 4);
  out.push_back('-');
  append_digits(out, t.month, 2);
  out.push_back('-');
  append_digits(out, t.day, 2);
}

void append_iso_utc(std::string& out, std::int64_t epoch_seconds) {
  const CivilTime t = civil_from_epoch(epoch_seconds);
  append_date(out, epoch_seconds);
  out.push_back('T');
  append_digits(out, t.hour, 2);
  out.push_back(':');
  append_digits(out, t.minute, 2);
  out.push_back(':');
  append_digits(out, t.second, 2);
  out.push_back('Z');
}

bool epoch_in_iso_range(std::int64_t epoch_seconds) {
  static const std::int64_t kLow = days_from_civil(kMinIsoYear, 1, 1) * kSecondsPerDay;
  static const std::int64_t kHigh = days_from_civil(kMaxIsoYear + 1, 1, 1) * kSecondsPerDay;
  return epoch_seconds >= kLow && epoch_seconds < kHigh;
}

int hour_of_epoch(std::int64_t epoch_seconds) {
  const std::int64_t secs =
      epoch_seconds - floor_div(epoch_seconds, kSecondsPerDay) * kSecondsPerDay;
  return static_cast<int>(secs / 3600);
}

}  // namespace millrace::stages
