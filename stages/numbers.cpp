#include "stages/numbers.hpp"

#include <cassert>
#include <charconv>
#include <limits>

namespace millrace::stages {
namespace {

constexpr std::uint64_t kMaxMagnitude = std::uint64_t{1} << 63;  // |INT64_MIN|

// Accumulates ASCII digits into `acc`; false on a non-digit or when acc would pass `limit`.
bool accumulate_digits(std::string_view digits, std::uint64_t limit, std::uint64_t& acc) {
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (acc > (limit - d) / 10) return false;
    acc = acc * 10 + d;
  }
  return true;
}

std::optional<std::int64_t> to_signed(std::uint64_t magnitude, bool negative) {
  if (negative) {
    if (magnitude > kMaxMagnitude) return std::nullopt;
    return magnitude == kMaxMagnitude ? std::numeric_limits<std::int64_t>::min()
                                      : -static_cast<std::int64_t>(magnitude);
  }
  if (magnitude > kMaxMagnitude - 1) return std::nullopt;
  return static_cast<std::int64_t>(magnitude);
}

}  // namespace

std::int64_t pow10(int scale) {
  assert(scale >= 0 && scale <= kMaxDecimalScale && "pow10: scale out of range");
  std::int64_t p = 1;
  for (int i = 0; i < scale; ++i) p *= 10;
  return p;
}

std::optional<std::int64_t> parse_int64(std::string_view text, bool allow_sign) {
  bool negative = false;
  if (allow_sign && !text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  std::uint64_t magnitude = 0;
  if (!accumulate_digits(text, kMaxMagnitude, magnitude)) return std::nullopt;
  return to_signed(magnitude, negative);
}

DecimalParse parse_scaled_decimal(std::string_view text, int scale, bool allow_sign,
                                  std::int64_t& out) {
  assert(scale >= 0 && scale <= kMaxDecimalScale && "parse_scaled_decimal: scale out of range");
  bool negative = false;
  if (allow_sign && !text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  std::string_view whole = text;
  std::string_view fraction;
  bool has_point = false;
  if (const auto dot = text.find('.'); dot != std::string_view::npos) {
    whole = text.substr(0, dot);
    fraction = text.substr(dot + 1);
    has_point = true;
  }
  if (whole.empty() || (has_point && fraction.empty())) return DecimalParse::kMalformed;
  for (const char c : fraction) {
    if (c < '0' || c > '9') return DecimalParse::kMalformed;
  }
  std::uint64_t magnitude = 0;
  for (const char c : whole) {
    if (c < '0' || c > '9') return DecimalParse::kMalformed;
  }
  if (fraction.size() > static_cast<std::size_t>(scale)) return DecimalParse::kTooManyDecimals;
  if (!accumulate_digits(whole, kMaxMagnitude, magnitude)) return DecimalParse::kOverflow;
  // Scale up by the fraction's digits, then pad with zeros to the full scale.
  if (!accumulate_digits(fraction, kMaxMagnitude, magnitude)) return DecimalParse::kOverflow;
  for (std::size_t i = fraction.size(); i < static_cast<std::size_t>(scale); ++i) {
    if (magnitude > kMaxMagnitude / 10) return DecimalParse::kOverflow;
    magnitude *= 10;
  }
  const auto value = to_signed(magnitude, negative);
  if (!value) return DecimalParse::kOverflow;
  out = *value;
  return DecimalParse::kOk;
}

void append_int(std::string& out, std::int64_t value) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

void append_scaled(std::string& out, std::int64_t scaled, int scale, int shown) {
  assert(shown >= 0 && shown <= scale && "append_scaled: shown digits out of range");
  const std::int64_t p = pow10(scale);
  std::uint64_t magnitude = scaled < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(scaled)
                                       : static_cast<std::uint64_t>(scaled);
  if (scaled < 0) out.push_back('-');
  const auto up = static_cast<std::uint64_t>(p);
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, magnitude / up);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
  if (shown == 0) return;
  out.push_back('.');
  std::uint64_t frac = magnitude % up;
  char digits[kMaxDecimalScale];
  for (int i = scale - 1; i >= 0; --i) {
    digits[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  out.append(digits, static_cast<std::size_t>(shown));
}

}  // namespace millrace::stages
