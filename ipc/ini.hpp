// The INI reader every millrace process uses (the launcher validates the config with it, the
// stages read their sections with it), plus the value parsers shared by both sides, so that
// "4MiB" or "200ms" means the same thing in every process.
//
// Who may call what: any process, any thread; an IniDocument is a plain value (no shared
// state). Mutating a document (apply_override, get_or_add_section) may move its sections, so
// pointers from section()/find() are valid until the next mutation.
//
// Invariants of a parsed document:
//  - every section and entry knows the file and the 1-based line it came from; entries set by
//    an override have file "--set" and line 0;
//  - section names are unique (a repeated [section] merges into the first one) and contain no
//    '.'; keys contain no '.', so "section.key=value" is never ambiguous;
//  - entries keep file order, repeated keys included (the schema above decides which keys may
//    repeat).
//
// Syntax: `;` or `#` first on a line (after blanks) makes a comment line; `;` after a blank
// starts a comment to the end of the line (so a value cannot contain " ;"); `[name]` opens a
// section; `key = value` with key and value trimmed of blanks. No quoting, no continuation
// lines.
//
// Why not a library: no INI parser packaged by Debian keeps the line of every key. inih calls
// its handler without a line number unless built with INI_HANDLER_LINENO, which Debian's
// libinih is not (and the option changes the handler's signature); Boost.PropertyTree's
// ini_parser reports a line only for the syntax error that stops it, keeps none per key, and
// rejects repeated keys, which `check =` and `derive =` lists need.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/result.hpp"

namespace millrace::ipc {

// Error codes of the INI reader (Error::component == "config").
enum class IniError : int {
  kUnreadable = 1,  // the file cannot be opened or read (sys_errno set)
  kSyntax,          // one or more lines are not INI; the message lists each as FILE:LINE: ...
  kBadOverride,     // a --set assignment is not section.key=value
  kBadValue,        // a value parser refused its text
};

inline constexpr std::string_view kOverrideFile = "--set";

struct IniEntry {
  std::string key;
  std::string value;
  std::string file;
  int line = 0;  // 1-based; 0 for an override or a value not written by the user
};

struct IniSection {
  std::string name;
  std::string file;
  int line = 0;
  std::vector<IniEntry> entries;

  // The last entry of `key` (later entries override earlier ones), or nullptr.
  [[nodiscard]] const IniEntry* find(std::string_view key) const;
  // Every entry of `key`, in file order (for repeatable keys such as `check`).
  [[nodiscard]] std::vector<const IniEntry*> find_all(std::string_view key) const;
};

class IniDocument {
 public:
  // Reads and parses `path`. Errors: kUnreadable, kSyntax (every bad line, one per line).
  static Result<IniDocument> parse_file(const std::string& path);
  // Parses `text`; `file_name` is what errors and entries name as their file.
  static Result<IniDocument> parse_string(std::string_view text, std::string file_name);

  [[nodiscard]] const IniSection* section(std::string_view name) const;
  [[nodiscard]] const std::vector<IniSection>& sections() const { return sections_; }

  // Applies "section.key=value" (from `--set`): the section is what precedes the last '.'
  // before the first '=' (section names may hold ':' and '->'). Every existing entry of the
  // key is replaced by one entry with file "--set" and line 0; a missing section or key is
  // added. Errors: kBadOverride naming the assignment and the expected form.
  Status apply_override(std::string_view assignment);

  // The section `name`, added at the end (with `file` and `line`) if missing.
  IniSection& get_or_add_section(std::string_view name, std::string_view file, int line);

  // Canonical text: sections sorted by name, entries stably sorted by key (so repeated keys
  // keep their order), one `key = value` per line, no comments. Two documents that mean the
  // same thing dump the same text; the dump parses back to an equal document (unless a
  // value holds a blank (space, tab or CR) before a ";", which only an override can put
  // there: the parser reads it as a comment).
  [[nodiscard]] std::string dump() const;

 private:
  std::vector<IniSection> sections_;
};

// "section.key=value" split as apply_override splits it.
struct Assignment {
  std::string section;
  std::string key;
  std::string value;
};
Result<Assignment> parse_assignment(std::string_view assignment);

// Value parsers shared by every process. Each refuses text it does not fully understand with
// an IniError::kBadValue Error whose message says what was wrong and which forms are accepted
// (without a location: the caller adds file, line and key).

// A whole number, optional leading '-', fitting in int64.
Result<std::int64_t> parse_int(std::string_view text);
// A decimal number ("0.08", "1e-3"), finite.
Result<double> parse_real(std::string_view text);
// true/false, yes/no, on/off, 1/0 (case-insensitive).
Result<bool> parse_bool(std::string_view text);
// A byte size: "123", "64KiB", "4MiB", "1GiB" (1024-based), "64KB", "4MB", "1GB" (1000-based);
// a blank may separate number and unit; units are case-insensitive.
Result<std::uint64_t> parse_bytes(std::string_view text);
// A duration: "250ms", "5s", "2m", "1h"; a bare number is seconds.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// A comma-separated list, items trimmed, empty items dropped.
std::vector<std::string> split_list(std::string_view text);

// Text forms that the parsers above read back to the same value, in the largest unit that is
// exact: "4 MiB" for 4194304 bytes, "1 KB" for 1000, "123 B"; "250ms", "5s", "2m", "1h".
std::string format_bytes(std::uint64_t bytes);
std::string format_duration(std::chrono::milliseconds duration);

// `text` without leading and trailing blanks (spaces and tabs).
std::string_view trim(std::string_view text);

}  // namespace millrace::ipc
