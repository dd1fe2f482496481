// Inputs the INI fuzz target (tests/ipc/fuzz_ini.cpp) found, kept as behaviour tests. The same
// bytes are in tests/fuzz_corpus/ini/regress_*.ini, which the fuzz_replay_ini ctest runs.
//
// Why they matter: the launcher writes the resolved config with dump() and every stage reads
// that dump back, so a value that does not survive dump() and parse_string() is a value the
// launcher validated but the stages never see.
#include <gtest/gtest.h>

#include <string>

#include "ipc/ini.hpp"

namespace millrace::ipc {
namespace {

// The value of `key` in `section` after parsing `text`, then after a dump and a parse.
struct ReadBack {
  std::string parsed;
  std::string after_dump;
};

ReadBack read_back(const IniDocument& doc, const std::string& section, const std::string& key) {
  ReadBack out;
  const IniSection* s = doc.section(section);
  EXPECT_NE(s, nullptr) << section;
  if (s == nullptr || s->find(key) == nullptr) return out;
  out.parsed = s->find(key)->value;
  auto again = IniDocument::parse_string(doc.dump(), "dump.ini");
  EXPECT_TRUE(again.ok()) << doc.dump();
  if (!again.ok() || again->section(section) == nullptr) return out;
  const IniEntry* e = again->section(section)->find(key);
  EXPECT_NE(e, nullptr) << doc.dump();
  if (e != nullptr) out.after_dump = e->value;
  return out;
}

TEST(IniFuzzRegression, ValueStartingWithSemicolonSurvivesTheDump) {
  // `k=;v` has no blank before ';', so it is a value, not a comment; the dump must not write
  // "k = ;v", which reads as an empty value and a comment.
  auto doc = IniDocument::parse_string("[s]\nk=;v\n", "r.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  const ReadBack v = read_back(doc.value(), "s", "k");
  EXPECT_EQ(v.parsed, ";v");
  EXPECT_EQ(v.after_dump, ";v");
}

TEST(IniFuzzRegression, CrCrLfLineEndLeavesNoCrInTheValue) {
  // A file converted to CRLF twice ends its lines in CR CR LF: the value is "v" either way,
  // and the dump (which writes LF) reads back the same.
  auto doc = IniDocument::parse_string("[s]\r\r\nk = v\r\r\n", "r.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  const ReadBack v = read_back(doc.value(), "s", "k");
  EXPECT_EQ(v.parsed, "v");
  EXPECT_EQ(v.after_dump, "v");
}

TEST(IniFuzzRegression, OverrideValueEndingInCrIsTrimmed) {
  // A `--set` line from a script with CRLF line ends carries a CR after the value.
  auto doc = IniDocument::parse_string("[s]\nk = v\n", "r.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  ASSERT_TRUE(doc->apply_override("s.k=w\r").ok());
  const ReadBack v = read_back(doc.value(), "s", "k");
  EXPECT_EQ(v.parsed, "w");
  EXPECT_EQ(v.after_dump, "w");
}

}  // namespace
}  // namespace millrace::ipc
