// Deep validation of the built-in stages' settings: their rule lines are parsed by the very
// code the stages run, so `millrace check` finds every mistake a stage would stop on.
#pragma once

#include <string>
#include <vector>

#include "launcher/config.hpp"

namespace millrace::launcher {

// Problems of one stage's settings, each naming file, line and key. A user's program's own
// settings are its business: none are reported for it.
std::vector<std::string> validate_builtin_stage(const StageConfig& stage,
                                                const PipelineConfig& config);

}  // namespace millrace::launcher
