// The stats segment: the run's live counters, shared by the launcher, every worker and the
// `millrace stats` command of another terminal. Python's multiprocessing Value/Array, made of
// lock-free atomics laid out once by the launcher.
//
// Who writes what:
//  - the launcher lays the segment out (names, slots, links) before any worker starts, and
//    writes the run fields and each worker's pid, phase and restart count;
//  - a worker writes only its own slot's heartbeat, activity, finished flag and counters, and
//    the counters of the links it produces into;
//  - the sink writes the store fields (ready, resume position, committed, reasons);
//  - readers (stats views, the watchdog) only read, and never block a writer.
//
// Crash consistency: a worker's record counters (in, out, rejected, ...) must always satisfy
// in = out + rejected + skipped when read. A worker publishes them as a whole: it writes the
// inactive one of two copies, then flips `counters_version` with one release store. A worker
// killed mid-update leaves the previous snapshot visible and complete (design invariant 5).
// Everything lives in this segment, so counters survive worker restarts.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/result.hpp"
#include "ipc/shm_segment.hpp"

namespace millrace::ipc {

inline constexpr std::uint32_t kStatsKind = 0x53544154;  // "STAT"
inline constexpr std::size_t kMaxStatStages = 16;
inline constexpr std::size_t kMaxStatWorkers = 64;
inline constexpr std::size_t kMaxStatLinks = 128;
inline constexpr std::size_t kMaxStatReasons = 32;
inline constexpr std::size_t kStatNameLen = 40;

enum class RunState : std::uint32_t { kStarting = 0, kRunning, kDraining, kDone, kFailed, kStopped };
const char* to_string(RunState s);

// What a worker is doing right now (for utilisation).
enum class Activity : std::uint32_t { kStarting = 0, kBusy, kWaitingInput, kBlockedOutput, kDone };
const char* to_string(Activity a);

// A worker's record counters: one consistent snapshot.
struct WorkerCounters {
  std::uint64_t in = 0;        // records taken from the inputs and processed
  std::uint64_t out = 0;       // data records forwarded
  std::uint64_t rejected = 0;  // reject records forwarded (rejected here or upstream)
  std::uint64_t skipped = 0;   // inputs already forwarded before a restart, dropped
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t busy_ns = 0;
  std::uint64_t waiting_input_ns = 0;
  std::uint64_t blocked_output_ns = 0;
};

struct alignas(64) WorkerSlot {
  // Written by the launcher.
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::uint32_t> phase{0};  // launcher::WorkerPhase
  std::atomic<std::uint32_t> restarts{0};
  std::atomic<std::int64_t> started_unix_ms{0};
  std::atomic<std::int32_t> last_exit_code{0};    // exit status, or -signal
  std::uint32_t stage = 0;                        // constant after layout
  std::uint32_t index = 0;                        // constant after layout

  // Written by the worker.
  alignas(64) std::atomic<std::int64_t> heartbeat_ns{0};  // CLOCK_MONOTONIC, system-wide
  std::atomic<std::uint32_t> activity{0};
  std::atomic<std::uint32_t> finished{0};  // 1 once it forwarded end of stream
  std::atomic<std::uint64_t> counters_version{0};
  WorkerCounters counters[2];

  // Publishes `c` as the worker's counters (worker only).
  void publish_counters(const WorkerCounters& c);
  // The latest complete snapshot (any process).
  [[nodiscard]] WorkerCounters read_counters() const;
};

struct StageSlot {
  char name[kStatNameLen] = {};
  std::uint32_t first_worker = 0;  // index into workers[]
  std::uint32_t workers = 0;
};

struct alignas(64) LinkSlot {
  char from[kStatNameLen] = {};  // "clean.0"
  char to[kStatNameLen] = {};    // "transform.1"
  std::uint32_t type = 0;        // 0 shm, 1 pipe
  std::uint64_t capacity = 0;
  // Written by the producing worker after each batch.
  std::atomic<std::uint64_t> fill{0};
  std::atomic<std::uint64_t> high_water{0};
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> blocked_ns{0};
};

struct alignas(64) ReasonSlot {
  char reason[kStatNameLen] = {};
  std::atomic<std::uint64_t> count{0};
};

struct StatsLayout {
  // Constant after layout.
  char pipeline[kStatNameLen] = {};
  std::uint32_t stage_count = 0;
  std::uint32_t worker_count = 0;
  std::uint32_t link_count = 0;
  std::int64_t started_unix_ms = 0;

  // Written by the launcher.
  alignas(64) std::atomic<std::int32_t> launcher_pid{0};
  std::atomic<std::uint32_t> run_state{0};
  std::atomic<std::int32_t> manager_pid{0};
  std::atomic<std::uint32_t> manager_phase{0};
  std::atomic<std::uint32_t> manager_restarts{0};

  // Written by the sink.
  alignas(64) std::atomic<std::uint32_t> store_ready{0};  // 1: resume_seq is valid
  std::atomic<std::uint32_t> store_complete{0};           // 1: every record stored
  std::atomic<std::uint64_t> resume_seq{1};               // every seq below is stored
  std::atomic<std::uint64_t> stored{0};                   // positions stored, all runs
  std::atomic<std::uint64_t> rows{0};                     // data rows stored, all runs
  std::atomic<std::uint64_t> total{0};                    // source records, once known
  std::atomic<std::uint32_t> reason_count{0};

  StageSlot stages[kMaxStatStages];
  WorkerSlot workers[kMaxStatWorkers];
  LinkSlot links[kMaxStatLinks];
  ReasonSlot reasons[kMaxStatReasons];

  // Sets the number of rejects stored for `reason` (sink only: single writer).
  void set_reason(std::string_view reason, std::uint64_t n);
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "stats need lock-free 64-bit atomics");
static_assert(std::atomic<std::int64_t>::is_always_lock_free, "stats need lock-free 64-bit atomics");
static_assert(std::is_standard_layout_v<StatsLayout>, "the stats segment is shared memory");
static_assert(std::is_trivially_copyable_v<WorkerCounters>, "counters are copied as bytes");

// Copies a name into a fixed slot, truncating.
void copy_name(char (&dst)[kStatNameLen], std::string_view src);

// Creates the run's stats segment (launcher), default-constructed and not yet published.
Result<SharedSegment> create_stats_segment(const std::string& name);
// Attaches to a published stats segment (workers and viewers).
Result<SharedSegment> attach_stats_segment(const std::string& name);
inline StatsLayout& stats_of(SharedSegment& segment) {
  return *static_cast<StatsLayout*>(segment.payload());
}

// CLOCK_MONOTONIC in nanoseconds: comparable between processes of one machine.
std::int64_t monotonic_ns();
std::int64_t unix_ms();

}  // namespace millrace::ipc
