#include "launcher/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>
#include <system_error>
#include <variant>

#include "ipc/posix_call.hpp"

namespace millrace::launcher {
namespace {

using ipc::IniDocument;
using ipc::IniEntry;
using ipc::IniSection;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// The schema table.

constexpr std::string_view kDefaultFile = "(default)";
constexpr std::string_view kMaxInt64 = "9223372036854775807";

template <std::size_t N, std::size_t M>
constexpr std::array<KeySpec, N + M> concat(const KeySpec (&a)[N], const KeySpec (&b)[M]) {
  std::array<KeySpec, N + M> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = a[i];
  for (std::size_t i = 0; i < M; ++i) out[N + i] = b[i];
  return out;
}

constexpr KeySpec kPipelineKeys[] = {
    {.key = "name", .type = ValueType::kName, .required = true,
     .help = "the pipeline's name, e.g. name = orders"},
    {.key = "stages", .type = ValueType::kList, .required = true,
     .help = "the chain of stages in order, e.g. stages = load, clean, transform, store"},
    {.key = "run_dir", .type = ValueType::kPath,
     .help = "directory of the lock, sockets and logs; empty: run/NAME"},
    {.key = "drain_timeout", .type = ValueType::kDuration, .default_value = "30s", .min = "0",
     .max = "24h", .help = "how long a drain may take before the run stops at once"},
};

constexpr KeySpec kLinkKeys[] = {
    {.key = "type", .type = ValueType::kEnum, .default_value = "shm", .choices = "shm|pipe",
     .help = "shared-memory ring or pipe"},
    {.key = "capacity", .type = ValueType::kBytes, .default_value = "4MiB", .min = "4KiB",
     .max = "1GiB", .help = "ring bytes, or the pipe buffer size"},
};

constexpr KeySpec kRestartKeys[] = {
    {.key = "restart", .type = ValueType::kEnum, .default_value = "on-failure",
     .choices = "always|on-failure|never", .help = "when a dead worker is restarted"},
    {.key = "max_restarts", .type = ValueType::kInt, .default_value = "5", .min = "0",
     .max = "1000", .help = "restarts allowed within restart_window before the run stops"},
    {.key = "restart_window", .type = ValueType::kDuration, .default_value = "60s", .min = "1s",
     .max = "24h", .help = "the period max_restarts counts over"},
    {.key = "backoff", .type = ValueType::kDuration, .default_value = "100ms", .min = "0",
     .max = "1h", .help = "first restart delay; doubles, with jitter, up to backoff_max"},
    {.key = "backoff_max", .type = ValueType::kDuration, .default_value = "5s", .min = "0",
     .max = "1h", .help = "longest restart delay"},
};

constexpr KeySpec kManagerOwnKeys[] = {
    {.key = "enabled", .type = ValueType::kBool, .default_value = "true",
     .help = "start the shared-object manager"},
};

// `watchdog` is for stages only: the manager beats no heartbeat (its liveness is its process,
// and a hung manager costs its clients a timeout each, after which they carry on without it).
constexpr KeySpec kStageOwnKeys[] = {
    {.key = "exec", .type = ValueType::kProgram,
     .help = "the program: a built-in (load, clean, transform, store) or an executable file; "
             "default: the built-in of the stage's name"},
    {.key = "workers", .type = ValueType::kInt, .default_value = "1", .min = "1", .max = "8",
     .help = "worker processes of the stage"},
    {.key = "batch", .type = ValueType::kInt, .default_value = "512", .min = "1",
     .max = "65536", .help = "records per batch"},
    {.key = "watchdog", .type = ValueType::kDuration, .default_value = "10s", .min = "0",
     .max = "1h", .help = "restart a worker whose heartbeat is older; 0 = off"},
};

constexpr auto kManagerKeys = concat(kManagerOwnKeys, kRestartKeys);
constexpr auto kStageKeys = concat(kStageOwnKeys, kRestartKeys);

constexpr KeySpec kLoadKeys[] = {
    {.key = "source", .type = ValueType::kEnum, .default_value = "synthetic",
     .choices = "synthetic|csv|jsonl", .fingerprint = true,
     .help = "where records come from; a non-empty path overrides it"},
    {.key = "path", .type = ValueType::kPath, .fingerprint = true,
     .help = "input file; when set it is the input whatever source says"},
    {.key = "format", .type = ValueType::kEnum, .choices = "csv|jsonl", .fingerprint = true,
     .help = "format of path; empty: from the extension (.jsonl, .ndjson), else csv"},
    {.key = "columns", .type = ValueType::kList, .fingerprint = true,
     .help = "field names, in order"},
    {.key = "header", .type = ValueType::kBool, .default_value = "true", .fingerprint = true,
     .help = "csv: the first record is a header equal to columns"},
    {.key = "rate_limit", .type = ValueType::kInt, .default_value = "0", .min = "0",
     .max = "1000000000", .help = "records/s, 0 = unlimited"},
    {.key = "synthetic_rows", .type = ValueType::kInt, .default_value = "200000", .min = "0",
     .max = kMaxInt64, .fingerprint = true, .help = "records the synthetic source makes"},
    {.key = "synthetic_seed", .type = ValueType::kInt, .default_value = "42", .min = "0",
     .max = kMaxInt64, .fingerprint = true, .help = "seed of the synthetic source"},
    {.key = "gen", .type = ValueType::kLines, .fingerprint = true,
     .help = "how the synthetic source makes one field (repeatable)"},
    {.key = "dirt", .type = ValueType::kReal, .default_value = "0", .min = "0", .max = "1",
     .fingerprint = true, .help = "probability that a synthetic record carries a defect"},
};

constexpr KeySpec kCleanKeys[] = {
    {.key = "trim", .type = ValueType::kString, .default_value = "all", .fingerprint = true,
     .help = "all, none, or a comma list of columns whose spaces and tabs are trimmed"},
    {.key = "fields", .type = ValueType::kLine, .fingerprint = true,
     .help = "exact field count and reject reason, e.g. 9 -> bad_field_count"},
    {.key = "check", .type = ValueType::kLines, .fingerprint = true,
     .help = "FIELD : OP [ARGS], ... -> REASON (repeatable)"},
};

constexpr KeySpec kTransformKeys[] = {
    {.key = "derive", .type = ValueType::kLines, .fingerprint = true,
     .help = "NAME = FUNC(ARGS) (repeatable)"},
    {.key = "error_reason", .type = ValueType::kName, .default_value = "transform_error",
     .fingerprint = true, .help = "reject reason of a record a derivation cannot take"},
};

constexpr KeySpec kStoreKeys[] = {
    {.key = "kind", .type = ValueType::kEnum, .default_value = "sqlite",
     .choices = "sqlite|csv|jsonl", .fingerprint = true, .help = "what the store writes"},
    {.key = "path", .type = ValueType::kPath,
     .help = "output file; empty: RUN_DIR/NAME.db (.csv, .jsonl for those kinds)"},
    {.key = "table", .type = ValueType::kName, .default_value = "records", .fingerprint = true,
     .help = "table of stored records"},
    {.key = "columns", .type = ValueType::kList, .fingerprint = true,
     .help = "column definitions, e.g. order_id INTEGER PRIMARY KEY; empty: every field as text"},
    {.key = "reject_table", .type = ValueType::kName, .default_value = "rejects",
     .fingerprint = true, .help = "table of rejected records"},
    {.key = "dedup_key", .type = ValueType::kString, .fingerprint = true,
     .help = "field whose first occurrence wins; empty: no dedup"},
    {.key = "dedup_reason", .type = ValueType::kString, .default_value = "duplicate",
     .fingerprint = true, .help = "reject reason of a duplicate"},
    {.key = "reject_path", .type = ValueType::kPath,
     .help = "csv/jsonl: file of rejects; empty: PATH.rejects.csv (.jsonl)"},
    {.key = "position_column", .type = ValueType::kName, .default_value = "record_no",
     .fingerprint = true, .help = "column holding each row's source position (for dedup_key)"},
    {.key = "batch_rows", .type = ValueType::kInt, .default_value = "5000", .min = "1",
     .max = "1000000", .help = "rows per transaction"},
    {.key = "commit_interval", .type = ValueType::kDuration, .default_value = "200ms",
     .min = "0", .max = "1h", .help = "longest time before a partial batch is committed"},
};

constexpr SectionSchema kSchema[] = {
    {SectionKind::kPipeline, "pipeline", kPipelineKeys, false, "the pipeline: name and chain"},
    {SectionKind::kLink, "link", kLinkKeys, false, "defaults of every link"},
    {SectionKind::kLinkOverride, "link:FROM->TO", kLinkKeys, false,
     "one link, between adjacent stages FROM and TO"},
    {SectionKind::kManager, "manager", kManagerKeys, false, "the shared-object manager"},
    {SectionKind::kStage, "STAGE", kStageKeys, false, "keys every stage accepts"},
    {SectionKind::kLoad, "load", kLoadKeys, false, "the built-in source"},
    {SectionKind::kClean, "clean", kCleanKeys, false, "the built-in record checks"},
    {SectionKind::kTransform, "transform", kTransformKeys, false, "the built-in derivations"},
    {SectionKind::kStore, "store", kStoreKeys, false, "the built-in sink"},
    {SectionKind::kTable, "table:NAME", {}, true, "a lookup table: KEY = VALUE"},
};

constexpr SectionKind kBuiltinKinds[] = {SectionKind::kLoad, SectionKind::kClean,
                                         SectionKind::kTransform, SectionKind::kStore};
static_assert(std::size(kBuiltinKinds) == std::size(kBuiltinStages),
              "every built-in stage needs its section kind");

const SectionSchema* builtin_schema(std::string_view builtin) {
  for (std::size_t i = 0; i < std::size(kBuiltinStages); ++i) {
    if (kBuiltinStages[i] == builtin) return &section_schema(kBuiltinKinds[i]);
  }
  return nullptr;
}

bool is_builtin(std::string_view name) { return builtin_schema(name) != nullptr; }

const KeySpec* find_spec(std::span<const KeySpec> keys, std::string_view key) {
  for (const KeySpec& k : keys) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out.append(sep);
    out.append(s);
  }
  return out;
}

std::vector<std::string> split_choices(std::string_view choices) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= choices.size()) {
    std::size_t bar = choices.find('|', pos);
    if (bar == std::string_view::npos) bar = choices.size();
    out.emplace_back(choices.substr(pos, bar - pos));
    pos = bar + 1;
  }
  return out;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_name(std::string_view text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

// The candidate closest to `word` within distance 2 (and closer than the candidate's length,
// so one-letter keys are not suggested for everything), if any.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  int best_distance = 3;
  for (const std::string& c : candidates) {
    int d = edit_distance(lower(word), lower(c));
    if (d < best_distance && d < static_cast<int>(c.size())) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

std::string builtin_list() {
  std::vector<std::string> names(std::begin(kBuiltinStages), std::end(kBuiltinStages));
  return join(names, ", ");
}

// Where a section or an entry came from, as an error line starts.
std::string where(const IniEntry& e, std::string_view section) {
  if (e.file == ipc::kOverrideFile) {
    return "--set " + std::string(section) + "." + e.key + "=" + e.value;
  }
  if (e.line == 0) return e.file;
  return e.file + ":" + std::to_string(e.line);
}

std::string where(const IniSection& s) {
  if (s.file == ipc::kOverrideFile) {
    if (s.entries.empty()) return "--set " + s.name;
    return where(s.entries.front(), s.name);
  }
  if (s.line == 0) return s.file;
  return s.file + ":" + std::to_string(s.line);
}

// ---------------------------------------------------------------------------------------------
// Problems, collected; every one of them is reported.

class Problems {
 public:
  void at_entry(const IniEntry& e, std::string_view section, std::string_view what) {
    add(e.file == ipc::kOverrideFile, e.line, config_problem(e, section, what));
  }
  void at_section(const IniSection& s, std::string_view what) {
    add(s.file == ipc::kOverrideFile, s.line, where(s) + ": [" + s.name + "]: " + std::string(what));
  }
  void at_file(std::string_view file, std::string_view what) {
    add(false, 0, std::string(file) + ": " + std::string(what));
  }
  void add_line(bool from_override, int line, std::string text) {
    add(from_override, line, std::move(text));
  }

  [[nodiscard]] bool empty() const { return list_.empty(); }

  // The file's problems in line order, then the overrides' in the order given.
  [[nodiscard]] std::vector<std::string> sorted() const {
    std::vector<Problem> list = list_;
    std::stable_sort(list.begin(), list.end(), [](const Problem& a, const Problem& b) {
      if (a.from_override != b.from_override) return !a.from_override;
      return a.from_override ? false : a.line < b.line;
    });
    std::vector<std::string> out;
    out.reserve(list.size());
    for (Problem& p : list) out.push_back(std::move(p.text));
    return out;
  }

 private:
  struct Problem {
    bool from_override;
    int line;
    std::string text;
  };
  void add(bool from_override, int line, std::string text) {
    list_.push_back(Problem{from_override, line, std::move(text)});
  }
  std::vector<Problem> list_;
};

// ---------------------------------------------------------------------------------------------
// Reading one section against its keys.

using Value = std::variant<std::monostate, std::string, std::int64_t, double, bool, std::uint64_t,
                           std::chrono::milliseconds, std::vector<std::string>>;

struct ResolvedKey {
  const KeySpec* spec = nullptr;
  Value value;
  std::string text;                      // canonical text (not for kLines)
  std::vector<const IniEntry*> entries;  // the user's: every one for kLines, else the last
};

struct ReadSection {
  std::string name;
  const IniSection* source = nullptr;  // null: the section is not in the file
  std::vector<ResolvedKey> keys;       // in schema order
  std::vector<const IniEntry*> extra;  // keys outside the schema (free sections)

  [[nodiscard]] const ResolvedKey& get(std::string_view key) const {
    for (const ResolvedKey& k : keys) {
      if (k.spec->key == key) return k;
    }
    assert(false && "ReadSection::get: key not in the section's schema");
    return keys.front();
  }
  ResolvedKey& get(std::string_view key) {
    return const_cast<ResolvedKey&>(std::as_const(*this).get(key));
  }
  [[nodiscard]] const IniEntry* entry(std::string_view key) const {
    const ResolvedKey& k = get(key);
    return k.entries.empty() ? nullptr : k.entries.back();
  }
  template <typename T>
  [[nodiscard]] const T& as(std::string_view key) const {
    const Value& v = get(key).value;
    assert(std::holds_alternative<T>(v) && "ReadSection::as: wrong type for key");
    return std::get<T>(v);
  }
};

// The error of a value outside [min, max], or nullopt.
template <typename T, typename Parse>
std::optional<std::string> range_problem(const KeySpec& spec, std::string_view text, T value,
                                         Parse parse) {
  std::optional<T> lo;
  std::optional<T> hi;
  if (!spec.min.empty()) {
    auto r = parse(spec.min);
    assert(r.ok() && "schema: bad min");
    lo = r.value();
  }
  if (!spec.max.empty()) {
    auto r = parse(spec.max);
    assert(r.ok() && "schema: bad max");
    hi = r.value();
  }
  if ((lo && value < *lo) || (hi && value > *hi)) {
    std::string accepted;
    if (lo && hi) {
      accepted = std::string(spec.min) + ".." + std::string(spec.max);
    } else if (lo) {
      accepted = "at least " + std::string(spec.min);
    } else {
      accepted = "at most " + std::string(spec.max);
    }
    return "'" + std::string(text) + "' is out of range; accepted: " + accepted;
  }
  return std::nullopt;
}

std::string range_hint(const KeySpec& spec) {
  if (!spec.min.empty() && !spec.max.empty()) {
    return "; accepted: " + std::string(spec.min) + ".." + std::string(spec.max);
  }
  return "";
}

std::string canonical_real(double v) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  assert(ec == std::errc{} && "to_chars(double) into 64 bytes");
  return std::string(buf, ptr);
}

std::string absolute_path(std::string_view text) {
  std::error_code ec;
  fs::path p = fs::absolute(fs::path(text), ec);
  if (ec) return std::string(text);
  return p.lexically_normal().string();
}

// Parses `text` as `spec` says. Returns the problem, or fills `value` and `canonical`.
std::optional<std::string> parse_value(const KeySpec& spec, std::string_view text, Value& value,
                                       std::string& canonical) {
  switch (spec.type) {
    case ValueType::kString:
    case ValueType::kLine:
    case ValueType::kProgram:
      value = std::string(text);
      canonical = std::string(text);
      return std::nullopt;
    case ValueType::kPath:
      canonical = text.empty() ? std::string() : absolute_path(text);
      value = canonical;
      return std::nullopt;
    case ValueType::kName:
      if (!(text.empty() && spec.default_value.empty()) && !is_name(text)) {
        return "'" + std::string(text) + "' is not a valid name; use letters, digits, '_' and '-'";
      }
      value = std::string(text);
      canonical = std::string(text);
      return std::nullopt;
    case ValueType::kInt: {
      Result<std::int64_t> r = ipc::parse_int(text);
      if (!r) return r.error().message + range_hint(spec);
      if (auto p = range_problem(spec, text, r.value(), ipc::parse_int)) return p;
      value = r.value();
      canonical = std::to_string(r.value());
      return std::nullopt;
    }
    case ValueType::kReal: {
      Result<double> r = ipc::parse_real(text);
      if (!r) return r.error().message + range_hint(spec);
      if (auto p = range_problem(spec, text, r.value(), ipc::parse_real)) return p;
      value = r.value();
      canonical = canonical_real(r.value());
      return std::nullopt;
    }
    case ValueType::kBool: {
      Result<bool> r = ipc::parse_bool(text);
      if (!r) {
        std::string msg = r.error().message;
        if (auto s = closest(text, {"true", "false", "yes", "no", "on", "off"})) {
          msg += "; did you mean '" + *s + "'?";
        }
        return msg;
      }
      value = r.value();
      canonical = r.value() ? "true" : "false";
      return std::nullopt;
    }
    case ValueType::kEnum: {
      const std::vector<std::string> choices = split_choices(spec.choices);
      if (text.empty() && spec.default_value.empty()) {
        value = std::string();
        canonical.clear();
        return std::nullopt;
      }
      for (const std::string& c : choices) {
        if (lower(text) == c) {
          value = c;
          canonical = c;
          return std::nullopt;
        }
      }
      std::string msg = "'" + std::string(text) + "' is not accepted; accepted: " +
                        join(choices, ", ");
      if (spec.default_value.empty()) msg += " (or empty)";
      if (auto s = closest(text, choices)) msg += "; did you mean '" + *s + "'?";
      return msg;
    }
    case ValueType::kBytes: {
      Result<std::uint64_t> r = ipc::parse_bytes(text);
      if (!r) return r.error().message;
      if (auto p = range_problem(spec, text, r.value(), ipc::parse_bytes)) return p;
      value = r.value();
      canonical = std::to_string(r.value());
      return std::nullopt;
    }
    case ValueType::kDuration: {
      Result<std::chrono::milliseconds> r = ipc::parse_duration(text);
      if (!r) return r.error().message;
      if (auto p = range_problem(spec, text, r.value(), ipc::parse_duration)) return p;
      value = r.value();
      canonical = ipc::format_duration(r.value());
      return std::nullopt;
    }
    case ValueType::kList: {
      std::vector<std::string> items = ipc::split_list(text);
      canonical = join(items, ", ");
      value = std::move(items);
      return std::nullopt;
    }
    case ValueType::kLines:
      break;
  }
  assert(false && "parse_value: kLines is read by read_section");
  return std::nullopt;
}

std::vector<std::string> key_names(std::span<const KeySpec> keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const KeySpec& k : keys) out.emplace_back(k.key);
  return out;
}

