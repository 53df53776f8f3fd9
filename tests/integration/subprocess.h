// Runs the kvstash binary as a child process (a real restart between requests).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "util/process.h"

namespace kvstash::fixtures {

using ProcResult = kvstash::ProcResult;

// Runs KVSTASH_BIN with `args` (each passed as one argument, no shell expansion), with `env` set
// (an empty value unsets a variable); captures stdout and stderr.
ProcResult run_kvstash(const std::vector<std::string>& args,
                       const std::vector<std::pair<std::string, std::string>>& env = {});

}  // namespace kvstash::fixtures
