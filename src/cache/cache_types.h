// The plain data of the PrefixCache facade's interface: its configuration, its statistics, and
// what a store asks for and reports. In their own header so that the units behind the facade
// (cache_state.h, store_pipeline.h, ...) need not include the facade itself.
//
// Facade layer: it names the remote tier's config and statistics (src/tiers/), like the facade.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cache/eviction.h"
#include "core/device_memory.h"
#include "core/types.h"
#include "tiers/remote_tier.h"
#include "util/buffer_pool.h"

namespace kvstash::cache {

struct CacheConfig {
  std::string dir;                     // disk tier directory; empty: no disk tier
  uint64_t disk_budget = 40ull << 30;  // --cache-disk-budget
  uint64_t ram_budget = 0;             // --cache-ram-budget; 0: no RAM tier
  // The VRAM tier's memory (--cache-vram-budget: its capacity); null: no VRAM tier.
  std::shared_ptr<DeviceMemory> vram;
  uint32_t chunk = 256;        // --chunk (the engine's prefill batch)
  bool snapshot_only = false;  // the model resumes only at stored snapshots
  EvictConfig evict;
  tiers::RemoteConfig remote;  // remote.url empty: no remote tier
  // Restore or recompute by the measured rates (restore_choice.h); false: always the longest
  // prefix the live state or the cache offers (--cache-plan longest; tests use it to be sure
  // which path runs).
  bool estimate = true;
  // Where payload buffers come from (pinned memory on GPU builds); null: a pageable pool.
  std::shared_ptr<BufferPool> pool;
  // Bytes of stores queued for the transfer worker (--cache-store-queue); checkpoint stores
  // beyond it are dropped, stores of a live state's only copy wait.
  uint64_t store_queue = 4ull << 30;
  // Writer threads of the transfer worker (--cache-store-threads); 0: stores are written on the
  // caller's thread before store() returns (`kvstash replay`, whose virtual clock needs each
  // store finished before the next request).
  int store_threads = 4;
  // Milliseconds since the epoch for creation and last-use times (null: the wall clock).
  // `kvstash replay` runs a virtual clock so that recency means what it would in the trace.
  std::function<int64_t()> clock;
};

struct CacheStats {
  uint64_t disk_bytes = 0, ram_bytes = 0, vram_bytes = 0;
  uint64_t vram_budget = 0;
  std::string vram_device;  // where the VRAM tier lives ("" without one)
  size_t chunks = 0, entries = 0;
  size_t ram_objects = 0, disk_objects = 0, remote_objects = 0, vram_objects = 0;
  uint64_t bytes_written = 0, bytes_read = 0;
  uint64_t hits = 0, misses = 0, tokens_reused = 0;
  uint64_t evictions = 0, stores = 0, stores_skipped = 0, damaged = 0;
  // disk-cache-full, ram-cache-full, vram-cache-full
  std::map<std::string, uint64_t> evictions_by_reason;
  std::map<std::string, uint64_t> stores_by_reason;  // cold, continued, evict, shutdown, scope
  // Failed I/O that did not fail a request, by operation: write (a queued object could not be
  // written: it is dropped, with whatever hangs below it), dir-fsync and stats-write (disk tier),
  // demote (a RAM eviction could not keep the only copy on disk, so it was lost).
  std::map<std::string, uint64_t> io_errors;
  uint64_t superseded_dropped = 0;  // continued entries dropped by a newer store of a longer prefix
  uint64_t own_writes_evicted = 0;  // objects a store evicted right after writing them
  // Stores not made, by reason: queue-full (a checkpoint while the store queue was full),
  // demote-queue-full (an object leaving RAM found no room in the queue to go to disk).
  std::map<std::string, uint64_t> stores_dropped;
  uint64_t store_queue_bytes = 0, store_queue_jobs = 0;  // in flight in the transfer worker
  uint64_t store_queue_budget = 0;
  std::map<std::string, uint64_t> plan_choices;  // live, ram, disk, remote, recompute
  std::string buffers;                           // where payload buffers live (pinned/pageable)
  std::optional<tiers::RemoteStats> remote;
};

// A plan's objects, fetched (PrefixCache::load: tools and tests; a request streams them).
struct Loaded {
  std::vector<Payload> chunks;
  Payload entry;  // encoded EntryPayload (null without an entry)
};

struct StoreRequest {
  std::span<const Token> tokens;  // the prefix to store
  Reason reason = Reason::kCold;
  bool has_logits = false;
  // The KV copied out of the engine (called on the caller's thread, outside the index lock).
  std::function<Payload(uint32_t chunk_index)> chunk_payload;
  std::function<Payload()> entry_payload;
  std::span<const Token> protect;  // the incoming prompt on a live miss: its prefixes go last
  std::string salt;                // cache_salt of the stored prefix
  std::string protect_salt;        // cache_salt of the incoming prompt
  bool drop_superseded = true;     // StoreConfig::drop_superseded
};

struct StoreResult {
  bool stored = false, existed = false;  // stored: queued (pending until written)
  bool dropped = false;                  // a checkpoint the full store queue had no room for
  uint64_t bytes = 0;
  uint32_t new_chunks = 0;
  double ms = 0;        // the time the caller waited (copy out of the engine, queueing)
  double wait_ms = 0;   // of which waiting for room in the full store queue (evict, shutdown)
  std::string skipped;  // why nothing was stored
};

}  // namespace kvstash::cache
