#include "stages/synthetic.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string_view>
#include <utility>

#include "stages/iso_time.hpp"
#include "stages/numbers.hpp"
#include "stages/text.hpp"

namespace millrace::stages {
namespace {

constexpr std::uint64_t kOne32 = std::uint64_t{1} << 32;  // probability 1 as a threshold
constexpr std::uint64_t kDupWindow = 1000;                // a duplicate repeats a recent value
constexpr std::uint64_t kNamePool = 5000;                 // distinct names
constexpr std::int64_t kSecondsPerDay = 86400;

constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

constexpr std::array<std::string_view, 24> kSyllables = {
    "ka", "lo", "mi", "ra", "ne", "to", "su", "vi",  "da", "el",  "an", "jo",
    "ma", "ri", "sa", "te", "no", "li", "be", "kor", "ul", "fen", "is", "wa"};

constexpr std::array<std::string_view, 14> kNotes = {
    "leave at the door",
    "gift wrap, no invoice",
    "call \"before\" delivery",
    "fragile",
    "ring twice\nthen wait",
    "deliver after 6pm, weekdays only",
    "use side entrance\r\nsecond floor",
    "please hurry!",
    "caf\xC3\xA9 delivery, \xC3\xBC"
    "ber fast",
    "back door; \"the blue one\"",
    "no plastic",
    "split into 2 parcels, if possible",
    "customer said: \"ok, fine\"",
    "weekend delivery",
};

enum class Defect : std::uint8_t {
  kMissingField,
  kExtraField,
  kBlankField,
  kPadding,
  kCase,
  kBadTime,
  kLettersInNumber,
  kTooManyDecimals,
  kOutOfRange,
  kUnknownChoice,
  kLongCode,
};
constexpr std::size_t kDefectCount = 11;

const std::vector<std::string>& kind_names() {
  static const std::vector<std::string> kNames = {"serial",  "timestamp", "word",    "choice",
                                                  "decimal", "int",       "pattern", "text"};
  return kNames;
}

bool split_range(std::string_view text, std::string_view& lo, std::string_view& hi) {
  const auto dots = text.find("..");
  if (dots == std::string_view::npos) return false;
  lo = trim_blanks(text.substr(0, dots));
  hi = trim_blanks(text.substr(dots + 2));
  return !lo.empty() && !hi.empty();
}

std::size_t decimals_of(std::string_view number) {
  const auto dot = number.find('.');
  return dot == std::string_view::npos ? 0 : number.size() - dot - 1;
}

}  // namespace

// splitmix64: one independent stream per record, derived from (seed, seq).
class Synthetic::Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t seq)
      : state_(mix64(seed ^ 0x9E3779B97F4A7C15ULL) ^ mix64(seq + 0xD1B54A32D192ED03ULL)) {}

  std::uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix64(state_);
  }
  // Uniform in [0, n) for n > 0 (modulo bias is irrelevant for test data).
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  std::size_t index(std::size_t n) { return static_cast<std::size_t>(below(n)); }
  // True with probability threshold / 2^32.
  bool chance(std::uint64_t threshold) { return (next() >> 32) < threshold; }
  // Uniform in [lo, hi]; unsigned arithmetic, so any int64 range works.
  std::int64_t in_range(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo) + 1;
    const std::uint64_t offset = span == 0 ? next() : below(span);
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + offset);
  }
  char digit() { return static_cast<char>('0' + below(10)); }
  char upper_letter() { return static_cast<char>('A' + below(26)); }

 private:
  std::uint64_t state_;
};

