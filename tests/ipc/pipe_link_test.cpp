#include "ipc/pipe_link.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;

std::uint64_t test_seed() {
  if (const char* env = std::getenv("MILLRACE_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

// Both ends of a pipe; closes whichever end no link object took over.
struct RawPipe {
  int read_fd = -1;
  int write_fd = -1;
  RawPipe() = default;
  RawPipe(const RawPipe&) = delete;
  RawPipe& operator=(const RawPipe&) = delete;
  ~RawPipe() {
    if (read_fd >= 0) ::close(read_fd);
    if (write_fd >= 0) ::close(write_fd);
  }
  int take_read() { return std::exchange(read_fd, -1); }
  int take_write() { return std::exchange(write_fd, -1); }
};

void open_pipe(RawPipe& p, std::size_t kernel_bytes) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  p.read_fd = fds[0];
  p.write_fd = fds[1];
  if (kernel_bytes != 0) {
    const Status st = set_pipe_size(p.write_fd, kernel_bytes);
    ASSERT_TRUE(st.ok()) << st.error().what();
  }
}

// Record i: a size from the sequence and bytes derived from i, so the reader can check both.
std::size_t record_size(std::uint64_t i, std::size_t max) { return 1 + (i * 7919) % max; }
std::byte record_byte(std::uint64_t i, std::size_t j) {
  return static_cast<std::byte>((i * 31 + j * 7) & 0xFF);
}
void fill_record(std::span<std::byte> out, std::uint64_t i) {
  for (std::size_t j = 0; j < out.size(); ++j) out[j] = record_byte(i, j);
}
::testing::AssertionResult record_ok(std::span<const std::byte> got, std::uint64_t i,
                                     std::size_t size) {
  if (got.size() != size) {
    return ::testing::AssertionFailure()
           << "record " << i << " has " << got.size() << " bytes, expected " << size;
  }
  for (std::size_t j = 0; j < size; ++j) {
    if (got[j] != record_byte(i, j)) {
      return ::testing::AssertionFailure() << "record " << i << " differs at byte " << j;
    }
  }
  return ::testing::AssertionSuccess();
}

struct Link {
  PipeWriter writer;
  PipeReader reader;
};

Link make_link(RawPipe& p, std::size_t capacity) {
  auto w = PipeWriter::from_fd(p.write_fd, capacity);
  EXPECT_TRUE(w.ok()) << w.error().what();
  p.take_write();
  auto r = PipeReader::from_fd(p.read_fd, capacity);
  EXPECT_TRUE(r.ok()) << r.error().what();
  p.take_read();
  return Link{std::move(w).value(), std::move(r).value()};
}

std::uint64_t bytes_in(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? static_cast<std::uint64_t>(n) : 0;
}

// Waits (bounded, yielding) until `fd` holds `bytes`: the writer side is then blocked on a full
// pipe. A handshake on the pipe's own fill level, not a sleep.
bool wait_pipe_fill(int fd, std::uint64_t bytes) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (bytes_in(fd) < bytes) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(PipeLink, RecordsArriveInOrderOnlyAfterPublish) {
  RawPipe p;
  open_pipe(p, 0);
  Link link = make_link(p, 16384);
  for (std::uint64_t i = 0; i < 10; ++i) {
    auto span = link.writer.try_reserve(record_size(i, 500));
    ASSERT_FALSE(span.empty());
    fill_record(span, i);
    link.writer.commit(span.size());
  }
  EXPECT_FALSE(link.reader.try_peek().has_value()) << "a record was visible before publish()";
  ASSERT_TRUE(link.writer.publish().ok());
  for (std::uint64_t i = 0; i < 10; ++i) {
    auto rec = link.reader.peek_for(1s);
    ASSERT_TRUE(rec.ok()) << rec.error().what();
    EXPECT_TRUE(record_ok(*rec, i, record_size(i, 500)));
  }
  EXPECT_EQ(link.reader.peeked(), 10u);
  ASSERT_TRUE(link.reader.release().ok());
  EXPECT_EQ(link.reader.peeked(), 0u);
  EXPECT_EQ(link.writer.stats().records, 10u);
  EXPECT_EQ(link.reader.stats().records, 10u);
}

TEST(PipeLink, CommitShrinksTheReservationAndANewReserveAbandonsTheOld) {
  RawPipe p;
  open_pipe(p, 0);
  Link link = make_link(p, 16384);
  ASSERT_FALSE(link.writer.try_reserve(100).empty());  // abandoned
  auto span = link.writer.try_reserve(64);
  ASSERT_FALSE(span.empty());
  fill_record(span.first(10), 3);
  link.writer.commit(10);
  ASSERT_TRUE(link.writer.publish().ok());
  auto rec = link.reader.peek_for(1s);
  ASSERT_TRUE(rec.ok()) << rec.error().what();
  EXPECT_TRUE(record_ok(*rec, 3, 10));
  EXPECT_FALSE(link.reader.try_peek().has_value());
}

TEST(PipeLink, PublishLeavesAnOpenReservationUsable) {
  RawPipe p;
  open_pipe(p, 0);
  Link link = make_link(p, 16384);
  auto first = link.writer.try_reserve(10);
  fill_record(first, 0);
  link.writer.commit(10);
  auto open = link.writer.try_reserve(20);
  ASSERT_FALSE(open.empty());
  ASSERT_TRUE(link.writer.publish().ok());
  fill_record(open, 1);
  link.writer.commit(20);
  ASSERT_TRUE(link.writer.publish().ok());
  for (std::uint64_t i = 0; i < 2; ++i) {
    auto rec = link.reader.peek_for(1s);
    ASSERT_TRUE(rec.ok()) << rec.error().what();
    EXPECT_TRUE(record_ok(*rec, i, i == 0 ? 10 : 20));
  }
}

// A one-page pipe splits every batch into partial writes and every frame across reads.
TEST(PipeLink, FramingSurvivesPartialWritesAndReadsThroughATinyPipe) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::cout << "seed=" << seed << " (set MILLRACE_SEED to repeat)\n";
  RawPipe p;
  open_pipe(p, 4096);
  ASSERT_EQ(pipe_size(p.write_fd).value(), 4096u);
  Link link = make_link(p, 65536);
  const std::size_t max = link.writer.max_record_size();
  constexpr std::uint64_t kRecords = 3000;

  std::thread producer([&] {
    std::mt19937_64 rng(seed);
    for (std::uint64_t i = 0; i < kRecords; ++i) {
      const std::size_t size = 1 + rng() % (i % 100 == 0 ? max : 3000);
      auto span = link.writer.reserve_for(size, 10s);
      ASSERT_TRUE(span.ok()) << span.error().what();
      fill_record(*span, i);
      link.writer.commit(size);
      if (rng() % 8 == 0) {
        ASSERT_TRUE(link.writer.publish().ok());
      }
    }
    ASSERT_TRUE(link.writer.publish().ok());
  });

  std::mt19937_64 rng(seed);
  std::uint64_t received = 0;
  while (received < kRecords) {
    const std::size_t size = 1 + rng() % (received % 100 == 0 ? max : 3000);
    static_cast<void>(rng() % 8);  // the producer's publish choice
    auto rec = link.reader.peek_for(10s);
    ASSERT_TRUE(rec.ok()) << rec.error().what();
    ASSERT_TRUE(record_ok(*rec, received, size));
    ++received;
    if (received % 5 == 0) {
      ASSERT_TRUE(link.reader.release().ok());
    }
  }
  producer.join();
  EXPECT_EQ(link.reader.stats().bytes, link.writer.stats().bytes);
}

TEST(PipeLink, LargestRecordRoundTripsAndALargerOneIsTooLarge) {
  RawPipe p;
  open_pipe(p, 4096);
  Link link = make_link(p, 65536);
  const std::size_t max = link.writer.max_record_size();
  EXPECT_EQ(max, 65536u - kPipeFrameHeader);
  auto too_big = link.writer.reserve_for(max + 1, 1s);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code, static_cast<int>(LinkError::kTooLarge));

  std::thread producer([&] {
    for (std::uint64_t i = 0; i < 4; ++i) {
      auto span = link.writer.reserve_for(max, 10s);
      ASSERT_TRUE(span.ok()) << span.error().what();
      fill_record(*span, i);
      link.writer.commit(max);
    }
    ASSERT_TRUE(link.writer.publish().ok());
  });
  for (std::uint64_t i = 0; i < 4; ++i) {
    auto rec = link.reader.peek_for(10s);
    ASSERT_TRUE(rec.ok()) << rec.error().what();
    ASSERT_TRUE(record_ok(*rec, i, max));
    ASSERT_TRUE(link.reader.release().ok());
  }
  producer.join();
}

