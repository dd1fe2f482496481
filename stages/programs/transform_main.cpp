// millrace-transform: the built-in derivation stage. Computes new fields (lookups, integer
// arithmetic, dates) by the `derive` lines of its config section. A record a derivation cannot
// take is rejected with `error_reason`, and the first few are described in the worker's log.
#include <cstdio>

#include "stages/builtin_config.hpp"
#include "stages/runtime.hpp"
#include "stages/transform_ops.hpp"

namespace millrace::stages {
namespace {

constexpr int kLoggedErrors = 20;

class TransformProcessor final : public Processor {
 public:
  Result<std::vector<std::string>> open(const StageContext& ctx) override {
    auto t = Transform::parse(config_lines(ctx.section, "derive"), ctx.input_columns,
                              tables_of(*ctx.config));
    if (!t) return t.error();
    transform_.emplace(std::move(*t));
    error_reason_ = ctx.get("error_reason", "transform_error");
    return transform_->output_columns();
  }

  Status process(std::span<Record> batch) override {
    for (Record& r : batch) {
      if (r.kind != RecordKind::kData) continue;
      if (auto st = transform_->apply(r.seq, r.fields); !st) {
        if (logged_++ < kLoggedErrors) {
          std::fprintf(stderr, "record %llu rejected as %s: %s\n",
                       static_cast<unsigned long long>(r.seq), error_reason_.c_str(),
                       st.error().what().c_str());
        }
        r.kind = RecordKind::kReject;
        r.reason = error_reason_;
        r.fields.clear();
      }
    }
    return ok_status();
  }

 private:
  std::optional<Transform> transform_;
  std::string error_reason_;
  int logged_ = 0;
};

}  // namespace
}  // namespace millrace::stages

int main() {
  millrace::stages::TransformProcessor processor;
  return millrace::stages::run_processor(processor);
}
