// Kill test of the ring: a producer process and a consumer process move a numbered stream of
// records through a ring while this process SIGKILLs one of them at seeded random moments and
// restarts it. At the end the consumer must have processed every record exactly once, in
// order, intact.
//
// The recovery rule under test (invariant 3 of the design, "seq-skip"):
//  - The producer publishes a batch, then stores the last seq it published in marks[0]. A
//    restarted producer continues at marks[0] + 1. Killed between publish and the mark, it
//    re-sends records the ring already holds (identical: contents are a function of seq).
//  - The consumer processes records in order; before release() it stores the last processed
//    seq in a slot in shared memory. A restarted consumer re-reads unreleased records.
//  - Hence the consumer drops every record whose seq is <= its slot, and any other record must
//    be exactly slot + 1: a gap would be a lost record, a damaged one a broken ring.
//
// MILLRACE_SEED repeats a run. Under the `soak` ctest label (MILLRACE_SOAK_MODE=1) the test
// kills for MILLRACE_SOAK_SECONDS seconds instead of a fixed number of times.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/futex.hpp"
#include "ipc/ring.hpp"
#include "ipc/shm_segment.hpp"

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kCapacity = 16384;  // small: the stream wraps constantly
constexpr std::uint32_t kStateKind = 0x53525453;  // "STRS"
constexpr int kCiKills = 2000;
constexpr auto kCiTimeBudget = 75s;  // the ctest timeout is 120 s
constexpr auto kNoProgressLimit = 20s;

// Shared between this process and the children, in its own segment.
struct StressState {
  // The consumer's slot: last seq processed. Stored (release) before the ring's release().
  std::atomic<std::uint64_t> consumer_last{0};
  std::atomic<std::uint64_t> final_seq{0};  // set by the producer when it stops; 0 = running
  std::atomic<std::uint32_t> stop{0};       // parent -> producer: finish the stream
  std::atomic<std::uint32_t> progress{0};   // futex word: batches completed by either child
  std::atomic<std::uint32_t> parent_waiting{0};
  std::atomic<std::uint32_t> failure{0};    // a FailureCode once a child found a violation
  std::atomic<std::uint64_t> failure_seq{0};
  std::atomic<std::uint64_t> failure_detail{0};
  std::atomic<std::uint64_t> duplicates_dropped{0};
};

enum FailureCode : std::uint32_t {
  kNone = 0,
  kAttachFailed,
  kRingError,
  kGap,        // failure_seq arrived, failure_detail = expected seq
  kBadSize,    // failure_seq's record has length failure_detail
  kBadContent, // failure_seq's record has damaged bytes
};

const char* failure_name(std::uint32_t code) {
  switch (code) {
    case kAttachFailed: return "a child could not attach";
    case kRingError: return "a ring call failed";
    case kGap: return "a record was lost (gap in the sequence)";
    case kBadSize: return "a record had the wrong size";
    case kBadContent: return "a record was damaged";
    default: return "none";
  }
}

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A record: u64 seq, u32 size, u32 checksum, then bytes that are a function of (seed, seq).
constexpr std::size_t kRecordHeader = 16;

std::size_t record_size(std::uint64_t seed, std::uint64_t seq) {
  std::uint64_t x = seed ^ (seq * 0xd1b54a32d192ed03ULL);
  const std::uint64_t r = splitmix(x);
  const std::size_t max = Ring::max_record_size(kCapacity);
  const auto pick = r % 100;
  const std::size_t hi = pick < 70 ? 128 : pick < 95 ? 1024 : max;
  return kRecordHeader + static_cast<std::size_t>((r >> 8) % (hi - kRecordHeader + 1));
}

std::uint32_t fnv1a(std::span<const std::byte> bytes, std::uint64_t seq) {
  std::uint32_t h = 2166136261U ^ static_cast<std::uint32_t>(seq);
  for (std::byte b : bytes) h = (h ^ static_cast<std::uint32_t>(b)) * 16777619U;
  return h;
}

