#include "launcher/topology.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cassert>

#include "ipc/link_open.hpp"
#include "ipc/posix_call.hpp"
#include "ipc/pipe_link.hpp"
#include "ipc/ring.hpp"
#include "stages/handover.hpp"

namespace millrace::launcher {

Result<Topology> Topology::plan(const PipelineConfig& config, const RunDir& run_dir) {
  Topology t;
  std::vector<std::uint32_t> counts;
  for (const StageConfig& s : config.stages) counts.push_back(static_cast<std::uint32_t>(s.workers));
  auto lanes = stages::lanes_for(counts);
  if (!lanes) return lanes.error();
  t.lanes_ = *lanes;

  std::uint32_t slot = 0;
  for (std::size_t s = 0; s < config.stages.size(); ++s) {
    t.first_worker_.push_back(t.workers_.size());
    for (int i = 0; i < config.stages[s].workers; ++i) {
      WorkerPlan w;
      w.stage = s;
      w.index = static_cast<std::uint32_t>(i);
      w.slot = slot++;
      t.workers_.push_back(std::move(w));
    }
  }
  for (std::size_t s = 0; s + 1 < config.stages.size(); ++s) {
    const StageConfig& a = config.stages[s];
    const StageConfig& b = config.stages[s + 1];
    const LinkConfig link = config.link_between(a.name, b.name);
    for (int i = 0; i < a.workers; ++i) {
      WorkerPlan& from = t.workers_[t.first_worker_[s] + static_cast<std::size_t>(i)];
      from.outputs.assign(static_cast<std::size_t>(b.workers), -1);
      for (int j = 0; j < b.workers; ++j) {
        bool shared_lane = false;
        for (std::uint32_t lane = 0; lane < t.lanes_; ++lane) {
          if (lane % static_cast<std::uint32_t>(a.workers) == static_cast<std::uint32_t>(i) &&
              lane % static_cast<std::uint32_t>(b.workers) == static_cast<std::uint32_t>(j)) {
            shared_lane = true;
          }
        }
        if (!shared_lane) continue;
        LinkPlan l;
        l.from_stage = s;
        l.from_worker = static_cast<std::uint32_t>(i);
        l.to_stage = s + 1;
        l.to_worker = static_cast<std::uint32_t>(j);
        l.config = link;
        l.capacity = link.capacity;
        if (link.type == LinkConfig::kShm) {
          l.capacity = std::bit_ceil(std::max<std::uint64_t>(link.capacity, ipc::Ring::kMinCapacity));
          l.segment = ipc::segment_name(run_dir.run_id(), a.name + "." + std::to_string(i) + "-" +
                                                                b.name + "." + std::to_string(j));
        }
        from.outputs[static_cast<std::size_t>(j)] = static_cast<std::ptrdiff_t>(t.links_.size());
        t.workers_[t.first_worker_[s + 1] + static_cast<std::size_t>(j)].inputs.push_back(
            t.links_.size());
        t.links_.push_back(std::move(l));
      }
    }
  }
  return t;
}

Topology::~Topology() { destroy_links(); }

Status Topology::create_links() {
  for (LinkPlan& l : links_) {
    if (l.config.type == LinkConfig::kShm) {
      auto seg = ipc::create_ring_segment(l.segment, l.capacity);
      if (!seg) return seg.error();
      segments_.push_back(std::move(*seg));
      continue;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return sys_error("run", "pipe2", "link", errno);
    l.read_fd = fds[0];
    l.write_fd = fds[1];
    if (auto st = ipc::set_pipe_size(l.write_fd, l.capacity); !st) return st;
  }
  return ok_status();
}

void Topology::destroy_links() {
  for (ipc::SharedSegment& seg : segments_) (void)seg.unlink();
  segments_.clear();
  for (LinkPlan& l : links_) {
    if (l.read_fd >= 0) ::close(l.read_fd);
    if (l.write_fd >= 0) ::close(l.write_fd);
    l.read_fd = l.write_fd = -1;
  }
}

bool Topology::has_pipes() const {
  for (const LinkPlan& l : links_) {
    if (l.config.type == LinkConfig::kPipe) return true;
  }
  return false;
}

std::vector<std::string> Topology::input_specs(const WorkerPlan& w) const {
  std::vector<std::string> specs;
  for (std::size_t i : w.inputs) {
    const LinkPlan& l = links_[i];
    specs.push_back(l.config.type == LinkConfig::kShm ? ipc::shm_link_spec(l.segment)
                                                      : ipc::pipe_link_spec(l.read_fd));
  }
  return specs;
}

std::vector<std::string> Topology::output_specs(const WorkerPlan& w) const {
  std::vector<std::string> specs;
  for (std::ptrdiff_t i : w.outputs) {
    if (i < 0) {
      specs.emplace_back("none");
      continue;
    }
    const LinkPlan& l = links_[static_cast<std::size_t>(i)];
    specs.push_back(l.config.type == LinkConfig::kShm ? ipc::shm_link_spec(l.segment)
                                                      : ipc::pipe_link_spec(l.write_fd));
  }
  return specs;
}

std::vector<int> Topology::inherited_fds(const WorkerPlan& w) const {
  std::vector<int> fds;
  for (std::size_t i : w.inputs) {
    if (links_[i].read_fd >= 0) fds.push_back(links_[i].read_fd);
  }
  for (std::ptrdiff_t i : w.outputs) {
    if (i >= 0 && links_[static_cast<std::size_t>(i)].write_fd >= 0) {
      fds.push_back(links_[static_cast<std::size_t>(i)].write_fd);
    }
  }
  return fds;
}

const WorkerPlan& Topology::worker(std::size_t stage, std::uint32_t index) const {
  assert(stage < first_worker_.size());
  return workers_[first_worker_[stage] + index];
}

}  // namespace millrace::launcher
