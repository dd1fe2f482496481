#include "stages/runtime.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <thread>
#include <unistd.h>

#include "ipc/codec.hpp"
#include "ipc/link.hpp"
#include "ipc/link_open.hpp"
#include "ipc/manager_client.hpp"
#include "ipc/stats.hpp"
#include "stages/builtin_config.hpp"
#include "stages/csv_reader.hpp"
#include "stages/seq_set.hpp"

namespace millrace::stages {

// ---------------------------------------------------------------------------------------------
// StageContext

std::string StageContext::get(std::string_view key, std::string_view fallback) const {
  // An empty value means "not set" (the resolved config lists every key, empty ones too).
  if (section != nullptr) {
    if (const ipc::IniEntry* e = section->find(key); e != nullptr && !e->value.empty()) {
      return e->value;
    }
  }
  return std::string(fallback);
}

std::vector<std::pair<std::string, std::string>> StageContext::get_all(std::string_view key) const {
  std::vector<std::pair<std::string, std::string>> out;
  if (section == nullptr) return out;
  for (const ipc::IniEntry* e : section->find_all(key)) {
    out.emplace_back(e->value, e->file + ":" + std::to_string(e->line) + ", key '" +
                                   std::string(key) + "' in [" + section->name + "]");
  }
  return out;
}

std::string StageContext::where(std::string_view key) const {
  if (section != nullptr) {
    if (const ipc::IniEntry* e = section->find(key)) {
      return e->file + ":" + std::to_string(e->line) + ", key '" + std::string(key) + "' in [" +
             section->name + "]";
    }
    return section->file + ", [" + section->name + "] key '" + std::string(key) + "'";
  }
  return "[" + handover.stage + "] key '" + std::string(key) + "'";
}

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long one wait lasts before the loop heartbeats and looks at the stop flag again.
constexpr auto kWaitSlice = 200ms;

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking call returns so the loop sees the flag
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, nullptr);
}

bool stop_requested() { return g_stop != 0; }

Error stage_error(const Handover& h, std::string msg) {
  return Error{"stage", 1, "stage '" + h.stage + "' worker " + std::to_string(h.worker) + ": " + msg,
               0};
}

int report_fatal(const Error& e) {
  std::fprintf(stderr, "millrace: %s\n", e.what().c_str());
  return 1;
}

std::size_t estimate_size(const Record& r) {
  std::size_t n = 64 + r.reason.size();
  for (const auto& f : r.fields) n += f.size() + 8;
  return n;
}

// Everything the three shapes of stage share: hand-over, config, links, stats, counting.
class Worker {
 public:
  Status init() {
    install_signal_handlers();
    auto h = handover_from_env();
    if (!h) return h.error();
    ctx_.handover = std::move(*h);
    const Handover& ho = ctx_.handover;
    auto doc = ipc::IniDocument::parse_file(ho.config_path);
    if (!doc) return doc.error();
    ctx_.config = std::make_shared<const ipc::IniDocument>(std::move(*doc));
    ctx_.section = ctx_.config->section(ho.stage);
    if (auto cols = input_columns_of(*ctx_.config, ho.stage)) {
      ctx_.input_columns = std::move(*cols);
    } else {
      return cols.error();
    }
    batch_ = 512;
    if (std::string b = ctx_.get("batch"); !b.empty()) batch_ = std::max(1, std::atoi(b.c_str()));

    auto stats = ipc::attach_stats_segment(ho.stats_segment);
    if (!stats) return stats.error();
    stats_segment_.emplace(std::move(*stats));
    stats_ = &ipc::stats_of(*stats_segment_);
    if (ho.slot >= stats_->worker_count) return stage_error(ho, "stats slot out of range");
    slot_ = &stats_->workers[ho.slot];
    counters_ = slot_->read_counters();
    heartbeat(ipc::Activity::kStarting);

    for (const std::string& spec : ho.inputs) {
      auto r = ipc::open_link_reader(spec);
      if (!r) return r.error();
      inputs_.push_back(std::move(*r));
    }
    // One output per downstream worker; "none" where no lane of this worker goes.
    for (const std::string& spec : ho.outputs) {
      if (spec == "none") {
        outputs_.push_back(nullptr);
        continue;
      }
      auto w = ipc::open_link_writer(spec);
      if (!w) return w.error();
      outputs_.push_back(std::move(*w));
    }
    // The stats slot of each output link, found by the names the launcher gave it.
    const std::string me = ho.stage + "." + std::to_string(ho.worker);
    const std::vector<std::string> chain = chain_of(*ctx_.config);
    auto pos = std::find(chain.begin(), chain.end(), ho.stage);
    const std::string next = pos != chain.end() && pos + 1 != chain.end() ? *(pos + 1) : "";
    link_slots_.assign(outputs_.size(), nullptr);
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      const std::string to = next + "." + std::to_string(j);
      for (std::uint32_t i = 0; i < stats_->link_count; ++i) {
        if (me == stats_->links[i].from && to == stats_->links[i].to) link_slots_[j] = &stats_->links[i];
      }
    }