void fill_payload(std::span<std::byte> out, std::uint64_t seed, std::uint64_t seq) {
  std::uint64_t x = ~seed ^ seq;
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const std::uint64_t v = splitmix(x);
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
  }
}

void write_record(std::span<std::byte> out, std::uint64_t seed, std::uint64_t seq) {
  auto payload = out.subspan(kRecordHeader);
  fill_payload(payload, seed, seq);
  const auto size = static_cast<std::uint32_t>(out.size());
  const std::uint32_t sum = fnv1a(payload, seq);
  std::memcpy(out.data(), &seq, 8);
  std::memcpy(out.data() + 8, &size, 4);
  std::memcpy(out.data() + 12, &sum, 4);
}

// kNone if `in` is exactly the record `seq` should be.
FailureCode check_record(std::span<const std::byte> in, std::uint64_t seed, std::uint64_t seq,
                         std::uint64_t* detail) {
  if (in.size() != record_size(seed, seq)) {
    *detail = in.size();
    return kBadSize;
  }
  std::uint32_t size = 0;
  std::uint32_t sum = 0;
  std::memcpy(&size, in.data() + 8, 4);
  std::memcpy(&sum, in.data() + 12, 4);
  const auto payload = in.subspan(kRecordHeader);
  std::array<std::byte, 8> expected{};
  std::uint64_t x = ~seed ^ seq;
  for (std::size_t i = 0; i < payload.size(); i += 8) {
    const std::uint64_t v = splitmix(x);
    std::memcpy(expected.data(), &v, 8);
    const std::size_t n = std::min<std::size_t>(8, payload.size() - i);
    if (std::memcmp(expected.data(), payload.data() + i, n) != 0) return kBadContent;
  }
  if (size != in.size() || sum != fnv1a(payload, seq)) return kBadContent;
  return kNone;
}

void bump_progress(StressState& st) {
  st.progress.fetch_add(1, std::memory_order_release);
  // Pairs with the parent's fence after it announced that it waits (same handshake as the
  // ring's): either we see its announcement and wake it, or it sees our increment.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (st.parent_waiting.load(std::memory_order_relaxed) != 0) {
    (void)futex_wake(&st.progress, 1);
  }
}

int fail(StressState& st, FailureCode code, std::uint64_t seq, std::uint64_t detail) {
  st.failure_seq.store(seq, std::memory_order_relaxed);
  st.failure_detail.store(detail, std::memory_order_relaxed);
  st.failure.store(code, std::memory_order_release);
  return 3;
}

bool transient(const Error& e) {
  return e.code == static_cast<int>(LinkError::kTimeout) ||
         e.code == static_cast<int>(LinkError::kPeerGone);
}

int run_producer(const std::string& ring_name, const std::string& state_name, std::uint64_t seed) {
  auto state_seg = SharedSegment::attach(state_name, kStateKind);
  if (!state_seg) return 2;
  auto& st = *static_cast<StressState*>(state_seg->payload());
  auto ring_seg = SharedSegment::attach(ring_name, kRingSegmentKind);
  if (!ring_seg) return fail(st, kAttachFailed, 0, 1);
  auto attached = RingProducer::attach(*ring_seg);
  if (!attached) return fail(st, kAttachFailed, 0, 2);
  RingProducer& p = *attached;

  std::uint64_t next = p.marks()[0].load(std::memory_order_acquire) + 1;
  std::mt19937_64 rng(seed ^ (next * 0x9e3779b97f4a7c15ULL));
  for (;;) {
    const bool stopping = st.stop.load(std::memory_order_acquire) != 0;
    const auto batch = stopping ? 0 : 1 + rng() % 64;
    for (std::uint64_t i = 0; i < batch; ++i) {
      const std::size_t size = record_size(seed, next);
      auto span = p.reserve_for(size, 50ms);
      if (!span) {
        if (transient(span.error())) break;  // consumer being restarted: publish, go on
        return fail(st, kRingError, next, static_cast<std::uint64_t>(span.error().code));
      }
      write_record(*span, seed, next);
      p.commit(size);
      ++next;
    }
    if (auto published = p.publish(); !published) {
      return fail(st, kRingError, next, static_cast<std::uint64_t>(published.error().code));
    }
    // After publish: marks[0] never names a record that is not in the ring.
    p.marks()[0].store(next - 1, std::memory_order_release);
    if (stopping) {
      st.final_seq.store(next - 1, std::memory_order_release);
      bump_progress(st);
      return 0;
    }
    bump_progress(st);
  }
}

