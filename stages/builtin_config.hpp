// How the built-in stages read their part of the config: which program a stage runs, its
// repeatable rule lines, the lookup tables, and the field names flowing between stages.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipc/ini.hpp"
#include "ipc/result.hpp"
#include "stages/config_line.hpp"
#include "stages/transform_ops.hpp"

namespace millrace::stages {

inline constexpr std::string_view kBuiltinStages[] = {"load", "clean", "transform", "store"};

// The built-in program a stage runs ("load", "clean", "transform", "store"), or "" when its
// `exec` names a program of the user's. `exec` defaults to the stage's own name.
std::string builtin_of(const ipc::IniDocument& config, std::string_view stage);

// The chain of stage names, from [pipeline] stages.
std::vector<std::string> chain_of(const ipc::IniDocument& config);

// Every entry of `key` in `section` as ConfigLines ("file:line, key 'k' in [s]").
std::vector<ConfigLine> config_lines(const ipc::IniSection* section, std::string_view key);
// The entry of `key`, if any, as a ConfigLine.
std::optional<ConfigLine> config_line(const ipc::IniSection* section, std::string_view key);

// Every [table:NAME] section as NAME -> key -> value.
Transform::Tables tables_of(const ipc::IniDocument& config);

}  // namespace millrace::stages
