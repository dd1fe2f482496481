// CsvReader: a streaming reader of RFC 4180 CSV with millrace's lenient rules, in bounded memory
// (one read buffer plus the current record), resumable at any record boundary.
//
// The rules, exactly:
//  - Fields are separated by `,`. A field that starts with `"` is quoted: inside it `""` is one
//    `"`, and `,`, CR and LF are literal. A `"` anywhere else in an unquoted field is literal.
//  - Characters after a closing quote and before the next separator are appended literally:
//    `"ab"cd` is `abcd`.
//  - A quote never closed runs to the end of the input, a final line break included.
//  - Outside quotes a record ends at LF, CRLF or a lone CR. An empty line is a record of one
//    empty field. The end of input ends the last record; a final line break does not start an
//    empty record, and an empty input has no records.
//  - A UTF-8 BOM (U+FEFF) at the very start of the input is skipped.
//
// Thread safety: none; one reader per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/result.hpp"
#include "stages/input_source.hpp"

namespace millrace::stages {

// Error codes of component "csv".
enum class CsvErrc : int {
  kHeaderMismatch = 1,  // the header record differs from the configured columns
};

struct CsvOptions {
  std::size_t buffer_bytes = std::size_t{1} << 20;  // read buffer (at least 4 bytes are used)
  // A record whose field contents total more bytes than this is not kept: next() returns it
  // with oversize() true and no fields, so that memory stays bounded and the caller can reject
  // it with a reason.
  std::size_t max_record_bytes = std::size_t{4} << 20;
};

class CsvReader {
 public:
  // Opens the file at `path`; errors name the path (missing, unreadable, a directory).
  static Result<CsvReader> open(const std::string& path, CsvOptions options = {});
  static CsvReader from_source(InputSource source, CsvOptions options = {});
  // Reads `data`, which the caller keeps alive while the reader is used.
  static CsvReader from_memory(std::string_view data, std::string name, CsvOptions options = {});

  // Reads the next record into `fields` (resized to its field count; the strings' capacity is
  // reused, so steady state does not allocate). Returns false at the end of input.
  Result<bool> next(std::vector<std::string>& fields);
  // True when the record last returned by next() exceeded max_record_bytes; its fields are empty.
  [[nodiscard]] bool oversize() const { return oversize_; }
  // Records returned so far (plus `records_before` of the last seek).
  [[nodiscard]] std::uint64_t records_read() const { return records_read_; }
  // Input offset just after the last returned record and its line break: a resume point.
  [[nodiscard]] std::uint64_t byte_offset() const { return byte_offset_; }
  // Resumes at `byte_offset`, a value byte_offset() returned, after `records_before` records.
  Status seek(std::uint64_t byte_offset, std::uint64_t records_before);

  [[nodiscard]] const std::string& name() const { return in_.name(); }

 private:
  enum class State : std::uint8_t { kFieldStart, kUnquoted, kQuoted, kQuotedQuote, kDone };

  CsvReader(InputSource source, CsvOptions options);
  void begin_field(std::vector<std::string>& fields, std::size_t index);
  void append(std::vector<std::string>& fields, const char* begin, const char* end);

  ReadBuffer in_;  // padded for 16-byte loads
  CsvOptions options_;

  std::string* field_ = nullptr;  // the field being filled
  std::string discarded_;         // stands in for field_ while an oversize record is skipped
  std::size_t record_bytes_ = 0;
  bool discard_ = false;
  bool oversize_ = false;
  std::uint64_t records_read_ = 0;
  std::uint64_t byte_offset_ = 0;
};

// Checks a header record against the configured column names (spaces and tabs around a name
// are ignored). The error names the file, line 1 and the first differing column.
Status check_header(const std::vector<std::string>& found, const std::vector<std::string>& expected,
                    std::string_view path);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool valid_utf8(std::string_view text);

// Appends `field` as one CSV field, quoted when it holds `,`, `"`, CR or LF, so that CsvReader
// reads back exactly `field`.
void append_csv_field(std::string& out, std::string_view field);

}  // namespace millrace::stages
