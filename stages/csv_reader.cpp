#include "stages/csv_reader.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "stages/text.hpp"

namespace millrace::stages {
namespace {

// Padding after the buffer so that a 16-byte load starting at any valid byte stays inside the
// allocation; the bytes past the valid end are masked out of the result.
constexpr std::size_t kPad = 16;

// The first `,`, LF or CR in [p, e), or e.
inline const char* find_special(const char* p, const char* e) {
#if defined(__SSE2__)
  const __m128i comma = _mm_set1_epi8(',');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  while (p < e) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, lf)),
                                     _mm_cmpeq_epi8(v, cr));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) {
      const char* q = p + __builtin_ctz(static_cast<unsigned>(mask));
      return q < e ? q : e;
    }
    p += 16;
  }
  return e;
#else
  for (; p < e; ++p) {
    if (*p == ',' || *p == '\n' || *p == '\r') return p;
  }
  return e;
#endif
}

}  // namespace

CsvReader::CsvReader(InputSource source, CsvOptions options)
    : in_(std::move(source), options.buffer_bytes, kPad), options_(options) {}

Result<CsvReader> CsvReader::open(const std::string& path, CsvOptions options) {
  auto source = InputSource::open_file(path);
  if (!source) return source.error();
  return CsvReader(std::move(source).value(), options);
}

CsvReader CsvReader::from_source(InputSource source, CsvOptions options) {
  return CsvReader(std::move(source), options);
}

CsvReader CsvReader::from_memory(std::string_view data, std::string name, CsvOptions options) {
  return CsvReader(InputSource::from_memory(data, std::move(name)), options);
}

// Both run for every field: forced inline, they keep the scanning loop free of calls.
[[gnu::always_inline]] inline void CsvReader::begin_field(std::vector<std::string>& fields,
                                                          std::size_t index) {
  if (discard_) [[unlikely]] {
    field_ = &discarded_;
    return;
  }
  if (index < fields.size()) {
    fields[index].clear();
  } else {
    fields.emplace_back();
  }
  field_ = &fields[index];
}

[[gnu::always_inline]] inline void CsvReader::append(std::vector<std::string>& fields,
                                                     const char* begin, const char* end) {
  const auto n = static_cast<std::size_t>(end - begin);
  record_bytes_ += n;
  if (record_bytes_ > options_.max_record_bytes) [[unlikely]] {
    if (!discard_) {
      // Give the memory back at once: the record will be returned without its fields.
      discard_ = true;
      fields.clear();
      fields.shrink_to_fit();
      field_ = &discarded_;
    }
    return;
  }
  field_->append(begin, n);
}

Result<bool> CsvReader::next(std::vector<std::string>& fields) {
  oversize_ = false;
  if (in_.bom_pending()) {
    if (auto st = in_.skip_bom(); !st) return st.error();
  }
  if (in_.pos == in_.end) {
    auto more = in_.refill();
    if (!more) return more.error();
    if (!*more) {
      byte_offset_ = in_.offset_of(in_.pos);  // past a byte order mark and nothing else
      return false;
    }
  }

  discard_ = false;
  record_bytes_ = 0;
  std::size_t index = 0;
  begin_field(fields, 0);
  State state = State::kFieldStart;
  const char* const buf = in_.data();
  std::size_t& pos = in_.pos;  // the hot loop reads and advances the buffer in place
  const std::size_t& end = in_.end;
  while (state != State::kDone) {
    if (pos == end) {
      auto more = in_.refill();
      if (!more) return more.error();
      if (!*more) break;  // the end of input ends the field and the record, in any state
    }
    const char* p = buf + pos;
    const char* e = buf + end;
    switch (state) {
      case State::kFieldStart:
        if (*p == '"') {
          ++pos;
          state = State::kQuoted;
          continue;
        }
        state = State::kUnquoted;
        [[fallthrough]];
      case State::kUnquoted: {
        const char* q = find_special(p, e);
        append(fields, p, q);
        pos = static_cast<std::size_t>(q - buf);
        if (q == e) continue;
        ++pos;
        if (*q == ',') {
          begin_field(fields, ++index);
          state = State::kFieldStart;
          continue;
        }
        if (*q == '\r') {
          if (pos == end) {
            auto more_after_cr = in_.refill();
            if (!more_after_cr) return more_after_cr.error();
          }
          if (pos < end && buf[pos] == '\n') ++pos;
        }
        state = State::kDone;
        continue;
      }
      case State::kQuoted: {
        const auto* q =
            static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(e - p)));
        if (q == nullptr) {
          append(fields, p, e);
          pos = end;
          continue;
        }
        append(fields, p, q);
        pos = static_cast<std::size_t>(q - buf) + 1;
        state = State::kQuotedQuote;
        continue;
      }
      case State::kQuotedQuote:
        if (*p == '"') {
          append(fields, p, p + 1);
          ++pos;
          state = State::kQuoted;
          continue;
        }
        // The quote closed the field; whatever follows up to a separator is literal.
        state = State::kUnquoted;
        continue;
      case State::kDone:
        break;
    }
  }

  if (discard_) {
    oversize_ = true;
    discarded_.clear();
  } else {
    fields.resize(index + 1);
  }
  ++records_read_;
  byte_offset_ = in_.offset_of(in_.pos);
  return true;
}

