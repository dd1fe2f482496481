#include "stages/handover.hpp"

#include <charconv>
#include <cstdlib>
#include <numeric>
#include <string_view>

namespace millrace::stages {
namespace {

Error handover_error(std::string msg) {
  return Error{"stage", 1,
               msg + " (a stage program is started by `millrace run`; it cannot run on its own)",
               0};
}

Result<std::string> env(const char* name, bool required = true) {
  const char* v = std::getenv(name);
  if (v == nullptr) {
    if (required) return handover_error(std::string("environment variable ") + name + " is not set");
    return std::string();
  }
  return std::string(v);
}

Result<std::uint32_t> env_u32(const char* name) {
  auto s = env(name);
  if (!s) return s.error();
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size()) {
    return handover_error(std::string(name) + "='" + *s + "' is not a number");
  }
  return v;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string_view rest = s;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    out.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

std::string join_commas(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

}  // namespace

Result<Handover> handover_from_env() {
  Handover h;
  auto config = env("MILLRACE_CONFIG");
  if (!config) return config.error();
  h.config_path = *config;
  auto run = env("MILLRACE_RUN_ID");
  if (!run) return run.error();
  h.run_id = *run;
  auto stage = env("MILLRACE_STAGE");
  if (!stage) return stage.error();
  h.stage = *stage;
  for (auto [name, field] : {std::pair{"MILLRACE_WORKER", &h.worker},
                             std::pair{"MILLRACE_WORKERS", &h.workers},
                             std::pair{"MILLRACE_LANES", &h.lanes},
                             std::pair{"MILLRACE_SLOT", &h.slot}}) {
    auto v = env_u32(name);
    if (!v) return v.error();
    *field = *v;
  }
  if (h.workers == 0 || h.worker >= h.workers || h.lanes == 0 || h.lanes % h.workers != 0) {
    return handover_error("inconsistent MILLRACE_WORKER/WORKERS/LANES");
  }
  h.inputs = split_commas(env("MILLRACE_INPUTS", false).value());
  h.outputs = split_commas(env("MILLRACE_OUTPUTS", false).value());
  auto stats = env("MILLRACE_STATS");
  if (!stats) return stats.error();
  h.stats_segment = *stats;
  h.manager_socket = env("MILLRACE_MANAGER", false).value();
  h.secret_path = env("MILLRACE_SECRET", false).value();
  h.fingerprint = env("MILLRACE_FINGERPRINT", false).value();
  return h;
}

std::vector<std::string> handover_to_env(const Handover& h) {
  return {
      "MILLRACE_CONFIG=" + h.config_path,
      "MILLRACE_RUN_ID=" + h.run_id,
      "MILLRACE_STAGE=" + h.stage,
      "MILLRACE_WORKER=" + std::to_string(h.worker),
      "MILLRACE_WORKERS=" + std::to_string(h.workers),
      "MILLRACE_LANES=" + std::to_string(h.lanes),
      "MILLRACE_INPUTS=" + join_commas(h.inputs),
      "MILLRACE_OUTPUTS=" + join_commas(h.outputs),
      "MILLRACE_STATS=" + h.stats_segment,
      "MILLRACE_SLOT=" + std::to_string(h.slot),
      "MILLRACE_MANAGER=" + h.manager_socket,
      "MILLRACE_SECRET=" + h.secret_path,
      "MILLRACE_FINGERPRINT=" + h.fingerprint,
  };
}

Result<std::uint32_t> lanes_for(const std::vector<std::uint32_t>& worker_counts) {
  std::uint64_t lanes = 1;
  for (std::uint32_t w : worker_counts) {
    if (w == 0) return Error{"stage", 2, "a stage has 0 workers", 0};
    lanes = std::lcm(lanes, std::uint64_t{w});
    if (lanes > kMaxLanes) {
      return Error{"stage", 2,
                   "the stages' worker counts need " + std::to_string(lanes) +
                       " lanes (their least common multiple), more than the " +
                       std::to_string(kMaxLanes) + " supported: use counts like 1, 2, 3, 4, 6",
                   0};
    }
  }
  return static_cast<std::uint32_t>(lanes);
}

}  // namespace millrace::stages