    // What this worker already forwarded before a restart, lane by lane (invariant 3).
    forwarded_.assign(outputs_.size(), {});
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      if (!outputs_[j]) continue;
      auto marks = outputs_[j]->marks();
      for (std::uint32_t lane = 0; lane < kMaxLanes; ++lane) {
        forwarded_[j][lane] = marks[lane].load(std::memory_order_acquire);
      }
    }
    ended_.assign(inputs_.size(), false);
    batch_records_.resize(static_cast<std::size_t>(batch_));
    connect_manager();
    last_activity_change_ = ipc::monotonic_ns();
    return ok_status();
  }

  // The manager is optional: a stage works without it, only live settings and reject samples
  // need it, and a call never waits long for it.
  void connect_manager() {
    const Handover& ho = ctx_.handover;
    if (ho.manager_socket.empty()) return;
    auto client = ipc::ManagerClient::connect(ho.manager_socket, ho.secret_path,
                                              std::chrono::seconds(2));
    if (!client) {
      std::fprintf(stderr, "manager unreachable, running without live settings: %s\n",
                   client.error().what().c_str());
      return;
    }
    client->set_call_timeout(std::chrono::milliseconds(200));
    manager_.emplace(std::move(*client));
    ctx_.sample_reject = [this](std::string_view reason, const std::vector<std::string>& fields) {
      sample(reason, fields);
    };
  }

  void sample(std::string_view reason, const std::vector<std::string>& fields) {
    if (!manager_ || Clock::now() < sampling_paused_until_) return;
    std::size_t& kept = samples_[std::string(reason)];
    if (kept >= kSamplesPerReason) return;
    std::string text;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i) text += ',';
      append_csv_field(text, fields[i].size() > 200 ? fields[i].substr(0, 200) : fields[i]);
    }
    if (auto st = ipc::sample_reject(*manager_, reason, text, kSamplesPerReason); !st) {
      sampling_paused_until_ = Clock::now() + std::chrono::seconds(5);
      return;
    }
    ++kept;
  }

  // The live settings, read at most once a second; `fallback` while the manager is away.
  ipc::LiveSettings live_settings(const ipc::LiveSettings& fallback) {
    if (!manager_) return fallback;
    const auto now = Clock::now();
    if (now - settings_read_ >= std::chrono::seconds(1) || settings_read_ == Clock::time_point{}) {
      settings_read_ = now;
      if (auto s = ipc::read_live_settings(*manager_, fallback)) {
        settings_ = *s;
      } else {
        settings_ = fallback;
      }
    }
    return settings_;
  }
  // Re-read the settings at the next call (while paused, to resume promptly).
  void refresh_settings_soon() { settings_read_ = Clock::now() - std::chrono::milliseconds(800); }

  const Handover& handover() const { return ctx_.handover; }
  StageContext& context() { return ctx_; }
  ipc::StatsLayout& stats() { return *stats_; }

  // True when a previous incarnation already forwarded end of stream on every output.
  bool already_finished() const {
    if (outputs_.empty()) return false;
    for (const auto& w : outputs_) {
      if (!w) continue;
      if (const_cast<ipc::LinkWriter&>(*w).marks()[kMarkEnd].load(std::memory_order_acquire) ==
          0) {
        return false;
      }
    }
    return true;
  }

  void heartbeat(ipc::Activity activity) {
    const std::int64_t now = ipc::monotonic_ns();
    slot_->heartbeat_ns.store(now, std::memory_order_relaxed);
    if (activity != activity_) {
      const auto spent = static_cast<std::uint64_t>(now - last_activity_change_);
      switch (activity_) {
        case ipc::Activity::kBusy: counters_.busy_ns += spent; break;
        case ipc::Activity::kWaitingInput: counters_.waiting_input_ns += spent; break;
        case ipc::Activity::kBlockedOutput: counters_.blocked_output_ns += spent; break;
        default: break;
      }
      last_activity_change_ = now;
      activity_ = activity;
      slot_->activity.store(static_cast<std::uint32_t>(activity), std::memory_order_relaxed);
    }
  }

  void publish_counters() { slot_->publish_counters(counters_); }

  void mark_finished() {
    heartbeat(ipc::Activity::kDone);
    publish_counters();
    slot_->finished.store(1, std::memory_order_release);
  }

  // ---- inputs

  // Peeks up to a batch of records from the inputs into batch_records_[0..n). Records of
  // inputs that ended are not peeked further; an input's End record is noted, not returned.
  Result<std::size_t> gather() {
    std::size_t n = 0;
    const std::size_t count = inputs_.size();
    for (std::size_t k = 0; k < count && n < batch_records_.size(); ++k) {
      const std::size_t i = (next_input_ + k) % count;
      if (ended_[i]) continue;
      while (n < batch_records_.size()) {
        auto bytes = inputs_[i]->try_peek();
        if (!bytes) break;
        Record& r = batch_records_[n];
        if (auto st = ipc::decode(*bytes, r); !st) {
          return stage_error(handover(), "input " + std::to_string(i) + " holds a record that " +
                                             "cannot be decoded: " + st.error().what());
        }
        counters_.bytes_in += bytes->size();
        if (r.kind == RecordKind::kEnd) {
          ended_[i] = true;
          end_seq_ = std::max(end_seq_, r.seq);
          end_complete_ = end_complete_ && r.complete;
          break;
        }
        ++n;
      }
    }
    next_input_ = (next_input_ + 1) % std::max<std::size_t>(count, 1);
    return n;
  }

  bool all_inputs_ended() const {
    return std::all_of(ended_.begin(), ended_.end(), [](bool e) { return e; });
  }

  // Waits until some input that has not ended has a record, or a slice passes.
  Status wait_for_input() {
    heartbeat(ipc::Activity::kWaitingInput);
    std::vector<ipc::LinkReader*> open;
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      if (!ended_[i]) open.push_back(inputs_[i].get());
    }
    if (open.empty()) return ok_status();
    auto r = ipc::wait_any(open, kWaitSlice);
    heartbeat(ipc::Activity::kBusy);  // what follows a wait is work: reading, deciding
    if (!r && r.error().code != static_cast<int>(ipc::LinkError::kTimeout)) return r.error();
    return ok_status();
  }

  // Releases every input record peeked so far, except on inputs whose End was seen: their End
  // must be read again if this worker dies before forwarding it.
  Status release_inputs() {
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      if (ended_[i]) continue;
      if (auto st = inputs_[i]->release(); !st) return st;
    }
    return ok_status();
  }

  // ---- outputs

  std::size_t route(std::uint64_t seq) const {
    return lane_of(seq, handover().lanes) % outputs_.size();
  }

  // True if this worker forwarded `seq` before (a restart re-reads it) or it is a duplicate.
  bool already_forwarded(std::uint64_t seq) const {
    return seq <= forwarded_[route(seq)][lane_of(seq, handover().lanes)];
  }

  // Encodes `r` into output `j`, waiting (and publishing) while the link is full.
  Status emit(std::size_t j, const Record& r) {
    ipc::LinkWriter& w = *outputs_[j];
    std::size_t want = std::min(estimate_size(r), w.max_record_size());
    for (;;) {
      std::span<std::byte> space = w.try_reserve(want);
      const bool blocked = space.empty();
      while (space.empty()) {
        heartbeat(ipc::Activity::kBlockedOutput);
        auto waited = w.reserve_for(want, kWaitSlice);
        if (waited) {
          space = *waited;
          break;
        }
        const int code = waited.error().code;
        if (code == static_cast<int>(ipc::LinkError::kTooLarge)) {
          return stage_error(handover(), "record " + std::to_string(r.seq) + " (" +
                                             std::to_string(want) + " bytes) can never fit in " +
                                             "its link: raise [link] capacity");
        }
        if (code != static_cast<int>(ipc::LinkError::kTimeout) &&
            code != static_cast<int>(ipc::LinkError::kPeerGone)) {
          return waited.error();
        }
        // Timeout or a dead consumer: the launcher restarts consumers; keep waiting.
      }
      // Only after a wait: a clock read per record would cost more than the encoding.
      if (blocked) heartbeat(ipc::Activity::kBusy);
      auto encoded = ipc::encode(r, space);
      if (encoded.fit) {
        w.commit(encoded.size);
        last_emitted_ = r.kind;
        counters_.bytes_out += encoded.size;
        if (r.kind != RecordKind::kEnd) {
          std::uint64_t& last = forwarded_[j][lane_of(r.seq, handover().lanes)];
          last = std::max(last, r.seq);
        }
        return ok_status();
      }
      if (encoded.size > w.max_record_size()) {
        // It can never cross this link: it goes on as a reject (the same answer every time,
        // so a restart decides alike), and the log says how to let such records through.
        if (r.kind != RecordKind::kData) {
          return stage_error(handover(), "record " + std::to_string(r.seq) + " cannot cross its link");
        }
        std::fprintf(stderr, "record %llu (%zu bytes) is larger than its link can carry (%zu): "
                     "rejected as record_too_large; raise [link] capacity to keep such records\n",
                     static_cast<unsigned long long>(r.seq), encoded.size, w.max_record_size());
        too_large_.seq = r.seq;
        too_large_.kind = RecordKind::kReject;
        too_large_.reason = "record_too_large";
        too_large_.fields.clear();
        return emit(j, too_large_);
      }
      want = encoded.size;  // the reservation is abandoned by the next try_reserve
    }
  }

  // Publishes every output, then records per lane what is now downstream (marks written after
  // the publish: a kill between the two only makes the restarted worker send a few records
  // twice, which the next stages skip), then updates the link stats.
  Status publish_outputs() {
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      if (!outputs_[j]) continue;
      if (auto st = outputs_[j]->publish(); !st) return st;
      auto marks = outputs_[j]->marks();
      for (std::uint32_t lane = 0; lane < handover().lanes; ++lane) {
        if (marks[lane].load(std::memory_order_relaxed) != forwarded_[j][lane]) {
          marks[lane].store(forwarded_[j][lane], std::memory_order_release);
        }
      }
      if (link_slots_[j] != nullptr) {
        const ipc::LinkStats s = outputs_[j]->stats();
        ipc::LinkSlot& slot = *link_slots_[j];
        slot.fill.store(s.fill_bytes, std::memory_order_relaxed);
        slot.high_water.store(s.high_water_bytes, std::memory_order_relaxed);
        slot.records.store(s.records, std::memory_order_relaxed);
        slot.bytes.store(s.bytes, std::memory_order_relaxed);
        slot.blocked_ns.store(s.producer_blocked_ns, std::memory_order_relaxed);
      }
    }
    return ok_status();
  }

  // Sends end of stream on every output and records that it did.
  Status forward_end(std::uint64_t seq, bool complete) {
    Record end;
    end.kind = RecordKind::kEnd;
    end.seq = seq;
    end.complete = complete;
    for (std::size_t j = 0; j < outputs_.size(); ++j) {
      if (!outputs_[j]) continue;
      if (auto st = emit(j, end); !st) return st;
    }
    if (auto st = publish_outputs(); !st) return st;
    for (auto& w : outputs_) {
      if (!w) continue;
      w->marks()[kMarkEnd].store(complete ? 3 : 1, std::memory_order_release);
    }
    return ok_status();
  }

  // The source checkpoint lives in the marks of the first output (see handover.hpp).
  ipc::LinkWriter* checkpoint_link() {
    for (auto& o : outputs_) {
      if (o) return o.get();
    }
    return nullptr;
  }

  std::optional<Source::Checkpoint> read_checkpoint() {
    ipc::LinkWriter* link = checkpoint_link();
    if (link == nullptr) return std::nullopt;
    auto marks = link->marks();
    const std::uint64_t v = marks[kMarkCheckpointVersion].load(std::memory_order_acquire);
    const Source::Checkpoint c{marks[kMarkCheckpointSeq].load(std::memory_order_relaxed),
                               marks[kMarkCheckpointPosition].load(std::memory_order_relaxed)};
    // Odd: a writer died mid-update. Zero: never written. Either way, start from the top.
    if (v == 0 || v % 2 != 0 || c.seq == 0) return std::nullopt;
    return c;
  }

  void write_checkpoint(const Source::Checkpoint& c) {
    ipc::LinkWriter* link = checkpoint_link();
    if (link == nullptr) return;
    auto marks = link->marks();
    const std::uint64_t v = marks[kMarkCheckpointVersion].load(std::memory_order_relaxed);
    marks[kMarkCheckpointVersion].store(v + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    marks[kMarkCheckpointSeq].store(c.seq, std::memory_order_relaxed);
    marks[kMarkCheckpointPosition].store(c.position, std::memory_order_relaxed);
    // Release: a reader that sees the even version sees both values.
    marks[kMarkCheckpointVersion].store(v + 2, std::memory_order_release);
  }

  // Counts the record emit() last sent, as what it went out as.
  void count_emitted() {
    if (last_emitted_ == RecordKind::kData) {
      counters_.out++;
    } else if (last_emitted_ == RecordKind::kReject) {
      counters_.rejected++;
    }
  }

  StageContext ctx_;
  std::optional<ipc::SharedSegment> stats_segment_;
  ipc::StatsLayout* stats_ = nullptr;
  ipc::WorkerSlot* slot_ = nullptr;
  std::vector<std::unique_ptr<ipc::LinkReader>> inputs_;
  std::vector<std::unique_ptr<ipc::LinkWriter>> outputs_;
  std::vector<ipc::LinkSlot*> link_slots_;
  std::vector<std::array<std::uint64_t, kMaxLanes>> forwarded_;
  std::vector<bool> ended_;
  std::uint64_t end_seq_ = 0;
  bool end_complete_ = true;
  std::size_t next_input_ = 0;
  int batch_ = 512;
  std::vector<Record> batch_records_;
  static constexpr std::size_t kSamplesPerReason = 5;
  std::optional<ipc::ManagerClient> manager_;
  std::map<std::string, std::size_t> samples_;
  Clock::time_point sampling_paused_until_{};
  Clock::time_point settings_read_{};
  ipc::LiveSettings settings_;
  Record too_large_;  // what a record too large for its link becomes
  RecordKind last_emitted_ = RecordKind::kData;
  ipc::WorkerCounters counters_;
  ipc::Activity activity_ = ipc::Activity::kStarting;
  std::int64_t last_activity_change_ = 0;
};