Status CsvReader::seek(std::uint64_t byte_offset, std::uint64_t records_before) {
  if (auto st = in_.seek(byte_offset); !st) return st;
  oversize_ = false;
  records_read_ = records_before;
  byte_offset_ = byte_offset;
  return ok_status();
}

Status check_header(const std::vector<std::string>& found, const std::vector<std::string>& expected,
                    std::string_view path) {
  const std::size_t common = std::min(found.size(), expected.size());
  std::string problem;
  for (std::size_t i = 0; i < common; ++i) {
    const std::string_view f = trim_blanks(found[i]);
    if (f != expected[i]) {
      problem = "column " + std::to_string(i + 1) + " is '" + std::string(f) + "' but the " +
                "configured columns say '" + expected[i] + "'";
      break;
    }
  }
  if (problem.empty() && found.size() < expected.size()) {
    problem = "it has " + std::to_string(found.size()) + " columns but " +
              std::to_string(expected.size()) + " are configured; column " +
              std::to_string(found.size() + 1) + " '" + expected[found.size()] + "' is missing";
  } else if (problem.empty() && found.size() > expected.size()) {
    problem = "it has " + std::to_string(found.size()) + " columns but " +
              std::to_string(expected.size()) + " are configured; column " +
              std::to_string(expected.size() + 1) + " '" +
              std::string(trim_blanks(found[expected.size()])) + "' is not configured";
  }
  if (problem.empty()) return ok_status();
  return Error{"csv", static_cast<int>(CsvErrc::kHeaderMismatch),
               std::string(path) +
                   ", line 1: the header does not match the configured columns: " + problem +
                   ". Fix the file's header or the columns (or declare the file " + "headerless)",
               0};
}

bool valid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    // ASCII runs are the common case: test 8 bytes at a time.
    if (i + 8 <= n) {
      std::uint64_t chunk;
      std::memcpy(&chunk, s + i, 8);
      if ((chunk & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c == 0xE0) {
      len = 3;
      lo = 0xA0;  // no overlong forms
    } else if (c == 0xED) {
      len = 3;
      hi = 0x9F;  // no surrogates
    } else if (c >= 0xE1 && c <= 0xEF) {
      len = 3;
    } else if (c == 0xF0) {
      len = 4;
      lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = 4;
    } else if (c == 0xF4) {
      len = 4;
      hi = 0x8F;  // nothing past U+10FFFF
    } else {
      return false;
    }
    if (i + len > n) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

void append_csv_field(std::string& out, std::string_view field) {
  // A leading BOM (U+FEFF) would be skipped by a reader at the start of a file: quote it.
  const bool needs_quotes = field.find_first_of(",\"\r\n") != std::string_view::npos ||
                            field.substr(0, kUtf8Bom.size()) == kUtf8Bom;
  if (!needs_quotes) {
    out.append(field);
    return;
  }
  out.push_back('"');
  for (;;) {
    const std::size_t q = field.find('"');
    if (q == std::string_view::npos) break;
    out.append(field.substr(0, q + 1));
    out.push_back('"');
    field.remove_prefix(q + 1);
  }
  out.append(field);
  out.push_back('"');
}

}  // namespace millrace::stages
