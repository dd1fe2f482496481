// The stage runtime: everything a stage program needs besides its own logic.
//
// A stage program is one of three shapes, each a small interface below, and its main() is one
// call:   int main() { MyProcessor p; return millrace::stages::run_processor(p); }
//
// The runtime reads the hand-over (stages/handover.hpp) and the config, attaches the links and
// the stats slot, and loops: read a batch, call the stage, publish the outputs, release the
// inputs, heartbeat, count. It follows the recovery invariants of the design:
//  - a worker releases its inputs only after their outputs are published downstream;
//  - after a restart it skips every input whose output it already published (the per-lane
//    marks of its output links), so each lane's records leave it once, in order;
//  - a sink commits the positions it stored together with the rows; after a restart it reads
//    them back and stores nothing twice;
//  - end of stream flows from the source to the sink; a worker exits 0 once it forwarded it;
//  - SIGTERM: a source stops reading and sends end of stream (a drain); any other worker
//    finishes its batch, publishes, and exits 0.
//
// Contract for stage code: the runtime calls it from one thread. Each input record becomes
// exactly one output record: the same record changed in place, or a reject with a reason.
// That is what lets every stage account for every record: in = out + rejected.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ipc/ini.hpp"
#include "ipc/result.hpp"
#include "stages/handover.hpp"
#include "stages/record.hpp"

namespace millrace::stages {

// What a stage sees of its run.
struct StageContext {
  Handover handover;
  std::shared_ptr<const ipc::IniDocument> config;
  const ipc::IniSection* section = nullptr;  // the stage's own section; may be null
  std::vector<std::string> input_columns;    // names of the fields of incoming data records
  // Keeps a few records per reject reason on the run's manager, for `millrace stats
  // --rejects`; cheap once a reason has its samples, a no-op without a manager.
  std::function<void(std::string_view reason, const std::vector<std::string>& fields)>
      sample_reject = [](std::string_view, const std::vector<std::string>&) {};

  // The value of `key` in the stage's section, or `fallback` when it is missing or empty.
  [[nodiscard]] std::string get(std::string_view key, std::string_view fallback = "") const;
  // Every value of a repeatable key, with "file:line" for messages.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> get_all(std::string_view key) const;
  // "file:line, key K in [stage]" for messages about `key`.
  [[nodiscard]] std::string where(std::string_view key) const;
};

// Produces records. The runtime assigns positions: the n-th record next() yields has seq n.
class Source {
 public:
  virtual ~Source() = default;
  // Reads the config; returns the names of the fields of the records it produces.
  virtual Result<std::vector<std::string>> open(const StageContext& ctx) = 0;
  // Where the next record starts in the input (e.g. a byte offset), if the source can resume
  // there: the runtime saves it with the positions it has published.
  [[nodiscard]] virtual std::optional<std::uint64_t> position() const { return std::nullopt; }
  // Positions the source so that the next record next() yields is the one with seq `seq`.
  // `from`, when given, is a saved position() at or before `seq`: {seq at it, position}.
  struct Checkpoint {
    std::uint64_t seq;
    std::uint64_t position;
  };
  virtual Status seek(std::uint64_t seq, std::optional<Checkpoint> from) = 0;
  // Fills `out` with the next record (kData with fields, or kReject with a reason); returns
  // false at the end of the input.
  virtual Result<bool> next(Record& out) = 0;
  // Records/s the source may produce now (0 = unlimited); the runtime paces to it.
  [[nodiscard]] virtual double rate_limit() const { return 0; }
};

// Changes records in place. process() sees data and reject records; it changes only data.
class Processor {
 public:
  virtual ~Processor() = default;
  // Reads the config; returns the names of the fields of the records it produces.
  virtual Result<std::vector<std::string>> open(const StageContext& ctx) = 0;
  // Turns each kData record of the batch into its output: fields changed, or a reject.
  // An error stops the worker (it is restarted by its policy): use it for broken invariants,
  // never for bad records. The worker beats its heartbeat before each call, so one call must
  // take well under the stage's watchdog (lower `batch` for slow work).
  virtual Status process(std::span<Record> batch) = 0;
};

// Stores records durably, exactly once, by committing positions with the rows.
struct SinkProgress {
  std::string committed;    // SeqSet text of the positions stored
  std::uint64_t total = 0;  // number of source records, once known
  bool complete = false;    // every source record is stored
};

// What a sink holds, all runs together: stored data rows and rejects per reason.
struct SinkTotals {
  std::uint64_t rows = 0;
  std::vector<std::pair<std::string, std::uint64_t>> rejects;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Opens the destination and returns the progress saved with the rows ({} if none).
  virtual Result<SinkProgress> open(const StageContext& ctx) = 0;
  // Stores one record (kData or kReject) in the current transaction.
  virtual Status write(const Record& record) = 0;
  // Commits every record written since the last commit together with `progress`, atomically.
  virtual Status commit(const SinkProgress& progress) = 0;
  // What the destination holds as of the last commit (or open).
  [[nodiscard]] virtual SinkTotals totals() const = 0;
};

// Runs a stage program to its end; returns the process exit status.
int run_source(Source& source);
int run_processor(Processor& processor);
int run_sink(Sink& sink);

// The field names of the records that reach `stage` (the output of the stage before it), as
// the config defines them. Built-in stages compute theirs; a user stage declares `columns`.
Result<std::vector<std::string>> input_columns_of(const ipc::IniDocument& config,
                                                  std::string_view stage);
Result<std::vector<std::string>> output_columns_of(const ipc::IniDocument& config,
                                                   std::string_view stage);

}  // namespace millrace::stages
