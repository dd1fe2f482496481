#include "ipc/shm_segment.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/version.hpp"

namespace millrace::ipc {
namespace {

constexpr std::uint32_t kKind = 0x54534554;  // "TEST"

std::string test_prefix() { return "millrace-test-" + std::to_string(::getpid()) + "-"; }

std::vector<std::string> leftover_segments() {
  std::vector<std::string> found;
  if (DIR* dir = ::opendir("/dev/shm")) {
    const std::string prefix = test_prefix();
    while (const dirent* e = ::readdir(dir)) {
      if (std::string_view(e->d_name).substr(0, prefix.size()) == prefix) {
        found.emplace_back(e->d_name);
      }
    }
    ::closedir(dir);
  }
  return found;
}

// Removes the name when the test ends, passed or failed.
struct ScopedUnlink {
  std::string name;
  ~ScopedUnlink() { ::shm_unlink(name.c_str()); }
};

class SharedSegmentTest : public ::testing::Test {
 protected:
  static std::string name(const std::string& what) { return "/" + test_prefix() + what; }

  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    const auto left = leftover_segments();
    for (const auto& n : left) ::shm_unlink(("/" + n).c_str());
    EXPECT_TRUE(left.empty()) << "segments left behind, first: " << (left.empty() ? "" : left[0]);
  }

  // A child that lives until the test ends (or kills it).
  pid_t spawn_sleeper() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[1]);
      char c;
      while (::read(fds[0], &c, 1) < 0 && errno == EINTR) {
      }
      ::_exit(0);
    }
    ::close(fds[0]);
    sleeper_pipes_.push_back(fds[1]);
    children_.push_back(pid);
    return pid;
  }

  void reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
    children_.erase(std::remove(children_.begin(), children_.end(), pid), children_.end());
  }

  ~SharedSegmentTest() override {
    for (int fd : sleeper_pipes_) ::close(fd);
  }

  std::vector<pid_t> children_;
  std::vector<int> sleeper_pipes_;
};

// Runs `fn` in a forked child, reaps it, and returns its exit status.
template <typename Fn>
int in_child(Fn&& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(fn());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST_F(SharedSegmentTest, AttachSeesPayloadWrittenBeforePublish) {
  const std::string n = name("basic");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 1000, kKind);
  ASSERT_TRUE(created.ok()) << created.error().what();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(created->payload()) % kSegmentPayloadAlignment, 0U);
  EXPECT_EQ(created->payload_size(), 1000U);
  EXPECT_FALSE(created->published());
  std::memset(created->payload(), 0x5a, 1000);
  created->publish();
  EXPECT_TRUE(created->published());

  auto attached = SharedSegment::attach(n, kKind);
  ASSERT_TRUE(attached.ok()) << attached.error().what();
  EXPECT_EQ(attached->name(), n);
  EXPECT_EQ(attached->kind(), kKind);
  EXPECT_EQ(attached->payload_size(), 1000U);
  const auto* bytes = static_cast<const unsigned char*>(attached->payload());
  EXPECT_TRUE(std::all_of(bytes, bytes + 1000, [](unsigned char b) { return b == 0x5a; }));
  // Both mappings show the same memory.
  static_cast<unsigned char*>(created->payload())[7] = 1;
  EXPECT_EQ(bytes[7], 1);
  EXPECT_TRUE(created->unlink().ok());
}

TEST_F(SharedSegmentTest, AttachWaitsForCreatorToPublish) {
  const std::string n = name("late");
  ScopedUnlink guard{n};
  // The attacher may start before the segment exists or before it is published: either way
  // it must end up with the complete payload.
  Result<SharedSegment> attached = Error{};
  std::thread attacher([&] { attached = SharedSegment::attach(n, kKind, std::chrono::seconds(10)); });
  auto created = SharedSegment::create(n, 64, kKind);
  if (created.ok()) {
    std::memset(created->payload(), 7, 64);
    created->publish();
  }
  attacher.join();
  ASSERT_TRUE(created.ok()) << created.error().what();
  ASSERT_TRUE(attached.ok()) << attached.error().what();
  EXPECT_EQ(static_cast<const unsigned char*>(attached->payload())[63], 7);
}

