// SeqSet: a set of source positions (seq >= 1) kept as sorted, disjoint, non-adjacent
// intervals. The store records which positions it has committed as one SeqSet, saved in the
// same transaction as the rows; with records arriving from several lanes out of order it stays
// a handful of intervals (everything below low() plus the lanes running ahead).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace millrace::stages {

class SeqSet {
 public:
  struct Interval {
    std::uint64_t first;
    std::uint64_t last;  // inclusive
  };

  // Adds one position; returns false if it was already present.
  bool insert(std::uint64_t seq);
  // Adds every position of `other`.
  void merge(const SeqSet& other);
  [[nodiscard]] bool contains(std::uint64_t seq) const;
  // The smallest position >= 1 not in the set: every position below it is in the set.
  [[nodiscard]] std::uint64_t low() const;
  // True when every position in [1, n] is in the set (always true for n == 0).
  [[nodiscard]] bool covers_prefix(std::uint64_t n) const { return low() > n; }
  [[nodiscard]] std::uint64_t size() const;
  [[nodiscard]] bool empty() const { return intervals_.empty(); }
  void clear() { intervals_.clear(); }
  [[nodiscard]] const std::vector<Interval>& intervals() const { return intervals_; }

  // "1-500,641-704": the text saved with the rows. parse() accepts exactly what to_string() gives.
  [[nodiscard]] std::string to_string() const;
  static std::optional<SeqSet> parse(std::string_view text);

  friend bool operator==(const SeqSet& a, const SeqSet& b);

 private:
  std::vector<Interval> intervals_;
};

}  // namespace millrace::stages
