// A real redis-server (Debian's package) on a loopback port, started and stopped by a test.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "util/process.h"

namespace kvstash::fixtures {

class RedisProcess {
 public:
  // port 0: pick a free one. `extra` adds server options (e.g. --requirepass PW).
  explicit RedisProcess(int port = 0, const std::vector<std::string>& extra = {});
  ~RedisProcess();
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  void kill();  // SIGKILL, as an outage
  // Runs redis-cli against it (as the default user, no password) and returns its output.
  std::string cli(const std::string& args) const;

 private:
  Child child_;
  int port_ = 0;
};

// Three masters of a Redis Cluster, all slots assigned.
class RedisCluster {
 public:
  RedisCluster();
  ~RedisCluster();
  std::string url(int node) const { return nodes_[node]->url(); }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<RedisProcess>> nodes_;
};

}  // namespace kvstash::fixtures
