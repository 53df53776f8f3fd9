// A real `kvstash serve` process on a loopback port, for tests that talk HTTP.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "util/process.h"

namespace kvstash::fixtures {

class ServerProcess {
 public:
  // Starts `kvstash serve --host 127.0.0.1 --port 0 ARGS...` and waits until it listens. `env` is
  // set in the server's environment (an empty value unsets a variable).
  explicit ServerProcess(const std::vector<std::string>& args,
                         const std::vector<std::pair<std::string, std::string>>& env = {});
  ~ServerProcess();
  int port() const { return port_; }
  std::string log() const;
  // Sends `sig` and waits up to `timeout_s` for the exit; returns the exit code (-1: timed out).
  int stop(int sig, int timeout_s = 30);
  // Waits up to `timeout_s` for an exit without sending anything; returns the exit code (-1: still
  // running, or no process).
  int wait_exit(int timeout_s);
  bool running() const { return child_.running(); }
  int pid() const { return child_.pid(); }

 private:
  Child child_;
  int port_ = 0;
  std::string log_path_;
};

}  // namespace kvstash::fixtures
