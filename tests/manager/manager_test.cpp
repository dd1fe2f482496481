// The manager end to end: the real `millrace __manager` process, clients in this process and
// in forked children. Every object type; many clients at once; a lock holder SIGKILLed; lease
// expiry; the manager SIGKILLed and restarted; bad secrets, garbage and oversized frames; the
// live settings and reject sampler the pipeline uses.
#include <sys/stat.h>

#include <atomic>
#include <random>
#include <thread>

#include "launcher/cli.hpp"
#include "launcher/commands.hpp"
#include "launcher/manager_server.hpp"
#include "tests/manager/manager_test_support.hpp"

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::ManagerProcess;
using testing::RawConnection;
using testing::Signal;
using testing::spawn_child;
using testing::TempDir;
using testing::wait_child;

struct Order {
  static constexpr std::string_view kTransferName = "test.manager.Order";
  std::int64_t id = 0;
  std::string customer;
  double amount = 0;

  template <class A>
  void serialize(A& ar) {
    ar(id, customer, amount);
  }
  friend bool operator==(const Order&, const Order&) = default;
};

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { manager_.start(); }

  ManagerClient connect(std::chrono::milliseconds timeout = 5s) {
    auto client = manager_.connect(timeout);
    EXPECT_TRUE(client.ok()) << client.error().what();
    return std::move(client).value();
  }

  TempDir dir_;
  ManagerProcess manager_{dir_.path()};
};

// --- Objects -----------------------------------------------------------------------------------

TEST_F(ManagerTest, DictSetGetEraseKeysSize) {
  ManagerClient client = connect();
  auto orders = client.dict<Order>("orders");
  EXPECT_EQ(orders.size().value(), 0u);
  EXPECT_FALSE(orders.get("a").value().has_value());
  const Order a{1, "ada", 12.5};
  const Order b{2, "bob", 3};
  ASSERT_TRUE(orders.set("a", a).ok());
  ASSERT_TRUE(orders.set("b", b).ok());
  ASSERT_TRUE(orders.set("a", Order{1, "ada", 99}).ok());  // overwrite
  EXPECT_EQ(orders.get("a").value(), (Order{1, "ada", 99}));
  EXPECT_EQ(orders.get("b").value(), b);
  EXPECT_EQ(orders.size().value(), 2u);
  EXPECT_EQ(orders.keys().value(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(orders.erase("a").value());
  EXPECT_FALSE(orders.erase("a").value());
  EXPECT_EQ(orders.keys().value(), (std::vector<std::string>{"b"}));
}

TEST_F(ManagerTest, ReadingAValueAsAnotherTypeIsAClearError) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.dict<double>("settings").set("load.rate_limit", 500.0).ok());
  auto wrong = client.dict<std::string>("settings").get("load.rate_limit");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, static_cast<int>(ManagerError::kTypeMismatch));
  const std::string& what = wrong.error().what();
  EXPECT_NE(what.find("load.rate_limit"), std::string::npos) << what;
  EXPECT_NE(what.find("double"), std::string::npos) << what;
  // The right type still reads it.
  EXPECT_EQ(client.dict<double>("settings").get("load.rate_limit").value(), 500.0);
}

TEST_F(ManagerTest, ListAppendGetSizeSlice) {
  ManagerClient client = connect();
  auto list = client.list<std::string>("log");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(list.append("line " + std::to_string(i)).value(), i + 1u);
  EXPECT_EQ(list.size().value(), 5u);
  EXPECT_EQ(list.get(0).value(), "line 0");
  EXPECT_EQ(list.get(-1).value(), "line 4");
  auto outside = list.get(5);
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().code, static_cast<int>(ManagerError::kOutOfRange));
  EXPECT_EQ(list.slice(1, 3).value(), (std::vector<std::string>{"line 1", "line 2"}));
  EXPECT_EQ(list.slice(-2, 100).value(), (std::vector<std::string>{"line 3", "line 4"}));
  EXPECT_TRUE(list.slice(4, 2).value().empty());
  EXPECT_FALSE(list.append_if_shorter("line 5", 5).value());
  EXPECT_TRUE(list.append_if_shorter("line 5", 6).value());
  EXPECT_EQ(list.size().value(), 6u);
}

