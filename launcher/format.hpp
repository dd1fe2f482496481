// Numbers as a person reads them in reports and live views.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace millrace::launcher {

std::string group_digits(std::uint64_t n);          // 1234567 -> "1,234,567"
std::string human_rate(double per_second);           // "612.4k rec/s"
std::string human_duration(double seconds);          // "3.2 s", "4 m 05 s"
std::string human_bytes(std::uint64_t bytes);        // "4.0 MiB"
std::string pad_left(std::string_view s, std::size_t width);
std::string pad_right(std::string_view s, std::size_t width);
// A bar of `width` cells filled to `fraction` (0..1), drawn with '#' and '.'.
std::string bar(double fraction, std::size_t width);

}  // namespace millrace::launcher