int run_consumer(const std::string& ring_name, const std::string& state_name, std::uint64_t seed) {
  auto state_seg = SharedSegment::attach(state_name, kStateKind);
  if (!state_seg) return 2;
  auto& st = *static_cast<StressState*>(state_seg->payload());
  auto ring_seg = SharedSegment::attach(ring_name, kRingSegmentKind);
  if (!ring_seg) return fail(st, kAttachFailed, 0, 3);
  auto attached = RingConsumer::attach(*ring_seg);
  if (!attached) return fail(st, kAttachFailed, 0, 4);
  RingConsumer& c = *attached;

  std::uint64_t last = st.consumer_last.load(std::memory_order_acquire);
  std::uint64_t dropped = 0;
  std::mt19937_64 rng(seed ^ ~last);
  for (;;) {
    auto first = c.peek_for(20ms);
    if (!first) {
      if (!transient(first.error())) {
        return fail(st, kRingError, last, static_cast<std::uint64_t>(first.error().code));
      }
      const std::uint64_t final_seq = st.final_seq.load(std::memory_order_acquire);
      if (final_seq != 0 && last >= final_seq) return 0;
      continue;
    }
    std::optional<std::span<const std::byte>> rec = *first;
    const auto batch = 1 + rng() % 64;
    for (std::uint64_t i = 1;; ++i, rec = c.try_peek()) {
      if (!rec) break;
      std::uint64_t seq = 0;
      if (rec->size() < kRecordHeader) return fail(st, kBadSize, last + 1, rec->size());
      std::memcpy(&seq, rec->data(), 8);
      std::uint64_t detail = 0;
      if (seq <= last) {
        // Seq-skip: already processed before a restart of either side. It must still be the
        // intact record of that seq.
        if (auto bad = check_record(*rec, seed, seq, &detail); bad != kNone) {
          return fail(st, bad, seq, detail);
        }
        ++dropped;
      } else {
        if (seq != last + 1) return fail(st, kGap, seq, last + 1);
        if (auto bad = check_record(*rec, seed, seq, &detail); bad != kNone) {
          return fail(st, bad, seq, detail);
        }
        last = seq;  // "processed"
      }
      if (i == batch) break;  // before peeking another: a peeked record must be processed
    }
    st.consumer_last.store(last, std::memory_order_release);  // the slot: before release()
    st.duplicates_dropped.fetch_add(dropped, std::memory_order_relaxed);
    dropped = 0;
    if (auto released = c.release(); !released) {
      return fail(st, kRingError, last, static_cast<std::uint64_t>(released.error().code));
    }
    bump_progress(st);
  }
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 0) : fallback;
}

std::string test_prefix() { return "millrace-test-" + std::to_string(::getpid()) + "-"; }

class RingKillStress : public ::testing::Test {
 protected:
  enum Role { kProducer = 0, kConsumer = 1 };

  void SetUp() override {
    seed_ = env_u64("MILLRACE_SEED", (std::uint64_t{std::random_device{}()} << 32) |
                                         std::random_device{}());
    std::cout << "seed=" << seed_ << " (set MILLRACE_SEED to repeat)\n";
    ring_name_ = "/" + test_prefix() + "kill-ring";
    state_name_ = "/" + test_prefix() + "kill-state";
    auto ring = create_ring_segment(ring_name_, kCapacity);
    ASSERT_TRUE(ring.ok()) << ring.error().what();
    ring_.emplace(std::move(ring).value());
    auto state = SharedSegment::create(state_name_, sizeof(StressState), kStateKind);
    ASSERT_TRUE(state.ok()) << state.error().what();
    state_seg_.emplace(std::move(state).value());
    state_ = ::new (state_seg_->payload()) StressState{};
    state_seg_->publish();
  }

