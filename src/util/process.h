// Child processes: running one to completion, and stopping one (the servers that benchmarks and
// tests start).
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace kvstash {

struct ProcResult {
  int rc = -1;           // exit status; 128 + signal if a signal ended it
  std::string out, err;  // err stays empty when stderr was passed through
};

struct RunOptions {
  // Set in the child before exec; an empty value unsets the variable.
  std::vector<std::pair<std::string, std::string>> env;
  // false: the child writes to this process's stderr (its log lines show as they happen).
  bool capture_stderr = true;
};

// Runs argv[0] (a path, no PATH search) with `argv`, each element one argument (no shell), and
// waits for it. Its stdout is captured.
ProcResult run_process(const std::vector<std::string>& argv, const RunOptions& opt = {});

// The path of this process's executable (to run kvstash's own verbs as children).
std::string self_exe();

// Sends `sig` to `pid` and waits up to `timeout_s` for it to exit; then SIGKILL. Returns the exit
// status (128 + signal if a signal ended it), or -1 if it had to be killed after the timeout.
int stop_child(pid_t pid, int sig, int timeout_s);

}  // namespace kvstash
