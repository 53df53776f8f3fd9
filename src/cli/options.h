// Flags shared by the verbs that run a model with the cache (generate, serve, ...).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cache/prefix_cache.h"
#include "cache/store_policy.h"
#include "engine/model.h"
#include "engine/session.h"

namespace kvstash::cli {

struct EngineFlags {
  std::string model;
  engine::SessionOptions session;
  int n_gpu_layers = 0;
  std::string chunk = "auto";  // --chunk: tokens, or auto (cache::auto_chunk)
  void add(CLI::App& app);
  // Settles what depends on where the model runs (the chunk) into `session`; call once the
  // model is loaded, before a session is made.
  void resolve(const engine::Model& model);
};

// The persistent disk tier's default: $XDG_CACHE_HOME/kvstash/kv, else $HOME/.cache/kvstash/kv;
// empty when neither variable is set (an absolute path).
std::string default_cache_dir();

struct CacheFlags {
  std::string dir = default_cache_dir();  // "none": no disk tier
  std::string disk_budget = "40G", ram_budget = "auto", vram_budget = "auto";
  std::string turn_stores = "auto";  // on, off, auto: on with a remote tier
  cache::StoreConfig store;
  cache::EvictConfig evict;
  std::string remote_url, remote_queue = "256M";
  std::string remote_key_file;     // --cache-remote-key
  std::string staging = "256M";    // payload buffers kept for reuse (pinned on GPU builds)
  std::string store_queue = "4G";  // stores queued for the disk writer
  int store_threads = 4;           // threads writing them
  std::string plan = "auto";       // auto: restore or recompute by measured rates; longest
  int calibrate = 512;             // tokens prefilled at startup to seed the estimate (0: off)
  uint32_t remote_ttl_s = 7 * 24 * 3600;
  bool enabled = true;  // --cache-scope off turns it off
  void add(CLI::App& app);
  // The disk tier's directory, empty when it is off.
  std::string disk_dir() const { return dir == "none" ? std::string() : dir; }
  // The cache for this model and session, or null when disabled or without a directory/RAM.
  // Logs one line saying where the disk tier is (or that it is off).
  std::unique_ptr<cache::PrefixCache> open(const engine::Model& model,
                                           engine::Session& session) const;
  // A cache over DIR for a fingerprint, for the maintenance verbs. `kv_on_gpu` decides the RAM
  // tier's budget when it is "auto" (cache/tier_rules.h).
  cache::CacheConfig config(uint32_t chunk, bool snapshot_only, bool kv_on_gpu = false) const;
  // The VRAM tier's bytes: --cache-vram-budget, or with "auto" the rule of cache/tier_rules.h over
  // the GPU's memory now (call it after the model and context are loaded).
  uint64_t vram_bytes(bool kv_on_gpu) const;
  // `store` with --cache-turn-stores resolved.
  cache::StoreConfig store_config() const;
};

}  // namespace kvstash::cli
