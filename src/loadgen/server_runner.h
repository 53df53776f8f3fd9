// A server under benchmark, run as a child process on a loopback port.
//
// The command line is the server's own (kvstash serve or llama-server); the runner adds nothing
// but what it is told, sends its output to a log file, waits until GET /health answers 200 (the
// model is loaded), and stops it with SIGTERM (a graceful exit: kvstash stores its live states),
// then SIGKILL after a timeout.
#pragma once

#include <string>
#include <vector>

#include "util/process.h"

namespace kvstash::loadgen {

class ServerRunner {
 public:
  ServerRunner(std::vector<std::string> argv, std::string log_path, int port);
  ~ServerRunner();
  ServerRunner(const ServerRunner&) = delete;
  ServerRunner& operator=(const ServerRunner&) = delete;

  // Starts the process and waits for /health. Throws with the log's tail if it exits or does not
  // become healthy within `timeout_s`. Returns the seconds it took.
  double start(int timeout_s);
  // SIGTERM, then SIGKILL after `timeout_s`. Returns the exit status, -1 if it was killed.
  int stop(int timeout_s);
  bool running() const { return child_.running(); }
  int port() const { return port_; }
  std::string log_tail(size_t bytes = 2000) const;

 private:
  std::vector<std::string> argv_;
  std::string log_path_;
  int port_;
  Child child_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now.
int free_port();
// Whether `port` on 127.0.0.1 can be listened on right now.
bool port_free(int port);
// A base port B with B..B+count-1 free (between 20000 and 29000, at least `avoid_below`), and
// B+10000.. too when `bus` (a Redis Cluster node's bus port).
int free_port_block(int count, bool bus, int avoid_below = 0);
// The last `bytes` of a file (a log), "" when it cannot be read.
std::string file_tail(const std::string& path, size_t bytes = 2000);

}  // namespace kvstash::loadgen