TEST(PipeLink, PublishBlocksWhileThePipeIsFullThenResumes) {
  RawPipe p;
  open_pipe(p, 4096);
  const int probe_fd = ::dup(p.read_fd);  // to watch the fill level from here
  ASSERT_GE(probe_fd, 0);
  Link link = make_link(p, 32768);
  constexpr std::uint64_t kRecords = 20;  // 20 x 1000 bytes: five times the pipe
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    auto span = link.writer.try_reserve(1000);
    ASSERT_FALSE(span.empty());
    fill_record(span, i);
    link.writer.commit(1000);
  }
  std::atomic<bool> published{false};
  std::thread producer([&] {
    const Status st = link.writer.publish();
    EXPECT_TRUE(st.ok()) << st.error().what();
    published.store(true, std::memory_order_release);
  });
  ASSERT_TRUE(wait_pipe_fill(probe_fd, 4096));
  // The pipe is full and the batch is five times larger: publish() cannot have returned.
  EXPECT_FALSE(published.load(std::memory_order_acquire));
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    auto rec = link.reader.peek_for(10s);
    ASSERT_TRUE(rec.ok()) << rec.error().what();
    ASSERT_TRUE(record_ok(*rec, i, 1000));
    ASSERT_TRUE(link.reader.release().ok());
  }
  producer.join();
  EXPECT_TRUE(published.load(std::memory_order_acquire));
  EXPECT_GT(link.writer.stats().producer_blocked_ns, 0u);
  EXPECT_EQ(link.writer.stats().high_water_bytes, 4096u);
  ::close(probe_fd);
}

