// Pipelined calls (CallPipeline) and the server limits around them: replies in order, each
// call applied once also when the manager is killed with calls in flight, resends answered
// from the lane's memos, and a connection that cannot make the server buffer without bound.
#include <random>
#include <thread>

#include "tests/manager/manager_test_support.hpp"

namespace millrace::ipc {
namespace {

using namespace std::chrono_literals;
using testing::ManagerProcess;
using testing::RawConnection;
using testing::Signal;
using testing::spawn_child;
using testing::TempDir;
using testing::wait_child;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { manager_.start(); }

  ManagerClient connect() {
    auto client = manager_.connect(5s);
    EXPECT_TRUE(client.ok()) << client.error().what();
    return std::move(client).value();
  }

  TempDir dir_;
  ManagerProcess manager_{dir_.path()};
};

Request counter_request(std::uint64_t seq, std::uint64_t acked, OpCode code, std::string name) {
  Request r;
  r.seq = seq;
  r.acked = acked;
  r.ops.emplace_back();
  r.ops.back().code = code;
  r.ops.back().object = std::move(name);
  r.ops.back().number = 1;
  return r;
}

TEST_F(PipelineTest, RepliesComeBackInOrderAndReadsSeeEarlierWrites) {
  ManagerClient client = connect();
  constexpr int kCalls = 1000;
  CallPipeline pipe = client.pipeline(16);
  for (int i = 1; i <= kCalls; ++i) {
    ASSERT_TRUE(pipe.counter_add("n").ok());
    ASSERT_TRUE(pipe.dict_set<std::int64_t>("d", "k" + std::to_string(i % 7), i).ok());
    ASSERT_TRUE(pipe.dict_get<std::int64_t>("d", "k" + std::to_string(i % 7)).ok());
  }
  EXPECT_EQ(pipe.pending(), 3u * kCalls);
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok()) << replies.error().what();
  ASSERT_EQ(replies->size(), 3u * kCalls);
  EXPECT_EQ(pipe.pending(), 0u);
  for (int i = 1; i <= kCalls; ++i) {
    const OpReply& add = (*replies)[3 * (i - 1)];
    ASSERT_EQ(add.status, OpStatus::kOk);
    EXPECT_EQ(add.number, i) << "counter add " << i;
    auto got = CallPipeline::value_of<std::int64_t>((*replies)[3 * (i - 1) + 2]);
    ASSERT_TRUE(got.ok()) << got.error().what();
    EXPECT_EQ(got->value_or(-1), i) << "the read after set " << i;
  }
  EXPECT_EQ(client.counter("n").get().value(), kCalls);
}

TEST_F(PipelineTest, AReadOfAMissingKeyIsNulloptAndAWrongTypeIsAnError) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.dict<std::string>("d").set("text", "hello").ok());
  CallPipeline pipe = client.pipeline();
  ASSERT_TRUE(pipe.dict_get<std::int64_t>("d", "absent").ok());
  ASSERT_TRUE(pipe.dict_get<std::int64_t>("d", "text").ok());
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok());
  ASSERT_EQ(replies->size(), 2u);
  auto absent = CallPipeline::value_of<std::int64_t>((*replies)[0]);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
  auto wrong = CallPipeline::value_of<std::int64_t>((*replies)[1]);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, static_cast<int>(ManagerError::kTypeMismatch)) << wrong.error().what();
}

TEST_F(PipelineTest, ARefusedCallIsAFailedReplyInItsPlaceAndTheRestRun) {
  ManagerClient client = connect();
  ASSERT_TRUE(client.dict<int>("taken").set("k", 1).ok());
  CallPipeline pipe = client.pipeline();
  ASSERT_TRUE(pipe.counter_add("ok").ok());
  ASSERT_TRUE(pipe.counter_add("taken").ok());  // a dict: the whole request is refused
  ASSERT_TRUE(pipe.counter_add("ok").ok());
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok()) << replies.error().what();
  ASSERT_EQ(replies->size(), 3u);
  EXPECT_EQ((*replies)[0].number, 1);
  EXPECT_EQ((*replies)[1].status, OpStatus::kFailed);
  EXPECT_NE((*replies)[1].error.find("is a dict"), std::string::npos) << (*replies)[1].error;
  EXPECT_EQ((*replies)[2].number, 2);
}