TEST_F(ManagerTest, ValueSetGet) {
  ManagerClient client = connect();
  auto value = client.value<Order>("last");
  EXPECT_FALSE(value.get().value().has_value());
  ASSERT_TRUE(value.set(Order{7, "cy", 1.25}).ok());
  EXPECT_EQ(value.get().value(), (Order{7, "cy", 1.25}));
}

TEST_F(ManagerTest, CounterAddReturnsTheNewValue) {
  ManagerClient client = connect();
  auto counter = client.counter("hits");
  EXPECT_EQ(counter.get().value(), 0);
  EXPECT_EQ(counter.add().value(), 1);
  EXPECT_EQ(counter.add(41).value(), 42);
  EXPECT_EQ(counter.add(-2).value(), 40);
  EXPECT_EQ(counter.get().value(), 40);
  ASSERT_TRUE(counter.add(std::numeric_limits<std::int64_t>::max() - 40).ok());
  auto overflow = counter.add(1);
  ASSERT_FALSE(overflow.ok());
  EXPECT_NE(overflow.error().what().find("overflow"), std::string::npos);
}

TEST_F(ManagerTest, ANameOfAnotherKindIsRefused) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.counter("x").add().ok());
  auto wrong = client.dict<int>("x").set("k", 1);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, static_cast<int>(ManagerError::kWrongKind));
  EXPECT_NE(wrong.error().what().find("'x' is a counter, not a dict"), std::string::npos)
      << wrong.error().what();
}

TEST_F(ManagerTest, EventSetClearAndWait) {
  ManagerClient client = connect();
  auto event = client.event("go");
  EXPECT_FALSE(event.is_set().value());
  EXPECT_FALSE(event.wait(0ms).value());
  EXPECT_FALSE(event.wait(50ms).value());  // times out
  Signal waiting;
  const pid_t child = spawn_child([&] {
    auto c = manager_.connect();
    if (!c) return 2;
    waiting.notify();
    auto woke = c->event("go").wait(20s);
    return woke.ok() && *woke ? 0 : 3;
  });
  ASSERT_EQ(waiting.wait(), '!');
  ASSERT_TRUE(event.set().ok());
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_TRUE(event.is_set().value());
  EXPECT_TRUE(event.wait(0ms).value());
  ASSERT_TRUE(event.clear().ok());
  EXPECT_FALSE(event.is_set().value());
}

TEST_F(ManagerTest, QueueIsFifoAndBounded) {
  ManagerClient client = connect();
  auto queue = client.queue<Order>("work", 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue.put(Order{i, "c", 0}, 0ms).ok());
  auto full = queue.put(Order{3, "c", 0}, 0ms);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, static_cast<int>(ManagerError::kTimeout));
  EXPECT_NE(full.error().what().find("stayed full"), std::string::npos) << full.error().what();
  EXPECT_EQ(queue.size().value(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(queue.get(0ms).value().id, i);
  auto empty = queue.get(30ms);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, static_cast<int>(ManagerError::kTimeout));
}

TEST_F(ManagerTest, QueueGetOfAnotherTypeLeavesTheItemQueued) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.queue<std::string>("q", 4).put("text", 0ms).ok());
  auto wrong = client.queue<Order>("q", 4).get(0ms);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, static_cast<int>(ManagerError::kTypeMismatch));
  EXPECT_EQ(client.queue<std::string>("q", 4).get(0ms).value(), "text");
}

TEST_F(ManagerTest, BlockedQueueGetDoesNotBlockOtherClients) {
  ManagerClient client = connect();
  Signal parked;
  const pid_t child = spawn_child([&] {
    auto c = manager_.connect();
    if (!c) return 2;
    parked.notify();
    auto item = c->queue<std::string>("jobs", 8).get(30s);
    return item.ok() && *item == "job-1" ? 0 : 3;
  });
  ASSERT_EQ(parked.wait(), '!');
  // The child's get is parked (or about to be): everyone else is served meanwhile.
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(client.counter("busy").add().ok());
  EXPECT_EQ(client.counter("busy").get().value(), 200);
  ASSERT_TRUE(client.queue<std::string>("jobs", 8).put("job-1", 1s).ok());
  EXPECT_EQ(wait_child(child), 0);
}

