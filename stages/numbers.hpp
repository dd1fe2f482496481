// Exact integer and fixed-point decimal text conversions shared by the record operations.
// No floating point: a decimal is an int64 scaled by 10^scale, so comparisons and arithmetic
// are exact and every machine formats the same digits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace millrace::stages {

inline constexpr int kMaxDecimalScale = 18;

// 10^scale for scale in 0..kMaxDecimalScale.
std::int64_t pow10(int scale);

// `DIGITS` (or `-DIGITS` when allow_sign), ASCII digits only, leading zeros allowed, nothing
// else; nullopt when malformed or outside int64.
std::optional<std::int64_t> parse_int64(std::string_view text, bool allow_sign);

enum class DecimalParse : std::uint8_t {
  kOk,
  kMalformed,        // not `DIGITS` or `DIGITS.DIGITS` (with `-` first when signs are allowed)
  kTooManyDecimals,  // more fraction digits than the scale
  kOverflow,         // the scaled value does not fit int64
};

// Parses `DIGITS[.DIGITS]` with 1..scale fraction digits into value * 10^scale:
// ("12.3", 2) -> 1230, ("7", 2) -> 700, ("0.5", 2) -> 50.
DecimalParse parse_scaled_decimal(std::string_view text, int scale, bool allow_sign,
                                  std::int64_t& out);

// Appends the decimal digits of `value`.
void append_int(std::string& out, std::int64_t value);
// Appends scaled/10^scale with `shown` fraction digits (0..scale; dropped digits are truncated).
void append_scaled(std::string& out, std::int64_t scaled, int scale, int shown);

}  // namespace millrace::stages
