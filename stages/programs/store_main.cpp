// millrace-store: the built-in sink. SQLite (rows, rejects and positions in one transaction),
// or CSV / JSON Lines files (appended, with the committed lengths and positions beside them).
#include <cstdio>

#include "stages/file_sink.hpp"
#include "stages/handover.hpp"
#include "stages/runtime.hpp"
#include "stages/sqlite_sink.hpp"

namespace millrace::stages {
namespace {

// Reads its options once the runtime has the context, then behaves as the chosen sink.
class StoreSink final : public Sink {
 public:
  Result<SinkProgress> open(const StageContext& ctx) override {
    const std::string kind = ctx.get("kind", "sqlite");
    if (kind == "csv" || kind == "jsonl") {
      auto options = file_sink_options(ctx, kind == "csv" ? FileSinkOptions::Format::kCsv
                                                          : FileSinkOptions::Format::kJsonl);
      if (!options) return options.error();
      sink_ = std::make_unique<FileSink>(std::move(*options));
      return sink_->open(ctx);
    }
    if (kind != "sqlite") {
      return Error{"store", 1, ctx.where("kind") + ": kind '" + kind + "' is not sqlite, csv or jsonl", 0};
    }
    auto options = sqlite_sink_options(ctx);
    if (!options) return options.error();
    sink_ = std::make_unique<SqliteSink>(std::move(*options));
    return sink_->open(ctx);
  }
  Status write(const Record& record) override { return sink_->write(record); }
  Status commit(const SinkProgress& progress) override { return sink_->commit(progress); }
  [[nodiscard]] SinkTotals totals() const override { return sink_->totals(); }

 private:
  std::unique_ptr<Sink> sink_;
};

}  // namespace
}  // namespace millrace::stages

int main() {
  millrace::stages::StoreSink sink;
  return millrace::stages::run_sink(sink);
}
