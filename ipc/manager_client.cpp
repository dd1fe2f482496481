#include "ipc/manager_client.hpp"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "ipc/posix_call.hpp"

namespace millrace::ipc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Bumped in every child after fork(): a client remembers the generation it was made in, so a
// child using its parent's lanes is told, without a getpid() system call per call.
std::atomic<std::uint64_t> g_fork_generation{0};
extern "C" void bump_fork_generation() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);  // the child is single-threaded here
}
void register_fork_handler() {
  static std::once_flag once;
  std::call_once(once, [] { ::pthread_atfork(nullptr, nullptr, bump_fork_generation); });
}

Error manager_error(ManagerError code, std::string message, int err = 0) {
  return Error{"manager", static_cast<int>(code), std::move(message), err};
}

std::string ms_text(milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + "s";
  return std::to_string(ms.count()) + "ms";
}

milliseconds left_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? left : milliseconds(0);
}

// One connection of the client: requests on it run in seq order (one at a time, or many in
// flight for a CallPipeline).
struct Lane {
  int fd = -1;
  std::uint32_t id = 0;
  std::uint64_t seq = 0;
  std::vector<std::byte> out;
  std::vector<std::byte> in;
  std::size_t in_used = 0;
  std::int64_t recv_timeout_ms = -1;  // what SO_RCVTIMEO is set to; -1 unknown
  std::uint32_t spin_skip = 0;        // calls left before spinning is tried again
  std::uint32_t spin_misses = 0;      // spins in a row that ended without the reply
  Request request;
  Reply reply;

  void close_fd() {
    // Never shutdown(): a child forked while this lane was open shares the socket.
    if (fd >= 0) ::close(fd);
    fd = -1;
    in_used = 0;
    recv_timeout_ms = -1;
  }
  ~Lane() { close_fd(); }
};

// The outcome of one attempt at something that a manager restart interrupts.
struct Attempt {
  enum Kind { kOk, kRetry, kFail } kind = kOk;
  Error error;

  static Attempt ok() { return {}; }
  static Attempt retry(Error e) { return {kRetry, std::move(e)}; }
  static Attempt fail(Error e) { return {kFail, std::move(e)}; }
};

Attempt set_timeout(Lane& lane, int option, milliseconds timeout) {
  timeval tv{};
  const auto ms = std::max<std::int64_t>(timeout.count(), 1);  // 0 would mean "forever"
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  if (::setsockopt(lane.fd, SOL_SOCKET, option, &tv, sizeof tv) != 0) {
    return Attempt::retry(sys_error("manager", "setsockopt", "manager socket", errno));
  }
  if (option == SO_RCVTIMEO) lane.recv_timeout_ms = ms;
  return Attempt::ok();
}

Attempt send_all(Lane& lane, std::span<const std::byte> data, Clock::time_point deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(lane.fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data = data.subspan(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && Clock::now() < deadline) continue;
    return Attempt::retry(sys_error("manager", "send", "manager socket", n < 0 ? errno : EPIPE));
  }
  return Attempt::ok();
}

// Waiting for a reply spins first, when another CPU can run the manager meanwhile: a sleep and
// wake-up (tens of microseconds on a virtual machine, where an idle CPU must be woken) costs
// more than the whole request. The spin is bounded and polite: after kSpinAlone it yields the
// CPU at every turn, so with more processes than CPUs the manager and the other clients run
// instead of waiting behind spinners. It is adaptive: spins that end without the reply (a busy
// machine, a slow request) skip spinning for 1, 3, 7, ... up to kSpinSkip calls of the lane,
// so a loaded machine sees plain blocking waits while one late reply costs little.
constexpr auto kSpinLimit = std::chrono::microseconds(100);
constexpr auto kSpinAlone = std::chrono::microseconds(15);  // a quick reply comes within this
constexpr std::uint32_t kSpinSkip = 255;
constexpr std::uint32_t kSpinMaxMisses = 8;  // (1 << 8) - 1 == kSpinSkip

bool spinning_can_help() {
  static const bool many_cpus = ::sysconf(_SC_NPROCESSORS_ONLN) > 1;
  return many_cpus;
}

