// `millrace run`: the launcher. Validates the config, locks the run directory, lays out the
// stats segment and the links, starts and supervises every worker until the last record is
// stored, and reports.
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "ipc/posix_call.hpp"
#include "ipc/shm_segment.hpp"
#include "ipc/stats.hpp"
#include "launcher/commands.hpp"
#include "launcher/config.hpp"
#include "launcher/control.hpp"
#include "launcher/format.hpp"
#include "launcher/run_dir.hpp"
#include "launcher/spawn.hpp"
#include "launcher/supervisor.hpp"
#include "launcher/topology.hpp"
#include "stages/handover.hpp"

namespace millrace::launcher {
namespace {

using namespace std::chrono_literals;

constexpr auto kTick = 100ms;

SupervisionPolicy policy_of(const RestartConfig& c) {
  SupervisionPolicy p;
  switch (c.restart) {
    case RestartPolicy::kAlways: p.kind = RestartKind::kAlways; break;
    case RestartPolicy::kOnFailure: p.kind = RestartKind::kOnFailure; break;
    case RestartPolicy::kNever: p.kind = RestartKind::kNever; break;
  }
  p.max_restarts = c.max_restarts;
  p.restart_window = c.restart_window;
  p.backoff = c.backoff;
  p.backoff_max = c.backoff_max;
  p.watchdog = c.watchdog;
  return p;
}

// The last `n` lines of a file, for a failure message.
std::string tail_lines(const std::filesystem::path& path, int n) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  const long from = std::max(0L, size - 8192);
  std::fseek(f, from, SEEK_SET);
  std::string text(static_cast<std::size_t>(size - from), '\0');
  text.resize(std::fread(text.data(), 1, text.size(), f));
  std::fclose(f);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  std::string out;
  for (std::size_t i = lines.size() > static_cast<std::size_t>(n) ? lines.size() - static_cast<std::size_t>(n) : 0;
       i < lines.size(); ++i) {
    out += "    | " + lines[i] + "\n";
  }
  return out;
}

// The manager is supervised like a stage, by its own Supervisor: it never finishes its
// stream, so it must not hold up the end of the run, and it stops when the run does.
class ManagerControl final : public ProcessControl {
 public:
  ManagerControl(const RunDir& dir, ipc::StatsLayout& stats) : dir_(dir), stats_(stats) {}

  Result<pid_t> spawn(const WorkerKey&) override {
    SpawnRequest req;
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    req.program = n > 0 ? std::string(self, static_cast<std::size_t>(n)) : "millrace";
    req.args = {"__manager", dir_.config_path().string()};
    req.env = {"MILLRACE_MANAGER=" + dir_.manager_socket().string(),
               "MILLRACE_SECRET=" + dir_.secret_path().string(),
               "MILLRACE_MANAGER_STATE=" + (dir_.path() / "manager.state").string()};
    req.log = dir_.log_path("manager", 0);
    auto pid = spawn_child(req);
    if (pid) stats_.manager_pid.store(*pid, std::memory_order_relaxed);
    pid_ = pid ? *pid : 0;
    return pid;
  }
  Status signal(pid_t pid, int sig) override {
    if (::kill(pid, sig) != 0) return sys_error("run", "kill", std::to_string(pid), errno);
    return ok_status();
  }
  [[nodiscard]] Clock::time_point now() const override { return Clock::now(); }
  double random_unit() override { return 0.5; }
  [[nodiscard]] std::optional<Clock::time_point> heartbeat(const WorkerKey&) const override {
    return std::nullopt;  // no watchdog: liveness is its process and its socket
  }
  [[nodiscard]] bool finished(const WorkerKey&) const override { return false; }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  const RunDir& dir_;
  ipc::StatsLayout& stats_;
  pid_t pid_ = 0;
};

// A fresh secret for the run's manager, readable by the run's user only.
Status write_secret(const std::filesystem::path& path) {
  std::random_device rd;
  std::string secret;
  for (int i = 0; i < 32; ++i) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", rd() & 0xff);
    secret += hex;
  }
  return write_file_atomically(path, secret + "\n", 0600);
}

