#include "launcher/config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ipc/ini.hpp"
#include "launcher/commands.hpp"

namespace millrace::launcher {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The INI reader.

TEST(IniDocument, KeepsFileAndLineOfEverySectionAndEntry) {
  auto doc = ipc::IniDocument::parse_string(
      "; a comment\n"
      "# another\n"
      "\n"
      "[pipeline]\n"
      "  name   =   orders   \n"
      "[link:load->clean]\n"
      "capacity = 1MiB\n",
      "p.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  ASSERT_EQ(doc->sections().size(), 2u);
  const ipc::IniSection* p = doc->section("pipeline");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->file, "p.ini");
  EXPECT_EQ(p->line, 4);
  const ipc::IniEntry* name = p->find("name");
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(name->value, "orders");
  EXPECT_EQ(name->file, "p.ini");
  EXPECT_EQ(name->line, 5);
  const ipc::IniSection* link = doc->section("link:load->clean");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->line, 6);
  EXPECT_EQ(link->find("capacity")->line, 7);
  EXPECT_EQ(doc->section("missing"), nullptr);
}

TEST(IniDocument, StripsInlineCommentsOnlyAfterABlank) {
  auto doc = ipc::IniDocument::parse_string(
      "[load]     ; the source\n"
      "path =           ; empty\n"
      "gen = sku : pattern SKU-#####\n"
      "note = a;b ; trailing\r\n",
      "p.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  const ipc::IniSection* load = doc->section("load");
  ASSERT_NE(load, nullptr);
  EXPECT_EQ(load->find("path")->value, "");
  EXPECT_EQ(load->find("gen")->value, "sku : pattern SKU-#####");
  EXPECT_EQ(load->find("note")->value, "a;b");
}

TEST(IniDocument, RepeatedSectionsMergeAndRepeatedKeysKeepTheirOrder) {
  auto doc = ipc::IniDocument::parse_string(
      "[clean]\n"
      "check = a : int -> r1\n"
      "trim = all\n"
      "[store]\n"
      "kind = csv\n"
      "[clean]\n"
      "check = b : int -> r2\n"
      "trim = none\n",
      "p.ini");
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  ASSERT_EQ(doc->sections().size(), 2u);
  const ipc::IniSection* clean = doc->section("clean");
  EXPECT_EQ(clean->line, 1);
  std::vector<const ipc::IniEntry*> checks = clean->find_all("check");
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[0]->value, "a : int -> r1");
  EXPECT_EQ(checks[1]->value, "b : int -> r2");
  EXPECT_EQ(checks[1]->line, 7);
  EXPECT_EQ(clean->find("trim")->value, "none");  // the last one wins
  EXPECT_TRUE(clean->find_all("derive").empty());
}

TEST(IniDocument, ReportsEverySyntaxErrorWithFileAndLine) {
  auto doc = ipc::IniDocument::parse_string(
      "name = x\n"
      "[pipeline\n"
      "[pipeline]\n"
      "just words\n"
      "= value\n"
      "a.b = 1\n"
      "[]\n"
      "[a.b]\n"
      "ok = fine\n",
      "bad.ini");
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.error().code, static_cast<int>(ipc::IniError::kSyntax));
  std::vector<std::string> expected = {
      "bad.ini:1: key 'name' is outside any section; put a [section] header above it",
      "bad.ini:2: expected ']' to close the section header '[pipeline', as in [name]",
      "bad.ini:4: expected 'key = value', a [section] header or a comment, found 'just words'",
      "bad.ini:5: expected a key before '=', as in 'key = value'",
      "bad.ini:6: key 'a.b' may not contain '.' ('.' separates section and key in --set "
      "section.key=value)",
      "bad.ini:7: empty section name; write [name]",
      "bad.ini:8: section name 'a.b' may not contain '.', '[' or ']' ('.' separates section and "
      "key in --set section.key=value)",
      "bad.ini:9: key 'ok' is outside any section; put a [section] header above it",
  };
  EXPECT_EQ(lines_of(doc.error().message), expected);
}

TEST(IniDocument, OverrideReplacesEveryEntryOfTheKey) {
  auto doc = ipc::IniDocument::parse_string(
      "[clean]\ncheck = a : int -> r1\ncheck = b : int -> r2\ntrim = all\n", "p.ini");
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(doc->apply_override("clean.check=c : int -> r3").ok());
  std::vector<const ipc::IniEntry*> checks = doc->section("clean")->find_all("check");
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0]->value, "c : int -> r3");
  EXPECT_EQ(checks[0]->file, "--set");
  EXPECT_EQ(checks[0]->line, 0);
  EXPECT_EQ(doc->section("clean")->find("trim")->value, "all");
}

TEST(IniDocument, OverrideAddsAMissingSectionOrKey) {
  auto doc = ipc::IniDocument::parse_string("[load]\nworkers = 1\n", "p.ini");
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(doc->apply_override("load.batch = 64").ok());
  ASSERT_TRUE(doc->apply_override("store.kind=csv").ok());
  EXPECT_EQ(doc->section("load")->find("batch")->value, "64");
  const ipc::IniSection* store = doc->section("store");
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->file, "--set");
  EXPECT_EQ(store->line, 0);
  EXPECT_EQ(store->find("kind")->value, "csv");
}

TEST(IniDocument, OverrideSplitsAtTheLastDotBeforeTheEquals) {
  auto doc = ipc::IniDocument::parse_string("[pipeline]\n", "p.ini");
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(doc->apply_override("link:load->clean.capacity=1MiB").ok());
  ASSERT_TRUE(doc->apply_override("store.path=out/orders.v2.db").ok());
  ASSERT_TRUE(doc->apply_override("table:rates.USD=1000000").ok());
  EXPECT_EQ(doc->section("link:load->clean")->find("capacity")->value, "1MiB");
  EXPECT_EQ(doc->section("store")->find("path")->value, "out/orders.v2.db");
  EXPECT_EQ(doc->section("table:rates")->find("USD")->value, "1000000");
}

