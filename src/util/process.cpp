#include "util/process.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace kvstash {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A temporary file for a child's output, unlinked when the result is read.
struct OutFile {
  std::string path;
  int fd = -1;
  OutFile() {
    char tmpl[] = "/tmp/kvstash-child-XXXXXX";
    fd = ::mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("cannot create a temporary file in /tmp");
    path = tmpl;
  }
  std::string read() {
    ::close(fd);
    fd = -1;
    return slurp(path);
  }
  ~OutFile() {
    if (fd >= 0) ::close(fd);
    ::unlink(path.c_str());
  }
};

}  // namespace

ProcResult run_process(const std::vector<std::string>& argv, const RunOptions& opt) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty command");
  OutFile out, err;
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::dup2(out.fd, 1);
    if (opt.capture_stderr) ::dup2(err.fd, 2);
    for (const auto& [k, v] : opt.env) {
      if (v.empty()) {
        ::unsetenv(k.c_str());
      } else {
        ::setenv(k.c_str(), v.c_str(), 1);
      }
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s\n", args[0]);
    std::_Exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ProcResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = out.read();
  if (opt.capture_stderr) r.err = err.read();
  return r;
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "kvstash" : p.string();
}

int stop_child(pid_t pid, int sig, int timeout_s) {
  ::kill(pid, sig);
  for (int i = 0; i < timeout_s * 20; ++i) {
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace kvstash
