// `millrace set CONFIG KEY VALUE` (live settings through the run's manager) and the reject
// samples view of `millrace stats --rejects`.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "ipc/manager_client.hpp"
#include "launcher/commands.hpp"
#include "launcher/config.hpp"
#include "launcher/run_dir.hpp"

namespace millrace::launcher {
namespace {

constexpr std::chrono::milliseconds kSetTimeout{5000};

struct LiveKey {
  std::string_view key;
  std::string_view help;
};
constexpr LiveKey kLiveKeys[] = {
    {ipc::kRateLimitKey, "records/s the load stage reads at most, 0 = unlimited"},
    {ipc::kPausedKey, "true pauses the whole pipeline, false resumes it"},
};

std::string live_keys_text() {
  std::string out;
  for (const LiveKey& k : kLiveKeys) {
    out += "\n  ";
    out += k.key;
    out += "  ";
    out += k.help;
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

std::string number_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

int run_set(const Invocation& inv) {
  // The key and value first: a typo is reported without touching the run.
  double rate = 0;
  bool paused = false;
  if (inv.key == ipc::kRateLimitKey) {
    const char* first = inv.value.data();
    const char* last = first + inv.value.size();
    const auto r = std::from_chars(first, last, rate);
    if (r.ec != std::errc() || r.ptr != last || !std::isfinite(rate) || rate < 0) {
      std::fprintf(stderr,
                   "millrace set: %s must be a non-negative number of records/s (0 = unlimited), "
                   "not '%s'\n",
                   inv.key.c_str(), inv.value.c_str());
      return kExitUsage;
    }
  } else if (inv.key == ipc::kPausedKey) {
    const std::string v = lower(inv.value);
    if (v != "true" && v != "false") {
      std::fprintf(stderr, "millrace set: %s must be true or false, not '%s'\n", inv.key.c_str(),
                   inv.value.c_str());
      return kExitUsage;
    }
    paused = v == "true";
  } else {
    std::string hint;
    int best = 4;
    for (const LiveKey& k : kLiveKeys) {
      const int d = edit_distance(lower(inv.key), k.key);
      if (d < best) {
        best = d;
        hint = " (did you mean " + std::string(k.key) + "?)";
      }
    }
    std::fprintf(stderr, "millrace set: '%s' is not a live setting%s; these are:%s\n",
                 inv.key.c_str(), hint.c_str(), live_keys_text().c_str());
    return kExitUsage;
  }

  auto config = load_config(inv.config_path, inv.overrides);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().what().c_str());
    return kExitUsage;
  }
  if (!config->manager.enabled) {
    std::fprintf(stderr,
                 "millrace set: the manager is disabled in %s ([manager] enabled = false), and "
                 "live settings live in it: enable it and restart the run\n",
                 inv.config_path.c_str());
    return kExitUsage;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(config->run_dir, ec)) {
    std::fprintf(stderr,
                 "millrace set: no run directory %s: is the pipeline running? start it with "
                 "`millrace run %s`\n",
                 config->run_dir.c_str(), inv.config_path.c_str());
    return kExitRunFailed;
  }
  auto run_dir = RunDir::open(config->run_dir);
  if (!run_dir) {
    std::fprintf(stderr, "millrace set: %s\n", run_dir.error().what().c_str());
    return kExitRunFailed;
  }
  auto client = ipc::ManagerClient::connect(run_dir->manager_socket(), run_dir->secret_path(),
                                            kSetTimeout);
  if (!client) {
    std::fprintf(stderr, "millrace set: %s\n", client.error().what().c_str());
    return kExitRunFailed;
  }
  auto settings = client->dict<double>(std::string(ipc::kSettingsDict));
  Status written = inv.key == ipc::kRateLimitKey
                       ? settings.set(inv.key, rate)
                       : client->dict<bool>(std::string(ipc::kSettingsDict)).set(inv.key, paused);
  if (!written) {
    std::fprintf(stderr, "millrace set: %s\n", written.error().what().c_str());
    return kExitRunFailed;
  }
  auto now = ipc::read_live_settings(*client);
  if (!now) {
    std::fprintf(stderr, "millrace set: written, but reading it back failed: %s\n",
                 now.error().what().c_str());
    return kExitRunFailed;
  }
  if (inv.key == ipc::kRateLimitKey) {
    std::printf("%s = %s%s\n", inv.key.c_str(), number_text(now->rate_limit).c_str(),
                now->rate_limit == 0 ? " (unlimited)" : " records/s");
  } else {
    std::printf("%s = %s\n", inv.key.c_str(), now->paused ? "true" : "false");
  }
  return kExitOk;
}

std::string render_reject_samples(ipc::ManagerClient& client) {
  auto reasons = client.dict<std::string>(std::string(ipc::kRejectsDict)).keys();
  if (!reasons) return "reject samples: unavailable (" + reasons.error().what() + ")\n";
  if (reasons->empty()) return "reject samples: none (no record was rejected so far)\n";
  std::string out = "reject samples, by reason:\n";
  for (const std::string& reason : *reasons) {
    auto samples = client.list<std::string>(ipc::reject_list_name(reason)).slice(0, 1000);
    out += "  " + reason + ":\n";
    if (!samples) {
      out += "    (unavailable: " + samples.error().what() + ")\n";
      continue;
    }
    for (const std::string& record : *samples) out += "    " + record + "\n";
  }
  return out;
}

}  // namespace millrace::launcher