TEST(IniDocument, MalformedOverrideNamesTheExpectedForm) {
  auto doc = ipc::IniDocument::parse_string("[load]\n", "p.ini");
  ASSERT_TRUE(doc.ok());
  Status no_dot = doc->apply_override("loadworkers=3");
  ASSERT_FALSE(no_dot.ok());
  EXPECT_EQ(no_dot.error().code, static_cast<int>(ipc::IniError::kBadOverride));
  EXPECT_EQ(no_dot.error().message,
            "--set 'loadworkers=3': no '.' between section and key; expected "
            "section.key=value, e.g. --set load.workers=2 or --set "
            "'link:clean->transform.capacity=1MiB' (quoted: the shell reads > as a redirection)");
  Status no_eq = doc->apply_override("load.workers");
  ASSERT_FALSE(no_eq.ok());
  EXPECT_NE(no_eq.error().message.find("no '='"), std::string::npos);
  EXPECT_FALSE(doc->apply_override(".workers=3").ok());
  EXPECT_FALSE(doc->apply_override("load.=3").ok());
}

TEST(IniDocument, DumpIsCanonicalAndParsesBack) {
  auto a = ipc::IniDocument::parse_string(
      "[store]\nkind = csv\n[clean]\ncheck = x -> r1\ntrim = all\ncheck = y -> r2\n", "a.ini");
  auto b = ipc::IniDocument::parse_string(
      "; same meaning, other layout\n[clean]\n  trim=all\ncheck=x -> r1\n\n[store]\n"
      "kind   =  csv ; comment\n[clean]\ncheck = y -> r2\n",
      "b.ini");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->dump(), b->dump());
  EXPECT_EQ(a->dump(), "[clean]\ncheck = x -> r1\ncheck = y -> r2\ntrim = all\n\n[store]\nkind = csv\n");
  auto again = ipc::IniDocument::parse_string(a->dump(), "dump.ini");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->dump(), a->dump());
}

