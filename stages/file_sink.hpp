// FileSink: the store's CSV and JSON Lines destinations.
//
// Rows go to `path`, rejects to `reject_path` (record_no and reason). Exactly once, like the
// SQLite store, without a database: a commit appends the batch to both files, then replaces
// `path.progress` (the files' committed lengths, the positions stored, the run's fingerprint)
// with one rename. A store killed anywhere in between is reopened by truncating both files to
// the committed lengths, so a row is in the file once or not at all. The fault model is a killed
// process: no fsync, the kernel keeps what was written.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "stages/runtime.hpp"

namespace millrace::stages {

struct FileSinkOptions {
  enum class Format { kCsv, kJsonl };
  Format format = Format::kCsv;
  std::string path;
  std::string reject_path;            // default: path + ".rejects.csv" / ".rejects.jsonl"
  std::vector<std::string> columns;   // "name" or "name TYPE"; INTEGER columns are numbers in JSON
  std::string fingerprint;
  std::string where;                  // config location, for messages
};

Result<FileSinkOptions> file_sink_options(const StageContext& ctx, FileSinkOptions::Format format);

class FileSink final : public Sink {
 public:
  explicit FileSink(FileSinkOptions options);
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  Result<SinkProgress> open(const StageContext& ctx) override;
  Result<SinkProgress> open_with_columns(const std::vector<std::string>& input_columns);
  Status write(const Record& record) override;
  Status commit(const SinkProgress& progress) override;
  [[nodiscard]] SinkTotals totals() const override;

 private:
  struct Column {
    std::string name;
    bool integer = false;
    std::size_t field = 0;
  };
  Status save_progress(const SinkProgress& progress);
  Status append(int fd, const std::string& path, std::string& buffer, std::uint64_t& length);

  FileSinkOptions options_;
  std::vector<Column> columns_;
  int rows_fd_ = -1;
  int rejects_fd_ = -1;
  std::uint64_t rows_length_ = 0;     // committed bytes
  std::uint64_t rejects_length_ = 0;
  std::string rows_buffer_;
  std::string rejects_buffer_;
  SinkTotals totals_;
  std::uint64_t pending_rows_ = 0;
  std::map<std::string, std::uint64_t> pending_rejects_;
};

}  // namespace millrace::stages
