// Opening a link from its spec, as the launcher hands it to a worker: `shm:NAME` attaches the
// ring segment NAME; `pipe:FD` takes over the inherited pipe end FD. The returned object owns
// whatever it attached (the mapping, the descriptor).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ipc/link.hpp"
#include "ipc/result.hpp"

namespace millrace::ipc {

Result<std::unique_ptr<LinkWriter>> open_link_writer(std::string_view spec);
Result<std::unique_ptr<LinkReader>> open_link_reader(std::string_view spec);

// Specs for the launcher.
std::string shm_link_spec(std::string_view segment_name);
std::string pipe_link_spec(int fd);

}  // namespace millrace::ipc
