#include "stages/sqlite_sink.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <unistd.h>

namespace millrace::stages {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Splits a column list at top-level commas ("DECIMAL(10,2)" stays whole).
std::vector<std::string> split_columns(std::string_view text) {
  std::vector<std::string> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || (text[i] == ',' && depth == 0)) {
      std::string part = trim(text.substr(start, i - start));
      if (!part.empty()) out.push_back(std::move(part));
      start = i + 1;
    } else if (text[i] == '(') {
      ++depth;
    } else if (text[i] == ')') {
      --depth;
    }
  }
  return out;
}

bool valid_identifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Error sink_error(std::string msg) { return Error{"store", 1, std::move(msg), 0}; }

}  // namespace

Result<SqliteSinkOptions> sqlite_sink_options(const StageContext& ctx) {
  SqliteSinkOptions o;
  o.path = ctx.get("path");
  o.table = ctx.get("table", "records");
  o.columns = ctx.get("columns");
  o.reject_table = ctx.get("reject_table", "rejects");
  o.dedup_key = ctx.get("dedup_key");
  o.dedup_reason = ctx.get("dedup_reason", "duplicate");
  o.position_column = ctx.get("position_column", "record_no");
  o.fingerprint = ctx.handover.fingerprint;
  o.where = ctx.where("columns");
  if (o.path.empty()) return sink_error(ctx.where("path") + ": the store needs a database path");
  if (o.columns.empty()) {  // every field, as text
    for (const std::string& f : ctx.input_columns) o.columns += (o.columns.empty() ? "" : ", ") + f + " TEXT";
  }
  if (o.columns.empty()) return sink_error(o.where + ": the store needs its table's columns");
  return o;
}

SqliteSink::SqliteSink(SqliteSinkOptions options) : options_(std::move(options)) {}

SqliteSink::~SqliteSink() {
  for (sqlite3_stmt* s : {insert_, insert_reject_, find_key_, replace_row_, save_progress_}) {
    sqlite3_finalize(s);
  }
  // An open transaction is rolled back by close: uncommitted rows were never promised.
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Error SqliteSink::db_error(const std::string& what) const {
  return sink_error("store database " + options_.path + ": " + what + ": " +
                    (db_ ? sqlite3_errmsg(db_) : "not open"));
}

Status SqliteSink::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return sink_error("store database " + options_.path + ": " + msg + " (in: " +
                      sql.substr(0, 120) + ")");
  }
  return ok_status();
}

Result<sqlite3_stmt*> SqliteSink::prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
      SQLITE_OK) {
    return db_error("cannot prepare '" + sql.substr(0, 120) + "'");
  }
  return stmt;
}

Result<SinkProgress> SqliteSink::open(const StageContext& ctx) {
  return open_with_columns(ctx.input_columns);
}

