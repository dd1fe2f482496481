#include "stages/transform_ops.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

namespace millrace::stages {
namespace {

using Fields = std::vector<std::string>;

const std::vector<std::string> kColumns = {"order_id", "ts",  "customer", "country", "amount",
                                           "currency", "qty", "sku",      "note"};

const Transform::Tables kTables = {{"rates",
                                    {{"USD", "1000000"},
                                     {"EUR", "1080000"},
                                     {"GBP", "1270000"},
                                     {"JPY", "6700"},
                                     {"CNY", "138000"}}}};

std::vector<ConfigLine> lines(std::initializer_list<const char*> texts) {
  std::vector<ConfigLine> out;
  int n = 50;
  for (const char* t : texts)
    out.push_back({t, "orders.ini:" + std::to_string(n++) + ", key derive"});
  return out;
}

// The [transform] section of the reference workload.
Transform workload() {
  auto t = Transform::parse(
      lines({"record_no        = seq()", "amount_cents     = scaled(amount, 2)",
             "rate             = lookup(currency, rates)",
             "amount_usd_cents = muldiv_round(amount_cents, rate, 1000000)",
             "total_usd_cents  = mul(amount_usd_cents, qty)", "day              = date(ts)",
             "hour             = hour(ts)", "ts               = epoch(ts)",
             "tier             = bucket(total_usd_cents, 100000:high, 10000:mid, low)"}),
      kColumns, kTables);
  EXPECT_TRUE(t.ok()) << t.error().message;
  return std::move(t).value();
}

Fields record(const char* amount, const char* currency, const char* qty,
              const char* ts = "2024-02-29T23:59:59Z") {
  return {"17", ts, "alice", "DE", amount, currency, qty, "SKU-1", "n"};
}

TEST(Transform, OutputColumnsAppendNewNamesAsFirstDefined) {
  const Transform t = workload();
  EXPECT_EQ(t.output_columns(), (std::vector<std::string>{
                                    "order_id", "ts", "customer", "country", "amount", "currency",
                                    "qty", "sku", "note", "record_no", "amount_cents", "rate",
                                    "amount_usd_cents", "total_usd_cents", "day", "hour", "tier"}));
}

TEST(Transform, DerivesTheWorkloadFields) {
  const Transform t = workload();
  Fields f = record("12.3", "EUR", "3");
  ASSERT_TRUE(t.apply(42, f).ok());
  EXPECT_EQ(f, (Fields{"17", "1709251199", "alice", "DE", "12.3", "EUR", "3", "SKU-1", "n", "42",
                       "1230", "1080000", "1328", "3984", "2024-02-29", "23", "low"}));
}

TEST(Transform, ScaledTurnsDecimalTextIntoCents) {
  const Transform t = workload();
  const auto cents = [&](const char* amount) {
    Fields f = record(amount, "USD", "1");
    EXPECT_TRUE(t.apply(1, f).ok()) << amount;
    return f[10];
  };
  EXPECT_EQ(cents("0.5"), "50");
  EXPECT_EQ(cents("7"), "700");
  EXPECT_EQ(cents("12.3"), "1230");
  EXPECT_EQ(cents("007.05"), "705");
  EXPECT_EQ(cents("1000000.00"), "100000000");
  EXPECT_EQ(cents("0"), "0");
}

TEST(Transform, ScaledErrorNamesRecordFieldValueAndLine) {
  const Transform t = workload();
  Fields f = record("12.345", "USD", "1");
  const Status s = t.apply(99, f);
  ASSERT_FALSE(s.ok());
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("record 99"), std::string::npos) << m;
  EXPECT_NE(m.find("field 'amount' is '12.345'"), std::string::npos) << m;
  EXPECT_NE(m.find("more than 2 decimals"), std::string::npos) << m;
  EXPECT_NE(m.find("orders.ini:51, key derive"), std::string::npos) << m;
  EXPECT_EQ(s.error().code, static_cast<int>(TransformErrc::kBadValue));
}

TEST(Transform, LookupOfMissingKeyNamesTheRecordAndValue) {
  const Transform t = workload();
  Fields f = record("1", "XYZ", "1");
  const Status s = t.apply(7, f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, static_cast<int>(TransformErrc::kMissingKey));
  EXPECT_NE(s.error().message.find("record 7"), std::string::npos);
  EXPECT_NE(s.error().message.find("'XYZ'"), std::string::npos);
}

Transform single(const char* derive, const std::vector<std::string>& columns) {
  auto t = Transform::parse(lines({derive}), columns, kTables);
  EXPECT_TRUE(t.ok()) << derive << ": " << (t.ok() ? "" : t.error().message);
  return std::move(t).value();
}

std::string run(const Transform& t, Fields f) {
  const Status s = t.apply(1, f);
  return s.ok() ? f.back() : "error: " + s.error().message;
}

TEST(Transform, MulDivRoundsHalfUp) {
  const Transform t = single("r = muldiv_round(a, b, c)", {"a", "b", "c"});
  EXPECT_EQ(run(t, {"1", "500000", "1000000"}), "1") << "0.5 rounds up";
  EXPECT_EQ(run(t, {"1", "499999", "1000000"}), "0");
  EXPECT_EQ(run(t, {"3", "1", "2"}), "2") << "1.5 -> 2";
  EXPECT_EQ(run(t, {"5", "1", "2"}), "3") << "2.5 -> 3";
  EXPECT_EQ(run(t, {"7", "1", "3"}), "2") << "2.33 -> 2";
  EXPECT_EQ(run(t, {"8", "1", "3"}), "3") << "2.67 -> 3";
  EXPECT_EQ(run(t, {"1230", "1080000", "1000000"}), "1328") << "1328.4 -> 1328";
  EXPECT_EQ(run(t, {"9223372036854775807", "2", "2"}), "9223372036854775807")
      << "the product needs 128 bits";
  EXPECT_EQ(run(t, {"9223372036854775807", "9223372036854775807", "9223372036854775807"}),
            "9223372036854775807");
  EXPECT_NE(run(t, {"9223372036854775807", "3", "2"}).find("outside int64"), std::string::npos);
  EXPECT_NE(run(t, {"-1", "3", "2"}).find(">= 0"), std::string::npos);
  EXPECT_NE(run(t, {"1", "3", "0"}).find("C > 0"), std::string::npos);
}

TEST(Transform, IntegerArithmeticDetectsOverflow) {
  const Transform mul = single("r = mul(a, b)", {"a", "b"});
  EXPECT_EQ(run(mul, {"4611686018427387903", "2"}), "9223372036854775806");
  EXPECT_NE(run(mul, {"4611686018427387904", "2"}).find("outside int64"), std::string::npos);
  EXPECT_EQ(run(mul, {"-3", "4"}), "-12");
  const Transform add = single("r = add(a, 1)", {"a"});
  EXPECT_EQ(run(add, {"41"}), "42");
  EXPECT_NE(run(add, {"9223372036854775807"}).find("outside int64"), std::string::npos);
  const Transform sub = single("r = sub(a, b)", {"a", "b"});
  EXPECT_EQ(run(sub, {"5", "7"}), "-2");
  EXPECT_NE(run(sub, {"-9223372036854775808", "1"}).find("outside int64"), std::string::npos);
  EXPECT_NE(run(sub, {"x1", "1"}).find("field 'a' is 'x1': not an integer"), std::string::npos);
  EXPECT_NE(run(sub, {"1", "99999999999999999999"}).find("field 'b'"), std::string::npos);
}

TEST(Transform, BucketBoundariesAreInclusive) {
  const Transform t = single("tier = bucket(v, 100000:high, 10000:mid, low)", {"v"});
  EXPECT_EQ(run(t, {"100000"}), "high");
  EXPECT_EQ(run(t, {"100001"}), "high");
  EXPECT_EQ(run(t, {"99999"}), "mid");
  EXPECT_EQ(run(t, {"10000"}), "mid");
  EXPECT_EQ(run(t, {"9999"}), "low");
  EXPECT_EQ(run(t, {"0"}), "low");
  EXPECT_EQ(run(t, {"-5"}), "low");
  EXPECT_NE(run(t, {"lots"}).find("not an integer"), std::string::npos);
}

TEST(Transform, TimeFunctionsAcceptIsoOrEpochSeconds) {
  const Transform t =
      Transform::parse(
          lines({"e = epoch(ts)", "d = date(ts)", "h = hour(ts)", "d2 = date(e)", "h2 = hour(e)"}),
          {"ts"}, {})
          .value();
  Fields f = {"1969-12-31T23:59:59Z"};
  ASSERT_TRUE(t.apply(1, f).ok());
  EXPECT_EQ(f, (Fields{"1969-12-31T23:59:59Z", "-1", "1969-12-31", "23", "1969-12-31", "23"}));
  f = {"2000-02-29T00:00:00Z"};
  ASSERT_TRUE(t.apply(1, f).ok());
  EXPECT_EQ(f, (Fields{"2000-02-29T00:00:00Z", "951782400", "2000-02-29", "0", "2000-02-29", "0"}));
  f = {"2023-02-29T00:00:00Z"};
  const Status s = t.apply(3, f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("field 'ts' is '2023-02-29T00:00:00Z'"), std::string::npos)
      << s.error().message;
}

TEST(Transform, CopyAndSeqAndOverwriteInPlace) {
  const Transform t =
      Transform::parse(lines({"n = seq()", "c = copy(a)", "a = add(a, 1)"}), {"a"}, {}).value();
  EXPECT_EQ(t.output_columns(), (std::vector<std::string>{"a", "n", "c"}));
  Fields f = {"5"};
  ASSERT_TRUE(t.apply(12345678901ULL, f).ok());
  EXPECT_EQ(f, (Fields{"6", "12345678901", "5"}));
}

TEST(Transform, ReusesFieldCapacity) {
  const Transform t = workload();
  Fields f = record("12.3", "EUR", "3");
  ASSERT_TRUE(t.apply(1, f).ok());
  f.resize(kColumns.size());
  f[4] = "5000.00";
  f[1] = "2024-02-29T23:59:59Z";
  const auto* day = f.data();
  ASSERT_TRUE(t.apply(2, f).ok());
  EXPECT_EQ(f.data(), day) << "the vector kept its buffer";
  EXPECT_EQ(f[16], "high");
}

TEST(Transform, WrongInputWidthIsAnError) {
  const Transform t = workload();
  Fields f = {"1", "2"};
  EXPECT_FALSE(t.apply(1, f).ok());
}

Error parse_error(std::initializer_list<const char*> derive) {
  auto t = Transform::parse(lines(derive), kColumns, kTables);
  EXPECT_FALSE(t.ok());
  return t.ok() ? Error{} : t.error();
}

TEST(TransformParse, ErrorsNameTheLineAndSuggest) {
  Error e = parse_error({"x = scaeld(amount, 2)"});
  EXPECT_EQ(e.code, static_cast<int>(TransformErrc::kUnknownFunction));
  EXPECT_NE(e.message.find("orders.ini:50, key derive: unknown function 'scaeld'; did you mean "
                           "'scaled'?"),
            std::string::npos)
      << e.message;
  e = parse_error({"x = copy(amout)"});
  EXPECT_EQ(e.code, static_cast<int>(TransformErrc::kUnknownField));
  EXPECT_NE(e.message.find("did you mean 'amount'"), std::string::npos) << e.message;
  e = parse_error({"y = mul(rate, qty)", "rate = lookup(currency, rates)"});
  EXPECT_EQ(e.code, static_cast<int>(TransformErrc::kUnknownField)) << "used before defined";
  e = parse_error({"r = lookup(currency, rate)"});
  EXPECT_EQ(e.code, static_cast<int>(TransformErrc::kUnknownTable));
  EXPECT_NE(e.message.find("did you mean 'rates'"), std::string::npos) << e.message;
  EXPECT_EQ(parse_error({"x = add(qty)"}).code, static_cast<int>(TransformErrc::kBadArgument));
  EXPECT_EQ(parse_error({"x = scaled(amount, 19)"}).code,
            static_cast<int>(TransformErrc::kBadArgument));
  EXPECT_EQ(parse_error({"x = muldiv_round(qty, qty, 0)"}).code,
            static_cast<int>(TransformErrc::kBadArgument));
  EXPECT_NE(parse_error({"t = bucket(qty, 10:a, 100:b, c)"}).message.find("descending"),
            std::string::npos);
  EXPECT_EQ(parse_error({"t = bucket(qty, 10:a, 5:b)"}).code,
            static_cast<int>(TransformErrc::kBadArgument));
  EXPECT_EQ(parse_error({"x = add(qty, 1.5)"}).code, static_cast<int>(TransformErrc::kBadArgument));
  EXPECT_EQ(parse_error({"x mul(a, b)"}).code, static_cast<int>(TransformErrc::kSyntax));
  EXPECT_EQ(parse_error({"2x = seq()"}).code, static_cast<int>(TransformErrc::kSyntax));
  EXPECT_EQ(parse_error({"x = seq("}).code, static_cast<int>(TransformErrc::kSyntax));
}

}  // namespace
}  // namespace millrace::stages