TEST(PipeLink, ReaderHoldingMoreThanCapacityOfPeekedRecordsIsToldToRelease) {
  RawPipe p;
  open_pipe(p, 65536);
  Link link = make_link(p, 8192);
  constexpr std::uint64_t kRecords = 40;  // 40 x 1008 bytes: five times the reader's buffer
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    auto span = link.writer.reserve_for(1000, 1s);
    ASSERT_TRUE(span.ok()) << span.error().what();
    fill_record(*span, i);
    link.writer.commit(1000);
  }
  ASSERT_TRUE(link.writer.publish().ok());
  std::uint64_t received = 0;
  bool told = false;
  while (received < kRecords) {
    auto rec = link.reader.peek_for(1s);
    if (!rec) {
      ASSERT_EQ(rec.error().code, static_cast<int>(LinkError::kTimeout)) << rec.error().what();
      EXPECT_NE(rec.error().what().find("release()"), std::string::npos) << rec.error().what();
      EXPECT_GE(link.reader.peeked() * 1008, 8192u);
      told = true;
      ASSERT_TRUE(link.reader.release().ok());
      continue;
    }
    ASSERT_TRUE(record_ok(*rec, received, 1000));
    ++received;
  }
  EXPECT_TRUE(told);
}

TEST(PipeLink, ReserveForTimesOutWhileTheReaderDoesNotRead) {
  RawPipe p;
  open_pipe(p, 4096);
  Link link = make_link(p, 8192);
  Result<std::span<std::byte>> span = std::span<std::byte>{};
  int reserved = 0;
  for (;;) {
    span = link.writer.reserve_for(1000, 20ms);
    if (!span.ok()) break;
    link.writer.commit(1000);
    ++reserved;
    ASSERT_LT(reserved, 100) << "the writer never felt backpressure";
  }
  EXPECT_EQ(span.error().code, static_cast<int>(LinkError::kTimeout));
  EXPECT_GE(reserved, 4);
}

// Frame bytes as a writer produces them, read raw from a pipe.
std::vector<std::byte> frames_of(std::size_t count, std::size_t size) {
  RawPipe p;
  open_pipe(p, 65536);
  auto w = PipeWriter::from_fd(p.take_write(), 16384);
  EXPECT_TRUE(w.ok());
  for (std::uint64_t i = 0; i < count; ++i) {
    auto span = w->try_reserve(size);
    fill_record(span, i);
    w->commit(size);
  }
  EXPECT_TRUE(w->publish().ok());
  std::vector<std::byte> bytes(65536);
  const ssize_t n = ::read(p.read_fd, bytes.data(), bytes.size());
  bytes.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return bytes;
}

