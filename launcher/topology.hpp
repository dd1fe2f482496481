// Topology: the run's workers and the links between them, derived from the config.
//
// Records are routed by lane (stages/handover.hpp): with `lanes` the least common multiple of
// the stages' worker counts, lane L goes through worker L % W of a stage with W workers. A
// worker of stage A is linked to a worker of the next stage B only if some lane passes through
// both; every worker still gets one output per worker of B (a "none" spec where no lane goes),
// so that the output index is the downstream worker index.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/result.hpp"
#include "ipc/shm_segment.hpp"
#include "launcher/config.hpp"
#include "launcher/run_dir.hpp"

namespace millrace::launcher {

struct LinkPlan {
  std::size_t from_stage = 0;
  std::uint32_t from_worker = 0;
  std::size_t to_stage = 0;
  std::uint32_t to_worker = 0;
  LinkConfig config;
  std::uint64_t capacity = 0;  // as created: rings round up to a power of two
  std::string segment;         // shm links
  int read_fd = -1;            // pipe links, while open
  int write_fd = -1;
};

struct WorkerPlan {
  std::size_t stage = 0;
  std::uint32_t index = 0;
  std::uint32_t slot = 0;  // in the stats segment
  std::vector<std::size_t> inputs;   // link indices, by upstream worker
  std::vector<std::ptrdiff_t> outputs;  // link index per downstream worker, -1 where no lane goes
};

class Topology {
 public:
  static Result<Topology> plan(const PipelineConfig& config, const RunDir& run_dir);

  Topology(Topology&&) noexcept = default;
  Topology& operator=(Topology&&) noexcept = default;
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  ~Topology();

  // Creates every link (ring segments, pipes). Call destroy_links() to remove them.
  Status create_links();
  // Unlinks the ring segments and closes the pipes.
  void destroy_links();
  // True when some link is a pipe: a pipe cannot be re-read after its reader dies, so any
  // worker's death restarts the whole chain from the store's position.
  [[nodiscard]] bool has_pipes() const;

  // The link specs (ipc/link_open.hpp) a worker is handed, and the descriptors it inherits.
  [[nodiscard]] std::vector<std::string> input_specs(const WorkerPlan& w) const;
  [[nodiscard]] std::vector<std::string> output_specs(const WorkerPlan& w) const;
  [[nodiscard]] std::vector<int> inherited_fds(const WorkerPlan& w) const;

  [[nodiscard]] std::uint32_t lanes() const { return lanes_; }
  [[nodiscard]] const std::vector<WorkerPlan>& workers() const { return workers_; }
  [[nodiscard]] const std::vector<LinkPlan>& links() const { return links_; }
  [[nodiscard]] const WorkerPlan& worker(std::size_t stage, std::uint32_t index) const;

 private:
  Topology() = default;

  std::uint32_t lanes_ = 1;
  std::vector<WorkerPlan> workers_;
  std::vector<LinkPlan> links_;
  std::vector<std::size_t> first_worker_;  // per stage
  std::vector<ipc::SharedSegment> segments_;
};

}  // namespace millrace::launcher
