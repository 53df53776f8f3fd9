// Time to restore a prefix from each tier (RAM, local disk with a warm and a cold page cache,
// Redis) and to recompute it, on the CPU or the GPU (--ngl -1: all layers), next to the raw
// limits of the same machine measured in the same run (page-cache read, cold read, and on a GPU
// pinned host-to-device and device-to-device copies), with a crossover mode for the
// load-vs-recompute length.
//
//   kvstash-bench-tiers --model M.gguf [--redis redis://127.0.0.1:6379] --tokens 8192,32768
//   ... --redis URL --redis-key FILE   # the Redis column with the fleet key (GMAC) on
//   kvstash-bench-tiers --model M.gguf --ngl -1 --crossover   # 512 .. 32768 tokens
//   kvstash-bench-tiers --model M.gguf --cache-type-k q8_0 --cache-type-v q8_0   # quantized KV
//
// For each size: prefill cold (recompute; the cold TTFT, as the last token's logits come with
// it), store the prefix (chunks + an entry, as at a graceful exit), then restore it into a fresh
// session from a cache that has it only on disk: once with the files dropped from the page cache
// (posix_fadvise DONTNEED after fdatasync: a cold disk read) and page-cache warm (RAM speed;
// the best of three, as is the raw warm read it is compared with), from the RAM tier, from the VRAM
// tier (copies in the GPU's memory), and, with --redis, from a cache that has it only in Redis (RAM
// as its local tier, so no disk write is timed). A restore is timed from lookup to a loaded state
// (what replaces the recompute); "hit TTFT" adds the prefill of one more token and its logits (a
// request that goes on past the stored prefix). The restored state's tokens are checked;
// bit-exactness of the logits is what the test suite proves. Prints one Markdown table row per size
// (time and GB/s of each path, hit TTFT against cold TTFT; the KV size cell adds the bytes per
// token stored), then the raw limits; --crossover also prints the shortest length where a cold-disk
// restore beats the recompute.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "cache/batching.h"
#include "cache/prefix_cache.h"
#include "engine/cached_session.h"
#include "engine/device_kv.h"
#include "engine/host_memory.h"
#include "engine/session.h"
#include "ggml-backend.h"
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
  double restore = 0;         // lookup + load + state restore
  double ttft = 0;            // restore + prefill of one more token (with its logits)
  size_t tokens = 0;          // restored
  std::vector<float> logits;  // after the one more token
};

bool snapshot_only(const engine::Model& m) {
  return m.resume_kind() != engine::ResumeKind::kAnyBoundary;
}

// Tokens a store of an n-token prompt keeps: all of them, or for a snapshot-only model (sliding
// window, recurrent state) the snapshot at the last chunk boundary below the prompt's end, where
// serve keeps it too (the next turn resumes there).
size_t stored_tokens(const engine::Model& m, const engine::SessionOptions& so, size_t n) {
  const size_t c = static_cast<size_t>(so.chunk);
  return snapshot_only(m) ? (n - 1) / c * c : n;
}

// Restores the prefix p from `cache` into a fresh session, then prefills one more token.
Restored restore(engine::Model& m, const engine::SessionOptions& so, cache::PrefixCache& cache,
                 std::vector<engine::Token> p) {
  engine::Session s(m, so);
  p.push_back(p.back());  // a request that goes on past the stored prefix
  Restored r;
  const auto t0 = Clock::now();
  const auto plan = cache.plan(p, {});
  if (plan.resume_at == 0) throw std::runtime_error("nothing stored for this prefix");
  engine::restore_plan(s, cache, plan, p);
  r.restore = secs(t0);
  r.tokens = s.tokens().size();
  if (r.tokens != stored_tokens(m, so, p.size() - 1)) {
    throw std::runtime_error("restored " + std::to_string(r.tokens) + " tokens, expected " +
                             std::to_string(stored_tokens(m, so, p.size() - 1)));
  }
  s.prefill(p);
  (void)s.greedy();
  r.ttft = secs(t0);
  r.logits = s.logits();
  return r;
}

std::string ms_or_s(double t);

