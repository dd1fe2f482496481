// The pipeline config: its schema, its validation and the typed result the launcher runs.
//
// load_config() reads the INI file, applies --set overrides, checks every section and key
// against the schema table (config_schema()), and returns either a PipelineConfig or one Error
// listing every problem, one per line, as
//     FILE:LINE: key 'x' in [section]: what is wrong; what is accepted; did you mean 'y'?
// (a problem in an override names `--set section.key=value` instead of FILE:LINE).
//
// Paths in the config (run_dir, input and output files, programs) are relative to the current
// directory of `millrace`; the typed and resolved configs hold them as absolute paths, so a
// stage started elsewhere reads the same files.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipc/ini.hpp"
#include "ipc/result.hpp"

namespace millrace::launcher {

// Error codes of the config (Error::component == "config"); ipc::IniError codes pass through
// for an unreadable file or bad INI syntax.
enum class ConfigError : int {
  kInvalid = 100,  // the file is INI, but one or more settings are wrong
};

// ---------------------------------------------------------------------------------------------
// The schema: what each section accepts. Data, read by the validator, the resolver and the
// fingerprint alike.

enum class ValueType {
  kString,    // any text
  kName,      // [A-Za-z0-9_-]+
  kInt,       // whole number, bounds in min/max
  kReal,      // decimal number, bounds in min/max
  kBool,      // true/false, yes/no, on/off, 1/0
  kEnum,      // one of `choices`
  kBytes,     // 123, 64KiB, 4MiB, 1GiB, 64KB, 4MB, 1GB
  kDuration,  // 250ms, 5s, 2m, 1h; a bare number is seconds
  kList,      // comma-separated
  kPath,      // a file or directory, relative to the current directory
  kProgram,   // a built-in stage name (load, clean, transform, store) or an executable
  kLine,      // one line of a stage's mini-language, checked by the stage validator
  kLines,     // a repeatable kLine (`check`, `derive`, `gen`): every entry counts, in order
};

struct KeySpec {
  std::string_view key = {};
  ValueType type = ValueType::kString;
  std::string_view default_value = {};  // text, read as a user's text would be; "" = empty
  bool required = false;
  std::string_view min = {};      // kInt, kReal, kBytes, kDuration: inclusive bound; "" = none
  std::string_view max = {};
  std::string_view choices = {};  // kEnum: "a|b|c"
  bool fingerprint = false;       // the value changes WHAT is stored (see config_fingerprint)
  std::string_view help = {};     // what the key is, shown when it is missing
};

enum class SectionKind {
  kPipeline,      // [pipeline]
  kLink,          // [link]: defaults of every link
  kLinkOverride,  // [link:FROM->TO]: one link, FROM and TO adjacent in `stages`
  kManager,       // [manager]
  kStage,         // [STAGE] for every stage in `stages`: keys every stage accepts
  kLoad,          // extra keys of a stage running the built-in program of that name
  kClean,
  kTransform,
  kStore,
  kTable,         // [table:NAME]: free keys, for lookup()
};

struct SectionSchema {
  SectionKind kind;
  std::string_view name;          // as a user writes it: "pipeline", "link:FROM->TO", "load"...
  std::span<const KeySpec> keys;  // kStage keys apply to every stage, built-in keys add to them
  bool free_keys = false;         // any key is accepted (tables; stages running a user program)
  std::string_view help;
};

std::span<const SectionSchema> config_schema();
// The schema of one section kind.
const SectionSchema& section_schema(SectionKind kind);

inline constexpr std::string_view kBuiltinStages[] = {"load", "clean", "transform", "store"};

// ---------------------------------------------------------------------------------------------
// The typed config.

enum class RestartPolicy { kAlways, kOnFailure, kNever };

struct LinkConfig {
  enum Type { kShm, kPipe };
  Type type = kShm;
  std::uint64_t capacity = 4u << 20;  // ring bytes, or the pipe buffer size

