#include "launcher/cli.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace millrace::launcher {
namespace {

ParseOutcome parse(std::vector<const char*> args) {
  args.insert(args.begin(), "millrace");
  return parse_command_line(static_cast<int>(args.size()), args.data());
}

TEST(CommandLine, HelpListsEverySubcommand) {
  testing::internal::CaptureStdout();
  ParseOutcome out = parse({"--help"});
  std::string text = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.exit_code, kExitOk);
  EXPECT_FALSE(out.invocation);
  for (const char* sub : {"run", "check", "stats", "kill", "restart", "stop", "logs", "set"}) {
    EXPECT_NE(text.find(std::string("  ") + sub), std::string::npos) << sub;
  }
  EXPECT_EQ(text.find("__manager"), std::string::npos);
}

TEST(CommandLine, VersionPrintsTheVersion) {
  testing::internal::CaptureStdout();
  ParseOutcome out = parse({"--version"});
  std::string text = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.exit_code, kExitOk);
  EXPECT_NE(text.find("millrace 0."), std::string::npos);
}

TEST(CommandLine, MissingConfigIsAUsageError) {
  testing::internal::CaptureStderr();
  ParseOutcome out = parse({"run", "/nonexistent/pipeline.ini"});
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.exit_code, kExitUsage);
}

TEST(CommandLine, ParsesSetOverridesAndStageOptions) {
  const char* path = "cli_test_pipeline.ini";
  std::ofstream(path) << "[pipeline]\n";
  ParseOutcome out = parse({"kill", path, "clean", "--worker", "1", "--signal", "STOP", "--set",
                            "a.b=1", "--set", "c.d=2"});
  std::remove(path);
  ASSERT_TRUE(out.invocation);
  EXPECT_EQ(out.invocation->command, Command::kKill);
  EXPECT_EQ(out.invocation->stage, "clean");
  EXPECT_EQ(out.invocation->worker, 1);
  EXPECT_EQ(out.invocation->signal, "STOP");
  ASSERT_EQ(out.invocation->overrides.size(), 2u);
  EXPECT_EQ(out.invocation->overrides[1], "c.d=2");
}

}  // namespace
}  // namespace millrace::launcher