struct ReadOptions {
  bool free_keys = false;            // accept keys outside the schema
  bool free_keys_repeatable = false; // ... and let them repeat (a user program's own keys)
  // Defaults that replace the schema's (a [link:A->B] inherits [link]); canonical text.
  const std::map<std::string, std::string, std::less<>>* inherited = nullptr;
};

// Reads `source` (null: the section is absent and everything takes its default) against
// `keys`, reporting unknown and repeated keys, bad values and missing required keys. A bad or
// missing value is replaced by its default, so the result is always complete.
ReadSection read_section(const IniSection* source, std::string_view name,
                         std::span<const KeySpec> keys, const ReadOptions& options,
                         Problems& problems) {
  ReadSection out;
  out.name = std::string(name);
  out.source = source;

  if (source) {
    std::map<std::string, const IniEntry*, std::less<>> first_seen;
    const std::vector<std::string> names = key_names(keys);
    for (const IniEntry& e : source->entries) {
      const KeySpec* spec = find_spec(keys, e.key);
      if (!spec && !options.free_keys) {
        std::string msg = "unknown key";
        if (auto s = closest(e.key, names)) {
          msg += "; did you mean '" + *s + "'?";
        } else {
          msg += "; accepted: " + join(names, ", ");
        }
        problems.at_entry(e, name, msg);
        continue;
      }
      if (!spec) out.extra.push_back(&e);
      const bool repeatable =
          spec ? spec->type == ValueType::kLines : options.free_keys_repeatable;
      if (repeatable) continue;
      auto [it, inserted] = first_seen.emplace(e.key, &e);
      if (!inserted) {
        problems.at_entry(e, name,
                          "repeated; already set at line " + std::to_string(it->second->line) +
                              " and only one value is allowed: remove one of them");
      }
    }
  }

  for (const KeySpec& spec : keys) {
    ResolvedKey rk;
    rk.spec = &spec;
    if (spec.type == ValueType::kLines) {
      std::vector<std::string> lines;
      if (source) {
        rk.entries = source->find_all(spec.key);
        for (const IniEntry* e : rk.entries) lines.push_back(e->value);
      }
      rk.value = std::move(lines);
      out.keys.push_back(std::move(rk));
      continue;
    }

    std::string default_text(spec.default_value);
    if (options.inherited) {
      if (auto it = options.inherited->find(spec.key); it != options.inherited->end()) {
        default_text = it->second;
      }
    }
    const IniEntry* e = source ? source->find(spec.key) : nullptr;
    if (e) rk.entries.push_back(e);

    bool use_default = e == nullptr;
    if (spec.required && source && (!e || e->value.empty())) {
      if (e) {
        problems.at_entry(*e, name, "empty value; it is required: " + std::string(spec.help));
      } else {
        problems.at_section(*source, "missing required key '" + std::string(spec.key) + "': " +
                                         std::string(spec.help));
      }
      use_default = true;
    }
    if (!use_default) {
      if (auto p = parse_value(spec, e->value, rk.value, rk.text)) {
        problems.at_entry(*e, name, *p);
        use_default = true;
      }
    }
    if (use_default) {
      [[maybe_unused]] auto p = parse_value(spec, default_text, rk.value, rk.text);
      assert(!p && "schema: a default that does not parse");
    }
    out.keys.push_back(std::move(rk));
  }
  return out;
}