  void TearDown() override {
    for (pid_t& pid : pids_) {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        pid = 0;
      }
    }
    if (ring_) (void)ring_->unlink();
    if (state_seg_) (void)state_seg_->unlink();
    ring_.reset();
    state_seg_.reset();
    std::vector<std::string> left;
    if (DIR* dir = ::opendir("/dev/shm")) {
      while (const dirent* e = ::readdir(dir)) {
        if (std::string_view(e->d_name).substr(0, test_prefix().size()) == test_prefix()) {
          left.emplace_back(e->d_name);
          ::shm_unlink(("/" + left.back()).c_str());
        }
      }
      ::closedir(dir);
    }
    EXPECT_TRUE(left.empty()) << "segments left behind, first: " << (left.empty() ? "" : left[0]);
  }

  pid_t spawn(Role role) {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Die with the test, whatever happens to it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(9);
      ::_exit(role == kProducer ? run_producer(ring_name_, state_name_, seed_)
                                : run_consumer(ring_name_, state_name_, seed_));
    }
    pids_[role] = pid;
    ++starts_[role];
    return pid;
  }

  // A child that is gone without being killed by us: report why.
  std::string unexpected_exits() {
    std::string why;
    for (int role = 0; role < 2; ++role) {
      int status = 0;
      if (pids_[role] > 0 && ::waitpid(pids_[role], &status, WNOHANG) == pids_[role]) {
        why += std::string(role == kProducer ? "producer" : "consumer") + " exited (" +
               (WIFEXITED(status) ? "code " + std::to_string(WEXITSTATUS(status))
                                  : "signal " + std::to_string(WTERMSIG(status))) +
               "); ";
        pids_[role] = 0;
      }
    }
    return why;
  }

  std::string failure_text() const {
    const auto code = state_->failure.load(std::memory_order_acquire);
    return std::string(failure_name(code)) +
           " at seq " + std::to_string(state_->failure_seq.load(std::memory_order_relaxed)) +
           " (detail " + std::to_string(state_->failure_detail.load(std::memory_order_relaxed)) +
           "), seed=" + std::to_string(seed_);
  }

  // Waits until the children completed `batches` more batches; false (with `why`) if they
  // stop progressing, fail or die.
  bool wait_progress(std::uint32_t batches, std::string* why) {
    const std::uint32_t target = state_->progress.load(std::memory_order_acquire) + batches;
    const auto give_up = Clock::now() + kNoProgressLimit;
    auto reached = [&] {
      return static_cast<std::int32_t>(state_->progress.load(std::memory_order_acquire) -
                                       target) >= 0;
    };
    while (!reached()) {
      if (state_->failure.load(std::memory_order_acquire) != kNone) {
        *why = failure_text();
        return false;
      }
      if (auto exits = unexpected_exits(); !exits.empty()) {
        *why = exits + failure_text();
        return false;
      }
      if (Clock::now() > give_up) {
        *why = "no progress for 20 s (deadlock?), seed=" + std::to_string(seed_);
        return false;
      }
      state_->parent_waiting.store(1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);  // see bump_progress
      const std::uint32_t seen = state_->progress.load(std::memory_order_acquire);
      if (static_cast<std::int32_t>(seen - target) < 0) {
        // Slices of 100 ms only to notice a child that died without progressing.
        (void)futex_wait(&state_->progress, seen, 100ms);
      }
      state_->parent_waiting.store(0, std::memory_order_relaxed);
    }
    return true;
  }

  // Waits up to `limit` for `role` to exit on its own; its exit code, or -1.
  int wait_exit(Role role, std::chrono::seconds limit) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pids_[role], 0));
    if (pidfd >= 0) {
      pollfd pfd{pidfd, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(limit.count() * 1000));
      ::close(pidfd);
      if (ready <= 0) return -1;
    }
    int status = 0;
    if (::waitpid(pids_[role], &status, 0) != pids_[role]) return -1;
    pids_[role] = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::uint64_t seed_ = 0;
  std::string ring_name_;
  std::string state_name_;
  std::optional<SharedSegment> ring_;
  std::optional<SharedSegment> state_seg_;
  StressState* state_ = nullptr;
  std::array<pid_t, 2> pids_{};
  std::array<int, 2> starts_{};
};