// Polls the socket without sleeping for up to kSpinLimit. True when a whole frame arrived.
bool spin_for_frame(Lane& lane) {
  const auto begin = Clock::now();
  const auto until = begin + kSpinLimit;
  for (;;) {
    const FrameCheck check = check_frame(std::span<const std::byte>(lane.in.data(), lane.in_used));
    if (check.state != FrameState::kIncomplete) return true;
    const std::size_t want = std::max<std::size_t>(kFramePrefixSize + check.message_size,
                                                   lane.in_used + 4096);
    if (lane.in.size() < want) lane.in.resize(std::max(want, lane.in.size() * 2));
    const ssize_t n = ::recv(lane.fd, lane.in.data() + lane.in_used, lane.in.size() - lane.in_used,
                             MSG_DONTWAIT);
    if (n > 0) {
      lane.in_used += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return false;
    const auto now = Clock::now();
    if (now >= until) return false;
    if (now - begin >= kSpinAlone) ::sched_yield();
  }
}

// Reads until lane.in holds one whole frame; its message is lane.in[4, 4 + size). `spin`: the
// reply to a request just sent (worth spinning for).
Attempt read_frame(Lane& lane, Clock::time_point deadline, std::size_t& size, bool spin = false) {
  if (spin && spinning_can_help()) {
    if (lane.spin_skip > 0) {
      --lane.spin_skip;
    } else if (spin_for_frame(lane)) {
      lane.spin_misses = 0;
    } else {
      lane.spin_misses = std::min(lane.spin_misses + 1, kSpinMaxMisses);
      lane.spin_skip = std::min(kSpinSkip, (1u << lane.spin_misses) - 1);
    }
  }
  for (;;) {
    const FrameCheck check = check_frame(std::span<const std::byte>(lane.in.data(), lane.in_used));
    if (check.state == FrameState::kOversized) {
      return Attempt::fail(manager_error(
          ManagerError::kProtocol, "the manager sent a frame of " +
                                       std::to_string(check.message_size) +
                                       " bytes, over the protocol's limit: is it the same build?"));
    }
    if (check.state == FrameState::kComplete) {
      size = check.message_size;
      return Attempt::ok();
    }
    const std::size_t want = std::max<std::size_t>(
        check.state == FrameState::kIncomplete ? kFramePrefixSize + check.message_size : 0,
        lane.in_used + 4096);
    if (lane.in.size() < want) lane.in.resize(std::max(want, lane.in.size() * 2));
    // SO_RCVTIMEO bounds the wait; reset it only when it would overshoot the deadline by much
    // (or cut it needlessly short), so a steady stream of calls costs no extra system call.
    const milliseconds left = left_until(deadline);
    if (left.count() == 0) {
      // Retrying is pointless (the deadline has passed) but closing is right: the server then
      // cancels whatever it parked for this connection.
      return Attempt::retry(manager_error(ManagerError::kUnreachable,
                                          "the manager did not answer in time (is it stopped "
                                          "or overloaded?)"));
    }
    if (lane.recv_timeout_ms < 0 || lane.recv_timeout_ms > left.count() + 20 ||
        lane.recv_timeout_ms * 2 < left.count()) {
      Attempt set = set_timeout(lane, SO_RCVTIMEO, left);
      if (set.kind != Attempt::kOk) return set;
    }
    const ssize_t n = ::recv(lane.fd, lane.in.data() + lane.in_used, lane.in.size() - lane.in_used, 0);
    if (n > 0) {
      lane.in_used += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;  // the deadline decides
    if (n == 0) {
      return Attempt::retry(manager_error(ManagerError::kUnreachable,
                                          "the manager closed the connection"));
    }
    return Attempt::retry(sys_error("manager", "recv", "manager socket", errno));
  }
}

void consume_frame(Lane& lane, std::size_t size) {
  const std::size_t used = kFramePrefixSize + size;
  std::memmove(lane.in.data(), lane.in.data() + used, lane.in_used - used);
  lane.in_used -= used;
}

std::span<const std::byte> frame_message(const Lane& lane, std::size_t size) {
  return std::span<const std::byte>(lane.in.data() + kFramePrefixSize, size);
}

Error forked_error() {
  return manager_error(ManagerError::kForked,
                       "this ManagerClient was connected by the parent of this process: "
                       "connect a new one in the child after fork()");
}

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  while (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
  }
  return v;
}

}  // namespace

struct ManagerClient::Impl {
  std::filesystem::path socket_path;
  std::filesystem::path secret_path;
  std::string socket_text;
  std::uint64_t client_id = random_u64();
  std::uint64_t fork_generation = g_fork_generation.load(std::memory_order_relaxed);
  // A setting read at the start of each call; it orders nothing else, hence relaxed.
  std::atomic<std::int64_t> call_timeout_ms{5000};

  mutable std::mutex mutex;  // guards everything below
  SipKey key;
  std::vector<std::unique_ptr<Lane>> idle;
  std::uint32_t next_lane = 0;
  std::size_t open_lanes = 0;

  std::unique_ptr<Lane> take() {
    std::lock_guard lock(mutex);
    if (!idle.empty()) {
      std::unique_ptr<Lane> lane = std::move(idle.back());
      idle.pop_back();
      return lane;
    }
    auto lane = std::make_unique<Lane>();
    lane->id = next_lane++;
    return lane;
  }
  void give(std::unique_ptr<Lane> lane) {
    std::lock_guard lock(mutex);
    idle.push_back(std::move(lane));
  }
  SipKey current_key() const {
    std::lock_guard lock(mutex);
    return key;
  }

  Error unreachable(milliseconds waited, const Error& last) const {
    return manager_error(ManagerError::kUnreachable,
                         "cannot reach the manager at " + socket_text + " within " +
                             ms_text(waited) + " (last attempt: " + last.what() +
                             "); it may be down or restarting: check its state with "
                             "`millrace stats CONFIG`",
                         last.sys_errno);
  }