TEST_F(PipelineTest, ABlockingOpIsRefusedAndThePipelineStaysUsable) {
  ManagerClient client = connect();
  CallPipeline pipe = client.pipeline();
  Op acquire = detail::make_op(OpCode::kLockAcquire, "l");
  acquire.lease_ms = 1000;
  Status st = pipe.submit(acquire);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, static_cast<int>(ManagerError::kBadRequest));
  EXPECT_NE(st.error().what().find("use the proxy"), std::string::npos) << st.error().what();
  ASSERT_TRUE(pipe.counter_add("c").ok());
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok());
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_EQ(replies->front().number, 1);
}

TEST_F(PipelineTest, AssigningOverAPipelineFinishesItsCalls) {
  ManagerClient client = connect();
  CallPipeline pipe = client.pipeline(8);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pipe.counter_add("c").ok());
  pipe = client.pipeline(8);
  EXPECT_EQ(client.counter("c").get().value(), 5);
  ASSERT_TRUE(pipe.counter_add("c").ok());
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok());
  EXPECT_EQ(replies->front().number, 6);
}

TEST_F(PipelineTest, APipelineUsedInAForkedChildIsRefused) {
  ManagerClient client = connect();
  CallPipeline pipe = client.pipeline(8);
  ASSERT_TRUE(pipe.counter_add("c").ok());
  const pid_t child = spawn_child([&] {
    Status st = pipe.counter_add("c");
    if (st.ok() || st.error().code != static_cast<int>(ManagerError::kForked)) return 3;
    { CallPipeline dropped = std::move(pipe); }  // must not write to the parent's socket either
    return 0;
  });
  EXPECT_EQ(wait_child(child), 0);
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok()) << replies.error().what();
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_EQ(replies->front().number, 1);
  EXPECT_EQ(client.counter("c").get().value(), 1);
}

TEST_F(PipelineTest, DroppingAPipelineAppliesWhatWasSubmittedAndTheLaneGoesOnInStep) {
  ManagerClient client = connect();
  {
    CallPipeline pipe = client.pipeline(8);
    for (int i = 0; i < 21; ++i) ASSERT_TRUE(pipe.counter_add("c").ok());
  }  // never flushed
  // The same lane serves synchronous calls afterwards, its seq carried on.
  EXPECT_EQ(client.counter("c").add(1).value(), 22);
  EXPECT_EQ(client.lanes(), 1u);
}

TEST_F(PipelineTest, CallsInFlightWhenTheManagerIsKilledApplyOnce) {
  ManagerClient client = connect();
  client.set_call_timeout(10s);
  CallPipeline pipe = client.pipeline(32);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pipe.counter_add("c").ok());
  // Up to 32 calls unanswered (some applied, some not even sent): the pipeline finds the
  // connection dead, reconnects to the new manager and resends them.
  manager_.kill9();
  manager_.start();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pipe.counter_add("c").ok());
  auto replies = pipe.flush();
  ASSERT_TRUE(replies.ok()) << replies.error().what();
  ASSERT_EQ(replies->size(), 200u);
  for (std::size_t i = 0; i < replies->size(); ++i) {
    EXPECT_EQ((*replies)[i].number, static_cast<std::int64_t>(i + 1)) << "call " << i;
  }
  EXPECT_EQ(client.counter("c").get().value(), 200);
}

TEST_F(PipelineTest, APipelineToAManagerThatStaysDownFailsClearlyAndStaysFailed) {
  ManagerClient client = connect();
  client.set_call_timeout(200ms);
  CallPipeline pipe = client.pipeline(4);
  manager_.kill9();
  Status st = ok_status();
  for (int i = 0; i < 4 && st.ok(); ++i) st = pipe.counter_add("c");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, static_cast<int>(ManagerError::kUnreachable)) << st.error().what();
  EXPECT_NE(st.error().what().find(manager_.socket().string()), std::string::npos);
  EXPECT_FALSE(pipe.counter_add("c").ok());
  EXPECT_FALSE(pipe.flush().ok());
  EXPECT_TRUE(pipe.take_answered().empty()) << "no call was answered";
}

