// millrace-load: the built-in source. Reads CSV or JSON Lines of any size with bounded memory,
// or generates seeded synthetic records; paces to a rate limit when one is set.
#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>

#include "ipc/ini.hpp"
#include "stages/builtin_config.hpp"
#include "stages/csv_reader.hpp"
#include "stages/jsonl_reader.hpp"
#include "stages/runtime.hpp"
#include "stages/synthetic.hpp"

namespace millrace::stages {
namespace {

Error load_error(std::string msg) { return Error{"load", 1, std::move(msg), 0}; }

// `text` as a non-negative integer, `fallback` when empty, nullopt when not a number.
std::optional<std::uint64_t> u64_or(const std::string& text, std::uint64_t fallback) {
  if (text.empty()) return fallback;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class LoadSource final : public Source {
 public:
  Result<std::vector<std::string>> open(const StageContext& ctx) override {
    columns_ = ipc::split_list(ctx.get("columns"));
    if (columns_.empty()) return load_error(ctx.where("columns") + ": list the field names");
    path_ = ctx.get("path");
    if (auto r = u64_or(ctx.get("rate_limit"), 0)) rate_ = static_cast<double>(*r);
    if (path_.empty()) {
      std::string source = ctx.get("source", "synthetic");
      if (source != "synthetic") {
        return load_error(ctx.where("source") + ": source '" + source +
                          "' reads a file: set `path` to it");
      }
      auto rows = u64_or(ctx.get("synthetic_rows"), 100000);
      auto seed = u64_or(ctx.get("synthetic_seed"), 42);
      double dirt = std::strtod(ctx.get("dirt", "0.08").c_str(), nullptr);
      if (!rows || !seed) return load_error(ctx.where("synthetic_rows") + ": not a number");
      rows_ = *rows;
      auto synth = Synthetic::parse(config_lines(ctx.section, "gen"), dirt, *seed, columns_);
      if (!synth) return synth.error();
      synthetic_.emplace(std::move(*synth));
      return columns_;
    }
    std::string format = ctx.get("format");
    if (format.empty()) format = ends_with(path_, ".jsonl") || ends_with(path_, ".ndjson") ? "jsonl" : "csv";
    header_ = ctx.get("header", "true") != "false";
    if (format == "jsonl") {
      jsonl_ = true;
    } else if (format != "csv") {
      return load_error(ctx.where("format") + ": format '" + format + "' is not csv or jsonl");
    }
    if (auto st = reopen(); !st) return st.error();
    return columns_;
  }

  [[nodiscard]] std::optional<std::uint64_t> position() const override {
    if (synthetic_) return std::nullopt;
    return jsonl_ ? jsonl_reader_->byte_offset() : csv_reader_->byte_offset();
  }

  Status seek(std::uint64_t seq, std::optional<Checkpoint> from) override {
    if (synthetic_) {
      next_seq_ = seq;
      return ok_status();
    }
    if (auto st = reopen(); !st) return st;
    next_seq_ = 1;
    if (from && from->seq <= seq && from->seq > 1) {
      // Resume at the saved byte offset: no need to read the file again from its start.
      const std::uint64_t before = from->seq - 1 + (header_ && !jsonl_ ? 1 : 0);
      auto st = jsonl_ ? jsonl_reader_->seek(from->position, before)
                       : csv_reader_->seek(from->position, before);
      if (!st) return st;
      next_seq_ = from->seq;
    }
    Record scratch;
    while (next_seq_ < seq) {
      auto more = next(scratch);
      if (!more) return more.error();
      if (!*more) break;
    }
    return ok_status();
  }

  Result<bool> next(Record& out) override {
    if (synthetic_) {
      if (next_seq_ > rows_) return false;
      synthetic_->generate(next_seq_++, out.fields);
      out.kind = RecordKind::kData;
      return true;
    }
    auto more = jsonl_ ? jsonl_reader_->next(out.fields) : csv_reader_->next(out.fields);
    if (!more) return more.error();
    if (!*more) return false;
    ++next_seq_;
    const bool oversize = jsonl_ ? jsonl_reader_->oversize() : csv_reader_->oversize();
    if (oversize) return reject(out, "record_too_large");
    if (jsonl_ && jsonl_reader_->bad_json()) return reject(out, "bad_json");
    for (const std::string& f : out.fields) {
      if (!valid_utf8(f)) return reject(out, "invalid_utf8");
    }
    out.kind = RecordKind::kData;
    return true;
  }

  [[nodiscard]] double rate_limit() const override { return rate_; }

 private:
  static bool reject(Record& out, const char* reason) {
    out.kind = RecordKind::kReject;
    out.reason = reason;
    out.fields.clear();
    return true;
  }

  Status reopen() {
    if (jsonl_) {
      JsonlOptions o;
      o.columns = columns_;
      auto r = JsonlReader::open(path_, o);
      if (!r) return r.error();
      jsonl_reader_ = std::make_unique<JsonlReader>(std::move(*r));
      return ok_status();
    }
    auto r = CsvReader::open(path_);
    if (!r) return r.error();
    csv_reader_ = std::make_unique<CsvReader>(std::move(*r));
    if (header_) {
      std::vector<std::string> found;
      auto more = csv_reader_->next(found);
      if (!more) return more.error();
      if (*more) {
        if (auto st = check_header(found, columns_, path_); !st) return st;
      }
    }
    return ok_status();
  }

  std::vector<std::string> columns_;
  std::string path_;
  bool header_ = true;
  bool jsonl_ = false;
  double rate_ = 0;
  std::uint64_t rows_ = 0;
  std::uint64_t next_seq_ = 1;
  std::optional<Synthetic> synthetic_;
  std::unique_ptr<CsvReader> csv_reader_;
  std::unique_ptr<JsonlReader> jsonl_reader_;
};

}  // namespace
}  // namespace millrace::stages

int main() {
  millrace::stages::LoadSource source;
  return millrace::stages::run_source(source);
}