TEST_F(ManagerTest, AThreadParkedInACallDoesNotBlockOtherThreadsOfTheClient) {
  ManagerClient client = connect();
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    auto item = client.queue<int>("q", 2).get(30s);
    got = item.ok() && *item == 42;
  });
  // While that thread waits, this one uses the same client (on another lane).
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client.counter("c").add().ok());
  ASSERT_TRUE(client.queue<int>("q", 2).put(42, 1s).ok());
  waiter.join();
  EXPECT_TRUE(got);  // had the lanes been one, the put would have waited for the get's timeout
  EXPECT_LE(client.lanes(), 2u);
}

TEST_F(ManagerTest, QueuePutBlocksWhenFullUntilAGet) {
  ManagerClient client = connect();
  auto queue = client.queue<int>("q", 1);
  ASSERT_TRUE(queue.put(1, 0ms).ok());
  Signal parked;
  const pid_t child = spawn_child([&] {
    auto c = manager_.connect();
    if (!c) return 2;
    parked.notify();
    return c->queue<int>("q", 1).put(2, 30s).ok() ? 0 : 3;
  });
  ASSERT_EQ(parked.wait(), '!');
  EXPECT_EQ(queue.get(5s).value(), 1);
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_EQ(queue.get(5s).value(), 2);
}

TEST_F(ManagerTest, WriteBatchAppliesAllChangesOrNone) {
  ManagerClient client = connect();
  WriteBatch batch;
  for (int i = 0; i < 100; ++i) batch.counter_add("n", 2);
  batch.dict_set("d", "k", std::string("v"));
  batch.list_append("l", 7);
  ASSERT_TRUE(client.write(batch).ok());
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(client.counter("n").get().value(), 200);
  EXPECT_EQ(client.dict<std::string>("d").get("k").value(), "v");
  EXPECT_EQ(client.list<int>("l").get(0).value(), 7);

  batch.counter_add("n", 1);
  batch.dict_set("n", "k", 1);  // "n" is a counter: the whole batch is refused
  auto refused = client.write(batch);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, static_cast<int>(ManagerError::kWrongKind));
  EXPECT_EQ(client.counter("n").get().value(), 200);
}

// --- Many clients ------------------------------------------------------------------------------

TEST_F(ManagerTest, CounterSumIsExactAcrossManyProcesses) {
  constexpr int kChildren = 8;
  constexpr int kAdds = 400;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&] {
      auto c = manager_.connect();
      if (!c) return 2;
      auto counter = c->counter("sum");
      for (int k = 0; k < kAdds; ++k) {
        if (!counter.add(1).ok()) return 3;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  ManagerClient client = connect();
  EXPECT_EQ(client.counter("sum").get().value(), kChildren * kAdds);
}

TEST_F(ManagerTest, OneClientIsSafeToShareBetweenThreads) {
  constexpr int kThreads = 8;
  constexpr int kAdds = 300;
  ManagerClient client = connect();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto counter = client.counter("sum");
      auto dict = client.dict<int>("d");
      for (int k = 0; k < kAdds; ++k) {
        if (!counter.add(1).ok() || !dict.set("t" + std::to_string(t), k).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client.counter("sum").get().value(), kThreads * kAdds);
  EXPECT_EQ(client.dict<int>("d").size().value(), static_cast<std::size_t>(kThreads));
  EXPECT_LE(client.lanes(), static_cast<std::size_t>(kThreads));
}

// --- Locks -------------------------------------------------------------------------------------

TEST_F(ManagerTest, LockExcludesOtherProcesses) {
  constexpr int kChildren = 4;
  constexpr int kRounds = 50;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&] {
      auto c = manager_.connect();
      if (!c) return 2;
      auto lock = c->lock("l");
      auto value = c->value<int>("v");
      for (int r = 0; r < kRounds; ++r) {
        auto lease = lock.acquire(20s);
        if (!lease) return 3;
        // A read-modify-write that only the lock makes safe.
        auto v = value.get();
        if (!v) return 4;
        if (!value.set(v->value_or(0) + 1).ok()) return 5;
        if (!lock.release(*lease).ok()) return 6;
      }
      return 0;
    }));
  }
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  ManagerClient client = connect();
  EXPECT_EQ(client.value<int>("v").get().value(), kChildren * kRounds);
}