// Adds `rs` to `resolved`: every schema key with its effective value, then the free keys.
void add_resolved(IniDocument& resolved, const ReadSection& rs, std::string_view config_file) {
  IniSection& s = resolved.get_or_add_section(
      rs.name, rs.source ? std::string_view(rs.source->file) : config_file,
      rs.source ? rs.source->line : 0);
  for (const ResolvedKey& k : rs.keys) {
    if (k.spec->type == ValueType::kLines) {
      for (const IniEntry* e : k.entries) s.entries.push_back(*e);
      continue;
    }
    const IniEntry* e = k.entries.empty() ? nullptr : k.entries.back();
    s.entries.push_back(IniEntry{std::string(k.spec->key), k.text,
                                 e ? e->file : std::string(kDefaultFile), e ? e->line : 0});
  }
  for (const IniEntry* e : rs.extra) s.entries.push_back(*e);
}

// ---------------------------------------------------------------------------------------------
// Files and programs.

// The problem with an input file, or nullopt if it is a readable regular file.
std::optional<std::string> input_file_problem(std::string_view given, const std::string& abs) {
  std::error_code ec;
  fs::file_status st = fs::status(abs, ec);
  std::string shown = "'" + std::string(given) + "'";
  if (given != abs) shown += " (" + abs + ")";
  if (!fs::exists(st)) {
    return "input file " + shown +
           " does not exist; give an existing file, or leave path empty for synthetic data";
  }
  if (!fs::is_regular_file(st)) return "input file " + shown + " is not a regular file";
  if (::access(abs.c_str(), R_OK) != 0) {
    return "input file " + shown + " is not readable: " + errno_text(errno);
  }
  return std::nullopt;
}

