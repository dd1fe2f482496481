// ipc_bench: how fast records cross from one process to another through the shared-memory ring,
// the pipe link and Boost.Interprocess message_queue, on the machine it runs on.
//
//   ipc_bench [--seconds S] [--quick] [--runs K] [--json] [--ring-bytes N] [--pipe-bytes N]
//             [--rate R] [--idle-seconds S] [--batch N] [--read-all]
//             [--cases throughput|latency|idle ...] [--transport ring|pipe|message_queue ...]
//             [--size BYTES ...]
//
// Every case forks: the child is the producer, the parent the consumer. The consumer checks
// every record (its sequence number, and check words written at its middle and its end) and
// the final count the producer reports, so only records that arrived intact are counted.
//  - throughput: 16 B, 100 B, 1 KiB and 64 KiB records as fast as they go for S seconds. The
//    producer writes every byte of each record (sequence number, a filler copied from memory,
//    the check words) and publishes every 512 records (the stage runtime's default batch) or
//    every quarter of the link's capacity, whichever comes first; the consumer peeks a batch,
//    checks it and releases it. message_queue sends and receives one message at a time.
//  - latency: 100 B records at R records/s (default 10000), each published alone; the producer
//    writes CLOCK_MONOTONIC into each record just before publishing it, the consumer reads the
//    clock when it peeks it. p50 and p99 of the difference.
//  - idle: the link stays quiet for 2 s while both processes wait, once with the consumer
//    waiting for data (empty link; the producer waits for its own input) and once with the
//    producer waiting for space (full link; the consumer waits for its own input). The CPU
//    both processes used (getrusage), in % of one core.
// Each case runs K times (--runs); the table and the JSON show the median of each figure.
//
// Throughput rows also say where each process's time went, because on a shared machine other
// processes take a part of it: on a CPU (getrusage), waiting on the link (the link's own
// blocked/waiting counters; message_queue keeps none), and runnable but waiting for a CPU
// (/proc/self/schedstat). CPU time per record is the figure least disturbed by other load.
//
// Output: a table, or with --json one JSON object per line:
//   {"kind":"throughput","transport":"ring"|"pipe"|"message_queue","record_bytes":N,
//    "records_per_s":X,"bytes_per_s":Y,...}
//   throughput rows add "records", "seconds" and, for each side ("producer_"/"consumer_"),
//   "cpu_percent", "link_wait_percent", "runqueue_percent" and "cpu_ns_per_record"; latency
//   rows add "p50_ns", "p99_ns", "samples"; idle rows "waiting", "seconds", "cpu_percent";
//   one "kind":"ratio" row compares the transports at 100 B.
// Exit status: 0 when every case delivered every record intact, 1 otherwise, 2 on bad usage.
//
// Every shared-memory segment and message queue has the pid in its name
// ("/millrace-bench-<pid>-...") and is removed when its case ends, when a case fails and on
// SIGINT, SIGTERM or SIGHUP; a start-up sweep removes those of bench runs that were killed.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <nlohmann/json.hpp>

#include "ipc/link.hpp"
#include "ipc/pipe_link.hpp"
#include "ipc/posix_call.hpp"
#include "ipc/result.hpp"
#include "ipc/ring.hpp"
#include "ipc/shm_segment.hpp"

