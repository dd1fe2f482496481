#include "ipc/link_open.hpp"

#include <charconv>

#if __has_include("ipc/pipe_link.hpp")
#include "ipc/pipe_link.hpp"
#define MILLRACE_HAVE_PIPE 1
#endif
#include "ipc/ring.hpp"
#include "ipc/shm_segment.hpp"

namespace millrace::ipc {
namespace {

Error spec_error(std::string_view spec) {
  return Error{"link", static_cast<int>(LinkError::kSystem),
               "bad link spec '" + std::string(spec) + "' (expected shm:NAME or pipe:FD)", 0};
}

class OwnedProducer final : public LinkWriter {
 public:
  OwnedProducer(SharedSegment segment, RingProducer ring)
      : segment_(std::move(segment)), ring_(std::move(ring)) {}
  std::span<std::byte> try_reserve(std::size_t size) override { return ring_.try_reserve(size); }
  Result<std::span<std::byte>> reserve_for(std::size_t size, std::chrono::nanoseconds t) override {
    return ring_.reserve_for(size, t);
  }
  void commit(std::size_t used) override { ring_.commit(used); }
  Status publish() override { return ring_.publish(); }
  std::size_t max_record_size() const override { return ring_.max_record_size(); }
  LinkStats stats() const override { return ring_.stats(); }
  std::span<std::atomic<std::uint64_t>, kMarkSlots> marks() override { return ring_.marks(); }
  bool peer_alive() const override { return ring_.peer_alive(); }

 private:
  SharedSegment segment_;  // the mapping ring_ points into
  RingProducer ring_;
};

class OwnedConsumer final : public LinkReader {
 public:
  OwnedConsumer(SharedSegment segment, RingConsumer ring)
      : segment_(std::move(segment)), ring_(std::move(ring)) {}
  std::optional<std::span<const std::byte>> try_peek() override { return ring_.try_peek(); }
  Result<std::span<const std::byte>> peek_for(std::chrono::nanoseconds t) override {
    return ring_.peek_for(t);
  }
  Status release() override { return ring_.release(); }
  std::size_t peeked() const override { return ring_.peeked(); }
  LinkStats stats() const override { return ring_.stats(); }
  std::span<const std::atomic<std::uint64_t>, kMarkSlots> marks() const override {
    return ring_.marks();
  }
  bool peer_alive() const override { return ring_.peer_alive(); }
  WaitSpec arm_wait() override { return ring_.arm_wait(); }
  void disarm_wait() override { ring_.disarm_wait(); }

 private:
  SharedSegment segment_;
  RingConsumer ring_;
};

Result<int> fd_of(std::string_view spec) {
  int fd = -1;
  const std::string_view digits = spec.substr(5);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), fd);
  if (ec != std::errc() || p != digits.data() + digits.size() || fd < 0) return spec_error(spec);
  return fd;
}

}  // namespace

Result<std::unique_ptr<LinkWriter>> open_link_writer(std::string_view spec) {
  if (spec.rfind("shm:", 0) == 0) {
    auto seg = SharedSegment::attach(std::string(spec.substr(4)), kRingSegmentKind);
    if (!seg) return seg.error();
    auto ring = RingProducer::attach(*seg);
    if (!ring) return ring.error();
    return std::unique_ptr<LinkWriter>(new OwnedProducer(std::move(*seg), std::move(*ring)));
  }
  if (spec.rfind("pipe:", 0) == 0) {
    auto fd = fd_of(spec);
    if (!fd) return fd.error();
#ifdef MILLRACE_HAVE_PIPE
    auto pipe = PipeWriter::from_fd(*fd);
    if (!pipe) return pipe.error();
    return std::unique_ptr<LinkWriter>(new PipeWriter(std::move(*pipe)));
#endif
  }
  return spec_error(spec);
}

Result<std::unique_ptr<LinkReader>> open_link_reader(std::string_view spec) {
  if (spec.rfind("shm:", 0) == 0) {
    auto seg = SharedSegment::attach(std::string(spec.substr(4)), kRingSegmentKind);
    if (!seg) return seg.error();
    auto ring = RingConsumer::attach(*seg);
    if (!ring) return ring.error();
    return std::unique_ptr<LinkReader>(new OwnedConsumer(std::move(*seg), std::move(*ring)));
  }
  if (spec.rfind("pipe:", 0) == 0) {
    auto fd = fd_of(spec);
    if (!fd) return fd.error();
#ifdef MILLRACE_HAVE_PIPE
    auto pipe = PipeReader::from_fd(*fd);
    if (!pipe) return pipe.error();
    return std::unique_ptr<LinkReader>(new PipeReader(std::move(*pipe)));
#endif
  }
  return spec_error(spec);
}

std::string shm_link_spec(std::string_view segment_name) {
  return "shm:" + std::string(segment_name);
}

std::string pipe_link_spec(int fd) { return "pipe:" + std::to_string(fd); }

}  // namespace millrace::ipc