std::optional<std::string> program_file_problem(std::string_view given, const std::string& abs) {
  std::error_code ec;
  fs::file_status st = fs::status(abs, ec);
  std::string shown = "'" + std::string(given) + "'";
  if (given != abs) shown += " (" + abs + ")";
  if (!fs::exists(st)) {
    return "program " + shown + " does not exist; give the path of an executable file or a "
                                "built-in (" + builtin_list() + ")";
  }
  if (!fs::is_regular_file(st)) return "program " + shown + " is not a regular file";
  if (::access(abs.c_str(), X_OK) != 0) {
    return "program " + shown + " is not executable (" + errno_text(errno) + "); chmod +x it";
  }
  return std::nullopt;
}

struct Program {
  std::string builtin;
  std::string exec;
  std::optional<std::string> problem;
};

// What `exec = text` runs: a built-in by name, a path (relative to the current directory), or
// a bare name looked up in PATH.
Program resolve_program(std::string_view text) {
  Program out;
  if (is_builtin(text)) {
    out.builtin = std::string(text);
    return out;
  }
  if (text.find('/') != std::string_view::npos) {
    out.exec = absolute_path(text);
    out.problem = program_file_problem(text, out.exec);
    return out;
  }
  const char* env = std::getenv("PATH");
  std::string_view path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t colon = path.find(':', pos);
    if (colon == std::string_view::npos) colon = path.size();
    std::string dir(path.substr(pos, colon - pos));
    pos = colon + 1;
    std::string candidate = absolute_path((dir.empty() ? std::string(".") : dir) + "/" +
                                          std::string(text));
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      out.exec = candidate;
      return out;
    }
  }
  out.problem = "program '" + std::string(text) +
                "' is not a built-in (" + builtin_list() +
                ") and is not an executable in PATH; give its path, e.g. exec = ./" +
                std::string(text);
  if (auto s = closest(text, {std::begin(kBuiltinStages), std::end(kBuiltinStages)})) {
    out.problem->append("; did you mean '" + *s + "'?");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The whole config.

RestartPolicy restart_policy(std::string_view text) {
  if (text == "always") return RestartPolicy::kAlways;
  if (text == "never") return RestartPolicy::kNever;
  return RestartPolicy::kOnFailure;
}

void read_restart(const ReadSection& rs, RestartConfig& out, Problems& problems) {
  out.restart = restart_policy(rs.as<std::string>("restart"));
  out.max_restarts = static_cast<int>(rs.as<std::int64_t>("max_restarts"));
  out.restart_window = rs.as<std::chrono::milliseconds>("restart_window");
  out.backoff = rs.as<std::chrono::milliseconds>("backoff");
  out.backoff_max = rs.as<std::chrono::milliseconds>("backoff_max");
  if (out.backoff > out.backoff_max) {
    const IniEntry* e = rs.entry("backoff");
    if (!e) e = rs.entry("backoff_max");
    std::string what = "backoff " + ipc::format_duration(out.backoff) +
                       " is longer than backoff_max " + ipc::format_duration(out.backoff_max) +
                       "; make backoff <= backoff_max";
    if (e) problems.at_entry(*e, rs.name, what);
  }
}

LinkConfig read_link(const ReadSection& rs) {
  LinkConfig out;
  out.type = rs.as<std::string>("type") == "pipe" ? LinkConfig::kPipe : LinkConfig::kShm;
  out.capacity = rs.as<std::uint64_t>("capacity");
  // Unset, a pipe gets the size every unprivileged process may give it.
  if (rs.entry("capacity") == nullptr && out.type == LinkConfig::kPipe) {
    out.capacity = LinkConfig::kDefaultPipeCapacity;
  }
  return out;
}

class ConfigBuilder {
 public:
  ConfigBuilder(const IniDocument& doc, std::string config_file, Problems& problems)
      : doc_(doc), file_(std::move(config_file)), problems_(problems) {}

  // Fills `out` (except document and the stages' section pointers) and `resolved_`.
  void build(PipelineConfig& out) {
    read_pipeline(out);
    ReadSection link = read_section(doc_.section("link"), "link", kLinkKeys, {}, problems_);
    out.link_defaults = read_link(link);
    std::map<std::string, std::string, std::less<>> link_inherited;
    for (const ResolvedKey& k : link.keys) link_inherited.emplace(k.spec->key, k.text);

    ReadSection manager =
        read_section(doc_.section("manager"), "manager", kManagerKeys, {}, problems_);
    read_restart(manager, out.manager, problems_);
    out.manager.enabled = manager.as<bool>("enabled");
    out.manager.watchdog = std::chrono::milliseconds(0);  // see kStageOwnKeys

    std::vector<ReadSection> stage_sections;
    for (const std::string& name : stage_names_) {
      stage_sections.push_back(read_stage(name, out));
    }

    std::vector<ReadSection> link_sections;
    std::vector<const IniSection*> tables;
    for (const IniSection& s : doc_.sections()) {
      if (s.name == "pipeline" || s.name == "link" || s.name == "manager") continue;
      if (std::find(stage_names_.begin(), stage_names_.end(), s.name) != stage_names_.end()) {
        continue;
      }
      if (s.name.starts_with("link:")) {
        if (auto rs = read_link_override(s, link_inherited, out)) {
          link_sections.push_back(std::move(*rs));
        }
      } else if (s.name.starts_with("table:")) {
        read_table(s);
        tables.push_back(&s);
      } else {
        unknown_section(s);
      }
    }

    // The resolved document, in a reader's order.
    add_resolved(resolved_, pipeline_, file_);
    add_resolved(resolved_, link, file_);
    for (const ReadSection& rs : link_sections) add_resolved(resolved_, rs, file_);
    add_resolved(resolved_, manager, file_);
    for (const ReadSection& rs : stage_sections) add_resolved(resolved_, rs, file_);
    for (const IniSection* t : tables) {
      IniSection& s = resolved_.get_or_add_section(t->name, t->file, t->line);
      s.entries = t->entries;
    }
  }

  IniDocument take_resolved() { return std::move(resolved_); }

 private:
  void read_pipeline(PipelineConfig& out) {
    const IniSection* s = doc_.section("pipeline");
    if (!s) {
      problems_.at_file(file_,
                        "missing section [pipeline]; it needs name = NAME and stages = STAGE, "
                        "STAGE..., e.g. stages = load, clean, transform, store");
    }
    pipeline_ = read_section(s, "pipeline", kPipelineKeys, {}, problems_);
    out.name = pipeline_.as<std::string>("name");
    out.drain_timeout = pipeline_.as<std::chrono::milliseconds>("drain_timeout");

    const IniEntry* stages_entry = pipeline_.entry("stages");
    std::set<std::string> seen;
    for (const std::string& name : pipeline_.as<std::vector<std::string>>("stages")) {
      assert(stages_entry && "a non-empty stage list comes from an entry");
      std::string problem;
      if (!is_name(name)) {
        problem = "stage name '" + name + "' is not valid; use letters, digits, '_' and '-'";
      } else if (name == "pipeline" || name == "link" || name == "manager") {
        problem = "stage name '" + name + "' is reserved for the [" + name +
                  "] section; give the stage another name";
      } else if (!seen.insert(name).second) {
        problem = "stage '" + name +
                  "' appears twice; give each stage its own name (a second stage may run the "
                  "same program: [" + name + "2] exec = " + name + ")";
      }
      if (!problem.empty()) {
        problems_.at_entry(*stages_entry, "pipeline", problem);
        continue;
      }
      stage_names_.push_back(name);
    }

    ResolvedKey& run_dir = pipeline_.get("run_dir");
    if (run_dir.text.empty()) {
      run_dir.text = absolute_path("run/" + (out.name.empty() ? std::string("pipeline") : out.name));
      run_dir.value = run_dir.text;
    }
    out.run_dir = run_dir.text;
  }

  ReadSection read_stage(const std::string& name, PipelineConfig& out) {
    const IniSection* s = doc_.section(name);
    StageConfig stage;
    stage.name = name;

    const IniEntry* exec = s ? s->find("exec") : nullptr;
    if (exec && !exec->value.empty()) {
      Program p = resolve_program(exec->value);
      if (p.problem) problems_.at_entry(*exec, name, *p.problem);
      stage.builtin = p.builtin;
      stage.exec = p.exec;
    } else if (is_builtin(name)) {
      stage.builtin = name;
    } else if (s) {
      problems_.at_section(*s, "missing required key 'exec': '" + name +
                                   "' is not a built-in stage (" + builtin_list() +
                                   "); name its program, e.g. exec = ./" + name);
    } else {
      std::string what = "stage '" + name + "' has no section [" + name +
                         "] and is not a built-in (" + builtin_list() + "); add [" + name +
                         "] with exec = PROGRAM";
      if (auto sug = closest(name, {std::begin(kBuiltinStages), std::end(kBuiltinStages)})) {
        what += "; did you mean '" + *sug + "'?";
      }
      problems_.at_entry(*pipeline_.entry("stages"), "pipeline", what);
    }

    const SectionSchema* builtin = builtin_schema(stage.builtin);
    std::vector<KeySpec> keys(kStageKeys.begin(), kStageKeys.end());
    ReadOptions options;
    if (builtin) {
      keys.insert(keys.end(), builtin->keys.begin(), builtin->keys.end());
    } else {
      options.free_keys = true;
      options.free_keys_repeatable = true;
    }
    ReadSection rs = read_section(s, name, keys, options, problems_);
    // `keys` dies here: keep specs pointing into the static tables.
    for (ResolvedKey& k : rs.keys) {
      const KeySpec* spec = find_spec(kStageKeys, k.spec->key);
      if (!spec && builtin) spec = find_spec(builtin->keys, k.spec->key);
      assert(spec && "every key read comes from a static table");
      k.spec = spec;
    }

    ResolvedKey& exec_key = rs.get("exec");
    exec_key.text = stage.builtin.empty() ? stage.exec : stage.builtin;
    exec_key.value = exec_key.text;

    stage.workers = static_cast<int>(rs.as<std::int64_t>("workers"));
    stage.batch = static_cast<int>(rs.as<std::int64_t>("batch"));
    read_restart(rs, stage, problems_);
    stage.watchdog = rs.as<std::chrono::milliseconds>("watchdog");

    if (stage.builtin == "load") resolve_load(rs);
    if (stage.builtin == "store") resolve_store(rs, out);
    out.stages.push_back(std::move(stage));
    return rs;
  }

  void resolve_load(ReadSection& rs) {
    ResolvedKey& path = rs.get("path");
    ResolvedKey& source = rs.get("source");
    ResolvedKey& format = rs.get("format");
    if (!path.text.empty()) {
      if (auto p = input_file_problem(path.entries.back()->value, path.text)) {
        problems_.at_entry(*path.entries.back(), rs.name, *p);
      }
      if (format.text.empty()) {
        std::string ext = lower(fs::path(path.text).extension().string());
        if (ext == ".jsonl" || ext == ".ndjson") {
          format.text = "jsonl";
        } else if (ext == ".csv") {
          format.text = "csv";
        } else {
          format.text = source.text == "jsonl" ? "jsonl" : "csv";
        }
      }
      source.text = format.text;
    } else {
      if (source.text != "synthetic" && !source.entries.empty()) {
        problems_.at_entry(*source.entries.back(), rs.name,
                           "source = " + source.text +
                               " reads a file, but path is empty; set path = FILE, or use "
                               "source = synthetic");
      }
      if (format.text.empty()) format.text = "csv";
    }
    path.value = path.text;
    source.value = source.text;
    format.value = format.text;
  }

  void resolve_store(ReadSection& rs, const PipelineConfig& out) {
    ResolvedKey& path = rs.get("path");
    if (!path.text.empty()) return;
    const std::string& kind = rs.as<std::string>("kind");
    const char* ext = kind == "csv" ? ".csv" : kind == "jsonl" ? ".jsonl" : ".db";
    path.text = (out.run_dir / ((out.name.empty() ? std::string("pipeline") : out.name) + ext))
                    .string();
    path.value = path.text;
  }

  std::optional<ReadSection> read_link_override(
      const IniSection& s, const std::map<std::string, std::string, std::less<>>& inherited,
      PipelineConfig& out) {
    std::string_view spec = std::string_view(s.name).substr(5);
    std::size_t arrow = spec.find("->");
    if (arrow == std::string_view::npos) {
      problems_.at_section(s, "expected [link:FROM->TO] naming two adjacent stages, e.g. [" +
                                  example_link() + "]");
      return std::nullopt;
    }
    std::string from(ipc::trim(spec.substr(0, arrow)));
    std::string to(ipc::trim(spec.substr(arrow + 2)));
    auto index = [&](const std::string& n) -> int {
      auto it = std::find(stage_names_.begin(), stage_names_.end(), n);
      return it == stage_names_.end() ? -1 : static_cast<int>(it - stage_names_.begin());
    };
    bool ok = true;
    for (const std::string* n : {&from, &to}) {
      if (index(*n) >= 0) continue;
      std::string what = "'" + *n + "' is not a stage (stages = " + join(stage_names_, ", ") + ")";
      if (auto sug = closest(*n, stage_names_)) what += "; did you mean '" + *sug + "'?";
      problems_.at_section(s, what);
      ok = false;
    }
    if (!ok) return std::nullopt;
    if (index(to) != index(from) + 1) {
      std::string what = "'" + from + "' and '" + to + "' are not adjacent in stages = " +
                         join(stage_names_, ", ") + "; a link joins a stage to the next one: " +
                         join(adjacent_links(), ", ");
      if (index(from) == index(to) + 1) what += "; did you mean [link:" + to + "->" + from + "]?";
      problems_.at_section(s, what);
      return std::nullopt;
    }
    ReadOptions options;
    options.inherited = &inherited;
    ReadSection rs = read_section(&s, s.name, kLinkKeys, options, problems_);
    auto [it, inserted] = out.link_overrides.emplace(std::pair{from, to}, read_link(rs));
    if (!inserted) {
      problems_.at_section(s, "link " + from + "->" + to +
                                  " is configured by another [link:...] section too; merge them");
    }
    return rs;
  }

  void read_table(const IniSection& s) {
    std::string_view table = std::string_view(s.name).substr(6);
    if (!is_name(table)) {
      problems_.at_section(s, "expected [table:NAME] with NAME of letters, digits, '_' and '-'");
    }
    ReadOptions options;
    options.free_keys = true;
    (void)read_section(&s, s.name, {}, options, problems_);
  }

  void unknown_section(const IniSection& s) {
    if (is_builtin(s.name)) {
      problems_.at_section(s, "'" + s.name + "' is not a stage of this pipeline (stages = " +
                                  join(stage_names_, ", ") + "); add it to stages or remove "
                                  "the section");
      return;
    }
    std::vector<std::string> candidates = {"pipeline", "link", "manager"};
    candidates.insert(candidates.end(), stage_names_.begin(), stage_names_.end());
    if (std::size_t colon = s.name.find(':'); colon != std::string::npos) {
      candidates.push_back("table:" + s.name.substr(colon + 1));
      candidates.push_back("link:" + s.name.substr(colon + 1));
    }
    std::string what = "unknown section";
    if (auto sug = closest(s.name, candidates)) {
      what += "; did you mean [" + *sug + "]?";
    } else {
      what += "; accepted: [pipeline], [link], [link:FROM->TO], [manager], [table:NAME] and "
              "one section per stage in stages (" + join(stage_names_, ", ") + ")";
    }
    problems_.at_section(s, what);
  }

  std::vector<std::string> adjacent_links() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i + 1 < stage_names_.size(); ++i) {
      out.push_back(stage_names_[i] + "->" + stage_names_[i + 1]);
    }
    return out;
  }

  std::string example_link() const {
    std::vector<std::string> links = adjacent_links();
    return "link:" + (links.empty() ? std::string("load->clean") : links.front());
  }

  const IniDocument& doc_;
  std::string file_;
  Problems& problems_;
  ReadSection pipeline_;
  std::vector<std::string> stage_names_;
  IniDocument resolved_;
};

