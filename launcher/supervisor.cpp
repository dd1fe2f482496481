#include "launcher/supervisor.hpp"

#include <algorithm>
#include <cassert>
#include <csignal>
#include <cstring>

namespace millrace::launcher {

std::string ExitStatus::describe() const {
  if (!signaled) return "exit status " + std::to_string(code);
  const char* abbrev = sigabbrev_np(code);
  return std::string("killed by SIG") + (abbrev ? abbrev : std::to_string(code).c_str());
}

const char* to_string(WorkerPhase phase) {
  switch (phase) {
    case WorkerPhase::kPending: return "pending";
    case WorkerPhase::kRunning: return "running";
    case WorkerPhase::kBackoff: return "backoff";
    case WorkerPhase::kFinished: return "finished";
    case WorkerPhase::kStopped: return "stopped";
    case WorkerPhase::kFailed: return "failed";
  }
  return "?";
}

Supervisor::Supervisor(std::vector<StageSpec> stages, ProcessControl& os)
    : stages_(std::move(stages)), os_(os) {
  workers_.resize(stages_.size());
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    for (std::uint32_t i = 0; i < stages_[s].workers; ++i) {
      Worker w;
      w.key = WorkerKey{s, i};
      w.next_backoff = stages_[s].policy.backoff;
      workers_[s].push_back(std::move(w));
    }
  }
}

Supervisor::Worker& Supervisor::at(const WorkerKey& key) {
  assert(key.stage < workers_.size() && key.index < workers_[key.stage].size());
  return workers_[key.stage][key.index];
}
const Supervisor::Worker& Supervisor::at(const WorkerKey& key) const {
  assert(key.stage < workers_.size() && key.index < workers_[key.stage].size());
  return workers_[key.stage][key.index];
}

Supervisor::Worker* Supervisor::find(pid_t pid) {
  for (auto& stage : workers_) {
    for (auto& w : stage) {
      if (w.pid == pid && w.phase == WorkerPhase::kRunning) return &w;
    }
  }
  return nullptr;
}

Status Supervisor::spawn(Worker& w) {
  auto pid = os_.spawn(w.key);
  if (!pid) {
    fail(w, "stage '" + stages_[w.key.stage].name + "' worker " + std::to_string(w.key.index) +
                " could not be started: " + pid.error().what());
    return pid.error();
  }
  w.pid = *pid;
  w.phase = WorkerPhase::kRunning;
  w.started = os_.now();
  w.watchdog_fired = false;
  w.restart_requested = false;
  return ok_status();
}

Status Supervisor::start_stage(std::size_t stage) {
  assert(stage < workers_.size());
  for (auto& w : workers_[stage]) {
    if (w.phase == WorkerPhase::kPending) {
      if (auto st = spawn(w); !st) return st;
    }
  }
  return ok_status();
}

void Supervisor::fail(Worker& w, std::string message) {
  w.phase = WorkerPhase::kFailed;
  if (!failure_) failure_ = RunFailure{w.key, std::move(message)};
}

void Supervisor::on_exit(pid_t pid, ExitStatus status) {
  Worker* found = find(pid);
  if (found == nullptr) return;
  Worker& w = *found;
  w.last_exit = status;
  w.pid = 0;
  const StageSpec& spec = stages_[w.key.stage];
  const Clock::time_point now = os_.now();

  if (w.rewound) {
    w.rewound = false;
    w.phase = WorkerPhase::kBackoff;
    w.next_start = now;
    return;
  }
  if (os_.finished(w.key) && status.clean()) {
    w.phase = WorkerPhase::kFinished;
    return;
  }
  if (w.restart_requested && !failure_) {
    w.restart_count++;
    if (held_) {
      w.phase = WorkerPhase::kBackoff;
      w.next_start = now;
      return;
    }
    (void)spawn(w);
    return;
  }
  if (draining_ && status.clean()) {
    w.phase = WorkerPhase::kStopped;
    return;
  }
  if (failure_) {  // the run is stopping; nothing restarts
    w.phase = WorkerPhase::kStopped;
    return;
  }
  // A worker that ends before finishing its stream has failed, whatever its status, unless
  // its policy says a clean exit is fine.
  std::string how = w.watchdog_fired ? "hung (no heartbeat for " +
                                           std::to_string(spec.policy.watchdog.count()) +
                                           " ms), killed by the watchdog"
                                     : status.describe();
  const bool restartable =
      spec.policy.kind == RestartKind::kAlways ||
      (spec.policy.kind == RestartKind::kOnFailure);
  if (!restartable) {
    fail(w, "stage '" + spec.name + "' worker " + std::to_string(w.key.index) + " ended (" + how +
                ") and its restart policy is 'never'");
    return;
  }
  // A worker that ran longer than the window earns its backoff back.
  if (now - w.started > spec.policy.restart_window) w.next_backoff = spec.policy.backoff;
  while (!w.restarts.empty() && now - w.restarts.front() > spec.policy.restart_window) {
    w.restarts.pop_front();
  }
  if (static_cast<int>(w.restarts.size()) >= spec.policy.max_restarts) {
    fail(w, "stage '" + spec.name + "' worker " + std::to_string(w.key.index) + " ended (" + how +
                ") after " + std::to_string(w.restarts.size()) + " restarts within " +
                std::to_string(spec.policy.restart_window.count() / 1000) +
                " s: giving up (max_restarts = " + std::to_string(spec.policy.max_restarts) + ")");
    return;
  }
  schedule_restart(w, how);
}

