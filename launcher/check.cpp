#include <cstddef>
#include <cstdio>
#include <string>

#include "launcher/commands.hpp"
#include "launcher/config.hpp"

namespace millrace::launcher {
namespace {

std::string counted(std::size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string describe(const LinkConfig& link) {
  return std::string(link.type == LinkConfig::kPipe ? "pipe " : "shm ") +
         ipc::format_bytes(link.capacity);
}

// "shm 4 MiB", plus every link that differs from the defaults: "shm 4 MiB, clean->transform
// shm 1 MiB".
std::string describe_links(const PipelineConfig& config) {
  if (config.stages.size() < 2) return "none";
  std::string out = describe(config.link_defaults);
  for (std::size_t i = 0; i + 1 < config.stages.size(); ++i) {
    const std::string& from = config.stages[i].name;
    const std::string& to = config.stages[i + 1].name;
    LinkConfig link = config.link_between(from, to);
    if (link == config.link_defaults) continue;
    out += ", " + from + "->" + to + " " + describe(link);
  }
  return out;
}

}  // namespace

int run_check(const Invocation& invocation) {
  Result<PipelineConfig> config = load_config(invocation.config_path, invocation.overrides);
  if (!config) {
    const std::string& message = config.error().message;
    std::size_t problems = 1;
    for (char c : message) problems += c == '\n' ? 1 : 0;
    std::fprintf(stderr, "%s\n%s: invalid (%s)\n", message.c_str(),
                 invocation.config_path.c_str(), counted(problems, "problem").c_str());
    return kExitUsage;
  }
  std::printf("%s: ok (%s, %s, links: %s)\n", invocation.config_path.c_str(),
              counted(config->stages.size(), "stage").c_str(),
              counted(static_cast<std::size_t>(config->total_workers()), "worker").c_str(),
              describe_links(config.value()).c_str());
  return kExitOk;
}

}  // namespace millrace::launcher