Result<SinkProgress> SqliteSink::open_with_columns(const std::vector<std::string>& input_columns) {
  namespace fs = std::filesystem;
  // Table and column definitions.
  for (const std::string& t : {options_.table, options_.reject_table}) {
    if (!valid_identifier(t)) return sink_error(options_.where + ": '" + t + "' is not a table name");
  }
  for (const std::string& def : split_columns(options_.columns)) {
    const std::size_t space = def.find_first_of(" \t");
    Column c;
    c.name = def.substr(0, space);
    const std::string type = space == std::string::npos ? "" : upper(trim(def.substr(space)));
    c.integer = type.find("INT") != std::string::npos;
    // A key the table already keeps unique needs no index of ours.
    if (c.name == options_.dedup_key &&
        (type.find("PRIMARY KEY") != std::string::npos || type.find("UNIQUE") != std::string::npos)) {
      key_is_unique_ = true;
    }
    if (!valid_identifier(c.name)) {
      return sink_error(options_.where + ": '" + c.name + "' is not a column name");
    }
    auto it = std::find(input_columns.begin(), input_columns.end(), c.name);
    if (it == input_columns.end()) {
      std::string have;
      for (const auto& n : input_columns) have += (have.empty() ? "" : ", ") + n;
      return sink_error(options_.where + ": column '" + c.name +
                        "' is not a field of the records reaching the store (they have: " + have +
                        ")");
    }
    c.field = static_cast<std::size_t>(it - input_columns.begin());
    columns_.push_back(std::move(c));
  }
  auto index_of = [&](const std::string& name) -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i].name == name) return i;
    }
    return std::nullopt;
  };
  if (!options_.dedup_key.empty()) {
    auto key = index_of(options_.dedup_key);
    auto pos = index_of(options_.position_column);
    if (!key) return sink_error(options_.where + ": dedup_key '" + options_.dedup_key +
                                "' is not one of the table's columns");
    if (!pos) return sink_error(options_.where + ": de-duplication needs the column '" +
                                options_.position_column +
                                "' holding each record's position (set position_column)");
    key_column_ = *key;
    position_column_ = *pos;
  }

  // The file: refuse a missing or unwritable directory with a message that says which.
  const fs::path path(options_.path);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return sink_error("store database " + options_.path + ": directory '" + dir.string() +
                      "' does not exist: create it or set store.path elsewhere");
  }
  if (!fs::exists(path, ec) && ::access(dir.c_str(), W_OK) != 0) {
    return sink_error("store database " + options_.path + ": directory '" + dir.string() +
                      "' is not writable");
  }
  // One thread uses the connection: without SQLite's per-connection mutexes every insert is
  // about a fifth cheaper.
  if (sqlite3_open_v2(options_.path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return db_error("cannot open");
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL with synchronous=NORMAL: a commit survives any process kill (the fault model); only an
  // OS crash can lose the last transactions, which the positions table then also loses.
  if (auto st = exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=16384;");
      !st) {
    return st.error();
  }

  // What is in the file already?
  auto table_exists = [&](const std::string& name) -> Result<bool> {
    auto stmt = prepare("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?");
    if (!stmt) return stmt.error();
    sqlite3_bind_text(*stmt, 1, name.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(*stmt);
    sqlite3_finalize(*stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error("cannot read its schema");
    return rc == SQLITE_ROW;
  };
  auto has_progress = table_exists("millrace_progress");
  if (!has_progress) return has_progress.error();
  SinkProgress progress;
  if (*has_progress) {
    auto stmt = prepare("SELECT fingerprint, committed, total, complete FROM millrace_progress WHERE id=1");
    if (!stmt) return stmt.error();
    if (sqlite3_step(*stmt) != SQLITE_ROW) {
      sqlite3_finalize(*stmt);
      return db_error("its millrace_progress table is empty");
    }
    const std::string found = reinterpret_cast<const char*>(sqlite3_column_text(*stmt, 0));
    progress.committed = reinterpret_cast<const char*>(sqlite3_column_text(*stmt, 1));
    progress.total = static_cast<std::uint64_t>(sqlite3_column_int64(*stmt, 2));
    progress.complete = sqlite3_column_int(*stmt, 3) != 0;
    sqlite3_finalize(*stmt);
    if (found != options_.fingerprint) {
      return sink_error("store database " + options_.path +
                        " holds (part of) a run over a different input or config (fingerprint " +
                        found + ", this run " + options_.fingerprint +
                        "): set store.path to a new file, or delete this one to start over");
    }
  } else {
    for (const std::string& t : {options_.table, options_.reject_table}) {
      auto exists = table_exists(t);
      if (!exists) return exists.error();
      if (*exists) {
        return sink_error("store database " + options_.path + " already has a table '" + t +
                          "' not written by millrace: set store.path to a new file");
      }
    }
    std::string schema = "BEGIN;";
    schema += "CREATE TABLE " + options_.table + "(" + options_.columns + ");";
    schema += "CREATE TABLE " + options_.reject_table + "(record_no INTEGER PRIMARY KEY, reason TEXT);";
    if (!options_.dedup_key.empty() && !key_is_unique_) {
      schema += "CREATE UNIQUE INDEX IF NOT EXISTS millrace_dedup_" + options_.table + " ON " +
                options_.table + "(" + options_.dedup_key + ");";
    }
    schema +=
        "CREATE TABLE millrace_progress(id INTEGER PRIMARY KEY CHECK (id = 1), fingerprint TEXT "
        "NOT NULL, committed TEXT NOT NULL, total INTEGER NOT NULL, complete INTEGER NOT NULL);";
    schema += "INSERT INTO millrace_progress VALUES(1, '" + options_.fingerprint + "', '', 0, 0);";
    schema += "COMMIT;";
    if (auto st = exec(schema); !st) return st.error();
  }

  // Totals as stored.
  {
    auto stmt = prepare("SELECT count(*) FROM " + options_.table);
    if (!stmt) return stmt.error();
    if (sqlite3_step(*stmt) == SQLITE_ROW) totals_.rows = static_cast<std::uint64_t>(sqlite3_column_int64(*stmt, 0));
    sqlite3_finalize(*stmt);
    auto reasons = prepare("SELECT reason, count(*) FROM " + options_.reject_table +
                           " GROUP BY reason ORDER BY reason");
    if (!reasons) return reasons.error();
    while (sqlite3_step(*reasons) == SQLITE_ROW) {
      totals_.rejects.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(*reasons, 0)),
                                   static_cast<std::uint64_t>(sqlite3_column_int64(*reasons, 1)));
    }
    sqlite3_finalize(*reasons);
  }

  // Statements of the hot path.
  std::string names, marks, sets;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    names += (i ? "," : "") + columns_[i].name;
    marks += i ? ",?" : "?";
    sets += (i ? "," : "") + columns_[i].name + "=?";
  }
  std::string insert = "INSERT INTO " + options_.table + "(" + names + ") VALUES(" + marks + ")";
  if (!options_.dedup_key.empty()) insert += " ON CONFLICT(" + options_.dedup_key + ") DO NOTHING";
  auto s1 = prepare(insert);
  if (!s1) return s1.error();
  insert_ = *s1;
  auto s2 = prepare("INSERT INTO " + options_.reject_table + "(record_no, reason) VALUES(?,?)");
  if (!s2) return s2.error();
  insert_reject_ = *s2;
  if (!options_.dedup_key.empty()) {
    auto s3 = prepare("SELECT " + options_.position_column + " FROM " + options_.table + " WHERE " +
                      options_.dedup_key + "=?");
    if (!s3) return s3.error();
    find_key_ = *s3;
    auto s4 = prepare("UPDATE " + options_.table + " SET " + sets + " WHERE " +
                      options_.dedup_key + "=?");
    if (!s4) return s4.error();
    replace_row_ = *s4;
  }
  auto s5 = prepare("UPDATE millrace_progress SET committed=?, total=?, complete=? WHERE id=1");
  if (!s5) return s5.error();
  save_progress_ = *s5;
  return progress;
}

