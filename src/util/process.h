// Stopping a child process (the servers that benchmarks and tests start).
#pragma once

#include <sys/types.h>

namespace kvstash {

// Sends `sig` to `pid` and waits up to `timeout_s` for it to exit; then SIGKILL. Returns the exit
// status (128 + signal if a signal ended it), or -1 if it had to be killed after the timeout.
int stop_child(pid_t pid, int sig, int timeout_s);

}  // namespace kvstash
