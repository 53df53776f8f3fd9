// Runs the kvstash binary as a child process (a real restart between requests).
#pragma once

#include <string>
#include <vector>

namespace kvstash::fixtures {

struct ProcResult {
  int rc = -1;
  std::string out, err;
};

// Runs KVSTASH_BIN with `args` (each passed as one argument, no shell expansion).
ProcResult run_kvstash(const std::vector<std::string>& args);

}  // namespace kvstash::fixtures
