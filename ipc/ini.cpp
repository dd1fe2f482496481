#include "ipc/ini.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

constexpr std::string_view kBytesForms =
    "123, 64KiB, 4MiB, 1GiB (powers of 1024) or 64KB, 4MB, 1GB (powers of 1000)";
constexpr std::string_view kDurationForms = "250ms, 5s, 2m, 1h (a bare number is seconds)";
constexpr std::string_view kBoolForms = "true, false, yes, no, on, off, 1, 0";

// CR counts as a blank: files converted to CRLF (even twice) and --set values from such
// scripts carry it at line ends, never meaning it.
bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

Error config_error(IniError code, std::string message, int sys_errno = 0) {
  return Error{"config", static_cast<int>(code), std::move(message), sys_errno};
}

Error bad_value(std::string message) { return config_error(IniError::kBadValue, std::move(message)); }

std::string quoted(std::string_view text) {
  constexpr std::size_t kMaxShown = 60;
  std::string out = "'";
  if (text.size() > kMaxShown) {
    out.append(text.substr(0, kMaxShown)).append("...");
  } else {
    out.append(text);
  }
  return out.append("'");
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// `;` opens an inline comment only after a blank, so "SKU-#;1" style values survive.
std::string_view strip_inline_comment(std::string_view line) {
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] == ';' && is_blank(line[i - 1])) return line.substr(0, i);
  }
  return line;
}

// "123 KiB" as its leading digits and its unit text ("KiB"), or nullopt without digits.
struct NumberUnit {
  std::uint64_t number = 0;
  bool overflow = false;
  std::string_view unit;
};
std::optional<NumberUnit> split_number_unit(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  NumberUnit out;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, out.number);
  (void)ptr;
  out.overflow = ec == std::errc::result_out_of_range;
  out.unit = trim(text.substr(digits));
  return out;
}

// The error for a value whose unit is not one of `forms`.
Error bad_unit(std::string_view text, std::string_view unit, std::string_view forms) {
  if (unit.front() == '.' || unit.front() == ',') {
    return bad_value(quoted(text) + " is not a whole number; use a smaller unit (e.g. 1536KiB, "
                                    "1500ms); accepted: " + std::string(forms));
  }
  return bad_value(quoted(text) + " has an unknown unit " + quoted(unit) + "; accepted: " +
                   std::string(forms));
}

// Reads a whole file; an Error names the path and the reason.
Result<std::string> read_file(const std::string& path) {
  auto unreadable = [&path](const Error& e) {
    return config_error(IniError::kUnreadable,
                        "cannot read config file '" + path + "': " + errno_text(e.sys_errno) +
                            "; check the path and its permissions",
                        e.sys_errno);
  };
  auto fd = posix_call("open", path, [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (!fd) return unreadable(fd.error());
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd.value()};

  struct stat st {};
  auto stat_rc = posix_call("fstat", path, [&] { return ::fstat(closer.fd, &st); });
  if (!stat_rc) return unreadable(stat_rc.error());
  if (S_ISDIR(st.st_mode)) {
    return config_error(IniError::kUnreadable,
                        "cannot read config file '" + path + "': it is a directory", EISDIR);
  }
  std::string text;
  char buf[16384];
  for (;;) {
    auto n = posix_call("read", path, [&] { return ::read(closer.fd, buf, sizeof buf); });
    if (!n) return unreadable(n.error());
    if (n.value() == 0) break;
    text.append(buf, static_cast<std::size_t>(n.value()));
  }
  return text;
}

}  // namespace

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

const IniEntry* IniSection::find(std::string_view key) const {
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->key == key) return &*it;
  }
  return nullptr;
}

std::vector<const IniEntry*> IniSection::find_all(std::string_view key) const {
  std::vector<const IniEntry*> out;
  for (const IniEntry& e : entries) {
    if (e.key == key) out.push_back(&e);
  }
  return out;
}

Result<IniDocument> IniDocument::parse_file(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text) return text.error();
  return parse_string(text.value(), path);
}

