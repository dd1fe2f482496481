// The manager protocol without a server: SipHash, the authentication digest, the secret file,
// framing.
#include <sys/stat.h>

#include <array>
#include <cstring>

#include <gtest/gtest.h>

#include "ipc/manager_protocol.hpp"
#include "tests/manager/manager_test_support.hpp"

namespace millrace::ipc {
namespace {

std::vector<std::byte> bytes_0_to(std::size_t n) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>(i);
  return out;
}

constexpr SipKey kReferenceKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

TEST(SipHash, MatchesTheReferenceVectors) {
  // From the SipHash paper's reference implementation (vectors.h): key 00..0f, message 00..n-1.
  EXPECT_EQ(siphash24(kReferenceKey, bytes_0_to(0)), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ(siphash24(kReferenceKey, bytes_0_to(1)), 0x74f839c593dc67fdULL);
  EXPECT_EQ(siphash24(kReferenceKey, bytes_0_to(8)), 0x93f5f5799a932462ULL);
  EXPECT_EQ(siphash24(kReferenceKey, bytes_0_to(15)), 0xa129ca6149be45e5ULL);
  EXPECT_EQ(siphash24(kReferenceKey, bytes_0_to(63)), 0x958a324ceb064572ULL);
}

TEST(AuthDigest, DependsOnKeyRoleAndNonce) {
  const SipKey a{1, 2};
  const SipKey b{1, 3};
  const Nonce n1{10, 20};
  const Nonce n2{10, 21};
  EXPECT_EQ(auth_digest(a, 'C', n1), auth_digest(a, 'C', n1));
  EXPECT_NE(auth_digest(a, 'C', n1), auth_digest(b, 'C', n1));
  EXPECT_NE(auth_digest(a, 'C', n1), auth_digest(a, 'S', n1));
  EXPECT_NE(auth_digest(a, 'C', n1), auth_digest(a, 'C', n2));
}

TEST(RandomNonce, DiffersBetweenCalls) {
  auto a = random_nonce();
  auto b = random_nonce();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(SecretFile, IsCreatedPrivateAndReadsAsTheSameKey) {
  testing::TempDir dir;
  const auto path = dir.path() / "secret";
  ASSERT_TRUE(create_secret_file(path).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto k1 = read_secret(path);
  auto k2 = read_secret(path);
  ASSERT_TRUE(k1.ok()) << k1.error().what();
  ASSERT_TRUE(k2.ok());
  EXPECT_EQ(k1->k0, k2->k0);
  EXPECT_EQ(k1->k1, k2->k1);
  ASSERT_TRUE(create_secret_file(path).ok());  // a new run, a new secret
  auto k3 = read_secret(path);
  ASSERT_TRUE(k3.ok());
  EXPECT_NE(k1->k0, k3->k0);
}

TEST(SecretFile, ReadableByOthersIsRefused) {
  testing::TempDir dir;
  const auto path = dir.path() / "secret";
  ASSERT_TRUE(create_secret_file(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto key = read_secret(path);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, static_cast<int>(ManagerError::kSecret));
  EXPECT_NE(key.error().what().find("chmod 600"), std::string::npos) << key.error().what();
}

TEST(SecretFile, MissingOrEmptyIsRefusedNamingThePath) {
  testing::TempDir dir;
  const auto path = dir.path() / "secret";
  auto missing = read_secret(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().what().find(path.string()), std::string::npos);
  { std::ofstream(path) << "\n"; }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto empty = read_secret(path);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().what().find("empty"), std::string::npos) << empty.error().what();
}

TEST(Framing, ReportsIncompleteCompleteAndOversizedFrames) {
  Request request;
  request.seq = 7;
  Op op;
  op.code = OpCode::kCounterAdd;
  op.object = "hits";
  op.number = 3;
  request.ops.push_back(op);
  std::vector<std::byte> frame;
  const std::size_t size = append_frame(request, frame);
  ASSERT_EQ(frame.size(), size + kFramePrefixSize);
  for (std::size_t cut = 0; cut < frame.size(); ++cut) {
    EXPECT_EQ(check_frame(std::span<const std::byte>(frame.data(), cut)).state,
              FrameState::kIncomplete);
  }
  const FrameCheck whole = check_frame(frame);
  ASSERT_EQ(whole.state, FrameState::kComplete);
  EXPECT_EQ(whole.message_size, size);
  auto back = decode_from<Request>(std::span<const std::byte>(frame).subspan(kFramePrefixSize));
  ASSERT_TRUE(back.ok()) << back.error().what();
  EXPECT_EQ(back->seq, 7u);
  ASSERT_EQ(back->ops.size(), 1u);
  EXPECT_EQ(back->ops[0].object, "hits");
  EXPECT_EQ(back->ops[0].number, 3);

  std::array<std::byte, 4> huge{};
  const std::uint32_t length = kMaxFrameSize + 1;
  std::memcpy(huge.data(), &length, sizeof length);
  EXPECT_EQ(check_frame(huge).state, FrameState::kOversized);
}

TEST(OpCodes, KnowTheirKindAndWhetherTheyBlockOrMutate) {
  EXPECT_EQ(kind_of(OpCode::kDictKeys), ObjectKind::kDict);
  EXPECT_EQ(kind_of(OpCode::kListSlice), ObjectKind::kList);
  EXPECT_EQ(kind_of(OpCode::kValueGet), ObjectKind::kValue);
  EXPECT_EQ(kind_of(OpCode::kCounterAdd), ObjectKind::kCounter);
  EXPECT_EQ(kind_of(OpCode::kLockHeld), ObjectKind::kLock);
  EXPECT_EQ(kind_of(OpCode::kEventWait), ObjectKind::kEvent);
  EXPECT_EQ(kind_of(OpCode::kQueueSize), ObjectKind::kQueue);
  EXPECT_TRUE(is_blocking_op(OpCode::kQueueGet));
  EXPECT_FALSE(is_blocking_op(OpCode::kQueueSize));
  EXPECT_TRUE(is_mutating_op(OpCode::kQueueGet));  // it removes the item
  EXPECT_FALSE(is_mutating_op(OpCode::kDictGet));
  EXPECT_FALSE(is_known_op(static_cast<OpCode>(200)));
}

}  // namespace
}  // namespace millrace::ipc
