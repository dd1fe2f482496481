#include "stages/csv_reader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "stages/synthetic.hpp"
#include "tests/stages/ops_test_support.hpp"

namespace millrace::stages {
namespace {

using testing::read_next;

using Records = std::vector<std::vector<std::string>>;
using testing::TempDir;
using testing::test_seed;

Records read_all(std::string_view data, CsvOptions options = {}) {
  CsvReader reader = CsvReader::from_memory(data, "mem.csv", options);
  Records records;
  std::vector<std::string> fields;
  for (;;) {
    auto more = reader.next(fields);
    EXPECT_TRUE(more.ok());
    if (!more.ok() || !*more) break;
    records.push_back(fields);
  }
  EXPECT_EQ(reader.records_read(), records.size());
  EXPECT_EQ(reader.byte_offset(), data.size()) << "the last record ends the input";
  return records;
}

// Parses with the default buffer and with tiny ones, so that every record boundary, quote pair
// and CRLF also falls across a buffer refill; all must agree.
Records parse(std::string_view data) {
  const Records expected = read_all(data);
  for (std::size_t buffer : {4, 5, 6, 7, 9, 16, 17, 64}) {
    CsvOptions options;
    options.buffer_bytes = buffer;
    EXPECT_EQ(read_all(data, options), expected) << "buffer " << buffer;
  }
  return expected;
}

TEST(CsvReader, SplitsFieldsAtCommas) {
  EXPECT_EQ(parse("a,b,c\n1,,3\n"), (Records{{"a", "b", "c"}, {"1", "", "3"}}));
  EXPECT_EQ(parse("a,\n,\n"), (Records{{"a", ""}, {"", ""}}));
}

TEST(CsvReader, QuotedFieldKeepsSeparatorsAndLineBreaks) {
  EXPECT_EQ(parse("\"a,b\",\"x\ny\",\"c\rd\",\"e\r\nf\"\nnext\n"),
            (Records{{"a,b", "x\ny", "c\rd", "e\r\nf"}, {"next"}}));
}

TEST(CsvReader, DoubledQuoteInsideQuotesIsOneQuote) {
  EXPECT_EQ(parse("\"say \"\"hi\"\"\",\"\"\"\"\n"), (Records{{"say \"hi\"", "\""}}));
  EXPECT_EQ(parse("\"\",x\n"), (Records{{"", "x"}}));
}

TEST(CsvReader, QuoteInsideUnquotedFieldIsLiteral) {
  EXPECT_EQ(parse("a\"b,c\"\"d,e\"\n"), (Records{{"a\"b", "c\"\"d", "e\""}}));
  EXPECT_EQ(parse(" \"x\",y\n"), (Records{{" \"x\"", "y"}})) << "a quote opens only at field start";
}

TEST(CsvReader, TextAfterClosingQuoteIsAppendedLiterally) {
  EXPECT_EQ(parse("\"ab\"cd,e\n"), (Records{{"abcd", "e"}}));
  EXPECT_EQ(parse("\"ab\"c\"d\n"), (Records{{"abc\"d"}}));
  EXPECT_EQ(parse("\"ab\" ,x\n"), (Records{{"ab ", "x"}}));
}

TEST(CsvReader, UnclosedQuoteRunsToEndOfInputWithFinalLineBreak) {
  EXPECT_EQ(parse("a,\"bc\nd,e\n"), (Records{{"a", "bc\nd,e\n"}}));
  EXPECT_EQ(parse("a,\"bc"), (Records{{"a", "bc"}}));
  EXPECT_EQ(parse("\""), (Records{{""}}));
}

TEST(CsvReader, LfCrlfAndLoneCrEndRecords) {
  EXPECT_EQ(parse("a\nb\r\nc\rd"), (Records{{"a"}, {"b"}, {"c"}, {"d"}}));
  EXPECT_EQ(parse("a\r\r\nb\n"), (Records{{"a"}, {""}, {"b"}}))
      << "CR then CRLF: a record, then an empty line";
  EXPECT_EQ(parse("a\n\rb\n"), (Records{{"a"}, {""}, {"b"}})) << "LF CR is two line breaks";
}

TEST(CsvReader, EmptyLineIsARecordOfOneEmptyField) {
  EXPECT_EQ(parse("a\n\nb\n"), (Records{{"a"}, {""}, {"b"}}));
  EXPECT_EQ(parse("\n"), (Records{{""}}));
  EXPECT_EQ(parse("a\n\n"), (Records{{"a"}, {""}}));
}

TEST(CsvReader, FinalLineBreakDoesNotStartARecord) {
  EXPECT_EQ(parse("a,b\n"), (Records{{"a", "b"}}));
  EXPECT_EQ(parse("a,b\r\n"), (Records{{"a", "b"}}));
  EXPECT_EQ(parse("a,b\r"), (Records{{"a", "b"}}));
  EXPECT_EQ(parse("a,b"), (Records{{"a", "b"}}));
}

TEST(CsvReader, EmptyInputHasNoRecords) {
  EXPECT_TRUE(parse("").empty());
  EXPECT_TRUE(parse("\xEF\xBB\xBF").empty());
}

TEST(CsvReader, SkipsByteOrderMarkOnlyAtStart) {
  EXPECT_EQ(parse("\xEF\xBB\xBFid,x\n1,\xEF\xBB\xBF\n"),
            (Records{{"id", "x"}, {"1", "\xEF\xBB\xBF"}}));
  EXPECT_EQ(parse("\xEF\xBB"), (Records{{"\xEF\xBB"}})) << "half a mark is data";
}

TEST(CsvReader, ReadsOneMebibyteField) {
  std::string big(std::size_t{1} << 20, 'x');
  big[12345] = '"';
  const std::string data = "1," + big + ",\"" + big + "\"\n2,y\n";
  const Records records = read_all(data);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0][1], big);
  // In the quoted copy the inner quote closes the field; the rest, final quote included, is
  // appended literally.
  EXPECT_EQ(records[0][2], big.substr(0, 12345) + big.substr(12346) + "\"");
  EXPECT_EQ(records[1], (std::vector<std::string>{"2", "y"}));
}

