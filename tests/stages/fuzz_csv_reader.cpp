// libFuzzer target for CsvReader. Build with clang: -fsanitize=fuzzer,address,undefined.
//
// Properties checked on every input:
//  - no crash, no sanitizer report, no error from an in-memory source;
//  - the records do not depend on the read buffer size (every boundary falls across refills);
//  - byte_offset() grows and ends at the input size;
//  - writing the records back with append_csv_field and reading them again gives the same
//    records (for inputs without oversize records).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "stages/csv_reader.hpp"

namespace {

using millrace::stages::CsvOptions;
using millrace::stages::CsvReader;

struct Parsed {
  std::vector<std::vector<std::string>> records;
  std::vector<bool> oversize;
};

void check(bool condition) {
  if (!condition) std::abort();
}

Parsed parse(std::string_view data, std::size_t buffer, std::size_t max_record) {
  CsvOptions options;
  options.buffer_bytes = buffer;
  options.max_record_bytes = max_record;
  CsvReader reader = CsvReader::from_memory(data, "fuzz.csv", options);
  Parsed out;
  std::vector<std::string> fields;
  std::uint64_t last_offset = 0;
  for (;;) {
    auto more = reader.next(fields);
    check(more.ok());
    if (!more.value()) break;
    check(reader.byte_offset() > last_offset || data.empty());
    check(reader.byte_offset() <= data.size());
    last_offset = reader.byte_offset();
    out.records.push_back(fields);
    out.oversize.push_back(reader.oversize());
    check(!reader.oversize() || fields.empty());
  }
  check(reader.byte_offset() == data.size() || out.records.empty());
  check(reader.records_read() == out.records.size());
  return out;
}

std::string write(const std::vector<std::vector<std::string>>& records) {
  std::string out;
  for (const auto& record : records) {
    for (std::size_t i = 0; i < record.size(); ++i) {
      if (i > 0) out.push_back(',');
      millrace::stages::append_csv_field(out, record[i]);
    }
    out.push_back('\n');
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const Parsed big = parse(input, std::size_t{1} << 16, std::size_t{1} << 20);
  for (std::size_t buffer : {4, 5, 7, 31}) {
    const Parsed small = parse(input, buffer, std::size_t{1} << 20);
    check(small.records == big.records);
    check(small.oversize == big.oversize);
  }
  // A small record limit exercises the skipping of oversize records at every boundary.
  const Parsed limited = parse(input, 5, 16);
  check(limited.records.size() == big.records.size());

  bool any_oversize = false;
  for (bool o : big.oversize) any_oversize = any_oversize || o;
  if (!any_oversize) {
    const std::string again = write(big.records);
    check(parse(again, 7, std::size_t{1} << 20).records == big.records);
  }
  return 0;
}
