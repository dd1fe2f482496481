#include "ipc/stats.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>

namespace millrace::ipc {

const char* to_string(RunState s) {
  switch (s) {
    case RunState::kStarting: return "starting";
    case RunState::kRunning: return "running";
    case RunState::kDraining: return "draining";
    case RunState::kDone: return "done";
    case RunState::kFailed: return "failed";
    case RunState::kStopped: return "stopped";
  }
  return "?";
}

const char* to_string(Activity a) {
  switch (a) {
    case Activity::kStarting: return "starting";
    case Activity::kBusy: return "busy";
    case Activity::kWaitingInput: return "waiting";
    case Activity::kBlockedOutput: return "blocked";
    case Activity::kDone: return "done";
  }
  return "?";
}

void WorkerSlot::publish_counters(const WorkerCounters& c) {
  // Single writer: only this worker moves the version, so a relaxed load of it is exact.
  const std::uint64_t v = counters_version.load(std::memory_order_relaxed);
  counters[(v + 1) % 2] = c;
  // Release: a reader that sees v + 1 sees the copy complete.
  counters_version.store(v + 1, std::memory_order_release);
}

WorkerCounters WorkerSlot::read_counters() const {
  // The writer only rewrites the copy that is not current; once it publishes again, the copy
  // we are reading becomes its next target. So a copy is good only if the version held still.
  for (;;) {
    const std::uint64_t v = counters_version.load(std::memory_order_acquire);
    WorkerCounters c;
    std::memcpy(&c, &counters[v % 2], sizeof c);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (counters_version.load(std::memory_order_relaxed) == v) return c;
  }
}

void StatsLayout::set_reason(std::string_view reason, std::uint64_t n) {
  const std::uint32_t count = reason_count.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (std::string_view(reasons[i].reason) == reason.substr(0, kStatNameLen - 1)) {
      reasons[i].count.store(n, std::memory_order_relaxed);
      return;
    }
  }
  if (count == kMaxStatReasons) return;  // shown as "other" by viewers
  copy_name(reasons[count].reason, reason);
  reasons[count].count.store(n, std::memory_order_relaxed);
  // Release: a viewer that sees the new count sees the slot's name.
  reason_count.store(count + 1, std::memory_order_release);
}

void copy_name(char (&dst)[kStatNameLen], std::string_view src) {
  const std::size_t n = std::min(src.size(), kStatNameLen - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

Result<SharedSegment> create_stats_segment(const std::string& name) {
  auto seg = SharedSegment::create(name, sizeof(StatsLayout), kStatsKind);
  if (!seg) return seg.error();
  new (seg->payload()) StatsLayout();
  return seg;
}

Result<SharedSegment> attach_stats_segment(const std::string& name) {
  auto seg = SharedSegment::attach(name, kStatsKind);
  if (!seg) return seg.error();
  if (seg->payload_size() < sizeof(StatsLayout)) {
    return Error{"shm", 0, "stats segment " + name + " is smaller than this millrace expects", 0};
  }
  return seg;
}

std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace millrace::ipc