Result<Synthetic> Synthetic::parse(std::vector<ConfigLine> gen_lines, double dirt,
                                   std::uint64_t seed, std::vector<std::string> columns) {
  Synthetic s;
  s.seed_ = seed;
  if (!(dirt >= 0.0 && dirt <= 1.0)) {
    return Error{"synthetic", static_cast<int>(SyntheticErrc::kBadArgument),
                 "dirt must be a probability between 0 and 1, got " + std::to_string(dirt), 0};
  }
  // dirt * 2^32 is exact in binary floating point, so every machine draws the same records.
  s.dirt_threshold_ = static_cast<std::uint64_t>(std::ldexp(dirt, 32));
  s.columns_ = std::move(columns);
  s.specs_.resize(s.columns_.size());
  std::vector<bool> seen(s.columns_.size(), false);

  for (const ConfigLine& line : gen_lines) {
    const auto fail = [&](SyntheticErrc code, const std::string& what) {
      return Error{"synthetic", static_cast<int>(code), line.where + ": " + what, 0};
    };
    const std::string_view text = line.text;
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) {
      return fail(SyntheticErrc::kSyntax,
                  "expected 'COLUMN : KIND [ARGS]', got '" + std::string(text) + "'");
    }
    const std::string_view name = trim_blanks(text.substr(0, colon));
    const auto it = std::find(s.columns_.begin(), s.columns_.end(), name);
    if (it == s.columns_.end()) {
      return fail(SyntheticErrc::kUnknownColumn, "unknown column '" + std::string(name) + "'" +
                                                     did_you_mean(name, s.columns_) +
                                                     " (columns: " + join_words(s.columns_) + ")");
    }
    const auto index = static_cast<std::size_t>(it - s.columns_.begin());
    if (seen[index]) {
      return fail(SyntheticErrc::kUnknownColumn,
                  "column '" + std::string(name) + "' already has a gen line");
    }
    seen[index] = true;

    const std::vector<std::string_view> words = split_words(text.substr(colon + 1));
    const std::string_view kind = words.empty() ? std::string_view{} : words[0];
    const std::string_view args = words.empty()
                                      ? std::string_view{}
                                      : trim_blanks(text.substr(colon + 1)).substr(kind.size());
    const auto usage = [&](const std::string& expected) {
      return fail(SyntheticErrc::kBadArgument,
                  "expected '" + expected + "', got '" +
                      std::string(trim_blanks(text.substr(colon + 1))) + "'");
    };
    Column& c = s.specs_[index];
    if (kind == "serial") {
      c.kind = Kind::kSerial;
      if (words.size() > 2) return usage("serial [dup=P]");
      if (words.size() == 2) {
        std::int64_t ppm = 0;
        if (words[1].substr(0, 4) != "dup=" ||
            parse_scaled_decimal(words[1].substr(4), 6, false, ppm) != DecimalParse::kOk ||
            ppm > 1000000) {
          return usage("serial [dup=P] with P a probability 0..1");
        }
        c.dup_threshold = static_cast<std::uint64_t>(ppm) * kOne32 / 1000000;
      }
    } else if (kind == "timestamp") {
      c.kind = Kind::kTimestamp;
      std::string_view lo, hi;
      const auto y1 = split_range(args, lo, hi) ? parse_int64(lo, false) : std::nullopt;
      const auto y2 = y1 ? parse_int64(hi, false) : std::nullopt;
      if (!y1 || !y2 || *y1 > *y2 || *y2 > kMaxIsoYear) return usage("timestamp Y1..Y2");
      c.lo = days_from_civil(static_cast<int>(*y1), 1, 1) * kSecondsPerDay;
      c.hi = days_from_civil(static_cast<int>(*y2) + 1, 1, 1) * kSecondsPerDay - 1;
    } else if (kind == "word" || kind == "text") {
      c.kind = kind == "word" ? Kind::kWord : Kind::kText;
      if (words.size() != 1) return usage(std::string(kind));
    } else if (kind == "choice") {
      c.kind = Kind::kChoice;
      if (words.size() < 2) return usage("choice A B C");
      for (std::size_t i = 1; i < words.size(); ++i) c.choices.emplace_back(words[i]);
    } else if (kind == "decimal") {
      c.kind = Kind::kDecimal;
      std::string_view lo, hi;
      if (!split_range(args, lo, hi)) return usage("decimal LO..HI");
      c.scale = static_cast<int>(std::max<std::size_t>({2, decimals_of(lo), decimals_of(hi)}));
      if (c.scale > 6 || parse_scaled_decimal(lo, c.scale, true, c.lo) != DecimalParse::kOk ||
          parse_scaled_decimal(hi, c.scale, true, c.hi) != DecimalParse::kOk || c.lo > c.hi ||
          c.hi > std::numeric_limits<std::int64_t>::max() / 4000) {
        return usage("decimal LO..HI with LO <= HI, at most 6 decimals");
      }
    } else if (kind == "int") {
      c.kind = Kind::kInt;
      std::string_view lo, hi;
      const auto a = split_range(args, lo, hi) ? parse_int64(lo, true) : std::nullopt;
      const auto b = a ? parse_int64(hi, true) : std::nullopt;
      if (!a || !b || *a > *b || *b > std::numeric_limits<std::int64_t>::max() / 1000) {
        return usage("int LO..HI with LO <= HI");
      }
      c.lo = *a;
      c.hi = *b;
    } else if (kind == "pattern") {
      c.kind = Kind::kPattern;
      c.pattern = std::string(trim_blanks(args));
      if (c.pattern.empty()) return usage("pattern TEXT (# is a digit)");
    } else {
      return fail(SyntheticErrc::kUnknownKind, "unknown kind '" + std::string(kind) + "'" +
                                                   did_you_mean(kind, kind_names()) +
                                                   " (accepted: " + join_words(kind_names()) + ")");
    }
  }
  for (std::size_t i = 0; i < seen.size(); ++i) {
    if (!seen[i]) {
      return Error{"synthetic", static_cast<int>(SyntheticErrc::kMissingColumn),
                   "column '" + s.columns_[i] + "' has no gen line: add 'gen = " + s.columns_[i] +
                       " : KIND' (" + join_words(kind_names()) + ")",
                   0};
    }
  }
  return s;
}