TEST_F(SharedSegmentTest, AttachTimesOutOnNeverPublishedSegment) {
  const std::string n = name("unpublished");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 64, kKind);
  ASSERT_TRUE(created.ok()) << created.error().what();
  auto attached = SharedSegment::attach(n, kKind, std::chrono::milliseconds(50));
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().component, "shm");
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kNotPublished));
  EXPECT_NE(attached.error().what().find(n), std::string::npos) << attached.error().what();
  EXPECT_NE(attached.error().what().find("not published within 50 ms"), std::string::npos)
      << attached.error().what();
  EXPECT_NE(attached.error().what().find("still initialising"), std::string::npos)
      << attached.error().what();
}

TEST_F(SharedSegmentTest, AttachToMissingSegmentFailsWithNotFound) {
  const std::string n = name("missing");
  auto attached = SharedSegment::attach(n, kKind, std::chrono::milliseconds(20));
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kNotFound));
  EXPECT_NE(attached.error().what().find(n), std::string::npos) << attached.error().what();
}

TEST_F(SharedSegmentTest, KindMismatchNamesSegmentAndBothKinds) {
  const std::string n = name("kind");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 64, kKind);
  ASSERT_TRUE(created.ok());
  created->publish();
  auto attached = SharedSegment::attach(n, kKind + 1);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kKind));
  EXPECT_NE(attached.error().what().find(n), std::string::npos);
  EXPECT_NE(attached.error().what().find(std::to_string(kKind)), std::string::npos);
  EXPECT_NE(attached.error().what().find(std::to_string(kKind + 1)), std::string::npos);
}

TEST_F(SharedSegmentTest, VersionMismatchNamesSegmentAndBothVersions) {
  const std::string n = name("version");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 64, kKind);
  ASSERT_TRUE(created.ok());
  created->publish();
  // Header layout (part of the segment format): u64 magic, u64 building marker, u32 version.
  const int fd = ::shm_open(n.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  const std::uint32_t other = kSegmentFormatVersion + 41;
  ASSERT_EQ(::pwrite(fd, &other, sizeof other, 16), static_cast<ssize_t>(sizeof other));
  ::close(fd);
  auto attached = SharedSegment::attach(n, kKind);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kVersion));
  EXPECT_NE(attached.error().what().find(n), std::string::npos);
  EXPECT_NE(attached.error().what().find("version " + std::to_string(other)), std::string::npos)
      << attached.error().what();
}

TEST_F(SharedSegmentTest, TruncatedSegmentIsASizeMismatch) {
  const std::string n = name("size");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 1 << 16, kKind);
  ASSERT_TRUE(created.ok());
  created->publish();
  const int fd = ::shm_open(n.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ::close(fd);
  auto attached = SharedSegment::attach(n, kKind);
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kSize));
  EXPECT_NE(attached.error().what().find(n), std::string::npos);
  EXPECT_NE(attached.error().what().find("65536 payload bytes"), std::string::npos)
      << attached.error().what();
}

TEST_F(SharedSegmentTest, CreatesWithMode0600EvenWithPermissiveUmask) {
  const std::string n = name("mode");
  ScopedUnlink guard{n};
  const mode_t old = ::umask(0);
  auto created = SharedSegment::create(n, 64, kKind);
  ::umask(old);
  ASSERT_TRUE(created.ok());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + n).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600U);
}

TEST_F(SharedSegmentTest, CreateRefusesAnExistingName) {
  const std::string n = name("exists");
  ScopedUnlink guard{n};
  auto first = SharedSegment::create(n, 64, kKind);
  ASSERT_TRUE(first.ok());
  auto second = SharedSegment::create(n, 64, kKind);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, static_cast<int>(ShmError::kExists));
  EXPECT_NE(second.error().what().find(n), std::string::npos);
}