Status SqliteSink::begin_if_needed() {
  if (in_transaction_) return ok_status();
  if (auto st = exec("BEGIN"); !st) return st;
  in_transaction_ = true;
  return ok_status();
}

Status SqliteSink::bind_row(sqlite3_stmt* stmt, const Record& record, int first_index) {
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    const int index = first_index + static_cast<int>(i);
    if (c.field >= record.fields.size()) {
      return sink_error("record " + std::to_string(record.seq) + " has " +
                        std::to_string(record.fields.size()) + " fields, column '" + c.name +
                        "' needs field " + std::to_string(c.field + 1));
    }
    const std::string& v = record.fields[c.field];
    if (c.integer) {
      std::int64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec == std::errc() && p == v.data() + v.size() && !v.empty()) {
        sqlite3_bind_int64(stmt, index, n);
        continue;
      }
      if (v.empty()) {
        sqlite3_bind_null(stmt, index);
        continue;
      }
    }
    sqlite3_bind_text(stmt, index, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  return ok_status();
}

void SqliteSink::bind_key(sqlite3_stmt* stmt, int index, const std::string& key) {
  if (columns_[key_column_].integer) {
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), n);
    if (ec == std::errc() && p == key.data() + key.size() && !key.empty()) {
      sqlite3_bind_int64(stmt, index, n);
      return;
    }
  }
  sqlite3_bind_text(stmt, index, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
}