  // Pipes default to 1 MiB: /proc/sys/fs/pipe-max-size, the most an unprivileged process may
  // ask for without changing the system.
  static constexpr std::uint64_t kDefaultPipeCapacity = 1u << 20;
  friend bool operator==(const LinkConfig&, const LinkConfig&) = default;
};

// Restart keys shared by [manager] and every stage (Erlang/OTP-like intensity and period,
// systemd-like watchdog).
struct RestartConfig {
  RestartPolicy restart = RestartPolicy::kOnFailure;
  int max_restarts = 5;                          // within restart_window, then the run stops
  std::chrono::milliseconds restart_window{60000};
  std::chrono::milliseconds backoff{100};        // first delay; doubles, with jitter
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds watchdog{10000};     // 0 = off
};

struct ManagerConfig : RestartConfig {
  bool enabled = true;
};

struct StageConfig : RestartConfig {
  std::string name;
  std::string exec;     // absolute path of a user program; empty for a built-in
  std::string builtin;  // "load", "clean", "transform", "store", or empty for a user program
  int workers = 1;
  int batch = 512;      // records per batch
  // The stage's section in PipelineConfig::resolved: every key of the schema with its
  // effective value (defaults filled in, canonical text), plus a user program's own keys; the
  // file and line of each entry are the user's (line 0 for defaults). Never null in a config
  // returned by load_config. Points into the PipelineConfig that holds this StageConfig.
  const ipc::IniSection* section = nullptr;
};

// Move-only: the stages' `section` pointers point into `resolved`, which a move keeps in
// place and a copy would not.
struct PipelineConfig {
  PipelineConfig() = default;
  PipelineConfig(PipelineConfig&&) noexcept = default;
  PipelineConfig& operator=(PipelineConfig&&) noexcept = default;
  PipelineConfig(const PipelineConfig&) = delete;
  PipelineConfig& operator=(const PipelineConfig&) = delete;

  std::string name;
  std::vector<StageConfig> stages;  // the chain, in order
  LinkConfig link_defaults;
  std::map<std::pair<std::string, std::string>, LinkConfig> link_overrides;  // (from, to)
  ManagerConfig manager;
  std::chrono::milliseconds drain_timeout{30000};
  std::filesystem::path run_dir;      // absolute
  std::filesystem::path config_path;  // absolute
  ipc::IniDocument document;  // the file as written, with the overrides applied
  ipc::IniDocument resolved;  // every known section and key with its effective value: what
                              // stages read, so no process keeps its own copy of a default

  // The link from stage `from` to the next stage `to`: its override, else the defaults.
  [[nodiscard]] LinkConfig link_between(std::string_view from, std::string_view to) const;
  [[nodiscard]] const StageConfig* stage(std::string_view name) const;
  [[nodiscard]] int total_workers() const;
};

// Deep validation of one stage's own keys (the check/derive/gen mini-languages), supplied by
// the stages library. Returns one complete line per problem, made with config_problem() so it
// reads like every other config error; empty when the stage is fine.
using StageValidator =
    std::function<std::vector<std::string>(const StageConfig&, const PipelineConfig&)>;

// Sets the validator that load_config(path, overrides) runs on every stage (process-wide; set
// it once at start-up, before any load_config).
void set_stage_validator(StageValidator validator);

// Reads, overrides, validates and resolves the config at `path`. `overrides` are
// "section.key=value" strings from --set, applied in order and validated like the file.
// Errors: ipc::IniError::kUnreadable, ipc::IniError::kSyntax, ConfigError::kInvalid; the
// message lists every problem, one per line.
Result<PipelineConfig> load_config(const std::string& path, const std::vector<std::string>& overrides);
Result<PipelineConfig> load_config(const std::string& path, const std::vector<std::string>& overrides,
                                   const StageValidator& validator);

// One problem line: "FILE:LINE: key 'KEY' in [SECTION]: PROBLEM", or
// "--set SECTION.KEY=VALUE: key 'KEY' in [SECTION]: PROBLEM" for an override.
std::string config_problem(const ipc::IniEntry& entry, std::string_view section,
                           std::string_view problem);

// A stable hash (FNV-1a 64, 16 hex digits) of the settings that change WHAT a run stores, so
// a run can refuse to resume a database written under other rules. It covers, with defaults
// filled in and values in canonical form:
//   - the chain: stage names in order and each stage's program (built-in name or exec path);
//   - [load]: source, path, format, columns, header, synthetic_rows, synthetic_seed, gen, dirt;
//   - [clean]: trim, fields, check;  [transform]: derive;
//   - [store]: kind, table, columns, reject_table, dedup_key, dedup_reason;
//   - every [table:NAME] and every key of a stage that runs a user program (its meaning is
//     unknown here), except the keys every stage accepts.
// It leaves out what only changes HOW a run goes: workers, batch, restart and watchdog keys,
// [link] and [link:*], [manager], run_dir, drain_timeout, the pipeline's name,
// load.rate_limit, store.path, store.batch_rows, store.commit_interval.
std::string config_fingerprint(const PipelineConfig& config);

// Damerau-Levenshtein (optimal string alignment) distance, for "did you mean" suggestions.
int edit_distance(std::string_view a, std::string_view b);

}  // namespace millrace::launcher
