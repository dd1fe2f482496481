// Transform: the derived fields of the transform stage, built from `derive` config lines.
//
//   derive = NAME = FUNC(ARGS)
//
// NAME is a new field (appended to the output columns as first defined) or an
// existing one (overwritten in place). ARGS are field names defined by then, integer literals,
// or table names. Integers are int64 with overflow detection; there is no floating point.
//   seq()                          the record's source position (record_no)
//   copy(f)
//   scaled(f, SCALE)               decimal text -> integer * 10^SCALE ("12.3", 2 -> 1230)
//   lookup(f, TABLE)               the value of key f in the table; a missing key is an error
//   add(a, b)  sub(a, b)  mul(a, b)
//   muldiv_round(a, b, c)          (a*b + c/2) / c for a, b >= 0 and c > 0 (128-bit product)
//   epoch(ts)  date(ts)  hour(ts)  ISO UTC (or epoch seconds) -> seconds, YYYY-MM-DD, 0..23
//   bucket(f, T1:L1, T2:L2, ..., DEFAULT)  the label of the first Ti (descending) with f >= Ti
//
// A Transform is immutable after parse and may be used by several threads at once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ipc/result.hpp"
#include "stages/config_line.hpp"

namespace millrace::stages {

// Error codes of component "transform".
enum class TransformErrc : int {
  kSyntax = 1,  // a derive line that is not NAME = FUNC(ARGS)
  kUnknownFunction = 2,
  kUnknownField = 3,  // an argument naming no field defined by then
  kUnknownTable = 4,
  kBadArgument = 5,  // wrong number or kind of arguments
  kBadValue = 6,     // apply(): a field value the function cannot take
  kOverflow = 7,     // apply(): a result outside int64
  kMissingKey = 8,   // apply(): lookup() of a key the table does not have
};

class Transform {
 public:
  using Tables = std::map<std::string, std::map<std::string, std::string>>;

  static Result<Transform> parse(std::vector<ConfigLine> derive_lines,
                                 const std::vector<std::string>& input_columns,
                                 const Tables& tables);

  Transform(Transform&&) noexcept;
  Transform& operator=(Transform&&) noexcept;
  Transform(const Transform&);
  Transform& operator=(const Transform&);
  ~Transform();

  // The input columns followed by the new names, as first defined.
  [[nodiscard]] const std::vector<std::string>& output_columns() const { return output_columns_; }

  // Derives the record at source position `seq`: `fields` holds the input columns and is
  // resized to the output columns (capacity reused). An error names the record, the field, its
  // value and the derive line.
  Status apply(std::uint64_t seq, std::vector<std::string>& fields) const;

 private:
  struct Step;
  Transform();

  std::size_t input_width_ = 0;
  std::vector<std::string> output_columns_;
  std::vector<Step> steps_;
};

}  // namespace millrace::stages