StageValidator& global_validator() {
  static StageValidator validator;
  return validator;
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  for (int i = 15; i >= 0; --i) {
    buf[i] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  }
  buf[16] = '\0';
  return buf;
}

std::uint64_t fnv1a64(std::string_view text) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::span<const SectionSchema> config_schema() { return kSchema; }

const SectionSchema& section_schema(SectionKind kind) {
  for (const SectionSchema& s : kSchema) {
    if (s.kind == kind) return s;
  }
  assert(false && "section_schema: every kind is in the table");
  return kSchema[0];
}

int edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<int> d((n + 1) * (m + 1));
  auto at = [&](std::size_t i, std::size_t j) -> int& { return d[i * (m + 1) + j]; };
  for (std::size_t i = 0; i <= n; ++i) at(i, 0) = static_cast<int>(i);
  for (std::size_t j = 0; j <= m; ++j) at(0, j) = static_cast<int>(j);
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
      }
    }
  }
  return at(n, m);
}

std::string config_problem(const ipc::IniEntry& entry, std::string_view section,
                           std::string_view problem) {
  return where(entry, section) + ": key '" + entry.key + "' in [" + std::string(section) +
         "]: " + std::string(problem);
}

LinkConfig PipelineConfig::link_between(std::string_view from, std::string_view to) const {
  auto it = link_overrides.find(std::pair{std::string(from), std::string(to)});
  return it == link_overrides.end() ? link_defaults : it->second;
}