TEST(IniDocument, UnreadableFileIsAnErrorNamingThePath) {
  auto doc = ipc::IniDocument::parse_file("/nonexistent/millrace.ini");
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.error().code, static_cast<int>(ipc::IniError::kUnreadable));
  EXPECT_EQ(doc.error().sys_errno, ENOENT);
  EXPECT_NE(doc.error().message.find("'/nonexistent/millrace.ini'"), std::string::npos);
  EXPECT_NE(doc.error().message.find("No such file"), std::string::npos);
  auto dir = ipc::IniDocument::parse_file("/tmp");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.error().message.find("is a directory"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Units.

TEST(Units, ByteSizesInEveryAcceptedForm) {
  const struct {
    const char* text;
    std::uint64_t bytes;
  } cases[] = {
      {"0", 0},           {"123", 123},          {"123B", 123},       {"64KiB", 64 << 10},
      {"4MiB", 4 << 20},  {"1GiB", 1ull << 30},  {"64KB", 64000},     {"4MB", 4000000},
      {"1GB", 1000000000}, {"4 MiB", 4 << 20},   {"4mib", 4 << 20},   {" 8KiB ", 8 << 10},
  };
  for (const auto& c : cases) {
    Result<std::uint64_t> r = ipc::parse_bytes(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().message;
    EXPECT_EQ(r.value(), c.bytes) << c.text;
  }
}

TEST(Units, BadByteSizesShowTheAcceptedForms) {
  const std::string forms =
      "accepted: 123, 64KiB, 4MiB, 1GiB (powers of 1024) or 64KB, 4MB, 1GB (powers of 1000)";
  EXPECT_EQ(ipc::parse_bytes("4M").error().message, "'4M' has an unknown unit 'M'; " + forms);
  EXPECT_EQ(ipc::parse_bytes("MiB").error().message, "'MiB' is not a byte size; " + forms);
  EXPECT_EQ(ipc::parse_bytes("-1").error().message, "'-1' is not a byte size; " + forms);
  EXPECT_NE(ipc::parse_bytes("1.5MiB").error().message.find("is not a whole number"),
            std::string::npos);
  EXPECT_EQ(ipc::parse_bytes("99999999999GiB").error().message,
            "'99999999999GiB' is too large for a byte size");
}

TEST(Units, DurationsInEveryAcceptedForm) {
  const struct {
    const char* text;
    std::chrono::milliseconds ms;
  } cases[] = {
      {"250ms", 250ms}, {"5s", 5s},    {"2m", 2min}, {"1h", 1h},
      {"30", 30s},      {"0", 0ms},    {"10 s", 10s}, {"5S", 5s},
  };
  for (const auto& c : cases) {
    Result<std::chrono::milliseconds> r = ipc::parse_duration(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().message;
    EXPECT_EQ(r.value(), c.ms) << c.text;
  }
}

TEST(Units, BadDurationsShowTheAcceptedForms) {
  const std::string forms = "accepted: 250ms, 5s, 2m, 1h (a bare number is seconds)";
  EXPECT_EQ(ipc::parse_duration("5sec").error().message, "'5sec' has an unknown unit 'sec'; " + forms);
  EXPECT_EQ(ipc::parse_duration("soon").error().message, "'soon' is not a duration; " + forms);
  EXPECT_NE(ipc::parse_duration("1.5s").error().message.find("is not a whole number"),
            std::string::npos);
}

TEST(Units, FormattedValuesParseBackToThemselves) {
  for (std::uint64_t b : {0ull, 123ull, 1000ull, 4194304ull, 1073741824ull, 64000ull, 4097ull}) {
    Result<std::uint64_t> r = ipc::parse_bytes(ipc::format_bytes(b));
    ASSERT_TRUE(r.ok()) << ipc::format_bytes(b);
    EXPECT_EQ(r.value(), b);
  }
  EXPECT_EQ(ipc::format_bytes(4 << 20), "4 MiB");
  EXPECT_EQ(ipc::format_bytes(64000), "64 KB");
  EXPECT_EQ(ipc::format_bytes(123), "123 B");
  for (auto d : {0ms, 250ms, 1500ms, std::chrono::milliseconds(5s), std::chrono::milliseconds(2min),
                 std::chrono::milliseconds(1h)}) {
    Result<std::chrono::milliseconds> r = ipc::parse_duration(ipc::format_duration(d));
    ASSERT_TRUE(r.ok()) << ipc::format_duration(d);
    EXPECT_EQ(r.value(), d);
  }
  EXPECT_EQ(ipc::format_duration(250ms), "250ms");
  EXPECT_EQ(ipc::format_duration(2min), "2m");
}

TEST(Units, BooleansIntegersAndLists) {
  for (const char* t : {"true", "Yes", "on", "1"}) EXPECT_TRUE(ipc::parse_bool(t).value()) << t;
  for (const char* t : {"false", "NO", "off", "0"}) EXPECT_FALSE(ipc::parse_bool(t).value()) << t;
  EXPECT_FALSE(ipc::parse_bool("maybe").ok());
  EXPECT_EQ(ipc::parse_int("-42").value(), -42);
  EXPECT_FALSE(ipc::parse_int("4x").ok());
  EXPECT_FALSE(ipc::parse_int("99999999999999999999").ok());
  EXPECT_EQ(ipc::split_list(" a, b ,,c ,"), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(EditDistance, CountsATranspositionAsOneEdit) {
  EXPECT_EQ(edit_distance("workers", "wokers"), 1);
  EXPECT_EQ(edit_distance("tabel", "table"), 1);
  EXPECT_EQ(edit_distance("on_failure", "on-failure"), 1);
  EXPECT_EQ(edit_distance("abc", "abc"), 0);
  EXPECT_EQ(edit_distance("", "abc"), 3);
}

// ---------------------------------------------------------------------------------------------
// The schema and the typed config.

constexpr const char* kChain =
    "[pipeline]\n"
    "name = t\n"
    "stages = load, clean, transform, store\n";

class ConfigTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "millrace-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "p.ini").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string write(const std::string& name, const std::string& text, fs::perms perms =
                                                                          fs::perms::owner_read |
                                                                          fs::perms::owner_write) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    fs::permissions(p, perms);
    return p.string();
  }

  Result<PipelineConfig> load(const std::string& text, const std::vector<std::string>& overrides = {},
                              const StageValidator& validator = {}) {
    write("p.ini", text);
    return load_config(path_, overrides, validator);
  }

  // The problems of an invalid config, one per line.
  std::vector<std::string> problems(const std::string& text,
                                    const std::vector<std::string>& overrides = {}) {
    Result<PipelineConfig> c = load(text, overrides);
    if (c.ok()) {
      ADD_FAILURE() << "the config was accepted";
      return {};
    }
    EXPECT_EQ(c.error().component, "config");
    return lines_of(c.error().message);
  }

  std::string at(int line) const { return path_ + ":" + std::to_string(line) + ": "; }

  fs::path dir_;
  std::string path_;
};

TEST_F(ConfigTest, MinimalConfigGetsEveryDefault) {
  Result<PipelineConfig> c = load(kChain);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->name, "t");
  ASSERT_EQ(c->stages.size(), 4u);
  const char* names[] = {"load", "clean", "transform", "store"};
  for (std::size_t i = 0; i < 4; ++i) {
    const StageConfig& s = c->stages[i];
    EXPECT_EQ(s.name, names[i]);
    EXPECT_EQ(s.builtin, names[i]);
    EXPECT_EQ(s.exec, "");
    EXPECT_EQ(s.workers, 1);
    EXPECT_EQ(s.batch, 512);
    EXPECT_EQ(s.restart, RestartPolicy::kOnFailure);
    EXPECT_EQ(s.max_restarts, 5);
    EXPECT_EQ(s.restart_window, 60s);
    EXPECT_EQ(s.backoff, 100ms);
    EXPECT_EQ(s.backoff_max, 5s);
    EXPECT_EQ(s.watchdog, 10s);
    ASSERT_NE(s.section, nullptr);
    EXPECT_EQ(s.section->name, names[i]);
  }
  EXPECT_EQ(c->link_defaults.type, LinkConfig::kShm);
  EXPECT_EQ(c->link_defaults.capacity, 4u << 20);
  EXPECT_TRUE(c->link_overrides.empty());
  EXPECT_TRUE(c->manager.enabled);
  EXPECT_EQ(c->manager.restart, RestartPolicy::kOnFailure);
  EXPECT_EQ(c->manager.watchdog, 0ms) << "the manager beats no heartbeat: no watchdog";
  EXPECT_EQ(c->drain_timeout, 30s);
  EXPECT_EQ(c->run_dir, fs::current_path() / "run" / "t");
  EXPECT_EQ(c->config_path, fs::path(path_));
  EXPECT_EQ(c->total_workers(), 4);

  // Stages read their keys, defaults included, from the resolved document.
  const ipc::IniSection* load = c->stage("load")->section;
  EXPECT_EQ(load->find("source")->value, "synthetic");
  EXPECT_EQ(load->find("synthetic_rows")->value, "200000");
  EXPECT_EQ(load->find("synthetic_rows")->file, "(default)");
  EXPECT_EQ(load->find("format")->value, "csv");
  const ipc::IniSection* store = c->stage("store")->section;
  EXPECT_EQ(store->find("commit_interval")->value, "200ms");
  EXPECT_EQ(store->find("path")->value, (c->run_dir / "t.db").string());
  EXPECT_EQ(c->resolved.section("link")->find("capacity")->value, "4194304");
}

TEST_F(ConfigTest, TypedValuesComeFromTheFile) {
  Result<PipelineConfig> c = load(std::string(kChain) +
                                  "run_dir = out/here\n"
                                  "drain_timeout = 2m\n"
                                  "[link]\ntype = pipe\ncapacity = 64KiB\n"
                                  "[manager]\nenabled = no\nrestart = never\n"
                                  "[clean]\nworkers = 3\nrestart = always\nmax_restarts = 0\n"
                                  "restart_window = 1h\nbackoff = 1s\nbackoff_max = 2m\n"
                                  "watchdog = 0\nbatch = 64\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->run_dir, fs::current_path() / "out" / "here");
  EXPECT_EQ(c->drain_timeout, 2min);
  EXPECT_EQ(c->link_defaults, (LinkConfig{LinkConfig::kPipe, 64 << 10}));
  EXPECT_FALSE(c->manager.enabled);
  EXPECT_EQ(c->manager.restart, RestartPolicy::kNever);
  const StageConfig* clean = c->stage("clean");
  ASSERT_NE(clean, nullptr);
  EXPECT_EQ(clean->workers, 3);
  EXPECT_EQ(clean->restart, RestartPolicy::kAlways);
  EXPECT_EQ(clean->max_restarts, 0);
  EXPECT_EQ(clean->restart_window, 1h);
  EXPECT_EQ(clean->backoff, 1s);
  EXPECT_EQ(clean->backoff_max, 2min);
  EXPECT_EQ(clean->watchdog, 0ms);
  EXPECT_EQ(clean->batch, 64);
  EXPECT_EQ(c->total_workers(), 6);
  EXPECT_EQ(c->stage("nope"), nullptr);
}

TEST_F(ConfigTest, UnknownSectionIsAnErrorWithASuggestion) {
  EXPECT_EQ(problems(std::string(kChain) + "[laod]\nworkers = 2\n"),
            std::vector<std::string>{at(4) + "[laod]: unknown section; did you mean [load]?"});
  EXPECT_EQ(problems(std::string(kChain) + "[tabel:rates]\nUSD = 1\n"),
            std::vector<std::string>{at(4) + "[tabel:rates]: unknown section; did you mean "
                                             "[table:rates]?"});
  std::vector<std::string> far = problems(std::string(kChain) + "[zzzzzz]\n");
  ASSERT_EQ(far.size(), 1u);
  EXPECT_EQ(far[0], at(4) + "[zzzzzz]: unknown section; accepted: [pipeline], [link], "
                            "[link:FROM->TO], [manager], [table:NAME] and one section per stage "
                            "in stages (load, clean, transform, store)");
}

TEST_F(ConfigTest, BuiltinSectionOutsideTheChainIsAnError) {
  EXPECT_EQ(problems("[pipeline]\nname = t\nstages = load, store\n[clean]\ntrim = none\n"),
            std::vector<std::string>{at(4) + "[clean]: 'clean' is not a stage of this pipeline "
                                             "(stages = load, store); add it to stages or "
                                             "remove the section"});
}

TEST_F(ConfigTest, UnknownKeyIsAnErrorWithASuggestion) {
  EXPECT_EQ(problems(std::string(kChain) + "\n[load]\nworkers = 2\nwokers = 3\n"),
            std::vector<std::string>{at(7) + "key 'wokers' in [load]: unknown key; did you "
                                             "mean 'workers'?"});
  std::vector<std::string> far = problems(std::string(kChain) + "[link]\ncolour = red\n");
  ASSERT_EQ(far.size(), 1u);
  EXPECT_EQ(far[0], at(5) + "key 'colour' in [link]: unknown key; accepted: type, capacity");
}

TEST_F(ConfigTest, TheManagerHasNoWatchdogKey) {
  std::vector<std::string> found = problems(std::string(kChain) + "[manager]\nwatchdog = 5s\n");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].rfind(at(5) + "key 'watchdog' in [manager]: unknown key", 0), 0u) << found[0];
}

