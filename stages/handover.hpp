// The hand-over between the launcher and a stage worker process: everything a worker needs to
// find its config, its links and its stats slot. This is the only contract between the two;
// a user's own stage program built on the stage library gets it for free.
//
// The launcher starts every worker with these environment variables:
//
//   MILLRACE_CONFIG    path of the run's resolved INI config (the user's file with every
//                      --set override applied), which every process of the run reads
//   MILLRACE_RUN_ID    the run's id; shared-memory names derive from it
//   MILLRACE_STAGE     the stage's name (its section in the config)
//   MILLRACE_WORKER    this worker's index, 0-based
//   MILLRACE_WORKERS   the stage's worker count
//   MILLRACE_LANES     the pipeline's lane count (see Topology below)
//   MILLRACE_INPUTS    comma-separated link specs this worker reads, in upstream-worker order
//   MILLRACE_OUTPUTS   comma-separated link specs this worker writes, in downstream-worker order
//   MILLRACE_STATS     name of the stats segment
//   MILLRACE_SLOT      this worker's slot in the stats segment
//   MILLRACE_MANAGER   path of the manager's socket (empty when the run has no manager)
//   MILLRACE_SECRET    path of the file holding the run's manager secret (mode 0600)
//   MILLRACE_FINGERPRINT  identity of the run's input and of the settings that change what is
//                      stored; a sink refuses a destination that holds another run
//
// A link spec is `shm:NAME` (a ring segment) or `pipe:FD` (an inherited pipe end).
//
// Topology: records are routed by their source position. lane(seq) = ((seq - 1) / kLaneBlock)
// % lanes, and a stage with W workers (W divides `lanes`) gives lane L to worker L % W. So each
// lane passes through exactly one worker of every stage, in order, which is what makes
// "the last seq forwarded in this lane" a complete description of a worker's progress.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipc/result.hpp"

namespace millrace::stages {

inline constexpr std::uint64_t kLaneBlock = 64;
// Lane marks use link mark slots [0, kMaxLanes); the slots above are the runtime's own.
inline constexpr std::uint32_t kMaxLanes = 60;
inline constexpr std::size_t kMarkEnd = 63;      // 1 + 2*complete once End was published
// A source's checkpoint, on its first output: every position below kMarkCheckpointSeq is
// published on every output, and the source's input resumes there at kMarkCheckpointPosition.
// kMarkCheckpointVersion is odd while the pair is being written (a seqlock).
inline constexpr std::size_t kMarkCheckpointVersion = 60;
inline constexpr std::size_t kMarkCheckpointSeq = 61;
inline constexpr std::size_t kMarkCheckpointPosition = 62;

inline std::uint32_t lane_of(std::uint64_t seq, std::uint32_t lanes) {
  return static_cast<std::uint32_t>(((seq - 1) / kLaneBlock) % lanes);
}

struct Handover {
  std::string config_path;
  std::string run_id;
  std::string stage;
  std::uint32_t worker = 0;
  std::uint32_t workers = 1;
  std::uint32_t lanes = 1;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::string stats_segment;
  std::uint32_t slot = 0;
  std::string manager_socket;
  std::string secret_path;
  std::string fingerprint;
};

// Reads the hand-over from the environment; an Error names the missing or bad variable.
Result<Handover> handover_from_env();
// The environment entries ("NAME=value") that hand `h` over to a child.
std::vector<std::string> handover_to_env(const Handover& h);

// The lane count for a chain whose stages have these worker counts: their least common
// multiple. An Error when it exceeds kMaxLanes.
Result<std::uint32_t> lanes_for(const std::vector<std::uint32_t>& worker_counts);

}  // namespace millrace::stages