const StageConfig* PipelineConfig::stage(std::string_view stage_name) const {
  for (const StageConfig& s : stages) {
    if (s.name == stage_name) return &s;
  }
  return nullptr;
}

int PipelineConfig::total_workers() const {
  int total = 0;
  for (const StageConfig& s : stages) total += s.workers;
  return total;
}

void set_stage_validator(StageValidator validator) { global_validator() = std::move(validator); }

Result<PipelineConfig> load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, global_validator());
}

Result<PipelineConfig> load_config(const std::string& path, const std::vector<std::string>& overrides,
                                   const StageValidator& validator) {
  Result<IniDocument> parsed = IniDocument::parse_file(path);
  if (!parsed) return parsed.error();

  PipelineConfig config;
  config.document = std::move(parsed).value();
  std::error_code ec;
  config.config_path = fs::absolute(path, ec).lexically_normal();

  Problems problems;
  for (const std::string& o : overrides) {
    Status st = config.document.apply_override(o);
    if (!st) problems.add_line(true, 0, st.error().message);
  }

  ConfigBuilder builder(config.document, path, problems);
  builder.build(config);
  config.resolved = builder.take_resolved();
  for (StageConfig& s : config.stages) {
    s.section = config.resolved.section(s.name);
    assert(s.section && "every stage has a resolved section");
  }

  std::vector<std::string> lines = problems.sorted();
  if (validator) {
    for (const StageConfig& s : config.stages) {
      try {
        std::vector<std::string> found = validator(s, config);
        lines.insert(lines.end(), found.begin(), found.end());
      } catch (const std::exception& e) {
        lines.push_back(path + ": [" + s.name + "]: the stage's checks failed: " + e.what());
      } catch (...) {
        lines.push_back(path + ": [" + s.name + "]: the stage's checks failed");
      }
    }
  }
  if (!lines.empty()) {
    return Error{"config", static_cast<int>(ConfigError::kInvalid), join(lines, "\n"), 0};
  }
  return config;
}