  // One connection and handshake.
  Attempt connect_once(Lane& lane, Clock::time_point deadline) {
    lane.close_fd();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_text.size() >= sizeof addr.sun_path) {
      return Attempt::fail(manager_error(
          ManagerError::kUnreachable, "the manager socket path " + socket_text +
                                          " is too long for a Unix socket: use a shorter "
                                          "pipeline.run_dir"));
    }
    std::memcpy(addr.sun_path, socket_text.c_str(), socket_text.size() + 1);
    lane.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lane.fd < 0) return Attempt::fail(sys_error("manager", "socket", socket_text, errno));
    {
      std::lock_guard lock(mutex);
      ++open_lanes;
    }
    // Bounds connect() (a full backlog) and later sends; send_all() retries up to its deadline.
    Attempt timeout = set_timeout(lane, SO_SNDTIMEO,
                                  std::clamp(left_until(deadline), milliseconds(10), milliseconds(1000)));
    if (timeout.kind != Attempt::kOk) return timeout;
    if (::connect(lane.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      const int err = errno;
      Error e = sys_error("manager", "connect", socket_text, err);
      if (err == EACCES || err == ENOTSOCK) return Attempt::fail(std::move(e));
      return Attempt::retry(std::move(e));
    }
    std::size_t size = 0;
    Attempt got = read_frame(lane, deadline, size);
    if (got.kind != Attempt::kOk) return got;
    auto hello = decode_from<ServerHello>(frame_message(lane, size));
    consume_frame(lane, size);
    if (!hello) {
      return Attempt::fail(manager_error(ManagerError::kProtocol,
                                         "the process at " + socket_text +
                                             " does not speak the manager protocol: " +
                                             hello.error().what()));
    }
    if (hello->protocol_version != kManagerProtocolVersion) {
      return Attempt::fail(manager_error(
          ManagerError::kVersion, "the manager at " + socket_text + " speaks protocol version " +
                                      std::to_string(hello->protocol_version) +
                                      ", this program speaks " +
                                      std::to_string(kManagerProtocolVersion) +
                                      ": run every process of the pipeline from the same build"));
    }
    auto nonce = random_nonce();
    if (!nonce) return Attempt::fail(nonce.error());
    const SipKey k = current_key();
    ClientHello mine;
    mine.client_id = client_id;
    mine.lane = lane.id;
    mine.pid = static_cast<std::int32_t>(::getpid());
    mine.nonce = *nonce;
    mine.proof = auth_digest(k, 'C', hello->nonce);
    lane.out.clear();
    append_frame(mine, lane.out);
    Attempt sent = send_all(lane, lane.out, deadline);
    if (sent.kind != Attempt::kOk) return sent;
    got = read_frame(lane, deadline, size);
    if (got.kind != Attempt::kOk) return got;
    auto welcome = decode_from<Welcome>(frame_message(lane, size));
    consume_frame(lane, size);
    if (!welcome) {
      return Attempt::fail(manager_error(ManagerError::kProtocol,
                                         "bad welcome from the manager at " + socket_text + ": " +
                                             welcome.error().what()));
    }
    if (!welcome->accepted) {
      const auto code = static_cast<ManagerError>(welcome->error_code);
      if (code == ManagerError::kAuthFailed && reload_secret()) {
        return Attempt::retry(manager_error(code, welcome->error));  // the run renewed it
      }
      return Attempt::fail(manager_error(code, "the manager at " + socket_text +
                                                   " refused this client: " + welcome->error));
    }
    if (welcome->proof != auth_digest(k, 'S', *nonce)) {
      return Attempt::fail(manager_error(
          ManagerError::kAuthFailed,
          "the process at " + socket_text +
              " could not prove it knows the run's secret: it is not this run's manager"));
    }
    return Attempt::ok();
  }

  // True when the secret file now holds another secret than the one in use.
  bool reload_secret() {
    auto fresh = read_secret(secret_path);
    if (!fresh) return false;
    std::lock_guard lock(mutex);
    if (fresh->k0 == key.k0 && fresh->k1 == key.k1) return false;
    key = *fresh;
    return true;
  }

  void drop(Lane& lane) {
    if (lane.fd >= 0) {
      lane.close_fd();
      std::lock_guard lock(mutex);
      --open_lanes;
    }
  }

  // Connects `lane`, retrying while the manager is down, until `deadline`.
  Status open_lane(Lane& lane, Clock::time_point start, Clock::time_point deadline) {
    milliseconds backoff(1);
    for (;;) {
      Attempt a = connect_once(lane, deadline);
      if (a.kind == Attempt::kOk) return ok_status();
      drop(lane);
      if (a.kind == Attempt::kFail) return a.error;
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        return unreachable(std::chrono::duration_cast<milliseconds>(deadline - start), a.error);
      }
      // Waiting for a manager that is restarting: nothing to wake us but time. The last wait
      // ends at the deadline, for one more attempt there.
      std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
      backoff = std::min(backoff * 2, milliseconds(50));
    }
  }

  // Sends lane.request and reads its reply into lane.reply, reconnecting and resending the same
  // seq while the manager is down. A blocking op's park time shrinks by the time already spent.
  Status run(Lane& lane, milliseconds park) {
    const Clock::time_point start = Clock::now();
    const milliseconds budget(call_timeout_ms.load(std::memory_order_relaxed));
    const Clock::time_point deadline = start + budget + park;
    const Clock::time_point park_end = start + park;
    lane.request.seq = ++lane.seq;
    lane.request.acked = lane.seq - 1;  // one request in flight: every earlier reply was read
    bool encoded = false;
    for (;;) {
      if (lane.fd < 0) {
        Status opened = open_lane(lane, start, deadline);
        if (!opened) return opened;
        encoded = false;
      }
      if (!encoded) {
        if (park.count() > 0) {
          for (Op& op : lane.request.ops) {
            if (op.timeout_ms > 0) op.timeout_ms = left_until(park_end).count();
          }
        }
        lane.out.clear();
        const std::size_t size = append_frame(lane.request, lane.out);
        if (size > kMaxFrameSize) {
          return manager_error(ManagerError::kTooLarge,
                               "a request to the manager takes " + std::to_string(size) +
                                   " bytes, over the limit of " + std::to_string(kMaxFrameSize) +
                                   ": store smaller values, or split the batch");
        }
        encoded = true;
      }
      Attempt a = send_all(lane, lane.out, deadline);
      std::size_t size = 0;
      if (a.kind == Attempt::kOk) a = read_frame(lane, deadline, size, true);
      if (a.kind == Attempt::kRetry) {
        drop(lane);
        if (Clock::now() >= deadline) {
          return unreachable(std::chrono::duration_cast<milliseconds>(deadline - start), a.error);
        }
        continue;
      }
      if (a.kind == Attempt::kFail) {
        drop(lane);  // the stream is out of step: start afresh on the next call
        return a.error;
      }
      Status decoded = decode(frame_message(lane, size), lane.reply);
      consume_frame(lane, size);
      if (!decoded) {
        drop(lane);
        return manager_error(ManagerError::kProtocol,
                             "bad reply from the manager at " + socket_text + ": " +
                                 decoded.error().what());
      }
      if (lane.reply.seq != lane.request.seq || !lane.reply.error.empty()) {
        if (lane.reply.error.empty()) {
          drop(lane);
          return manager_error(ManagerError::kProtocol,
                               "the manager answered request " + std::to_string(lane.reply.seq) +
                                   " to request " + std::to_string(lane.request.seq));
        }
        const auto code = lane.reply.error_code != 0
                              ? static_cast<ManagerError>(lane.reply.error_code)
                              : ManagerError::kBadRequest;
        return manager_error(code, "the manager refused the request: " + lane.reply.error);
      }
      if (lane.reply.results.size() != lane.request.ops.size()) {
        drop(lane);
        return manager_error(ManagerError::kProtocol,
                             "the manager answered " + std::to_string(lane.reply.results.size()) +
                                 " ops of " + std::to_string(lane.request.ops.size()));
      }
      return ok_status();
    }
  }
};