Result<IniDocument> IniDocument::parse_string(std::string_view text, std::string file_name) {
  IniDocument doc;
  std::string problems;
  auto problem = [&](int line, const std::string& what) {
    problems.append(file_name).append(":").append(std::to_string(line)).append(": ");
    problems.append(what).append("\n");
  };

  constexpr std::size_t kNoSection = static_cast<std::size_t>(-1);
  std::size_t current = kNoSection;
  int line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line_no == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    std::string_view t = trim(line);
    if (t.empty() || t.front() == ';' || t.front() == '#') continue;
    t = trim(strip_inline_comment(t));

    if (t.front() == '[') {
      if (t.size() < 2 || t.back() != ']') {
        problem(line_no, "expected ']' to close the section header " + quoted(t) +
                             ", as in [name]");
        current = kNoSection;
        continue;
      }
      std::string_view name = trim(t.substr(1, t.size() - 2));
      if (name.empty()) {
        problem(line_no, "empty section name; write [name]");
        current = kNoSection;
        continue;
      }
      if (name.find_first_of(".[]") != std::string_view::npos) {
        problem(line_no, "section name " + quoted(name) +
                             " may not contain '.', '[' or ']' ('.' separates section and key "
                             "in --set section.key=value)");
        current = kNoSection;
        continue;
      }
      IniSection& s = doc.get_or_add_section(name, file_name, line_no);
      current = static_cast<std::size_t>(&s - doc.sections_.data());
      continue;
    }

    std::size_t eq = t.find('=');
    if (eq == std::string_view::npos) {
      problem(line_no, "expected 'key = value', a [section] header or a comment, found " +
                           quoted(t));
      continue;
    }
    std::string_view key = trim(t.substr(0, eq));
    std::string_view value = trim(t.substr(eq + 1));
    if (key.empty()) {
      problem(line_no, "expected a key before '=', as in 'key = value'");
      continue;
    }
    if (key.find('.') != std::string_view::npos) {
      problem(line_no, "key " + quoted(key) +
                           " may not contain '.' ('.' separates section and key in --set "
                           "section.key=value)");
      continue;
    }
    if (current == kNoSection) {
      problem(line_no, "key " + quoted(key) +
                           " is outside any section; put a [section] header above it");
      continue;
    }
    doc.sections_[current].entries.push_back(
        IniEntry{std::string(key), std::string(value), file_name, line_no});
  }

  if (!problems.empty()) {
    problems.pop_back();  // the last newline
    return config_error(IniError::kSyntax, std::move(problems));
  }
  return doc;
}

const IniSection* IniDocument::section(std::string_view name) const {
  for (const IniSection& s : sections_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

IniSection& IniDocument::get_or_add_section(std::string_view name, std::string_view file,
                                            int line) {
  for (IniSection& s : sections_) {
    if (s.name == name) return s;
  }
  sections_.push_back(IniSection{std::string(name), std::string(file), line, {}});
  return sections_.back();
}

Result<Assignment> parse_assignment(std::string_view assignment) {
  auto bad = [&](std::string_view why) {
    return config_error(IniError::kBadOverride,
                        "--set " + quoted(assignment) + ": " + std::string(why) +
                            "; expected section.key=value, e.g. --set load.workers=2 or "
                            "--set 'link:clean->transform.capacity=1MiB' (quoted: the shell reads > as a "
                            "redirection)");
  };
  std::size_t eq = assignment.find('=');
  if (eq == std::string_view::npos) return bad("no '='");
  std::string_view target = assignment.substr(0, eq);
  std::size_t dot = target.rfind('.');
  if (dot == std::string_view::npos) return bad("no '.' between section and key");
  Assignment out{std::string(trim(target.substr(0, dot))), std::string(trim(target.substr(dot + 1))),
                 std::string(trim(assignment.substr(eq + 1)))};
  if (out.section.empty()) return bad("empty section name");
  if (out.key.empty()) return bad("empty key");
  if (out.section.find_first_of("[]") != std::string::npos) {
    return bad("write the section name without brackets");
  }
  return out;
}

Status IniDocument::apply_override(std::string_view assignment) {
  Result<Assignment> a = parse_assignment(assignment);
  if (!a) return a.error();
  IniSection& s = get_or_add_section(a->section, kOverrideFile, 0);
  std::erase_if(s.entries, [&](const IniEntry& e) { return e.key == a->key; });
  s.entries.push_back(IniEntry{a->key, a->value, std::string(kOverrideFile), 0});
  return ok_status();
}

std::string IniDocument::dump() const {
  std::vector<const IniSection*> order;
  order.reserve(sections_.size());
  for (const IniSection& s : sections_) order.push_back(&s);
  std::sort(order.begin(), order.end(),
            [](const IniSection* a, const IniSection* b) { return a->name < b->name; });
  std::string out;
  for (const IniSection* s : order) {
    if (!out.empty()) out.append("\n");
    out.append("[").append(s->name).append("]\n");
    std::vector<const IniEntry*> entries;
    entries.reserve(s->entries.size());
    for (const IniEntry& e : s->entries) entries.push_back(&e);
    std::stable_sort(entries.begin(), entries.end(),
                     [](const IniEntry* a, const IniEntry* b) { return a->key < b->key; });
    for (const IniEntry* e : entries) {
      out.append(e->key).append(" =");
      // "k = ;v" would read back as an empty value and a comment: no blank before a ';'.
      if (!e->value.empty() && e->value.front() != ';') out.append(" ");
      out.append(e->value);
      out.append("\n");
    }
  }
  return out;
}

Result<std::int64_t> parse_int(std::string_view text) {
  text = trim(text);
  if (text.empty()) return bad_value("empty value; expected a whole number");
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) {
    return bad_value(quoted(text) + " is too large for a whole number");
  }
  if (ec != std::errc{} || ptr != text.data() + text.size()) {
    return bad_value(quoted(text) + " is not a whole number");
  }
  return v;
}

Result<double> parse_real(std::string_view text) {
  text = trim(text);
  if (text.empty()) return bad_value("empty value; expected a number such as 0.08");
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size() || !std::isfinite(v)) {
    return bad_value(quoted(text) + " is not a number; expected e.g. 0.08");
  }
  return v;
}