namespace {

namespace bip = boost::interprocess;
namespace ipc = millrace::ipc;
using millrace::Error;
using millrace::ok_status;
using millrace::Result;
using millrace::Status;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kRecordSizes[] = {16, 100, 1024, 65536};
constexpr std::size_t kLatencyRecordBytes = 100;
constexpr std::size_t kRatioRecordBytes = 100;
// The stage runtime's default batch: records per publish / per release.
constexpr std::size_t kMaxBatchRecords = 512;
// A side that sees no progress for this long fails its case (a healthy case never waits
// more than a few milliseconds, even on a loaded machine).
constexpr auto kStall = std::chrono::seconds(10);
constexpr std::uint64_t kEndSeq = ~std::uint64_t{0};
constexpr std::string_view kNamePrefix = "millrace-bench-";

Error bench_error(std::string message, int err = 0) {
  return Error{"bench", 1, std::move(message), err};
}

std::uint64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// User plus system CPU time of this process.
std::uint64_t cpu_ns() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& tv) {
    return static_cast<std::uint64_t>(tv.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(tv.tv_usec) * 1000u;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

// Time this process was runnable but waited for a CPU (the second field of
// /proc/self/schedstat): on a shared machine, the time other processes took from it.
std::uint64_t runqueue_ns() {
  std::FILE* f = std::fopen("/proc/self/schedstat", "r");
  if (f == nullptr) return 0;
  unsigned long long run = 0;
  unsigned long long wait = 0;
  const int n = std::fscanf(f, "%llu %llu", &run, &wait);
  std::fclose(f);
  return n == 2 ? wait : 0;
}

// What one process did during a measured interval.
struct Usage {
  std::uint64_t wall_ns = 0;
  std::uint64_t cpu_ns = 0;
  std::uint64_t runqueue_ns = 0;
  std::uint64_t link_wait_ns = 0;  // waiting on the link: for space (producer), data (consumer)
};

// Starts measuring at construction; finish() gives the Usage since then.
class UsageMeter {
 public:
  explicit UsageMeter(std::uint64_t link_wait_ns = 0)
      : wall_(mono_ns()), cpu_(cpu_ns()), runq_(runqueue_ns()), link_wait_(link_wait_ns) {}
  [[nodiscard]] Usage finish(std::uint64_t link_wait_ns = 0) const {
    Usage u;
    u.wall_ns = mono_ns() - wall_;
    u.cpu_ns = cpu_ns() - cpu_;
    u.runqueue_ns = runqueue_ns() - runq_;
    u.link_wait_ns = link_wait_ns - link_wait_;
    return u;
  }

 private:
  std::uint64_t wall_;
  std::uint64_t cpu_;
  std::uint64_t runq_;
  std::uint64_t link_wait_;
};

// --- Shared-memory names: removed even when a case fails or the run is interrupted --------------

constexpr std::size_t kMaxNames = 4;
constexpr std::size_t kMaxPath = 128;
// "/dev/shm/<name>" of every object this process created and has not removed yet. Plain
// arrays and sig_atomic_t flags, because the signal handler reads them.
char g_shm_paths[kMaxNames][kMaxPath];
volatile std::sig_atomic_t g_shm_used[kMaxNames];
pid_t g_owner_pid = 0;

extern "C" void remove_names_and_die(int sig) {
  if (::getpid() == g_owner_pid) {  // a forked producer inherits the handler: not its objects
    for (std::size_t i = 0; i < kMaxNames; ++i) {
      if (g_shm_used[i] != 0) ::unlink(g_shm_paths[i]);  // async-signal-safe, unlike shm_unlink
    }
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_cleanup_handlers() {
  g_owner_pid = ::getpid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, remove_names_and_die);
}

// Owns the name of one shared-memory object (a ring segment or a message queue): the
// destructor removes the object, and until then the signal handler knows it.
class ShmNameGuard {
 public:
  // `name` as shm_open takes it, with or without the leading '/'.
  explicit ShmNameGuard(std::string name) : name_(std::move(name)) {
    if (name_.empty() || name_[0] != '/') name_.insert(0, "/");
    const std::string path = "/dev/shm" + name_;
    assert(path.size() < kMaxPath && "ShmNameGuard: name too long");
    for (std::size_t i = 0; i < kMaxNames; ++i) {
      if (g_shm_used[i] == 0) {
        std::memcpy(g_shm_paths[i], path.c_str(), path.size() + 1);
        g_shm_used[i] = 1;
        slot_ = static_cast<int>(i);
        return;
      }
    }
    assert(false && "ShmNameGuard: more objects alive than kMaxNames");
  }
  ShmNameGuard(ShmNameGuard&& other) noexcept
      : name_(std::move(other.name_)), slot_(std::exchange(other.slot_, -1)) {}
  ShmNameGuard& operator=(ShmNameGuard&&) = delete;
  ShmNameGuard(const ShmNameGuard&) = delete;
  ShmNameGuard& operator=(const ShmNameGuard&) = delete;
  ~ShmNameGuard() {
    if (slot_ < 0) return;
    ::shm_unlink(name_.c_str());  // ENOENT: never created, or removed already
    g_shm_used[slot_] = 0;
  }

  [[nodiscard]] const std::string& name() const { return name_; }  // with the leading '/'

 private:
  std::string name_;
  int slot_ = -1;
};

// Removes /dev/shm/millrace-bench-<pid>-* objects whose process is gone (a bench run killed
// with SIGKILL cannot clean up after itself).
void remove_leftovers_of_dead_runs() {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name(entry->d_name);
    if (!name.starts_with(kNamePrefix)) continue;
    const std::string_view rest = name.substr(kNamePrefix.size());
    pid_t pid = 0;
    const char* end = nullptr;
    {
      const auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
      if (ec != std::errc() || pid <= 0) continue;
      end = p;
    }
    if (end == rest.data() + rest.size() || *end != '-') continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    ::shm_unlink(("/" + std::string(name)).c_str());
  }
  ::closedir(dir);
}

// "<what>-<record bytes>-<n>": unique within this process, which puts its pid in front.
std::string unique_suffix(std::string_view what, std::size_t record_bytes) {
  static unsigned counter = 0;
  return std::string(what) + "-" + std::to_string(record_bytes) + "-" + std::to_string(++counter);
}

std::string run_id() { return "bench-" + std::to_string(::getpid()); }

// --- Records ------------------------------------------------------------------------------------
//
// A record of n >= 16 bytes: [0, 8) its sequence number, then the filler up to n - 8, then
// mix(seq) in the last 8 bytes; records of 32 bytes and more also carry mix(seq + 1) at
// mid_offset(n). Latency records hold the producer's clock in [8, 16). The end record has
// seq kEndSeq and the number of records sent in [8, 16).

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void put_u64(std::byte* p, std::uint64_t v) { std::memcpy(p, &v, sizeof v); }
std::uint64_t get_u64(const std::byte* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

constexpr std::size_t mid_offset(std::size_t size) {
  return size >= 32 ? (size / 2) & ~std::size_t{7} : 0;
}

// The bytes every record copies its filler from: the producer writes every byte of a record,
// as a real one would, not only the checked words.
std::vector<std::byte> make_filler(std::size_t size) {
  std::vector<std::byte> filler(size);
  for (std::size_t i = 0; i < size; ++i) filler[i] = static_cast<std::byte>((i * 131 + 7) & 0xFF);
  return filler;
}

inline void write_record(std::byte* p, std::size_t size, std::uint64_t seq,
                         const std::byte* filler) {
  assert(size >= 16 && "records hold at least a seq and a check word");
  put_u64(p, seq);
  std::memcpy(p + 8, filler, size > 16 ? size - 16 : 0);
  if (const std::size_t mid = mid_offset(size); mid != 0) put_u64(p + mid, mix(seq + 1));
  put_u64(p + size - 8, mix(seq));
}

// Checks the records of one case as they arrive, in order.
class Verifier {
 public:
  enum class Verdict { kOk, kEnd, kBad };

  Verifier(std::size_t size, bool read_all)
      : size_(size), mid_(mid_offset(size)), read_all_(read_all) {}

  inline Verdict check(std::span<const std::byte> record) {
    if (record.size() != size_) {
      return bad("record " + std::to_string(next_) + " has " + std::to_string(record.size()) +
                 " bytes, expected " + std::to_string(size_));
    }
    const std::byte* p = record.data();
    const std::uint64_t seq = get_u64(p);
    if (seq != next_) {
      if (seq == kEndSeq) {
        const std::uint64_t sent = get_u64(p + 8);
        if (sent != next_) {
          return bad("the producer sent " + std::to_string(sent) + " records, " +
                     std::to_string(next_) + " arrived");
        }
        return Verdict::kEnd;
      }
      return bad("record " + std::to_string(next_) + " carries seq " + std::to_string(seq) +
                 " (lost, repeated or reordered records)");
    }
    if (get_u64(p + size_ - 8) != mix(seq) || (mid_ != 0 && get_u64(p + mid_) != mix(seq + 1))) {
      return bad("record " + std::to_string(seq) + " fails its checksum (torn or overwritten)");
    }
    if (read_all_) {
      std::uint64_t sum = 0;
      for (std::size_t off = 0; off + 8 <= size_; off += 8) sum += get_u64(p + off);
      sink_ += sum;
    }
    ++next_;
    return Verdict::kOk;
  }

  [[nodiscard]] std::uint64_t received() const { return next_; }
  [[nodiscard]] const std::string& problem() const { return problem_; }
  [[nodiscard]] std::uint64_t sink() const { return sink_; }

 private:
  Verdict bad(std::string what) {
    problem_ = std::move(what);
    return Verdict::kBad;
  }

  std::size_t size_;
  std::size_t mid_;
  bool read_all_;
  std::uint64_t next_ = 0;
  std::uint64_t sink_ = 0;
  std::string problem_;
};

// --- The producer process -----------------------------------------------------------------------

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Result<std::pair<UniqueFd, UniqueFd>> make_pipe() {
  int fds[2];
  auto rc = millrace::posix_call("pipe2", "O_CLOEXEC", [&] { return ::pipe2(fds, O_CLOEXEC); });
  if (!rc) return rc.error();
  return std::pair<UniqueFd, UniqueFd>(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

// What the producer tells the consumer. Fixed size and below PIPE_BUF, so that each write()
// is atomic and each read() gets a whole message.
struct ChildMessage {
  enum Kind : std::uint32_t { kReady = 1, kDone = 2, kFailed = 3 };
  Kind kind = kReady;
  std::uint32_t reserved = 0;
  std::uint64_t sent = 0;  // kDone: records sent
  Usage usage;             // kDone: the producer's usage while measured
  char text[448] = {};     // kFailed: why
};
static_assert(sizeof(ChildMessage) <= PIPE_BUF, "child messages must be written atomically");

// Commands from the consumer to the producer, one byte each.
constexpr char kGo = 'g';
constexpr char kStop = 's';

// The producer's ends of its two pipes to the consumer.
class ChildSide {
 public:
  ChildSide(int report_fd, int control_fd) : report_fd_(report_fd), control_fd_(control_fd) {}

  Status ready() { return send(ChildMessage{}); }
  Status done(std::uint64_t sent, const Usage& usage) {
    ChildMessage m;
    m.kind = ChildMessage::kDone;
    m.sent = sent;
    m.usage = usage;
    return send(m);
  }
  void fail(std::string_view why) {
    ChildMessage m;
    m.kind = ChildMessage::kFailed;
    std::memcpy(m.text, why.data(), std::min(why.size(), sizeof m.text - 1));
    static_cast<void>(send(m));
  }
  // Blocks until the consumer sends `command` (the producer's "input" while it idles).
  Status await(char command) {
    char c = 0;
    for (;;) {
      const ssize_t n = ::read(control_fd_, &c, 1);
      if (n == 1 && c == command) return ok_status();
      if (n == 1) return bench_error(std::string("producer: unexpected command '") + c + "'");
      if (n < 0 && errno == EINTR) continue;
      return bench_error("producer: the consumer process went away");
    }
  }

 private:
  Status send(const ChildMessage& m) {
    for (;;) {
      const ssize_t n = ::write(report_fd_, &m, sizeof m);
      if (n == static_cast<ssize_t>(sizeof m)) return ok_status();
      if (n < 0 && errno == EINTR) continue;
      return bench_error("producer: cannot report to the consumer: " + millrace::errno_text(errno));
    }
  }

  int report_fd_;
  int control_fd_;
};

// The producer process, seen from the consumer. The destructor kills and reaps a producer
// that is still running, so that no child outlives a failed case.
class Child {
 public:
  // Forks; the child runs body(ChildSide&) -> Status and exits (0 when it succeeded). The
  // child dies with its parent (PR_SET_PDEATHSIG).
  template <typename Body>
  static Result<Child> spawn(Body&& body) {
    auto report = make_pipe();
    if (!report) return report.error();
    auto control = make_pipe();
    if (!control) return control.error();
    const pid_t parent = ::getpid();
    std::fflush(nullptr);  // or output buffered before the fork could be written twice
    const pid_t pid = ::fork();
    if (pid < 0) return bench_error("fork: " + millrace::errno_text(errno), errno);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
      report->first.reset();
      control->second.reset();
      ChildSide side(report->second.get(), control->first.get());
      int code = 1;
      try {
        Status st = body(side);
        if (st) {
          code = 0;
        } else {
          side.fail(st.error().message);
        }
      } catch (const std::exception& e) {
        side.fail(std::string("producer: ") + e.what());
      }
      ::_exit(code);  // no destructors, no atexit: the parent's objects are not ours
    }
    return Child(pid, std::move(report->first), std::move(control->second));
  }

  Child(Child&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        report_(std::move(other.report_)),
        control_(std::move(other.control_)) {}
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  // The next message, waiting up to `timeout`; kFailed comes back as its Error.
  Result<ChildMessage> receive(std::chrono::milliseconds timeout) {
    pollfd pfd{report_.get(), POLLIN, 0};
    const int rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    if (rc == 0) {
      return bench_error("the producer process sent nothing for " +
                         std::to_string(timeout.count()) + " ms");
    }
    ChildMessage m;
    ssize_t n = 0;
    do {
      n = ::read(report_.get(), &m, sizeof m);
    } while (n < 0 && errno == EINTR);
    if (n == 0) return bench_error("the producer process exited without a report" + exit_text());
    if (n != static_cast<ssize_t>(sizeof m)) {
      return bench_error("a short message from the producer process (" + std::to_string(n) +
                         " bytes)");
    }
    if (m.kind == ChildMessage::kFailed) {
      m.text[sizeof m.text - 1] = '\0';
      return bench_error(m.text);
    }
    return m;
  }

  // A failure the producer reported, if it reported one (after a consumer error, to name the
  // real cause).
  std::optional<Error> reported_failure() {
    pollfd pfd{report_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 200) <= 0) return std::nullopt;
    ChildMessage m;
    if (::read(report_.get(), &m, sizeof m) != static_cast<ssize_t>(sizeof m) ||
        m.kind != ChildMessage::kFailed) {
      return std::nullopt;
    }
    m.text[sizeof m.text - 1] = '\0';
    return bench_error(m.text);
  }

  Status send(char command) {
    for (;;) {
      if (::write(control_.get(), &command, 1) == 1) return ok_status();
      if (errno == EINTR) continue;
      return bench_error("cannot reach the producer process: " + millrace::errno_text(errno));
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }

  // Waits for the producer to exit; an error unless it exited with status 0.
  Status reap() {
    int status = 0;
    pid_t rc = 0;
    do {
      rc = ::waitpid(pid_, &status, 0);
    } while (rc < 0 && errno == EINTR);
    pid_ = -1;
    if (rc < 0) return bench_error("waitpid: " + millrace::errno_text(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok_status();
    return bench_error("the producer process " + describe(status));
  }

 private:
  Child(pid_t pid, UniqueFd report, UniqueFd control)
      : pid_(pid), report_(std::move(report)), control_(std::move(control)) {}

  static std::string describe(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("was killed by ") + ::strsignal(WTERMSIG(status));
    return "ended with wait status " + std::to_string(status);
  }
  std::string exit_text() {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return " (it " + describe(status) + ")";
    }
    return "";
  }

  pid_t pid_ = -1;
  UniqueFd report_;   // read end
  UniqueFd control_;  // write end
};

// --- Options ------------------------------------------------------------------------------------

struct Options {
  double seconds = 1.0;       // per throughput and latency case
  double idle_seconds = 2.0;  // per idle case
  int runs = 1;
  bool json = false;
  bool quick = false;
  bool read_all = false;  // the consumer also reads every byte of every record
  std::size_t ring_bytes = std::size_t{4} << 20;  // the default link capacity (configs/orders.ini)
  std::size_t pipe_bytes = std::size_t{1} << 20;  // the default unprivileged pipe-max-size
  std::size_t mq_max_depth = 1024;
  std::size_t batch = kMaxBatchRecords;  // records per publish / release, at most
  double rate = 10000;                   // latency: records per second
  // Which cases run (all by default): kinds, transports, throughput record sizes.
  std::vector<std::string> kinds = {"throughput", "latency", "idle"};
  std::vector<std::string> transports = {"ring", "pipe", "message_queue"};
  std::vector<std::size_t> sizes = {std::begin(kRecordSizes), std::end(kRecordSizes)};

  [[nodiscard]] bool wants(std::string_view kind) const {
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  }
  [[nodiscard]] bool wants_transport(std::string_view transport) const {
    return std::find(transports.begin(), transports.end(), transport) != transports.end();
  }
};

// Records per publish (and per release): the batch option, at most a quarter of the link.
std::size_t batch_records(const Options& o, std::size_t link_bytes, std::size_t record_bytes) {
  const std::size_t frame = record_bytes + 16;
  return std::clamp<std::size_t>(link_bytes / 4 / frame, 1, o.batch);
}

// --- Transports ---------------------------------------------------------------------------------
//
// Each kit is made in the consumer before the fork; with_writer() runs in the producer (child),
// with_reader(producer pid, ...) in the consumer (parent). The writer and reader types offer the
// LinkWriter / LinkReader calls the loops below use, through their concrete types (no virtual
// call).

class RingKit {
 public:
  static constexpr std::string_view kTransport = "ring";

  static Result<RingKit> create(const Options& o, std::size_t record_bytes) {
    ShmNameGuard guard(ipc::segment_name(run_id(), unique_suffix("ring", record_bytes)));
    auto segment = ipc::create_ring_segment(guard.name(), o.ring_bytes);
    if (!segment) return segment.error();
    return RingKit(std::move(guard), std::move(segment).value(), o.ring_bytes);
  }

  [[nodiscard]] std::size_t link_bytes() const { return capacity_; }

  template <typename Body>
  Status with_writer(Body&& body) {
    auto segment = ipc::SharedSegment::attach(guard_.name(), ipc::kRingSegmentKind);
    if (!segment) return segment.error();
    auto writer = ipc::RingProducer::attach(*segment);
    if (!writer) return writer.error();
    return body(*writer);
  }

  template <typename Body>
  Status with_reader(pid_t /*producer: the ring watches it itself*/, Body&& body) {
    auto reader = ipc::RingConsumer::attach(segment_);
    if (!reader) return reader.error();
    return body(*reader);
  }

 private:
  RingKit(ShmNameGuard guard, ipc::SharedSegment segment, std::size_t capacity)
      : guard_(std::move(guard)), segment_(std::move(segment)), capacity_(capacity) {}

  ShmNameGuard guard_;  // declared first: removes the name after the mapping is gone
  ipc::SharedSegment segment_;
  std::size_t capacity_;
};

class PipeKit {
 public:
  static constexpr std::string_view kTransport = "pipe";

  static Result<PipeKit> create(const Options& o, std::size_t /*record_bytes*/) {
    auto ends = make_pipe();
    if (!ends) return ends.error();
    if (auto st = ipc::set_pipe_size(ends->first.get(), o.pipe_bytes); !st) return st.error();
    auto size = ipc::pipe_size(ends->first.get());
    if (!size) return size.error();
    return PipeKit(std::move(ends->first), std::move(ends->second), *size);
  }

  [[nodiscard]] std::size_t link_bytes() const { return size_; }

  template <typename Body>
  Status with_writer(Body&& body) {
    read_end_.reset();  // so that the writer sees EPIPE if the consumer dies
    auto writer = ipc::PipeWriter::from_fd(write_end_.release());
    if (!writer) return writer.error();
    return body(*writer);
  }

  template <typename Body>
  Status with_reader(pid_t /*producer: its death closes the pipe*/, Body&& body) {
    write_end_.reset();  // so that the reader sees end of file if the producer dies
    auto reader = ipc::PipeReader::from_fd(read_end_.release());
    if (!reader) return reader.error();
    return body(*reader);
  }

 private:
  PipeKit(UniqueFd read_end, UniqueFd write_end, std::size_t size)
      : read_end_(std::move(read_end)), write_end_(std::move(write_end)), size_(size) {}

  UniqueFd read_end_;
  UniqueFd write_end_;
  std::size_t size_;
};

// message_queue behind the reserve/commit and peek/release calls: the record is written into
// a local buffer and commit() sends it (blocking while the queue is full); try_peek() receives
// into a local buffer, which stays valid until the next peek.
class MqWriter {
 public:
  MqWriter(bip::message_queue& queue, std::size_t max) : queue_(queue), buffer_(max) {}
  std::span<std::byte> try_reserve(std::size_t size) { return {buffer_.data(), size}; }
  Result<std::span<std::byte>> reserve_for(std::size_t size, std::chrono::nanoseconds) {
    return try_reserve(size);
  }
  void commit(std::size_t used) { queue_.send(buffer_.data(), used, 0); }
  Status publish() { return ok_status(); }
  [[nodiscard]] ipc::LinkStats stats() const { return {}; }  // the queue keeps none

  // For the idle case: fills the queue, then waits for space until `timeout` passes.
  Status fill_then_wait(std::size_t size, std::chrono::nanoseconds timeout, Usage* usage) {
    while (queue_.try_send(buffer_.data(), size, 0)) {
    }
    const UsageMeter meter;
    const bool sent = queue_.timed_send(
        buffer_.data(), size, 0,
        std::chrono::system_clock::now() +
            std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout));
    *usage = meter.finish();
    if (sent) return bench_error("message_queue: a full queue took a message while idle");
    return ok_status();
  }

 private:
  bip::message_queue& queue_;
  std::vector<std::byte> buffer_;
};

class MqReader {
 public:
  // `producer`: the process whose death ends a wait (the queue itself cannot tell).
  MqReader(bip::message_queue& queue, std::size_t max, pid_t producer)
      : queue_(queue), buffer_(max), producer_(producer) {}
  std::optional<std::span<const std::byte>> try_peek() {
    bip::message_queue::size_type got = 0;
    unsigned priority = 0;
    if (!queue_.try_receive(buffer_.data(), buffer_.size(), got, priority)) return std::nullopt;
    return std::span<const std::byte>(buffer_.data(), got);
  }
  Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds timeout) {
    bip::message_queue::size_type got = 0;
    unsigned priority = 0;
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(timeout);
    for (;;) {
      const auto slice = std::min(deadline, std::chrono::system_clock::now() + kLivenessEvery);
      if (queue_.timed_receive(buffer_.data(), buffer_.size(), got, priority, slice)) {
        return std::span<const std::byte>(buffer_.data(), got);
      }
      if (std::chrono::system_clock::now() >= deadline) {
        return Error{"link", static_cast<int>(ipc::LinkError::kTimeout),
                     "message_queue: no message before the timeout", 0};
      }
      if (!alive(producer_)) {
        return Error{
            "link", static_cast<int>(ipc::LinkError::kPeerGone),
            "message_queue: the producer process (pid " + std::to_string(producer_) + ") is gone",
            0};
      }
    }
  }
  Status release() { return ok_status(); }
  [[nodiscard]] ipc::LinkStats stats() const { return {}; }

 private:
  static constexpr auto kLivenessEvery = std::chrono::milliseconds(100);

  // The producer is our child: waitid without reaping sees it exit at the cost of one
  // system call (reading /proc, as a check on a stranger must, would cost more than the
  // queue's own idle wait).
  static bool alive(pid_t child) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return false;
    }
    return info.si_pid == 0;
  }

  bip::message_queue& queue_;
  std::vector<std::byte> buffer_;
  pid_t producer_;
};

class MqKit {
 public:
  static constexpr std::string_view kTransport = "message_queue";

  static Result<MqKit> create(const Options& o, std::size_t record_bytes) {
    ShmNameGuard guard(ipc::segment_name(run_id(), unique_suffix("mq", record_bytes)));
    const std::string name = guard.name().substr(1);  // Boost adds the '/' itself
    // As many messages as the ring holds bytes, within [16, mq_max_depth].
    const std::size_t depth =
        std::clamp<std::size_t>(o.ring_bytes / record_bytes, 16, o.mq_max_depth);
    try {
      auto queue =
          std::make_unique<bip::message_queue>(bip::create_only, name.c_str(), depth, record_bytes);
      return MqKit(std::move(guard), name, std::move(queue), depth, record_bytes);
    } catch (const std::exception& e) {
      return bench_error("message_queue " + name + ": " + e.what());
    }
  }

  [[nodiscard]] std::size_t link_bytes() const { return depth_ * record_bytes_; }
  [[nodiscard]] std::size_t depth() const { return depth_; }

  template <typename Body>
  Status with_writer(Body&& body) {
    try {
      bip::message_queue queue(bip::open_only, name_.c_str());
      MqWriter writer(queue, record_bytes_);
      return body(writer);
    } catch (const std::exception& e) {
      return bench_error("message_queue " + name_ + " (producer): " + e.what());
    }
  }

  template <typename Body>
  Status with_reader(pid_t producer, Body&& body) {
    try {
      MqReader reader(*queue_, record_bytes_, producer);
      return body(reader);
    } catch (const std::exception& e) {
      return bench_error("message_queue " + name_ + " (consumer): " + e.what());
    }
  }

 private:
  MqKit(ShmNameGuard guard, std::string name, std::unique_ptr<bip::message_queue> queue,
        std::size_t depth, std::size_t record_bytes)
      : guard_(std::move(guard)),
        name_(std::move(name)),
        queue_(std::move(queue)),
        depth_(depth),
        record_bytes_(record_bytes) {}

  ShmNameGuard guard_;
  std::string name_;
  std::unique_ptr<bip::message_queue> queue_;
  std::size_t depth_;
  std::size_t record_bytes_;
};

// --- The loops ----------------------------------------------------------------------------------

bool is_timeout(const Error& e) {
  return e.component == "link" && e.code == static_cast<int>(ipc::LinkError::kTimeout);
}

template <typename Writer>
Result<std::span<std::byte>> reserve(Writer& w, std::size_t size) {
  auto span = w.try_reserve(size);
  if (!span.empty()) return span;
  return w.reserve_for(size, kStall);
}

template <typename Writer>
Status send_end(Writer& w, std::size_t size, std::uint64_t sent) {
  auto span = reserve(w, size);
  if (!span) return span.error();
  std::memset(span->data(), 0, size);
  put_u64(span->data(), kEndSeq);
  put_u64(span->data() + 8, sent);
  w.commit(size);
  return w.publish();
}

// As fast as it goes for `run_for`, publishing every `batch` records.
template <typename Writer>
Status produce_flat_out(Writer& w, std::size_t size, std::size_t batch,
                        std::chrono::nanoseconds run_for, std::uint64_t* sent) {
  const std::vector<std::byte> filler = make_filler(size);
  const auto until = Clock::now() + run_for;
  std::uint64_t seq = 0;
  do {
    for (std::size_t i = 0; i < batch; ++i) {
      auto span = w.try_reserve(size);
      if (span.empty()) {
        auto waited = w.reserve_for(size, kStall);
        if (!waited) return waited.error();
        span = *waited;
      }
      write_record(span.data(), size, seq++, filler.data());
      w.commit(size);
    }
    if (auto st = w.publish(); !st) return st;
  } while (Clock::now() < until);
  *sent = seq;
  return send_end(w, size, seq);
}

// Peeks up to `batch` records, checks them, releases them; until the end record.
template <typename Reader>
Status consume_all(Reader& r, Verifier& v, std::size_t batch) {
  for (;;) {
    auto first = r.peek_for(kStall);
    if (!first) return first.error();
    std::optional<std::span<const std::byte>> record = *first;
    bool end = false;
    for (std::size_t n = 1; record; ++n) {
      const auto verdict = v.check(*record);
      if (verdict == Verifier::Verdict::kBad) return bench_error(v.problem());
      if (verdict == Verifier::Verdict::kEnd) {
        end = true;
        break;
      }
      if (n == batch) break;
      record = r.try_peek();
    }
    if (auto st = r.release(); !st) return st;
    if (end) return ok_status();
  }
}

// `count` records at `rate` per second, each stamped with the clock and published alone.
template <typename Writer>
Status produce_paced(Writer& w, std::size_t size, double rate, std::uint64_t count) {
  const std::vector<std::byte> filler = make_filler(size);
  ::prctl(PR_SET_TIMERSLACK, 1000UL);  // 1 us, not the default 50 us: keep the pace even
  const auto period = static_cast<std::uint64_t>(1e9 / rate);
  std::uint64_t next = mono_ns();
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    next += period;
    const timespec at{static_cast<time_t>(next / 1'000'000'000u),
                      static_cast<long>(next % 1'000'000'000u)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
    }
    auto span = reserve(w, size);
    if (!span) return span.error();
    write_record(span->data(), size, seq, filler.data());
    put_u64(span->data() + 8, mono_ns());
    w.commit(size);
    if (auto st = w.publish(); !st) return st;
  }
  return send_end(w, size, count);
}

template <typename Reader>
Status consume_latency(Reader& r, Verifier& v, std::vector<std::uint64_t>& latencies) {
  for (;;) {
    auto record = r.peek_for(kStall);
    if (!record) return record.error();
    const std::uint64_t now = mono_ns();
    const auto verdict = v.check(*record);
    if (verdict == Verifier::Verdict::kBad) return bench_error(v.problem());
    if (verdict == Verifier::Verdict::kOk) {
      latencies.push_back(now - get_u64(record->data() + 8));
    }
    if (auto st = r.release(); !st) return st;
    if (verdict == Verifier::Verdict::kEnd) return ok_status();
  }
}

// Idle, full link: fills it, then waits for space until `timeout`; reports the wait's CPU.
template <typename Writer>
Status fill_then_wait(Writer& w, std::size_t size, std::chrono::nanoseconds timeout, Usage* usage) {
  const std::vector<std::byte> filler = make_filler(size);
  std::uint64_t seq = 0;
  // Full means: no room in the link, nor in the writer's own buffer (a pipe writer batches
  // up to its capacity before the pipe takes it), for as long as a short wait.
  for (;;) {
    for (auto span = w.try_reserve(size); !span.empty(); span = w.try_reserve(size)) {
      write_record(span.data(), size, seq++, filler.data());
      w.commit(size);
    }
    auto more = w.reserve_for(size, std::chrono::milliseconds(50));
    if (!more) {
      if (!is_timeout(more.error())) return more.error();
      break;
    }
    write_record(more->data(), size, seq++, filler.data());
    w.commit(size);
  }
  const UsageMeter meter;
  auto waited = w.reserve_for(size, timeout);  // publishes what is committed, then waits
  *usage = meter.finish();
  if (waited) return bench_error("a full link found space while its consumer was idle");
  if (!is_timeout(waited.error())) return waited.error();
  return ok_status();
}

Status fill_then_wait(MqWriter& w, std::size_t size, std::chrono::nanoseconds timeout,
                      Usage* usage) {
  return w.fill_then_wait(size, timeout, usage);
}

// --- Cases --------------------------------------------------------------------------------------

// Where --read-all's sums go, so that the compiler cannot drop the reads.
volatile std::uint64_t g_read_all_sink = 0;

struct Row {
  std::string kind;  // "throughput", "latency", "idle"
  std::string transport;
  std::size_t record_bytes = 0;
  double records_per_s = 0;
  double bytes_per_s = 0;
  double seconds = 0;
  double records = 0;  // records delivered and checked
  double producer_cpu_ns_per_record = 0;
  double consumer_cpu_ns_per_record = 0;
  // Of the measured wall time (throughput) or of one core (idle): on a CPU, waiting on the
  // link (for space / for data), runnable but waiting for a CPU that others held.
  double producer_cpu_percent = 0;
  double consumer_cpu_percent = 0;
  double producer_link_wait_percent = 0;
  double consumer_link_wait_percent = 0;
  double producer_runqueue_percent = 0;
  double consumer_runqueue_percent = 0;
  double p50_ns = 0;  // latency
  double p99_ns = 0;
  double samples = 0;
  std::string waiting;     // idle: "consumer" (empty link) or "producer" (full link)
  double cpu_percent = 0;  // idle: both processes
  std::string error;       // set when the case failed
};

Row new_row(std::string_view kind, std::string_view transport, std::size_t record_bytes) {
  Row row;
  row.kind = std::string(kind);
  row.transport = std::string(transport);
  row.record_bytes = record_bytes;
  return row;
}

double percent(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

void set_usage(Row& row, const Usage& producer, const Usage& consumer) {
  row.producer_cpu_percent = percent(producer.cpu_ns, producer.wall_ns);
  row.consumer_cpu_percent = percent(consumer.cpu_ns, consumer.wall_ns);
  row.producer_link_wait_percent = percent(producer.link_wait_ns, producer.wall_ns);
  row.consumer_link_wait_percent = percent(consumer.link_wait_ns, consumer.wall_ns);
  row.producer_runqueue_percent = percent(producer.runqueue_ns, producer.wall_ns);
  row.consumer_runqueue_percent = percent(consumer.runqueue_ns, consumer.wall_ns);
}

// Runs the consumer body in this process and the producer body in a forked child; on failure,
// prefers the producer's own account of what went wrong.
template <typename Kit, typename ProducerBody, typename ConsumerBody>
Status run_pair(Kit& kit, ProducerBody&& producer, ConsumerBody&& consumer) {
  auto child = Child::spawn(
      [&](ChildSide& side) { return kit.with_writer([&](auto& w) { return producer(w, side); }); });
  if (!child) return child.error();
  Status st = kit.with_reader(child->pid(), [&](auto& r) { return consumer(r, *child); });
  if (!st) {
    if (auto why = child->reported_failure()) return *why;
    return st;
  }
  return child->reap();
}

Result<ChildMessage> expect(Child& child, ChildMessage::Kind kind,
                            std::chrono::milliseconds timeout) {
  auto m = child.receive(timeout);
  if (!m) return m.error();
  if (m->kind != kind) return bench_error("the producer process sent an unexpected message");
  return m;
}

constexpr auto kHandshake = std::chrono::milliseconds(10'000);

template <typename Kit>
Row throughput_case(const Options& o, std::size_t size) {
  Row row = new_row("throughput", Kit::kTransport, size);
  auto kit = Kit::create(o, size);
  if (!kit) {
    row.error = kit.error().message;
    return row;
  }
  const std::size_t batch = batch_records(o, kit->link_bytes(), size);
  const auto run_for = std::chrono::nanoseconds(static_cast<std::int64_t>(o.seconds * 1e9));
  Verifier verifier(size, o.read_all);
  Usage consumer;
  ChildMessage report;

  Status st = run_pair(
      *kit,
      [&](auto& w, ChildSide& side) -> Status {
        if (auto s = side.ready(); !s) return s;
        if (auto s = side.await(kGo); !s) return s;
        const UsageMeter meter(w.stats().producer_blocked_ns);
        std::uint64_t sent = 0;
        if (auto s = produce_flat_out(w, size, batch, run_for, &sent); !s) return s;
        return side.done(sent, meter.finish(w.stats().producer_blocked_ns));
      },
      [&](auto& r, Child& child) -> Status {
        if (auto m = expect(child, ChildMessage::kReady, kHandshake); !m) return m.error();
        const UsageMeter meter(r.stats().consumer_waiting_ns);
        if (auto s = child.send(kGo); !s) return s;
        if (auto s = consume_all(r, verifier, batch); !s) return s;
        consumer = meter.finish(r.stats().consumer_waiting_ns);
        auto m = expect(child, ChildMessage::kDone, kHandshake);
        if (!m) return m.error();
        report = *m;
        if (report.sent != verifier.received()) {
          return bench_error("the producer reports " + std::to_string(report.sent) +
                             " records sent, " + std::to_string(verifier.received()) + " arrived");
        }
        return ok_status();
      });
  if (!st) {
    row.error = st.error().message;
    return row;
  }
  const double secs = static_cast<double>(consumer.wall_ns) / 1e9;
  row.seconds = secs;
  row.records = static_cast<double>(verifier.received());
  row.records_per_s = row.records / secs;
  row.bytes_per_s = row.records_per_s * static_cast<double>(size);
  set_usage(row, report.usage, consumer);
  row.producer_cpu_ns_per_record = static_cast<double>(report.usage.cpu_ns) / row.records;
  row.consumer_cpu_ns_per_record = static_cast<double>(consumer.cpu_ns) / row.records;
  g_read_all_sink = verifier.sink();
  return row;
}

template <typename Kit>
Row latency_case(const Options& o) {
  const std::size_t size = kLatencyRecordBytes;
  Row row = new_row("latency", Kit::kTransport, size);
  auto kit = Kit::create(o, size);
  if (!kit) {
    row.error = kit.error().message;
    return row;
  }
  const auto count = static_cast<std::uint64_t>(std::max(1.0, o.rate * o.seconds));
  Verifier verifier(size, false);
  std::vector<std::uint64_t> latencies;
  latencies.reserve(count);
  std::uint64_t wall = 0;

  Status st = run_pair(
      *kit,
      [&](auto& w, ChildSide& side) -> Status {
        if (auto s = side.ready(); !s) return s;
        if (auto s = side.await(kGo); !s) return s;
        if (auto s = produce_paced(w, size, o.rate, count); !s) return s;
        return side.done(count, Usage{});
      },
      [&](auto& r, Child& child) -> Status {
        if (auto m = expect(child, ChildMessage::kReady, kHandshake); !m) return m.error();
        const std::uint64_t t0 = mono_ns();
        if (auto s = child.send(kGo); !s) return s;
        if (auto s = consume_latency(r, verifier, latencies); !s) return s;
        wall = mono_ns() - t0;
        auto m = expect(child, ChildMessage::kDone, kHandshake);
        return m ? ok_status() : Status(m.error());
      });
  if (!st) {
    row.error = st.error().message;
    return row;
  }
  std::sort(latencies.begin(), latencies.end());
  auto at = [&](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(latencies.size() - 1) + 0.5);
    return static_cast<double>(latencies[i]);
  };
  row.seconds = static_cast<double>(wall) / 1e9;
  row.records = static_cast<double>(verifier.received());
  row.records_per_s = row.records / row.seconds;
  row.bytes_per_s = row.records_per_s * static_cast<double>(size);
  row.samples = static_cast<double>(latencies.size());
  row.p50_ns = at(0.50);
  row.p99_ns = at(0.99);
  return row;
}

// waiting == "consumer": the link is empty and the consumer waits for data while the producer
// waits for its own input (a command pipe). waiting == "producer": the link is full and the
// producer waits for space while the consumer waits for its own input (the report pipe).
template <typename Kit>
Row idle_case(const Options& o, std::string_view waiting) {
  const std::size_t size = kLatencyRecordBytes;
  Row row = new_row("idle", Kit::kTransport, size);
  row.waiting = std::string(waiting);
  auto kit = Kit::create(o, size);
  if (!kit) {
    row.error = kit.error().message;
    return row;
  }
  const auto idle = std::chrono::nanoseconds(static_cast<std::int64_t>(o.idle_seconds * 1e9));
  const auto idle_ms = std::chrono::duration_cast<std::chrono::milliseconds>(idle);
  const bool consumer_waits = waiting == "consumer";
  Usage consumer;
  ChildMessage report;

  Status st = run_pair(
      *kit,
      [&](auto& w, ChildSide& side) -> Status {
        if (auto s = side.ready(); !s) return s;
        if (auto s = side.await(kGo); !s) return s;
        Usage usage;
        if (consumer_waits) {
          const UsageMeter meter;
          if (auto s = side.await(kStop); !s) return s;
          usage = meter.finish();
        } else if (auto s = fill_then_wait(w, size, idle, &usage); !s) {
          return s;
        }
        return side.done(0, usage);
      },
      [&](auto& r, Child& child) -> Status {
        if (auto m = expect(child, ChildMessage::kReady, kHandshake); !m) return m.error();
        const UsageMeter meter;
        if (auto s = child.send(kGo); !s) return s;
        if (consumer_waits) {
          auto record = r.peek_for(idle);
          consumer = meter.finish();
          if (record) return bench_error("a record arrived on an idle link");
          if (!is_timeout(record.error())) return record.error();
          if (auto s = child.send(kStop); !s) return s;
          auto m = expect(child, ChildMessage::kDone, kHandshake);
          if (!m) return m.error();
          report = *m;
          return ok_status();
        }
        auto m = expect(child, ChildMessage::kDone, idle_ms + kHandshake);
        consumer = meter.finish();
        if (!m) return m.error();
        report = *m;
        return ok_status();
      });
  if (!st) {
    row.error = st.error().message;
    return row;
  }
  // The waiting side's own interval is the idle period; the other side's is a little longer
  // (it includes the hand-shakes), which only overstates its share.
  row.seconds = static_cast<double>(consumer_waits ? consumer.wall_ns : report.usage.wall_ns) / 1e9;
  set_usage(row, report.usage, consumer);
  row.cpu_percent = row.producer_cpu_percent + row.consumer_cpu_percent;
  return row;
}

// --- Output -------------------------------------------------------------------------------------

// Field by field median of the runs of one case; failed when any run failed.
Row median(std::vector<Row> runs) {
  for (const Row& r : runs) {
    if (!r.error.empty()) return r;
  }
  Row out = runs.front();
  auto med = [&](double Row::*field) {
    std::vector<double> v;
    for (const Row& r : runs) v.push_back(r.*field);
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    out.*field = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  for (auto field : {&Row::records_per_s, &Row::bytes_per_s, &Row::seconds, &Row::records,
                     &Row::producer_cpu_percent, &Row::consumer_cpu_percent,
                     &Row::producer_link_wait_percent, &Row::consumer_link_wait_percent,
                     &Row::producer_runqueue_percent, &Row::consumer_runqueue_percent,
                     &Row::producer_cpu_ns_per_record, &Row::consumer_cpu_ns_per_record,
                     &Row::p50_ns, &Row::p99_ns, &Row::samples, &Row::cpu_percent}) {
    med(field);
  }
  return out;
}

std::string si(double v, const char* unit) {
  const char* prefix = "";
  if (v >= 1e9) {
    v /= 1e9;
    prefix = "G";
  } else if (v >= 1e6) {
    v /= 1e6;
    prefix = "M";
  } else if (v >= 1e3) {
    v /= 1e3;
    prefix = "k";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g %s%s", v, prefix, unit);
  return buf;
}

std::string size_text(std::size_t bytes) {
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes / 1024) + " KiB";
  return std::to_string(bytes) + " B";
}

std::string duration_text(double ns) {
  char buf[32];
  if (ns >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f ms", ns / 1e6);
  } else if (ns >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1f us", ns / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  }
  return buf;
}

nlohmann::json to_json(const Row& r, int runs) {
  nlohmann::json j;
  j["kind"] = r.kind;
  j["transport"] = r.transport;
  j["record_bytes"] = r.record_bytes;
  j["records_per_s"] = std::llround(r.records_per_s);
  j["bytes_per_s"] = std::llround(r.bytes_per_s);
  j["runs"] = runs;
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  j["seconds"] = std::round(r.seconds * 1000) / 1000;
  auto pct = [](double v) { return std::round(v * 1000) / 1000; };
  if (r.kind == "throughput") {
    j["records"] = std::llround(r.records);
    j["producer_cpu_percent"] = pct(r.producer_cpu_percent);
    j["consumer_cpu_percent"] = pct(r.consumer_cpu_percent);
    j["producer_link_wait_percent"] = pct(r.producer_link_wait_percent);
    j["consumer_link_wait_percent"] = pct(r.consumer_link_wait_percent);
    j["producer_runqueue_percent"] = pct(r.producer_runqueue_percent);
    j["consumer_runqueue_percent"] = pct(r.consumer_runqueue_percent);
    j["producer_cpu_ns_per_record"] = pct(r.producer_cpu_ns_per_record);
    j["consumer_cpu_ns_per_record"] = pct(r.consumer_cpu_ns_per_record);
  } else if (r.kind == "latency") {
    j["p50_ns"] = std::llround(r.p50_ns);
    j["p99_ns"] = std::llround(r.p99_ns);
    j["samples"] = std::llround(r.samples);
  } else {
    j["waiting"] = r.waiting;
    j["cpu_percent"] = pct(r.cpu_percent);
    j["producer_cpu_percent"] = pct(r.producer_cpu_percent);
    j["consumer_cpu_percent"] = pct(r.consumer_cpu_percent);
  }
  return j;
}

class Printer {
 public:
  explicit Printer(const Options& o) : o_(o) {}

  void header() {
    if (o_.json) return;
    std::printf(
        "ipc_bench: producer (child) and consumer (parent) in two processes; %.2g s per case; "
        "median of %d run%s\n"
        "ring %s, pipe %s, message_queue of up to %zu messages; publish and release every "
        "%zu records, or a quarter of the link\n"
        "the consumer checks every record's seq and check words%s\n",
        o_.seconds, o_.runs, o_.runs == 1 ? "" : "s", size_text(o_.ring_bytes).c_str(),
        size_text(o_.pipe_bytes).c_str(), o_.mq_max_depth, o_.batch,
        o_.read_all ? ", and reads every byte" : "");
  }

  void section(const char* title) {
    if (!o_.json) std::printf("\n%s\n", title);
  }

  void row(const Row& r) {
    rows_.push_back(r);
    if (o_.json) {
      std::printf("%s\n", to_json(r, o_.runs).dump().c_str());
    } else if (!r.error.empty()) {
      std::printf("  %-14s %8s   FAILED: %s\n", r.transport.c_str(),
                  size_text(r.record_bytes).c_str(), r.error.c_str());
    } else if (r.kind == "throughput") {
      std::printf("  %-14s %8s %14s %12s   %3.0f%% %3.0f%% %3.0f%%   %3.0f%% %3.0f%% %3.0f%%\n",
                  r.transport.c_str(), size_text(r.record_bytes).c_str(),
                  si(r.records_per_s, "rec/s").c_str(), si(r.bytes_per_s, "B/s").c_str(),
                  r.producer_cpu_percent, r.producer_link_wait_percent, r.producer_runqueue_percent,
                  r.consumer_cpu_percent, r.consumer_link_wait_percent,
                  r.consumer_runqueue_percent);
    } else if (r.kind == "latency") {
      std::printf("  %-14s %8s %12s %12s %9.0f\n", r.transport.c_str(),
                  size_text(r.record_bytes).c_str(), duration_text(r.p50_ns).c_str(),
                  duration_text(r.p99_ns).c_str(), r.samples);
    } else {
      std::printf("  %-14s %-9s %10.3f%% of a core  (producer %.3f%%, consumer %.3f%%, %.1f s)\n",
                  r.transport.c_str(), r.waiting.c_str(), r.cpu_percent, r.producer_cpu_percent,
                  r.consumer_cpu_percent, r.seconds);
    }
    std::fflush(stdout);
  }

  // The ratios at 100 B and the targets, met or missed.
  void summary() {
    const Row* ring = find("throughput", "ring", kRatioRecordBytes);
    const Row* pipe = find("throughput", "pipe", kRatioRecordBytes);
    const Row* mq = find("throughput", "message_queue", kRatioRecordBytes);
    const Row* ring64 = find("throughput", "ring", 65536);
    const double vs_pipe = ring && pipe ? ring->records_per_s / pipe->records_per_s : 0;
    const double vs_mq = ring && mq ? ring->records_per_s / mq->records_per_s : 0;
    double idle_max = -1;
    for (const Row& r : rows_) {
      if (r.kind == "idle" && r.transport == "ring" && r.error.empty()) {
        idle_max = std::max(idle_max, r.cpu_percent);
      }
    }
    if (o_.json) {
      if (ring && pipe && mq) {
        nlohmann::json j;
        j["kind"] = "ratio";
        j["record_bytes"] = kRatioRecordBytes;
        j["ring_vs_pipe"] = std::round(vs_pipe * 100) / 100;
        j["ring_vs_message_queue"] = std::round(vs_mq * 100) / 100;
        std::printf("%s\n", j.dump().c_str());
      }
      return;
    }
    if (ring && pipe && mq) {
      std::printf("\nratios at %zu B: ring/pipe %.1fx, ring/message_queue %.1fx\n",
                  kRatioRecordBytes, vs_pipe, vs_mq);
    }
    std::printf("\ntargets\n");
    auto line = [](const char* what, const char* target, const std::string& got, bool known,
                   bool met) {
      std::printf("  %-34s %-18s %-14s %s\n", what, target, known ? got.c_str() : "-",
                  known ? (met ? "met" : "MISSED") : "not measured");
    };
    char buf[32];
    line("ring, 100 B records", ">= 30M rec/s", ring ? si(ring->records_per_s, "rec/s") : "",
         ring != nullptr, ring && ring->records_per_s >= 30e6);
    std::snprintf(buf, sizeof buf, "%.1fx", vs_pipe);
    line("ring vs pipe link, 100 B", ">= 10x", buf, ring && pipe, vs_pipe >= 10);
    std::snprintf(buf, sizeof buf, "%.1fx", vs_mq);
    line("ring vs message_queue, 100 B", ">= 5x", buf, ring && mq, vs_mq >= 5);
    line("ring, 64 KiB records", ">= 4 GB/s", ring64 ? si(ring64->bytes_per_s, "B/s") : "",
         ring64 != nullptr, ring64 && ring64->bytes_per_s >= 4e9);
    std::snprintf(buf, sizeof buf, "%.3f%%", idle_max);
    line("idle ring link (both processes)", "< 1% of a core", buf, idle_max >= 0, idle_max < 1.0);
  }

 private:
  const Row* find(std::string_view kind, std::string_view transport, std::size_t bytes) const {
    for (const Row& r : rows_) {
      if (r.kind == kind && r.transport == transport && r.record_bytes == bytes &&
          r.error.empty()) {
        return &r;
      }
    }
    return nullptr;
  }

  const Options& o_;
  std::vector<Row> rows_;
};

template <typename Case>
std::optional<Row> repeat(const Options& o, std::string_view transport, Case&& run_once) {
  if (!o.wants_transport(transport)) return std::nullopt;
  std::vector<Row> runs;
  for (int i = 0; i < o.runs; ++i) {
    runs.push_back(run_once());
    if (!runs.back().error.empty()) break;
  }
  return median(std::move(runs));
}

int run(const Options& o) {
  Printer out(o);
  out.header();
  bool failed = false;
  auto emit = [&](const std::optional<Row>& r) {
    if (!r) return;
    failed = failed || !r->error.empty();
    out.row(*r);
  };

  if (o.wants("throughput")) {
    out.section(
        "throughput        record      records/s      bytes/s   producer: cpu wait runq   "
        "consumer: cpu wait runq");
    for (std::size_t size : o.sizes) {
      emit(repeat(o, "ring", [&] { return throughput_case<RingKit>(o, size); }));
      emit(repeat(o, "pipe", [&] { return throughput_case<PipeKit>(o, size); }));
      emit(repeat(o, "message_queue", [&] { return throughput_case<MqKit>(o, size); }));
    }
  }

  if (o.wants("latency")) {
    char title[160];
    std::snprintf(title, sizeof title,
                  "one-way latency at %.0f records/s   record          p50          p99   samples",
                  o.rate);
    out.section(title);
    emit(repeat(o, "ring", [&] { return latency_case<RingKit>(o); }));
    emit(repeat(o, "pipe", [&] { return latency_case<PipeKit>(o); }));
    emit(repeat(o, "message_queue", [&] { return latency_case<MqKit>(o); }));
  }

  if (o.wants("idle")) {
    out.section("idle link: CPU of both processes while one waits on the link");
    for (std::string_view waiting : {"consumer", "producer"}) {
      emit(repeat(o, "ring", [&] { return idle_case<RingKit>(o, waiting); }));
      emit(repeat(o, "pipe", [&] { return idle_case<PipeKit>(o, waiting); }));
      emit(repeat(o, "message_queue", [&] { return idle_case<MqKit>(o, waiting); }));
    }
  }

  out.summary();
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "ipc_bench: throughput, one-way latency and idle CPU of the shared-memory ring, the pipe "
      "link and Boost.Interprocess message_queue between two processes."};
  app.add_option("--seconds", o.seconds, "seconds per throughput and latency case (default 1)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--quick", o.quick, "a short run: 0.25 s per case, 0.5 s idle");
  app.add_option("--runs", o.runs, "runs of every case; the median is shown (default 1)")
      ->check(CLI::Range(1, 99));
  app.add_flag("--json", o.json, "one JSON object per line instead of the table");
  app.add_option("--ring-bytes", o.ring_bytes,
                 "ring capacity: a power of two from 256KiB to 4GiB (default 4MiB)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--pipe-bytes", o.pipe_bytes,
                 "pipe size, at most /proc/sys/fs/pipe-max-size (default 1MiB)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--rate", o.rate, "records/s of the latency cases (default 10000)")
      ->check(CLI::Range(1.0, 1e6));
  app.add_option("--idle-seconds", o.idle_seconds, "seconds per idle case (default 2)")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", o.batch,
                 "records per publish and per release, at most (default 512, the stage "
                 "runtime's batch)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20));
  app.add_option("--cases", o.kinds, "which kinds of case run (default all)")
      ->check(CLI::IsMember({"throughput", "latency", "idle"}));
  app.add_option("--transport", o.transports, "which transports run (default all)")
      ->check(CLI::IsMember({"ring", "pipe", "message_queue"}));
  app.add_option("--size", o.sizes,
                 "throughput record sizes in bytes, 16..65536 (default 16 100 1024 65536)")
      ->check(CLI::Range(std::size_t{16}, std::size_t{65536}));
  app.add_flag("--read-all", o.read_all,
               "the consumer reads every byte of every record, not only the checked words");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (!ipc::Ring::valid_capacity(o.ring_bytes) ||
      ipc::Ring::max_record_size(o.ring_bytes) < 65536) {
    std::fprintf(stderr, "ipc_bench: --ring-bytes must be a power of two from 256KiB to 4GiB\n");
    return 2;
  }
  if (o.pipe_bytes < (std::size_t{256} << 10)) {
    std::fprintf(stderr, "ipc_bench: --pipe-bytes must be at least 256KiB (64 KiB records)\n");
    return 2;
  }
  if (o.quick) {
    if (app.count("--seconds") == 0) o.seconds = 0.25;
    if (app.count("--idle-seconds") == 0) o.idle_seconds = 0.5;
  }
  install_cleanup_handlers();
  remove_leftovers_of_dead_runs();
  return run(o);
}
