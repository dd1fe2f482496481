// `millrace stop`, `kill`, `restart` (through the run's control socket) and `logs`.
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "launcher/commands.hpp"
#include "launcher/config.hpp"
#include "launcher/control.hpp"
#include "launcher/run_dir.hpp"

namespace millrace::launcher {
namespace {

volatile sig_atomic_t g_interrupted = 0;
extern "C" void on_logs_interrupt(int) { g_interrupted = 1; }

// "KILL", "SIGKILL", "kill" or "9" -> 9; -1 if none.
int signal_number(std::string name) {
  if (!name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) return std::atoi(name.c_str());
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr && name == abbrev) return sig;
  }
  return -1;
}

}  // namespace

int run_control(const Invocation& inv) {
  auto config = load_config(inv.config_path, inv.overrides);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().what().c_str());
    return kExitUsage;
  }
  std::string request;
  const std::string worker = inv.worker ? std::to_string(*inv.worker) : "*";
  switch (inv.command) {
    case Command::kStop: request = "stop"; break;
    case Command::kRestart: request = "restart " + inv.stage + " " + worker; break;
    case Command::kKill: {
      const int sig = signal_number(inv.signal);
      if (sig <= 0) {
        std::fprintf(stderr, "millrace: unknown signal '%s' (use a name like KILL, TERM, STOP, CONT or a number)\n",
                     inv.signal.c_str());
        return kExitUsage;
      }
      request = "kill " + inv.stage + " " + worker + " " + std::to_string(sig);
      break;
    }
    default: return kExitUsage;
  }
  auto reply = control_request(config->run_dir / "control.sock", request);
  if (!reply) {
    std::fprintf(stderr, "millrace: %s\n", reply.error().what().c_str());
    return kExitRunFailed;
  }
  if (reply->rfind("ok", 0) == 0) {
    std::printf("%s\n", reply->c_str() + (reply->size() > 3 ? 3 : reply->size()));
    return kExitOk;
  }
  std::fprintf(stderr, "millrace: %s\n", reply->rfind("error ", 0) == 0 ? reply->c_str() + 6 : reply->c_str());
  return kExitRunFailed;
}

int run_logs(const Invocation& inv) {
  auto config = load_config(inv.config_path, inv.overrides);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().what().c_str());
    return kExitUsage;
  }
  const StageConfig* stage = config->stage(inv.stage);
  if (stage == nullptr) {
    std::fprintf(stderr, "millrace: no stage '%s' in %s\n", inv.stage.c_str(), inv.config_path.c_str());
    return kExitUsage;
  }
  std::vector<std::filesystem::path> paths;
  for (int i = 0; i < stage->workers; ++i) {
    if (inv.worker && *inv.worker != i) continue;
    paths.push_back(config->run_dir / "logs" / (stage->name + "." + std::to_string(i) + ".log"));
  }
  std::vector<std::uint64_t> offsets(paths.size(), 0);
  auto print_new = [&](bool headers) {
    for (std::size_t i = 0; i < paths.size(); ++i) {
      std::ifstream in(paths[i], std::ios::binary);
      if (!in) continue;
      in.seekg(0, std::ios::end);
      const auto size = static_cast<std::uint64_t>(in.tellg());
      if (size < offsets[i]) offsets[i] = 0;  // the log was replaced
      if (size == offsets[i]) continue;
      in.seekg(static_cast<std::streamoff>(offsets[i]));
      std::string text(size - offsets[i], '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      offsets[i] = size;
      if (headers && paths.size() > 1) std::printf("==> %s <==\n", paths[i].c_str());
      std::fwrite(text.data(), 1, text.size(), stdout);
    }
    std::fflush(stdout);
  };
  bool any = false;
  for (const auto& p : paths) any = any || std::filesystem::exists(p);
  if (!any) {
    std::fprintf(stderr, "millrace: stage '%s' has no log yet in %s\n", inv.stage.c_str(),
                 (config->run_dir / "logs").c_str());
    return inv.follow ? kExitOk : kExitRunFailed;
  }
  print_new(true);
  if (!inv.follow) return kExitOk;
  struct sigaction sa {};
  sa.sa_handler = on_logs_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  while (g_interrupted == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // a follower's poll period
    print_new(false);
  }
  return kExitOk;
}

}  // namespace millrace::launcher