std::string config_fingerprint(const PipelineConfig& config) {
  std::string text = "millrace config fingerprint v1\n";
  for (const StageConfig& stage : config.stages) {
    text.append("stage ").append(stage.name).append(" ");
    text.append(stage.builtin.empty() ? "exec=" + stage.exec : "builtin=" + stage.builtin);
    text.append("\n");
    const SectionSchema* builtin = builtin_schema(stage.builtin);
    for (const IniEntry& e : stage.section->entries) {
      bool include = false;
      if (builtin) {
        const KeySpec* spec = find_spec(builtin->keys, e.key);
        include = spec && spec->fingerprint;
      } else {
        include = find_spec(kStageKeys, e.key) == nullptr;
      }
      if (include) text.append("  ").append(e.key).append(" = ").append(e.value).append("\n");
    }
  }
  std::vector<const IniSection*> tables;
  for (const IniSection& s : config.resolved.sections()) {
    if (s.name.starts_with("table:")) tables.push_back(&s);
  }
  std::sort(tables.begin(), tables.end(),
            [](const IniSection* a, const IniSection* b) { return a->name < b->name; });
  for (const IniSection* t : tables) {
    text.append("[").append(t->name).append("]\n");
    std::vector<const IniEntry*> entries;
    for (const IniEntry& e : t->entries) entries.push_back(&e);
    std::stable_sort(entries.begin(), entries.end(),
                     [](const IniEntry* a, const IniEntry* b) { return a->key < b->key; });
    for (const IniEntry* e : entries) {
      text.append("  ").append(e->key).append(" = ").append(e->value).append("\n");
    }
  }
  return hex64(fnv1a64(text));
}

}  // namespace millrace::launcher