void Supervisor::schedule_restart(Worker& w, const std::string& /*how*/) {
  const SupervisionPolicy& p = stages_[w.key.stage].policy;
  const Clock::time_point now = os_.now();
  // Full backoff plus up to 50% jitter, so workers that failed together do not restart in step.
  const auto base = w.next_backoff;
  const auto jitter = milliseconds(static_cast<long>(static_cast<double>(base.count()) * 0.5 *
                                                     os_.random_unit()));
  w.next_start = now + base + jitter;
  w.next_backoff = std::min(p.backoff_max, base * 2);
  w.restarts.push_back(now);
  w.phase = WorkerPhase::kBackoff;
}

void Supervisor::tick() {
  const Clock::time_point now = os_.now();
  for (auto& stage : workers_) {
    for (auto& w : stage) {
      if (w.phase == WorkerPhase::kBackoff && now >= w.next_start && !failure_ && !held_) {
        w.restart_count++;
        (void)spawn(w);
        continue;
      }
      const SupervisionPolicy& p = stages_[w.key.stage].policy;
      if (w.phase != WorkerPhase::kRunning || p.watchdog.count() == 0 || w.watchdog_fired) continue;
      // A worker gets one watchdog period from its start before it must have beaten.
      Clock::time_point last = w.started;
      if (auto hb = os_.heartbeat(w.key); hb && *hb > last) last = *hb;
      if (now - last > p.watchdog) {
        w.watchdog_fired = true;
        (void)os_.signal(w.pid, SIGKILL);
      }
    }
  }
}

void Supervisor::rewind() {
  held_ = true;
  const Clock::time_point now = os_.now();
  for (auto& stage : workers_) {
    for (auto& w : stage) {
      if (w.phase == WorkerPhase::kRunning) {
        w.rewound = true;
        (void)os_.signal(w.pid, SIGKILL);
      } else if (w.phase == WorkerPhase::kFinished || w.phase == WorkerPhase::kStopped) {
        w.phase = WorkerPhase::kBackoff;
        w.next_start = now;
      }
    }
  }
}

Status Supervisor::request_restart(const WorkerKey& key) {
  Worker& w = at(key);
  if (w.phase != WorkerPhase::kRunning) {
    return Error{"supervisor", 1,
                 "stage '" + stages_[key.stage].name + "' worker " + std::to_string(key.index) +
                     " is not running (" + to_string(w.phase) + ")",
                 0};
  }
  w.restart_requested = true;
  return os_.signal(w.pid, SIGTERM);
}

bool Supervisor::all_done() const {
  for (const auto& stage : workers_) {
    for (const auto& w : stage) {
      if (w.phase != WorkerPhase::kFinished && w.phase != WorkerPhase::kStopped) return false;
    }
  }
  return true;
}

bool Supervisor::any_running() const {
  for (const auto& stage : workers_) {
    for (const auto& w : stage) {
      if (w.phase == WorkerPhase::kRunning) return true;
    }
  }
  return false;
}

std::optional<pid_t> Supervisor::pid_of(const WorkerKey& key) const {
  const Worker& w = at(key);
  if (w.phase != WorkerPhase::kRunning) return std::nullopt;
  return w.pid;
}

WorkerPhase Supervisor::phase_of(const WorkerKey& key) const { return at(key).phase; }
std::uint32_t Supervisor::restarts_of(const WorkerKey& key) const { return at(key).restart_count; }
std::optional<ExitStatus> Supervisor::last_exit_of(const WorkerKey& key) const {
  return at(key).last_exit;
}

std::vector<pid_t> Supervisor::running_pids() const {
  std::vector<pid_t> pids;
  for (const auto& stage : workers_) {
    for (const auto& w : stage) {
      if (w.phase == WorkerPhase::kRunning) pids.push_back(w.pid);
    }
  }
  return pids;
}

}  // namespace millrace::launcher
