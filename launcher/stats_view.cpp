// `millrace stats`: what a run is doing, read from its stats segment (so it answers even when
// the launcher is busy): a table, a live view redrawn every second, or one JSON object.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ipc/manager_client.hpp"
#include "ipc/stats.hpp"
#include "launcher/commands.hpp"
#include "launcher/config.hpp"
#include "launcher/format.hpp"
#include "launcher/run_dir.hpp"
#include "launcher/supervisor.hpp"

namespace millrace::launcher {
namespace {

volatile sig_atomic_t g_interrupted = 0;
extern "C" void on_stats_interrupt(int) { g_interrupted = 1; }

const char* phase_name(std::uint32_t phase) {
  return to_string(static_cast<WorkerPhase>(phase));
}

std::string pid_text(std::int32_t pid) { return pid > 0 ? std::to_string(pid) : "-"; }

// One moment of the run, with what a view derives from it.
struct Snapshot {
  std::chrono::steady_clock::time_point taken = std::chrono::steady_clock::now();
  std::vector<ipc::WorkerCounters> workers;
};

Snapshot take(const ipc::StatsLayout& s) {
  Snapshot snap;
  for (std::uint32_t i = 0; i < s.worker_count; ++i) snap.workers.push_back(s.workers[i].read_counters());
  return snap;
}

double uptime_s(const ipc::WorkerSlot& w) {
  const std::int64_t started = w.started_unix_ms.load(std::memory_order_relaxed);
  if (started == 0 || w.pid.load(std::memory_order_relaxed) <= 0) return 0;
  return static_cast<double>(ipc::unix_ms() - started) / 1000.0;
}

// Records/s of worker i: between two snapshots, or its average since it started.
double rate_of(const ipc::StatsLayout& s, std::uint32_t i, const Snapshot& now, const Snapshot* before) {
  if (before != nullptr) {
    const double dt = std::chrono::duration<double>(now.taken - before->taken).count();
    if (dt > 0) return static_cast<double>(now.workers[i].in - before->workers[i].in) / dt;
  }
  const double up = static_cast<double>(ipc::unix_ms() - s.started_unix_ms) / 1000.0;
  return up > 0 ? static_cast<double>(now.workers[i].in) / up : 0;
}

// Shares of busy / waiting for input / blocked by downstream time.
struct Utilisation {
  double busy = 0, waiting = 0, blocked = 0;
};
Utilisation utilisation(const ipc::WorkerCounters& c, const ipc::WorkerCounters* before) {
  ipc::WorkerCounters d = c;
  if (before != nullptr) {
    d.busy_ns -= before->busy_ns;
    d.waiting_input_ns -= before->waiting_input_ns;
    d.blocked_output_ns -= before->blocked_output_ns;
  }
  const double total = static_cast<double>(d.busy_ns + d.waiting_input_ns + d.blocked_output_ns);
  if (total <= 0) return {};
  return {static_cast<double>(d.busy_ns) / total, static_cast<double>(d.waiting_input_ns) / total,
          static_cast<double>(d.blocked_output_ns) / total};
}

std::uint64_t rejected_total(const ipc::StatsLayout& s) {
  std::uint64_t n = 0;
  for (std::uint32_t i = 0; i < s.reason_count.load(std::memory_order_acquire); ++i) {
    n += s.reasons[i].count.load(std::memory_order_relaxed);
  }
  return n;
}

// Fits an 80x24 terminal for the usual pipelines: one line per worker and per link.
std::string render_table(const ipc::StatsLayout& s, const Snapshot& now, const Snapshot* before,
                         bool with_bars) {
  std::string out;
  char line[160];
  const double up = static_cast<double>(ipc::unix_ms() - s.started_unix_ms) / 1000.0;
  std::snprintf(line, sizeof line, "pipeline %s  %s  up %s  launcher %s\n", s.pipeline,
                ipc::to_string(static_cast<ipc::RunState>(s.run_state.load())),
                human_duration(up).c_str(), pid_text(s.launcher_pid.load()).c_str());
  out += line;
  std::string progress = "stored " + group_digits(s.rows.load()) + "  rejected " +
                         group_digits(rejected_total(s)) + "  done " + group_digits(s.stored.load());
  if (const std::uint64_t total = s.total.load()) progress += " of " + group_digits(total);
  out += progress + "\n\n";
  out += "stage       w pid     state    rst  rate          in          busy wait blkd\n";
  for (std::uint32_t st = 0; st < s.stage_count; ++st) {
    const ipc::StageSlot& stage = s.stages[st];
    for (std::uint32_t k = 0; k < stage.workers; ++k) {
      const std::uint32_t i = stage.first_worker + k;
      const ipc::WorkerSlot& w = s.workers[i];
      const ipc::WorkerCounters& c = now.workers[i];
      const Utilisation u = utilisation(c, before ? &before->workers[i] : nullptr);
      std::snprintf(line, sizeof line, "%-11.11s %u %-7s %-8s %-4u %-13s %-11s %3.0f%% %3.0f%% %3.0f%%\n",
                    k == 0 ? stage.name : "", k, pid_text(w.pid.load()).c_str(),
                    phase_name(w.phase.load()), w.restarts.load(),
                    human_rate(rate_of(s, i, now, before)).c_str(), group_digits(c.in).c_str(),
                    u.busy * 100, u.waiting * 100, u.blocked * 100);
      out += line;
    }
  }
  out += "\nlink                          type fill                 hwm  blocked\n";
  for (std::uint32_t l = 0; l < s.link_count; ++l) {
    const ipc::LinkSlot& link = s.links[l];
    const double cap = static_cast<double>(link.capacity);
    const double fill = cap > 0 ? static_cast<double>(link.fill.load()) / cap : 0;
    const double hwm = cap > 0 ? static_cast<double>(link.high_water.load()) / cap : 0;
    const std::string name = std::string(link.from) + " -> " + link.to;
    std::snprintf(line, sizeof line, "%-29.29s %-4s %-12s %4.0f%% %4.0f%%  %s\n", name.c_str(),
                  link.type == 0 ? "shm" : "pipe", with_bars ? bar(fill, 12).c_str() : "",
                  fill * 100, hwm * 100,
                  human_duration(static_cast<double>(link.blocked_ns.load()) / 1e9).c_str());
    out += line;
  }
  // Reject reasons, wrapped to the width.
  std::string reasons = "rejects:";
  const std::uint32_t count = s.reason_count.load(std::memory_order_acquire);
  if (count == 0) reasons += " none";
  std::string row = reasons;
  std::string all;
  for (std::uint32_t r = 0; r < count; ++r) {
    const std::string item = std::string(" ") + s.reasons[r].reason + " " +
                             group_digits(s.reasons[r].count.load());
    if (row.size() + item.size() > 79) {
      all += row + "\n";
      row = "        ";
    }
    row += item;
  }
  all += row + "\n";
  out += "\n" + all;
  out += "manager: pid " + pid_text(s.manager_pid.load()) + ", restarts " +
         std::to_string(s.manager_restarts.load()) + "\n";
  return out;
}

nlohmann::json render_json(const ipc::StatsLayout& s, const Snapshot& now) {
  using nlohmann::json;
  json j;
  j["pipeline"] = s.pipeline;
  j["pid"] = s.launcher_pid.load();
  j["state"] = ipc::to_string(static_cast<ipc::RunState>(s.run_state.load()));
  j["stored"] = s.rows.load();
  j["rejected"] = rejected_total(s);
  j["positions_done"] = s.stored.load();
  j["total"] = s.total.load();
  json stages = json::array();
  for (std::uint32_t st = 0; st < s.stage_count; ++st) {
    const ipc::StageSlot& stage = s.stages[st];
    json workers = json::array();
    std::uint64_t in = 0, out = 0, rej = 0;
    for (std::uint32_t k = 0; k < stage.workers; ++k) {
      const std::uint32_t i = stage.first_worker + k;
      const ipc::WorkerSlot& w = s.workers[i];
      const ipc::WorkerCounters& c = now.workers[i];
      in += c.in;
      out += c.out;
      rej += c.rejected;
      const Utilisation u = utilisation(c, nullptr);
      workers.push_back({{"index", k},
                         {"pid", w.pid.load()},
                         {"state", phase_name(w.phase.load())},
                         {"restarts", w.restarts.load()},
                         {"uptime_s", uptime_s(w)},
                         {"in", c.in},
                         {"out", c.out},
                         {"rejected", c.rejected},
                         {"skipped", c.skipped},
                         {"rate", rate_of(s, i, now, nullptr)},
                         {"busy", u.busy},
                         {"waiting_input", u.waiting},
                         {"blocked_output", u.blocked},
                         {"activity", ipc::to_string(static_cast<ipc::Activity>(w.activity.load()))}});
    }
    stages.push_back({{"name", stage.name}, {"in", in}, {"out", out}, {"rejected", rej}, {"workers", workers}});
  }
  j["stages"] = stages;
  json links = json::array();
  for (std::uint32_t l = 0; l < s.link_count; ++l) {
    const ipc::LinkSlot& link = s.links[l];
    links.push_back({{"from", link.from},
                     {"to", link.to},
                     {"type", link.type == 0 ? "shm" : "pipe"},
                     {"capacity", link.capacity},
                     {"fill", link.fill.load()},
                     {"high_water", link.high_water.load()},
                     {"records", link.records.load()},
                     {"blocked_s", static_cast<double>(link.blocked_ns.load()) / 1e9}});
  }
  j["links"] = links;
  json reasons = json::object();
  for (std::uint32_t r = 0; r < s.reason_count.load(std::memory_order_acquire); ++r) {
    reasons[s.reasons[r].reason] = s.reasons[r].count.load();
  }
  j["rejects"] = reasons;
  j["manager"] = {{"pid", s.manager_pid.load()},
                  {"state", phase_name(s.manager_phase.load())},
                  {"restarts", s.manager_restarts.load()}};
  return j;
}

}  // namespace

int run_stats(const Invocation& inv) {
  auto config = load_config(inv.config_path, inv.overrides);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().what().c_str());
    return kExitUsage;
  }
  const std::string segment = ipc::segment_name(run_id_of(config->run_dir), "stats");
  auto attached = ipc::SharedSegment::attach(segment, ipc::kStatsKind, std::chrono::milliseconds(200));
  if (!attached) {
    std::fprintf(stderr, "millrace: no run of '%s' is active (run directory %s)\n",
                 config->name.c_str(), config->run_dir.c_str());
    return kExitRunFailed;
  }
  const ipc::StatsLayout& s = ipc::stats_of(*attached);
  if (inv.rejects) {
    auto client = ipc::ManagerClient::connect(config->run_dir / "manager.sock",
                                              config->run_dir / "secret", std::chrono::seconds(2));
    if (!client) {
      std::fprintf(stderr, "millrace: %s\n", client.error().what().c_str());
      return kExitRunFailed;
    }
    std::printf("%s", render_reject_samples(*client).c_str());
    return kExitOk;
  }
  if (inv.json) {
    std::printf("%s\n", render_json(s, take(s)).dump().c_str());
    return kExitOk;
  }
  if (!inv.watch) {
    std::printf("%s", render_table(s, take(s), nullptr, false).c_str());
    return kExitOk;
  }
  struct sigaction sa {};
  sa.sa_handler = on_stats_interrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  Snapshot before = take(s);
  while (g_interrupted == 0) {
    Snapshot now = take(s);
    std::printf("\033[H\033[2J%s(refreshed every second; Ctrl-C to quit)\n",
                render_table(s, now, &before, true).c_str());
    std::fflush(stdout);
    before = std::move(now);
    const auto state = static_cast<ipc::RunState>(s.run_state.load());
    if (state == ipc::RunState::kDone || state == ipc::RunState::kFailed ||
        state == ipc::RunState::kStopped) {
      break;
    }
    // A viewer's refresh period, not synchronisation.
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return kExitOk;
}

}  // namespace millrace::launcher