class Launcher final : public ProcessControl {
 public:
  Launcher(PipelineConfig config, RunDir dir, Topology topology, ipc::SharedSegment stats,
           std::string fingerprint)
      : config_(std::move(config)),
        dir_(std::move(dir)),
        topology_(std::move(topology)),
        stats_segment_(std::move(stats)),
        stats_(ipc::stats_of(stats_segment_)),
        fingerprint_(std::move(fingerprint)),
        rng_(std::random_device{}()) {}
  ~Launcher() override { (void)stats_segment_.unlink(); }
  Launcher(const Launcher&) = delete;
  Launcher& operator=(const Launcher&) = delete;

  int execute();

  // ProcessControl
  Result<pid_t> spawn(const WorkerKey& key) override;
  Status signal(pid_t pid, int sig) override {
    if (::kill(pid, sig) != 0) return sys_error("run", "kill", std::to_string(pid), errno);
    return ok_status();
  }
  [[nodiscard]] Clock::time_point now() const override { return Clock::now(); }
  double random_unit() override { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  [[nodiscard]] std::optional<Clock::time_point> heartbeat(const WorkerKey& key) const override {
    const std::int64_t ns = slot(key).heartbeat_ns.load(std::memory_order_relaxed);
    if (ns == 0) return std::nullopt;
    // steady_clock is CLOCK_MONOTONIC on Linux, the clock workers beat with.
    return Clock::time_point(std::chrono::nanoseconds(ns));
  }
  [[nodiscard]] bool finished(const WorkerKey& key) const override {
    return slot(key).finished.load(std::memory_order_acquire) != 0;
  }

 private:
  ipc::WorkerSlot& slot(const WorkerKey& key) const {
    return stats_.workers[topology_.worker(key.stage, key.index).slot];
  }
  void lay_out_stats();
  Status open_signals();
  void reap();
  void on_signal(int sig);
  std::string on_control(const std::string& request);
  void begin_drain(const char* why);
  void sync_stats();
  void show_progress(bool final_line);
  void kill_everything();
  void stop_manager();
  int report(bool failed);

  PipelineConfig config_;
  RunDir dir_;
  Topology topology_;
  ipc::SharedSegment stats_segment_;
  ipc::StatsLayout& stats_;
  std::string fingerprint_;
  std::mt19937_64 rng_;
  std::optional<Supervisor> supervisor_;
  std::optional<ManagerControl> manager_control_;
  std::optional<Supervisor> manager_;
  std::optional<ControlServer> control_;
  int signal_fd_ = -1;
  std::map<pid_t, WorkerKey> pids_;
  std::vector<long> peak_rss_kib_;  // per worker slot, across incarnations
  long peak_rss_manager_kib_ = 0;
  bool draining_ = false;
  bool abort_now_ = false;
  bool rewind_pending_ = false;
  Clock::time_point started_ = Clock::now();
  Clock::time_point drain_started_{};
  Clock::time_point last_progress_{};
  bool tty_ = ::isatty(STDERR_FILENO) != 0;
  bool progress_shown_ = false;
};

void Launcher::lay_out_stats() {
  ipc::copy_name(stats_.pipeline, config_.name);
  stats_.stage_count = static_cast<std::uint32_t>(config_.stages.size());
  stats_.worker_count = static_cast<std::uint32_t>(topology_.workers().size());
  stats_.started_unix_ms = ipc::unix_ms();
  for (std::size_t s = 0; s < config_.stages.size(); ++s) {
    ipc::copy_name(stats_.stages[s].name, config_.stages[s].name);
    stats_.stages[s].first_worker = topology_.worker(s, 0).slot;
    stats_.stages[s].workers = static_cast<std::uint32_t>(config_.stages[s].workers);
  }
  for (const WorkerPlan& w : topology_.workers()) {
    stats_.workers[w.slot].stage = static_cast<std::uint32_t>(w.stage);
    stats_.workers[w.slot].index = w.index;
  }
  const auto& links = topology_.links();
  stats_.link_count = static_cast<std::uint32_t>(links.size());
  for (std::size_t i = 0; i < links.size(); ++i) {
    const LinkPlan& l = links[i];
    ipc::copy_name(stats_.links[i].from,
                   config_.stages[l.from_stage].name + "." + std::to_string(l.from_worker));
    ipc::copy_name(stats_.links[i].to,
                   config_.stages[l.to_stage].name + "." + std::to_string(l.to_worker));
    stats_.links[i].type = l.config.type == LinkConfig::kShm ? 0 : 1;
    stats_.links[i].capacity = l.capacity;
  }
  stats_.launcher_pid.store(::getpid(), std::memory_order_relaxed);
  stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kStarting));
  peak_rss_kib_.assign(topology_.workers().size(), 0);
}

