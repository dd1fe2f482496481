#include "stages/seq_set.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>

namespace millrace::stages {

bool SeqSet::insert(std::uint64_t seq) {
  assert(seq >= 1 && "positions start at 1");
  // The common case: appending right after the last interval.
  if (!intervals_.empty() && intervals_.back().last + 1 == seq) {
    intervals_.back().last = seq;
    return true;
  }
  auto it = std::lower_bound(intervals_.begin(), intervals_.end(), seq,
                             [](const Interval& iv, std::uint64_t s) { return iv.last < s; });
  if (it != intervals_.end() && it->first <= seq) return false;
  const bool joins_prev = it != intervals_.begin() && std::prev(it)->last + 1 == seq;
  const bool joins_next = it != intervals_.end() && it->first == seq + 1;
  if (joins_prev && joins_next) {
    std::prev(it)->last = it->last;
    intervals_.erase(it);
  } else if (joins_prev) {
    std::prev(it)->last = seq;
  } else if (joins_next) {
    it->first = seq;
  } else {
    intervals_.insert(it, Interval{seq, seq});
  }
  return true;
}

void SeqSet::merge(const SeqSet& other) {
  if (other.intervals_.empty()) return;
  std::vector<Interval> all;
  all.reserve(intervals_.size() + other.intervals_.size());
  std::merge(intervals_.begin(), intervals_.end(), other.intervals_.begin(),
             other.intervals_.end(), std::back_inserter(all),
             [](const Interval& a, const Interval& b) { return a.first < b.first; });
  intervals_.clear();
  for (const Interval& iv : all) {
    if (!intervals_.empty() && iv.first <= intervals_.back().last + 1) {
      intervals_.back().last = std::max(intervals_.back().last, iv.last);
    } else {
      intervals_.push_back(iv);
    }
  }
}

bool SeqSet::contains(std::uint64_t seq) const {
  auto it = std::lower_bound(intervals_.begin(), intervals_.end(), seq,
                             [](const Interval& iv, std::uint64_t s) { return iv.last < s; });
  return it != intervals_.end() && it->first <= seq;
}

std::uint64_t SeqSet::low() const {
  if (intervals_.empty() || intervals_.front().first != 1) return 1;
  return intervals_.front().last + 1;
}

std::uint64_t SeqSet::size() const {
  std::uint64_t n = 0;
  for (const Interval& iv : intervals_) n += iv.last - iv.first + 1;
  return n;
}

std::string SeqSet::to_string() const {
  std::string out;
  for (const Interval& iv : intervals_) {
    if (!out.empty()) out += ',';
    out += std::to_string(iv.first);
    if (iv.last != iv.first) {
      out += '-';
      out += std::to_string(iv.last);
    }
  }
  return out;
}

std::optional<SeqSet> SeqSet::parse(std::string_view text) {
  SeqSet set;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  auto number = [&](std::uint64_t& v) {
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || v == 0) return false;
    p = next;
    return true;
  };
  while (p != end) {
    Interval iv{};
    if (!number(iv.first)) return std::nullopt;
    iv.last = iv.first;
    if (p != end && *p == '-') {
      ++p;
      if (!number(iv.last) || iv.last < iv.first) return std::nullopt;
    }
    // Intervals must be sorted and separated by a gap, as to_string() writes them.
    if (!set.intervals_.empty() && iv.first <= set.intervals_.back().last + 1) return std::nullopt;
    set.intervals_.push_back(iv);
    if (p != end) {
      if (*p != ',') return std::nullopt;
      ++p;
      if (p == end) return std::nullopt;
    }
  }
  return set;
}

bool operator==(const SeqSet& a, const SeqSet& b) {
  return a.intervals_.size() == b.intervals_.size() &&
         std::equal(a.intervals_.begin(), a.intervals_.end(), b.intervals_.begin(),
                    [](const SeqSet::Interval& x, const SeqSet::Interval& y) {
                      return x.first == y.first && x.last == y.last;
                    });
}

}  // namespace millrace::stages