Status SqliteSink::insert_reject(std::uint64_t seq, const std::string& reason) {
  sqlite3_bind_int64(insert_reject_, 1, static_cast<sqlite3_int64>(seq));
  sqlite3_bind_text(insert_reject_, 2, reason.data(), static_cast<int>(reason.size()),
                    SQLITE_STATIC);
  const int rc = sqlite3_step(insert_reject_);
  sqlite3_reset(insert_reject_);
  if (rc != SQLITE_DONE) return db_error("cannot store the reject of record " + std::to_string(seq));
  pending_rejects_[reason]++;
  return ok_status();
}

Status SqliteSink::write_data(const Record& record) {
  if (auto st = bind_row(insert_, record, 1); !st) return st;
  const int rc = sqlite3_step(insert_);
  sqlite3_reset(insert_);
  if (rc != SQLITE_DONE) return db_error("cannot store record " + std::to_string(record.seq));
  if (options_.dedup_key.empty() || sqlite3_changes(db_) == 1) {
    pending_rows_++;
    return ok_status();
  }
  // The key is taken. The record with the lower position keeps the row.
  const std::string& key = record.fields[columns_[key_column_].field];
  bind_key(find_key_, 1, key);
  std::uint64_t holder = 0;
  if (sqlite3_step(find_key_) == SQLITE_ROW) {
    holder = static_cast<std::uint64_t>(sqlite3_column_int64(find_key_, 0));
  }
  sqlite3_reset(find_key_);
  if (holder == 0) return db_error("key '" + key + "' conflicts but cannot be found");
  if (holder < record.seq) return insert_reject(record.seq, options_.dedup_reason);
  // This record came first in the input: it takes the row, the holder becomes the duplicate.
  if (auto st = bind_row(replace_row_, record, 1); !st) return st;
  bind_key(replace_row_, static_cast<int>(columns_.size()) + 1, key);
  const int urc = sqlite3_step(replace_row_);
  sqlite3_reset(replace_row_);
  if (urc != SQLITE_DONE) return db_error("cannot replace the row of key '" + key + "'");
  return insert_reject(holder, options_.dedup_reason);
}

Status SqliteSink::write(const Record& record) {
  if (auto st = begin_if_needed(); !st) return st;
  if (record.kind == RecordKind::kReject) return insert_reject(record.seq, record.reason);
  return write_data(record);
}

Status SqliteSink::commit(const SinkProgress& progress) {
  if (auto st = begin_if_needed(); !st) return st;
  sqlite3_bind_text(save_progress_, 1, progress.committed.data(),
                    static_cast<int>(progress.committed.size()), SQLITE_STATIC);
  sqlite3_bind_int64(save_progress_, 2, static_cast<sqlite3_int64>(progress.total));
  sqlite3_bind_int(save_progress_, 3, progress.complete ? 1 : 0);
  const int rc = sqlite3_step(save_progress_);
  sqlite3_reset(save_progress_);
  if (rc != SQLITE_DONE) return db_error("cannot save the positions stored");
  if (auto st = exec("COMMIT"); !st) return st;
  in_transaction_ = false;

  totals_.rows = static_cast<std::uint64_t>(static_cast<std::int64_t>(totals_.rows) + pending_rows_);
  pending_rows_ = 0;
  for (const auto& [reason, n] : pending_rejects_) {
    auto it = std::find_if(totals_.rejects.begin(), totals_.rejects.end(),
                           [&](const auto& p) { return p.first == reason; });
    if (it == totals_.rejects.end()) {
      totals_.rejects.emplace_back(reason, n);
    } else {
      it->second += n;
    }
  }
  pending_rejects_.clear();
  return ok_status();
}

SinkTotals SqliteSink::totals() const { return totals_; }

}  // namespace millrace::stages
