#include "ipc/shared_value.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace millrace::ipc {
namespace {

std::uint64_t test_seed() {
  if (const char* env = std::getenv("MILLRACE_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

// A MAP_SHARED anonymous mapping: shared with every child forked after it, gone with them.
class SharedMemory {
 public:
  explicit SharedMemory(std::size_t size) : size_(size) {
    base_ = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap failed");
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory() { ::munmap(base_, size_); }
  // The byte at `offset`, for placing objects (offsets are multiples of 64).
  void* at(std::size_t offset) { return static_cast<char*>(base_) + offset; }

 private:
  void* base_;
  std::size_t size_;
};

// Forks a child that runs `body` and exits with its return value; it dies with the test.
template <class Fn>
pid_t spawn(Fn&& body) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(99);
    ::_exit(body());
  }
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Pair {
  std::int64_t a = 0;
  std::int64_t b = 0;
};
static_assert(!Value<Pair>::kLockFree, "the crash test needs a Value updated in place");
static_assert(Value<std::uint64_t>::kLockFree);

constexpr std::size_t kPage = 4096;

TEST(SharedValue, FetchAddFromForkedProcessesSumsExactly) {
  SharedMemory mem(4 * kPage);
  auto value = Value<std::uint64_t>::init(mem.at(0));
  auto raw = RawValue<std::uint64_t>::init(mem.at(kPage));
  auto array = Array<std::uint64_t, 4>::init(mem.at(2 * kPage));
  auto raw_array = RawArray<std::uint32_t, 4>::init(mem.at(3 * kPage));
  ASSERT_TRUE(value.ok() && raw.ok() && array.ok() && raw_array.ok());

  constexpr int kChildren = 4;
  constexpr std::uint64_t kAdds = 50000;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    children.push_back(spawn([&mem, c] {
      auto v = Value<std::uint64_t>::attach(mem.at(0));
      auto r = RawValue<std::uint64_t>::attach(mem.at(kPage));
      auto a = Array<std::uint64_t, 4>::attach(mem.at(2 * kPage));
      auto ra = RawArray<std::uint32_t, 4>::attach(mem.at(3 * kPage));
      if (!v || !r || !a || !ra) return 1;
      for (std::uint64_t i = 0; i < kAdds; ++i) {
        (*v)->fetch_add(1, std::memory_order_relaxed);
        (*r)->fetch_add(2, std::memory_order_relaxed);
        (*a)->fetch_add(i % 4, 1, std::memory_order_relaxed);
        (*ra)->fetch_add(static_cast<std::size_t>(c), 1, std::memory_order_relaxed);
      }
      return 0;
    }));
  }
  for (pid_t pid : children) EXPECT_EQ(wait_exit_code(pid), 0);
  EXPECT_EQ((*value)->load(), kChildren * kAdds);
  EXPECT_EQ((*raw)->load(), 2 * kChildren * kAdds);
  std::uint64_t array_sum = 0;
  for (std::uint64_t x : (*array)->snapshot()) array_sum += x;
  EXPECT_EQ(array_sum, kChildren * kAdds);
  for (std::size_t c = 0; c < kChildren; ++c) EXPECT_EQ((*raw_array)->load(c), kAdds);
}

TEST(SharedValue, AttachRefusesUninitialisedMemoryAndAnotherType) {
  SharedMemory mem(2 * kPage);
  auto empty = Value<std::int64_t>::attach(mem.at(0));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, static_cast<int>(SharedValueError::kNotInitialised));
  EXPECT_NE(empty.error().what().find("Value<long int>"), std::string::npos)
      << empty.error().what();

  ASSERT_TRUE(Value<std::int64_t>::init(mem.at(0), 7).ok());
  auto other = Value<double>::attach(mem.at(0));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, static_cast<int>(SharedValueError::kType));
  EXPECT_NE(other.error().what().find("Value<double>"), std::string::npos) << other.error().what();
  auto same = Value<std::int64_t>::attach(mem.at(0));
  ASSERT_TRUE(same.ok()) << same.error().what();
  EXPECT_EQ((*same)->load(), 7);
}

TEST(SharedValue, LockedUpdateOfALockFreeValueCommitsAtTheEnd) {
  SharedMemory mem(kPage);
  auto value = Value<std::int64_t>::init(mem.at(0), 10);
  ASSERT_TRUE(value.ok());
  {
    auto guard = (*value)->get_lock();
    *guard = *guard * 3 + 1;
    EXPECT_EQ((*value)->load(), 10) << "a lock-free Value changes in one store, at commit";
  }
  EXPECT_EQ((*value)->load(), 31);
  (*value)->update([](std::int64_t& v) { v -= 1; });
  EXPECT_EQ((*value)->load(), 30);
}

TEST(SharedValue, AbandonAndExceptionsRestoreTheStateBeforeTheLock) {
  SharedMemory mem(2 * kPage);
  auto pair = Value<Pair>::init(mem.at(0), Pair{600, 400});
  auto array = Array<std::int64_t, 3>::init(mem.at(kPage), 5);
  ASSERT_TRUE(pair.ok() && array.ok());
  {
    auto guard = (*pair)->get_lock();
    guard->a = 0;
    guard.abandon();
  }
  EXPECT_EQ((*pair)->load().a, 600);
  EXPECT_THROW((*pair)->update([](Pair& p) {
    p.a = -1;
    throw std::runtime_error("midway");
  }),
               std::runtime_error);
  EXPECT_EQ((*pair)->load().a, 600);
  EXPECT_THROW((*array)->update([](Array<std::int64_t, 3>::Guard& g) {
    g.set(0, 100);
    throw std::runtime_error("midway");
  }),
               std::runtime_error);
  EXPECT_EQ((*array)->load(0), 5);
  (*array)->update([](Array<std::int64_t, 3>::Guard& g) {
    g.set(0, g.get(0) - 2);
    g.set(2, g.get(2) + 2);
  });
  EXPECT_EQ((*array)->snapshot(), (std::array<std::int64_t, 3>{3, 5, 7}));
}

TEST(RobustMutex, UsableAgainAfterItsHolderAndThenItsRepairerDied) {
  SharedMemory mem(kPage);
  auto* mutex = new (mem.at(0)) RobustMutex();
  ASSERT_TRUE(mutex->init().ok());

  // The holder dies.
  EXPECT_EQ(wait_exit_code(spawn([mutex] {
              auto died = mutex->lock();
              return died.ok() && !*died ? 0 : 1;
            })),
            0);
  // The next locker is told, and dies too while "repairing".
  EXPECT_EQ(wait_exit_code(spawn([mutex] {
              auto died = mutex->lock();
              return died.ok() && *died ? 0 : 1;
            })),
            0);
  // Still not ENOTRECOVERABLE: told again, then normal.
  auto died = mutex->lock();
  ASSERT_TRUE(died.ok()) << died.error().what();
  EXPECT_TRUE(*died);
  mutex->unlock();
  auto again = RobustLock::acquire(*mutex);
  ASSERT_TRUE(again.ok()) << again.error().what();
  EXPECT_FALSE(again->owner_died());
}

TEST(RobustMutex, SecondLockByTheHolderIsAnErrorNotADeadlock) {
  SharedMemory mem(kPage);
  auto* mutex = new (mem.at(0)) RobustMutex();
  ASSERT_TRUE(mutex->init().ok());
  auto first = RobustLock::acquire(*mutex);
  ASSERT_TRUE(first.ok());
  auto second = mutex->lock();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, static_cast<int>(LockError::kRelock));
}