TEST_F(SharedSegmentTest, RejectsInvalidNames) {
  const std::vector<std::string> bad_names = {"no-slash", "/", "/a/b", "/sp ace",
                                              "/" + std::string(300, 'a')};
  for (const std::string& bad : bad_names) {
    auto r = SharedSegment::create(bad, 64, kKind);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, static_cast<int>(ShmError::kBadName)) << bad;
  }
  EXPECT_FALSE(valid_segment_name("/" + std::string(NAME_MAX, 'a')));
  EXPECT_TRUE(valid_segment_name("/millrace-run_1.x-ring-0"));
}

TEST_F(SharedSegmentTest, SegmentNameJoinsRunAndRole) {
  EXPECT_EQ(segment_name("20240101-abc", "ring-clean-0"), "/millrace-20240101-abc-ring-clean-0");
  EXPECT_TRUE(valid_segment_name(segment_name("r", "stats")));
}

TEST_F(SharedSegmentTest, IsMoveOnlyAndMoveKeepsTheMapping) {
  static_assert(!std::is_copy_constructible_v<SharedSegment>);
  static_assert(!std::is_copy_assignable_v<SharedSegment>);
  static_assert(std::is_nothrow_move_constructible_v<SharedSegment>);
  static_assert(std::is_nothrow_move_assignable_v<SharedSegment>);
  const std::string n = name("move");
  ScopedUnlink guard{n};
  auto created = SharedSegment::create(n, 64, kKind);
  ASSERT_TRUE(created.ok());
  SharedSegment a = std::move(created).value();
  void* payload = a.payload();
  SharedSegment b = std::move(a);
  EXPECT_EQ(b.payload(), payload);
  EXPECT_EQ(b.name(), n);
  static_cast<char*>(b.payload())[0] = 'x';
  auto other = SharedSegment::create(name("move2"), 64, kKind);
  ASSERT_TRUE(other.ok());
  ScopedUnlink guard2{other->name()};
  b = std::move(other).value();  // unmaps the first mapping
  EXPECT_EQ(b.name(), name("move2"));
}

TEST_F(SharedSegmentTest, DestructorUnmapsButDoesNotUnlink) {
  const std::string n = name("dtor");
  ScopedUnlink guard{n};
  {
    auto created = SharedSegment::create(n, 64, kKind);
    ASSERT_TRUE(created.ok());
    static_cast<char*>(created->payload())[0] = 'k';
    created->publish();
  }
  auto attached = SharedSegment::attach(n, kKind);
  ASSERT_TRUE(attached.ok()) << attached.error().what();
  EXPECT_EQ(static_cast<const char*>(attached->payload())[0], 'k');
  EXPECT_TRUE(attached->unlink().ok());
  EXPECT_FALSE(attached->unlink().ok());  // already gone: reported, not ignored
}

TEST_F(SharedSegmentTest, ProcessAliveDetectsDeadZombieAndReusedPids) {
  const auto self_start = process_start_time(::getpid());
  ASSERT_TRUE(self_start.has_value());
  EXPECT_TRUE(process_alive(::getpid(), *self_start));
  EXPECT_TRUE(process_alive(::getpid(), 0));
  EXPECT_FALSE(process_alive(::getpid(), *self_start + 1));  // same pid, another process

  const pid_t zombie = ::fork();
  if (zombie == 0) ::_exit(0);
  siginfo_t info{};
  // Wait for the exit without reaping: the child stays a zombie.
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(process_alive(zombie, 0));
  ASSERT_EQ(::waitpid(zombie, nullptr, 0), zombie);
  EXPECT_FALSE(process_alive(zombie, 0));
}