ManagerClient::ManagerClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ManagerClient::ManagerClient(ManagerClient&& other) noexcept = default;
ManagerClient& ManagerClient::operator=(ManagerClient&& other) noexcept = default;
ManagerClient::~ManagerClient() = default;

Result<ManagerClient> ManagerClient::connect(const std::filesystem::path& socket_path,
                                             const std::filesystem::path& secret_path,
                                             std::chrono::milliseconds timeout) {
  register_fork_handler();
  auto key = read_secret(secret_path);
  if (!key) return key.error();
  auto impl = std::make_unique<Impl>();
  impl->socket_path = socket_path;
  impl->secret_path = secret_path;
  impl->socket_text = socket_path.string();
  impl->key = *key;
  impl->call_timeout_ms.store(timeout.count(), std::memory_order_relaxed);
  std::unique_ptr<Lane> lane = impl->take();
  const Clock::time_point start = Clock::now();
  Status opened = impl->open_lane(*lane, start, start + timeout);
  if (!opened) return opened.error();
  impl->give(std::move(lane));
  return ManagerClient(std::move(impl));
}

void ManagerClient::set_call_timeout(std::chrono::milliseconds timeout) {
  impl_->call_timeout_ms.store(timeout.count(), std::memory_order_relaxed);
}

std::chrono::milliseconds ManagerClient::call_timeout() const {
  return milliseconds(impl_->call_timeout_ms.load(std::memory_order_relaxed));
}

const std::filesystem::path& ManagerClient::socket_path() const { return impl_->socket_path; }

std::size_t ManagerClient::lanes() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->open_lanes;
}

Result<std::vector<OpReply>> ManagerClient::call(std::vector<Op>& ops,
                                                 std::chrono::milliseconds park) {
  assert(impl_ && "ManagerClient used after being moved from");
  if (impl_->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
    return forked_error();
  }
  if (ops.empty()) return std::vector<OpReply>{};
  std::unique_ptr<Lane> lane = impl_->take();
  std::swap(lane->request.ops, ops);
  Status status = impl_->run(*lane, park);
  std::swap(lane->request.ops, ops);
  Result<std::vector<OpReply>> out = status ? Result<std::vector<OpReply>>(std::move(lane->reply.results))
                                            : Result<std::vector<OpReply>>(status.error());
  impl_->give(std::move(lane));
  return out;
}

