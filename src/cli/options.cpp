#include "cli/options.h"

#include <unistd.h>

#include <chrono>
#include <optional>

#include "cache/batching.h"
#include "cache/tier_rules.h"
#include "cli/calibration.h"
#include "engine/device_kv.h"
#include "engine/host_memory.h"
#include "util/log.h"
#include "util/size.h"

namespace kvstash::cli {

std::string default_cache_dir() {
  // XDG base directories: a relative or empty $XDG_CACHE_HOME is ignored.
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && xdg[0] == '/') return std::string(xdg) + "/kvstash/kv";
  const char* home = std::getenv("HOME");
  if (home && home[0] == '/') return std::string(home) + "/.cache/kvstash/kv";
  return "";
}

void EngineFlags::add(CLI::App& app) {
  app.add_option("-m,--model", model, "GGUF model file")->required()->check(CLI::ExistingFile);
  app.add_option("-c,--ctx-size", session.n_ctx, "context size (tokens)")->capture_default_str();
  app.add_option("-t,--threads", session.n_threads, "threads (0: all)");
  app.add_option("--chunk", chunk,
                 "prefill batch and cache chunk size: tokens (16 to 8192), or auto: 512 when "
                 "the model's layers are on a GPU, else 256; part of the cache key")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto"}) | CLI::Range(16, 8192));
  app.add_option("--cache-type-k", session.type_k, "KV cache type for K")->capture_default_str();
  app.add_option("--cache-type-v", session.type_v, "KV cache type for V")->capture_default_str();
  app.add_flag("!--no-flash-attn", session.flash_attn, "disable flash attention");
  app.add_option("--n-gpu-layers,--ngl", n_gpu_layers, "layers on the GPU (-1: all)");
}

void EngineFlags::resolve(const engine::Model& m) {
  if (chunk != "auto") {
    session.chunk = std::stoi(chunk);
    return;
  }
  const bool gpu = engine::kv_on_gpu(m.options().n_gpu_layers);
  session.chunk = static_cast<int>(cache::auto_chunk(gpu));
  log::info("prefill batches and cache chunks of " + std::to_string(session.chunk) +
            " tokens (--chunk auto: the KV is " + (gpu ? "on a GPU" : "in host memory") + ")");
}