// Shared state of the crash test.
struct Control {
  std::atomic<int> inside{0};      // the victim reached its chosen point and waits to be killed
  std::atomic<int> stop{0};        // the survivor should exit
  std::atomic<int> violations{0};  // a child saw a broken invariant
  std::atomic<std::uint64_t> recoveries{0};
  std::atomic<std::uint64_t> updates{0};
};

constexpr std::int64_t kPairTotal = 1000;
constexpr std::int64_t kArrayTotal = 100;
constexpr std::size_t kArraySize = 4;
using CounterArray = Array<std::int64_t, kArraySize>;

// Where a victim stops and waits for SIGKILL.
enum class StopAt { kNowhere, kPairMidUpdate, kArrayMidUpdate, kHoldingCleanLock };

// One locked update of each object, moving amounts around so that totals never change. A
// victim announces `stop` and waits for its death there.
void update_once(Value<Pair>& pair, CounterArray& array, Control& control, std::mt19937_64& rng,
                 StopAt stop) {
  const auto wait_for_death = [&control] {
    control.inside.store(1, std::memory_order_release);
    for (;;) ::pause();
  };
  {
    auto g = pair.get_lock();
    if (g.recovered()) control.recoveries.fetch_add(1, std::memory_order_relaxed);
    if (g->a + g->b != kPairTotal) control.violations.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t k = static_cast<std::int64_t>(rng() % 50) - 25;
    g->a -= k;
    if (stop == StopAt::kPairMidUpdate) wait_for_death();
    g->b += k;
  }
  {
    auto g = array.get_lock();
    if (g.recovered()) control.recoveries.fetch_add(1, std::memory_order_relaxed);
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < kArraySize; ++i) sum += g.get(i);
    if (sum != kArrayTotal) control.violations.fetch_add(1, std::memory_order_relaxed);
    const std::size_t from = rng() % kArraySize;
    const std::size_t to = rng() % kArraySize;
    g.set(from, g.get(from) - 3);
    if (stop == StopAt::kArrayMidUpdate) wait_for_death();
    g.set(to, g.get(to) + 3);
    if (stop == StopAt::kHoldingCleanLock) {
      g.commit();
      auto held = array.get_lock();  // journal saved, nothing written yet
      wait_for_death();
    }
  }
  control.updates.fetch_add(1, std::memory_order_relaxed);
}