TEST_F(RingKillStress, EveryRecordArrivesOnceInOrderDespiteKills) {
  const bool soak_mode = env_u64("MILLRACE_SOAK_MODE", 0) != 0;
  const std::uint64_t soak_seconds = env_u64("MILLRACE_SOAK_SECONDS", 0);
  if (soak_mode && soak_seconds == 0) GTEST_SKIP() << "set MILLRACE_SOAK_SECONDS to soak";
  const auto budget = soak_mode ? std::chrono::seconds(soak_seconds)
                                : std::chrono::duration_cast<std::chrono::seconds>(kCiTimeBudget);
  SCOPED_TRACE("seed=" + std::to_string(seed_));

  spawn(kProducer);
  spawn(kConsumer);
  std::mt19937_64 rng(seed_);
  const auto start = Clock::now();
  int kills = 0;
  std::string why;
  while (soak_mode || kills < kCiKills) {
    if (Clock::now() - start > budget) break;
    // A random amount of progress (zero included: kill a child that is still starting up),
    // then a random spin so that the kill lands anywhere within a batch.
    if (!wait_progress(static_cast<std::uint32_t>(rng() % 9), &why)) break;
    const auto spin = rng() % 20000;
    for (std::uint64_t i = 0; i < spin; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
    const Role victim = rng() % 2 == 0 ? kProducer : kConsumer;
    ASSERT_EQ(::kill(pids_[victim], SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pids_[victim], &status, 0), pids_[victim]);
    pids_[victim] = 0;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      why = std::string(victim == kProducer ? "producer" : "consumer") +
            " had exited before the kill (status " + std::to_string(status) + "): " +
            failure_text();
      break;
    }
    ++kills;
    spawn(victim);
  }
  ASSERT_EQ(why, "");
  ASSERT_EQ(state_->failure.load(std::memory_order_acquire), kNone) << failure_text();

  // Let the stream end: the producer stops at its next batch boundary and names the last seq;
  // the consumer stops once it has processed it.
  state_->stop.store(1, std::memory_order_release);
  const int producer_exit = wait_exit(kProducer, 30s);
  const int consumer_exit = wait_exit(kConsumer, 30s);
  EXPECT_EQ(producer_exit, 0) << failure_text();
  EXPECT_EQ(consumer_exit, 0) << failure_text();
  ASSERT_EQ(state_->failure.load(std::memory_order_acquire), kNone) << failure_text();

  const auto final_seq = state_->final_seq.load(std::memory_order_acquire);
  const auto last = state_->consumer_last.load(std::memory_order_acquire);
  const auto elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::cout << "kills=" << kills << " producer starts=" << starts_[kProducer]
            << " consumer starts=" << starts_[kConsumer] << " records=" << last
            << " duplicates dropped=" << state_->duplicates_dropped.load(std::memory_order_relaxed)
            << " seconds=" << elapsed << "\n";
  // Every seq 1..last was accepted exactly once and in order (the consumer checks each against
  // its predecessor); the stream ends no earlier than the last record the producer named.
  EXPECT_GT(final_seq, 0U);
  EXPECT_GE(last, final_seq);
  if (!soak_mode) {
    EXPECT_GE(kills, 1000) << "the time budget ran out before 1000 kills";
  }
}

}  // namespace
}  // namespace millrace::ipc
