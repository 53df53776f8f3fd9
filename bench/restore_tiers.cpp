// Time to restore a prefix from the local disk tier, from Redis, and to recompute it; on the CPU
// or the GPU (--ngl -1: all layers), with a crossover mode for the load-vs-recompute length.
//
//   kvstash-bench-tiers --model M.gguf [--redis redis://127.0.0.1:6379] --tokens 8192,32768
//   kvstash-bench-tiers --model M.gguf --ngl -1 --crossover   # 512 .. 32768 tokens
//
// For each size: prefill cold (recompute; the cold TTFT, as the last token's logits come with
// it), store the prefix (chunks + an entry, as at a graceful exit), then restore it into a fresh
// session from a cache that has it only on disk: once with the files dropped from the page cache
// (posix_fadvise DONTNEED after fdatasync: a cold disk read) and once page-cache warm (RAM
// speed), and, with --redis, from a cache that has it only in Redis (RAM as its local tier, so
// no disk write is timed). A restore is timed from lookup to a loaded state (what replaces the
// recompute); "hit TTFT" adds the prefill of one more token and its logits (a request that goes
// on past the stored prefix). The restored state's tokens are checked; bit-exactness of the
// logits is what the test suite proves. Prints one Markdown table row per size; --crossover also
// prints the shortest length where a cold-disk restore beats the recompute.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
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

// Drops the files under `dir` from the page cache (a cold read next time). Returns false where
// the kernel keeps them (fadvise is advice).
bool drop_page_cache(const std::string& dir) {
  bool ok = true;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) {
      ok = false;
      continue;
    }
    ::fdatasync(fd);
    if (::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) ok = false;
    ::close(fd);
  }
  return ok && !ec;
}

struct Restored {
  double restore = 0;  // lookup + load + state restore
  double ttft = 0;     // restore + prefill of one more token (with its logits)
};

// Restores the prefix p from `cache` into a fresh session, then prefills one more token.
Restored restore(engine::Model& m, const engine::SessionOptions& so, cache::PrefixCache& cache,
                 std::vector<engine::Token> p) {
  engine::Session s(m, so);
  p.push_back(p.back());  // a request that goes on past the stored prefix
  Restored r;
  const auto t0 = Clock::now();
  const auto plan = cache.plan(p, {});
  if (plan.resume_at == 0) throw std::runtime_error("nothing stored for this prefix");
  auto loaded = cache.load(plan);
  if (!loaded) throw std::runtime_error("restore failed: nothing loaded");
  engine::restore_plan(s, plan, *loaded, p);
  r.restore = secs(t0);
  if (s.tokens().size() != p.size() - 1) {
    throw std::runtime_error("restored " + std::to_string(s.tokens().size()) +
                             " tokens, expected " + std::to_string(p.size() - 1));
  }
  s.prefill(p);
  (void)s.greedy();
  r.ttft = secs(t0);
  return r;
}

std::string ms_or_s(double t) {
  char b[32];
  if (t < 1) {
    std::snprintf(b, sizeof b, "%.0f ms", t * 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.2f s", t);
  }
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"restore from disk vs Redis vs recompute"};
  std::string model_path, redis, dir = "/tmp/kvstash-bench-tiers";
  std::vector<size_t> sizes;
  int threads = 0, gpu_layers = 0;
  bool crossover = false, warmup = true;
  app.add_option("-m,--model", model_path)->required();
  app.add_option("--redis", redis, "redis://host:port (no Redis column without it)");
  app.add_option("--tokens", sizes, "prompt lengths (default 8192,32768)")->delimiter(',');
  app.add_flag("--crossover", crossover,
               "lengths 512..32768 (unless --tokens), and the load-vs-recompute crossover");
  app.add_option("--dir", dir, "disk tier directory (emptied before each size)");
  app.add_option("-t,--threads", threads);
  app.add_option("--ngl,--n-gpu-layers", gpu_layers, "layers on the GPU (-1: all)");
  app.add_flag("!--no-warmup", warmup, "skip the untimed warm-up prefill (GPU kernels, caches)");
  CLI11_PARSE(app, argc, argv);
  if (sizes.empty()) {
    sizes = crossover ? std::vector<size_t>{512, 1024, 2048, 4096, 8192, 16384, 32768}
                      : std::vector<size_t>{8192, 32768};
  }

  engine::Model m(model_path, {gpu_layers});
  if (warmup) {
    engine::SessionOptions so;
    so.n_ctx = 2048;
    so.n_threads = threads;
    engine::Session s(m, so);
    s.prefill(prompt(m, 1024));
  }
  const bool with_redis = !redis.empty();
  std::printf(
      "| tokens | KV size | recompute (cold TTFT) | disk, cold page cache | disk, page cache "
      "warm |%s hit TTFT (cold disk) | recompute / cold disk | recompute / warm |\n",
      with_redis ? " Redis |" : "");
  std::printf("|---|---|---|---|---|%s---|---|---|\n", with_redis ? "---|" : "");
  std::fflush(stdout);
  std::optional<size_t> cross;
  bool dropped_all = true;
  for (size_t n : sizes) {
    try {
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
        only_shutdown.min_tokens = 1;  // the server's 512 would store nothing for short sizes
        engine::CachedSession cs(cold, &writer, only_shutdown);
        const auto t0 = Clock::now();
        cs.prefill(p, {});
        recompute = secs(t0);
        cs.shutdown();  // stores the prefix: chunks plus an entry, as at a graceful exit
        if (with_redis) writer.drain_remote(600000);
        bytes = writer.stats().bytes_written;
      }
      cache::CacheConfig disk_only = cc;
      disk_only.remote.url.clear();
      dropped_all = drop_page_cache(dir) && dropped_all;
      Restored cold_disk, warm_disk;
      {
        cache::PrefixCache from_disk(disk_only, cold.fingerprint().bytes);
        cold_disk = restore(m, so, from_disk, p);
      }
      {
        cache::PrefixCache from_disk(disk_only, cold.fingerprint().bytes);
        warm_disk = restore(m, so, from_disk, p);
      }
      std::string redis_col;
      if (with_redis) {
        cache::CacheConfig redis_only = cc;
        redis_only.dir.clear();
        redis_only.ram_budget = 1ull << 40;
        cache::PrefixCache from_redis(redis_only, cold.fingerprint().bytes);
        redis_col = " " + ms_or_s(restore(m, so, from_redis, p).restore) + " |";
      }
      std::printf("| %zu | %s | %s | %s | %s |%s %s | %.1fx | %.1fx |\n", n,
                  format_size(bytes).c_str(), ms_or_s(recompute).c_str(),
                  ms_or_s(cold_disk.restore).c_str(), ms_or_s(warm_disk.restore).c_str(),
                  redis_col.c_str(), ms_or_s(cold_disk.ttft).c_str(), recompute / cold_disk.restore,
                  recompute / warm_disk.restore);
      std::fflush(stdout);
      if (!cross && cold_disk.restore < recompute) cross = n;
    } catch (const std::exception& e) {  // report the size and go on with the next
      std::printf("| %zu | error: %s |\n", n, e.what());
      std::fflush(stdout);
    }
  }
  if (crossover) {
    std::printf("\n");
    if (cross) {
      std::printf("crossover: from %zu tokens on, a cold-disk restore beats the recompute\n",
                  *cross);
    } else {
      std::printf("crossover: recompute beat the cold-disk restore at every length tried\n");
    }
  }
  if (!dropped_all) {
    std::printf("note: the page cache did not drop every file (fadvise); 'cold' may be warm\n");
  }
  std::filesystem::remove_all(dir);
  return 0;
}