// The proxies' path: the op is copied into the lane's own request, whose strings keep their
// capacity from call to call, so a steady stream of calls allocates nothing for the request.
Result<OpReply> ManagerClient::call_one(const Op& op, std::chrono::milliseconds park) {
  assert(impl_ && "ManagerClient used after being moved from");
  if (impl_->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
    return forked_error();
  }
  std::unique_ptr<Lane> lane = impl_->take();
  lane->request.ops.resize(1);
  lane->request.ops.front() = op;
  Status status = impl_->run(*lane, park);
  Result<OpReply> out = status ? Result<OpReply>(std::move(lane->reply.results.front()))
                               : Result<OpReply>(status.error());
  impl_->give(std::move(lane));
  return out;
}

CounterProxy ManagerClient::counter(std::string name) { return CounterProxy(*this, std::move(name)); }
LockProxy ManagerClient::lock(std::string name) { return LockProxy(*this, std::move(name)); }
EventProxy ManagerClient::event(std::string name) { return EventProxy(*this, std::move(name)); }

Status ManagerClient::write(WriteBatch& batch) {
  if (batch.empty()) return ok_status();
  batch.ops_.resize(batch.used_);
  auto replies = call(batch.ops_, milliseconds(0));
  if (!replies) return replies.error();
  for (std::size_t i = 0; i < replies->size(); ++i) {
    if ((*replies)[i].status != OpStatus::kOk) return detail::op_error(batch.ops_[i], (*replies)[i]);
  }
  batch.clear();
  return ok_status();
}

// --- CallPipeline ---------------------------------------------------------------------------

struct CallPipeline::State {
  ManagerClient::Impl* impl = nullptr;
  std::uint64_t fork_generation = g_fork_generation.load(std::memory_order_relaxed);
  std::unique_ptr<Lane> lane;
  std::size_t depth = kDefaultPipelineDepth;
  // The encoded Requests not answered yet, oldest first, back to back in window[head, end);
  // sizes[i] is the frame size of each. The first `sent` bytes from head are on the wire. After
  // a reconnect they are all sent again, unchanged: their `acked` marks are still true.
  std::vector<std::byte> window;
  std::size_t head = 0;
  std::size_t sent = 0;
  std::deque<std::size_t> sizes;
  std::uint64_t first_seq = 0;  // seq of the oldest unanswered call
  std::vector<OpReply> replies;
  std::optional<Error> broken;
  Op scratch;
  Reply reply;

  [[nodiscard]] std::size_t queued_bytes() const { return window.size() - head; }
  // In a child forked while the pipeline lived: the lane's socket is the parent's.
  [[nodiscard]] bool forked() const {
    return fork_generation != g_fork_generation.load(std::memory_order_relaxed);
  }

  Status submit(const Op& op) {
    if (forked()) return forked_error();
    if (broken) return *broken;
    if (is_blocking_op(op.code)) {
      return manager_error(ManagerError::kBadRequest,
                           std::string("manager ") + std::string(op_name(op.code)) + " on '" +
                               op.object + "' blocks, and a pipeline cannot wait for one call: "
                               "use the proxy");
    }
    lane->request.seq = lane->seq + 1;
    lane->request.acked = sizes.empty() ? lane->seq : first_seq - 1;
    lane->request.ops.resize(1);
    lane->request.ops.front() = op;
    const std::size_t before = window.size();
    const std::size_t size = append_frame(lane->request, window);
    if (size > kMaxFrameSize) {
      window.resize(before);
      return manager_error(ManagerError::kTooLarge,
                           "a request to the manager takes " + std::to_string(size) +
                               " bytes, over the limit of " + std::to_string(kMaxFrameSize) +
                               ": store smaller values");
    }
    if (sizes.empty()) first_seq = lane->request.seq;
    ++lane->seq;
    sizes.push_back(window.size() - before);
    if (sizes.size() >= depth) return pump(depth / 2);
    return ok_status();
  }

  // Sends everything queued and reads replies until at most `keep` calls are unanswered,
  // reconnecting and resending while the manager is down. Sending never blocks while replies
  // wait to be read, so a server that stops reading until its replies are taken cannot
  // deadlock with us.
  Status pump(std::size_t keep) {
    if (forked()) return forked_error();
    if (broken) return *broken;
    const milliseconds budget(impl->call_timeout_ms.load(std::memory_order_relaxed));
    Clock::time_point start = Clock::now();
    Clock::time_point deadline = start + budget;
    for (;;) {
      if (lane->fd < 0) {
        Status opened = impl->open_lane(*lane, start, deadline);
        if (!opened) return fail(opened.error());
        sent = 0;
      }
      Attempt a = send_some();
      if (a.kind == Attempt::kOk) {
        const std::size_t answered = replies.size();
        a = take_replies();
        if (replies.size() != answered) deadline = Clock::now() + budget;  // progress
      }
      if (a.kind == Attempt::kOk) {
        if (sizes.size() <= keep && sent == queued_bytes()) return ok_status();
        a = wait_for_io(deadline);
      }
      if (a.kind == Attempt::kFail) return fail(a.error);
      if (a.kind == Attempt::kRetry) {
        impl->drop(*lane);
        if (Clock::now() >= deadline) {
          return fail(impl->unreachable(std::chrono::duration_cast<milliseconds>(deadline - start),
                                        a.error));
        }
      }
    }
  }

