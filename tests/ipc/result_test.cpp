#include "ipc/posix_call.hpp"
#include "ipc/result.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace millrace {
namespace {

TEST(Result, CarriesValueOrError) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.value(), 7);
  Result<int> bad = Error{"test", 3, "it broke", 0};
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, 3);
  EXPECT_EQ(bad.error().what(), "it broke");
}

TEST(PosixCall, NamesTheCallAndSubjectOnFailure) {
  auto fd = posix_call("open", "/nonexistent/x", [] { return ::open("/nonexistent/x", O_RDONLY); });
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.error().sys_errno, ENOENT);
  EXPECT_NE(fd.error().what().find("open(/nonexistent/x)"), std::string::npos);
  EXPECT_NE(fd.error().what().find("No such file"), std::string::npos);
}

}  // namespace
}  // namespace millrace
