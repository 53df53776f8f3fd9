// Child processes: the one way kvstash and its tests start them (the servers that `kvstash bench`
// and the tests run, redis-server, kvstash's own verbs), wait for them and stop them.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvstash {

struct SpawnOptions {
  // Set in the child's environment; an empty value unsets the variable.
  std::vector<std::pair<std::string, std::string>> env;
  // Where the child's stdout and stderr go: empty inherits this process's; otherwise the file is
  // opened (created 0644, appended to) before the fork. The same path for both shares one open
  // file, so the two streams interleave as they are written.
  std::string stdout_path, stderr_path;
  // Look argv[0] up in PATH (execvp) instead of taking it as a path (execv).
  bool search_path = false;
};

// A child process that this object owns: started by the constructor, killed (SIGKILL) and reaped
// by the destructor if it is still running then. Exit statuses are the exit code, or 128 + the
// signal if a signal ended it; a child that cannot exec exits 127 after a line on its stderr.
class Child {
 public:
  Child() = default;  // no process
  // Runs argv[0] with `argv`, each element one argument (no shell). Throws std::runtime_error if
  // argv is empty, an output file cannot be opened, or fork fails.
  explicit Child(const std::vector<std::string>& argv, const SpawnOptions& opt = {});
  ~Child();
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;  // kills and reaps the process this one held
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The process id, or -1 when there is none (not started, or already reaped).
  pid_t pid() const { return pid_; }
  // Started and not reaped yet: alive, or exited and not yet seen by alive() or a wait.
  bool running() const { return pid_ > 0; }
  // Whether the process is still running; reaps it (and records its status) if it has exited.
  bool alive();
  // The exit status once the process was reaped by alive() or a wait (not by a kill timeout).
  std::optional<int> status() const { return status_; }

  // Waits for the exit and returns the exit status (-1 when there is no process).
  int wait();
  // Sends `sig`, then polls every 50 ms for up to `timeout_s` seconds for the exit; after that
  // SIGKILL and a wait. Returns the exit status, or -1 if it had to be killed after the timeout
  // (or there is no process).
  int terminate(int sig, int timeout_s);
  // SIGKILL and wait (an outage, or the end of a test).
  void kill();

 private:
  void reaped(int wait_status);
  pid_t pid_ = -1;
  std::optional<int> status_;
};

struct ProcResult {
  int rc = -1;           // exit status; 128 + signal if a signal ended it
  std::string out, err;  // err stays empty when stderr was passed through
};

struct RunOptions {
  // Set in the child before exec; an empty value unsets the variable.
  std::vector<std::pair<std::string, std::string>> env;
  // false: the child writes to this process's stderr (its log lines show as they happen).
  bool capture_stderr = true;
};

// Runs argv[0] (a path, no PATH search) with `argv`, each element one argument (no shell), and
// waits for it. Its stdout is captured.
ProcResult run_process(const std::vector<std::string>& argv, const RunOptions& opt = {});

// The path of this process's executable (to run kvstash's own verbs as children).
std::string self_exe();

}  // namespace kvstash
