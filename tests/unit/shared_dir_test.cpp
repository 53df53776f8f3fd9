// Several kvstash processes on one cache directory: stores, rescans, `kvstash cache ls`-style
// opens and removals race, and nothing another process made durable is lost.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "cache/prefix_cache.h"
#include "synthetic_kv.h"
#include "temp_dir.h"
#include "util/log.h"

using namespace kvstash;
using namespace kvstash::cache;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t C = fixtures::kSynthChunk;
constexpr size_t kStored = 1300;  // each conversation's durable checkpoint

std::array<uint8_t, 16> fp() {
  std::array<uint8_t, 16> f;
  f.fill(5);
  return f;
}

CacheConfig cfg(const std::string& dir) {
  CacheConfig c;
  c.dir = dir;
  c.disk_budget = 1ull << 34;
  c.chunk = C;
  return c;
}

std::string durable_list(const std::string& dir, int p) {
  return dir + "/durable-" + std::to_string(p) + ".txt";  // beside the namespaces, never in one
}

// One process's work until `seconds` pass: per conversation a continued checkpoint, then a longer
// one that supersedes it (its file is removed), drained (durable) and recorded; a forced rescan
// after each store; now and then a fresh open of the directory, as `kvstash cache ls` does, and
// a budget enforcement. Returns the exit status.
int writer(const std::string& dir, int p, int seconds) {
  log::set_hook([](const std::string&) {});
  std::freopen("/dev/null", "w", stderr);
  PrefixCache c(cfg(dir), fp());
  std::ofstream durable(durable_list(dir, p));
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (int j = 0; std::chrono::steady_clock::now() < end && j < 15000; ++j) {
    const Token seed = static_cast<Token>(1 + p * 15000 + j);  // distinct conversations
    const auto tokens = fixtures::conv(kStored, seed);
    fixtures::put(c, std::span(tokens).first(800), Reason::kContinued);
    c.refresh();
    if (!fixtures::put(c, tokens, Reason::kContinued).stored) return 2;
    c.refresh();
    if (!c.drain(-1)) return 3;
    durable << seed << std::endl;
    if (j % 8 == p) {
      PrefixCache ls(cfg(dir), fp());
      (void)ls.objects();
    }
    if (j % 5 == 0) c.enforce_budget();
  }
  return 0;
}

}  // namespace

// $KVSTASH_STRESS_SECONDS (default 10) long: the figure of merit is a 60 s run.
TEST(SharedDirectory, ThreeProcessesStoringRescanningAndRemovingLoseNothingDurable) {
  const char* env = std::getenv("KVSTASH_STRESS_SECONDS");
  const int seconds = env ? std::atoi(env) : 10;
  fixtures::TempDir t;
  std::vector<pid_t> kids;
  for (int p = 0; p < 3; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) ::_exit(writer(t.path, p, seconds));
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer status " << status;
  }
  PrefixCache c(cfg(t.path), fp());
  std::set<Key> entries;
  for (const auto& n : c.objects()) {
    if (n.meta.kind == ObjKind::kEntry && n.on_disk) entries.insert(n.meta.key);
  }
  size_t durable = 0, lost = 0;
  for (int p = 0; p < 3; ++p) {
    std::ifstream in(durable_list(t.path, p));
    for (Token seed; in >> seed;) {
      ++durable;
      // Its entry is on disk, and its chunks restore a longer prompt of the conversation.
      const auto tokens = fixtures::conv(kStored, seed);
      const auto chain = chain_keys(c.root(), tokens, C);
      const size_t k = kStored / C;
      const Key entry = entry_key(chain[k - 1], std::span(tokens).subspan(k * C));
      std::string err;
      const uint32_t resume = fixtures::check_restore(c, fixtures::conv(kStored + 100, seed), &err);
      if (!entries.contains(entry) || resume != k * C || !err.empty()) {
        if (++lost <= 5)
          ADD_FAILURE() << "conversation " << seed << " lost: " << resume << " " << err;
      }
    }
  }
  std::printf("shared directory, 3 processes, %d s: %zu durable entries, %zu lost\n", seconds,
              durable, lost);
  EXPECT_GT(durable, 30u);
  EXPECT_EQ(lost, 0u);
}
