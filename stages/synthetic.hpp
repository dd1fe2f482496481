// Synthetic: a seeded generator of dirty records, for the default input of a pipeline, tests and
// benchmarks. Configured by one `gen = NAME : KIND [ARGS]` line per column, KIND being:
//
//   serial [dup=P]     the record's position; with probability P one of the previous 1000
//                      values instead
//   timestamp Y1..Y2   a UTC time YYYY-MM-DDTHH:MM:SSZ in years Y1..Y2
//   word               a name, mostly lower case, sometimes capitalised
//   choice A B C       one of the values
//   decimal LO..HI     mostly with 2 decimals (or the bounds' scale), sometimes 1 or 0
//   int LO..HI
//   pattern TEXT       TEXT with every `#` replaced by a digit
//   text               a short note, sometimes empty, sometimes with commas, quotes or line
//                      breaks
//
// With probability `dirt` a record carries one defect: a missing or extra field, a blank or
// padded field, changed letter case, an impossible time, letters in a number, too many
// decimals, a value out of range, an unknown or 3-letter code.
//
// generate() is a pure function of (seed, seq): a restarted source resumes at any position in
// O(1), and records come out the same whatever the sequence they are asked in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/result.hpp"
#include "stages/config_line.hpp"

namespace millrace::stages {

// Error codes of component "synthetic".
enum class SyntheticErrc : int {
  kSyntax = 1,         // a gen line that is not NAME : KIND ARGS
  kUnknownColumn = 2,  // a gen line for a name that is not a column, or twice the same
  kMissingColumn = 3,  // a column without a gen line
  kUnknownKind = 4,
  kBadArgument = 5,
};

class Synthetic {
 public:
  static Result<Synthetic> parse(std::vector<ConfigLine> gen_lines, double dirt, std::uint64_t seed,
                                 std::vector<std::string> columns);

  // The record at position `seq` (1-based) into `fields` (capacity reused). Usually one field
  // per column; a defect may drop or add one.
  void generate(std::uint64_t seq, std::vector<std::string>& fields) const;

  [[nodiscard]] const std::vector<std::string>& columns() const { return columns_; }

 private:
  enum class Kind : std::uint8_t {
    kSerial,
    kTimestamp,
    kWord,
    kChoice,
    kDecimal,
    kInt,
    kPattern,
    kText
  };
  struct Column {
    Kind kind = Kind::kText;
    std::uint64_t dup_threshold = 0;  // serial: P * 2^32
    std::int64_t lo = 0;              // timestamp: epoch seconds; decimal: scaled; int
    std::int64_t hi = 0;
    int scale = 2;  // decimal
    std::vector<std::string> choices;
    std::string pattern;
  };
  class Rng;

  Synthetic() = default;
  void generate_value(std::size_t column, std::uint64_t seq, Rng& rng, std::string& out) const;
  void add_defect(Rng& rng, std::vector<std::string>& fields) const;

  std::vector<std::string> columns_;
  std::vector<Column> specs_;
  std::uint64_t dirt_threshold_ = 0;  // dirt * 2^32
  std::uint64_t seed_ = 0;
};

}  // namespace millrace::stages