TEST_F(ManagerTest, ALockHeldByAKilledProcessGoesToTheNextClientAtOnce) {
  Signal holding;
  const pid_t child = spawn_child([&] {
    auto c = manager_.connect();
    if (!c) return 2;
    auto lease = c->lock("l").acquire(0ms, 10min);
    if (!lease) return 3;
    holding.notify();
    ::pause();  // holds the lock until killed
    return 0;
  });
  ASSERT_EQ(holding.wait(), '!');
  ManagerClient client = connect();
  auto lock = client.lock("l");
  EXPECT_FALSE(lock.acquire(0ms).ok());  // held
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_child(child), 128 + SIGKILL);
  const auto start = Clock::now();
  auto lease = lock.acquire(20s);
  ASSERT_TRUE(lease.ok()) << lease.error().what();
  // The lease was 10 minutes: only the closed connection can have freed it.
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_TRUE(lock.held(*lease).value());
  EXPECT_TRUE(lock.release(*lease).ok());
  EXPECT_NE(manager_.log_text().find("released lock 'l': its holder's connections closed"),
            std::string::npos)
      << manager_.log_text();
}

TEST_F(ManagerTest, AnExpiredLeaseFreesTheLockAndItsHolderLearnsAtRelease) {
  ManagerClient a = connect();
  ManagerClient b = connect();
  auto lease_a = a.lock("l").acquire(0ms, 200ms);
  ASSERT_TRUE(lease_a.ok()) << lease_a.error().what();
  auto lease_b = b.lock("l").acquire(20s);  // parked until A's lease ends
  ASSERT_TRUE(lease_b.ok()) << lease_b.error().what();
  EXPECT_GT(lease_b->token, lease_a->token);
  EXPECT_FALSE(a.lock("l").held(*lease_a).value());
  auto lost = a.lock("l").release(*lease_a);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, static_cast<int>(ManagerError::kLockLost));
  EXPECT_NE(lost.error().what().find("taken over"), std::string::npos) << lost.error().what();
  EXPECT_TRUE(b.lock("l").held(*lease_b).value());
  EXPECT_TRUE(b.lock("l").release(*lease_b).ok());
}

TEST_F(ManagerTest, LockAcquireTimesOutWhileAnotherClientHoldsIt) {
  ManagerClient a = connect();
  ManagerClient b = connect();
  auto lease = a.lock("l").acquire(0ms);
  ASSERT_TRUE(lease.ok());
  auto denied = b.lock("l").acquire(100ms);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, static_cast<int>(ManagerError::kTimeout));
  EXPECT_NE(denied.error().what().find("held by another client"), std::string::npos);
  EXPECT_TRUE(a.lock("l").release(*lease).ok());
}

// --- Restarts ----------------------------------------------------------------------------------

TEST_F(ManagerTest, StateSurvivesAManagerKillAndClientsReconnectByThemselves) {
  ManagerClient client = connect(10s);
  ASSERT_TRUE(client.counter("c").add(5).ok());
  ASSERT_TRUE(client.dict<std::string>("d").set("k1", "v1").ok());
  ASSERT_TRUE(client.dict<std::string>("d").set("k2", "v2").ok());
  ASSERT_TRUE(client.dict<std::string>("d").erase("k2").ok());
  ASSERT_TRUE(client.list<int>("l").append(1).ok());
  ASSERT_TRUE(client.list<int>("l").append(2).ok());
  ASSERT_TRUE(client.value<Order>("v").set(Order{1, "x", 2}).ok());
  ASSERT_TRUE(client.queue<int>("q", 4).put(9, 0ms).ok());
  ASSERT_TRUE(client.event("e").set().ok());
  manager_.kill9();
  manager_.start();
  EXPECT_EQ(client.counter("c").get().value(), 5);
  EXPECT_EQ(client.dict<std::string>("d").keys().value(), (std::vector<std::string>{"k1"}));
  EXPECT_EQ(client.dict<std::string>("d").get("k1").value(), "v1");
  EXPECT_EQ(client.list<int>("l").slice(0, 10).value(), (std::vector<int>{1, 2}));
  EXPECT_EQ(client.value<Order>("v").get().value(), (Order{1, "x", 2}));
  EXPECT_EQ(client.queue<int>("q", 4).get(0ms).value(), 9);
  EXPECT_TRUE(client.event("e").is_set().value());
  // Twice more, with compaction at each start-up in between.
  ASSERT_TRUE(client.counter("c").add(1).ok());
  manager_.kill9();
  manager_.start();
  manager_.stop();
  manager_.start();
  EXPECT_EQ(client.counter("c").get().value(), 6);
  EXPECT_EQ(client.queue<int>("q", 4).size().value(), 0u);
}