void Synthetic::generate_value(std::size_t column, std::uint64_t seq, Rng& rng,
                               std::string& out) const {
  const Column& c = specs_[column];
  out.clear();
  switch (c.kind) {
    case Kind::kSerial: {
      std::uint64_t v = seq;
      if (seq > 1 && rng.chance(c.dup_threshold)) {
        v = seq - 1 - rng.below(std::min(seq - 1, kDupWindow));
      }
      append_int(out, static_cast<std::int64_t>(v));
      break;
    }
    case Kind::kTimestamp: {
      append_iso_utc(out, rng.in_range(c.lo, c.hi));
      break;
    }
    case Kind::kWord: {
      std::uint64_t h = mix64(rng.below(kNamePool) + 0x5DEECE66DULL);
      const std::size_t syllables = 2 + h % 2;
      h /= 2;
      for (std::size_t i = 0; i < syllables; ++i) {
        out.append(kSyllables[h % kSyllables.size()]);
        h /= kSyllables.size();
      }
      if (rng.below(100) < 12) out[0] = static_cast<char>(out[0] - 'a' + 'A');
      break;
    }
    case Kind::kChoice:
      out = c.choices[rng.index(c.choices.size())];
      break;
    case Kind::kDecimal: {
      const std::int64_t v = rng.in_range(c.lo, c.hi);
      const std::uint64_t r = rng.below(100);
      append_scaled(out, v, c.scale, r < 80 ? c.scale : r < 90 ? 1 : 0);
      break;
    }
    case Kind::kInt: {
      append_int(out, rng.in_range(c.lo, c.hi));
      break;
    }
    case Kind::kPattern:
      for (const char ch : c.pattern) out.push_back(ch == '#' ? rng.digit() : ch);
      break;
    case Kind::kText: {
      const std::uint64_t r = rng.below(100);
      if (r < 45) break;
      out.append(kNotes[rng.index(kNotes.size())]);
      if (r >= 90) {
        out.append(", ");
        out.append(kNotes[rng.index(kNotes.size())]);
      }
      break;
    }
  }
}