  Attempt send_some() {
    while (sent < queued_bytes()) {
      const ssize_t n = ::send(lane->fd, window.data() + head + sent, queued_bytes() - sent,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Attempt::ok();
      return Attempt::retry(sys_error("manager", "send", "manager socket", n < 0 ? errno : EPIPE));
    }
    return Attempt::ok();
  }

  // Blocks until the socket can take more (while some is unsent) or a reply frame arrives.
  Attempt wait_for_io(Clock::time_point deadline) {
    if (sent == queued_bytes()) {
      std::size_t size = 0;
      return read_frame(*lane, deadline, size, true);  // take_replies() consumes it
    }
    pollfd p{lane->fd, POLLIN | POLLOUT, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left_until(deadline).count(), 1)));
    if (rc < 0 && errno != EINTR) return Attempt::retry(sys_error("manager", "poll", "manager socket", errno));
    if (rc == 0 && Clock::now() >= deadline) {
      return Attempt::retry(manager_error(ManagerError::kUnreachable,
                                          "the manager did not take the requests in time"));
    }
    if ((p.revents & POLLIN) != 0) {
      if (lane->in.size() < lane->in_used + 4096) {
        lane->in.resize(std::max(lane->in.size() * 2, lane->in_used + 64 * 1024));
      }
      const ssize_t n = ::recv(lane->fd, lane->in.data() + lane->in_used,
                               lane->in.size() - lane->in_used, MSG_DONTWAIT);
      if (n > 0) {
        lane->in_used += static_cast<std::size_t>(n);
      } else if (n == 0) {
        return Attempt::retry(manager_error(ManagerError::kUnreachable,
                                            "the manager closed the connection"));
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return Attempt::retry(sys_error("manager", "recv", "manager socket", errno));
      }
    } else if ((p.revents & (POLLERR | POLLHUP)) != 0) {
      return Attempt::retry(manager_error(ManagerError::kUnreachable,
                                          "the manager closed the connection"));
    }
    return Attempt::ok();
  }

  // Takes every whole reply frame already received, in order.
  Attempt take_replies() {
    std::size_t at = 0;
    Attempt result = Attempt::ok();
    while (!sizes.empty()) {
      const auto rest = std::span<const std::byte>(lane->in.data() + at, lane->in_used - at);
      const FrameCheck check = check_frame(rest);
      if (check.state == FrameState::kIncomplete) break;
      if (check.state == FrameState::kOversized) {
        result = Attempt::fail(manager_error(ManagerError::kProtocol,
                                             "the manager sent a frame of " +
                                                 std::to_string(check.message_size) +
                                                 " bytes, over the protocol's limit"));
        break;
      }
      Status decoded = decode(rest.subspan(kFramePrefixSize, check.message_size), reply);
      at += kFramePrefixSize + check.message_size;
      if (!decoded || reply.seq != first_seq ||
          (reply.error.empty() && reply.results.size() != 1)) {
        result = Attempt::fail(manager_error(
            ManagerError::kProtocol,
            "bad reply from the manager at " + impl->socket_text + " to request " +
                std::to_string(first_seq) + ": " +
                (decoded ? "it answered request " + std::to_string(reply.seq) + " with " +
                               std::to_string(reply.results.size()) + " results"
                         : decoded.error().what())));
        break;
      }
      if (!reply.error.empty()) {
        OpReply refused;
        refused.status = OpStatus::kFailed;
        refused.error = "the manager refused the request: " + reply.error;
        replies.push_back(std::move(refused));
      } else {
        replies.push_back(std::move(reply.results.front()));
      }
      head += sizes.front();
      sent -= sizes.front();
      sizes.pop_front();
      ++first_seq;
    }
    if (at > 0) {
      std::memmove(lane->in.data(), lane->in.data() + at, lane->in_used - at);
      lane->in_used -= at;
    }
    if (head > 0 && head >= window.size() / 2) {
      window.erase(window.begin(), window.begin() + static_cast<std::ptrdiff_t>(head));
      head = 0;
    }
    return result;
  }

  Status fail(Error e) {
    impl->drop(*lane);  // the stream may be out of step: the lane's next call starts afresh
    window.clear();
    head = sent = 0;
    sizes.clear();
    broken = e;
    return e;
  }
};

CallPipeline::CallPipeline(std::unique_ptr<State> state) : state_(std::move(state)) {}
CallPipeline::CallPipeline(CallPipeline&& other) noexcept = default;

CallPipeline& CallPipeline::operator=(CallPipeline&& other) noexcept {
  if (this != &other) {
    CallPipeline old(std::move(*this));  // finishes the calls in flight, returns the lane
    state_ = std::move(other.state_);
  }
  return *this;
}

CallPipeline::~CallPipeline() {
  if (!state_) return;
  if (state_->forked()) {
    state_->lane->close_fd();  // never write to the parent's socket; the parent's copy stays
    return;
  }
  if (!state_->sizes.empty()) (void)state_->pump(0);
  state_->impl->give(std::move(state_->lane));
}

Status CallPipeline::submit(const Op& op) {
  assert(state_ && "CallPipeline used after being moved from");
  return state_->submit(op);
}