TEST(CsvReader, FlagsOversizeRecordWithoutFieldsAndReadsOn) {
  CsvOptions options;
  options.buffer_bytes = 64;
  options.max_record_bytes = 1000;
  const std::string data = "a,b\n" + std::string(600, 'x') + "," + std::string(600, 'y') + "\n\"" +
                           std::string(5000, 'q') + "\nstill quoted\"\nc,d\n";
  CsvReader reader = CsvReader::from_memory(data, "mem.csv", options);
  std::vector<std::string> fields;
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_FALSE(reader.oversize());
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_TRUE(reader.oversize());
  EXPECT_TRUE(fields.empty());
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_TRUE(reader.oversize()) << "a long quoted record with a line break is one record";
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_FALSE(reader.oversize());
  EXPECT_EQ(fields, (std::vector<std::string>{"c", "d"}));
  EXPECT_FALSE(read_next(reader, fields));
  EXPECT_EQ(reader.records_read(), 4u);
}

TEST(CsvReader, ExactlyMaxRecordBytesIsNotOversize) {
  CsvOptions options;
  options.max_record_bytes = 10;
  CsvReader reader = CsvReader::from_memory("12345,67890\n12345,678901\n", "mem.csv", options);
  std::vector<std::string> fields;
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_FALSE(reader.oversize());
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_TRUE(reader.oversize());
}

TEST(CsvReader, ReusesFieldCapacityAcrossRecords) {
  const std::string long_value(100, 'v');
  const std::string data = long_value + "," + long_value + "\nshort,x\n" + long_value + ",y\n";
  CsvReader reader = CsvReader::from_memory(data, "mem.csv");
  std::vector<std::string> fields;
  ASSERT_TRUE(read_next(reader, fields));
  const char* first = fields[0].data();
  const char* second = fields[1].data();
  ASSERT_TRUE(read_next(reader, fields));
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_EQ(fields[0].data(), first) << "the string kept its buffer";
  EXPECT_EQ(fields[1].data(), second);
  EXPECT_EQ(fields[0], long_value);
}

