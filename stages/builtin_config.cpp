#include "stages/builtin_config.hpp"

#include <algorithm>

#include "stages/runtime.hpp"

namespace millrace::stages {
namespace {

std::string where_of(const ipc::IniSection& section, const ipc::IniEntry& e) {
  return e.file + ":" + std::to_string(e.line) + ", key '" + e.key + "' in [" + section.name + "]";
}

Error schema_error(std::string msg) { return Error{"config", 1, std::move(msg), 0}; }

}  // namespace

std::string builtin_of(const ipc::IniDocument& config, std::string_view stage) {
  std::string exec(stage);
  if (const ipc::IniSection* s = config.section(stage)) {
    if (const ipc::IniEntry* e = s->find("exec"); e != nullptr && !e->value.empty()) exec = e->value;
  }
  for (std::string_view b : kBuiltinStages) {
    if (exec == b) return exec;
  }
  return "";
}

std::vector<std::string> chain_of(const ipc::IniDocument& config) {
  const ipc::IniSection* p = config.section("pipeline");
  if (p == nullptr) return {};
  const ipc::IniEntry* e = p->find("stages");
  return e ? ipc::split_list(e->value) : std::vector<std::string>{};
}

std::vector<ConfigLine> config_lines(const ipc::IniSection* section, std::string_view key) {
  std::vector<ConfigLine> out;
  if (section == nullptr) return out;
  for (const ipc::IniEntry* e : section->find_all(key)) {
    out.push_back(ConfigLine{e->value, where_of(*section, *e)});
  }
  return out;
}

std::optional<ConfigLine> config_line(const ipc::IniSection* section, std::string_view key) {
  if (section == nullptr) return std::nullopt;
  const ipc::IniEntry* e = section->find(key);
  if (e == nullptr) return std::nullopt;
  return ConfigLine{e->value, where_of(*section, *e)};
}

Transform::Tables tables_of(const ipc::IniDocument& config) {
  Transform::Tables tables;
  for (const ipc::IniSection& s : config.sections()) {
    if (s.name.rfind("table:", 0) != 0) continue;
    auto& table = tables[s.name.substr(6)];
    for (const ipc::IniEntry& e : s.entries) table[e.key] = e.value;
  }
  return tables;
}

Result<std::vector<std::string>> output_columns_of(const ipc::IniDocument& config,
                                                   std::string_view stage) {
  const ipc::IniSection* section = config.section(stage);
  const std::string builtin = builtin_of(config, stage);
  auto declared = [&]() -> std::optional<std::vector<std::string>> {
    if (section == nullptr) return std::nullopt;
    const ipc::IniEntry* e = section->find("columns");
    if (e == nullptr || e->value.empty()) return std::nullopt;
    return ipc::split_list(e->value);
  };
  if (builtin == "load") {
    auto cols = declared();
    if (!cols) return schema_error("[" + std::string(stage) + "] needs `columns`: the field names of its records");
    return *cols;
  }
  if (builtin == "store") return std::vector<std::string>{};
  auto input = input_columns_of(config, stage);
  if (!input) return input.error();
  if (builtin == "clean") return *input;
  if (builtin == "transform") {
    auto t = Transform::parse(config_lines(section, "derive"), *input, tables_of(config));
    if (!t) return t.error();
    return t->output_columns();
  }
  // A user's program: its declared columns, else it keeps the fields it gets.
  if (auto cols = declared()) return *cols;
  return *input;
}

Result<std::vector<std::string>> input_columns_of(const ipc::IniDocument& config,
                                                  std::string_view stage) {
  const std::vector<std::string> chain = chain_of(config);
  auto it = std::find(chain.begin(), chain.end(), stage);
  if (it == chain.end()) {
    return schema_error("stage '" + std::string(stage) + "' is not in [pipeline] stages");
  }
  if (it == chain.begin()) return std::vector<std::string>{};
  return output_columns_of(config, *std::prev(it));
}

}  // namespace millrace::stages
