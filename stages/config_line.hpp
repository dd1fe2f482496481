// ConfigLine: one value of a config key, with where it came from, so that an error found while
// interpreting the value (a bad op, an unknown field) can point the user at the exact line.
// The record operations take these plain lines; they never see the INI reader.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace millrace::stages {

struct ConfigLine {
  std::string text;   // the value, e.g. "id : int 1.. -> bad_id"
  std::string where;  // e.g. "pipeline.ini:42, key check"; used verbatim in error messages
};

// Edit distance (insertions, deletions, substitutions), for "did you mean" suggestions.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0u : 1u)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "; did you mean 'lower'?" when one of `choices` is close to `word`, else "".
inline std::string did_you_mean(std::string_view word, const std::vector<std::string>& choices) {
  const std::string* best = nullptr;
  std::size_t best_distance = 0;
  for (const auto& c : choices) {
    const std::size_t d = edit_distance(word, c);
    if (best == nullptr || d < best_distance) {
      best = &c;
      best_distance = d;
    }
  }
  // A suggestion further than a third of the word away is noise, not help.
  if (best == nullptr || best_distance == 0 ||
      best_distance > std::max<std::size_t>(2, word.size() / 3)) {
    return {};
  }
  return "; did you mean '" + *best + "'?";
}

// "a, b, c": the accepted words, for error messages.
inline std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

}  // namespace millrace::stages
