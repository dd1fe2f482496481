#include "stages/jsonl_reader.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace millrace::stages {
namespace {

constexpr std::size_t kNoColumn = std::numeric_limits<std::size_t>::max();

using Json = nlohmann::json;

// Streams one line's events and keeps the top-level values of the configured keys, without
// building a document: faster, and numbers keep the text they were written with.
class FieldCollector {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  FieldCollector(const std::vector<std::string>& columns, std::vector<std::string>& fields)
      : columns_(columns), fields_(fields) {}

  bool null() { return scalar(std::string_view{}); }
  bool boolean(bool v) { return scalar(v ? std::string_view("true") : std::string_view("false")); }
  bool number_integer(number_integer_t v) { return integer(v); }
  bool number_unsigned(number_unsigned_t v) { return integer(v); }
  bool number_float(number_float_t /*value*/, const string_t& text) { return scalar(text); }
  bool string(string_t& v) { return scalar(v); }
  bool binary(binary_t& /*value*/) { return false; }  // not produced by the JSON parser

  bool start_object(std::size_t /*size*/) { return open_container(true); }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t /*size*/) { return open_container(false); }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(string_t& k) {
    if (depth_ == 1) {
      const auto it = std::find(columns_.begin(), columns_.end(), k);
      current_ = it == columns_.end() ? kNoColumn : static_cast<std::size_t>(it - columns_.begin());
    }
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& e) {
    error_ = e.what();
    return false;
  }

  [[nodiscard]] bool not_object() const { return not_object_; }
  [[nodiscard]] bool has_nested() const { return has_nested_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  bool open_container(bool is_object) {
    if (depth_ == 0 && !is_object) {
      not_object_ = true;
      return false;
    }
    if (depth_ == 1 && current_ != kNoColumn) has_nested_ = true;
    ++depth_;
    return true;
  }

  template <typename Int>
  bool integer(Int v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return scalar(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  }

  bool scalar(std::string_view text) {
    if (depth_ == 0) {
      not_object_ = true;
      return false;
    }
    if (depth_ == 1 && current_ != kNoColumn) fields_[current_].assign(text);
    return true;
  }

  const std::vector<std::string>& columns_;
  std::vector<std::string>& fields_;
  int depth_ = 0;
  std::size_t current_ = kNoColumn;
  bool not_object_ = false;
  bool has_nested_ = false;
  std::string error_;
};

}  // namespace

JsonlReader::JsonlReader(InputSource source, JsonlOptions options)
    : in_(std::move(source), options.buffer_bytes), options_(std::move(options)) {}

Result<JsonlReader> JsonlReader::open(const std::string& path, JsonlOptions options) {
  auto source = InputSource::open_file(path);
  if (!source) return source.error();
  return JsonlReader(std::move(source).value(), std::move(options));
}

JsonlReader JsonlReader::from_source(InputSource source, JsonlOptions options) {
  return JsonlReader(std::move(source), std::move(options));
}

JsonlReader JsonlReader::from_memory(std::string_view data, std::string name,
                                     JsonlOptions options) {
  return JsonlReader(InputSource::from_memory(data, std::move(name)), std::move(options));
}

Result<bool> JsonlReader::next(std::vector<std::string>& fields) {
  bad_json_ = false;
  oversize_ = false;
  if (in_.bom_pending()) {
    if (auto st = in_.skip_bom(); !st) return st.error();
  }
  if (in_.pos == in_.end) {
    auto more = in_.refill();
    if (!more) return more.error();
    if (!*more) {
      byte_offset_ = in_.offset_of(in_.pos);  // past a byte order mark and nothing else
      return false;
    }
  }

  line_.clear();
  std::size_t line_bytes = 0;
  bool discard = false;
  for (;;) {
    if (in_.pos == in_.end) {
      auto more = in_.refill();
      if (!more) return more.error();
      if (!*more) break;
    }
    const char* p = in_.data() + in_.pos;
    const auto avail = in_.end - in_.pos;
    const auto* lf = static_cast<const char*>(std::memchr(p, '\n', avail));
    const std::size_t take = lf != nullptr ? static_cast<std::size_t>(lf - p) : avail;
    line_bytes += take;
    if (line_bytes > options_.max_record_bytes && !discard) {
      discard = true;
      line_.clear();
      line_.shrink_to_fit();
    }
    if (!discard) line_.append(p, take);
    in_.pos += take;
    if (lf != nullptr) {
      ++in_.pos;
      break;
    }
  }
  ++records_read_;
  byte_offset_ = in_.offset_of(in_.pos);

  if (discard) {
    oversize_ = true;
    fields.clear();
    return true;
  }
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  parse_line(fields);
  return true;
}

void JsonlReader::parse_line(std::vector<std::string>& fields) {
  const auto& columns = options_.columns;
  fields.resize(columns.size());
  for (auto& f : fields) f.clear();
  try {
    FieldCollector collector(columns, fields);
    const bool ok = Json::sax_parse(line_.data(), line_.data() + line_.size(), &collector);
    if (!ok || collector.not_object()) {
      bad_json_ = true;
      json_error_ =
          collector.not_object() ? std::string("the line is not a JSON object") : collector.error();
      fields.clear();
      return;
    }
    if (collector.has_nested()) {
      // Rare: a configured key holds an object or array. Take its compact text from a document.
      const Json doc = Json::parse(line_);
      for (std::size_t i = 0; i < columns.size(); ++i) {
        const auto it = doc.find(columns[i]);
        if (it != doc.end() && it->is_structured()) fields[i] = it->dump();
      }
    }
  } catch (const std::exception& e) {
    bad_json_ = true;
    json_error_ = e.what();
    fields.clear();
  }
}

Status JsonlReader::seek(std::uint64_t byte_offset, std::uint64_t records_before) {
  if (auto st = in_.seek(byte_offset); !st) return st;
  bad_json_ = false;
  oversize_ = false;
  records_read_ = records_before;
  byte_offset_ = byte_offset;
  return ok_status();
}

}  // namespace millrace::stages