Status CallPipeline::counter_add(std::string_view counter, std::int64_t delta) {
  Op& op = scratch(OpCode::kCounterAdd, counter);
  op.number = delta;
  return submit(op);
}

Op& CallPipeline::scratch(OpCode code, std::string_view object) {
  Op& op = state_->scratch;
  op = Op{};
  op.code = code;
  op.object = object;
  return op;
}

Result<std::vector<OpReply>> CallPipeline::flush() {
  assert(state_ && "CallPipeline used after being moved from");
  Status pumped = state_->pump(0);
  if (!pumped) return pumped.error();
  std::vector<OpReply> out;
  out.swap(state_->replies);
  return out;
}

std::size_t CallPipeline::pending() const { return state_->replies.size() + state_->sizes.size(); }

std::vector<OpReply> CallPipeline::take_answered() {
  assert(state_ && "CallPipeline used after being moved from");
  std::vector<OpReply> out;
  if (state_->broken) out.swap(state_->replies);
  return out;
}

CallPipeline ManagerClient::pipeline(std::size_t depth) {
  assert(impl_ && "ManagerClient used after being moved from");
  auto state = std::make_unique<CallPipeline::State>();
  state->impl = impl_.get();
  state->lane = impl_->take();
  // The server keeps replies for at most kMaxPipelineDepth unacknowledged calls of a lane.
  state->depth = std::clamp<std::size_t>(depth, 1, kMaxPipelineDepth);
  if (impl_->fork_generation != g_fork_generation.load(std::memory_order_relaxed)) {
    state->broken = forked_error();
  }
  return CallPipeline(std::move(state));
}

// --- detail ---------------------------------------------------------------------------------

namespace detail {

Op make_op(OpCode code, const std::string& object) {
  Op op;
  op.code = code;
  op.object = object;
  return op;
}

Error op_error(const Op& op, const OpReply& reply, std::string_view wanted) {
  std::string where = std::string(kind_name(kind_of(op.code))) + " '" + op.object + "'";
  if (!op.key.empty()) where += " key '" + op.key + "'";
  const std::string context = reply.error.empty() ? "" : ": " + reply.error;
  switch (reply.status) {
    case OpStatus::kOk: break;
    case OpStatus::kNotFound:
      return manager_error(ManagerError::kBadRequest, "manager: " + where + " not found" + context);
    case OpStatus::kTimeout: {
      std::string what;
      if (op.code == OpCode::kLockAcquire) {
        what = "lock '" + op.object + "' is held by another client: not acquired within ";
      } else if (op.code == OpCode::kQueuePut) {
        what = "queue '" + op.object + "' stayed full for ";
      } else if (op.code == OpCode::kQueueGet) {
        what = "queue '" + op.object + "' stayed empty for ";
      } else {
        what = where + " was not ready within ";
      }
      return manager_error(ManagerError::kTimeout, "manager: " + what + ms_text(milliseconds(op.timeout_ms)));
    }
    case OpStatus::kTypeMismatch: {
      const auto tag = static_cast<std::uint32_t>(static_cast<std::uint64_t>(reply.number) & 0xffffffffu);
      const auto version = static_cast<std::uint32_t>(static_cast<std::uint64_t>(reply.number) >> 32);
      return manager_error(ManagerError::kTypeMismatch,
                           "manager: " + where + " holds " + describe_tag(tag) + " version " +
                               std::to_string(version) + ", not " + std::string(wanted) +
                               " version " + std::to_string(op.type_version) +
                               ": read it with the type it was written with");
    }
    case OpStatus::kLockLost:
      return manager_error(ManagerError::kLockLost,
                           "manager: lock '" + op.object + "' (token " + std::to_string(op.token) +
                               ") was no longer held by this client" + context +
                               "; what it protected may have been changed by another holder");
    case OpStatus::kOutOfRange:
      return manager_error(ManagerError::kOutOfRange, "manager: " + where + context);
    case OpStatus::kFailed:
      return manager_error(ManagerError::kBadRequest, "manager: " + std::string(op_name(op.code)) +
                                                          " on " + where + context);
  }
  return manager_error(ManagerError::kProtocol, "manager: " + where + ": unknown reply status " +
                                                    std::to_string(static_cast<int>(reply.status)));
}

}  // namespace detail

// --- CounterProxy, LockProxy, EventProxy, WriteBatch ------------------------------------------

Result<std::int64_t> CounterProxy::add(std::int64_t delta) {
  Op op = detail::make_op(OpCode::kCounterAdd, name_);
  op.number = delta;
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return reply->number;
}

Result<std::int64_t> CounterProxy::get() {
  Op op = detail::make_op(OpCode::kCounterGet, name_);
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return reply->number;
}

Result<LockLease> LockProxy::acquire(std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds lease) {
  assert(lease.count() > 0 && "a lock lease must be positive");
  assert(timeout.count() >= 0 && "a negative timeout");
  Op op = detail::make_op(OpCode::kLockAcquire, name_);
  op.timeout_ms = timeout.count();
  op.lease_ms = lease.count();
  auto reply = client_->call_one(op, timeout);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  LockLease out;
  out.lock = name_;
  out.token = static_cast<std::uint64_t>(reply->number);
  out.lease = milliseconds(reply->lease_ms);
  out.expires = Clock::now() + out.lease;
  return out;
}