void CacheFlags::add(CLI::App& app) {
  app.add_option("--cache-dir", dir,
                 "disk cache directory, the persistent tier (none: no disk tier)")
      ->capture_default_str();
  app.add_option("--cache-disk-budget", disk_budget, "disk tier budget, e.g. 40G")
      ->capture_default_str();
  app.add_option("--cache-ram-budget", ram_budget,
                 "RAM tier budget (0: no RAM tier; auto: 8G, at most 1/8 of the host's memory, "
                 "when the KV is on a GPU, else none)")
      ->capture_default_str();
  app.add_option("--cache-vram-budget", vram_budget,
                 "VRAM tier budget: copies of hot chunks kept in the GPU's memory, restored "
                 "device to device (0: none; auto: with the KV on a GPU, half of the memory "
                 "left free after the model and context, less a margin; else none)")
      ->capture_default_str();
  app.add_option("--cache-staging", staging,
                 "memory kept for reading cache objects into and uploading from (pinned when "
                 "the KV is on a GPU); a larger restore streams through it")
      ->capture_default_str();
  app.add_option("--cache-store-queue", store_queue,
                 "bytes of stores waiting to be written; checkpoints beyond it are dropped "
                 "(counted), a live state's only copy waits for room")
      ->capture_default_str();
  app.add_option("--cache-store-threads", store_threads,
                 "threads writing stores to disk (their fsyncs overlap)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--cache-plan", plan,
                 "auto: restore, keep the live prefix or recompute, whichever the measured rates "
                 "say is fastest; longest: always the longest prefix available")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "longest"}));
  app.add_option("--cache-calibrate", calibrate,
                 "tokens prefilled at startup, when the cache holds something to restore, to "
                 "seed --cache-plan auto's prefill speed (0: none; requests measure it anyway)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--cache-min-tokens", store.min_tokens, "shortest prefix worth storing")
      ->capture_default_str();
  app.add_option("--cache-cold-max-tokens", store.cold_max_tokens,
                 "longest cold anchor stored (0: no cold stores)")
      ->capture_default_str();
  app.add_option("--cache-boundary-align", store.boundary_align, "cold anchor alignment (tokens)")
      ->capture_default_str();
  app.add_option("--cache-boundary-trim", store.boundary_trim,
                 "tokens cut from the anchor before alignment")
      ->capture_default_str();
  app.add_option("--cache-continued-interval", store.continued_interval,
                 "checkpoint every N prefilled tokens (0: never)")
      ->capture_default_str();
  app.add_option("--cache-turn-stores", turn_stores,
                 "after each reply, store the live state (its new chunks) as the next turn's "
                 "anchor, so a session outlives its server in the shared tier (auto: with "
                 "--cache-remote)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--cache-remote", remote_url,
                 "shared remote tier: redis://[[user]:password@]host:port (a Redis server or "
                 "Cluster node)");
  app.add_option("--cache-remote-key", remote_key_file,
                 "fleet key file (>= 32 secret bytes): remote objects are sealed with it "
                 "(AES-256-GMAC) and those not sealed with it are rejected");
  app.add_option("--cache-remote-ttl", remote_ttl_s, "seconds a remote object lives")
      ->capture_default_str();
  app.add_option("--cache-remote-queue", remote_queue,
                 "bytes of remote writes queued before new ones are dropped")
      ->capture_default_str();
  app.add_option("--cache-recency-boost", evict.recency_boost, "eviction recency boost K")
      ->capture_default_str();
  app.add_option("--cache-recency-half-life", evict.half_life_s,
                 "eviction recency half-life (seconds)")
      ->capture_default_str();
}

cache::CacheConfig CacheFlags::config(uint32_t chunk, bool snapshot_only, bool kv_on_gpu) const {
  cache::CacheConfig c;
  c.dir = disk_dir();
  c.disk_budget = parse_size(disk_budget);
  c.ram_budget =
      ram_budget == "auto"
          ? cache::auto_ram_budget(kv_on_gpu, static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                                                  ::sysconf(_SC_PAGESIZE))
          : parse_size(ram_budget);
  c.chunk = chunk;
  c.snapshot_only = snapshot_only;
  c.evict = evict;
  c.remote.url = remote_url;
  c.remote.key_file = remote_key_file;
  c.remote.ttl_s = remote_ttl_s;
  c.remote.queue_bytes = parse_size(remote_queue);
  c.store_queue = parse_size(store_queue);
  c.store_threads = store_threads;
  // Store buffers come back to the pool when written, the RAM tier's when they leave RAM: kept
  // for the next store, so that the pinned memory of a GPU build is allocated once, not per store.
  c.pool = std::make_shared<BufferPool>(parse_size(staging) + c.store_queue + c.ram_budget);
  c.estimate = plan == "auto";
  return c;
}

namespace {

// Pinned memory takes ~0.3 s per GiB to allocate, which the first stores would pay inside their
// requests. So the store buffers are allocated at startup: as many as the store queue and the RAM
// tier hold (a store's buffer is what the RAM tier keeps), of one chunk's payload size, which a
// one-chunk prefill tells exactly. (Not on a thread of its own while requests run: pinning memory
// stalls the GPU's work meanwhile.)
void warm_store_buffers(engine::Session& s, BufferPool& pool, uint64_t bytes) {
  const int C = s.options().chunk;
  std::vector<engine::Token> toks(static_cast<size_t>(C));
  for (int i = 0; i < C; ++i) toks[i] = 10 + i % 100;
  size_t size = 0;
  try {
    s.prefill(toks);
    size = s.extract_kv(0, C, pool)->size();
  } catch (const std::exception& e) {
    log::warn(std::string("kv cache buffers: no warm-up (") + e.what() + ")");
  }
  s.clear();
  if (size == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  const size_t made = pool.warm(size, bytes / size);
  log::info("kv cache buffers: pinned " + format_size(made * size) + " for stores and RAM (" +
            std::to_string(made) + " x " + format_size(size) + ") in " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - t0)
                               .count()) +
            " ms");
}

}  // namespace