TEST_F(SharedSegmentTest, SweepRemovesSegmentsOfDeadOwnersOnly) {
  const std::string dead_published = name("sweep-dead");
  const std::string dead_building = name("sweep-half");
  const std::string live_self = name("sweep-self");
  const std::string live_child = name("sweep-child");
  ScopedUnlink g1{dead_published}, g2{dead_building}, g3{live_self}, g4{live_child};

  // Created by a child that then exits (and is reaped): owner dead.
  ASSERT_EQ(in_child([&] {
              auto s = SharedSegment::create(dead_published, 128, kKind);
              if (!s) return 1;
              s->publish();
              return 0;
            }),
            0);
  // Created but never published by a dead child: judged by its creator.
  ASSERT_EQ(in_child([&] { return SharedSegment::create(dead_building, 128, kKind) ? 0 : 1; }),
            0);
  auto mine = SharedSegment::create(live_self, 128, kKind);
  ASSERT_TRUE(mine.ok());
  mine->publish();
  // Created by this process on behalf of a live child that owns it.
  const pid_t child = spawn_sleeper();
  auto theirs = SharedSegment::create(live_child, 128, kKind);
  ASSERT_TRUE(theirs.ok());
  theirs->set_owner(child);
  theirs->publish();
  EXPECT_EQ(theirs->owner(), child);

  auto swept = sweep_stale_segments(test_prefix() + "sweep-");
  ASSERT_TRUE(swept.ok()) << swept.error().what();
  std::sort(swept->begin(), swept->end());
  EXPECT_EQ(*swept, (std::vector<std::string>{dead_published, dead_building}));
  EXPECT_TRUE(SharedSegment::attach(live_self, kKind).ok());
  EXPECT_TRUE(SharedSegment::attach(live_child, kKind).ok());

  // Once the owning child is gone, its segment is stale even though its creator lives.
  reap(child);
  swept = sweep_stale_segments(test_prefix() + "sweep-");
  ASSERT_TRUE(swept.ok()) << swept.error().what();
  EXPECT_EQ(*swept, (std::vector<std::string>{live_child}));
  EXPECT_TRUE(mine->unlink().ok());
}

TEST_F(SharedSegmentTest, SweepLeavesForeignAndFreshShortObjects) {
  const std::string foreign = name("sweep-foreign");
  const std::string fresh_empty = name("sweep-fresh");
  const std::string old_empty = name("sweep-old");
  ScopedUnlink g1{foreign}, g2{fresh_empty}, g3{old_empty};
  auto make = [](const std::string& n, std::size_t size, unsigned char fill) {
    const int fd = ::shm_open(n.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    EXPECT_GE(fd, 0) << n;
    std::vector<unsigned char> bytes(size, fill);
    if (size > 0) {
      EXPECT_EQ(::write(fd, bytes.data(), size), static_cast<ssize_t>(size));
    }
    return fd;
  };
  ::close(make(foreign, 4096, 0xab));  // not our magic: never touched
  ::close(make(fresh_empty, 0, 0));    // maybe a creator about to size it: kept
  const int fd = make(old_empty, 0, 0);
  // A short object unchanged for longer than the grace period: its creator died before
  // sizing it.
  const timespec times[2] = {{0, UTIME_OMIT}, {::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::futimens(fd, times), 0);
  ::close(fd);

  auto swept = sweep_stale_segments(test_prefix() + "sweep-");
  ASSERT_TRUE(swept.ok()) << swept.error().what();
  EXPECT_EQ(*swept, (std::vector<std::string>{old_empty}));
  struct stat st {};
  EXPECT_EQ(::stat(("/dev/shm" + foreign).c_str(), &st), 0);
  EXPECT_EQ(::stat(("/dev/shm" + fresh_empty).c_str(), &st), 0);
}

TEST_F(SharedSegmentTest, AttachReportsDeadCreatorOfHalfBuiltSegment) {
  const std::string n = name("half");
  ScopedUnlink guard{n};
  ASSERT_EQ(in_child([&] { return SharedSegment::create(n, 64, kKind) ? 0 : 1; }), 0);
  auto attached = SharedSegment::attach(n, kKind, std::chrono::milliseconds(20));
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, static_cast<int>(ShmError::kNotPublished));
  EXPECT_NE(attached.error().what().find("died while initialising"), std::string::npos)
      << attached.error().what();
}

}  // namespace
}  // namespace millrace::ipc
