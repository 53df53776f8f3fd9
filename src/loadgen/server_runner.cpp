#include "loadgen/server_runner.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "loadgen/chat_client.h"
#include "util/process.h"

namespace kvstash::loadgen {

ServerRunner::ServerRunner(std::vector<std::string> argv, std::string log_path, int port)
    : argv_(std::move(argv)), log_path_(std::move(log_path)), port_(port) {
  if (argv_.empty()) throw std::invalid_argument("server command is empty");
}

ServerRunner::~ServerRunner() {
  if (child_.running()) stop(5);
}

double ServerRunner::start(int timeout_s) {
  SpawnOptions so;
  so.stdout_path = so.stderr_path = log_path_;  // appended to
  so.search_path = true;
  const auto t0 = std::chrono::steady_clock::now();
  child_ = Child(argv_, so);
  const auto deadline = t0 + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child_.alive()) {
      throw std::runtime_error(argv_[0] + " exited before it was ready:\n" + log_tail());
    }
    if (http_get("127.0.0.1", port_, "/health")) {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop(5);
  throw std::runtime_error(argv_[0] + " was not ready within " + std::to_string(timeout_s) +
                           " s:\n" + log_tail());
}

int ServerRunner::stop(int timeout_s) {
  if (!child_.running()) return -1;
  return child_.terminate(SIGTERM, timeout_s);
}

std::string ServerRunner::log_tail(size_t bytes) const { return file_tail(log_path_, bytes); }

std::string file_tail(const std::string& path, size_t bytes) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    throw std::runtime_error("no free loopback port");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_free(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(s);
  return ok;
}

int free_port_block(int count, bool bus, int avoid_below) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(std::max(20000, avoid_below), 29000);
  for (int tries = 0; tries < 200; ++tries) {
    const int base = pick(rng);
    bool ok = true;
    for (int i = 0; i < count && ok; ++i) {
      ok = port_free(base + i) && (!bus || port_free(base + 10000 + i));
    }
    if (ok) return base;
  }
  throw std::runtime_error("no block of " + std::to_string(count) + " free loopback ports");
}

}  // namespace kvstash::loadgen