Result<pid_t> Launcher::spawn(const WorkerKey& key) {
  const StageConfig& stage = config_.stages[key.stage];
  const WorkerPlan& plan = topology_.worker(key.stage, key.index);
  stages::Handover h;
  h.config_path = dir_.config_path().string();
  h.run_id = dir_.run_id();
  h.stage = stage.name;
  h.worker = key.index;
  h.workers = static_cast<std::uint32_t>(stage.workers);
  h.lanes = topology_.lanes();
  h.inputs = topology_.input_specs(plan);
  h.outputs = topology_.output_specs(plan);
  h.stats_segment = dir_.stats_segment();
  h.slot = plan.slot;
  h.fingerprint = fingerprint_;
  if (config_.manager.enabled) {
    h.manager_socket = dir_.manager_socket().string();
    h.secret_path = dir_.secret_path().string();
  }
  SpawnRequest req;
  req.program = stage.builtin.empty() ? stage.exec : builtin_program(stage.builtin);
  req.env = stages::handover_to_env(h);
  req.log = dir_.log_path(stage.name, key.index);
  req.inherit_fds = topology_.inherited_fds(plan);
  ipc::WorkerSlot& s = stats_.workers[plan.slot];
  s.finished.store(0, std::memory_order_relaxed);
  s.heartbeat_ns.store(0, std::memory_order_relaxed);
  auto pid = spawn_child(req);
  if (!pid) return pid.error();
  pids_[*pid] = key;
  s.pid.store(*pid, std::memory_order_relaxed);
  s.started_unix_ms.store(ipc::unix_ms(), std::memory_order_relaxed);
  return pid;
}

Status Launcher::open_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return sys_error("run", "sigprocmask", "", errno);
  signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) return sys_error("run", "signalfd", "", errno);
  ::signal(SIGPIPE, SIG_IGN);
  return ok_status();
}

void Launcher::reap() {
  for (;;) {
    int status = 0;
    rusage ru{};
    const pid_t pid = ::wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return;
    auto it = pids_.find(pid);
    if (it == pids_.end()) {
      if (manager_) {
        manager_->on_exit(pid, WIFSIGNALED(status) ? ExitStatus{true, WTERMSIG(status)}
                                                   : ExitStatus{false, WEXITSTATUS(status)});
        peak_rss_manager_kib_ = std::max(peak_rss_manager_kib_, ru.ru_maxrss);
        stats_.manager_pid.store(0, std::memory_order_relaxed);
      }
      continue;
    }
    const WorkerKey key = it->second;
    pids_.erase(it);
    const std::uint32_t slot_index = topology_.worker(key.stage, key.index).slot;
    peak_rss_kib_[slot_index] = std::max(peak_rss_kib_[slot_index], ru.ru_maxrss);
    ExitStatus exit;
    if (WIFSIGNALED(status)) {
      exit = ExitStatus{true, WTERMSIG(status)};
    } else {
      exit = ExitStatus{false, WEXITSTATUS(status)};
    }
    ipc::WorkerSlot& s = stats_.workers[slot_index];
    s.last_exit_code.store(exit.signaled ? -exit.code : exit.code, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    supervisor_->on_exit(pid, exit);
    // A pipe cannot give back what a dead reader took from it: start the chain over from the
    // store's position (the store's restart publishes it again).
    if (topology_.has_pipes() && !supervisor_->rewinding() && !supervisor_->failure() &&
        supervisor_->phase_of(key) == WorkerPhase::kBackoff) {
      supervisor_->rewind();
      rewind_pending_ = true;
    }
  }
}

void Launcher::begin_drain(const char* why) {
  if (draining_) return;
  draining_ = true;
  drain_started_ = Clock::now();
  supervisor_->set_draining(true);
  stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kDraining));
  std::fprintf(stderr, "%smillrace: %s: draining (records in flight go to the store; Ctrl-C again to stop at once)\n",
               progress_shown_ && tty_ ? "\n" : "", why);
  progress_shown_ = false;
  // The source stops reading and sends end of stream; the rest follows it out.
  for (std::uint32_t i = 0; i < static_cast<std::uint32_t>(config_.stages[0].workers); ++i) {
    if (auto pid = supervisor_->pid_of({0, i})) ::kill(*pid, SIGTERM);
  }
}

