#include "launcher/supervisor.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <utility>

namespace millrace::launcher {
namespace {

using namespace std::chrono_literals;

// The operating system, faked: pids are handed out in order, time moves only when told.
class FakeOs : public ProcessControl {
 public:
  Result<pid_t> spawn(const WorkerKey& w) override {
    if (fail_spawn) return Error{"fake", 1, "no such program", 0};
    pid_t pid = next_pid_++;
    live[pid] = w;
    spawns++;
    return pid;
  }
  Status signal(pid_t pid, int sig) override {
    signals.emplace_back(pid, sig);
    return ok_status();
  }
  Clock::time_point now() const override { return now_; }
  double random_unit() override { return jitter; }
  std::optional<Clock::time_point> heartbeat(const WorkerKey& w) const override {
    auto it = beats.find(key(w));
    if (it == beats.end()) return std::nullopt;
    return it->second;
  }
  bool finished(const WorkerKey& w) const override { return done.count(key(w)) > 0; }

  static std::pair<std::size_t, std::uint32_t> key(const WorkerKey& w) { return {w.stage, w.index}; }
  void advance(milliseconds d) { now_ += d; }

  std::map<pid_t, WorkerKey> live;
  std::vector<std::pair<pid_t, int>> signals;
  std::map<std::pair<std::size_t, std::uint32_t>, Clock::time_point> beats;
  std::map<std::pair<std::size_t, std::uint32_t>, bool> done;
  double jitter = 0.0;
  bool fail_spawn = false;
  int spawns = 0;

 private:
  Clock::time_point now_{};
  pid_t next_pid_ = 100;
};

StageSpec stage(std::string name, RestartKind kind, int max_restarts = 3,
                std::uint32_t workers = 1) {
  StageSpec s;
  s.name = std::move(name);
  s.workers = workers;
  s.policy.kind = kind;
  s.policy.max_restarts = max_restarts;
  s.policy.restart_window = 10s;
  s.policy.backoff = 100ms;
  s.policy.backoff_max = 1s;
  s.policy.watchdog = 2s;
  return s;
}

constexpr ExitStatus kKilled{true, SIGKILL};
constexpr ExitStatus kClean{false, 0};

TEST(Supervisor, RestartsAFailedWorkerAfterBackoff) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  pid_t first = *sup.pid_of({0, 0});
  sup.on_exit(first, kKilled);
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kBackoff);
  os.advance(99ms);
  sup.tick();
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kBackoff);
  os.advance(1ms);
  sup.tick();
  ASSERT_EQ(sup.phase_of({0, 0}), WorkerPhase::kRunning);
  EXPECT_NE(*sup.pid_of({0, 0}), first);
  EXPECT_EQ(sup.restarts_of({0, 0}), 1u);
}

TEST(Supervisor, BackoffDoublesUpToTheMaximumWithJitter) {
  FakeOs os;
  os.jitter = 0.5;  // +25% of the base delay
  Supervisor sup({stage("clean", RestartKind::kAlways, 100)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  std::vector<milliseconds> delays;
  for (int i = 0; i < 6; ++i) {
    sup.on_exit(*sup.pid_of({0, 0}), kKilled);
    milliseconds waited{0};
    while (sup.phase_of({0, 0}) == WorkerPhase::kBackoff) {
      os.advance(1ms);
      waited += 1ms;
      sup.tick();
    }
    delays.push_back(waited);
  }
  EXPECT_EQ(delays, (std::vector<milliseconds>{125ms, 250ms, 500ms, 1000ms, 1250ms, 1250ms}));
}

TEST(Supervisor, GivesUpPastMaxRestartsWithinTheWindowNamingTheStage) {
  FakeOs os;
  Supervisor sup({stage("transform", RestartKind::kOnFailure, 2)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  for (int i = 0; i < 3; ++i) {
    sup.on_exit(*sup.pid_of({0, 0}), ExitStatus{false, 3});
    os.advance(2s);
    sup.tick();
  }
  ASSERT_TRUE(sup.failure().has_value());
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kFailed);
  const std::string& msg = sup.failure()->message;
  EXPECT_NE(msg.find("stage 'transform'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exit status 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max_restarts = 2"), std::string::npos) << msg;
}

TEST(Supervisor, RestartsOutsideTheWindowDoNotCount) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure, 2)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  for (int i = 0; i < 10; ++i) {
    sup.on_exit(*sup.pid_of({0, 0}), kKilled);
    os.advance(6s);  // two restarts never fall within one 10 s window... with the third
    sup.tick();
    ASSERT_FALSE(sup.failure().has_value()) << "restart " << i;
  }
  EXPECT_EQ(sup.restarts_of({0, 0}), 10u);
}

TEST(Supervisor, NeverPolicyFailsTheRunOnFirstExit) {
  FakeOs os;
  Supervisor sup({stage("store", RestartKind::kNever)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  sup.on_exit(*sup.pid_of({0, 0}), kKilled);
  ASSERT_TRUE(sup.failure().has_value());
  EXPECT_NE(sup.failure()->message.find("killed by SIGKILL"), std::string::npos);
  EXPECT_NE(sup.failure()->message.find("'never'"), std::string::npos);
}

TEST(Supervisor, FinishedWorkerIsNotRestarted) {
  FakeOs os;
  Supervisor sup({stage("load", RestartKind::kAlways)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  os.done[{0, 0}] = true;
  sup.on_exit(*sup.pid_of({0, 0}), kClean);
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kFinished);
  EXPECT_TRUE(sup.all_done());
}

TEST(Supervisor, CleanExitWithoutFinishingIsAFailureUnlessDraining) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure, 5, 2)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  sup.on_exit(*sup.pid_of({0, 0}), kClean);
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kBackoff);
  sup.set_draining(true);
  sup.on_exit(*sup.pid_of({0, 1}), kClean);
  EXPECT_EQ(sup.phase_of({0, 1}), WorkerPhase::kStopped);
}

TEST(Supervisor, WatchdogKillsAWorkerWithAStaleHeartbeat) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  pid_t pid = *sup.pid_of({0, 0});
  os.beats[{0, 0}] = os.now();
  os.advance(2s);
  sup.tick();
  EXPECT_TRUE(os.signals.empty()) << "exactly at the limit is still alive";
  os.beats[{0, 0}] = os.now();  // it beats again
  os.advance(2001ms);
  sup.tick();
  ASSERT_EQ(os.signals.size(), 1u);
  EXPECT_EQ(os.signals[0], std::make_pair(pid, SIGKILL));
  sup.tick();
  EXPECT_EQ(os.signals.size(), 1u) << "one kill per hang";
  sup.on_exit(pid, kKilled);
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kBackoff);
}

