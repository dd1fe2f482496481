// Small text helpers shared by the record operations. ASCII only: no locale is ever consulted,
// so every machine treats every byte the same.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace millrace::stages {

// The blanks that trimming removes: space and tab, nothing else.
inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// The blank-separated words of `s`.
inline std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> words;
  for (s = trim_blanks(s); !s.empty(); s = trim_blanks(s)) {
    std::size_t n = 0;
    while (n < s.size() && !is_blank(s[n])) ++n;
    words.push_back(s.substr(0, n));
    s.remove_prefix(n);
  }
  return words;
}

}  // namespace millrace::stages
