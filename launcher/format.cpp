#include "launcher/format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace millrace::launcher {

std::string group_digits(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const std::size_t first = digits.size() % 3 == 0 ? 3 : digits.size() % 3;
  out.append(digits, 0, first);
  for (std::size_t i = first; i < digits.size(); i += 3) {
    out += ',';
    out.append(digits, i, 3);
  }
  return out;
}

std::string human_rate(double per_second) {
  char buf[48];
  if (per_second >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM rec/s", per_second / 1e6);
  } else if (per_second >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1fk rec/s", per_second / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f rec/s", per_second);
  }
  return buf;
}

std::string human_duration(double seconds) {
  char buf[48];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  } else if (seconds < 3600) {
    const int s = static_cast<int>(seconds);
    std::snprintf(buf, sizeof buf, "%d m %02d s", s / 60, s % 60);
  } else {
    const int s = static_cast<int>(seconds);
    std::snprintf(buf, sizeof buf, "%d h %02d m", s / 3600, (s / 60) % 60);
  }
  return buf;
}

std::string human_bytes(std::uint64_t bytes) {
  char buf[48];
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string pad_left(std::string_view s, std::size_t width) {
  std::string out(s.size() < width ? width - s.size() : 0, ' ');
  out += s;
  return out;
}

std::string pad_right(std::string_view s, std::size_t width) {
  std::string out(s);
  if (out.size() < width) out.append(width - out.size(), ' ');
  return out;
}

std::string bar(double fraction, std::size_t width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const auto filled = static_cast<std::size_t>(std::lround(fraction * static_cast<double>(width)));
  return std::string(filled, '#') + std::string(width - filled, '.');
}

}  // namespace millrace::launcher