void Synthetic::add_defect(Rng& rng, std::vector<std::string>& fields) const {
  auto defect = static_cast<Defect>(rng.below(kDefectCount));
  const auto applies = [&](Defect d, const Column& c) {
    switch (d) {
      case Defect::kMissingField:
      case Defect::kExtraField:
      case Defect::kBlankField:
      case Defect::kPadding:
        return true;
      case Defect::kCase:
        return c.kind == Kind::kWord || c.kind == Kind::kChoice;
      case Defect::kBadTime:
        return c.kind == Kind::kTimestamp;
      case Defect::kLettersInNumber:
      case Defect::kOutOfRange:
        return c.kind == Kind::kSerial || c.kind == Kind::kInt || c.kind == Kind::kDecimal;
      case Defect::kTooManyDecimals:
        return c.kind == Kind::kDecimal;
      case Defect::kUnknownChoice:
      case Defect::kLongCode:
        return c.kind == Kind::kChoice;
    }
    return false;
  };
  std::array<std::size_t, 64> candidates{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < specs_.size() && n < candidates.size(); ++i) {
    if (applies(defect, specs_[i])) candidates[n++] = i;
  }
  if (n == 0) {
    defect = Defect::kBlankField;
    for (std::size_t i = 0; i < specs_.size() && n < candidates.size(); ++i) candidates[n++] = i;
  }
  const std::size_t col = candidates[rng.index(n)];
  const Column& c = specs_[col];
  std::string& f = fields[col];

  switch (defect) {
    case Defect::kMissingField:
      fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(col));
      break;
    case Defect::kExtraField: {
      const std::size_t at = rng.index(fields.size() + 1);
      std::string extra = rng.below(2) == 0 ? std::string("x") : fields[rng.index(fields.size())];
      fields.insert(fields.begin() + static_cast<std::ptrdiff_t>(at), std::move(extra));
      break;
    }
    case Defect::kBlankField:
      f.clear();
      break;
    case Defect::kPadding: {
      static constexpr std::array<std::string_view, 4> kPads = {" ", "\t", "  ", " \t"};
      const std::uint64_t where = rng.below(3);
      if (where != 1) f.insert(0, kPads[rng.index(kPads.size())]);
      if (where != 0) f.append(kPads[rng.index(kPads.size())]);
      break;
    }
    case Defect::kCase: {
      const bool alternate = rng.below(2) == 0;
      const bool to_upper = c.kind == Kind::kWord;
      for (std::size_t i = 0; i < f.size(); ++i) {
        char& ch = f[i];
        const bool up = alternate ? i % 2 == 0 : to_upper;
        if (up && ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
        if (!up && ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      }
      break;
    }
    case Defect::kBadTime:
      // f is YYYY-MM-DDTHH:MM:SSZ.
      switch (rng.below(8)) {
        case 0:
          f.replace(5, 5, rng.below(2) == 0 ? "02-30" : "02-31");
          break;
        case 1:
          f.replace(5, 5, "04-31");
          break;
        case 2:
          f.replace(11, 2, "24");
          break;
        case 3:
          f.replace(14, 2, "60");
          break;
        case 4:
          f.replace(0, 4, "1969");
          break;
        case 5:
          f.replace(0, 10, "2023-02-29");
          break;
        case 6:
          f[10] = ' ';
          break;
        default:
          f.pop_back();  // no Z
          break;
      }
      break;
    case Defect::kLettersInNumber: {
      static constexpr std::string_view kLookAlikes = "OlISBZo";
      const std::uint64_t how = rng.below(3);
      if (how == 0 && !f.empty()) {
        f[rng.index(f.size())] = kLookAlikes[rng.index(kLookAlikes.size())];
      } else if (how == 1) {
        f.append("abc");
      } else {
        const auto dot = f.find('.');
        if (dot != std::string::npos) {
          f[dot] = ',';
        } else {
          f.insert(0, "n");
        }
      }
      break;
    }
    case Defect::kTooManyDecimals: {
      if (f.find('.') == std::string::npos) f.push_back('.');
      while (decimals_of(f) <= static_cast<std::size_t>(c.scale)) f.push_back(rng.digit());
      if (rng.below(2) == 0) f.push_back(rng.digit());
      break;
    }
    case Defect::kOutOfRange: {
      const std::uint64_t how = rng.below(3);
      if (how == 0) {
        f = "0";
      } else if (how == 1) {
        f.insert(0, "-");
      } else {
        f.clear();
        if (c.kind == Kind::kDecimal) {
          const std::int64_t top = std::max<std::int64_t>(c.hi, pow10(c.scale));
          append_scaled(f, top * (201 + static_cast<std::int64_t>(rng.below(800))), c.scale,
                        c.scale);
        } else if (c.kind == Kind::kInt) {
          const std::int64_t top = std::max<std::int64_t>(c.hi, 1);
          append_int(f, top * 250 + static_cast<std::int64_t>(
                                        rng.below(static_cast<std::uint64_t>(top) * 250)));
        } else {
          f = "0";  // a serial has no upper bound
        }
      }
      break;
    }
    case Defect::kUnknownChoice: {
      const std::size_t len = c.choices[rng.index(c.choices.size())].size();
      for (int attempt = 0; attempt < 8; ++attempt) {
        f.clear();
        for (std::size_t i = 0; i < std::max<std::size_t>(len, 1); ++i)
          f.push_back(rng.upper_letter());
        if (std::find(c.choices.begin(), c.choices.end(), f) == c.choices.end()) break;
      }
      break;
    }
    case Defect::kLongCode:
      f.push_back(rng.upper_letter());
      break;
  }
}

void Synthetic::generate(std::uint64_t seq, std::vector<std::string>& fields) const {
  Rng rng(seed_, seq);
  fields.resize(columns_.size());
  for (std::size_t i = 0; i < columns_.size(); ++i) generate_value(i, seq, rng, fields[i]);
  if (rng.chance(dirt_threshold_)) add_defect(rng, fields);
}

}  // namespace millrace::stages
