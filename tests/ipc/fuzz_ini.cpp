// libFuzzer target for the INI reader and the value parsers. Build with clang:
// -fsanitize=fuzzer,address,undefined (cmake -DMILLRACE_FUZZ=ON, see tests/fuzz/run_fuzz.sh).
//
// Properties checked on every input:
//  - parse_string never crashes and never trips a sanitizer, whatever the bytes;
//  - a parsed document keeps the header's invariants: section names unique, non-empty, without
//    '.', '[' or ']'; keys non-empty, without '.'; keys and values trimmed; every line number
//    within the input; every entry names the file it came from;
//  - dump() parses back to a document that dumps the same text (the canonical form is stable);
//  - every value read by every value parser either fails cleanly or gives a value that the
//    matching format_*() writes back to text that parses to the same value;
//  - apply_override of "section.key=value" built from the input leaves exactly one entry of
//    that key, from "--set", and keeps the document dumpable.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "ipc/ini.hpp"

namespace {

using millrace::ipc::IniDocument;
using millrace::ipc::IniEntry;
using millrace::ipc::IniSection;

// Names the violated property before aborting, so a reproducer explains itself.
void check(bool condition, const char* property) {
  if (condition) return;
  std::fprintf(stderr, "fuzz_ini: property violated: %s\n", property);
  std::abort();
}

bool trimmed(std::string_view text) { return millrace::ipc::trim(text) == text; }

void check_document(const IniDocument& doc, int max_line, std::string_view file) {
  std::set<std::string> names;
  for (const IniSection& s : doc.sections()) {
    check(!s.name.empty(), "section name not empty");
    check(s.name.find_first_of(".[]") == std::string::npos, "section name without . [ ]");
    check(names.insert(s.name).second, "section names unique");
    check(s.line >= 0 && s.line <= max_line, "section line within the input");
    for (const IniEntry& e : s.entries) {
      check(!e.key.empty(), "key not empty");
      check(e.key.find('.') == std::string::npos, "key without .");
      check(trimmed(e.key) && trimmed(e.value), "key and value trimmed");
      check(e.line >= 0 && e.line <= max_line, "entry line within the input");
      check(e.line == 0 ? e.file == millrace::ipc::kOverrideFile : e.file == file,
            "entry names its file (--set for line 0)");
      check(s.find(e.key) != nullptr, "find() finds every key");
      check(!s.find_all(e.key).empty(), "find_all() finds every key");
    }
    check(doc.section(s.name) == &s, "section() finds every section");
  }
}

void check_values(std::string_view value) {
  (void)millrace::ipc::parse_int(value);
  (void)millrace::ipc::parse_real(value);
  (void)millrace::ipc::parse_bool(value);
  (void)millrace::ipc::split_list(value);
  if (auto bytes = millrace::ipc::parse_bytes(value)) {
    auto again = millrace::ipc::parse_bytes(millrace::ipc::format_bytes(bytes.value()));
    check(again.ok() && again.value() == bytes.value(), "format_bytes reads back");
  }
  if (auto duration = millrace::ipc::parse_duration(value)) {
    check(duration.value().count() >= 0, "duration not negative");
    auto again = millrace::ipc::parse_duration(millrace::ipc::format_duration(duration.value()));
    check(again.ok() && again.value() == duration.value(), "format_duration reads back");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const int lines = static_cast<int>(std::count(input.begin(), input.end(), '\n')) + 1;

  // The value parsers on the raw input too: most interesting text never makes a valid INI.
  check_values(input);
  (void)millrace::ipc::parse_assignment(input);

  auto parsed = IniDocument::parse_string(input, "fuzz.ini");
  if (!parsed) {
    check(!parsed.error().message.empty(), "a syntax error has a message");
    return 0;
  }
  IniDocument doc = std::move(parsed.value());
  check_document(doc, lines, "fuzz.ini");
  for (const IniSection& s : doc.sections()) {
    for (const IniEntry& e : s.entries) check_values(e.value);
  }

  const std::string dumped = doc.dump();
  auto reparsed = IniDocument::parse_string(dumped, "dump.ini");
  check(reparsed.ok(), "dump() parses");
  check(reparsed.value().dump() == dumped, "dump() parses back to the same document");

  // An override built from the first entry of the input, with the input's last line as value.
  if (!doc.sections().empty() && !doc.sections().front().entries.empty()) {
    const IniSection& first = doc.sections().front();
    const std::string key = first.entries.front().key;
    const std::string section = first.name;
    const std::size_t last_newline = input.rfind('\n');
    std::string value(millrace::ipc::trim(
        last_newline == std::string_view::npos ? input : input.substr(last_newline + 1)));
    // A value holding a blank (space, tab or CR) before ';' is the one thing the dump cannot
    // round-trip (documented); a value that starts with ';' is the same case, as the dump
    // writes "key = ;...".
    bool comment_like = value.starts_with(';');
    for (std::size_t i = 1; i < value.size() && !comment_like; ++i) {
      comment_like = value[i] == ';' && millrace::ipc::trim(value.substr(i - 1, 1)).empty();
    }
    const std::string assignment = section + "." + key + "=" + value;
    if (doc.apply_override(assignment).ok()) {
      const IniSection* s = doc.section(section);
      check(s != nullptr, "override adds its section");
      const auto all = s->find_all(key);
      check(all.size() == 1, "override leaves one entry of its key");
      check(all.front()->file == millrace::ipc::kOverrideFile && all.front()->line == 0,
            "override entry names --set, line 0");
      check_document(doc, lines, "fuzz.ini");
      if (!comment_like) {
        auto again = IniDocument::parse_string(doc.dump(), "dump.ini");
        check(again.ok(), "dump() after an override parses");
        check(again.value().dump() == doc.dump(), "dump() after an override parses back the same");
      }
    }
  }
  return 0;
}
