// store_ceiling: the "store alone" ceiling of the orders benchmark. One process reads the final
// orders rows from a CSV file and inserts them into a new SQLite database the plain
// best-practice way: one prepared statement, 5000 rows per transaction, WAL,
// synchronous=NORMAL, integers bound as int64, and the store stage's own settings (no
// connection mutex, a 16 MiB page cache, checkpoints every 16384 pages). No pipeline, no
// other process: what SQLite alone can store on this machine, to compare millrace's store
// stage with.
//
//   store_ceiling IN.csv OUT.db
//
// IN.csv: the rows of the final `orders` table, either with a header naming its columns (in
// any order), as `sqlite3 -header -csv DB 'select * from orders'` writes it, or without one,
// in the table's column order, as bench/run_all exports it. Values are bound like the store
// stage binds them: an INTEGER column takes an int64, or NULL when the field is empty (or the
// text when it is not a number); a TEXT column takes the text. OUT.db must not exist yet.
//
// Prints the rows inserted and rows/s (the whole run, reading included), and how the time
// split between reading the CSV and SQLite. Exit status: 0 done, 1 failed, 2 bad usage.
#include <sqlite3.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "ipc/result.hpp"
#include "stages/csv_reader.hpp"

namespace {

using millrace::Error;
using millrace::ok_status;
using millrace::Result;
using millrace::Status;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kRowsPerTransaction = 5000;

struct Column {
  std::string_view name;
  bool integer;
};

// The final `orders` table, in its column order.
constexpr std::array<Column, 15> kColumns = {{
    {"order_id", true},
    {"record_no", true},
    {"ts", true},
    {"day", false},
    {"hour", true},
    {"customer", false},
    {"country", false},
    {"currency", false},
    {"qty", true},
    {"amount_cents", true},
    {"amount_usd_cents", true},
    {"total_usd_cents", true},
    {"tier", false},
    {"sku", false},
    {"note", false},
}};

constexpr const char* kSchema =
    "CREATE TABLE orders(order_id INTEGER PRIMARY KEY, record_no INTEGER, ts INTEGER, day TEXT, "
    "hour INTEGER, customer TEXT, country TEXT, currency TEXT, qty INTEGER, amount_cents "
    "INTEGER, amount_usd_cents INTEGER, total_usd_cents INTEGER, tier TEXT, sku TEXT, note "
    "TEXT)";

constexpr const char* kInsert =
    "INSERT INTO orders VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

Error ceiling_error(std::string message) {
  return Error{"store_ceiling", 1, std::move(message), 0};
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// For each table column, the CSV field it comes from: by name when `first` is a header that
// names every column once, else the table's order (then `first` is a data row).
Result<std::optional<std::array<std::size_t, kColumns.size()>>> header_map(
    const std::vector<std::string>& first, const std::string& path) {
  std::array<std::size_t, kColumns.size()> map{};
  std::size_t named = 0;
  for (std::size_t c = 0; c < kColumns.size(); ++c) {
    for (std::size_t f = 0; f < first.size(); ++f) {
      if (trimmed(first[f]) == kColumns[c].name) {
        map[c] = f;
        ++named;
        break;
      }
    }
  }
  if (named == kColumns.size() && first.size() == kColumns.size()) return {map};
  if (named == 0) return {std::nullopt};
  std::string missing;
  for (std::size_t c = 0; c < kColumns.size(); ++c) {
    bool found = false;
    for (const std::string& f : first) found = found || trimmed(f) == kColumns[c].name;
    if (!found) missing += (missing.empty() ? "" : ", ") + std::string(kColumns[c].name);
  }
  return ceiling_error(
      path +
      " line 1: the header does not name the 15 columns of the orders "
      "table exactly" +
      (missing.empty() ? std::string(" (extra columns)") : "; missing: " + missing) +
      ". Export it with sqlite3 -header -csv DB 'select * from orders'");
}

// Owns the connection and the prepared insert.
class Store {
 public:
  static Result<Store> create(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      return ceiling_error(path +
                           " exists already: the ceiling inserts into a new database; "
                           "remove it (and its -wal and -shm files) first");
    }
    Store store(path);
    if (sqlite3_open_v2(path.c_str(), &store.db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      return store.error("cannot create it");
    }
    if (auto st = store.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                             "PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=16384;");
        !st) {
      return st.error();
    }
    if (auto st = store.exec(kSchema); !st) return st.error();
    if (sqlite3_prepare_v3(store.db_, kInsert, -1, SQLITE_PREPARE_PERSISTENT, &store.insert_,
                           nullptr) != SQLITE_OK) {
      return store.error("cannot prepare the insert");
    }
    return store;
  }

  Store(Store&& other) noexcept
      : path_(std::move(other.path_)),
        db_(std::exchange(other.db_, nullptr)),
        insert_(std::exchange(other.insert_, nullptr)) {}
  Store& operator=(Store&&) = delete;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store() {
    sqlite3_finalize(insert_);
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  Status exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      return ceiling_error(path_ + ": " + msg + " (in: " + std::string(sql).substr(0, 80) + ")");
    }
    return ok_status();
  }

