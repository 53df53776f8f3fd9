// The child-process helper (util/process.h) with real processes: exit statuses, terminate with and
// without a timeout, output redirection, the environment, PATH search, the destructor's kill.
#include "util/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "temp_dir.h"

namespace kvstash {
namespace {

using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Waits up to 10 s for `path` to contain `what`.
bool wait_for_text(const std::string& path, const std::string& what) {
  for (int i = 0; i < 1000; ++i) {
    if (slurp(path).find(what) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST(Process, TrueExitsZero) {
  Child c({"/bin/true"});
  EXPECT_GT(c.pid(), 0);
  EXPECT_TRUE(c.running());
  EXPECT_EQ(c.wait(), 0);
  EXPECT_FALSE(c.running());
  EXPECT_EQ(c.pid(), -1);
  EXPECT_EQ(c.status(), 0);
  EXPECT_FALSE(c.alive());
  EXPECT_EQ(c.wait(), -1);  // nothing left to wait for
}

TEST(Process, ExitCode) {
  Child c({"/bin/sh", "-c", "exit 3"});
  EXPECT_EQ(c.wait(), 3);
  EXPECT_EQ(c.status(), 3);
}

TEST(Process, AliveReapsAnExitedChild) {
  Child c({"/bin/sh", "-c", "exit 5"});
  for (int i = 0; i < 1000 && c.alive(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(c.alive());
  EXPECT_FALSE(c.running());
  EXPECT_EQ(c.status(), 5);
}

TEST(Process, TerminateSleep) {
  Child c({"/bin/sleep", "30"});
  EXPECT_TRUE(c.alive());
  const auto t0 = Clock::now();
  EXPECT_EQ(c.terminate(SIGTERM, 10), 128 + SIGTERM);
  EXPECT_LT(seconds_since(t0), 5);
  EXPECT_FALSE(c.running());
  EXPECT_FALSE(c.alive());
  EXPECT_EQ(c.terminate(SIGTERM, 1), -1);  // already gone
}

TEST(Process, TerminateKillsAfterTheTimeout) {
  fixtures::TempDir dir;
  const std::string out = dir.path + "/out";
  SpawnOptions so;
  so.stdout_path = out;
  // SIGTERM stays ignored across the exec.
  Child c({"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 30"}, so);
  ASSERT_TRUE(wait_for_text(out, "ready"));
  const auto t0 = Clock::now();
  EXPECT_EQ(c.terminate(SIGTERM, 1), -1);
  const double took = seconds_since(t0);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 5);
  EXPECT_FALSE(c.running());
}

TEST(Process, KillAndDestructor) {
  Child c({"/bin/sleep", "30"});
  c.kill();
  EXPECT_FALSE(c.running());
  EXPECT_EQ(c.status(), 128 + SIGKILL);

  pid_t pid;
  {
    Child d({"/bin/sleep", "30"});
    pid = d.pid();
    ASSERT_GT(pid, 0);
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  EXPECT_EQ(::kill(pid, 0), -1);  // killed and reaped: no such process
}

TEST(Process, MoveKeepsOneOwner) {
  Child a({"/bin/sh", "-c", "exit 7"});
  const pid_t pid = a.pid();
  Child b = std::move(a);
  EXPECT_EQ(a.pid(), -1);
  EXPECT_FALSE(a.running());
  EXPECT_EQ(b.pid(), pid);
  EXPECT_EQ(b.wait(), 7);

  Child c({"/bin/sleep", "30"});
  const pid_t sleeper = c.pid();
  c = Child({"/bin/true"});  // the sleeper is killed and reaped
  EXPECT_EQ(::kill(sleeper, 0), -1);
  EXPECT_EQ(c.wait(), 0);
}

TEST(Process, OutputToOneFile) {
  fixtures::TempDir dir;
  const std::string log = dir.path + "/log";
  { std::ofstream(log) << "before\n"; }
  SpawnOptions so;
  so.stdout_path = so.stderr_path = log;
  Child c({"/bin/sh", "-c", "echo out; echo err >&2; echo out2"}, so);
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(slurp(log), "before\nout\nerr\nout2\n");  // appended, in order
}

TEST(Process, OutputToTwoFiles) {
  fixtures::TempDir dir;
  SpawnOptions so;
  so.stdout_path = dir.path + "/out";
  so.stderr_path = dir.path + "/err";
  Child c({"/bin/sh", "-c", "echo out; echo err >&2"}, so);
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(slurp(so.stdout_path), "out\n");
  EXPECT_EQ(slurp(so.stderr_path), "err\n");
}

TEST(Process, Environment) {
  ::setenv("KVSTASH_PROCESS_TEST_UNSET", "still here", 1);
  ::setenv("KVSTASH_PROCESS_TEST_KEPT", "kept", 1);
  fixtures::TempDir dir;
  SpawnOptions so;
  so.stdout_path = dir.path + "/out";
  so.env = {{"KVSTASH_PROCESS_TEST_SET", "a b"}, {"KVSTASH_PROCESS_TEST_UNSET", ""}};
  Child c({"/bin/sh", "-c",
           "echo \"$KVSTASH_PROCESS_TEST_SET|${KVSTASH_PROCESS_TEST_UNSET-unset}|"
           "$KVSTASH_PROCESS_TEST_KEPT\""},
          so);
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(slurp(so.stdout_path), "a b|unset|kept\n");
  EXPECT_STREQ(::getenv("KVSTASH_PROCESS_TEST_UNSET"), "still here");  // ours is untouched
  ::unsetenv("KVSTASH_PROCESS_TEST_UNSET");
  ::unsetenv("KVSTASH_PROCESS_TEST_KEPT");
}

TEST(Process, PathSearchAndExecFailure) {
  fixtures::TempDir dir;
  SpawnOptions so;
  so.search_path = true;
  EXPECT_EQ(Child({"sh", "-c", "exit 4"}, so).wait(), 4);

  SpawnOptions no_search;
  no_search.stderr_path = dir.path + "/err";
  EXPECT_EQ(Child({"sh", "-c", "exit 4"}, no_search).wait(), 127);
  EXPECT_EQ(slurp(no_search.stderr_path), "cannot run sh\n");
}

TEST(Process, Errors) {
  EXPECT_THROW(Child(std::vector<std::string>{}), std::invalid_argument);
  SpawnOptions so;
  so.stdout_path = "/nonexistent-kvstash-dir/log";
  EXPECT_THROW(Child({"/bin/true"}, so), std::runtime_error);
  Child none;
  EXPECT_FALSE(none.running());
  EXPECT_FALSE(none.alive());
  EXPECT_EQ(none.wait(), -1);
  EXPECT_EQ(none.terminate(SIGTERM, 1), -1);
}

TEST(Process, RunProcessCaptures) {
  const ProcResult r = run_process({"/bin/sh", "-c", "echo out; echo err >&2; exit 2"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  const ProcResult s = run_process({"/bin/sh", "-c", "kill -TERM $$"});
  EXPECT_EQ(s.rc, 128 + SIGTERM);
}

}  // namespace
}  // namespace kvstash