void Launcher::on_signal(int sig) {
  if (sig == SIGCHLD) return reap();
  if (sig == SIGINT && draining_) {
    abort_now_ = true;
    return;
  }
  begin_drain(sig == SIGINT ? "interrupted" : "asked to stop");
}

std::string Launcher::on_control(const std::string& request) {
  std::vector<std::string> words;
  std::size_t pos = 0;
  while (pos < request.size()) {
    const std::size_t end = request.find(' ', pos);
    words.push_back(request.substr(pos, end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  if (words.empty()) return "error empty request";
  if (words[0] == "stop") {
    begin_drain("stop requested");
    return "ok draining";
  }
  if ((words[0] == "kill" && words.size() == 4) || (words[0] == "restart" && words.size() == 3)) {
    auto it = std::find_if(config_.stages.begin(), config_.stages.end(),
                           [&](const StageConfig& s) { return s.name == words[1]; });
    if (it == config_.stages.end()) return "error no stage '" + words[1] + "' in this pipeline";
    const std::size_t stage = static_cast<std::size_t>(it - config_.stages.begin());
    std::vector<std::uint32_t> targets;
    if (words[2] == "*") {
      for (int i = 0; i < it->workers; ++i) targets.push_back(static_cast<std::uint32_t>(i));
    } else {
      const int w = std::atoi(words[2].c_str());
      if (w < 0 || w >= it->workers) {
        return "error stage '" + words[1] + "' has workers 0.." + std::to_string(it->workers - 1);
      }
      targets.push_back(static_cast<std::uint32_t>(w));
    }
    int done = 0;
    std::string problems;
    for (std::uint32_t w : targets) {
      if (words[0] == "restart") {
        if (auto st = supervisor_->request_restart({stage, w}); st) {
          ++done;
        } else {
          problems += " " + st.error().what();
        }
      } else if (auto pid = supervisor_->pid_of({stage, w})) {
        if (::kill(*pid, std::atoi(words[3].c_str())) == 0) ++done;
      } else {
        problems += " worker " + std::to_string(w) + " is not running;";
      }
    }
    if (done == 0) return "error" + problems;
    return "ok " + std::to_string(done) + (words[0] == "kill" ? " signalled" : " restarting");
  }
  return "error unknown request '" + request + "'";
}

void Launcher::sync_stats() {
  if (manager_) {
    stats_.manager_phase.store(static_cast<std::uint32_t>(manager_->phase_of({0, 0})),
                               std::memory_order_relaxed);
    stats_.manager_restarts.store(manager_->restarts_of({0, 0}), std::memory_order_relaxed);
  }
  for (const WorkerPlan& w : topology_.workers()) {
    const WorkerKey key{w.stage, w.index};
    ipc::WorkerSlot& s = stats_.workers[w.slot];
    s.phase.store(static_cast<std::uint32_t>(supervisor_->phase_of(key)), std::memory_order_relaxed);
    s.restarts.store(supervisor_->restarts_of(key), std::memory_order_relaxed);
  }
}

void Launcher::show_progress(bool final_line) {
  const auto now = Clock::now();
  const auto every = tty_ ? 250ms : 5000ms;
  if (!final_line && now - last_progress_ < every) return;
  last_progress_ = now;
  const double secs = std::chrono::duration<double>(now - started_).count();
  std::uint64_t in = 0;
  std::uint32_t restarts = 0;
  for (std::uint32_t i = 0; i < stats_.stages[0].workers; ++i) {
    in += stats_.workers[stats_.stages[0].first_worker + i].read_counters().in;
  }
  for (const WorkerPlan& w : topology_.workers()) restarts += supervisor_->restarts_of({w.stage, w.index});
  std::uint64_t rejected = 0;
  for (std::uint32_t i = 0; i < stats_.reason_count.load(std::memory_order_acquire); ++i) {
    rejected += stats_.reasons[i].count.load(std::memory_order_relaxed);
  }
  const std::uint64_t rows = stats_.rows.load(std::memory_order_relaxed);
  std::string line = config_.name + ": read " + group_digits(in) + ", stored " +
                     group_digits(rows) + ", rejected " + group_digits(rejected) + ", " +
                     human_rate(secs > 0 ? static_cast<double>(in) / secs : 0) + ", restarts " +
                     std::to_string(restarts) + ", " + human_duration(secs);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    progress_shown_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void Launcher::stop_manager() {
  if (!manager_) return;
  manager_->set_draining(true);
  if (auto pid = manager_->pid_of({0, 0})) {
    ::kill(*pid, SIGTERM);
    int status = 0;
    rusage ru{};
    // The manager journals as it goes; SIGTERM only ends its loop.
    while (::wait4(*pid, &status, 0, &ru) < 0 && errno == EINTR) {
    }
    peak_rss_manager_kib_ = std::max(peak_rss_manager_kib_, ru.ru_maxrss);
  }
  stats_.manager_pid.store(0, std::memory_order_relaxed);
}

void Launcher::kill_everything() {
  for (const auto& [pid, key] : pids_) ::kill(pid, SIGKILL);
  while (!pids_.empty()) {
    int status = 0;
    rusage ru{};
    const pid_t pid = ::wait4(-1, &status, 0, &ru);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    pids_.erase(pid);
  }
}

int Launcher::execute() {
  lay_out_stats();
  stats_segment_.publish();
  if (auto st = open_signals(); !st) {
    std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
    return kExitRunFailed;
  }
  if (auto server = ControlServer::listen(dir_.control_socket())) {
    control_.emplace(std::move(*server));
  } else {
    std::fprintf(stderr, "millrace: %s\n", server.error().what().c_str());
    return kExitRunFailed;
  }
  std::vector<StageSpec> specs;
  for (const StageConfig& s : config_.stages) {
    specs.push_back(StageSpec{s.name, static_cast<std::uint32_t>(s.workers), policy_of(s)});
  }
  supervisor_.emplace(std::move(specs), *this);
  if (config_.manager.enabled) {
    if (auto st = write_secret(dir_.secret_path()); !st) {
      std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
      return kExitRunFailed;
    }
    manager_control_.emplace(dir_, stats_);
    manager_.emplace(std::vector<StageSpec>{StageSpec{"manager", 1, policy_of(config_.manager)}},
                     *manager_control_);
    if (auto st = manager_->start_stage(0); !st) {
      std::fprintf(stderr, "millrace: %s\n", manager_->failure()->message.c_str());
      return kExitRunFailed;
    }
  }
  stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kRunning));
  // Every stage starts at once: the source waits for the store to publish its position.
  for (std::size_t s = config_.stages.size(); s-- > 0;) {
    if (auto st = supervisor_->start_stage(s); !st) break;
  }

  while (!supervisor_->failure() && !abort_now_) {
    if (supervisor_->all_done()) break;
    pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {control_->fd(), POLLIN, 0}};
    const int rc = ::poll(fds, 2, static_cast<int>(kTick.count()));
    if (rc > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo info{};
      while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        on_signal(static_cast<int>(info.ssi_signo));
      }
    }
    if (rc > 0 && (fds[1].revents & POLLIN)) {
      control_->serve_one([this](const std::string& r) { return on_control(r); });
    }
    reap();  // SIGCHLD coalesces; reaping on every tick loses nothing
    if (rewind_pending_ && !supervisor_->any_running()) {
      // Every worker is gone: new pipes, and the store publishes its position again.
      topology_.destroy_links();
      if (auto st = topology_.create_links(); !st) {
        std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
        kill_everything();
        return kExitRunFailed;
      }
      stats_.store_ready.store(0, std::memory_order_release);
      supervisor_->release_rewind();
      rewind_pending_ = false;
    }
    supervisor_->tick();
    if (manager_) {
      manager_->tick();
      if (manager_->failure() && !supervisor_->failure()) {
        std::fprintf(stderr, "\nmillrace: %s\n", manager_->failure()->message.c_str());
        abort_now_ = true;
      }
    }
    sync_stats();
    show_progress(false);
    if (draining_ && Clock::now() - drain_started_ > config_.drain_timeout) {
      std::fprintf(stderr, "\nmillrace: the drain did not finish within %lld s: stopping at once\n",
                   static_cast<long long>(config_.drain_timeout.count() / 1000));
      abort_now_ = true;
    }
  }
  const bool failed = supervisor_->failure().has_value() || abort_now_;
  if (failed) kill_everything();
  stop_manager();
  sync_stats();
  return report(failed);
}

