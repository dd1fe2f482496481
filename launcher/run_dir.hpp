// RunDir: the run's directory and identity. It holds the lock that makes one launcher per run,
// the resolved config, the control socket and the workers' logs; the run id derived from its
// path names the run's shared-memory segments, so two runs never collide.
#pragma once

#include <filesystem>
#include <string>

#include "ipc/result.hpp"

namespace millrace::launcher {

class RunDir {
 public:
  // Creates the directory (and logs/) if needed. Does not lock.
  static Result<RunDir> open(const std::filesystem::path& dir);

  RunDir(RunDir&& other) noexcept;
  RunDir& operator=(RunDir&& other) noexcept;
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  ~RunDir();

  // Takes the run's lock (one launcher per run). The kernel drops it when the holder dies, so
  // the lock of a killed launcher is taken over at once. Error names the holder's pid.
  Status lock();

  [[nodiscard]] const std::filesystem::path& path() const { return dir_; }
  [[nodiscard]] const std::string& run_id() const { return run_id_; }
  [[nodiscard]] std::filesystem::path config_path() const { return dir_ / "config.ini"; }
  [[nodiscard]] std::filesystem::path control_socket() const { return dir_ / "control.sock"; }
  [[nodiscard]] std::filesystem::path manager_socket() const { return dir_ / "manager.sock"; }
  [[nodiscard]] std::filesystem::path secret_path() const { return dir_ / "secret"; }
  [[nodiscard]] std::filesystem::path log_path(const std::string& stage, unsigned worker) const;
  [[nodiscard]] std::string stats_segment() const;

 private:
  RunDir(std::filesystem::path dir, std::string run_id) : dir_(std::move(dir)), run_id_(std::move(run_id)) {}

  std::filesystem::path dir_;
  std::string run_id_;
  int lock_fd_ = -1;
};

// The run id of a run directory, without creating anything (viewers and control commands).
std::string run_id_of(const std::filesystem::path& dir);

// Identity of an input file: its size and a hash of its first and last 64 KiB, so a different
// file at the same path is told apart from the one a database was filled from.
Result<std::string> input_identity(const std::string& path);

// Removes every shared-memory segment of the run `run_id` (the caller holds the run's lock).
void remove_run_segments(const std::string& run_id);

// Writes `text` to `path` through a temporary file and a rename: readers see old or new.
Status write_file_atomically(const std::filesystem::path& path, const std::string& text,
                             unsigned mode = 0600);

}  // namespace millrace::launcher
