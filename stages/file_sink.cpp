#include "stages/file_sink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ipc/ini.hpp"
#include "ipc/posix_call.hpp"
#include "stages/csv_reader.hpp"

namespace millrace::stages {
namespace {

Error sink_error(std::string msg) { return Error{"store", 1, std::move(msg), 0}; }

bool is_integer(std::string_view v) {
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  return !v.empty() && ec == std::errc() && p == v.data() + v.size();
}

std::string json_string(std::string_view s) {
  // Invalid UTF-8 is replaced rather than refused: a sink must not fail on a field.
  return nlohmann::json(std::string(s)).dump(-1, ' ', false,
                                             nlohmann::json::error_handler_t::replace);
}

}  // namespace

Result<FileSinkOptions> file_sink_options(const StageContext& ctx, FileSinkOptions::Format format) {
  FileSinkOptions o;
  o.format = format;
  o.path = ctx.get("path");
  const char* ext = format == FileSinkOptions::Format::kCsv ? ".rejects.csv" : ".rejects.jsonl";
  o.reject_path = ctx.get("reject_path", o.path + ext);
  for (const std::string& c : ipc::split_list(ctx.get("columns"))) o.columns.push_back(c);
  o.fingerprint = ctx.handover.fingerprint;
  o.where = ctx.where("columns");
  if (o.path.empty()) return sink_error(ctx.where("path") + ": the store needs a file path");
  if (o.columns.empty()) o.columns = ctx.input_columns;  // every field, as text
  if (!ctx.get("dedup_key").empty()) {
    return sink_error(ctx.where("dedup_key") + ": de-duplication needs kind = sqlite");
  }
  return o;
}

FileSink::FileSink(FileSinkOptions options) : options_(std::move(options)) {}

FileSink::~FileSink() {
  if (rows_fd_ >= 0) ::close(rows_fd_);
  if (rejects_fd_ >= 0) ::close(rejects_fd_);
}

Result<SinkProgress> FileSink::open(const StageContext& ctx) {
  return open_with_columns(ctx.input_columns);
}

Result<SinkProgress> FileSink::open_with_columns(const std::vector<std::string>& input_columns) {
  namespace fs = std::filesystem;
  for (const std::string& def : options_.columns) {
    Column c;
    const std::size_t space = def.find_first_of(" \t");
    c.name = def.substr(0, space);
    std::string type = space == std::string::npos ? "" : def.substr(space);
    for (char& ch : type) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    c.integer = type.find("INT") != std::string::npos;
    auto it = std::find(input_columns.begin(), input_columns.end(), c.name);
    if (it == input_columns.end()) {
      return sink_error(options_.where + ": column '" + c.name +
                        "' is not a field of the records reaching the store");
    }
    c.field = static_cast<std::size_t>(it - input_columns.begin());
    columns_.push_back(std::move(c));
  }
  const fs::path path(options_.path);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return sink_error("store file " + options_.path + ": directory '" + dir.string() +
                      "' does not exist: create it or set store.path elsewhere");
  }

  // The progress file says what the two files hold; anything after those lengths was written
  // by a store killed before its commit, and goes.
  const std::string progress_path = options_.path + ".progress";
  SinkProgress progress;
  bool resumed = false;
  if (std::ifstream in(progress_path); in) {
    std::map<std::string, std::string> kv;
    std::string line;
    while (std::getline(in, line)) {
      const auto space = line.find(' ');
      if (space != std::string::npos) kv[line.substr(0, space)] = line.substr(space + 1);
    }
    if (kv["fingerprint"] != options_.fingerprint) {
      return sink_error("store file " + options_.path +
                        " holds (part of) a run over a different input or config (fingerprint " +
                        kv["fingerprint"] + ", this run " + options_.fingerprint +
                        "): set store.path to a new file, or delete it and " + progress_path);
    }
    progress.committed = kv["committed"];
    progress.total = std::strtoull(kv["total"].c_str(), nullptr, 10);
    progress.complete = kv["complete"] == "1";
    rows_length_ = std::strtoull(kv["rows_bytes"].c_str(), nullptr, 10);
    rejects_length_ = std::strtoull(kv["rejects_bytes"].c_str(), nullptr, 10);
    totals_.rows = std::strtoull(kv["rows"].c_str(), nullptr, 10);
    std::istringstream reasons(kv["rejects"]);
    std::string item;
    while (std::getline(reasons, item, ',')) {
      const auto eq = item.rfind('=');
      if (eq != std::string::npos) {
        totals_.rejects.emplace_back(item.substr(0, eq),
                                     std::strtoull(item.c_str() + eq + 1, nullptr, 10));
      }
    }
    resumed = true;
  } else if (fs::exists(path, ec) && fs::file_size(path, ec) > 0) {
    return sink_error("store file " + options_.path +
                      " already exists and was not written by millrace: set store.path to a new file");
  }