int Launcher::report(bool failed) {
  if (progress_shown_ && tty_) std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(Clock::now() - started_).count();
  if (supervisor_->failure()) {
    const RunFailure& f = *supervisor_->failure();
    const StageConfig& stage = config_.stages[f.worker.stage];
    stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kFailed));
    std::fprintf(stderr, "millrace: run failed: %s\n  last lines of %s:\n%s", f.message.c_str(),
                 dir_.log_path(stage.name, f.worker.index).c_str(),
                 tail_lines(dir_.log_path(stage.name, f.worker.index), 10).c_str());
    std::fprintf(stderr, "  what is stored stays; `millrace run` again resumes after the fix\n");
    return kExitRunFailed;
  }
  if (abort_now_) {
    stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kStopped));
    std::fprintf(stderr, "millrace: stopped at once; %s records stored so far; run again to resume\n",
                 group_digits(stats_.stored.load()).c_str());
    return kExitRunFailed;
  }
  (void)failed;

  // Accounting (design invariant 6): every stage, in = out + rejected + skipped; the store
  // holds every position of the source.
  std::string problems;
  std::vector<std::string> lines;
  for (std::size_t s = 0; s < config_.stages.size(); ++s) {
    ipc::WorkerCounters sum;
    std::uint32_t restarts = 0;
    for (std::uint32_t i = 0; i < stats_.stages[s].workers; ++i) {
      const ipc::WorkerCounters c = stats_.workers[stats_.stages[s].first_worker + i].read_counters();
      sum.in += c.in;
      sum.out += c.out;
      sum.rejected += c.rejected;
      sum.skipped += c.skipped;
      restarts += supervisor_->restarts_of({s, i});
    }
    if (sum.in != sum.out + sum.rejected + sum.skipped) {
      problems += "  stage " + config_.stages[s].name + ": in " + std::to_string(sum.in) +
                  " != out " + std::to_string(sum.out) + " + rejected " +
                  std::to_string(sum.rejected) + " + skipped " + std::to_string(sum.skipped) + "\n";
    }
    lines.push_back(pad_right(config_.stages[s].name, 10) + " in " + pad_left(group_digits(sum.in), 12) +
                    "  out " + pad_left(group_digits(sum.out), 12) + "  rejected " +
                    pad_left(group_digits(sum.rejected), 10) + "  skipped " +
                    pad_left(group_digits(sum.skipped), 8) + "  restarts " + std::to_string(restarts));
  }
  const bool complete = stats_.store_complete.load() != 0;
  const std::uint64_t total = stats_.total.load();
  const std::uint64_t stored = stats_.stored.load();
  const std::uint64_t rows = stats_.rows.load();
  std::uint64_t rejected = 0;
  std::vector<std::pair<std::string, std::uint64_t>> reasons;
  for (std::uint32_t i = 0; i < stats_.reason_count.load(); ++i) {
    reasons.emplace_back(stats_.reasons[i].reason, stats_.reasons[i].count.load());
    rejected += reasons.back().second;
  }
  std::sort(reasons.begin(), reasons.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (complete && rows + rejected != total) {
    problems += "  the store holds " + std::to_string(rows) + " rows + " + std::to_string(rejected) +
                " rejects, but the source had " + std::to_string(total) + " records\n";
  }
  long rss = 0;
  for (long r : peak_rss_kib_) rss += r;
  rss += peak_rss_manager_kib_;
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  rss += self.ru_maxrss;

  std::uint64_t read = 0;
  for (std::uint32_t i = 0; i < stats_.stages[0].workers; ++i) {
    read += stats_.workers[stats_.stages[0].first_worker + i].read_counters().in;
  }
  std::printf("millrace: %s %s in %s\n", config_.name.c_str(),
              complete ? "done" : "stopped (run again to resume)", human_duration(secs).c_str());
  std::printf("  records      %s%s\n", group_digits(complete ? total : stored).c_str(),
              complete ? "" : " stored so far");
  std::printf("  stored       %s\n", group_digits(rows).c_str());
  std::printf("  rejected     %s\n", group_digits(rejected).c_str());
  for (const auto& [reason, n] : reasons) {
    std::printf("    %-20s %s\n", reason.c_str(), group_digits(n).c_str());
  }
  std::printf("  rate         %s (%s read this run)\n",
              human_rate(secs > 0 ? static_cast<double>(read) / secs : 0).c_str(),
              group_digits(read).c_str());
  for (const std::string& l : lines) std::printf("  %s\n", l.c_str());
  std::printf("  peak memory (all processes): %ld MiB\n", (rss + 1023) / 1024);
  if (!problems.empty()) {
    std::printf("  accounting   FAILED\n%s", problems.c_str());
    stats_.run_state.store(static_cast<std::uint32_t>(ipc::RunState::kFailed));
    return kExitRunFailed;
  }
  std::printf("  accounting   ok (every stage: in = out + rejected + skipped%s)\n",
              complete ? "; stored + rejected = records" : "");
  stats_.run_state.store(static_cast<std::uint32_t>(complete ? ipc::RunState::kDone : ipc::RunState::kStopped));
  return kExitOk;
}

}  // namespace

