// SqliteSink: the store's SQLite destination.
//
// One database file holds the data table, the rejects table and `millrace_progress`, the
// positions stored so far. Rows and positions are committed in the same transaction (WAL,
// synchronous=NORMAL, prepared statements, one transaction per batch), so after any kill the
// database says exactly which records it holds, and a restarted store stores nothing twice.
//
// De-duplication by key: with `dedup_key`, the first record of a key (the lowest position)
// keeps the row, every other one is a reject with `dedup_reason`, whatever order records
// arrive in: a record that arrives after a later one of the same key takes the row back.
//
// A database that holds a run of another input or config (its fingerprint differs), or tables
// not written by millrace, is refused: nothing is mixed into it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stages/runtime.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace millrace::stages {

struct SqliteSinkOptions {
  std::string path;
  std::string table;
  std::string columns;  // "name TYPE [constraints], ..." as in CREATE TABLE
  std::string reject_table = "rejects";
  std::string dedup_key;        // empty: no de-duplication
  std::string dedup_reason = "duplicate";
  std::string position_column = "record_no";  // the column holding each row's position
  std::string fingerprint;      // of the run's input and config
  std::string where;            // config location, for messages
};

// Reads the options from the stage's config section.
Result<SqliteSinkOptions> sqlite_sink_options(const StageContext& ctx);

class SqliteSink final : public Sink {
 public:
  explicit SqliteSink(SqliteSinkOptions options);
  ~SqliteSink() override;
  SqliteSink(const SqliteSink&) = delete;
  SqliteSink& operator=(const SqliteSink&) = delete;

  Result<SinkProgress> open(const StageContext& ctx) override;
  // Opens against explicit input columns (tests and tools).
  Result<SinkProgress> open_with_columns(const std::vector<std::string>& input_columns);
  Status write(const Record& record) override;
  Status commit(const SinkProgress& progress) override;
  [[nodiscard]] SinkTotals totals() const override;

 private:
  struct Column {
    std::string name;
    bool integer = false;
    std::size_t field = 0;  // index in the input record
  };

  Status exec(const std::string& sql);
  Result<sqlite3_stmt*> prepare(const std::string& sql);
  Error db_error(const std::string& what) const;
  Status begin_if_needed();
  Status bind_row(sqlite3_stmt* stmt, const Record& record, int first_index);
  void bind_key(sqlite3_stmt* stmt, int index, const std::string& key);
  Status insert_reject(std::uint64_t seq, const std::string& reason);
  Status write_data(const Record& record);

  SqliteSinkOptions options_;
  sqlite3* db_ = nullptr;
  std::vector<Column> columns_;
  std::size_t key_column_ = 0;       // index into columns_
  std::size_t position_column_ = 0;  // index into columns_
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* insert_reject_ = nullptr;
  sqlite3_stmt* find_key_ = nullptr;
  sqlite3_stmt* replace_row_ = nullptr;
  sqlite3_stmt* save_progress_ = nullptr;
  bool in_transaction_ = false;
  bool key_is_unique_ = false;  // the table's own constraint keeps dedup_key unique

  SinkTotals totals_;
  std::int64_t pending_rows_ = 0;
  std::map<std::string, std::uint64_t> pending_rejects_;
};

}  // namespace millrace::stages
