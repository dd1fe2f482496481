// Stress of the manager: many clients at once, and the manager SIGKILLed again and again while
// clients are mid-call. What must hold: every counter increment and every queue item is applied
// exactly once (the journal keeps acknowledged changes, the per-lane seq memo absorbs resends),
// and every client recovers by itself. The kill moments are chosen by the children's progress
// reports, with a seeded random spread.
#include <random>

#include "tests/manager/manager_test_support.hpp"

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;
using testing::ManagerProcess;
using testing::Signal;
using testing::spawn_child;
using testing::TempDir;
using testing::wait_child;

constexpr int kKills = 25;

TEST(ManagerStress, RepeatedManagerKillsLoseAndDuplicateNoIncrement) {
  TempDir dir;
  ManagerProcess manager(dir.path());
  manager.start();
  std::mt19937_64 rng(testing::test_seed(77));
  constexpr int kChildren = 4;
  constexpr int kAdds = 5000;
  constexpr int kReportEvery = 100;
  Signal progress;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&, i] {
      auto c = manager.connect(30s);
      if (!c) return 2;
      c->set_call_timeout(30s);
      auto counter = c->counter("sum");
      auto per_child = c->counter("child" + std::to_string(i));
      for (int k = 1; k <= kAdds; ++k) {
        Status st = ok_status();
        if (k % 2 == 0) {
          WriteBatch batch;  // both counters in one atomic request
          batch.counter_add("sum", 1);
          batch.counter_add("child" + std::to_string(i), 1);
          st = c->write(batch);
        } else if (auto a = counter.add(1); !a) {
          st = a.error();
        } else if (auto b = per_child.add(1); !b) {
          st = b.error();
        }
        if (!st) {
          std::fprintf(stderr, "child %d at %d: %s\n", i, k, st.error().what().c_str());
          return 3;
        }
        if (k % kReportEvery == 0) progress.notify();
      }
      return 0;
    }));
  }
  const int reports = kChildren * kAdds / kReportEvery;
  testing::kill_manager_during_progress(manager, progress, reports, kKills, rng);
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0) << manager.log_text();
  auto client = manager.connect();
  ASSERT_TRUE(client.ok()) << client.error().what();
  EXPECT_EQ(client->counter("sum").get().value(), kChildren * kAdds);
  for (int i = 0; i < kChildren; ++i) {
    EXPECT_EQ(client->counter("child" + std::to_string(i)).get().value(), kAdds) << "child " << i;
  }
}

TEST(ManagerStress, QueueItemsArriveExactlyOnceInOrderAcrossManagerKills) {
  TempDir dir;
  ManagerProcess manager(dir.path());
  manager.start();
  std::mt19937_64 rng(testing::test_seed(99));
  constexpr int kItems = 10000;
  constexpr int kReportEvery = 100;
  Signal progress;
  const pid_t producer = spawn_child([&] {
    auto c = manager.connect(30s);
    if (!c) return 2;
    c->set_call_timeout(30s);
    auto q = c->queue<int>("items", 16);
    for (int i = 1; i <= kItems; ++i) {
      auto st = q.put(i, 30s);
      if (!st) {
        std::fprintf(stderr, "producer at %d: %s\n", i, st.error().what().c_str());
        return 3;
      }
    }
    return 0;
  });
  const pid_t consumer = spawn_child([&] {
    auto c = manager.connect(30s);
    if (!c) return 2;
    c->set_call_timeout(30s);
    auto q = c->queue<int>("items", 16);
    for (int expect = 1; expect <= kItems; ++expect) {
      auto item = q.get(30s);
      if (!item) {
        std::fprintf(stderr, "consumer at %d: %s\n", expect, item.error().what().c_str());
        return 3;
      }
      if (*item != expect) {
        std::fprintf(stderr, "consumer: expected item %d, got %d\n", expect, *item);
        return 4;
      }
      if (expect % kReportEvery == 0) progress.notify();
    }
    return 0;
  });
  const int reports = kItems / kReportEvery;
  testing::kill_manager_during_progress(manager, progress, reports, kKills, rng);
  EXPECT_EQ(wait_child(producer), 0) << manager.log_text();
  EXPECT_EQ(wait_child(consumer), 0) << manager.log_text();
  auto client = manager.connect();
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->queue<int>("items", 16).size().value(), 0u);
}

TEST(ManagerStress, ManyClientsAtOnceShareCountersLocksAndDicts) {
  TempDir dir;
  ManagerProcess manager(dir.path());
  manager.start();
  constexpr int kChildren = 24;
  constexpr int kRounds = 60;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&, i] {
      auto c = manager.connect(30s);
      if (!c) return 2;
      auto lock = c->lock("l");
      auto guarded = c->value<std::int64_t>("guarded");
      for (int r = 0; r < kRounds; ++r) {
        if (!c->counter("sum").add(1).ok()) return 3;
        if (!c->dict<int>("last").set("child" + std::to_string(i), r).ok()) return 4;
        if (r % 10 == 0) {
          auto lease = lock.acquire(60s);
          if (!lease) return 5;
          auto v = guarded.get();
          if (!v || !guarded.set(v->value_or(0) + 1).ok()) return 6;
          if (!lock.release(*lease).ok()) return 7;
        }
      }
      return 0;
    }));
  }
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  auto client = manager.connect();
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(client->counter("sum").get().value(), kChildren * kRounds);
  EXPECT_EQ(client->dict<int>("last").size().value(), static_cast<std::size_t>(kChildren));
  EXPECT_EQ(client->value<std::int64_t>("guarded").get().value(), kChildren * kRounds / 10);
  manager.stop();
}

}  // namespace
}  // namespace millrace::ipc
