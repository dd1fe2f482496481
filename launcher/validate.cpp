#include "launcher/validate.hpp"

#include <algorithm>
#include <cstdlib>

#include "stages/builtin_config.hpp"
#include "stages/clean_rules.hpp"
#include "stages/runtime.hpp"
#include "stages/synthetic.hpp"

namespace millrace::launcher {

std::vector<std::string> validate_builtin_stage(const StageConfig& stage,
                                                const PipelineConfig& config) {
  std::vector<std::string> problems;
  if (stage.builtin.empty()) return problems;
  const ipc::IniDocument& doc = config.document;
  const ipc::IniSection* section = doc.section(stage.name);
  auto input = stages::input_columns_of(doc, stage.name);
  if (!input) {
    problems.push_back(input.error().what());
    return problems;
  }
  auto get = [&](std::string_view key, std::string fallback) {
    if (section == nullptr) return fallback;
    const ipc::IniEntry* e = section->find(key);
    return e ? e->value : fallback;
  };
  if (stage.builtin == "load") {
    auto columns = stages::output_columns_of(doc, stage.name);
    if (!columns) {
      problems.push_back(columns.error().what());
    } else if (get("path", "").empty()) {
      auto synth = stages::Synthetic::parse(
          stages::config_lines(section, "gen"), std::strtod(get("dirt", "0.08").c_str(), nullptr),
          std::strtoull(get("synthetic_seed", "42").c_str(), nullptr, 10), *columns);
      if (!synth) problems.push_back(synth.error().what());
    }
  } else if (stage.builtin == "clean") {
    stages::ConfigLine trim = stages::config_line(section, "trim").value_or(stages::ConfigLine{"all", "[" + stage.name + "] trim"});
    auto rules = stages::CleanRules::parse(trim, stages::config_line(section, "fields"),
                                           stages::config_lines(section, "check"), *input);
    if (!rules) problems.push_back(rules.error().what());
  } else if (stage.builtin == "transform") {
    auto out = stages::output_columns_of(doc, stage.name);
    if (!out) problems.push_back(out.error().what());
  } else if (stage.builtin == "store") {
    // Every column of the table must be a field of the records that reach the store.
    const std::string columns = get("columns", "");
    std::size_t start = 0;
    int depth = 0;
    for (std::size_t i = 0; i <= columns.size(); ++i) {
      if (i < columns.size() && columns[i] == '(') ++depth;
      if (i < columns.size() && columns[i] == ')') --depth;
      if (i == columns.size() || (columns[i] == ',' && depth == 0)) {
        std::string def = columns.substr(start, i - start);
        start = i + 1;
        const auto b = def.find_first_not_of(" \t");
        if (b == std::string::npos) continue;
        const std::string name = def.substr(b, def.find_first_of(" \t", b) - b);
        if (std::find(input->begin(), input->end(), name) == input->end()) {
          const ipc::IniEntry* e = section ? section->find("columns") : nullptr;
          std::string have;
          for (const auto& f : *input) have += (have.empty() ? "" : ", ") + f;
          problems.push_back((e ? e->file + ":" + std::to_string(e->line) + ": " : std::string()) +
                             "key 'columns' in [" + stage.name + "]: column '" + name +
                             "' is not a field of the records reaching the store (they have: " +
                             have + ")");
        }
      }
    }
  }
  return problems;
}

}  // namespace millrace::launcher