// The writer can die after any byte: the reader returns the complete records before the cut,
// then kPeerGone, and never the torn one.
TEST(PipeLink, TornTrailingFrameNeverSurfacesAtAnyCut) {
  constexpr std::size_t kSize = 21;  // frames of 8 + 24 bytes
  const std::vector<std::byte> stream = frames_of(3, kSize);
  ASSERT_EQ(stream.size(), 3 * (kPipeFrameHeader + 24));
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    RawPipe p;
    open_pipe(p, 0);
    ASSERT_EQ(::write(p.write_fd, stream.data(), cut), static_cast<ssize_t>(cut));
    ::close(p.take_write());
    auto reader = PipeReader::from_fd(p.take_read(), 16384);
    ASSERT_TRUE(reader.ok());
    const std::size_t complete = cut / (kPipeFrameHeader + 24);
    for (std::uint64_t i = 0; i < complete; ++i) {
      auto rec = reader->peek_for(1s);
      ASSERT_TRUE(rec.ok()) << "cut " << cut << ": " << rec.error().what();
      ASSERT_TRUE(record_ok(*rec, i, kSize));
    }
    auto end = reader->peek_for(1s);
    ASSERT_FALSE(end.ok()) << "cut " << cut << " surfaced a torn record";
    EXPECT_EQ(end.error().code, static_cast<int>(LinkError::kPeerGone)) << end.error().what();
    EXPECT_FALSE(reader->peer_alive());
  }
}

TEST(PipeLink, WriterDeathGivesPeerGoneAfterEveryCompleteRecord) {
  RawPipe p;
  open_pipe(p, 4096);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(p.take_read());
    auto w = PipeWriter::from_fd(p.take_write(), 32768);
    if (!w) ::_exit(2);
    for (std::uint64_t i = 0; i < 20; ++i) {  // 20 x 1008 bytes: the pipe takes four and a bit
      auto span = w->try_reserve(1000);
      fill_record(span, i);
      w->commit(1000);
    }
    static_cast<void>(w->publish());  // blocks on the full pipe until killed
    ::_exit(3);
  }
  ::close(p.take_write());
  ASSERT_TRUE(wait_pipe_fill(p.read_fd, 4096));
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));

  auto reader = PipeReader::from_fd(p.take_read(), 32768);
  ASSERT_TRUE(reader.ok());
  std::uint64_t received = 0;
  for (;;) {
    auto rec = reader->peek_for(1s);
    if (!rec) {
      EXPECT_EQ(rec.error().code, static_cast<int>(LinkError::kPeerGone)) << rec.error().what();
      EXPECT_NE(rec.error().what().find("incomplete record were discarded"), std::string::npos)
          << rec.error().what();
      break;
    }
    ASSERT_TRUE(record_ok(*rec, received, 1000));
    ++received;
  }
  EXPECT_EQ(received, 4096u / 1008u);
}

TEST(PipeLink, ReaderDeathGivesWriterPeerGoneNotSigpipe) {
  RawPipe p;
  open_pipe(p, 4096);
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(p.take_write());
    char c = 0;
    // Exits as soon as the parent says so, taking the only read end with it.
    ::close(ready[1]);
    const ssize_t got = ::read(ready[0], &c, 1);
    ::_exit(got == 1 ? 0 : 1);
  }
  ::close(p.take_read());
  ::close(ready[0]);
  auto w = PipeWriter::from_fd(p.take_write(), 8192);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->peer_alive());
  ASSERT_EQ(::write(ready[1], "x", 1), 1);
  ::close(ready[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_FALSE(w->peer_alive());
  auto span = w->try_reserve(100);
  ASSERT_FALSE(span.empty());
  w->commit(100);
  const Status st = w->publish();  // would raise SIGPIPE and kill this process if not ignored
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, static_cast<int>(LinkError::kPeerGone));
  auto again = w->reserve_for(100, 1s);
  ASSERT_TRUE(again.ok());  // buffer space remains; the next publish fails again
  w->commit(100);
  EXPECT_EQ(w->publish().error().code, static_cast<int>(LinkError::kPeerGone));
}

