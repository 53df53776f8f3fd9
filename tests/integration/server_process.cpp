#include "server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
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
  log_path_ = tmpl;
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [k, v] : env) {
      if (v.empty()) {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
    std::vector<std::string> all = {KVSTASH_BIN, "serve", "--host", "127.0.0.1", "--port", "0"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(KVSTASH_BIN, argv.data());
    std::_Exit(127);
  }
  ::close(fd);
  const std::string marker = "listening on http://127.0.0.1:";
  for (int i = 0; i < 600; ++i) {
    const std::string l = log();
    if (auto p = l.find(marker); p != std::string::npos) {
      port_ = std::stoi(l.substr(p + marker.size()));
      return;
    }
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("kvstash serve exited early:\n" + l);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop(SIGKILL);
  throw std::runtime_error("kvstash serve did not start listening:\n" + log());
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) stop(SIGKILL);
  ::unlink(log_path_.c_str());
}

std::string ServerProcess::log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int ServerProcess::stop(int sig, int timeout_s) {
  if (pid_ <= 0) return -1;
  const int rc = stop_child(pid_, sig, timeout_s);
  pid_ = -1;
  return rc;
}

}  // namespace kvstash::fixtures