  Status close() {
    sqlite3_finalize(std::exchange(insert_, nullptr));
    if (sqlite3_close(db_) != SQLITE_OK) return error("cannot close it");
    db_ = nullptr;
    return ok_status();
  }

  // Binds one row as the store stage does and inserts it.
  Status insert(const std::vector<std::string>& fields,
                const std::array<std::size_t, kColumns.size()>& map, std::uint64_t line) {
    for (std::size_t c = 0; c < kColumns.size(); ++c) {
      const std::string& v = fields[map[c]];
      const int index = static_cast<int>(c) + 1;
      if (kColumns[c].integer) {
        if (v.empty()) {
          sqlite3_bind_null(insert_, index);
          continue;
        }
        sqlite3_int64 n = 0;
        const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc() && p == v.data() + v.size()) {
          sqlite3_bind_int64(insert_, index, n);
          continue;
        }
      }
      sqlite3_bind_text(insert_, index, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    }
    const int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc != SQLITE_DONE) return error("cannot insert the row of record " + std::to_string(line));
    return ok_status();
  }

 private:
  explicit Store(std::string path) : path_(std::move(path)) {}

  Error error(const std::string& what) const {
    return ceiling_error(path_ + ": " + what + ": " +
                         (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
};

struct Totals {
  std::uint64_t rows = 0;
  double seconds = 0;
  double sqlite_seconds = 0;
};

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Result<Totals> run(const std::string& in_path, const std::string& out_path) {
  const auto start = Clock::now();
  Totals totals;
  auto reader = millrace::stages::CsvReader::open(in_path);
  if (!reader) return reader.error();
  auto store = Store::create(out_path);
  if (!store) return store.error();

  std::vector<std::string> fields;
  auto more = reader->next(fields);
  if (!more) return more.error();
  if (!*more) return ceiling_error(in_path + " is empty: nothing to insert");
  auto header = header_map(fields, in_path);
  if (!header) return header.error();
  std::array<std::size_t, kColumns.size()> map{};
  for (std::size_t c = 0; c < map.size(); ++c) map[c] = c;
  if (*header) {
    map = **header;
    more = reader->next(fields);
  }

  double sqlite_s = 0;
  auto timed = [&](auto&& step) {
    const auto t = Clock::now();
    Status st = step();
    sqlite_s += since(t);
    return st;
  };
  if (auto st = timed([&] { return store->exec("BEGIN"); }); !st) return st.error();
  std::size_t in_transaction = 0;
  for (; more && *more; more = reader->next(fields)) {
    const std::uint64_t line = reader->records_read();
    if (reader->oversize() || fields.size() != kColumns.size()) {
      return ceiling_error(in_path + " record " + std::to_string(line) + ": " +
                           std::to_string(fields.size()) + " fields, the orders table has " +
                           std::to_string(kColumns.size()) + " columns");
    }
    if (auto st = timed([&] { return store->insert(fields, map, line); }); !st) return st.error();
    ++totals.rows;
    if (++in_transaction == kRowsPerTransaction) {
      auto st = timed([&] {
        Status s = store->exec("COMMIT");
        return s ? store->exec("BEGIN") : s;
      });
      if (!st) return st.error();
      in_transaction = 0;
    }
  }
  if (!more) return more.error();
  if (auto st = timed([&] { return store->exec("COMMIT"); }); !st) return st.error();
  // Closing checkpoints the WAL into the database: part of storing.
  if (auto st = timed([&] { return store->close(); }); !st) return st.error();
  totals.seconds = since(start);
  totals.sqlite_seconds = sqlite_s;
  return totals;
}

}  // namespace

int main(int argc, char** argv) {
  std::string in_path;
  std::string out_path;
  CLI::App app{
      "store_ceiling: inserts the orders rows of a CSV file into a new SQLite database the "
      "plain best-practice way (one prepared statement, 5000 rows per transaction, WAL, "
      "synchronous=NORMAL) and prints rows/s: the store-alone ceiling."};
  app.add_option("IN", in_path, "the orders rows as CSV (with or without a header)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("OUT", out_path, "the database to create (must not exist)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  auto totals = run(in_path, out_path);
  if (!totals) {
    std::fprintf(stderr, "store_ceiling: %s\n", totals.error().message.c_str());
    return 1;
  }
  const double rate = totals->seconds > 0 ? static_cast<double>(totals->rows) / totals->seconds : 0;
  std::printf(
      "store_ceiling: %llu rows in %.3f s: %.0f rows/s (SQLite %.3f s, reading the CSV %.3f s)\n",
      static_cast<unsigned long long>(totals->rows), totals->seconds, rate, totals->sqlite_seconds,
      totals->seconds - totals->sqlite_seconds);
  return 0;
}
