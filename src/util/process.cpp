#include "util/process.h"

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

namespace kvstash {

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
