// Supervisor: the restart policy of the run's workers, free of any real process or clock.
//
// Like Erlang/OTP and systemd: each stage has a policy (always | on-failure | never), at most
// `max_restarts` restarts within `restart_window` (past that the run stops and names the
// stage), exponential backoff with jitter between restarts, and a watchdog that kills a worker
// whose heartbeat is older than `watchdog` (a SIGSTOPped or looping process), so that it is
// restarted like any other failure.
//
// The operating system is behind ProcessControl, so the logic is tested with a fake.
// Thread safety: one thread (the launcher's event loop) calls everything.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "ipc/result.hpp"

namespace millrace::launcher {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum class RestartKind { kAlways, kOnFailure, kNever };

struct SupervisionPolicy {
  RestartKind kind = RestartKind::kOnFailure;
  int max_restarts = 5;
  milliseconds restart_window{60'000};
  milliseconds backoff{100};
  milliseconds backoff_max{5'000};
  milliseconds watchdog{10'000};  // 0: no watchdog
};

struct WorkerKey {
  std::size_t stage = 0;   // index in the supervisor's stage list
  std::uint32_t index = 0; // worker index within the stage
  friend bool operator==(const WorkerKey&, const WorkerKey&) = default;
};

// How a process ended: exited with a status, or was killed by a signal.
struct ExitStatus {
  bool signaled = false;
  int code = 0;  // exit status, or the signal number when signaled
  [[nodiscard]] bool clean() const { return !signaled && code == 0; }
  [[nodiscard]] std::string describe() const;  // "exit status 3", "killed by SIGKILL"
};

// The operating system as the supervisor sees it.
class ProcessControl {
 public:
  virtual ~ProcessControl() = default;
  virtual Result<pid_t> spawn(const WorkerKey& worker) = 0;
  virtual Status signal(pid_t pid, int sig) = 0;
  [[nodiscard]] virtual Clock::time_point now() const = 0;
  // Uniform in [0, 1), for backoff jitter.
  virtual double random_unit() = 0;
  // When the worker last proved it is alive (its heartbeat), or nullopt if it never did.
  [[nodiscard]] virtual std::optional<Clock::time_point> heartbeat(const WorkerKey& worker) const = 0;
  // Whether the worker told the run it forwarded its end of stream.
  [[nodiscard]] virtual bool finished(const WorkerKey& worker) const = 0;
};

enum class WorkerPhase { kPending, kRunning, kBackoff, kFinished, kStopped, kFailed };
const char* to_string(WorkerPhase phase);

struct StageSpec {
  std::string name;
  std::uint32_t workers = 1;
  SupervisionPolicy policy;
};

// Why the run must stop.
struct RunFailure {
  WorkerKey worker;
  std::string message;  // names the stage, worker and how it ended
};

class Supervisor {
 public:
  Supervisor(std::vector<StageSpec> stages, ProcessControl& os);

  // Starts every worker of the stage now.
  Status start_stage(std::size_t stage);
  // A child ended: decides what follows. Unknown pids are ignored.
  void on_exit(pid_t pid, ExitStatus status);
  // Starts due restarts and enforces the watchdog; call it often (every 100 ms or so).
  void tick();
  // Restart on request (`millrace restart`): stops the worker with SIGTERM and starts it again
  // at once when it exits, without counting against its restart limit.
  Status request_restart(const WorkerKey& worker);
  // Draining: workers that exit cleanly from now on are not restarted.
  void set_draining(bool draining) { draining_ = draining; }
  // Rewind: every worker starts over, without counting as a restart (the chain restarts from
  // the store's position when a pipe link broke). Running workers are killed; nobody starts
  // again until release_rewind().
  void rewind();
  void release_rewind() { held_ = false; }
  [[nodiscard]] bool rewinding() const { return held_; }

  [[nodiscard]] const std::optional<RunFailure>& failure() const { return failure_; }
  // True when every worker finished its stream (or stopped cleanly while draining).
  [[nodiscard]] bool all_done() const;
  [[nodiscard]] bool any_running() const;
  [[nodiscard]] std::optional<pid_t> pid_of(const WorkerKey& worker) const;
  [[nodiscard]] WorkerPhase phase_of(const WorkerKey& worker) const;
  [[nodiscard]] std::uint32_t restarts_of(const WorkerKey& worker) const;
  [[nodiscard]] std::optional<ExitStatus> last_exit_of(const WorkerKey& worker) const;
  [[nodiscard]] const std::vector<StageSpec>& stages() const { return stages_; }
  // Every running worker's pid.
  [[nodiscard]] std::vector<pid_t> running_pids() const;

 private:
  struct Worker {
    WorkerKey key;
    WorkerPhase phase = WorkerPhase::kPending;
    pid_t pid = 0;
    Clock::time_point started{};
    Clock::time_point next_start{};
    milliseconds next_backoff{0};
    std::deque<Clock::time_point> restarts;  // within the window
    std::uint32_t restart_count = 0;
    std::optional<ExitStatus> last_exit;
    bool restart_requested = false;
    bool watchdog_fired = false;
    bool rewound = false;
  };

  Worker* find(pid_t pid);
  Worker& at(const WorkerKey& key);
  const Worker& at(const WorkerKey& key) const;
  Status spawn(Worker& w);
  void schedule_restart(Worker& w, const std::string& how);
  void fail(Worker& w, std::string message);

  std::vector<StageSpec> stages_;
  ProcessControl& os_;
  std::vector<std::vector<Worker>> workers_;
  std::optional<RunFailure> failure_;
  bool draining_ = false;
  bool held_ = false;
};

}  // namespace millrace::launcher
