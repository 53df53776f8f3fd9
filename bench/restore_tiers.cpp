// Time to restore a prefix from the local disk tier, from Redis, and to recompute it.
//
//   kvstash-bench-tiers --model M.gguf --redis redis://127.0.0.1:6379 --tokens 8192,32768
//
// For each size: prefill cold (recompute), store the prefix, then restore it into a fresh
// session from a cache that has it only on disk, and from one that has it only in Redis (RAM as
// its local tier, so no disk write is timed). A restore is timed from lookup to a loaded state
// (what replaces the recompute); the restored state's tokens are checked. Bit-exactness of the
// logits is what the test suite proves. Prints one Markdown table row per size.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cache/prefix_cache.h"
#include "engine/cached_session.h"
#include "engine/session.h"
#include "util/size.h"

using namespace kvstash;
using Clock = std::chrono::steady_clock;

namespace {
double secs(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<engine::Token> prompt(engine::Model& m, size_t n) {
  std::string text;
  std::vector<engine::Token> t;
  for (int i = 0; t.size() < n; ++i) {
    for (int j = 0; j < 200; ++j, ++i) {
      text += "{\"tool\":\"t" + std::to_string(i) + "\",\"out\":\"line " + std::to_string(i * 7) +
              "\"}\n";
    }
    t = m.tokenize(text);
  }
  t.resize(n);
  return t;
}

// Restores the prefix p from `cache` into a fresh session; returns seconds.
double restore(engine::Model& m, const engine::SessionOptions& so, cache::PrefixCache& cache,
               std::vector<engine::Token> p) {
  engine::Session s(m, so);
  p.push_back(p.back());  // a request that goes on past the stored prefix
  const auto t0 = Clock::now();
  const auto plan = cache.plan(p, {});
  auto loaded = cache.load(plan);
  if (!loaded) throw std::runtime_error("restore failed: nothing loaded");
  engine::restore_plan(s, plan, *loaded, p);
  const double t = secs(t0);
  if (s.tokens().size() != p.size() - 1) {
    throw std::runtime_error("restored " + std::to_string(s.tokens().size()) +
                             " tokens, expected " + std::to_string(p.size() - 1));
  }
  return t;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"restore from disk vs Redis vs recompute"};
  std::string model_path, redis, dir = "/tmp/kvstash-bench-tiers";
  std::vector<size_t> sizes = {8192, 32768};
  int threads = 0, gpu_layers = 0;
  app.add_option("-m,--model", model_path)->required();
  app.add_option("--redis", redis, "redis://host:port")->required();
  app.add_option("--tokens", sizes)->delimiter(',');
  app.add_option("--dir", dir);
  app.add_option("-t,--threads", threads);
  app.add_option("--n-gpu-layers", gpu_layers);
  CLI11_PARSE(app, argc, argv);

  engine::Model m(model_path, {gpu_layers});
  std::printf(
      "| tokens | KV size | recompute | restore from disk | restore from Redis | disk vs recompute "
      "| Redis vs recompute |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (size_t n : sizes) {
    engine::SessionOptions so;
    so.n_ctx = static_cast<int>(n + 256);
    so.n_threads = threads;
    const auto p = prompt(m, n);
    std::filesystem::remove_all(dir);
    cache::CacheConfig cc;
    cc.dir = dir;
    cc.chunk = static_cast<uint32_t>(so.chunk);
    cc.remote.url = redis;
    engine::Session cold(m, so);
    uint64_t bytes = 0;
    double recompute = 0;
    {
      cache::PrefixCache writer(cc, cold.fingerprint().bytes);
      cache::StoreConfig only_shutdown;  // no checkpoints during the timed prefill
      only_shutdown.cold_max_tokens = 0;
      only_shutdown.continued_interval = 0;
      engine::CachedSession cs(cold, &writer, only_shutdown);
      const auto t0 = Clock::now();
      cs.prefill(p, {});
      recompute = secs(t0);
      cs.shutdown();  // stores the prefix: chunks plus an entry, as at a graceful exit
      writer.drain_remote(600000);
      bytes = writer.stats().bytes_written;
    }
    cache::CacheConfig disk_only = cc;
    disk_only.remote.url.clear();
    cache::PrefixCache from_disk(disk_only, cold.fingerprint().bytes);
    const double t_disk = restore(m, so, from_disk, p);
    cache::CacheConfig redis_only = cc;
    redis_only.dir.clear();
    redis_only.ram_budget = 1ull << 40;
    cache::PrefixCache from_redis(redis_only, cold.fingerprint().bytes);
    const double t_redis = restore(m, so, from_redis, p);
    std::printf("| %zu | %s | %.2f s | %.3f s | %.3f s | %.1fx faster | %.1fx faster |\n", n,
                format_size(bytes).c_str(), recompute, t_disk, t_redis, recompute / t_disk,
                recompute / t_redis);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