Result<bool> parse_bool(std::string_view text) {
  std::string t = lower(trim(text));
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  return bad_value(quoted(trim(text)) + " is not a boolean; accepted: " + std::string(kBoolForms));
}

Result<std::uint64_t> parse_bytes(std::string_view text) {
  text = trim(text);
  std::optional<NumberUnit> nu = split_number_unit(text);
  if (!nu) {
    return bad_value(quoted(text) + " is not a byte size; accepted: " + std::string(kBytesForms));
  }
  struct Unit {
    std::string_view name;
    std::uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},    {"b", 1},        {"kib", 1ull << 10}, {"mib", 1ull << 20}, {"gib", 1ull << 30},
      {"kb", 1000}, {"mb", 1000000}, {"gb", 1000000000},
  };
  const std::string unit = lower(nu->unit);
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (nu->overflow || nu->number > std::numeric_limits<std::uint64_t>::max() / u.factor) {
      return bad_value(quoted(text) + " is too large for a byte size");
    }
    return nu->number * u.factor;
  }
  return bad_unit(text, nu->unit, kBytesForms);
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  text = trim(text);
  std::optional<NumberUnit> nu = split_number_unit(text);
  if (!nu) {
    return bad_value(quoted(text) + " is not a duration; accepted: " + std::string(kDurationForms));
  }
  struct Unit {
    std::string_view name;
    std::uint64_t ms;
  };
  static constexpr Unit kUnits[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  const std::string unit = lower(nu->unit);
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (nu->overflow || nu->number > kMax / u.ms) {
      return bad_value(quoted(text) + " is too long a duration");
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(nu->number * u.ms));
  }
  return bad_unit(text, nu->unit, kDurationForms);
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = trim(text.substr(pos, comma - pos));
    if (!item.empty()) out.emplace_back(item);
    pos = comma + 1;
  }
  return out;
}

std::string format_bytes(std::uint64_t bytes) {
  struct Unit {
    const char* name;
    std::uint64_t factor;
  };
  static constexpr Unit kUnits[] = {{"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1ull << 10},
                                    {"GB", 1000000000},  {"MB", 1000000},     {"KB", 1000}};
  if (bytes != 0) {
    for (const Unit& u : kUnits) {
      if (bytes % u.factor == 0) return std::to_string(bytes / u.factor) + " " + u.name;
    }
  }
  return std::to_string(bytes) + " B";
}

std::string format_duration(std::chrono::milliseconds duration) {
  const std::int64_t ms = duration.count();
  if (ms == 0) return "0s";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace millrace::ipc
