// Versions of millrace and of every format that crosses a process boundary. A reader that
// finds another format version in a segment or message refuses it with a clear error.
#pragma once

#include <cstdint>

namespace millrace {

inline constexpr const char* kVersion = "0.1.0";

// Bump when the byte layout of the corresponding format changes.
inline constexpr std::uint32_t kSegmentFormatVersion = 1;
inline constexpr std::uint32_t kRingFormatVersion = 1;
inline constexpr std::uint32_t kCodecFormatVersion = 1;
inline constexpr std::uint32_t kStatsFormatVersion = 1;
inline constexpr std::uint32_t kManagerProtocolVersion = 2;

}  // namespace millrace