TEST_F(ConfigTest, MissingRequiredKeyNamesTheSectionAndItsLine) {
  EXPECT_EQ(problems("; no name\n[pipeline]\nstages = load, clean, transform, store\n"),
            std::vector<std::string>{at(2) + "[pipeline]: missing required key 'name': the "
                                             "pipeline's name, e.g. name = orders"});
  std::vector<std::string> no_pipeline = problems("[link]\ntype = shm\n");
  ASSERT_EQ(no_pipeline.size(), 1u);
  EXPECT_EQ(no_pipeline[0], path_ + ": missing section [pipeline]; it needs name = NAME and "
                                    "stages = STAGE, STAGE..., e.g. stages = load, clean, "
                                    "transform, store");
  EXPECT_EQ(problems("[pipeline]\nname = t\nstages =\n"),
            std::vector<std::string>{at(3) + "key 'stages' in [pipeline]: empty value; it is "
                                             "required: the chain of stages in order, e.g. "
                                             "stages = load, clean, transform, store"});
}

TEST_F(ConfigTest, BadIntegerIsAnError) {
  EXPECT_EQ(problems(std::string(kChain) + "[load]\nworkers = two\n"),
            std::vector<std::string>{at(5) + "key 'workers' in [load]: 'two' is not a whole "
                                             "number; accepted: 1..8"});
}

