// A complete stage program of a user's own: it upper-cases the fields named by its `fields`
// setting and rejects records whose first such field is empty. Everything else (links,
// batches, restarts, exactly-once, stats, SIGTERM) is the stage runtime's.
//
// Config:   [shout]
//           exec = /path/to/millrace-example-shout
//           fields = customer, country
#include <algorithm>
#include <cctype>

#include "ipc/ini.hpp"
#include "stages/runtime.hpp"

namespace {

using millrace::Error;
using millrace::Result;
using millrace::Status;
using millrace::stages::Record;
using millrace::stages::RecordKind;
using millrace::stages::StageContext;

class Shout final : public millrace::stages::Processor {
 public:
  Result<std::vector<std::string>> open(const StageContext& ctx) override {
    for (const std::string& name : millrace::ipc::split_list(ctx.get("fields"))) {
      auto it = std::find(ctx.input_columns.begin(), ctx.input_columns.end(), name);
      if (it == ctx.input_columns.end()) {
        return Error{"shout", 1, ctx.where("fields") + ": no field named '" + name + "'", 0};
      }
      fields_.push_back(static_cast<std::size_t>(it - ctx.input_columns.begin()));
    }
    return ctx.input_columns;  // the same fields come out
  }

  Status process(std::span<Record> batch) override {
    for (Record& r : batch) {
      if (r.kind != RecordKind::kData) continue;  // rejects pass through untouched
      if (!fields_.empty() && r.fields[fields_[0]].empty()) {
        r.kind = RecordKind::kReject;
        r.reason = "nothing_to_shout";
        r.fields.clear();
        continue;
      }
      for (std::size_t f : fields_) {
        for (char& c : r.fields[f]) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
    }
    return {};
  }

 private:
  std::vector<std::size_t> fields_;
};

}  // namespace

int main() {
  Shout stage;
  return millrace::stages::run_processor(stage);
}