TEST(CsvReader, ByteOffsetAndSeekResumeAtEveryRecord) {
  TempDir dir;
  const std::string data = "\xEF\xBB\xBFh1,h2\r\n\"a\nb\",1\n\nc,\"2\"\"\"\rd,4";
  const std::string path = dir.write("in.csv", data);
  auto opened = CsvReader::open(path);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  CsvReader& reader = *opened;
  std::vector<std::uint64_t> offsets = {0};
  Records all;
  std::vector<std::string> fields;
  while (read_next(reader, fields)) {
    all.push_back(fields);
    offsets.push_back(reader.byte_offset());
  }
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(offsets, (std::vector<std::uint64_t>{0, 10, 18, 19, 27, data.size()}));
  for (std::size_t k = 0; k < offsets.size(); ++k) {
    for (std::size_t buffer : {4, 1 << 20}) {
      CsvOptions options;
      options.buffer_bytes = buffer;
      auto again = CsvReader::open(path, options);
      ASSERT_TRUE(again.ok());
      ASSERT_TRUE(again->seek(offsets[k], k).ok());
      for (std::size_t i = k; i < all.size(); ++i) {
        ASSERT_TRUE(read_next(*again, fields));
        EXPECT_EQ(fields, all[i]) << "resumed at record " << k;
        EXPECT_EQ(again->records_read(), i + 1);
        EXPECT_EQ(again->byte_offset(), offsets[i + 1]);
      }
      EXPECT_FALSE(read_next(*again, fields));
    }
  }
}

TEST(CsvReader, SeekPastEndOfFileIsAnError) {
  TempDir dir;
  const std::string path = dir.write("in.csv", "a\nb\n");
  auto reader = CsvReader::open(path);
  ASSERT_TRUE(reader.ok());
  const Status s = reader->seek(100, 3);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(path), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().code, static_cast<int>(InputErrc::kBeyondEnd));
}

TEST(CsvReader, ReadsFromAPipeDescriptor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string data = "x,\"y\nz\"\r\n1,2\n";
  ASSERT_EQ(::write(fds[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fds[1]);
  CsvReader reader = CsvReader::from_source(InputSource::from_fd(fds[0], "pipe"));
  std::vector<std::string> fields;
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"x", "y\nz"}));
  ASSERT_TRUE(read_next(reader, fields));
  EXPECT_EQ(fields, (std::vector<std::string>{"1", "2"}));
  EXPECT_FALSE(read_next(reader, fields));
  EXPECT_FALSE(reader.seek(0, 0).ok()) << "a pipe cannot seek";
}

TEST(CsvReader, OpenNamesAMissingPath) {
  TempDir dir;
  auto missing = CsvReader::open(dir.file("nope.csv"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, static_cast<int>(InputErrc::kNotFound));
  EXPECT_NE(missing.error().message.find(dir.file("nope.csv")), std::string::npos);
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
}

TEST(CsvReader, OpenRejectsADirectory) {
  TempDir dir;
  auto directory = CsvReader::open(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().code, static_cast<int>(InputErrc::kIsDirectory));
  EXPECT_NE(directory.error().message.find(dir.path()), std::string::npos);
  EXPECT_NE(directory.error().message.find("directory"), std::string::npos);
}

TEST(CsvReader, OpenRejectsAnUnreadableFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file: the unreadable case cannot happen";
  TempDir dir;
  const std::string secret = dir.write("secret.csv", "a\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0), 0);
  auto unreadable = CsvReader::open(secret);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.error().code, static_cast<int>(InputErrc::kNotReadable));
  EXPECT_NE(unreadable.error().message.find(secret), std::string::npos);
  EXPECT_NE(unreadable.error().message.find("Permission denied"), std::string::npos)
      << unreadable.error().message;
}

TEST(CsvHeader, MatchingHeaderPassesWithBlanksAroundNames) {
  EXPECT_TRUE(check_header({"id", " ts\t", "name"}, {"id", "ts", "name"}, "in.csv").ok());
}

TEST(CsvHeader, MismatchNamesFileLineAndFirstDifferingColumn) {
  const Status s = check_header({"id", "ts", "cust", "x"}, {"id", "ts", "customer", "x"}, "in.csv");
  ASSERT_FALSE(s.ok());
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("in.csv, line 1"), std::string::npos) << m;
  EXPECT_NE(m.find("column 3 is 'cust'"), std::string::npos) << m;
  EXPECT_NE(m.find("'customer'"), std::string::npos) << m;
  EXPECT_EQ(s.error().code, static_cast<int>(CsvErrc::kHeaderMismatch));
}