TEST_F(PipelineTest, AfterAFailureTheRepliesReceivedBeforeItCanBeTaken) {
  ManagerClient client = connect();
  client.set_call_timeout(200ms);
  CallPipeline pipe = client.pipeline(4);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(pipe.counter_add("c").ok());  // 2 answered, 4 queued
  EXPECT_TRUE(pipe.take_answered().empty()) << "nothing has failed yet";
  manager_.kill9();
  Status st = ok_status();
  for (int i = 0; i < 4 && st.ok(); ++i) st = pipe.counter_add("c");
  ASSERT_FALSE(st.ok());
  const std::vector<OpReply> answered = pipe.take_answered();
  ASSERT_GE(answered.size(), 2u);
  for (std::size_t i = 0; i < answered.size(); ++i) {
    EXPECT_EQ(answered[i].number, static_cast<std::int64_t>(i + 1));
  }
  EXPECT_TRUE(pipe.take_answered().empty());
}

// --- The server side of resends ------------------------------------------------------------

TEST_F(PipelineTest, ResentMutationsAreAnsweredFromMemoryNotAppliedAgain) {
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  constexpr std::uint64_t kClient = 0xC0FFEE;
  std::vector<Reply> first;
  {
    RawConnection raw(manager_.socket());
    auto welcome = raw.authenticate(*key, kManagerProtocolVersion, kClient, 3);
    ASSERT_TRUE(welcome.has_value() && welcome->accepted);
    std::vector<std::byte> frames;
    for (std::uint64_t seq = 1; seq <= 5; ++seq) {
      append_frame(counter_request(seq, 0, OpCode::kCounterAdd, "c"), frames);
    }
    ASSERT_TRUE(raw.send_bytes(frames.data(), frames.size()));
    for (std::uint64_t seq = 1; seq <= 5; ++seq) {
      auto reply = raw.read<Reply>();
      ASSERT_TRUE(reply.has_value());
      ASSERT_EQ(reply->seq, seq);
      first.push_back(std::move(*reply));
    }
  }
  // The replies to 3..5 "were lost": a new connection of the lane resends them.
  RawConnection again(manager_.socket());
  auto welcome = again.authenticate(*key, kManagerProtocolVersion, kClient, 3);
  ASSERT_TRUE(welcome.has_value() && welcome->accepted);
  std::vector<std::byte> frames;
  for (std::uint64_t seq = 3; seq <= 5; ++seq) {
    append_frame(counter_request(seq, 2, OpCode::kCounterAdd, "c"), frames);
  }
  append_frame(counter_request(6, 2, OpCode::kCounterGet, "c"), frames);
  ASSERT_TRUE(again.send_bytes(frames.data(), frames.size()));
  for (std::uint64_t seq = 3; seq <= 5; ++seq) {
    auto reply = again.read<Reply>();
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->seq, seq);
    ASSERT_TRUE(reply->error.empty()) << reply->error;
    ASSERT_EQ(reply->results.size(), 1u);
    EXPECT_EQ(reply->results.front().number, first[seq - 1].results.front().number);
  }
  auto get = again.read<Reply>();
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->results.front().number, 5) << "a resend was applied again";

  // Below the acked mark, or a mutation older than one applied: refused, nothing applied.
  ASSERT_TRUE(again.send_message(counter_request(7, 7, OpCode::kCounterAdd, "c")));
  auto claims = again.read<Reply>();
  ASSERT_TRUE(claims.has_value());
  EXPECT_NE(claims->error.find("claims its own reply"), std::string::npos) << claims->error;
  ASSERT_TRUE(again.send_message(counter_request(2, 1, OpCode::kCounterAdd, "other")));
  auto older = again.read<Reply>();
  ASSERT_TRUE(older.has_value());
  EXPECT_NE(older->error.find("request 2 is older than request 5"), std::string::npos)
      << older->error;
  ManagerClient client = connect();
  EXPECT_EQ(client.counter("c").get().value(), 5);
  EXPECT_EQ(client.counter("other").get().value(), 0);
}