  auto open_file = [&](const std::string& p, std::uint64_t keep) -> Result<int> {
    auto fd = posix_call("open", p, [&] {
      return ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    });
    if (!fd) return fd.error();
    if (::ftruncate(*fd, static_cast<off_t>(keep)) != 0 ||
        ::lseek(*fd, static_cast<off_t>(keep), SEEK_SET) < 0) {
      const int err = errno;
      ::close(*fd);
      return sys_error("store", "ftruncate", p, err);
    }
    return *fd;
  };
  auto rows = open_file(options_.path, rows_length_);
  if (!rows) return rows.error();
  rows_fd_ = *rows;
  auto rejects = open_file(options_.reject_path, rejects_length_);
  if (!rejects) return rejects.error();
  rejects_fd_ = *rejects;

  if (!resumed) {
    if (options_.format == FileSinkOptions::Format::kCsv) {
      for (std::size_t i = 0; i < columns_.size(); ++i) {
        if (i) rows_buffer_ += ',';
        append_csv_field(rows_buffer_, columns_[i].name);
      }
      rows_buffer_ += '\n';
      rejects_buffer_ += "record_no,reason\n";
    }
    if (auto st = commit(progress); !st) return st.error();
  }
  return progress;
}

Status FileSink::write(const Record& record) {
  const bool csv = options_.format == FileSinkOptions::Format::kCsv;
  if (record.kind == RecordKind::kReject) {
    if (csv) {
      rejects_buffer_ += std::to_string(record.seq);
      rejects_buffer_ += ',';
      append_csv_field(rejects_buffer_, record.reason);
      rejects_buffer_ += '\n';
    } else {
      rejects_buffer_ += "{\"record_no\":" + std::to_string(record.seq) +
                         ",\"reason\":" + json_string(record.reason) + "}\n";
    }
    pending_rejects_[record.reason]++;
    return ok_status();
  }
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    const Column& c = columns_[i];
    if (c.field >= record.fields.size()) {
      return sink_error("record " + std::to_string(record.seq) + " has no field for column '" +
                        c.name + "'");
    }
    const std::string& v = record.fields[c.field];
    if (csv) {
      if (i) rows_buffer_ += ',';
      append_csv_field(rows_buffer_, v);
    } else {
      rows_buffer_ += i ? ",\"" : "{\"";
      rows_buffer_ += c.name;
      rows_buffer_ += "\":";
      rows_buffer_ += c.integer && is_integer(v) ? v : json_string(v);
    }
  }
  rows_buffer_ += csv ? "\n" : "}\n";
  pending_rows_++;
  return ok_status();
}

Status FileSink::append(int fd, const std::string& path, std::string& buffer, std::uint64_t& length) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    const ssize_t n = ::write(fd, buffer.data() + done, buffer.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error("store", "write", path, errno);
    }
    done += static_cast<std::size_t>(n);
  }
  length += buffer.size();
  buffer.clear();
  return ok_status();
}

Status FileSink::commit(const SinkProgress& progress) {
  const std::uint64_t rows_before = rows_length_;
  const std::uint64_t rejects_before = rejects_length_;
  if (auto st = append(rows_fd_, options_.path, rows_buffer_, rows_length_); !st) return st;
  if (auto st = append(rejects_fd_, options_.reject_path, rejects_buffer_, rejects_length_); !st) {
    return st;
  }
  totals_.rows += pending_rows_;
  for (const auto& [reason, n] : pending_rejects_) {
    auto it = std::find_if(totals_.rejects.begin(), totals_.rejects.end(),
                           [&](const auto& p) { return p.first == reason; });
    if (it == totals_.rejects.end()) {
      totals_.rejects.emplace_back(reason, n);
    } else {
      it->second += n;
    }
  }
  if (auto st = save_progress(progress); !st) {
    // Not committed: the next open truncates back to these lengths.
    rows_length_ = rows_before;
    rejects_length_ = rejects_before;
    return st;
  }
  pending_rows_ = 0;
  pending_rejects_.clear();
  return ok_status();
}

Status FileSink::save_progress(const SinkProgress& progress) {
  std::string text = "fingerprint " + options_.fingerprint + "\ncommitted " + progress.committed +
                     "\ntotal " + std::to_string(progress.total) + "\ncomplete " +
                     (progress.complete ? "1" : "0") + "\nrows_bytes " +
                     std::to_string(rows_length_) + "\nrejects_bytes " +
                     std::to_string(rejects_length_) + "\nrows " + std::to_string(totals_.rows) +
                     "\nrejects ";
  for (std::size_t i = 0; i < totals_.rejects.size(); ++i) {
    if (i) text += ',';
    text += totals_.rejects[i].first + "=" + std::to_string(totals_.rejects[i].second);
  }
  text += "\n";
  const std::string path = options_.path + ".progress";
  const std::string tmp = path + ".tmp";
  auto fd = posix_call("open", tmp, [&] {
    return ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  });
  if (!fd) return fd.error();
  std::string buffer = text;
  std::uint64_t ignored = 0;
  Status st = append(*fd, tmp, buffer, ignored);
  ::close(*fd);
  if (!st) return st;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("store", "rename", path, errno);
  return ok_status();
}

SinkTotals FileSink::totals() const { return totals_; }

}  // namespace millrace::stages
