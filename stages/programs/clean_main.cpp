// millrace-clean: the built-in validation stage. Trims, normalises and checks fields by the
// rules of its config section; the first failing check rejects the record with its reason.
#include "stages/builtin_config.hpp"
#include "stages/clean_rules.hpp"
#include "stages/runtime.hpp"

namespace millrace::stages {
namespace {

class CleanProcessor final : public Processor {
 public:
  Result<std::vector<std::string>> open(const StageContext& ctx) override {
    ConfigLine trim = config_line(ctx.section, "trim").value_or(ConfigLine{"all", ctx.where("trim")});
    auto rules = CleanRules::parse(trim, config_line(ctx.section, "fields"),
                                   config_lines(ctx.section, "check"), ctx.input_columns);
    if (!rules) return rules.error();
    rules_.emplace(std::move(*rules));
    ctx_ = &ctx;
    return ctx.input_columns;
  }

  Status process(std::span<Record> batch) override {
    for (Record& r : batch) {
      if (r.kind != RecordKind::kData) continue;
      if (auto reason = rules_->apply(r.fields)) {
        ctx_->sample_reject(*reason, r.fields);
        r.kind = RecordKind::kReject;
        r.reason.assign(*reason);
        r.fields.clear();
      }
    }
    return ok_status();
  }

 private:
  std::optional<CleanRules> rules_;
  const StageContext* ctx_ = nullptr;
};

}  // namespace
}  // namespace millrace::stages

int main() {
  millrace::stages::CleanProcessor processor;
  return millrace::stages::run_processor(processor);
}