// The server loop in a forked child, with a tiny compaction threshold: the journal is folded
// into snapshots many times while clients write, and a kill at any point keeps the state.
TEST(ManagerCompaction, JournalIsCompactedWhileRunningAndStateSurvivesAKill) {
  TempDir dir;
  launcher::ManagerServerOptions options;
  options.socket_path = dir.path() / "manager.sock";
  options.secret_path = dir.path() / "secret";
  options.state_path = dir.path() / "manager.state";
  options.compact_min_bytes = 4096;
  ASSERT_TRUE(create_secret_file(options.secret_path).ok());
  auto start_server = [&] {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    const pid_t pid = spawn_child([&] {
      ::close(fds[0]);
      launcher::ManagerServerOptions o = options;
      o.ready_fd = fds[1];
      return launcher::serve_manager(o).ok() ? 0 : 1;
    });
    ::close(fds[1]);
    char c = 0;
    EXPECT_EQ(::read(fds[0], &c, 1), 1);
    ::close(fds[0]);
    return pid;
  };
  pid_t server = start_server();
  auto client = ManagerClient::connect(options.socket_path, options.secret_path, 10s);
  ASSERT_TRUE(client.ok()) << client.error().what();
  auto dict = client->dict<std::string>("d");
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(dict.set("k" + std::to_string(i % 50), std::string(40, static_cast<char>('a' + i % 26))).ok());
    ASSERT_TRUE(client->counter("c").add().ok());
  }
  // 6000 journaled changes of ~150 bytes would take ~900 KB; compaction keeps the file small.
  EXPECT_LT(std::filesystem::file_size(options.state_path), 64u * 1024u);
  ::kill(server, SIGKILL);
  EXPECT_EQ(wait_child(server), 128 + SIGKILL);
  server = start_server();
  EXPECT_EQ(client->counter("c").get().value(), 3000);
  EXPECT_EQ(dict.size().value(), 50u);
  EXPECT_EQ(dict.get("k49").value(), std::string(40, static_cast<char>('a' + 2999 % 26)));
  ::kill(server, SIGTERM);
  EXPECT_EQ(wait_child(server), 0);
}

TEST_F(ManagerTest, CountsStayExactWhenTheManagerIsKilledMidRun) {
  constexpr int kChildren = 4;
  constexpr int kAdds = 1500;
  Signal halfway;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&, i] {
      auto c = manager_.connect(30s);
      if (!c) return 2;
      auto counter = c->counter("sum");
      auto seen = c->dict<int>("seen");
      for (int k = 0; k < kAdds; ++k) {
        auto added = counter.add(1);
        if (!added) {
          std::fprintf(stderr, "child %d: %s\n", i, added.error().what().c_str());
          return 3;
        }
        if (k == kAdds / 3) halfway.notify();
      }
      return seen.set("child" + std::to_string(i), kAdds).ok() ? 0 : 4;
    }));
  }
  for (int i = 0; i < kChildren; ++i) ASSERT_EQ(halfway.wait(), '!');
  manager_.kill9();  // mid-run: every child has calls in flight or about to be
  manager_.start();
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  ManagerClient client = connect();
  EXPECT_EQ(client.counter("sum").get().value(), kChildren * kAdds);
  EXPECT_EQ(client.dict<int>("seen").size().value(), static_cast<std::size_t>(kChildren));
}

TEST_F(ManagerTest, ACallWhileTheManagerIsDownTimesOutNamingTheSocket) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.counter("c").add().ok());
  manager_.kill9();
  client.set_call_timeout(300ms);
  const auto start = Clock::now();
  auto failed = client.counter("c").add();
  const auto waited = Clock::now() - start;
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, static_cast<int>(ManagerError::kUnreachable));
  EXPECT_NE(failed.error().what().find(manager_.socket().string()), std::string::npos)
      << failed.error().what();
  EXPECT_GE(waited, 290ms);
  EXPECT_LT(waited, 5s);
  // And it recovers once the manager is back.
  manager_.start();
  client.set_call_timeout(5s);
  EXPECT_EQ(client.counter("c").add().value(), 2);
}

