// Shared helpers of the record-operation tests: a per-test temporary directory and seeds that
// are printed and can be overridden with MILLRACE_SEED.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace millrace::stages::testing {

// The seed of a randomised test: MILLRACE_SEED when set, else `fallback`. Printed, so that a
// failure can be replayed.
inline std::uint64_t test_seed(std::uint64_t fallback) {
  std::uint64_t seed = fallback;
  if (const char* env = std::getenv("MILLRACE_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 10);
  }
  std::cout << "seed=" << seed << " (override with MILLRACE_SEED)\n";
  return seed;
}

// Reads the next record of a CsvReader or JsonlReader; false at the end (or on an error, which
// fails the test).
template <typename Reader>
bool read_next(Reader& reader, std::vector<std::string>& fields) {
  auto more = reader.next(fields);
  EXPECT_TRUE(more.ok()) << (more.ok() ? std::string() : more.error().message);
  return more.ok() && more.value();
}

// A directory of its own for one test, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "millrace-ops-" + std::to_string(::getpid()) + "-";
    if (info != nullptr) name += std::string(info->test_suite_name()) + "-" + info->name();
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }

  [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }
  [[nodiscard]] std::string path() const { return path_.string(); }

  std::string write(std::string_view name, std::string_view content) const {
    const std::string p = file(name);
    std::ofstream out(p, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    return p;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace millrace::stages::testing