int run_pipeline(const Invocation& inv) {
  auto config = load_config(inv.config_path, inv.overrides);
  if (!config) {
    std::fprintf(stderr, "%s\n", config.error().what().c_str());
    return kExitUsage;
  }
  auto dir = RunDir::open(config->run_dir);
  if (!dir) {
    std::fprintf(stderr, "millrace: %s\n", dir.error().what().c_str());
    return kExitRunFailed;
  }
  if (auto st = dir->lock(); !st) {
    std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
    return kExitRunFailed;
  }
  // Whatever a killed run left in shared memory goes now: stale runs of anyone, and every
  // segment of this run (we hold its lock, so no live process uses them).
  (void)ipc::sweep_stale_segments();
  remove_run_segments(dir->run_id());

  std::string fingerprint = config_fingerprint(*config);
  if (const StageConfig* load = config->stage(config->stages.front().name)) {
    if (load->section != nullptr) {
      if (const ipc::IniEntry* path = load->section->find("path"); path && !path->value.empty()) {
        auto id = input_identity(path->value);
        if (!id) {
          std::fprintf(stderr, "millrace: input %s: %s\n", path->value.c_str(), id.error().what().c_str());
          return kExitUsage;
        }
        fingerprint += "-" + *id;
      }
    }
  }
  if (auto st = write_file_atomically(dir->config_path(), config->resolved.dump()); !st) {
    std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
    return kExitRunFailed;
  }
  auto topology = Topology::plan(*config, *dir);
  if (!topology) {
    std::fprintf(stderr, "millrace: %s\n", topology.error().what().c_str());
    return kExitUsage;
  }
  auto stats = ipc::create_stats_segment(dir->stats_segment());
  if (!stats) {
    std::fprintf(stderr, "millrace: %s\n", stats.error().what().c_str());
    return kExitRunFailed;
  }
  if (auto st = topology->create_links(); !st) {
    (void)stats->unlink();
    std::fprintf(stderr, "millrace: %s\n", st.error().what().c_str());
    return kExitRunFailed;
  }
  int rc;
  {
    Launcher launcher(std::move(*config), std::move(*dir), std::move(*topology), std::move(*stats),
                      std::move(fingerprint));
    rc = launcher.execute();
  }
  return rc;
}

}  // namespace millrace::launcher