// Two slots restoring two different prefixes at once, against one alone: table rows for the RAM
// tier and the (page-cache warm) disk tier. The cache's lookups and reads run outside its lock, so
// the two restores should overlap rather than queue.
std::string two_at_once(engine::Model& m, const engine::SessionOptions& so,
                        const cache::CacheConfig& base, const std::array<uint8_t, 16>& fp,
                        const std::vector<engine::Token>& p) {
  auto q = p;
  for (auto& t : q) t = (t + 7) % 1000 + 10;  // another prefix of the same length
  {
    engine::Session s(m, so);
    cache::PrefixCache writer(base, fp);
    cache::StoreConfig only_shutdown;
    only_shutdown.cold_max_tokens = 0;
    only_shutdown.continued_interval = 0;
    only_shutdown.min_tokens = 1;
    engine::CachedSession cs(s, &writer, only_shutdown);
    cs.prefill(q, {});
    cs.shutdown();
  }
  std::string out;
  for (const bool ram : {true, false}) {
    cache::CacheConfig cc = base;
    cc.remote.url.clear();
    if (ram) cc.ram_budget = 1ull << 40;
    cache::PrefixCache c(cc, fp);
    (void)restore(m, so, c, p);  // warm: into RAM (or the page cache)
    (void)restore(m, so, c, q);
    const double one = restore(m, so, c, p).restore;
    const auto t0 = Clock::now();
    std::thread other([&] { (void)restore(m, so, c, q); });
    (void)restore(m, so, c, p);
    other.join();
    const double two = secs(t0);
    char row[256];
    std::snprintf(row, sizeof row, "| %zu | %s | %s | %s | %.2fx |\n", p.size(),
                  ram ? "RAM" : "disk, warm", ms_or_s(one).c_str(), ms_or_s(two).c_str(),
                  two / one);
    out += row;
  }
  return out;
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
double gbps(uint64_t bytes, double s) { return s > 0 ? bytes / s / 1e9 : 0; }

// Reads every file under `dir` into pool buffers, as the disk tier does: bytes/s.
double read_rate(const std::string& dir, BufferPool& pool) {
  uint64_t bytes = 0;
  const auto t0 = Clock::now();
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    const size_t n = e.file_size();
    auto b = pool.get(n);
    size_t off = 0;
    while (off < n) {
      const ssize_t r = ::pread(fd, b->data() + off, n - off, static_cast<off_t>(off));
      if (r <= 0) break;
      off += r;
    }
    ::close(fd);
    bytes += off;
  }
  return bytes / secs(t0);
}

