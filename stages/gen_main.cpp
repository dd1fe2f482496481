// millrace-gen: writes seeded synthetic dirty records as CSV, with a header.
//
//   millrace-gen --rows N --seed S --out FILE [--gen-from CONFIG.ini] [--section load]
//                [--dirt P]
//
// With --gen-from, the `columns`, `gen` and `dirt` keys of the section (default [load]) define
// the records, exactly as the pipeline's synthetic source reads them; without it, a built-in
// demo layout of the same shape is used.
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/posix_call.hpp"
#include "stages/config_line.hpp"
#include "stages/csv_reader.hpp"
#include "stages/synthetic.hpp"

namespace {

using millrace::Error;
using millrace::Result;
using millrace::Status;
using millrace::stages::ConfigLine;
using millrace::stages::Synthetic;

constexpr std::string_view kUsage =
    "usage: millrace-gen --rows N --seed S --out FILE [--gen-from CONFIG.ini] [--section NAME] "
    "[--dirt P]\n";

struct GenSpec {
  std::vector<std::string> columns;
  std::vector<ConfigLine> gen_lines;
  double dirt = 0.08;
};

GenSpec builtin_spec() {
  GenSpec spec;
  spec.columns = {"id", "ts", "name", "region", "value", "unit", "count", "code", "note"};
  const char* lines[] = {"id : serial dup=0.03",
                         "ts : timestamp 2019..2025",
                         "name : word",
                         "region : choice US DE GB FR JP CN",
                         "value : decimal 0..5000.00",
                         "unit : choice USD EUR GBP JPY CNY",
                         "count : int 1..20",
                         "code : pattern SKU-#####",
                         "note : text"};
  for (const char* l : lines) spec.gen_lines.push_back({l, "built-in layout"});
  return spec;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// A minimal scan of one INI section: enough for the three keys this tool needs.
Result<GenSpec> read_spec(const std::string& path, const std::string& section) {
  std::ifstream in(path);
  if (!in) {
    return Error{"gen", 1, "cannot read config '" + path + "': check the path", 0};
  }
  GenSpec spec;
  bool in_section = false;
  bool has_columns = false;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string_view l = trim(line);
    if (l.empty() || l.front() == ';' || l.front() == '#') continue;
    if (l.front() == '[') {
      in_section = l == "[" + section + "]";
      continue;
    }
    if (!in_section) continue;
    const auto eq = l.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = trim(l.substr(0, eq));
    std::string_view value = trim(l.substr(eq + 1));
    // An inline comment starts at a ';' after white space.
    for (std::size_t i = 1; i < value.size(); ++i) {
      if (value[i] == ';' && (value[i - 1] == ' ' || value[i - 1] == '\t')) {
        value = trim(value.substr(0, i));
        break;
      }
    }
    const std::string where = path + ":" + std::to_string(number) + ", key " + std::string(key);
    if (key == "gen") {
      spec.gen_lines.push_back({std::string(value), where});
    } else if (key == "dirt") {
      char* end = nullptr;
      const std::string text(value);
      spec.dirt = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0') {
        return Error{"gen", 1, where + ": dirt must be a number 0..1, got '" + text + "'", 0};
      }
    } else if (key == "columns") {
      has_columns = true;
      spec.columns.clear();
      std::string_view rest = value;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        spec.columns.emplace_back(trim(rest.substr(0, comma)));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
    }
  }
  if (!has_columns || spec.gen_lines.empty()) {
    return Error{"gen", 1,
                 path + ": section [" + section + "] needs a 'columns' key and 'gen' lines", 0};
  }
  return spec;
}

Status write_all(int fd, const std::string& path, std::string_view data) {
  while (!data.empty()) {
    auto n =
        millrace::posix_call("write", path, [&] { return ::write(fd, data.data(), data.size()); });
    if (!n) return n.error();
    data.remove_prefix(static_cast<std::size_t>(*n));
  }
  return millrace::ok_status();
}

template <typename Int>
bool parse_number(std::string_view text, Int& out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

int fail(const std::string& message, int code) {
  std::cerr << "millrace-gen: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::uint64_t> rows, seed;
  std::optional<double> dirt;
  std::string out_path, gen_from, section = "load";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc)
      return fail("missing value after " + std::string(arg) + "\n" + std::string(kUsage), 2);
    const std::string_view value = argv[++i];
    std::uint64_t number = 0;
    if (arg == "--rows" && parse_number(value, number)) {
      rows = number;
    } else if (arg == "--seed" && parse_number(value, number)) {
      seed = number;
    } else if (arg == "--out") {
      out_path = value;
    } else if (arg == "--gen-from") {
      gen_from = value;
    } else if (arg == "--section") {
      section = value;
    } else if (arg == "--dirt") {
      char* end = nullptr;
      const std::string text(value);
      dirt = std::strtod(text.c_str(), &end);
      if (*end != '\0') return fail("--dirt needs a number 0..1, got '" + text + "'", 2);
    } else {
      return fail("bad option or value: " + std::string(arg) + " " + std::string(value) + "\n" +
                      std::string(kUsage),
                  2);
    }
  }
  if (!rows || !seed || out_path.empty()) {
    return fail("--rows, --seed and --out are required\n" + std::string(kUsage), 2);
  }

  GenSpec spec;
  if (gen_from.empty()) {
    spec = builtin_spec();
  } else {
    auto read = read_spec(gen_from, section);
    if (!read) return fail(read.error().message, 2);
    spec = std::move(read).value();
  }
  if (dirt) spec.dirt = *dirt;
  auto generator = Synthetic::parse(spec.gen_lines, spec.dirt, *seed, spec.columns);
  if (!generator) return fail(generator.error().message, 2);

  auto fd = millrace::posix_call("open", out_path, [&] {
    return ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  });
  if (!fd) return fail(fd.error().message, 1);

  constexpr std::size_t kFlushBytes = std::size_t{1} << 20;
  std::string buf;
  buf.reserve(kFlushBytes + 64 * 1024);
  const auto append_record = [&](const std::vector<std::string>& fields) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i > 0) buf.push_back(',');
      millrace::stages::append_csv_field(buf, fields[i]);
    }
    buf.push_back('\n');
  };
  append_record(generator->columns());
  std::vector<std::string> fields;
  for (std::uint64_t seq = 1; seq <= *rows; ++seq) {
    generator->generate(seq, fields);
    append_record(fields);
    if (buf.size() >= kFlushBytes) {
      if (auto s = write_all(*fd, out_path, buf); !s) {
        ::close(*fd);
        return fail(s.error().message, 1);
      }
      buf.clear();
    }
  }
  Status s = write_all(*fd, out_path, buf);
  if (::close(*fd) != 0 && s) s = millrace::sys_error("gen", "close", out_path, errno);
  if (!s) return fail(s.error().message, 1);
  return 0;
}