TEST_F(ManagerTest, ConnectWhileNoManagerRunsFailsClearly) {
  manager_.kill9();
  auto client = manager_.connect(200ms);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code, static_cast<int>(ManagerError::kUnreachable));
  EXPECT_NE(client.error().what().find("cannot reach the manager at " + manager_.socket().string()),
            std::string::npos)
      << client.error().what();
}

TEST_F(ManagerTest, AClientCannotBeUsedInAForkedChild) {
  ManagerClient client = connect();
  const pid_t child = spawn_child([&] {
    auto r = client.counter("c").add();
    return !r.ok() && r.error().code == static_cast<int>(ManagerError::kForked) ? 0 : 3;
  });
  EXPECT_EQ(wait_child(child), 0);
  EXPECT_EQ(client.counter("c").add().value(), 1);  // the parent's lanes are intact
}

// --- Security and robustness -------------------------------------------------------------------

TEST_F(ManagerTest, TheSocketIsPrivate) {
  struct stat st {};
  ASSERT_EQ(::stat(manager_.socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ManagerTest, AWrongSecretIsRefusedAndLogged) {
  const auto other = dir_.path() / "other-secret";
  ASSERT_TRUE(create_secret_file(other).ok());
  auto client = ManagerClient::connect(manager_.socket(), other, 2s);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.error().code, static_cast<int>(ManagerError::kAuthFailed));
  EXPECT_NE(client.error().what().find("authentication failed"), std::string::npos)
      << client.error().what();
  EXPECT_NE(manager_.log_text().find("authentication failed for a client (pid " +
                                     std::to_string(::getpid())),
            std::string::npos)
      << manager_.log_text();
  EXPECT_TRUE(connect().counter("c").add().ok());  // the right secret still works
}

TEST_F(ManagerTest, AnotherProtocolVersionIsRefusedAtHello) {
  RawConnection raw(manager_.socket());
  ASSERT_TRUE(raw.connected());
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  auto welcome = raw.authenticate(*key, kManagerProtocolVersion + 98);
  ASSERT_TRUE(welcome.has_value());
  EXPECT_FALSE(welcome->accepted);
  EXPECT_EQ(welcome->error_code, static_cast<int>(ManagerError::kVersion));
  EXPECT_NE(welcome->error.find("protocol version"), std::string::npos) << welcome->error;
  EXPECT_TRUE(raw.closed_by_peer());
}

TEST_F(ManagerTest, GarbageOnTheSocketIsClosedWhileOthersKeepWorking) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.counter("c").add().ok());
  std::mt19937_64 rng(testing::test_seed(20240601));
  std::vector<unsigned char> garbage(64 * 1024);
  for (unsigned char& b : garbage) b = static_cast<unsigned char>(rng());
  {
    RawConnection raw(manager_.socket());
    ASSERT_TRUE(raw.connected());
    static_cast<void>(raw.send_bytes(garbage.data(), garbage.size()));  // may fail once closed
    EXPECT_TRUE(raw.closed_by_peer());
  }
  {
    // Garbage after the server's hello but in a plausible frame: refused too.
    RawConnection raw(manager_.socket());
    ASSERT_TRUE(raw.read<ServerHello>().has_value());
    const std::uint32_t length = 16;
    ASSERT_TRUE(raw.send_bytes(&length, sizeof length));
    ASSERT_TRUE(raw.send_bytes(garbage.data(), length));
    auto welcome = raw.read<Welcome>();
    ASSERT_TRUE(welcome.has_value());
    EXPECT_FALSE(welcome->accepted);
    EXPECT_EQ(welcome->error_code, static_cast<int>(ManagerError::kProtocol));
    EXPECT_TRUE(raw.closed_by_peer());
  }
  EXPECT_EQ(client.counter("c").add().value(), 2);
}