Status LockProxy::release(const LockLease& lease) {
  assert(lease.lock == name_ && "releasing a lease of another lock");
  Op op = detail::make_op(OpCode::kLockRelease, name_);
  op.token = lease.token;
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return ok_status();
}

Result<bool> LockProxy::held(const LockLease& lease) {
  assert(lease.lock == name_ && "asking about a lease of another lock");
  Op op = detail::make_op(OpCode::kLockHeld, name_);
  op.token = lease.token;
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return reply->flag;
}

Status EventProxy::set() {
  Op op = detail::make_op(OpCode::kEventSet, name_);
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return ok_status();
}

Status EventProxy::clear() {
  Op op = detail::make_op(OpCode::kEventClear, name_);
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return ok_status();
}

Result<bool> EventProxy::is_set() {
  Op op = detail::make_op(OpCode::kEventIsSet, name_);
  auto reply = client_->call_one(op);
  if (!reply) return reply.error();
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return reply->flag;
}

Result<bool> EventProxy::wait(std::chrono::milliseconds timeout) {
  assert(timeout.count() >= 0 && "a negative timeout");
  Op op = detail::make_op(OpCode::kEventWait, name_);
  op.timeout_ms = timeout.count();
  auto reply = client_->call_one(op, timeout);
  if (!reply) return reply.error();
  if (reply->status == OpStatus::kTimeout) return false;
  if (reply->status != OpStatus::kOk) return detail::op_error(op, *reply);
  return true;
}

Op& WriteBatch::next(OpCode code, std::string_view object) {
  if (used_ == ops_.size()) ops_.emplace_back();
  Op& op = ops_[used_++];
  op.code = code;
  op.object = object;
  op.key.clear();
  op.value.clear();
  op.number = 0;
  op.number2 = 0;
  op.type_tag = 0;
  op.type_version = 0;
  op.timeout_ms = 0;
  op.lease_ms = 0;
  op.token = 0;
  return op;
}

void WriteBatch::counter_add(std::string_view counter, std::int64_t delta) {
  next(OpCode::kCounterAdd, counter).number = delta;
}

void WriteBatch::dict_erase(std::string_view dict, std::string_view key) {
  next(OpCode::kDictErase, dict).key = key;
}

// --- Pipeline helpers -----------------------------------------------------------------------

Result<LiveSettings> read_live_settings(ManagerClient& client, const LiveSettings& defaults) {
  const std::string dict(kSettingsDict);
  std::vector<Op> ops;
  ops.push_back(detail::make_typed_read<double>(OpCode::kDictGet, dict));
  ops.back().key = kRateLimitKey;
  ops.push_back(detail::make_typed_read<bool>(OpCode::kDictGet, dict));
  ops.back().key = kPausedKey;
  auto replies = client.call(ops, milliseconds(0));
  if (!replies) return replies.error();
  LiveSettings out = defaults;
  const OpReply& rate = (*replies)[0];
  if (rate.status == OpStatus::kOk) {
    auto v = detail::decode_value<double>(ops[0], rate.value);
    if (!v) return v.error();
    out.rate_limit = *v;
  } else if (rate.status != OpStatus::kNotFound) {
    return detail::op_error(ops[0], rate, transfer_name<double>());
  }
  const OpReply& paused = (*replies)[1];
  if (paused.status == OpStatus::kOk) {
    auto v = detail::decode_value<bool>(ops[1], paused.value);
    if (!v) return v.error();
    out.paused = *v;
  } else if (paused.status != OpStatus::kNotFound) {
    return detail::op_error(ops[1], paused, transfer_name<bool>());
  }
  return out;
}

std::string reject_list_name(std::string_view reason) {
  return std::string(kRejectsDict) + "/" + std::string(reason);
}

Status sample_reject(ManagerClient& client, std::string_view reason, std::string_view record_text,
                     std::size_t per_reason) {
  assert(per_reason > 0 && "keep at least one sample per reason");
  // Reasons already full, per manager socket: a stage rejecting many records then costs the
  // manager nothing once it has its samples.
  static std::mutex full_mutex;
  static std::set<std::string> full;
  const std::string memo = client.socket_path().string() + '\n' + std::string(reason);
  {
    std::lock_guard lock(full_mutex);
    if (full.count(memo) != 0) return ok_status();
  }
  const std::string list = reject_list_name(reason);
  std::vector<Op> ops;
  ops.push_back(detail::make_op(OpCode::kListAppend, list));
  encode_value(std::string(record_text), ops.back().value);
  ops.back().number = static_cast<std::int64_t>(per_reason);
  ops.push_back(detail::make_op(OpCode::kDictSet, std::string(kRejectsDict)));
  ops.back().key = reason;
  encode_value(list, ops.back().value);
  auto replies = client.call(ops, milliseconds(0));
  if (!replies) return replies.error();
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if ((*replies)[i].status != OpStatus::kOk) return detail::op_error(ops[i], (*replies)[i]);
  }
  if (!(*replies)[0].flag) {
    std::lock_guard lock(full_mutex);
    full.insert(memo);
  }
  return ok_status();
}

}  // namespace millrace::ipc
