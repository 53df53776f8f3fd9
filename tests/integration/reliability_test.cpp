// Reliability (issue 6): killed processes, full disks, zero budgets, two servers on one
// directory. The cache must never serve a wrong state and never lose the server.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>

#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <random>

#include "http_helpers.h"
#include "server_process.h"
#include "synthetic_kv.h"
#include "temp_dir.h"
#include "test_models.h"
#include "util/log.h"

using namespace kvstash;
using namespace kvstash::fixtures;
namespace fs = std::filesystem;

namespace {

// The shared TempDir, plus unmounting a filesystem a test mounted on it.
struct MountDir : fixtures::TempDir {
  ~MountDir() { ::umount2(path.c_str(), MNT_DETACH); }
};

// A small filesystem of its own (tmpfs) where this process may mount, else the disk tier's
// fault injection, so a full disk is tested either way.
struct SmallDisk {
  MountDir dir;
  bool mounted = false;
  explicit SmallDisk(const std::string& size) {
    mounted = ::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted) ::setenv("KVSTASH_FAULT_ENOSPC_AFTER", "600000", 1);
  }
  ~SmallDisk() { ::unsetenv("KVSTASH_FAULT_ENOSPC_AFTER"); }
};

size_t files_under(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& de : fs::recursive_directory_iterator(dir, ec)) n += de.is_regular_file();
  return n;
}

std::string model() { return fixtures::model_path("tiny"); }

// Answers of fresh prefills, one cache-less server for the whole test binary.
std::string fresh_answer(const json& msgs, int max_tokens) {
  static std::mutex mu;  // client threads of one test share the reference server
  std::lock_guard lock(mu);
  static std::unique_ptr<ServerProcess> ref;
  static std::map<std::string, std::string> memo;
  const std::string key = msgs.dump() + std::to_string(max_tokens);
  if (auto it = memo.find(key); it != memo.end()) return it->second;
  if (!ref)
    ref = std::make_unique<ServerProcess>(
        std::vector<std::string>{"-m", model(), "--ctx-size", "16384", "--cache-scope", "off"});
  return memo[key] =
             content(post(ref->port(), "/v1/chat/completions", chat_body(msgs, max_tokens)));
}

}  // namespace

TEST(Reliability, FullDiskDuringStoresCorruptsNothing) {
  SmallDisk disk("600k");
  cache::CacheConfig c;
  c.dir = disk.dir.path + "/cache";
  c.chunk = kSynthChunk;
  std::array<uint8_t, 16> fp;
  fp.fill(3);
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  size_t failed = 0;
  {
    cache::PrefixCache cache(c, fp);
    for (int i = 0; i < 40; ++i) {
      const auto t = conv(900, i + 1);
      failed += !put(cache, t).stored;
    }
    ASSERT_TRUE(cache.drain(-1));  // the writes happen on the transfer worker
    failed += cache.stats().io_errors["write"];
    // A full disk makes room (the budget is capped at the free space, an ENOSPC write evicts and
    // retries): stores fail only where nothing could go.
    const uint64_t evicted = cache.stats().evictions;
    EXPECT_GT(failed + evicted, 0u) << "the disk was expected to fill up";
    // Everything the index still knows restores with the right bytes.
    for (int i = 0; i < 40; ++i) {
      std::string err;
      const auto t = conv(901, i + 1);
      check_restore(cache, t, &err);
      EXPECT_EQ(err, "") << "conversation " << i;
    }
  }
  log::set_hook(nullptr);
  bool said = false;
  for (const auto& l : logs) {
    said |= l.find("No space left on device") != std::string::npos ||
            l.find("disk full: evicted to make room") != std::string::npos;
  }
  EXPECT_TRUE(said) << "the log says what happened";
  EXPECT_TRUE(fs::is_empty(fs::directory_iterator(c.dir).operator*().path() / "tmp"))
      << "no temporary file is left";
  // A restart finds nothing damaged.
  std::vector<std::string> logs2;
  log::set_hook([&](const std::string& l) { logs2.push_back(l); });
  cache::PrefixCache again(c, fp);
  log::set_hook(nullptr);
  ASSERT_FALSE(logs2.empty());
  EXPECT_NE(logs2[0].find("removed 0 damaged, 0 temporary"), std::string::npos) << logs2[0];
}

TEST(Reliability, ServerOnAFullDiskKeepsServingCorrectAnswers) {
  SmallDisk disk("1M");
  const std::vector<std::string> args = {"-m",
                                         model(),
                                         "--ctx-size",
                                         "16384",
                                         "--cache-dir",
                                         disk.dir.path + "/c",
                                         "--cache-boundary-align",
                                         "256"};
  json last;
  {
    ServerProcess srv(args);
    for (int i = 0; i < 6; ++i) {
      last = agent(40 + i, 1 + i % 2);
      const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(last, 4));
      ASSERT_EQ(r.status, 200) << r.raw;
      EXPECT_EQ(content(r), fresh_answer(last, 4));
    }
  }
  // The full disk made room for the newest stores (the older ones went): the last conversation
  // is restored by the next server.
  ServerProcess srv(args);
  const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(last, 4));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_GT(cached(r), 0) << srv.log();
  EXPECT_EQ(content(r), fresh_answer(last, 4));
}

