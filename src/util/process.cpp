#include "util/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace kvstash {

namespace {

int exit_status(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

// waitpid, again after a signal interrupted it.
pid_t wait_for(pid_t pid, int* wait_status, int flags) {
  pid_t r;
  while ((r = ::waitpid(pid, wait_status, flags)) < 0 && errno == EINTR) {
  }
  return r;
}

// This process's environment with `changes` applied (an empty value unsets), built before the
// fork: the child of a threaded process may only call async-signal-safe functions.
std::vector<std::string> child_environment(
    const std::vector<std::pair<std::string, std::string>>& changes) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  for (const auto& [k, v] : changes) {
    const std::string prefix = k + "=";
    std::erase_if(env, [&](const std::string& s) { return s.starts_with(prefix); });
    if (!v.empty()) env.push_back(prefix + v);
  }
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The files a child's output goes to, opened by the parent and closed after the fork.
struct OutputFds {
  int out = -1, err = -1;
  explicit OutputFds(const SpawnOptions& opt) {
    try {
      if (!opt.stdout_path.empty()) out = open_log(opt.stdout_path);
      if (!opt.stderr_path.empty()) {
        err = opt.stderr_path == opt.stdout_path ? out : open_log(opt.stderr_path);
      }
    } catch (...) {
      close_all();
      throw;
    }
  }
  ~OutputFds() { close_all(); }
  OutputFds(const OutputFds&) = delete;
  OutputFds& operator=(const OutputFds&) = delete;

 private:
  static int open_log(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    return fd;
  }
  void close_all() {
    if (out >= 0) ::close(out);
    if (err >= 0 && err != out) ::close(err);
    out = err = -1;
  }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A temporary file for a child's output, removed with this object.
struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/kvstash-child-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("cannot create a temporary file in /tmp");
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

}  // namespace

Child::Child(const std::vector<std::string>& argv, const SpawnOptions& opt) {
  if (argv.empty()) throw std::invalid_argument("cannot start a process: empty command");
  std::vector<std::string> args = argv;
  std::vector<std::string> env = child_environment(opt.env);
  std::vector<char*> c_args = c_strings(args), c_env = c_strings(env);
  const std::string exec_failed = "cannot run " + argv[0] + "\n";
  const OutputFds fds(opt);
  pid_ = ::fork();
  if (pid_ < 0) {
    pid_ = -1;
    throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
  }
  if (pid_ == 0) {
    if (fds.out >= 0) ::dup2(fds.out, 1);
    if (fds.err >= 0) ::dup2(fds.err, 2);
    if (opt.search_path) {
      ::execvpe(c_args[0], c_args.data(), c_env.data());
    } else {
      ::execve(c_args[0], c_args.data(), c_env.data());
    }
    [[maybe_unused]] ssize_t w = ::write(2, exec_failed.data(), exec_failed.size());
    ::_exit(127);
  }
}

Child::~Child() { kill(); }

Child::Child(Child&& o) noexcept : pid_(o.pid_), status_(o.status_) {
  o.pid_ = -1;
  o.status_.reset();
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    kill();
    pid_ = o.pid_;
    status_ = o.status_;
    o.pid_ = -1;
    o.status_.reset();
  }
  return *this;
}

void Child::reaped(int wait_status) {
  status_ = exit_status(wait_status);
  pid_ = -1;
}

bool Child::alive() {
  if (pid_ <= 0) return false;
  int st = 0;
  const pid_t r = wait_for(pid_, &st, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    reaped(st);
  } else {
    pid_ = -1;  // not our child any more (reaped elsewhere)
  }
  return false;
}

int Child::wait() {
  if (pid_ <= 0) return -1;
  int st = 0;
  if (wait_for(pid_, &st, 0) != pid_) {
    pid_ = -1;
    return -1;
  }
  reaped(st);
  return *status_;
}

int Child::terminate(int sig, int timeout_s) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  for (int i = 0; i < timeout_s * 20; ++i) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped(st);
      return *status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid_, SIGKILL);
  wait_for(pid_, nullptr, 0);
  pid_ = -1;
  return -1;
}

void Child::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait();
}

ProcResult run_process(const std::vector<std::string>& argv, const RunOptions& opt) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty command");
  TempFile out, err;
  SpawnOptions so;
  so.env = opt.env;
  so.stdout_path = out.path;
  if (opt.capture_stderr) so.stderr_path = err.path;
  Child child(argv, so);
  ProcResult r;
  r.rc = child.wait();
  r.out = slurp(out.path);
  if (opt.capture_stderr) r.err = slurp(err.path);
  return r;
}

std::string self_exe() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "kvstash" : p.string();
}

}  // namespace kvstash