TEST_F(ManagerTest, AnOversizedFrameGetsAnErrorAndACloseWhileOthersKeepWorking) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.counter("c").add().ok());
  RawConnection raw(manager_.socket());
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  auto welcome = raw.authenticate(*key);
  ASSERT_TRUE(welcome.has_value() && welcome->accepted);
  const std::uint32_t length = 2 * kMaxFrameSize;
  ASSERT_TRUE(raw.send_bytes(&length, sizeof length));
  auto reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->error_code, static_cast<int>(ManagerError::kTooLarge));
  EXPECT_NE(reply->error.find("over the"), std::string::npos) << reply->error;
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(client.counter("c").add().value(), 2);
  // The client refuses to send one itself.
  auto big = client.value<std::string>("big").set(std::string(kMaxFrameSize, 'x'));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, static_cast<int>(ManagerError::kTooLarge));
}

TEST_F(ManagerTest, UnknownOpsAndUnreadableRequestsGetAnErrorReplyOnALiveConnection) {
  RawConnection raw(manager_.socket());
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  auto welcome = raw.authenticate(*key);
  ASSERT_TRUE(welcome.has_value() && welcome->accepted);

  Request unknown;
  unknown.seq = 1;
  unknown.ops.emplace_back();
  unknown.ops.back().code = static_cast<OpCode>(200);
  unknown.ops.back().object = "x";
  ASSERT_TRUE(raw.send_message(unknown));
  auto reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->seq, 1u);
  EXPECT_EQ(reply->error_code, static_cast<int>(ManagerError::kBadRequest));
  EXPECT_NE(reply->error.find("unknown op code 200"), std::string::npos) << reply->error;

  // A well-framed message that is not a Request.
  ASSERT_TRUE(raw.send_message(std::string("not a request")));
  reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->seq, 0u);
  EXPECT_EQ(reply->error_code, static_cast<int>(ManagerError::kProtocol));

  // A value that is not a codec message.
  Request bad_value;
  bad_value.seq = 2;
  bad_value.ops.emplace_back();
  bad_value.ops.back().code = OpCode::kValueSet;
  bad_value.ops.back().object = "v";
  bad_value.ops.back().value = {1, 2, 3};
  ASSERT_TRUE(raw.send_message(bad_value));
  reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->error_code, static_cast<int>(ManagerError::kBadRequest));

  // The connection still serves.
  Request good;
  good.seq = 3;
  good.ops.emplace_back();
  good.ops.back().code = OpCode::kCounterAdd;
  good.ops.back().object = "c";
  good.ops.back().number = 5;
  ASSERT_TRUE(raw.send_message(good));
  reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(reply->error.empty()) << reply->error;
  ASSERT_EQ(reply->results.size(), 1u);
  EXPECT_EQ(reply->results[0].number, 5);

  // A resend of the same seq is answered from memory, not applied twice.
  ASSERT_TRUE(raw.send_message(good));
  reply = raw.read<Reply>();
  ASSERT_TRUE(reply.has_value());
  ASSERT_EQ(reply->results.size(), 1u);
  EXPECT_EQ(reply->results[0].number, 5);
  EXPECT_EQ(connect().counter("c").get().value(), 5);
}

// A request that arrives behind a parked one is served once the first is answered; its reply
// must go out then, not wait for some other client to wake the server's loop.
TEST_F(ManagerTest, ARequestQueuedBehindAParkedOneIsAnsweredWithoutOtherTraffic) {
  RawConnection raw(manager_.socket());
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  auto welcome = raw.authenticate(*key);
  ASSERT_TRUE(welcome.has_value() && welcome->accepted);

  auto request = [](std::uint64_t seq, OpCode code, std::string object, std::int64_t timeout_ms) {
    Request r;
    r.seq = seq;
    r.ops.emplace_back();
    r.ops.back().code = code;
    r.ops.back().object = std::move(object);
    r.ops.back().timeout_ms = timeout_ms;
    return r;
  };
  // In one write: a wait that parks until its timeout, then a read that changes nothing (so
  // there is no journal write to wake the loop either).
  std::vector<std::byte> frames;
  append_frame(request(1, OpCode::kEventWait, "e", 100), frames);
  append_frame(request(2, OpCode::kCounterGet, "c", 0), frames);
  ASSERT_TRUE(raw.send_bytes(frames.data(), frames.size()));

  auto first = raw.read<Reply>();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->seq, 1u);
  auto second = raw.read<Reply>();
  ASSERT_TRUE(second.has_value()) << "the reply to the queued request never came";
  EXPECT_EQ(second->seq, 2u);
}

// --- Pipeline helpers ----------------------------------------------------------------------------