TEST(Reliability, ZeroBudgetStoresNothingAndServes) {
  TempDir dir;
  ServerProcess srv({"-m", model(), "--ctx-size", "16384", "--cache-dir", dir.path,
                     "--cache-disk-budget", "0", "--cache-boundary-align", "256"});
  const json msgs = agent(50, 1);
  const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(msgs, 4));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(content(r), fresh_answer(msgs, 4));
  EXPECT_NE(srv.log().find("kv cache store skipped"), std::string::npos);
  EXPECT_EQ(files_under(dir.path), 0u);
}

TEST(Reliability, KilledAtRandomMomentsNeverServesADamagedState) {
  // SIGKILL during prefills, queued and in-flight stores and restores; after each restart the
  // cache must hold no temporary, torn or orphaned file and every restore must give a fresh
  // prefill's answer.
  const char* env = std::getenv("KVSTASH_CRASH_TRIALS");
  const int trials = env ? std::atoi(env) : 20;
  TempDir dir;
  const std::vector<std::string> args = {"-m",
                                         model(),
                                         "--ctx-size",
                                         "16384",
                                         "--cache-dir",
                                         dir.path,
                                         "--cache-boundary-align",
                                         "256",
                                         "--cache-continued-interval",
                                         "512"};
  std::mt19937 rng(12345);
  int restores = 0, checked = 0;
  for (int t = 0; t < trials; ++t) {
    const json victim = agent(60 + t % 3, 1 + rng() % 3);
    {
      // Every other trial runs on a slow disk, so the kill often lands while stores are queued
      // or half-written by the transfer worker.
      ServerProcess srv(args, {{"KVSTASH_FAULT_WRITE_DELAY_MS", t % 2 ? "40" : ""}});
      auto f = std::async(std::launch::async, [&] {
        return post(srv.port(), "/v1/chat/completions", chat_body(victim, 4));
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
      srv.stop(SIGKILL);
      f.wait();
    }
    ServerProcess srv(args);
    const std::string startup = srv.log();
    EXPECT_NE(startup.find(" 0 orphaned files"), std::string::npos)
        << "trial " << t << ": an object outlived its parent:\n"
        << startup;
    size_t tmp_files = 0;
    for (const auto& ns : fs::directory_iterator(dir.path))
      tmp_files += files_under(ns.path() / "tmp");
    EXPECT_EQ(tmp_files, 0u) << "trial " << t << ": a temporary file survived the startup scan";
    const json probe = agent(60 + rng() % 3, 1 + rng() % 3);
    const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(probe, 4));
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(content(r), fresh_answer(probe, 4)) << "trial " << t << " served a wrong state";
    restores += cached(r) > 0;
    ++checked;
    srv.stop(SIGKILL);
  }
  std::printf(
      "crash trials: %d, answers checked: %d, of which restored from the cache: %d, "
      "wrong states served: %d\n",
      trials, checked, restores, ::testing::Test::HasFailure() ? -1 : 0);
  EXPECT_GT(restores, trials / 4) << "the cache should survive most kills";
}

TEST(Reliability, TwoServersShareOneDirectoryUnderLoad) {
  TempDir dir;
  const std::vector<std::string> args = {
      "-m", model(), "--ctx-size", "16384", "--cache-dir", dir.path, "--cache-boundary-align",
      "256"};
  ServerProcess a(args), b(args);
  // Conversation k's first turn goes to one server; its second turn to the other.
  std::vector<std::future<void>> clients;
  std::atomic<int> cross_hits{0};
  for (int c = 0; c < 2; ++c) {
    clients.push_back(std::async(std::launch::async, [&, c] {
      for (int k = 0; k < 4; ++k) {
        const int conv = 70 + c * 10 + k;
        ServerProcess& first = (k + c) % 2 ? a : b;
        ServerProcess& second = (k + c) % 2 ? b : a;
        const json t1 = agent(conv, 1), t2 = agent(conv, 2);
        const Reply r1 = post(first.port(), "/v1/chat/completions", chat_body(t1, 4));
        ASSERT_EQ(r1.status, 200) << first.log();
        EXPECT_EQ(content(r1), fresh_answer(t1, 4));
        const Reply r2 = post(second.port(), "/v1/chat/completions", chat_body(t2, 4));
        ASSERT_EQ(r2.status, 200) << second.log();
        EXPECT_EQ(content(r2), fresh_answer(t2, 4));
        cross_hits += cached(r2) > 0;
      }
    }));
  }
  for (auto& f : clients) f.get();
  EXPECT_GE(cross_hits.load(), 6) << "each server reuses what the other stored";
  std::string err;
  for (const auto& ns : fs::directory_iterator(dir.path)) {
    EXPECT_EQ(files_under(ns.path() / "tmp"), 0u);
  }
}
