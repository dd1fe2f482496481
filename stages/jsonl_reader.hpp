// JsonlReader: a streaming reader of JSON Lines (one JSON object per line) that yields the
// values of the configured columns as text, in bounded memory, resumable at any line.
//
//  - A line ends at LF; a CR before it is dropped. A final line break does not start an empty
//    record; every other line, blank ones included, is a record.
//  - A string value is taken as is; numbers as their JSON text exactly as written (`12.30`
//    stays `12.30`); booleans as `true`/`false`; null or a missing key gives an empty field; a
//    nested object or array gives its compact JSON text. Keys not configured are ignored; a
//    repeated key keeps its last value.
//  - A line that is not valid JSON, or whose value is not an object, is still a record: next()
//    returns it with bad_json() true and no fields, so the caller can reject it. No exception
//    escapes.
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

struct JsonlOptions {
  std::vector<std::string> columns;                 // the keys to take, one per field
  std::size_t buffer_bytes = std::size_t{1} << 20;  // read buffer (at least 4 bytes are used)
  // A longer line is not kept: next() returns it with oversize() true and no fields.
  std::size_t max_record_bytes = std::size_t{4} << 20;
};

class JsonlReader {
 public:
  static Result<JsonlReader> open(const std::string& path, JsonlOptions options);
  static JsonlReader from_source(InputSource source, JsonlOptions options);
  // Reads `data`, which the caller keeps alive while the reader is used.
  static JsonlReader from_memory(std::string_view data, std::string name, JsonlOptions options);

  // Reads the next line into `fields` (one per configured column; capacity reused). Returns
  // false at the end of input.
  Result<bool> next(std::vector<std::string>& fields);
  // The last record was not a JSON object; its fields are empty. json_error() says why.
  [[nodiscard]] bool bad_json() const { return bad_json_; }
  [[nodiscard]] const std::string& json_error() const { return json_error_; }
  // The last record was longer than max_record_bytes; its fields are empty.
  [[nodiscard]] bool oversize() const { return oversize_; }
  [[nodiscard]] std::uint64_t records_read() const { return records_read_; }
  // Input offset just after the last returned line: a resume point.
  [[nodiscard]] std::uint64_t byte_offset() const { return byte_offset_; }
  // Resumes at `byte_offset`, a value byte_offset() returned, after `records_before` records.
  Status seek(std::uint64_t byte_offset, std::uint64_t records_before);

  [[nodiscard]] const std::string& name() const { return in_.name(); }

 private:
  JsonlReader(InputSource source, JsonlOptions options);
  void parse_line(std::vector<std::string>& fields);

  ReadBuffer in_;
  JsonlOptions options_;

  std::string line_;
  bool bad_json_ = false;
  bool oversize_ = false;
  std::string json_error_;
  std::uint64_t records_read_ = 0;
  std::uint64_t byte_offset_ = 0;
};

}  // namespace millrace::stages