TEST_F(PipelineTest, ResentMutationsAreAnsweredFromMemoryAfterAManagerRestart) {
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  constexpr std::uint64_t kClient = 0xBEEF;
  {
    RawConnection raw(manager_.socket());
    ASSERT_TRUE(raw.authenticate(*key, kManagerProtocolVersion, kClient, 0).has_value());
    std::vector<std::byte> frames;
    for (std::uint64_t seq = 1; seq <= 40; ++seq) {
      append_frame(counter_request(seq, 0, OpCode::kCounterAdd, "c"), frames);
    }
    ASSERT_TRUE(raw.send_bytes(frames.data(), frames.size()));
    for (std::uint64_t seq = 1; seq <= 40; ++seq) ASSERT_TRUE(raw.read<Reply>().has_value());
  }
  manager_.kill9();
  manager_.start();  // the memos come back from the journal
  RawConnection raw(manager_.socket());
  ASSERT_TRUE(raw.authenticate(*key, kManagerProtocolVersion, kClient, 0).has_value());
  std::vector<std::byte> frames;
  for (std::uint64_t seq = 10; seq <= 41; ++seq) {
    append_frame(counter_request(seq, 9, OpCode::kCounterAdd, "c"), frames);
  }
  ASSERT_TRUE(raw.send_bytes(frames.data(), frames.size()));
  for (std::uint64_t seq = 10; seq <= 41; ++seq) {
    auto reply = raw.read<Reply>();
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->seq, seq);
    ASSERT_TRUE(reply->error.empty()) << reply->error;
    ASSERT_EQ(reply->results.size(), 1u);
    EXPECT_EQ(reply->results.front().number, static_cast<std::int64_t>(seq)) << "seq " << seq;
  }
  ManagerClient client = connect();
  EXPECT_EQ(client.counter("c").get().value(), 41);
}

// --- Limits --------------------------------------------------------------------------------

// Requests behind a parked wait on `raw`, sent without blocking until the server has not taken
// any for 2 s (or 64 MiB went). Returns the bytes sent; `at` is the offset in `chunk` where
// sending stopped (the chunk holds whole frames).
std::size_t flood_behind_a_parked_request(RawConnection& raw, const std::vector<std::byte>& chunk,
                                          std::size_t& at) {
  constexpr std::size_t kEnough = 64u << 20;  // far beyond any bound the server keeps
  std::size_t sent = 0;
  at = 0;
  while (sent < kEnough) {
    const ssize_t n = ::send(raw.fd(), chunk.data() + at, chunk.size() - at, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      at = (at + static_cast<std::size_t>(n)) % chunk.size();
      continue;
    }
    EXPECT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << std::strerror(errno);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) break;
    pollfd p{raw.fd(), POLLOUT, 0};
    if (::poll(&p, 1, 2000) == 0) break;  // the server stopped reading
  }
  return sent;
}

std::vector<std::byte> counter_gets(std::size_t bytes, std::size_t& frames) {
  std::vector<std::byte> chunk;
  frames = 0;
  for (std::uint64_t seq = 2; chunk.size() < bytes; ++seq, ++frames) {
    append_frame(counter_request(seq, 1, OpCode::kCounterGet, "c"), chunk);
  }
  return chunk;
}

TEST_F(PipelineTest, AParkedConnectionThatKeepsSendingIsNotReadWithoutBound) {
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  RawConnection raw(manager_.socket());
  ASSERT_TRUE(raw.authenticate(*key).has_value());
  Request wait = counter_request(1, 0, OpCode::kEventWait, "never");
  wait.ops.front().timeout_ms = 60000;
  ASSERT_TRUE(raw.send_message(wait));
  std::size_t frames = 0;
  const std::vector<std::byte> chunk = counter_gets(256 * 1024, frames);
  std::size_t at = 0;
  const std::size_t sent = flood_behind_a_parked_request(raw, chunk, at);
  EXPECT_GE(sent, kMaxFrameSize) << "the server should take one whole frame behind the parked one";
  EXPECT_LT(sent, 8u << 20) << "the server kept reading a parked connection's input";
  // Everyone else is served meanwhile.
  ManagerClient client = connect();
  EXPECT_EQ(client.counter("c").add(1).value(), 1);
}

TEST_F(PipelineTest, RequestsHeldBehindAParkedOneAreAllAnsweredOnceItEnds) {
  auto key = read_secret(manager_.secret());
  ASSERT_TRUE(key.ok());
  RawConnection raw(manager_.socket());
  ASSERT_TRUE(raw.authenticate(*key).has_value());
  Request wait = counter_request(1, 0, OpCode::kEventWait, "never");
  wait.ops.front().timeout_ms = 300;  // parks, then times out: the connection is read again
  ASSERT_TRUE(raw.send_message(wait));
  std::size_t per_chunk = 0;
  const std::vector<std::byte> chunk = counter_gets(64 * 1024, per_chunk);
  std::size_t at = 0;
  std::size_t sent = flood_behind_a_parked_request(raw, chunk, at);
  if (at != 0) sent += chunk.size() - at;  // the rest of the last chunk goes out below
  const std::size_t expected = sent / chunk.size() * per_chunk;
  // Replies are read on a thread while the rest of the last chunk goes out, so neither side
  // waits on a full socket.
  std::size_t replies = 0;
  std::thread reader([&] {
    auto first = raw.read<Reply>();
    if (!first || first->seq != 1 || first->results.size() != 1 ||
        first->results.front().status != OpStatus::kTimeout) {
      return;
    }
    while (replies < expected) {
      auto r = raw.read<Reply>();
      if (!r || !r->error.empty() || r->results.size() != 1) return;
      ++replies;
    }
  });
  if (at != 0) {
    EXPECT_TRUE(raw.send_bytes(chunk.data() + at, chunk.size() - at));
  }
  reader.join();
  EXPECT_GT(expected, 0u);
  EXPECT_EQ(replies, expected) << "requests held behind the parked one were lost";
}