cache::StoreConfig CacheFlags::store_config() const {
  cache::StoreConfig s = store;
  s.turn_stores = turn_stores == "on" || (turn_stores == "auto" && !remote_url.empty());
  return s;
}

uint64_t CacheFlags::vram_bytes(bool kv_on_gpu) const {
  if (vram_budget != "auto") return parse_size(vram_budget);
  const auto mem = engine::kv_device_memory();
  if (!kv_on_gpu || !mem) return 0;
  const uint64_t b = cache::auto_vram_budget(true, mem->free, mem->total);
  log::info("kv cache VRAM tier auto: " + format_size(b) + ", half of the " +
            format_size(mem->free) + " free on the GPU (of " + format_size(mem->total) +
            ") beyond a margin of max(1 GiB, 1/20 of it); --cache-vram-budget 0 turns it off");
  return b;
}

std::unique_ptr<cache::PrefixCache> CacheFlags::open(const engine::Model& model,
                                                     engine::Session& session) const {
  if (!enabled) return nullptr;
  auto pinned = engine::pinned_host_allocator(model.options().n_gpu_layers);
  auto cfg = config(static_cast<uint32_t>(session.options().chunk),
                    model.resume_kind() != engine::ResumeKind::kAnyBoundary, pinned.has_value());
  if (!cfg.dir.empty()) {
    log::info("kv cache dir " + cfg.dir + " (persistent disk tier; --cache-dir none turns it off)");
  } else if (dir == "none") {
    log::info("kv cache disk tier off (--cache-dir none)");
  } else {
    log::warn("kv cache disk tier off: neither $XDG_CACHE_HOME nor $HOME is set (--cache-dir DIR)");
  }
  if (pinned) cfg.pool->set_allocator(std::move(*pinned));
  if (const uint64_t vram = vram_bytes(pinned.has_value()); vram > 0) {
    if (!pinned) log::warn("kv cache VRAM tier: the KV is in host memory, so is this tier");
    cfg.vram = engine::make_device_kv(vram, model.cell_ext_size(), model.kv_has_v());
  }
  log::info("kv cache buffers: " + cfg.pool->allocator_name() + ", staging " + staging +
            ", store queue " + store_queue + ", RAM tier " + format_size(cfg.ram_budget) +
            (ram_budget == "auto" ? " (--cache-ram-budget auto)" : "") + ", VRAM tier " +
            format_size(cfg.vram ? cfg.vram->capacity() : 0) +
            (vram_budget == "auto" ? " (--cache-vram-budget auto)" : ""));
  if (pinned) warm_store_buffers(session, *cfg.pool, cfg.store_queue + cfg.ram_budget);
  if (!cfg.remote.key_file.empty() && cfg.remote.url.empty()) {
    throw std::invalid_argument("--cache-remote-key needs --cache-remote");
  }
  if (cfg.dir.empty() && cfg.ram_budget == 0) {
    if (!cfg.remote.url.empty()) {
      throw std::invalid_argument(
          "--cache-remote needs a local tier too (--cache-dir or "
          "--cache-ram-budget): remote objects are promoted into it");
    }
    return nullptr;
  }
  auto c = std::make_unique<cache::PrefixCache>(cfg, session.fingerprint().bytes);
  // Only a cache with something to restore has a decision to make before the first request
  // measures the prefill itself.
  if (cfg.estimate && calibrate > 0 && (c->stats().entries > 0 || !cfg.remote.url.empty())) {
    calibrate_prefill(session, c->rates(), calibrate);
    if (!cfg.dir.empty()) calibrate_disk(*c);
  }
  return c;
}

}  // namespace kvstash::cli