TEST_F(ManagerTest, LiveSettingsReadDefaultsUntilSet) {
  ManagerClient client = connect();
  auto defaults = read_live_settings(client, LiveSettings{1000, false});
  ASSERT_TRUE(defaults.ok()) << defaults.error().what();
  EXPECT_EQ(defaults->rate_limit, 1000);
  EXPECT_FALSE(defaults->paused);
  ASSERT_TRUE(client.dict<double>(std::string(kSettingsDict)).set(kRateLimitKey, 250.0).ok());
  ASSERT_TRUE(client.dict<bool>(std::string(kSettingsDict)).set(kPausedKey, true).ok());
  auto now = read_live_settings(client, LiveSettings{1000, false});
  ASSERT_TRUE(now.ok()) << now.error().what();
  EXPECT_EQ(now->rate_limit, 250);
  EXPECT_TRUE(now->paused);
}

TEST_F(ManagerTest, RejectSamplerKeepsAtMostNPerReasonAcrossProcesses) {
  constexpr int kChildren = 4;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&, i] {
      auto c = manager_.connect();
      if (!c) return 2;
      for (int k = 0; k < 10; ++k) {
        const std::string record = "child " + std::to_string(i) + " record " + std::to_string(k);
        if (!sample_reject(*c, "bad_amount", record, 5).ok()) return 3;
      }
      return sample_reject(*c, "bad_ts", "ts=never", 5).ok() ? 0 : 4;
    }));
  }
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0);
  ManagerClient client = connect();
  EXPECT_EQ(client.list<std::string>(reject_list_name("bad_amount")).size().value(), 5u);
  EXPECT_EQ(client.list<std::string>(reject_list_name("bad_ts")).size().value(), 4u);
  const std::string text = launcher::render_reject_samples(client);
  EXPECT_NE(text.find("bad_amount:"), std::string::npos) << text;
  EXPECT_NE(text.find("ts=never"), std::string::npos) << text;
  EXPECT_NE(text.find("record"), std::string::npos) << text;
}

TEST_F(ManagerTest, RenderRejectSamplesSaysWhenThereAreNone) {
  ManagerClient client = connect();
  EXPECT_NE(launcher::render_reject_samples(client).find("none"), std::string::npos);
}

// `millrace set` against the manager of a run whose run_dir is this test's directory.
class SetCommandTest : public ManagerTest {
 protected:
  int set(const std::string& key, const std::string& value) {
    launcher::Invocation inv;
    inv.command = launcher::Command::kSet;
    inv.config_path = std::string(MILLRACE_SOURCE_DIR) + "/configs/orders.ini";
    inv.overrides = {"pipeline.run_dir=" + dir_.path().string()};
    inv.key = key;
    inv.value = value;
    return launcher::run_set(inv);
  }
};

TEST_F(SetCommandTest, WritesValidatedLiveSettings) {
  EXPECT_EQ(set("load.rate_limit", "5000"), launcher::kExitOk);
  EXPECT_EQ(set("pipeline.paused", "true"), launcher::kExitOk);
  ManagerClient client = connect();
  auto now = read_live_settings(client);
  ASSERT_TRUE(now.ok()) << now.error().what();
  EXPECT_EQ(now->rate_limit, 5000);
  EXPECT_TRUE(now->paused);
  EXPECT_EQ(set("pipeline.paused", "false"), launcher::kExitOk);
  EXPECT_FALSE(read_live_settings(client).value().paused);
}

TEST_F(SetCommandTest, RefusesUnknownKeysAndBadValues) {
  EXPECT_EQ(set("load.rate_limt", "5"), launcher::kExitUsage);
  EXPECT_EQ(set("load.rate_limit", "-1"), launcher::kExitUsage);
  EXPECT_EQ(set("load.rate_limit", "fast"), launcher::kExitUsage);
  EXPECT_EQ(set("pipeline.paused", "yes please"), launcher::kExitUsage);
  ManagerClient client = connect();
  EXPECT_EQ(client.dict<double>(std::string(kSettingsDict)).size().value(), 0u);
}

TEST_F(SetCommandTest, FailsClearlyWhenTheManagerIsDown) {
  manager_.kill9();
  EXPECT_EQ(set("load.rate_limit", "5"), launcher::kExitRunFailed);
}

}  // namespace
}  // namespace millrace::ipc