TEST(CsvHeader, MissingAndExtraColumnsAreNamed) {
  const Status fewer = check_header({"id", "ts"}, {"id", "ts", "name"}, "in.csv");
  ASSERT_FALSE(fewer.ok());
  EXPECT_NE(fewer.error().message.find("column 3 'name' is missing"), std::string::npos)
      << fewer.error().message;
  const Status more = check_header({"id", "ts", "name", "extra"}, {"id", "ts", "name"}, "in.csv");
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.error().message.find("column 4 'extra' is not configured"), std::string::npos)
      << more.error().message;
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii text that is longer than eight bytes"));
  EXPECT_TRUE(valid_utf8("caf\xC3\xA9"));       // U+00E9
  EXPECT_TRUE(valid_utf8("\xE2\x82\xAC 5"));    // U+20AC
  EXPECT_TRUE(valid_utf8("\xF0\x9F\x98\x80"));  // U+1F600
  EXPECT_TRUE(valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_TRUE(valid_utf8("\xED\x9F\xBF"));      // U+D7FF
}

TEST(Utf8, RejectsMalformedText) {
  EXPECT_FALSE(valid_utf8("\xC0\x80"));          // overlong NUL
  EXPECT_FALSE(valid_utf8("\xE0\x80\xAF"));      // overlong '/'
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(valid_utf8("abc\xC3"));  // truncated
  EXPECT_FALSE(valid_utf8("\x80 lone continuation"));
  EXPECT_FALSE(valid_utf8("\xFF"));
  EXPECT_FALSE(valid_utf8("12345678\xC3(bad second byte"));
  EXPECT_FALSE(valid_utf8("\xE2\x82"));
}

TEST(CsvWriter, QuotesOnlyWhenNeeded) {
  const auto field = [](std::string_view f) {
    std::string out;
    append_csv_field(out, f);
    return out;
  };
  EXPECT_EQ(field("plain"), "plain");
  EXPECT_EQ(field(""), "");
  EXPECT_EQ(field(" padded\t"), " padded\t");
  EXPECT_EQ(field("a,b"), "\"a,b\"");
  EXPECT_EQ(field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(field("line\nbreak"), "\"line\nbreak\"");
  EXPECT_EQ(field("cr\r"), "\"cr\r\"");
  EXPECT_EQ(field("\xEF\xBB\xBFmark"), "\"\xEF\xBB\xBFmark\"");
}

std::string write_csv(const Records& records) {
  std::string out;
  for (const auto& record : records) {
    for (std::size_t i = 0; i < record.size(); ++i) {
      if (i > 0) out.push_back(',');
      append_csv_field(out, record[i]);
    }
    out.push_back('\n');
  }
  return out;
}

TEST(CsvRoundTrip, RandomFieldsWithSpecialCharactersReadBackExactly) {
  const std::uint64_t seed = test_seed(20240229);
  std::mt19937_64 rng(seed);
  static constexpr std::string_view kAlphabet[] = {"a", "b",  ",",        "\"",   "\r",   "\n",
                                                   " ", "\t", "\xC3\xA9", "\"\"", "\r\n", "x,y"};
  for (int round = 0; round < 200; ++round) {
    Records records(1 + rng() % 20);
    for (auto& record : records) {
      record.resize(1 + rng() % 6);
      for (auto& field : record) {
        const std::size_t len = rng() % 8;
        for (std::size_t i = 0; i < len; ++i) field += kAlphabet[rng() % std::size(kAlphabet)];
      }
    }
    const std::string csv = write_csv(records);
    SCOPED_TRACE("seed=" + std::to_string(seed) + " round=" + std::to_string(round));
    ASSERT_EQ(parse(csv), records);
  }
}

TEST(CsvRoundTrip, GeneratedRowsReadBackExactly) {
  const std::uint64_t seed = test_seed(7);
  std::vector<ConfigLine> gen;
  for (const char* l : {"id : serial dup=0.03", "ts : timestamp 2019..2025", "name : word",
                        "code : choice US DE GB", "amount : decimal 0..5000.00", "n : int 1..20",
                        "sku : pattern SKU-#####", "note : text"}) {
    gen.push_back({l, "test"});
  }
  auto synthetic =
      Synthetic::parse(gen, 0.3, seed, {"id", "ts", "name", "code", "amount", "n", "sku", "note"});
  ASSERT_TRUE(synthetic.ok()) << synthetic.error().message;
  Records records(5000);
  for (std::size_t i = 0; i < records.size(); ++i) synthetic->generate(i + 1, records[i]);
  const std::string csv = write_csv(records);
  ASSERT_EQ(read_all(csv), records);
  CsvOptions small;
  small.buffer_bytes = 7;
  ASSERT_EQ(read_all(csv, small), records);
}

}  // namespace
}  // namespace millrace::stages
