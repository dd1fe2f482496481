#include "ipc/version.hpp"

namespace millrace {
static_assert(kSegmentFormatVersion > 0, "format versions start at 1");
}  // namespace millrace
