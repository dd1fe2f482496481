#include "stages/transform_ops.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "stages/iso_time.hpp"
#include "stages/numbers.hpp"
#include "stages/text.hpp"

namespace millrace::stages {
namespace {

__extension__ using U128 = unsigned __int128;

enum class Fn : std::uint8_t {
  kSeq,
  kCopy,
  kScaled,
  kLookup,
  kAdd,
  kSub,
  kMul,
  kMulDivRound,
  kEpoch,
  kDate,
  kHour,
  kBucket,
};

struct FnInfo {
  std::string name;
  Fn fn;
  std::string usage;
};

const std::vector<FnInfo>& functions() {
  static const std::vector<FnInfo> kFunctions = {
      {"seq", Fn::kSeq, "seq()"},
      {"copy", Fn::kCopy, "copy(FIELD)"},
      {"scaled", Fn::kScaled, "scaled(FIELD, SCALE)"},
      {"lookup", Fn::kLookup, "lookup(FIELD, TABLE)"},
      {"add", Fn::kAdd, "add(A, B)"},
      {"sub", Fn::kSub, "sub(A, B)"},
      {"mul", Fn::kMul, "mul(A, B)"},
      {"muldiv_round", Fn::kMulDivRound, "muldiv_round(A, B, C)"},
      {"epoch", Fn::kEpoch, "epoch(FIELD)"},
      {"date", Fn::kDate, "date(FIELD)"},
      {"hour", Fn::kHour, "hour(FIELD)"},
      {"bucket", Fn::kBucket, "bucket(FIELD, T1:L1, T2:L2, ..., DEFAULT)"},
  };
  return kFunctions;
}

std::vector<std::string> function_names() {
  std::vector<std::string> names;
  for (const auto& f : functions()) names.push_back(f.name);
  return names;
}

bool is_identifier(std::string_view s) {
  if (s.empty()) return false;
  const auto alpha = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  if (!alpha(s.front())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

// Remembers up to 64 per-field values for the duration of one apply().
class ValueCache {
 public:
  bool get(std::size_t field, std::int64_t& out) const {
    if (field >= kSize || (known_ >> field & 1u) == 0) return false;
    out = values_[field];
    return true;
  }
  void set(std::size_t field, std::int64_t v) {
    if (field >= kSize) return;
    values_[field] = v;
    known_ |= std::uint64_t{1} << field;
  }
  void forget(std::size_t field) {
    if (field < kSize) known_ &= ~(std::uint64_t{1} << field);
  }

 private:
  static constexpr std::size_t kSize = 64;
  std::uint64_t known_ = 0;
  std::array<std::int64_t, kSize> values_;  // valid where known_ has the bit
};

}  // namespace

struct Transform::Step {
  struct Arg {
    bool is_field = false;
    std::size_t field = 0;
    std::int64_t literal = 0;
  };
  Fn fn = Fn::kSeq;
  std::size_t out = 0;
  std::vector<Arg> args;
  int scale = 0;
  struct TableValue {
    std::string text;
    std::optional<std::int64_t> number;  // the text as an integer, when it is one
  };
  std::map<std::string, TableValue, std::less<>> table;
  std::vector<std::pair<std::int64_t, std::string>> buckets;  // descending thresholds
  std::string default_label;
  std::string text;  // the derive line, for error messages
  std::string where;
};

Transform::Transform() = default;
Transform::Transform(Transform&&) noexcept = default;
Transform& Transform::operator=(Transform&&) noexcept = default;
Transform::Transform(const Transform&) = default;
Transform& Transform::operator=(const Transform&) = default;
Transform::~Transform() = default;

Result<Transform> Transform::parse(std::vector<ConfigLine> derive_lines,
                                   const std::vector<std::string>& input_columns,
                                   const Tables& tables) {
  Transform t;
  t.input_width_ = input_columns.size();
  t.output_columns_ = input_columns;

  for (const ConfigLine& line : derive_lines) {
    const auto fail = [&](TransformErrc code, const std::string& what) {
      return Error{"transform", static_cast<int>(code), line.where + ": " + what, 0};
    };
    const std::string_view text = line.text;
    const auto eq = text.find('=');
    const std::string_view name = trim_blanks(text.substr(0, eq));
    const std::string_view call =
        eq == std::string_view::npos ? std::string_view{} : trim_blanks(text.substr(eq + 1));
    const auto open = call.find('(');
    if (eq == std::string_view::npos || !is_identifier(name) || open == std::string_view::npos ||
        call.back() != ')') {
      return fail(TransformErrc::kSyntax,
                  "expected 'NAME = FUNC(ARGS)' (e.g. 'amount_cents = scaled(amount, 2)'), got '" +
                      std::string(text) + "'");
    }
    const std::string_view fn_name = trim_blanks(call.substr(0, open));
    const auto info = std::find_if(functions().begin(), functions().end(),
                                   [&](const FnInfo& f) { return f.name == fn_name; });
    if (info == functions().end()) {
      return fail(TransformErrc::kUnknownFunction,
                  "unknown function '" + std::string(fn_name) + "'" +
                      did_you_mean(fn_name, function_names()) +
                      " (accepted: " + join_words(function_names()) + ")");
    }

    std::vector<std::string_view> args;
    const std::string_view inside = trim_blanks(call.substr(open + 1, call.size() - open - 2));
    if (!inside.empty()) {
      std::string_view rest = inside;
      for (;;) {
        const auto comma = rest.find(',');
        args.push_back(trim_blanks(rest.substr(0, comma)));
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
      }
    }

    Step step;
    step.fn = info->fn;
    step.text = std::string(text);
    step.where = line.where;
    const auto usage = [&](const std::string& problem) {
      return fail(TransformErrc::kBadArgument,
                  problem + "; usage: " + info->usage + ", got '" + std::string(call) + "'");
    };
    const auto field_arg = [&](std::string_view a) -> std::optional<Step::Arg> {
      const auto it = std::find(t.output_columns_.begin(), t.output_columns_.end(), a);
      if (it == t.output_columns_.end()) return std::nullopt;
      return Step::Arg{true, static_cast<std::size_t>(it - t.output_columns_.begin()), 0};
    };
    const auto unknown_field = [&](std::string_view a) {
      return fail(TransformErrc::kUnknownField,
                  "unknown field '" + std::string(a) + "'" + did_you_mean(a, t.output_columns_) +
                      " (fields defined by this line: " + join_words(t.output_columns_) + ")");
    };

    std::size_t arity = 0;
    switch (step.fn) {
      case Fn::kSeq:
        arity = 0;
        break;
      case Fn::kCopy:
      case Fn::kEpoch:
      case Fn::kDate:
      case Fn::kHour:
        arity = 1;
        break;
      case Fn::kScaled:
      case Fn::kLookup:
      case Fn::kAdd:
      case Fn::kSub:
      case Fn::kMul:
        arity = 2;
        break;
      case Fn::kMulDivRound:
        arity = 3;
        break;
      case Fn::kBucket:
        arity = 0;  // variadic: checked below
        break;
    }
    if (step.fn != Fn::kBucket && args.size() != arity) {
      return usage(std::to_string(arity) + " argument" + (arity == 1 ? "" : "s") + " expected");
    }
    for (const auto a : args) {
      if (a.empty()) return usage("an argument is empty");
    }

    switch (step.fn) {
      case Fn::kSeq:
        break;
      case Fn::kCopy:
      case Fn::kEpoch:
      case Fn::kDate:
      case Fn::kHour: {
        const auto f = field_arg(args[0]);
        if (!f) return unknown_field(args[0]);
        step.args.push_back(*f);
        break;
      }
      case Fn::kScaled: {
        const auto f = field_arg(args[0]);
        if (!f) return unknown_field(args[0]);
        step.args.push_back(*f);
        const auto scale = parse_int64(args[1], false);
        if (!scale || *scale > kMaxDecimalScale) {
          return usage("SCALE must be an integer 0.." + std::to_string(kMaxDecimalScale));
        }
        step.scale = static_cast<int>(*scale);
        break;
      }
      case Fn::kLookup: {
        const auto f = field_arg(args[0]);
        if (!f) return unknown_field(args[0]);
        step.args.push_back(*f);
        const auto table = tables.find(std::string(args[1]));
        if (table == tables.end()) {
          std::vector<std::string> names;
          for (const auto& [n, unused] : tables) names.push_back(n);
          return fail(
              TransformErrc::kUnknownTable,
              "unknown table '" + std::string(args[1]) + "'" + did_you_mean(args[1], names) +
                  " (tables: " + (names.empty() ? std::string("none") : join_words(names)) + ")");
        }
        for (const auto& [key, value] : table->second) {
          step.table.emplace(key, Step::TableValue{value, parse_int64(value, true)});
        }
        break;
      }
      case Fn::kAdd:
      case Fn::kSub:
      case Fn::kMul:
      case Fn::kMulDivRound:
        for (const auto a : args) {
          if (const auto lit = parse_int64(a, true)) {
            step.args.push_back(Step::Arg{false, 0, *lit});
          } else if (const auto f = field_arg(a)) {
            step.args.push_back(*f);
          } else if (is_identifier(a)) {
            return unknown_field(a);
          } else {
            return usage("'" + std::string(a) + "' is neither a field nor an integer");
          }
        }
        if (step.fn == Fn::kMulDivRound) {
          for (const auto& a : step.args) {
            if (!a.is_field && a.literal < 0) return usage("the arguments must not be negative");
          }
          if (!step.args[2].is_field && step.args[2].literal == 0) {
            return usage("the divisor C must not be 0");
          }
        }
        break;
      case Fn::kBucket: {
        if (args.size() < 3) return usage("a field, at least one THRESHOLD:LABEL and a default");
        const auto f = field_arg(args[0]);
        if (!f) return unknown_field(args[0]);
        step.args.push_back(*f);
        for (std::size_t i = 1; i + 1 < args.size(); ++i) {
          const auto colon = args[i].find(':');
          const auto threshold = colon == std::string_view::npos
                                     ? std::nullopt
                                     : parse_int64(trim_blanks(args[i].substr(0, colon)), true);
          const std::string_view label = colon == std::string_view::npos
                                             ? std::string_view{}
                                             : trim_blanks(args[i].substr(colon + 1));
          if (!threshold || label.empty()) {
            return usage("'" + std::string(args[i]) + "' is not THRESHOLD:LABEL");
          }
          if (!step.buckets.empty() && *threshold >= step.buckets.back().first) {
            return usage("thresholds must be strictly descending");
          }
          step.buckets.emplace_back(*threshold, std::string(label));
        }
        if (args.back().find(':') != std::string_view::npos) {
          return usage("the last argument is the default label, without ':'");
        }
        step.default_label = std::string(args.back());
        break;
      }
    }

    const auto it = std::find(t.output_columns_.begin(), t.output_columns_.end(), name);
    step.out = static_cast<std::size_t>(it - t.output_columns_.begin());
    if (it == t.output_columns_.end()) t.output_columns_.emplace_back(name);
    t.steps_.push_back(std::move(step));
  }
  return t;
}

Status Transform::apply(std::uint64_t seq, std::vector<std::string>& fields) const {
  if (fields.size() != input_width_) {
    return Error{"transform", static_cast<int>(TransformErrc::kBadValue),
                 "record " + std::to_string(seq) + " has " + std::to_string(fields.size()) +
                     " fields but the transform expects " + std::to_string(input_width_),
                 0};
  }
  fields.resize(output_columns_.size());
  // Values this call already knows, so that a later step does not parse them back from text:
  // integers it computed, and epoch seconds of time fields it parsed.
  ValueCache ints;
  ValueCache times;

  for (const Step& step : steps_) {
    const auto fail = [&](TransformErrc code, const std::string& what) {
      return Error{"transform", static_cast<int>(code),
                   "record " + std::to_string(seq) + ", derive " + step.text + " (" + step.where +
                       "): " + what,
                   0};
    };
    const auto bad_field = [&](std::size_t index, const std::string& why) {
      return fail(TransformErrc::kBadValue,
                  "field '" + output_columns_[index] + "' is '" + fields[index] + "': " + why);
    };
    // The integer value of argument i; false when the field holds no integer.
    std::size_t bad = 0;
    const auto int_arg = [&](std::size_t i, std::int64_t& v) -> bool {
      const Step::Arg& a = step.args[i];
      if (!a.is_field) {
        v = a.literal;
        return true;
      }
      if (ints.get(a.field, v)) return true;
      const auto parsed = parse_int64(fields[a.field], true);
      if (!parsed) {
        bad = a.field;
        return false;
      }
      v = *parsed;
      ints.set(a.field, v);
      return true;
    };
    const auto not_int = [&] { return bad_field(bad, "not an integer that fits int64"); };
    // Epoch seconds of the timestamp argument (ISO text or already epoch seconds).
    const auto time_arg = [&](std::int64_t& t) -> bool {
      const std::size_t in = step.args[0].field;
      if (times.get(in, t)) return true;
      const std::string& value = fields[in];
      if (const auto iso = parse_iso_utc_epoch(value)) {
        t = *iso;
      } else if (const auto v = parse_int64(value, true); v && epoch_in_iso_range(*v)) {
        t = *v;
      } else {
        return false;
      }
      times.set(in, t);
      return true;
    };
    const auto not_time = [&] {
      return bad_field(step.args[0].field,
                       "not a UTC time YYYY-MM-DDTHH:MM:SSZ (or epoch seconds in years 0..9999)");
    };

    std::string& out = fields[step.out];
    // Set when the step's result is an integer, to be remembered for later steps.
    std::optional<std::int64_t> result;
    switch (step.fn) {
      case Fn::kSeq:
        if (seq > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          return fail(TransformErrc::kOverflow, "the position does not fit int64");
        }
        result = static_cast<std::int64_t>(seq);
        break;
      case Fn::kCopy:
        if (step.out == step.args[0].field) continue;
        out = fields[step.args[0].field];
        break;
      case Fn::kScaled: {
        const std::size_t in = step.args[0].field;
        std::int64_t v = 0;
        switch (parse_scaled_decimal(fields[in], step.scale, true, v)) {
          case DecimalParse::kOk:
            break;
          case DecimalParse::kMalformed:
            return bad_field(in, "not a decimal number");
          case DecimalParse::kTooManyDecimals:
            return bad_field(in, "more than " + std::to_string(step.scale) + " decimals");
          case DecimalParse::kOverflow:
            return fail(TransformErrc::kOverflow, "field '" + output_columns_[in] + "' is '" +
                                                      fields[in] +
                                                      "': too large for int64 once scaled");
        }
        result = v;
        break;
      }
      case Fn::kLookup: {
        const std::size_t in = step.args[0].field;
        const auto it = step.table.find(std::string_view(fields[in]));
        if (it == step.table.end()) {
          return fail(TransformErrc::kMissingKey, "field '" + output_columns_[in] + "' is '" +
                                                      fields[in] + "', which the table lacks");
        }
        out = it->second.text;
        ints.forget(step.out);
        times.forget(step.out);
        if (it->second.number) ints.set(step.out, *it->second.number);
        continue;
      }
      case Fn::kAdd:
      case Fn::kSub:
      case Fn::kMul: {
        std::int64_t a = 0;
        std::int64_t b = 0;
        if (!int_arg(0, a) || !int_arg(1, b)) return not_int();
        std::int64_t r = 0;
        const bool overflow = step.fn == Fn::kAdd   ? __builtin_add_overflow(a, b, &r)
                              : step.fn == Fn::kSub ? __builtin_sub_overflow(a, b, &r)
                                                    : __builtin_mul_overflow(a, b, &r);
        if (overflow) {
          return fail(TransformErrc::kOverflow, std::to_string(a) + " and " + std::to_string(b) +
                                                    " give a result outside int64");
        }
        result = r;
        break;
      }
      case Fn::kMulDivRound: {
        std::int64_t a = 0;
        std::int64_t b = 0;
        std::int64_t c = 0;
        if (!int_arg(0, a) || !int_arg(1, b) || !int_arg(2, c)) return not_int();
        if (a < 0 || b < 0 || c <= 0) {
          return fail(TransformErrc::kBadValue, "needs A, B >= 0 and C > 0, got " +
                                                    std::to_string(a) + ", " + std::to_string(b) +
                                                    ", " + std::to_string(c));
        }
        const U128 q = (static_cast<U128>(a) * static_cast<U128>(b) + static_cast<U128>(c / 2)) /
                       static_cast<U128>(c);
        if (q > static_cast<U128>(std::numeric_limits<std::int64_t>::max())) {
          return fail(TransformErrc::kOverflow, "the result of " + std::to_string(a) + " * " +
                                                    std::to_string(b) + " / " + std::to_string(c) +
                                                    " is outside int64");
        }
        result = static_cast<std::int64_t>(q);
        break;
      }
      case Fn::kEpoch: {
        std::int64_t t = 0;
        if (!time_arg(t)) return not_time();
        result = t;
        break;
      }
      case Fn::kDate: {
        std::int64_t t = 0;
        if (!time_arg(t)) return not_time();
        out.clear();
        append_date(out, t);
        break;
      }
      case Fn::kHour: {
        std::int64_t t = 0;
        if (!time_arg(t)) return not_time();
        result = hour_of_epoch(t);
        break;
      }
      case Fn::kBucket: {
        std::int64_t v = 0;
        if (!int_arg(0, v)) return not_int();
        const std::string* label = &step.default_label;
        for (const auto& [threshold, l] : step.buckets) {
          if (v >= threshold) {
            label = &l;
            break;
          }
        }
        out = *label;
        break;
      }
    }
    ints.forget(step.out);
    times.forget(step.out);
    if (result) {
      out.clear();
      append_int(out, *result);
      ints.set(step.out, *result);
    }
  }
  return ok_status();
}

}  // namespace millrace::stages