TEST(Supervisor, WatchdogGivesANewWorkerOnePeriodToBeat) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  os.advance(1900ms);
  sup.tick();
  EXPECT_TRUE(os.signals.empty());
  os.advance(200ms);
  sup.tick();
  EXPECT_EQ(os.signals.size(), 1u);
}

TEST(Supervisor, RequestedRestartIsImmediateAndNotCountedAgainstTheLimit) {
  FakeOs os;
  Supervisor sup({stage("clean", RestartKind::kOnFailure, 1)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  for (int i = 0; i < 5; ++i) {
    pid_t pid = *sup.pid_of({0, 0});
    ASSERT_TRUE(sup.request_restart({0, 0}).ok());
    EXPECT_EQ(os.signals.back(), std::make_pair(pid, SIGTERM));
    sup.on_exit(pid, kClean);
    ASSERT_EQ(sup.phase_of({0, 0}), WorkerPhase::kRunning);
  }
  EXPECT_FALSE(sup.failure().has_value());
}

TEST(Supervisor, SpawnFailureFailsTheRun) {
  FakeOs os;
  os.fail_spawn = true;
  Supervisor sup({stage("load", RestartKind::kAlways)}, os);
  EXPECT_FALSE(sup.start_stage(0).ok());
  ASSERT_TRUE(sup.failure().has_value());
  EXPECT_NE(sup.failure()->message.find("could not be started: no such program"),
            std::string::npos);
}

}  // namespace
}  // namespace millrace::launcher

namespace millrace::launcher {
namespace {

TEST(Supervisor, RewindRestartsEveryWorkerTogetherWithoutCountingRestarts) {
  FakeOs os;
  Supervisor sup({stage("load", RestartKind::kOnFailure, 1), stage("store", RestartKind::kOnFailure, 1)}, os);
  ASSERT_TRUE(sup.start_stage(0).ok());
  ASSERT_TRUE(sup.start_stage(1).ok());
  os.done[{0, 0}] = true;
  sup.on_exit(*sup.pid_of({0, 0}), kClean);  // load finished its stream
  ASSERT_EQ(sup.phase_of({0, 0}), WorkerPhase::kFinished);
  pid_t store = *sup.pid_of({1, 0});
  sup.rewind();
  EXPECT_EQ(os.signals.back(), std::make_pair(store, SIGKILL));
  sup.on_exit(store, kKilled);
  sup.tick();
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kBackoff) << "held until released";
  EXPECT_EQ(sup.phase_of({1, 0}), WorkerPhase::kBackoff);
  sup.release_rewind();
  os.done.clear();
  sup.tick();
  EXPECT_EQ(sup.phase_of({0, 0}), WorkerPhase::kRunning);
  EXPECT_EQ(sup.phase_of({1, 0}), WorkerPhase::kRunning);
  EXPECT_FALSE(sup.failure().has_value());
}

}  // namespace
}  // namespace millrace::launcher
