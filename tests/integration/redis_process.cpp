#include "redis_process.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "loadgen/server_runner.h"

namespace kvstash::fixtures {

RedisProcess::RedisProcess(int port, const std::vector<std::string>& extra)
    : port_(port ? port : loadgen::free_port_block(1, true)) {
  if (::access("/usr/bin/redis-server", X_OK) != 0) {
    throw std::runtime_error("redis-server is not installed (./setup.sh installs it)");
  }
  std::vector<std::string> args = {"/usr/bin/redis-server", "--port", std::to_string(port_)};
  for (const char* a :
       {"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"}) {
    args.push_back(a);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  child_ = Child(args);  // its output goes to the test's
  for (int i = 0; i < 100; ++i) {
    // A server that requires a password answers NOAUTH: it is up all the same.
    const std::string pong = cli("PING");
    if (pong.find("PONG") != std::string::npos || pong.find("NOAUTH") != std::string::npos) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill();
  throw std::runtime_error("redis-server did not start on port " + std::to_string(port_));
}

RedisProcess::~RedisProcess() { kill(); }

void RedisProcess::kill() { child_.kill(); }

std::string RedisProcess::cli(const std::string& args) const {
  const std::string cmd =
      "redis-cli -h 127.0.0.1 -p " + std::to_string(port_) + " " + args + " 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
    ::pclose(f);
  }
  return out;
}

RedisCluster::RedisCluster() {
  char tmpl[] = "/tmp/kvstash-cluster-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  std::string create = "redis-cli --cluster create";
  for (int i = 0; i < 3; ++i) {
    const std::string conf = dir_ + "/nodes-" + std::to_string(i) + ".conf";
    nodes_.push_back(std::make_unique<RedisProcess>(
        0, std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file", conf}));
    create += " 127.0.0.1:" + std::to_string(nodes_.back()->port());
  }
  create += " --cluster-replicas 0 --cluster-yes > /dev/null 2>&1";
  if (std::system(create.c_str()) != 0)
    throw std::runtime_error("redis-cli --cluster create failed");
  for (int i = 0; i < 100; ++i) {
    if (nodes_[0]->cli("CLUSTER INFO").find("cluster_state:ok") != std::string::npos &&
        nodes_[2]->cli("CLUSTER INFO").find("cluster_state:ok") != std::string::npos) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("the Redis Cluster did not become ready");
}

RedisCluster::~RedisCluster() {
  nodes_.clear();
  std::system(("rm -rf " + dir_).c_str());
}

}  // namespace kvstash::fixtures