TEST_F(ConfigTest, OutOfRangeIntegerIsAnError) {
  EXPECT_EQ(problems(std::string(kChain) + "[load]\nworkers = 12\n"),
            std::vector<std::string>{at(5) + "key 'workers' in [load]: '12' is out of range; "
                                             "accepted: 1..8"});
  EXPECT_EQ(problems(std::string(kChain) + "[link]\ncapacity = 1KiB\n"),
            std::vector<std::string>{at(5) + "key 'capacity' in [link]: '1KiB' is out of range; "
                                             "accepted: 4KiB..1GiB"});
  EXPECT_EQ(problems(std::string(kChain) + "[load]\ndirt = 1.5\n"),
            std::vector<std::string>{at(5) + "key 'dirt' in [load]: '1.5' is out of range; "
                                             "accepted: 0..1"});
}

TEST_F(ConfigTest, BadEnumValueIsAnErrorWithASuggestion) {
  EXPECT_EQ(problems(std::string(kChain) + "[clean]\nrestart = on_failure\n"),
            std::vector<std::string>{at(5) + "key 'restart' in [clean]: 'on_failure' is not "
                                             "accepted; accepted: always, on-failure, never; did "
                                             "you mean 'on-failure'?"});
  EXPECT_EQ(problems(std::string(kChain) + "[link]\ntype = shared\n"),
            std::vector<std::string>{at(5) + "key 'type' in [link]: 'shared' is not accepted; "
                                             "accepted: shm, pipe"});
  EXPECT_EQ(problems(std::string(kChain) + "[manager]\nenabled = ture\n"),
            std::vector<std::string>{at(5) + "key 'enabled' in [manager]: 'ture' is not a "
                                             "boolean; accepted: true, false, yes, no, on, off, "
                                             "1, 0; did you mean 'true'?"});
}

TEST_F(ConfigTest, BadByteUnitShowsTheAcceptedForms) {
  EXPECT_EQ(problems(std::string(kChain) + "[link:clean->transform]\ncapacity = 4M\n"),
            std::vector<std::string>{
                at(5) + "key 'capacity' in [link:clean->transform]: '4M' has an unknown unit "
                        "'M'; accepted: 123, 64KiB, 4MiB, 1GiB (powers of 1024) or 64KB, 4MB, "
                        "1GB (powers of 1000)"});
}

TEST_F(ConfigTest, BadDurationUnitShowsTheAcceptedForms) {
  EXPECT_EQ(problems(std::string(kChain) + "[store]\ncommit_interval = 5 sec\n"),
            std::vector<std::string>{at(5) + "key 'commit_interval' in [store]: '5 sec' has an "
                                             "unknown unit 'sec'; accepted: 250ms, 5s, 2m, 1h (a "
                                             "bare number is seconds)"});
}

TEST_F(ConfigTest, MissingInputFileIsAnErrorNamingKeyAndPath) {
  const std::string missing = (dir_ / "orders.csv").string();
  EXPECT_EQ(problems(std::string(kChain) + "[load]\npath = " + missing + "\n"),
            std::vector<std::string>{at(5) + "key 'path' in [load]: input file '" + missing +
                                     "' does not exist; give an existing file, or leave path "
                                     "empty for synthetic data"});
  EXPECT_EQ(problems(std::string(kChain) + "[load]\npath = " + dir_.string() + "\n"),
            std::vector<std::string>{at(5) + "key 'path' in [load]: input file '" +
                                     dir_.string() + "' is not a regular file"});
}

