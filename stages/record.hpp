// Record: what flows between stages. Every record carries the position of its source record
// (`seq`, 1-based, monotonic per source: the CSV `record_no`), so that any stage can recognise
// a record it has already forwarded, and the store can store each position exactly once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace millrace::stages {

enum class RecordKind : std::uint8_t {
  kData = 0,    // fields hold the record's values, in the order of the stage's output columns
  kReject = 1,  // rejected upstream: `reason` says why; fields are empty
  kEnd = 2,     // end of stream: `seq` is the number of source records; no record follows
};

struct Record {
  static constexpr std::string_view kTransferName = "millrace.Record";
  static constexpr std::uint32_t kTransferVersion = 1;

  std::uint64_t seq = 0;
  RecordKind kind = RecordKind::kData;
  // kEnd: true when the source was read to its end, false when the run was stopped early.
  bool complete = false;
  std::string reason;
  std::vector<std::string> fields;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(seq, kind, complete, reason, fields);
  }
};

}  // namespace millrace::stages
