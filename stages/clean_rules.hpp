// CleanRules: the validation and normalisation of the clean stage, built from config lines.
//
//   trim   = all | none | a comma list of columns        (spaces and tabs only)
//   fields = COUNT -> REASON                             (exact field count)
//   check  = FIELD : OP [ARGS] [, OP [ARGS]]... -> REASON
//
// Ops run left to right on the field; `lower` and `upper` change it for later ops and for the
// output. `lower`, `upper` (ASCII letters only); `required` (not empty); `int [MIN..MAX]`
// (ASCII digits, fits int64, in range); `decimal SCALE [MIN..MAX]` (`DIGITS[.D{1,SCALE}]`,
// bounds compared exactly as integers scaled by 10^SCALE); `timestamp [MINYEAR..MAXYEAR]`
// (`YYYY-MM-DDTHH:MM:SSZ`, a real UTC time); `oneof A B C` (exact); `match REGEX` (RE2 full
// match; the regex is the rest of the text up to `->`, so `match` is the last op of its check).
//
// apply() trims, checks the field count, then runs the checks one after another; the first failing
// op rejects the record with its check's reason. A CleanRules is immutable after parse and may be
// used by several threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/result.hpp"
#include "stages/config_line.hpp"

namespace millrace::stages {

// Error codes of component "rules".
enum class RulesErrc : int {
  kSyntax = 1,        // a line that does not have the shape of its key
  kUnknownField = 2,  // a field name that is not a column
  kUnknownOp = 3,     // an op name that does not exist
  kBadArgument = 4,   // an op's arguments are wrong (bounds, scale, regex...)
};

class CleanRules {
 public:
  static Result<CleanRules> parse(const ConfigLine& trim, std::optional<ConfigLine> fields_line,
                                  std::vector<ConfigLine> check_lines,
                                  const std::vector<std::string>& columns);

  CleanRules(CleanRules&&) noexcept;
  CleanRules& operator=(CleanRules&&) noexcept;
  CleanRules(const CleanRules&);
  CleanRules& operator=(const CleanRules&);
  ~CleanRules();

  // Normalises `fields` in place and returns the reason of the first failing check, or nullopt
  // when the record passes. The reason views storage owned by this object.
  std::optional<std::string_view> apply(std::vector<std::string>& fields) const;

  // The exact field count a record needs (the number of columns unless `fields` says).
  [[nodiscard]] std::size_t field_count() const { return field_count_; }

 private:
  struct Check;
  CleanRules();

  std::vector<bool> trim_;  // per column; trim_all_ covers extra fields too
  bool trim_all_ = false;
  std::size_t field_count_ = 0;
  std::string field_count_reason_;
  std::vector<Check> checks_;
};

}  // namespace millrace::stages
