#include "server_process.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "util/process.h"

namespace kvstash::fixtures {

ServerProcess::ServerProcess(const std::vector<std::string>& args,
                             const std::vector<std::pair<std::string, std::string>>& env) {
  char tmpl[] = "/tmp/kvstash-serve-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  if (fd >= 0) ::close(fd);
  log_path_ = tmpl;
  std::vector<std::string> argv = {KVSTASH_BIN, "serve", "--host", "127.0.0.1", "--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  SpawnOptions so;
  so.env = env;
  so.stdout_path = so.stderr_path = log_path_;
  child_ = Child(argv, so);
  const std::string marker = "listening on http://127.0.0.1:";
  for (int i = 0; i < 600; ++i) {
    const std::string l = log();
    if (auto p = l.find(marker); p != std::string::npos) {
      port_ = std::stoi(l.substr(p + marker.size()));
      return;
    }
    if (!child_.alive()) {
      throw std::runtime_error("kvstash serve exited early:\n" + l);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop(SIGKILL);
  throw std::runtime_error("kvstash serve did not start listening:\n" + log());
}

ServerProcess::~ServerProcess() {
  if (child_.running()) stop(SIGKILL);
  ::unlink(log_path_.c_str());
}

std::string ServerProcess::log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int ServerProcess::wait_exit(int timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (child_.alive()) {
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return child_.status().value_or(-1);
}

int ServerProcess::stop(int sig, int timeout_s) {
  if (!child_.running()) return -1;
  return child_.terminate(sig, timeout_s);
}

}  // namespace kvstash::fixtures
