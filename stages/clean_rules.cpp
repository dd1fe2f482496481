#include "stages/clean_rules.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "stages/iso_time.hpp"
#include "stages/numbers.hpp"
#include "stages/text.hpp"

namespace millrace::stages {
namespace {

enum class OpKind : std::uint8_t {
  kLower,
  kUpper,
  kRequired,
  kInt,
  kDecimal,
  kTimestamp,
  kMatch,
  kOneOf,
};

const std::vector<std::string>& op_names() {
  static const std::vector<std::string> kNames = {"lower",   "upper",     "required", "int",
                                                  "decimal", "timestamp", "match",    "oneof"};
  return kNames;
}

void trim_in_place(std::string& s) {
  std::size_t end = s.size();
  while (end > 0 && is_blank(s[end - 1])) --end;
  std::size_t begin = 0;
  while (begin < end && is_blank(s[begin])) ++begin;
  if (begin == 0 && end == s.size()) return;
  s.erase(end);
  s.erase(0, begin);
}

bool valid_reason(std::string_view r) {
  if (r.empty()) return false;
  return std::all_of(r.begin(), r.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

Error rules_error(RulesErrc code, const ConfigLine& line, const std::string& what) {
  return Error{"rules", static_cast<int>(code), line.where + ": " + what, 0};
}

// `LO..HI`, either side optional; parse_bound turns one side into a value.
template <typename ParseBound>
bool parse_range(std::string_view text, ParseBound parse_bound, std::optional<std::int64_t>& lo,
                 std::optional<std::int64_t>& hi, std::string& problem) {
  const auto dots = text.find("..");
  if (dots == std::string_view::npos) {
    problem =
        "expected a range LO..HI (either side may be left out), got '" + std::string(text) + "'";
    return false;
  }
  const std::string_view lo_text = trim_blanks(text.substr(0, dots));
  const std::string_view hi_text = trim_blanks(text.substr(dots + 2));
  if (!lo_text.empty()) {
    lo = parse_bound(lo_text, problem);
    if (!lo) return false;
  }
  if (!hi_text.empty()) {
    hi = parse_bound(hi_text, problem);
    if (!hi) return false;
  }
  if (lo && hi && *lo > *hi) {
    problem = "the range " + std::string(text) + " is empty (LO is above HI)";
    return false;
  }
  return true;
}

std::string join_rest(const std::vector<std::string_view>& words, std::size_t from) {
  std::string s;
  for (std::size_t i = from; i < words.size(); ++i) s.append(words[i]);
  return s;
}

}  // namespace

struct CleanRules::Check {
  struct Op {
    OpKind kind = OpKind::kRequired;
    std::int64_t min = std::numeric_limits<std::int64_t>::min();
    std::int64_t max = std::numeric_limits<std::int64_t>::max();
    int scale = 0;
    int min_year = kMinIsoYear;
    int max_year = kMaxIsoYear;
    std::vector<std::string> choices;
    std::shared_ptr<const re2::RE2> regex;  // compiled once; RE2 matching is thread-safe
  };
  std::size_t field = 0;
  std::vector<Op> ops;
  std::string reason;

  bool passes(const Op& op, std::string& value) const;
};

bool CleanRules::Check::passes(const Op& op, std::string& value) const {
  switch (op.kind) {
    case OpKind::kLower:
      for (char& c : value) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      return true;
    case OpKind::kUpper:
      for (char& c : value) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      }
      return true;
    case OpKind::kRequired:
      return !value.empty();
    case OpKind::kInt: {
      const auto v = parse_int64(value, /*allow_sign=*/false);
      return v && *v >= op.min && *v <= op.max;
    }
    case OpKind::kDecimal: {
      std::int64_t v = 0;
      return parse_scaled_decimal(value, op.scale, /*allow_sign=*/false, v) == DecimalParse::kOk &&
             v >= op.min && v <= op.max;
    }
    case OpKind::kTimestamp:
      return parse_iso_utc(value, op.min_year, op.max_year).has_value();
    case OpKind::kMatch:
      return re2::RE2::FullMatch(value, *op.regex);
    case OpKind::kOneOf:
      return std::find(op.choices.begin(), op.choices.end(), value) != op.choices.end();
  }
  return false;
}

CleanRules::CleanRules() = default;
CleanRules::CleanRules(CleanRules&&) noexcept = default;
CleanRules& CleanRules::operator=(CleanRules&&) noexcept = default;
CleanRules::CleanRules(const CleanRules&) = default;
CleanRules& CleanRules::operator=(const CleanRules&) = default;
CleanRules::~CleanRules() = default;

Result<CleanRules> CleanRules::parse(const ConfigLine& trim, std::optional<ConfigLine> fields_line,
                                     std::vector<ConfigLine> check_lines,
                                     const std::vector<std::string>& columns) {
  CleanRules rules;
  const auto column_index = [&](std::string_view name) -> std::optional<std::size_t> {
    const auto it = std::find(columns.begin(), columns.end(), name);
    if (it == columns.end()) return std::nullopt;
    return static_cast<std::size_t>(it - columns.begin());
  };
  const auto unknown_field = [&](const ConfigLine& line, std::string_view name) {
    return rules_error(RulesErrc::kUnknownField, line,
                       "unknown field '" + std::string(name) + "'" + did_you_mean(name, columns) +
                           " (columns: " + join_words(columns) + ")");
  };

  // trim
  rules.trim_.assign(columns.size(), false);
  const std::string_view trim_text = trim_blanks(trim.text);
  if (trim_text == "all" || trim_text.empty()) {
    rules.trim_all_ = trim_text == "all";
  } else if (trim_text != "none") {
    std::string_view rest = trim_text;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view name = trim_blanks(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (name.empty()) {
        return rules_error(RulesErrc::kSyntax, trim,
                           "empty column name in '" + std::string(trim_text) +
                               "': use all, none or a comma list of columns");
      }
      const auto index = column_index(name);
      if (!index) return unknown_field(trim, name);
      rules.trim_[*index] = true;
    }
  }

  // fields
  rules.field_count_ = columns.size();
  rules.field_count_reason_ = "bad_field_count";
  if (fields_line) {
    const std::string_view text = fields_line->text;
    const auto arrow = text.rfind("->");
    const std::string_view count_text = trim_blanks(text.substr(0, arrow));
    const std::string_view reason =
        arrow == std::string_view::npos ? std::string_view{} : trim_blanks(text.substr(arrow + 2));
    const auto count = parse_int64(count_text, false);
    if (arrow == std::string_view::npos || !count || !valid_reason(reason)) {
      return rules_error(RulesErrc::kSyntax, *fields_line,
                         "expected 'COUNT -> REASON' (e.g. '" + std::to_string(columns.size()) +
                             " -> bad_field_count'), got '" + std::string(text) + "'");
    }
    if (static_cast<std::uint64_t>(*count) != columns.size()) {
      return rules_error(RulesErrc::kBadArgument, *fields_line,
                         "the field count " + std::string(count_text) + " differs from the " +
                             std::to_string(columns.size()) + " configured columns");
    }
    rules.field_count_reason_ = std::string(reason);
  }

  // checks
  for (const ConfigLine& line : check_lines) {
    const std::string_view text = line.text;
    const auto colon = text.find(':');
    const auto arrow = text.rfind("->");
    if (colon == std::string_view::npos || arrow == std::string_view::npos || arrow < colon) {
      return rules_error(
          RulesErrc::kSyntax, line,
          "expected 'FIELD : OP [ARGS], ... -> REASON', got '" + std::string(text) + "'");
    }
    Check check;
    const std::string_view field = trim_blanks(text.substr(0, colon));
    const auto index = column_index(field);
    if (!index) return unknown_field(line, field);
    check.field = *index;
    const std::string_view reason = trim_blanks(text.substr(arrow + 2));
    if (!valid_reason(reason)) {
      return rules_error(RulesErrc::kSyntax, line,
                         "the reason after '->' must be one word of letters, digits, '_', '-' "
                         "or '.', got '" +
                             std::string(reason) + "'");
    }
    check.reason = std::string(reason);

    std::string_view ops_text = text.substr(colon + 1, arrow - colon - 1);
    while (!trim_blanks(ops_text).empty()) {
      ops_text = trim_blanks(ops_text);
      std::size_t name_len = 0;
      while (name_len < ops_text.size() && !is_blank(ops_text[name_len]) &&
             ops_text[name_len] != ',') {
        ++name_len;
      }
      const std::string_view name = ops_text.substr(0, name_len);
      std::string_view args;
      if (name == "match") {
        args = trim_blanks(ops_text.substr(name_len));
        ops_text = {};
      } else {
        const auto comma = ops_text.find(',');
        args = trim_blanks(ops_text.substr(
            name_len, comma == std::string_view::npos ? std::string_view::npos : comma - name_len));
        ops_text =
            comma == std::string_view::npos ? std::string_view{} : ops_text.substr(comma + 1);
      }
      const auto bad_args = [&](const std::string& problem) {
        return rules_error(RulesErrc::kBadArgument, line,
                           "op '" + std::string(name) + "': " + problem);
      };

      Check::Op op;
      const std::vector<std::string_view> words = split_words(args);
      std::string problem;
      if (name == "lower" || name == "upper" || name == "required") {
        op.kind = name == "lower"   ? OpKind::kLower
                  : name == "upper" ? OpKind::kUpper
                                    : OpKind::kRequired;
        if (!words.empty()) {
          return bad_args("takes no arguments, got '" + std::string(args) +
                          "' (separate ops with ',')");
        }
      } else if (name == "int") {
        op.kind = OpKind::kInt;
        if (!words.empty()) {
          std::optional<std::int64_t> lo, hi;
          const auto bound = [](std::string_view b, std::string& why) {
            auto v = parse_int64(b, true);
            if (!v) why = "bound '" + std::string(b) + "' is not an integer that fits int64";
            return v;
          };
          if (!parse_range(join_rest(words, 0), bound, lo, hi, problem)) return bad_args(problem);
          op.min = lo.value_or(op.min);
          op.max = hi.value_or(op.max);
        }
      } else if (name == "decimal") {
        op.kind = OpKind::kDecimal;
        const auto scale = words.empty() ? std::nullopt : parse_int64(words[0], false);
        if (!scale || *scale > kMaxDecimalScale) {
          return bad_args("expected 'decimal SCALE [MIN..MAX]' with SCALE 0.." +
                          std::to_string(kMaxDecimalScale) + ", e.g. 'decimal 2 ..1000000.00'");
        }
        op.scale = static_cast<int>(*scale);
        if (words.size() > 1) {
          std::optional<std::int64_t> lo, hi;
          const int s = op.scale;
          const auto bound = [s](std::string_view b,
                                 std::string& why) -> std::optional<std::int64_t> {
            std::int64_t v = 0;
            switch (parse_scaled_decimal(b, s, true, v)) {
              case DecimalParse::kOk:
                return v;
              case DecimalParse::kTooManyDecimals:
                why = "bound '" + std::string(b) + "' has more decimals than the scale " +
                      std::to_string(s);
                return std::nullopt;
              case DecimalParse::kMalformed:
              case DecimalParse::kOverflow:
                break;
            }
            why = "bound '" + std::string(b) + "' is not a decimal that fits the scale";
            return std::nullopt;
          };
          if (!parse_range(join_rest(words, 1), bound, lo, hi, problem)) return bad_args(problem);
          op.min = lo.value_or(op.min);
          op.max = hi.value_or(op.max);
        }
      } else if (name == "timestamp") {
        op.kind = OpKind::kTimestamp;
        if (!words.empty()) {
          std::optional<std::int64_t> lo, hi;
          const auto bound = [](std::string_view b, std::string& why) {
            auto v = parse_int64(b, false);
            if (!v || *v > kMaxIsoYear) {
              why = "year '" + std::string(b) + "' is not in 0.." + std::to_string(kMaxIsoYear);
              v.reset();
            }
            return v;
          };
          if (!parse_range(join_rest(words, 0), bound, lo, hi, problem)) return bad_args(problem);
          op.min_year = static_cast<int>(lo.value_or(kMinIsoYear));
          op.max_year = static_cast<int>(hi.value_or(kMaxIsoYear));
        }
      } else if (name == "match") {
        op.kind = OpKind::kMatch;
        if (args.empty()) return bad_args("expected 'match REGEX'");
        re2::RE2::Options options;
        options.set_log_errors(false);
        auto regex =
            std::make_shared<const re2::RE2>(re2::StringPiece(args.data(), args.size()), options);
        if (!regex->ok()) {
          return bad_args("bad regex '" + std::string(args) + "': " + regex->error());
        }
        op.regex = std::move(regex);
      } else if (name == "oneof") {
        op.kind = OpKind::kOneOf;
        if (words.empty()) return bad_args("expected 'oneof A B C' with at least one value");
        for (const auto w : words) op.choices.emplace_back(w);
      } else {
        return rules_error(
            RulesErrc::kUnknownOp, line,
            (name.empty() ? std::string("missing op") : "unknown op '" + std::string(name) + "'") +
                did_you_mean(name, op_names()) + " (accepted: " + join_words(op_names()) + ")");
      }
      check.ops.push_back(std::move(op));
    }
    if (check.ops.empty()) {
      return rules_error(RulesErrc::kSyntax, line,
                         "no op for field '" + std::string(field) +
                             "' (accepted: " + join_words(op_names()) + ")");
    }
    rules.checks_.push_back(std::move(check));
  }
  return rules;
}

std::optional<std::string_view> CleanRules::apply(std::vector<std::string>& fields) const {
  if (trim_all_) {
    for (auto& f : fields) trim_in_place(f);
  } else {
    const std::size_t n = std::min(fields.size(), trim_.size());
    for (std::size_t i = 0; i < n; ++i) {
      if (trim_[i]) trim_in_place(fields[i]);
    }
  }
  if (fields.size() != field_count_) return field_count_reason_;
  for (const Check& check : checks_) {
    std::string& value = fields[check.field];
    for (const auto& op : check.ops) {
      if (!check.passes(op, value)) return check.reason;
    }
  }
  return std::nullopt;
}

}  // namespace millrace::stages