// Pinned host -> device and device -> device copy rates through ggml's backend API (one 512 MiB
// tensor, best of 3), or nothing where there is no GPU.
struct CopyRates {
  double h2d = 0, d2d = 0;
};
std::optional<CopyRates> gpu_copy_rates(BufferPool& pinned) {
  ggml_backend_dev_t dev = nullptr;
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    if (ggml_backend_dev_type(ggml_backend_dev_get(i)) == GGML_BACKEND_DEVICE_TYPE_GPU) {
      dev = ggml_backend_dev_get(i);
      break;
    }
  }
  if (!dev) return std::nullopt;
  const int64_t n = 512ll << 20;
  ggml_init_params ip = {2 * ggml_tensor_overhead(), nullptr, true};
  ggml_context* ctx = ggml_init(ip);
  ggml_tensor* a = ggml_new_tensor_1d(ctx, GGML_TYPE_I8, n);
  ggml_tensor* b = ggml_new_tensor_1d(ctx, GGML_TYPE_I8, n);
  ggml_backend_buffer_t buf =
      ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_dev_buffer_type(dev));
  CopyRates r;
  if (buf) {
    auto src = pinned.get(n);
    std::memset(src->data(), 1, n);
    for (int i = 0; i < 3; ++i) {
      auto t0 = Clock::now();
      ggml_backend_tensor_set(a, src->data(), 0, n);
      r.h2d = std::max(r.h2d, n / secs(t0));
      t0 = Clock::now();
      ggml_backend_tensor_copy(a, b);
      ggml_backend_tensor_get(b, src->data(), 0, 1);  // waits for the copy
      r.d2d = std::max(r.d2d, n / secs(t0));
    }
    ggml_backend_buffer_free(buf);
  }
  ggml_free(ctx);
  if (!buf) return std::nullopt;
  return r;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"restore from each tier vs recompute, next to the machine's raw limits"};
  std::string model_path, redis, redis_key, dir = "/tmp/kvstash-bench-tiers";
  std::vector<size_t> sizes;
  int threads = 0, gpu_layers = 0, chunk = 0;
  bool crossover = false, warmup = true, concurrent = false;
  engine::SessionOptions base;  // KV types and flash attention of every session below
  app.add_option("-m,--model", model_path)->required();
  app.add_option("--redis", redis, "redis://host:port (no Redis column without it)");
  app.add_option("--redis-key", redis_key,
                 "fleet key file: the Redis column seals and verifies (--cache-remote-key)");
  app.add_option("--tokens", sizes, "prompt lengths (default 8192,32768)")->delimiter(',');
  app.add_flag("--crossover", crossover,
               "lengths 512..32768 (unless --tokens), and the load-vs-recompute crossover");
  app.add_option("--dir", dir, "disk tier directory (emptied before each size)");
  app.add_option("-t,--threads", threads);
  app.add_option("--ngl,--n-gpu-layers", gpu_layers, "layers on the GPU (-1: all)");
  app.add_option("--cache-type-k", base.type_k, "K cache type (f16, q8_0, q4_0, ...)")
      ->capture_default_str();
  app.add_option("--cache-type-v", base.type_v,
                 "V cache type (llama.cpp quantizes V only with flash attention)")
      ->capture_default_str();
  app.add_option("--flash-attn", base.flash_attn, "on|off")->capture_default_str();
  app.add_option("--chunk", chunk, "prefill batch and cache chunk (0: serve's auto choice)")
      ->capture_default_str();
  app.add_flag("!--no-warmup", warmup, "skip the untimed warm-up prefill (GPU kernels, caches)");
  app.add_flag("--concurrent", concurrent,
               "also time two sessions restoring two different prefixes at once from RAM and "
               "from disk, against one alone");
  CLI11_PARSE(app, argc, argv);
  if (sizes.empty()) {
    sizes = crossover ? std::vector<size_t>{512, 1024, 2048, 4096, 8192, 16384, 32768}
                      : std::vector<size_t>{8192, 32768};
  }

  engine::Model m(model_path, {gpu_layers});
  auto pinned = engine::pinned_host_allocator(gpu_layers);
  base.chunk = chunk > 0 ? chunk : static_cast<int>(cache::auto_chunk(pinned.has_value()));
  // The payload buffers of every cache below: pinned when the KV is on the GPU, and as many kept
  // for reuse as serve keeps by default (--cache-staging 256M + --cache-store-queue 4G).
  auto pool = std::make_shared<BufferPool>((256ull << 20) + (4ull << 30));
  if (pinned) pool->set_allocator(std::move(*pinned));
  if (warmup) {
    engine::SessionOptions so = base;
    so.n_ctx = 2048;
    so.n_threads = threads;
    engine::Session s(m, so);
    s.prefill(prompt(m, 1024));
  }
  const bool with_redis = !redis.empty();
  std::printf("buffers: %s; chunk %d tokens\n\n", pool->allocator_name().c_str(), base.chunk);
  std::printf(
      "| tokens | KV size | recompute (cold TTFT) | RAM tier | disk, page cache warm | disk, cold "
      "|%s hit TTFT RAM / warm / cold | cold TTFT / hit TTFT (RAM, warm, cold) | raw read warm / "
      "cold | VRAM tier | hit TTFT VRAM | cold TTFT / hit TTFT (VRAM) |\n",
      with_redis ? " Redis |" : "");
  std::printf("|---|---|---|---|---|---|%s---|---|---|---|---|---|\n", with_redis ? "---|" : "");
  std::fflush(stdout);
  std::optional<size_t> cross;
  bool dropped_all = true;
  std::vector<std::string> concurrency, exactness;
  auto cell = [](const Restored& r, uint64_t bytes) {
    return ms_or_s(r.restore) + " (" + std::to_string(gbps(bytes, r.restore)).substr(0, 5) +
           " GB/s)";
  };
  for (size_t n : sizes) {
    try {
      engine::SessionOptions so = base;
      so.n_ctx = static_cast<int>(n + 256);
      so.n_threads = threads;
      const auto p = prompt(m, n);
      std::filesystem::remove_all(dir);
      cache::CacheConfig cc;
      cc.dir = dir;
      cc.chunk = static_cast<uint32_t>(so.chunk);
      cc.remote.url = redis;
      cc.remote.key_file = redis_key;
      cc.pool = pool;
      // As serve configures it: sliding-window and hybrid models resume only at whole snapshots
      // (entries with their window or recurrent state), so the plan must not stop at a chunk.
      cc.snapshot_only = snapshot_only(m);
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
        cs.shutdown();     // stores the prefix: chunks plus an entry, as at a graceful exit
        writer.drain(-1);  // stores are written by the cache's transfer worker
        bytes = writer.stats().bytes_written;
      }
      cache::CacheConfig disk_only = cc;
      disk_only.remote.url.clear();
      dropped_all = drop_page_cache(dir) && dropped_all;
      const double raw_cold = read_rate(dir, *pool);
      // Page-cache-warm rates, the raw read's and the restore's, are each the best of three: on a
      // shared 2-core VM one read of a few hundred MiB moves by a fifth between tries.
      double raw_warm = 0;
      for (int i = 0; i < 3; ++i) raw_warm = std::max(raw_warm, read_rate(dir, *pool));
      dropped_all = drop_page_cache(dir) && dropped_all;
      Restored cold_disk, warm_disk, ram, vram;
      {
        cache::PrefixCache from_disk(disk_only, cold.fingerprint().bytes);
        cold_disk = restore(m, so, from_disk, p);
      }
      {
        cache::PrefixCache from_disk(disk_only, cold.fingerprint().bytes);
        warm_disk = restore(m, so, from_disk, p);
        for (int i = 0; i < 2; ++i) {
          Restored again = restore(m, so, from_disk, p);
          if (again.restore < warm_disk.restore) warm_disk = std::move(again);
        }
      }
      {
        cache::CacheConfig with_ram = disk_only;
        with_ram.ram_budget = 1ull << 40;
        cache::PrefixCache c(with_ram, cold.fingerprint().bytes);
        (void)restore(m, so, c, p);  // from disk, promoted into RAM
        ram = restore(m, so, c, p);
      }
      {
        // The VRAM tier: the chunks from copies in the memory the KV lives in (the GPU's with
        // --ngl; the host's on a CPU), the entry from RAM.
        cache::CacheConfig with_vram = disk_only;
        with_vram.ram_budget = 1ull << 40;
        with_vram.vram = engine::make_device_kv(bytes + bytes / 4 + (256ull << 20),
                                                m.cell_ext_size(), m.kv_has_v());
        cache::PrefixCache c(with_vram, cold.fingerprint().bytes);
        (void)restore(m, so, c, p);  // from disk, promoted into RAM and VRAM
        c.drain(-1);                 // the copies are made by the transfer worker
        vram = restore(m, so, c, p);
      }
      std::string redis_col;
      if (with_redis) {
        cache::CacheConfig redis_only = cc;
        redis_only.dir.clear();
        redis_only.ram_budget = 1ull << 40;
        cache::PrefixCache from_redis(redis_only, cold.fingerprint().bytes);
        redis_col = " " + cell(restore(m, so, from_redis, p), bytes) + " |";
      }
      std::printf(
          "| %zu | %s, %.0f B/token | %s | %s | %s | %s |%s %s / %s / %s | %.1fx, %.1fx, %.1fx | "
          "%.2f / %.2f GB/s | %s | %s | %.1fx |\n",
          n, format_size(bytes).c_str(), double(bytes) / cold_disk.tokens,
          ms_or_s(recompute).c_str(), cell(ram, bytes).c_str(), cell(warm_disk, bytes).c_str(),
          cell(cold_disk, bytes).c_str(), redis_col.c_str(), ms_or_s(ram.ttft).c_str(),
          ms_or_s(warm_disk.ttft).c_str(), ms_or_s(cold_disk.ttft).c_str(), recompute / ram.ttft,
          recompute / warm_disk.ttft, recompute / cold_disk.ttft, raw_warm / 1e9, raw_cold / 1e9,
          cell(vram, bytes).c_str(), ms_or_s(vram.ttft).c_str(), recompute / vram.ttft);
      std::fflush(stdout);
      // The RAM path is bit-exact against a fresh prefill (the exact step, the test suite); the
      // device-copy path must give the very same logits.
      exactness.push_back(
          std::to_string(n) + " tokens: the logits after a VRAM restore " +
          (!ram.logits.empty() && vram.logits == ram.logits ? "equal" : "DIFFER FROM") +
          " those after a RAM restore");
      if (!cross && cold_disk.restore < recompute) cross = n;
      if (concurrent) concurrency.push_back(two_at_once(m, so, cc, cold.fingerprint().bytes, p));
    } catch (const std::exception& e) {  // report the size and go on with the next
      std::printf("| %zu | error: %s |\n", n, e.what());
      std::fflush(stdout);
    }
  }
  for (const auto& line : exactness) std::printf("\nexact: %s", line.c_str());
  if (!exactness.empty()) std::printf("\n");
  if (!concurrency.empty()) {
    std::printf(
        "\n| tokens | tier | one restore | two restores at once (two sessions) | two / one |\n"
        "|---|---|---|---|---|\n");
    for (const auto& row : concurrency) std::printf("%s", row.c_str());
  }
  if (auto r = gpu_copy_rates(*pool)) {
    std::printf(
        "\nraw GPU copies (512 MiB): pinned host->device %.1f GB/s, device->device %.1f "
        "GB/s\n",
        r->h2d / 1e9, r->d2d / 1e9);
  } else {
    std::printf("\nraw GPU copies: no GPU device\n");
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
  if (snapshot_only(m)) {
    std::printf(
        "note: snapshot-only model (sliding window or recurrent state): each size stores and "
        "restores its snapshot at the last chunk boundary below the prompt's end (as serve "
        "does), bytes per token count those tokens, and the hit TTFT prefills the rest\n");
  }
  if (!dropped_all) {
    std::printf("note: the page cache did not drop every file (fadvise); 'cold' may be warm\n");
  }
  std::filesystem::remove_all(dir);
  return 0;
}