TEST_F(ConfigTest, ExistingInputFileSetsSourceAndFormat) {
  const std::string input = write("orders.jsonl", "{}\n");
  Result<PipelineConfig> c = load(std::string(kChain) + "[load]\npath = " + input + "\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const ipc::IniSection* load = c->stage("load")->section;
  EXPECT_EQ(load->find("path")->value, input);
  EXPECT_EQ(load->find("format")->value, "jsonl");
  EXPECT_EQ(load->find("source")->value, "jsonl");
  EXPECT_EQ(problems(std::string(kChain) + "[load]\nsource = csv\n"),
            std::vector<std::string>{at(5) + "key 'source' in [load]: source = csv reads a file, "
                                             "but path is empty; set path = FILE, or use source "
                                             "= synthetic"});
}

TEST_F(ConfigTest, MissingOrNonExecutableProgramIsAnError) {
  const std::string chain = "[pipeline]\nname = t\nstages = load, enrich, store\n";
  const std::string missing = (dir_ / "enrich").string();
  EXPECT_EQ(problems(chain + "[enrich]\nexec = " + missing + "\n"),
            std::vector<std::string>{at(5) + "key 'exec' in [enrich]: program '" + missing +
                                     "' does not exist; give the path of an executable file or "
                                     "a built-in (load, clean, transform, store)"});
  const std::string plain = write("plain.sh", "#!/bin/sh\n");
  EXPECT_EQ(problems(chain + "[enrich]\nexec = " + plain + "\n"),
            std::vector<std::string>{at(5) + "key 'exec' in [enrich]: program '" + plain +
                                     "' is not executable (Permission denied); chmod +x it"});
  EXPECT_EQ(problems(chain + "[enrich]\nexec = no-such-program-millrace\n"),
            std::vector<std::string>{at(5) + "key 'exec' in [enrich]: program "
                                             "'no-such-program-millrace' is not a built-in (load, "
                                             "clean, transform, store) and is not an executable "
                                             "in PATH; give its path, e.g. exec = "
                                             "./no-such-program-millrace"});
}

TEST_F(ConfigTest, StageWithoutProgramIsAnError) {
  EXPECT_EQ(problems("[pipeline]\nname = t\nstages = load, enrich, store\n"),
            std::vector<std::string>{at(3) + "key 'stages' in [pipeline]: stage 'enrich' has no "
                                             "section [enrich] and is not a built-in (load, "
                                             "clean, transform, store); add [enrich] with exec = "
                                             "PROGRAM"});
  EXPECT_EQ(problems("[pipeline]\nname = t\nstages = load, claen, store\n"),
            std::vector<std::string>{at(3) + "key 'stages' in [pipeline]: stage 'claen' has no "
                                             "section [claen] and is not a built-in (load, "
                                             "clean, transform, store); add [claen] with exec = "
                                             "PROGRAM; did you mean 'clean'?"});
  EXPECT_EQ(problems("[pipeline]\nname = t\nstages = load, enrich\n[enrich]\nworkers = 2\n"),
            std::vector<std::string>{at(4) + "[enrich]: missing required key 'exec': 'enrich' is "
                                             "not a built-in stage (load, clean, transform, "
                                             "store); name its program, e.g. exec = ./enrich"});
}

TEST_F(ConfigTest, UserProgramStageAcceptsItsOwnKeys) {
  const std::string program = write("enrich.sh", "#!/bin/sh\n", fs::perms::owner_all);
  Result<PipelineConfig> c = load(
      "[pipeline]\nname = t\nstages = load, enrich, store\n"
      "[enrich]\nexec = " + program + "\nworkers = 2\nmodel = small\nrule = a\nrule = b\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  const StageConfig* enrich = c->stage("enrich");
  ASSERT_NE(enrich, nullptr);
  EXPECT_EQ(enrich->builtin, "");
  EXPECT_EQ(enrich->exec, program);
  EXPECT_EQ(enrich->workers, 2);
  EXPECT_EQ(enrich->section->find("model")->value, "small");
  EXPECT_EQ(enrich->section->find_all("rule").size(), 2u);
}

TEST_F(ConfigTest, ExecMayNameABuiltinForASecondStage) {
  Result<PipelineConfig> c = load(
      "[pipeline]\nname = t\nstages = load, clean, clean2, store\n"
      "[clean2]\nexec = clean\ncheck = qty : int 1.. -> bad_qty\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->stage("clean2")->builtin, "clean");
  EXPECT_EQ(c->stage("clean2")->exec, "");
  EXPECT_EQ(c->stage("clean2")->section->find_all("check").size(), 1u);
}

TEST_F(ConfigTest, LinkOverrideMustJoinAdjacentStages) {
  EXPECT_EQ(problems(std::string(kChain) + "[link:load->transform]\ncapacity = 1MiB\n"),
            std::vector<std::string>{at(4) + "[link:load->transform]: 'load' and 'transform' are "
                                             "not adjacent in stages = load, clean, transform, "
                                             "store; a link joins a stage to the next one: "
                                             "load->clean, clean->transform, transform->store"});
  EXPECT_EQ(problems(std::string(kChain) + "[link:clean->load]\n"),
            std::vector<std::string>{at(4) + "[link:clean->load]: 'clean' and 'load' are not "
                                             "adjacent in stages = load, clean, transform, store; "
                                             "a link joins a stage to the next one: load->clean, "
                                             "clean->transform, transform->store; did you mean "
                                             "[link:load->clean]?"});
  EXPECT_EQ(problems(std::string(kChain) + "[link:laod->clean]\n"),
            std::vector<std::string>{at(4) + "[link:laod->clean]: 'laod' is not a stage (stages = "
                                             "load, clean, transform, store); did you mean "
                                             "'load'?"});
  EXPECT_EQ(problems(std::string(kChain) + "[link:load]\n"),
            std::vector<std::string>{at(4) + "[link:load]: expected [link:FROM->TO] naming two "
                                             "adjacent stages, e.g. [link:load->clean]"});
}

TEST_F(ConfigTest, LinkOverrideInheritsTheLinkDefaults) {
  Result<PipelineConfig> c = load(std::string(kChain) +
                                  "[link]\ntype = pipe\ncapacity = 256KiB\n"
                                  "[link:clean->transform]\ncapacity = 1MiB\n");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->link_between("load", "clean"), (LinkConfig{LinkConfig::kPipe, 256 << 10}));
  EXPECT_EQ(c->link_between("clean", "transform"), (LinkConfig{LinkConfig::kPipe, 1 << 20}));
  EXPECT_EQ(c->link_overrides.size(), 1u);
}

TEST_F(ConfigTest, RepeatedSingleValueKeyIsAnError) {
  EXPECT_EQ(problems(std::string(kChain) + "[load]\nworkers = 2\nbatch = 8\nworkers = 3\n"),
            std::vector<std::string>{at(7) + "key 'workers' in [load]: repeated; already set at "
                                             "line 5 and only one value is allowed: remove one of "
                                             "them"});
  EXPECT_EQ(problems(std::string(kChain) + "[table:rates]\nUSD = 1\nUSD = 2\n"),
            std::vector<std::string>{at(6) + "key 'USD' in [table:rates]: repeated; already set "
                                             "at line 5 and only one value is allowed: remove one "
                                             "of them"});
}

TEST_F(ConfigTest, BadStageNamesAreErrors) {
  std::vector<std::string> p =
      problems("[pipeline]\nname = my pipeline\nstages = load, load, bad name, link\n");
  std::vector<std::string> expected = {
      at(2) + "key 'name' in [pipeline]: 'my pipeline' is not a valid name; use letters, "
              "digits, '_' and '-'",
      at(3) + "key 'stages' in [pipeline]: stage 'load' appears twice; give each stage its own "
              "name (a second stage may run the same program: [load2] exec = load)",
      at(3) + "key 'stages' in [pipeline]: stage name 'bad name' is not valid; use letters, "
              "digits, '_' and '-'",
      at(3) + "key 'stages' in [pipeline]: stage name 'link' is reserved for the [link] section; "
              "give the stage another name",
  };
  EXPECT_EQ(p, expected);
}

TEST_F(ConfigTest, BackoffLongerThanBackoffMaxIsAnError) {
  EXPECT_EQ(problems(std::string(kChain) + "[store]\nbackoff = 10s\n"),
            std::vector<std::string>{at(5) + "key 'backoff' in [store]: backoff 10s is longer "
                                             "than backoff_max 5s; make backoff <= backoff_max"});
}

TEST_F(ConfigTest, CollectsEveryProblemInLineOrder) {
  std::vector<std::string> p = problems(
      "[pipeline]\n"                              // 1
      "name = t\n"                                // 2
      "stages = load, clean, transform, store\n"  // 3
      "[load]\n"                                  // 4
      "workers = 9\n"                             // 5
      "wokers = 1\n"                              // 6
      "[laod]\n"                                  // 7
      "[link]\n"                                  // 8
      "capacity = lots\n"                         // 9
      "[clean]\n"                                 // 10
      "restart = sometimes\n",                    // 11
      {"store.kind=parquet"});
  ASSERT_EQ(p.size(), 6u);
  EXPECT_TRUE(p[0].starts_with(at(5) + "key 'workers'")) << p[0];
  EXPECT_TRUE(p[1].starts_with(at(6) + "key 'wokers'")) << p[1];
  EXPECT_TRUE(p[2].starts_with(at(7) + "[laod]")) << p[2];
  EXPECT_TRUE(p[3].starts_with(at(9) + "key 'capacity'")) << p[3];
  EXPECT_TRUE(p[4].starts_with(at(11) + "key 'restart'")) << p[4];
  EXPECT_TRUE(p[5].starts_with("--set store.kind=parquet: key 'kind' in [store]")) << p[5];
}

TEST_F(ConfigTest, SyntaxErrorsComeBackWithTheirLines) {
  Result<PipelineConfig> c = load("[pipeline]\nname = t\nstages load\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, static_cast<int>(ipc::IniError::kSyntax));
  EXPECT_EQ(c.error().message,
            at(3) + "expected 'key = value', a [section] header or a comment, found 'stages load'");
}

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST_F(ConfigTest, OverrideChangesAValue) {
  Result<PipelineConfig> c =
      load(std::string(kChain) + "[load]\nworkers = 2\n", {"load.workers=3", "pipeline.name=u"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->stage("load")->workers, 3);
  EXPECT_EQ(c->name, "u");
  const ipc::IniEntry* workers = c->stage("load")->section->find("workers");
  EXPECT_EQ(workers->file, "--set");
}

TEST_F(ConfigTest, OverrideOfAnUnknownKeyNamesTheSetOption) {
  EXPECT_EQ(problems(kChain, {"load.wokers=3"}),
            std::vector<std::string>{"--set load.wokers=3: key 'wokers' in [load]: unknown key; "
                                     "did you mean 'workers'?"});
  EXPECT_EQ(problems(kChain, {"lod.workers=3"}),
            std::vector<std::string>{"--set lod.workers=3: [lod]: unknown section; did you mean "
                                     "[load]?"});
  EXPECT_EQ(problems(kChain, {"load.workers=many"}),
            std::vector<std::string>{"--set load.workers=many: key 'workers' in [load]: 'many' "
                                     "is not a whole number; accepted: 1..8"});
  std::vector<std::string> malformed = problems(kChain, {"loadworkers=3"});
  ASSERT_EQ(malformed.size(), 1u);
  EXPECT_TRUE(malformed[0].starts_with("--set 'loadworkers=3': no '.' between section and key"))
      << malformed[0];
}

TEST_F(ConfigTest, OverrideCreatesAKeyAndASection) {
  Result<PipelineConfig> c = load(kChain, {"clean.workers=2", "store.batch_rows=100"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->stage("clean")->workers, 2);
  EXPECT_EQ(c->stage("store")->section->find("batch_rows")->value, "100");
}

TEST_F(ConfigTest, OverrideAddressesLinkAndTableSections) {
  Result<PipelineConfig> c = load(std::string(kChain) + "[table:rates]\nUSD = 1000000\n",
                                  {"link:clean->transform.capacity=1MiB",
                                   "link:clean->transform.type=pipe", "table:rates.EUR=1080000",
                                   "table:fees.USD=3"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->link_between("clean", "transform"), (LinkConfig{LinkConfig::kPipe, 1 << 20}));
  EXPECT_EQ(c->link_between("load", "clean"), c->link_defaults);
  EXPECT_EQ(c->resolved.section("table:rates")->find("EUR")->value, "1080000");
  EXPECT_EQ(c->resolved.section("table:rates")->find("USD")->value, "1000000");
  EXPECT_EQ(c->resolved.section("table:fees")->find("USD")->value, "3");
}

// ---------------------------------------------------------------------------------------------
// The stage validator hook.

TEST_F(ConfigTest, StageValidatorProblemsAreReported) {
  int calls = 0;
  StageValidator validator = [&calls](const StageConfig& stage, const PipelineConfig& config) {
    ++calls;
    EXPECT_EQ(config.stages.size(), 4u);
    std::vector<std::string> out;
    if (stage.builtin != "clean") return out;
    for (const ipc::IniEntry* e : stage.section->find_all("check")) {
      if (e->value.find("frobnicate") != std::string::npos) {
        out.push_back(config_problem(*e, stage.name, "unknown op 'frobnicate'"));
      }
    }
    return out;
  };
  Result<PipelineConfig> c = load(std::string(kChain) +
                                      "[clean]\ncheck = qty : int -> bad_qty\n"
                                      "check = qty : frobnicate -> bad_qty\n",
                                  {}, validator);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(c.error().message, at(6) + "key 'check' in [clean]: unknown op 'frobnicate'");

  set_stage_validator(validator);
  Result<PipelineConfig> via_global = load_config(path_, {});
  set_stage_validator({});
  ASSERT_FALSE(via_global.ok());
  EXPECT_EQ(calls, 8);
}

// ---------------------------------------------------------------------------------------------
// The fingerprint.

constexpr const char* kStoredSettings =
    "[load]\nsynthetic_rows = 1000\ngen = qty : int 1..20\n"
    "[clean]\ncheck = qty : int 1..1000 -> bad_qty\n"
    "[transform]\nderive = day = date(ts)\n"
    "[table:rates]\nUSD = 1000000\n"
    "[store]\ntable = orders\ndedup_key = order_id\n";

TEST_F(ConfigTest, FingerprintIgnoresHowTheRunGoes) {
  Result<PipelineConfig> base = load(std::string(kChain) + kStoredSettings);
  ASSERT_TRUE(base.ok()) << base.error().message;
  const std::string fp = config_fingerprint(base.value());
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos);

  Result<PipelineConfig> how = load(std::string(kChain) + kStoredSettings,
                                    {"load.workers=4", "clean.workers=2", "link.type=pipe",
                                     "link.capacity=64KiB", "link:clean->transform.capacity=1MiB",
                                     "pipeline.run_dir=elsewhere", "clean.restart=never",
                                     "clean.watchdog=0", "store.batch=64", "load.rate_limit=1000",
                                     "store.path=/tmp/other.db", "store.batch_rows=10",
                                     "manager.enabled=false", "pipeline.name=renamed"});
  ASSERT_TRUE(how.ok()) << how.error().message;
  EXPECT_EQ(config_fingerprint(how.value()), fp);
}

TEST_F(ConfigTest, FingerprintIgnoresLayoutAndExplicitDefaults) {
  Result<PipelineConfig> base = load(std::string(kChain) + kStoredSettings);
  ASSERT_TRUE(base.ok());
  Result<PipelineConfig> same = load(
      "[store]\ndedup_key=order_id\ntable=orders\nkind = SQLITE\n"
      "[table:rates]\nUSD=1000000\n"
      "; comment\n[pipeline]\nname=t\nstages=load,clean,transform,store\n"
      "[transform]\nderive = day = date(ts)\n"
      "[clean]\ncheck = qty : int 1..1000 -> bad_qty\ntrim = all\n"
      "[load]\nheader = yes\ngen = qty : int 1..20\nsynthetic_rows = 1000\nsynthetic_seed=42\n");
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_EQ(config_fingerprint(same.value()), config_fingerprint(base.value()));
}

TEST_F(ConfigTest, FingerprintChangesWithWhatIsStored) {
  Result<PipelineConfig> base = load(std::string(kChain) + kStoredSettings);
  ASSERT_TRUE(base.ok());
  const std::string fp = config_fingerprint(base.value());
  const std::vector<std::string> changes = {
      "clean.check=qty : int 1..100 -> bad_qty", "transform.derive=day = hour(ts)",
      "table:rates.USD=999999",                  "store.dedup_key=sku",
      "store.table=orders2",                     "load.synthetic_seed=7",
      "load.dirt=0.5",                           "clean.trim=none",
  };
  for (const std::string& change : changes) {
    Result<PipelineConfig> c = load(std::string(kChain) + kStoredSettings, {change});
    ASSERT_TRUE(c.ok()) << change << ": " << c.error().message;
    EXPECT_NE(config_fingerprint(c.value()), fp) << change;
  }
}

// ---------------------------------------------------------------------------------------------
// The shipped config and `millrace check`.

TEST_F(ConfigTest, OrdersConfigValidates) {
  const std::string orders = std::string(MILLRACE_SOURCE_DIR) + "/configs/orders.ini";
  Result<PipelineConfig> c = load_config(orders, {}, {});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->name, "orders");
  ASSERT_EQ(c->stages.size(), 4u);
  EXPECT_EQ(c->link_between("clean", "transform").capacity, 1u << 20);
  EXPECT_EQ(c->link_between("load", "clean").capacity, 4u << 20);
  const ipc::IniSection* clean = c->stage("clean")->section;
  EXPECT_EQ(clean->find_all("check").size(), 7u);
  EXPECT_EQ(c->stage("load")->section->find_all("gen").size(), 9u);
  EXPECT_EQ(c->stage("transform")->section->find_all("derive").size(), 9u);
  EXPECT_EQ(c->stage("load")->section->find("path")->value, "");
  EXPECT_EQ(c->resolved.section("table:rates")->entries.size(), 5u);
}

TEST_F(ConfigTest, CheckPrintsASummaryAndExitsZeroWhenValid) {
  Invocation inv;
  inv.command = Command::kCheck;
  inv.config_path = std::string(MILLRACE_SOURCE_DIR) + "/configs/orders.ini";
  testing::internal::CaptureStdout();
  int rc = run_check(inv);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, kExitOk);
  EXPECT_EQ(out, inv.config_path +
                     ": ok (4 stages, 4 workers, links: shm 4 MiB, clean->transform shm 1 MiB)\n");
}

TEST_F(ConfigTest, CheckPrintsEveryProblemAndExitsTwoWhenInvalid) {
  write("p.ini", std::string(kChain) + "[load]\nwokers = 2\n");
  Invocation inv;
  inv.command = Command::kCheck;
  inv.config_path = path_;
  inv.overrides = {"link.capacity=4M"};
  testing::internal::CaptureStderr();
  int rc = run_check(inv);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, kExitUsage);
  std::vector<std::string> lines = lines_of(err);
  ASSERT_EQ(lines.size(), 3u) << err;
  EXPECT_EQ(lines[0], at(5) + "key 'wokers' in [load]: unknown key; did you mean 'workers'?");
  EXPECT_TRUE(lines[1].starts_with("--set link.capacity=4M: key 'capacity' in [link]: '4M' has "
                                   "an unknown unit 'M'"))
      << lines[1];
  EXPECT_EQ(lines[2], path_ + ": invalid (2 problems)");
}

}  // namespace
}  // namespace millrace::launcher