bool wait_inside(Control& control) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (control.inside.load(std::memory_order_acquire) == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Children are SIGKILLed at seeded moments, many of them inside a half-done update (they say
// so through shared memory first); a survivor process and the parent keep locking. Every
// locker must find the totals intact, and nobody may deadlock.
TEST(SharedValue, MultiFieldInvariantHoldsWhileHoldersAreKilledMidUpdate) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::cout << "seed=" << seed << " (set MILLRACE_SEED to repeat)\n";
  std::mt19937_64 rng(seed);

  SharedMemory mem(3 * kPage);
  auto* control = new (mem.at(0)) Control();
  auto pair = Value<Pair>::init(mem.at(kPage), Pair{kPairTotal, 0});
  auto array = CounterArray::init(mem.at(2 * kPage), kArrayTotal / kArraySize);
  ASSERT_TRUE(pair.ok() && array.ok());

  const pid_t survivor = spawn([&mem, control, seed] {
    auto p = Value<Pair>::attach(mem.at(kPage));
    auto a = CounterArray::attach(mem.at(2 * kPage));
    if (!p || !a) return 1;
    std::mt19937_64 child_rng(seed ^ 0x5eed);
    while (control->stop.load(std::memory_order_acquire) == 0) {
      update_once(**p, **a, *control, child_rng, StopAt::kNowhere);
    }
    return 0;
  });

  constexpr int kKills = 200;
  int handshake_kills = 0;
  std::uint64_t parent_recoveries = 0;
  for (int kill_no = 0; kill_no < kKills; ++kill_no) {
    const std::uint64_t child_seed = rng();
    const auto choice = rng() % 5;  // 0..3: stop at that point after a few updates; 4: random
    const StopAt stop = choice == 0   ? StopAt::kPairMidUpdate
                        : choice == 1 ? StopAt::kArrayMidUpdate
                        : choice == 2 ? StopAt::kHoldingCleanLock
                                      : StopAt::kNowhere;
    const std::uint64_t updates_before_stop = rng() % 20;
    const std::uint64_t random_delay = rng() % 20000;
    control->inside.store(0, std::memory_order_release);

    const pid_t victim = spawn([&mem, control, child_seed, stop, updates_before_stop] {
      auto p = Value<Pair>::attach(mem.at(kPage));
      auto a = CounterArray::attach(mem.at(2 * kPage));
      if (!p || !a) return 1;
      std::mt19937_64 child_rng(child_seed);
      control->inside.store(stop == StopAt::kNowhere ? 1 : 0, std::memory_order_release);
      for (std::uint64_t i = 0;; ++i) {
        update_once(**p, **a, *control, child_rng, i == updates_before_stop ? stop : StopAt::kNowhere);
      }
    });
    ASSERT_GT(victim, 0);
    ASSERT_TRUE(wait_inside(*control)) << "kill " << kill_no << ": the victim never got there";
    if (stop == StopAt::kNowhere) {
      // Somewhere in its loop: after a seeded number of spins.
      for (std::uint64_t spin = 0; spin < random_delay; ++spin) {
        std::atomic_signal_fence(std::memory_order_seq_cst);
      }
    } else {
      ++handshake_kills;
    }
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    ASSERT_EQ(wait_exit_code(victim), 128 + SIGKILL);

    // The parent locks too: the totals hold, whoever repaired them.
    {
      auto g = (*pair)->get_lock();
      if (g.recovered()) ++parent_recoveries;
      ASSERT_EQ(g->a + g->b, kPairTotal) << "after kill " << kill_no;
    }
    {
      auto g = (*array)->get_lock();
      if (g.recovered()) ++parent_recoveries;
      std::int64_t sum = 0;
      for (std::size_t i = 0; i < kArraySize; ++i) sum += g.get(i);
      ASSERT_EQ(sum, kArrayTotal) << "after kill " << kill_no;
    }
  }

  control->stop.store(1, std::memory_order_release);
  EXPECT_EQ(wait_exit_code(survivor), 0);
  EXPECT_EQ(control->violations.load(), 0);
  EXPECT_GE(handshake_kills, kKills / 2);
  // Every kill inside an update (mid-update, or holding a saved journal) was rolled back by
  // the next locker, the survivor or the parent.
  const std::uint64_t rollbacks = control->recoveries.load() + parent_recoveries;
  EXPECT_GE(rollbacks, static_cast<std::uint64_t>(handshake_kills));
  std::cout << "kills=" << kKills << " inside-update kills=" << handshake_kills
            << " rollbacks=" << rollbacks << " updates=" << control->updates.load() << "\n";
}

}  // namespace
}  // namespace millrace::ipc