TEST(PipeLink, OversizePipeSizeErrorNamesTheLimitAndTheFix) {
  std::ifstream in("/proc/sys/fs/pipe-max-size");
  std::size_t limit = 0;
  ASSERT_TRUE(in >> limit);
  // Root may exceed the limit (CAP_SYS_RESOURCE): ask from an unprivileged child.
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(report[0]);
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
    int fds[2];
    if (::pipe(fds) != 0) ::_exit(3);
    const Status st = set_pipe_size(fds[1], limit * 4);
    const std::string text = st.ok() ? std::string("OK") : st.error().what();
    if (::write(report[1], text.data(), text.size()) < 0) ::_exit(4);
    ::_exit(st.ok() ? 5 : 0);
  }
  ::close(report[1]);
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(report[0], buf, sizeof buf)) > 0;) message.append(buf, n);
  ::close(report[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << message;
  EXPECT_NE(message.find("/proc/sys/fs/pipe-max-size"), std::string::npos) << message;
  EXPECT_NE(message.find("at most " + std::to_string(limit)), std::string::npos) << message;
}

TEST(PipeLink, GarbledFrameIsCorruptAndNeverReturned) {
  std::vector<std::byte> stream = frames_of(2, 21);
  stream[kPipeFrameHeader + 32 + 3] ^= std::byte{0x40};  // a payload byte of the second frame
  RawPipe p;
  open_pipe(p, 0);
  ASSERT_EQ(::write(p.write_fd, stream.data(), stream.size()),
            static_cast<ssize_t>(stream.size()));
  auto reader = PipeReader::from_fd(p.take_read(), 16384);
  ASSERT_TRUE(reader.ok());
  auto first = reader->peek_for(1s);
  ASSERT_TRUE(first.ok());
  auto second = reader->peek_for(1s);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, static_cast<int>(LinkError::kCorrupt));
  EXPECT_NE(second.error().what().find("checksum"), std::string::npos) << second.error().what();
  EXPECT_FALSE(reader->try_peek().has_value());
}

TEST(PipeLink, ImpossibleLengthIsCorrupt) {
  RawPipe p;
  open_pipe(p, 0);
  const std::byte header[8] = {std::byte{0xFF}, std::byte{0xFF}, std::byte{0xFF}, std::byte{0x7F}};
  ASSERT_EQ(::write(p.write_fd, header, sizeof header), 8);
  auto reader = PipeReader::from_fd(p.take_read(), 16384);
  ASSERT_TRUE(reader.ok());
  auto rec = reader->peek_for(1s);
  ASSERT_FALSE(rec.ok());
  EXPECT_EQ(rec.error().code, static_cast<int>(LinkError::kCorrupt));
  EXPECT_NE(rec.error().what().find("records on this link are 1.."), std::string::npos)
      << rec.error().what();
}

TEST(PipeLink, WaitAnyWakesForThePipeWithData) {
  RawPipe a;
  RawPipe b;
  open_pipe(a, 0);
  open_pipe(b, 0);
  Link la = make_link(a, 8192);
  Link lb = make_link(b, 8192);
  LinkReader* readers[] = {&la.reader, &lb.reader};
  auto none = wait_any(readers, 10ms);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, static_cast<int>(LinkError::kTimeout));

  std::atomic<bool> waiting{false};
  std::thread producer([&] {
    while (!waiting.load(std::memory_order_acquire)) std::this_thread::yield();
    auto span = lb.writer.try_reserve(10);
    fill_record(span, 1);
    lb.writer.commit(10);
    EXPECT_TRUE(lb.writer.publish().ok());
  });
  waiting.store(true, std::memory_order_release);
  auto ready = wait_any(readers, 10s);
  producer.join();
  ASSERT_TRUE(ready.ok()) << ready.error().what();
  EXPECT_EQ(ready.value(), 1u);
  auto rec = lb.reader.try_peek();
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE(record_ok(*rec, 1, 10));
}

TEST(PipeLink, MarksLiveInTheWriterOnly) {
  RawPipe p;
  open_pipe(p, 0);
  Link link = make_link(p, 8192);
  link.writer.marks()[3].store(42, std::memory_order_relaxed);
  PipeWriter moved = std::move(link.writer);
  EXPECT_EQ(moved.marks()[3].load(std::memory_order_relaxed), 42u);
  EXPECT_EQ(link.reader.marks()[3].load(std::memory_order_relaxed), 0u);
}

TEST(PipeLink, FromFdRejectsTheWrongEndAndNonPipes) {
  RawPipe p;
  open_pipe(p, 0);
  auto w = PipeWriter::from_fd(p.read_fd);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().what().find("not the write end"), std::string::npos) << w.error().what();
  auto r = PipeReader::from_fd(p.write_fd);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what().find("not the read end"), std::string::npos) << r.error().what();
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  auto n = PipeReader::from_fd(null_fd);
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.error().what().find("is not a pipe"), std::string::npos) << n.error().what();
  ::close(null_fd);
}

TEST(PipeLink, DefaultCapacityIsThePipeSize) {
  RawPipe p;
  open_pipe(p, 131072);
  Link link = make_link(p, 0);
  EXPECT_EQ(link.writer.max_record_size(), 131072u - kPipeFrameHeader);
  EXPECT_EQ(link.writer.stats().capacity_bytes, 131072u);
}

}  // namespace
}  // namespace millrace::ipc
