#include "stages/jsonl_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/stages/ops_test_support.hpp"

namespace millrace::stages {
namespace {

using testing::read_next;

using Fields = std::vector<std::string>;

struct Line {
  Fields fields;
  bool bad_json = false;
  bool oversize = false;
  bool operator==(const Line&) const = default;
};

JsonlOptions options(std::size_t buffer = std::size_t{1} << 20) {
  JsonlOptions o;
  o.columns = {"id", "amount", "name", "ok"};
  o.buffer_bytes = buffer;
  return o;
}

std::vector<Line> read_all(std::string_view data, JsonlOptions o = options()) {
  JsonlReader reader = JsonlReader::from_memory(data, "mem.jsonl", std::move(o));
  std::vector<Line> lines;
  Fields fields;
  for (;;) {
    auto more = reader.next(fields);
    EXPECT_TRUE(more.ok());
    if (!more.ok() || !*more) break;
    lines.push_back({fields, reader.bad_json(), reader.oversize()});
  }
  EXPECT_EQ(reader.byte_offset(), data.size());
  return lines;
}

std::vector<Line> parse(std::string_view data) {
  const auto expected = read_all(data);
  for (std::size_t buffer : {4, 5, 7, 13}) {
    EXPECT_EQ(read_all(data, options(buffer)), expected) << "buffer " << buffer;
  }
  return expected;
}

TEST(JsonlReader, TakesConfiguredKeysInColumnOrder) {
  const auto lines = parse(R"({"name":"ann","id":"7","skip":1,"amount":"12.30","ok":"y"})"
                           "\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].fields, (Fields{"7", "12.30", "ann", "y"}));
  EXPECT_FALSE(lines[0].bad_json);
}

TEST(JsonlReader, NumbersKeepTheirTextAndBooleansAreWords) {
  const auto lines = parse(R"({"id":7,"amount":12.30,"name":-5,"ok":true})"
                           "\n"
                           R"({"id":18446744073709551615,"amount":1e3,"name":-0.0,"ok":false})"
                           "\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].fields, (Fields{"7", "12.30", "-5", "true"}));
  EXPECT_EQ(lines[1].fields, (Fields{"18446744073709551615", "1e3", "-0.0", "false"}));
}

TEST(JsonlReader, NullAndMissingKeysGiveEmptyFields) {
  const auto lines = parse(R"({"id":null,"name":"x"})"
                           "\n{}\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].fields, (Fields{"", "", "x", ""}));
  EXPECT_EQ(lines[1].fields, (Fields{"", "", "", ""}));
}

TEST(JsonlReader, StringsAreUnescapedAsIs) {
  const auto lines = parse(R"({"name":"a \"q\", b\nc \u00e9"})"
                           "\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].fields[2], "a \"q\", b\nc \xC3\xA9");
}

TEST(JsonlReader, NestedValueGivesCompactJsonAndLastDuplicateKeyWins) {
  const auto lines = parse(R"({"id": {"a": [1, 2]}, "name": "first", "name": "last", "ok": [true]})"
                           "\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].fields, (Fields{R"({"a":[1,2]})", "", "last", "[true]"}));
}

TEST(JsonlReader, MalformedLineIsFlaggedAndReadingGoesOn) {
  const auto lines = parse("{\"id\":1}\n{\"id\":\n{\"id\":2} trailing\n{\"id\":3}\n");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_FALSE(lines[0].bad_json);
  EXPECT_TRUE(lines[1].bad_json);
  EXPECT_TRUE(lines[1].fields.empty());
  EXPECT_TRUE(lines[2].bad_json);
  EXPECT_FALSE(lines[3].bad_json);
  EXPECT_EQ(lines[3].fields[0], "3");
}

TEST(JsonlReader, NonObjectLinesAreFlagged) {
  const auto lines = parse("[1,2]\n\"text\"\n5\nnull\n");
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& l : lines) EXPECT_TRUE(l.bad_json);
  JsonlReader reader = JsonlReader::from_memory("[1]\n", "mem.jsonl", options());
  Fields fields;
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_NE(reader.json_error().find("not a JSON object"), std::string::npos);
}

TEST(JsonlReader, InvalidUtf8InAStringIsBadJson) {
  const auto lines = parse("{\"name\":\"\xC3\x28\"}\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].bad_json);
}

TEST(JsonlReader, BlankLineIsARecordButFinalLineBreakIsNot) {
  const auto lines = parse("{\"id\":1}\r\n\n{\"id\":2}");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_FALSE(lines[0].bad_json) << "CRLF line endings are accepted";
  EXPECT_TRUE(lines[1].bad_json);
  EXPECT_EQ(lines[2].fields[0], "2");
  EXPECT_TRUE(parse("").empty());
  EXPECT_EQ(parse("{}\n").size(), 1u);
}

TEST(JsonlReader, SkipsByteOrderMarkAtStart) {
  const auto lines = parse("\xEF\xBB\xBF{\"id\":1}\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_FALSE(lines[0].bad_json);
}

TEST(JsonlReader, FlagsOversizeLineAndReadsOn) {
  JsonlOptions o = options(16);
  o.max_record_bytes = 100;
  const std::string data = "{\"name\":\"" + std::string(500, 'x') + "\"}\n{\"id\":9}\n";
  const auto lines = read_all(data, o);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(lines[0].oversize);
  EXPECT_TRUE(lines[0].fields.empty());
  EXPECT_FALSE(lines[1].oversize);
  EXPECT_EQ(lines[1].fields[0], "9");
}

TEST(JsonlReader, SeekResumesAtEveryLine) {
  testing::TempDir dir;
  const std::string data = "{\"id\":1}\n{bad\n\n{\"id\":4}\n";
  const std::string path = dir.write("in.jsonl", data);
  auto reader = JsonlReader::open(path, options());
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  std::vector<std::uint64_t> offsets = {0};
  std::vector<Line> all;
  Fields fields;
  while (read_next(*reader, fields)) {
    all.push_back({fields, reader->bad_json(), reader->oversize()});
    offsets.push_back(reader->byte_offset());
  }
  ASSERT_EQ(all.size(), 4u);
  for (std::size_t k = 0; k < offsets.size(); ++k) {
    auto again = JsonlReader::open(path, options(4));
    ASSERT_TRUE(again.ok());
    ASSERT_TRUE(again->seek(offsets[k], k).ok());
    for (std::size_t i = k; i < all.size(); ++i) {
      ASSERT_TRUE(read_next(*again, fields));
      EXPECT_EQ((Line{fields, again->bad_json(), again->oversize()}), all[i]);
      EXPECT_EQ(again->records_read(), i + 1);
    }
    EXPECT_FALSE(read_next(*again, fields));
  }
}

TEST(JsonlReader, OpenErrorNamesThePath) {
  testing::TempDir dir;
  auto r = JsonlReader::open(dir.file("none.jsonl"), options());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(dir.file("none.jsonl")), std::string::npos);
}

}  // namespace
}  // namespace millrace::stages