// Paces a source to a rate (records/s) with a token bucket of one second's worth.
class TokenBucket {
 public:
  // Waits until `n` records may go; returns early (false) if a stop is requested.
  bool take(double rate, std::size_t n, const std::function<void()>& beat) {
    if (rate <= 0) return true;
    const auto now = Clock::now();
    if (last_ == Clock::time_point{}) last_ = now;
    tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - last_).count());
    last_ = now;
    while (tokens_ < static_cast<double>(n) && !stop_requested()) {
      const double missing = static_cast<double>(n) - tokens_;
      const auto wait = std::chrono::duration<double>(std::min(0.2, missing / rate));
      std::this_thread::sleep_for(wait);  // pacing, not synchronisation
      beat();
      const auto t = Clock::now();
      tokens_ += rate * std::chrono::duration<double>(t - last_).count();
      last_ = t;
    }
    tokens_ -= static_cast<double>(n);
    return !stop_requested();
  }

 private:
  double tokens_ = 0;
  Clock::time_point last_{};
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Source

int run_source(Source& source) {
  Worker w;
  if (auto st = w.init(); !st) return report_fatal(st.error());
  if (w.outputs_.empty()) return report_fatal(stage_error(w.handover(), "a source needs outputs"));
  if (w.already_finished()) {
    w.mark_finished();
    return 0;
  }
  auto columns = source.open(w.context());
  if (!columns) return report_fatal(columns.error());

  // The store says where to resume: wait until it has read its database.
  ipc::StatsLayout& stats = w.stats();
  while (stats.store_ready.load(std::memory_order_acquire) == 0) {
    if (stop_requested()) return 0;
    w.heartbeat(ipc::Activity::kBlockedOutput);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polls another process's flag
  }
  if (stats.store_complete.load(std::memory_order_acquire) != 0) {
    // Everything is stored already: only end of stream has to flow.
    if (auto st = w.forward_end(stats.total.load(std::memory_order_relaxed), true); !st) {
      return report_fatal(st.error());
    }
    w.mark_finished();
    return 0;
  }
  // Resume after what the store holds, and after what a previous incarnation published on
  // every output (its checkpoint); what it forwarded beyond that is skipped record by record.
  std::uint64_t first = std::max<std::uint64_t>(1, stats.resume_seq.load(std::memory_order_acquire));
  const std::optional<Source::Checkpoint> checkpoint = w.read_checkpoint();
  if (checkpoint && checkpoint->seq > first) first = checkpoint->seq;
  if (auto st = source.seek(first, checkpoint); !st) return report_fatal(st.error());

  TokenBucket bucket;
  std::uint64_t seq = first - 1;
  bool complete = false;
  Record& r = w.batch_records_[0];
  for (;;) {
    w.heartbeat(ipc::Activity::kBusy);
    if (stop_requested()) break;
    // `millrace set` changes the rate and pauses the pipeline at its source, live.
    ipc::LiveSettings live = w.live_settings(ipc::LiveSettings{source.rate_limit(), false});
    if (live.paused) {
      w.heartbeat(ipc::Activity::kWaitingInput);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // paused: nothing to do
      w.refresh_settings_soon();
      continue;
    }
    if (!bucket.take(live.rate_limit, static_cast<std::size_t>(w.batch_),
                     [&] { w.heartbeat(ipc::Activity::kBlockedOutput); })) {
      break;
    }
    bool at_end = false;
    for (int i = 0; i < w.batch_; ++i) {
      r.kind = RecordKind::kData;
      r.reason.clear();
      auto more = source.next(r);
      if (!more) return report_fatal(more.error());
      if (!*more) {
        at_end = true;
        break;
      }
      // A source's next() may be slow (a custom one reading a remote system): beat per
      // record, or a batch of slow records would look like a hang to the watchdog.
      w.heartbeat(ipc::Activity::kBusy);
      r.seq = ++seq;
      w.counters_.in++;
      if (w.already_forwarded(r.seq)) {
        w.counters_.skipped++;
        continue;
      }
      if (auto st = w.emit(w.route(r.seq), r); !st) return report_fatal(st.error());
      w.count_emitted();
    }
    if (auto st = w.publish_outputs(); !st) return report_fatal(st.error());
    if (auto pos = source.position()) w.write_checkpoint(Source::Checkpoint{seq + 1, *pos});
    w.publish_counters();
    if (at_end) {
      complete = true;
      break;
    }
  }
  if (auto st = w.forward_end(seq, complete); !st) return report_fatal(st.error());
  w.mark_finished();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Processor

int run_processor(Processor& processor) {
  Worker w;
  if (auto st = w.init(); !st) return report_fatal(st.error());
  if (w.inputs_.empty() || w.outputs_.empty()) {
    return report_fatal(stage_error(w.handover(), "a processor needs inputs and outputs"));
  }
  if (w.already_finished()) {
    w.mark_finished();
    return 0;
  }
  if (auto columns = processor.open(w.context()); !columns) return report_fatal(columns.error());

  for (;;) {
    auto gathered = w.gather();
    if (!gathered) return report_fatal(gathered.error());
    std::size_t n = *gathered;
    if (n == 0) {
      if (w.all_inputs_ended()) break;
      if (stop_requested()) return 0;
      if (auto st = w.release_inputs(); !st) return report_fatal(st.error());
      if (auto st = w.wait_for_input(); !st) return report_fatal(st.error());
      continue;
    }
    w.heartbeat(ipc::Activity::kBusy);
    // Drop what this worker already forwarded before a restart, keeping the rest in order.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      w.counters_.in++;
      if (w.already_forwarded(w.batch_records_[i].seq)) {
        w.counters_.skipped++;
        continue;
      }
      if (kept != i) std::swap(w.batch_records_[kept], w.batch_records_[i]);
      ++kept;
    }
    std::span<Record> batch(w.batch_records_.data(), kept);
    if (auto st = processor.process(batch); !st) return report_fatal(st.error());
    for (const Record& r : batch) {
      if (auto st = w.emit(w.route(r.seq), r); !st) return report_fatal(st.error());
      w.count_emitted();
    }
    if (auto st = w.publish_outputs(); !st) return report_fatal(st.error());
    if (auto st = w.release_inputs(); !st) return report_fatal(st.error());
    w.publish_counters();
    if (stop_requested()) return 0;
  }
  if (auto st = w.forward_end(w.end_seq_, w.end_complete_); !st) return report_fatal(st.error());
  w.mark_finished();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Sink

namespace {

std::uint64_t config_u64(const StageContext& ctx, std::string_view key, std::uint64_t fallback) {
  std::string v = ctx.get(key);
  if (v.empty()) return fallback;
  return std::strtoull(v.c_str(), nullptr, 10);
}

std::chrono::milliseconds config_ms(const StageContext& ctx, std::string_view key,
                                    std::chrono::milliseconds fallback) {
  std::string v = ctx.get(key);
  if (v.empty()) return fallback;
  auto d = ipc::parse_duration(v);
  return d ? *d : fallback;
}

void publish_totals(ipc::StatsLayout& stats, const SinkTotals& totals) {
  stats.rows.store(totals.rows, std::memory_order_relaxed);
  for (const auto& [reason, n] : totals.rejects) stats.set_reason(reason, n);
}

}  // namespace

int run_sink(Sink& sink) {
  Worker w;
  if (auto st = w.init(); !st) return report_fatal(st.error());
  ipc::StatsLayout& stats = w.stats();
  auto progress = sink.open(w.context());
  if (!progress) return report_fatal(progress.error());
  auto saved = SeqSet::parse(progress->committed);
  if (!saved) {
    return report_fatal(stage_error(w.handover(), "the store's saved positions are unreadable: '" +
                                                      progress->committed.substr(0, 80) + "'"));
  }
  SeqSet committed = std::move(*saved);
  publish_totals(stats, sink.totals());
  stats.stored.store(committed.size(), std::memory_order_relaxed);
  stats.resume_seq.store(committed.low(), std::memory_order_relaxed);
  stats.total.store(progress->total, std::memory_order_relaxed);
  if (progress->complete) {
    stats.store_complete.store(1, std::memory_order_relaxed);
    stats.store_ready.store(1, std::memory_order_release);
    w.mark_finished();
    return 0;
  }
  stats.store_ready.store(1, std::memory_order_release);

  const std::uint64_t batch_rows = config_u64(w.context(), "batch_rows", 5000);
  const auto interval = config_ms(w.context(), "commit_interval", 200ms);
  SeqSet pending;
  ipc::WorkerCounters pending_counts;
  Clock::time_point first_pending{};

  auto commit = [&](bool complete) -> Status {
    SeqSet all = committed;
    all.merge(pending);
    SinkProgress p;
    p.committed = all.to_string();
    p.total = w.all_inputs_ended() ? w.end_seq_ : 0;
    p.complete = complete;
    if (auto st = sink.commit(p); !st) return st;
    committed = std::move(all);
    pending.clear();
    if (auto st = w.release_inputs(); !st) return st;
    publish_totals(stats, sink.totals());
    w.counters_.in += pending_counts.in;
    w.counters_.out += pending_counts.out;
    w.counters_.rejected += pending_counts.rejected;
    pending_counts = {};
    w.publish_counters();
    stats.stored.store(committed.size(), std::memory_order_relaxed);
    stats.resume_seq.store(committed.low(), std::memory_order_release);
    return ok_status();
  };

  for (;;) {
    auto gathered = w.gather();
    if (!gathered) return report_fatal(gathered.error());
    const std::size_t n = *gathered;
    w.heartbeat(ipc::Activity::kBusy);
    for (std::size_t i = 0; i < n; ++i) {
      const Record& r = w.batch_records_[i];
      if (committed.contains(r.seq) || !pending.insert(r.seq)) {
        w.counters_.in++;
        w.counters_.skipped++;
        continue;
      }
      if (auto st = sink.write(r); !st) return report_fatal(st.error());
      if (pending.size() == 1) first_pending = Clock::now();
      pending_counts.in++;
      if (r.kind == RecordKind::kReject) {
        pending_counts.rejected++;
      } else {
        pending_counts.out++;
      }
    }
    if (w.all_inputs_ended()) break;
    if (stop_requested()) {
      if (auto st = commit(false); !st) return report_fatal(st.error());
      return 0;
    }
    if (n > 0 && pending.size() < batch_rows) continue;
    // Nothing more to read right now, or a full transaction: commit when it is big enough,
    // when it has waited long enough, or when the inputs are filling up with records this sink
    // holds (their producers would soon block on space only a commit gives back).
    bool inputs_filling = false;
    for (const auto& in : w.inputs_) {
      const ipc::LinkStats s = in->stats();
      if (s.capacity_bytes > 0 && s.fill_bytes * 2 >= s.capacity_bytes) inputs_filling = true;
    }
    if (!pending.empty() && (pending.size() >= batch_rows || inputs_filling ||
                             Clock::now() - first_pending >= interval)) {
      if (auto st = commit(false); !st) return report_fatal(st.error());
      continue;
    }
    if (pending.empty()) {
      if (auto st = w.release_inputs(); !st) return report_fatal(st.error());
      w.publish_counters();
    }
    if (auto st = w.wait_for_input(); !st) return report_fatal(st.error());
  }

  // Every input ended: the run is complete when every position up to the end is stored.
  SeqSet all = committed;
  all.merge(pending);
  if (!all.covers_prefix(w.end_seq_)) {
    return report_fatal(stage_error(
        w.handover(), "end of stream at position " + std::to_string(w.end_seq_) +
                          " but position " + std::to_string(all.low()) +
                          " never arrived: records were lost upstream (stored: " +
                          all.to_string().substr(0, 200) + ")"));
  }
  const bool complete = w.end_complete_;
  if (auto st = commit(complete); !st) return report_fatal(st.error());
  stats.total.store(w.end_seq_, std::memory_order_relaxed);
  if (complete) stats.store_complete.store(1, std::memory_order_release);
  w.mark_finished();
  return 0;
}

}  // namespace millrace::stages