TEST(ManagerLimits, ConnectionsAreCappedBelowTheOpenFilesLimit) {
  TempDir dir;
  ManagerProcess manager(dir.path());
  manager.set_fd_limit(100);
  manager.start();
  EXPECT_NE(manager.log_text().find("serving at most 50 connections"), std::string::npos)
      << manager.log_text();
  auto key = read_secret(manager.secret());
  ASSERT_TRUE(key.ok());
  std::vector<std::unique_ptr<RawConnection>> raws;
  int accepted = 0;
  for (int i = 0; i < 60; ++i) {
    raws.push_back(std::make_unique<RawConnection>(manager.socket()));
    auto welcome = raws.back()->authenticate(*key, kManagerProtocolVersion, 0x1000 + i, 0);
    if (welcome.has_value() && welcome->accepted) ++accepted;
  }
  EXPECT_EQ(accepted, 50);
  EXPECT_NE(manager.log_text().find("refusing connections: 50 are open"), std::string::npos);
  raws.clear();
  auto client = manager.connect(5s);
  ASSERT_TRUE(client.ok()) << client.error().what();
  EXPECT_EQ(client->counter("c").add(1).value(), 1);
}

// --- Many processes, manager kills ---------------------------------------------------------

TEST(PipelineStress, PipelinedCallsApplyOnceAcrossManagerKills) {
  TempDir dir;
  ManagerProcess manager(dir.path());
  manager.start();
  const std::uint64_t seed = testing::test_seed(2029);
  std::mt19937_64 rng(seed);
  constexpr int kChildren = 4;
  constexpr int kAdds = 20000;
  constexpr int kReportEvery = 500;
  constexpr int kKills = 12;
  Signal progress;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(spawn_child([&, i] {
      auto c = manager.connect(30s);
      if (!c) return 2;
      c->set_call_timeout(30s);
      CallPipeline pipe = c->pipeline(1 + i * 40);  // depths 1, 41, 81, 121
      const std::string mine = "child" + std::to_string(i);
      std::int64_t last = 0;
      for (int k = 1; k <= kAdds; ++k) {
        Status st = pipe.counter_add("sum");
        if (st) st = pipe.counter_add(mine);
        if (!st) {
          std::fprintf(stderr, "child %d at %d: %s\n", i, k, st.error().what().c_str());
          return 3;
        }
        if (k % kReportEvery == 0) {
          auto replies = pipe.flush();
          if (!replies) {
            std::fprintf(stderr, "child %d flush: %s\n", i, replies.error().what().c_str());
            return 3;
          }
          for (std::size_t r = 1; r < replies->size(); r += 2) {
            if ((*replies)[r].number != ++last) {
              std::fprintf(stderr, "child %d: own counter said %lld, expected %lld\n", i,
                           static_cast<long long>((*replies)[r].number),
                           static_cast<long long>(last));
              return 4;
            }
          }
          progress.notify();
        }
      }
      return 0;
    }));
  }
  const int reports = kChildren * kAdds / kReportEvery;
  testing::kill_manager_during_progress(manager, progress, reports, kKills, rng);
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid), 0) << "seed " << seed << "\n" << manager.log_text();
  auto client = manager.connect();
  ASSERT_TRUE(client.ok()) << client.error().what();
  EXPECT_EQ(client->counter("sum").get().value(), kChildren * kAdds) << "seed " << seed;
  for (int i = 0; i < kChildren; ++i) {
    EXPECT_EQ(client->counter("child" + std::to_string(i)).get().value(), kAdds) << "child " << i;
  }
}

}  // namespace
}  // namespace millrace::ipc
