// The state behind one PrefixCache, shared by the units of the facade layer: the prefix index
// and the one mutex that guards it, the tier set, the transfer worker, the remote directory and
// the statistics; and the index changes every unit makes under that mutex.
//
// Facade layer. src/cache/ and src/tiers/ do not include each other; the units that tie the index
// to the tiers do, and only they: prefix_cache (the facade), cache_state, disk_sync, lookup,
// tier_mover and store_pipeline. Nothing outside this layer includes their headers but
// prefix_cache.h.
//
// Locking (README "Locking"): `mu` guards the index and the statistics and nothing else. The
// *_locked functions expect it held. No I/O happens under it except the unlink of an evicted
// file in remove_locked() (a metadata operation; kept under the lock so that a later store of the
// same key cannot be overtaken by it). The mutex is recursive only for the inline transfer worker
// (`kvstash replay`), which writes from inside submit_locked().
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "cache/cache_types.h"
#include "cache/eviction_view.h"
#include "cache/prefix_index.h"
#include "cache/tier_rules.h"
#include "tiers/remote_directory.h"
#include "tiers/tier_set.h"
#include "tiers/transfer_worker.h"
#include "tiers/vram_tier.h"
#include "util/histogram.h"

namespace kvstash::cache {

struct CacheState {
  CacheState(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint);

  int64_t clock_ms() const { return cfg.clock ? cfg.clock() : now_ms(); }

  // Every change of a node's tier flags goes through here, so the tier byte counts follow.
  template <class F>
  void change_locked(Node& n, F&& f) {
    const bool disk0 = n.on_disk || n.pending, ram0 = n.in_ram, vram0 = n.in_vram;
    f(n);
    const bool disk1 = n.on_disk || n.pending, ram1 = n.in_ram, vram1 = n.in_vram;
    if (disk0 != disk1) tiers->count(tiers::Where::kDisk, n.meta, disk1);
    if (ram0 != ram1) tiers->count(tiers::Where::kRam, n.meta, ram1);
    if (vram0 != vram1) tiers->count(tiers::Where::kVram, n.meta, vram1);
  }
  // Drops the node's local copies (logged as an eviction if log_it); the index keeps it while
  // the remote tier holds it.
  void remove_locked(Node& n, const char* why, bool log_it);
  // Forgets an object found unusable, its remote copy included.
  void forget_locked(ObjKind kind, const Key& key);
  // Removes whatever no longer hangs under what the index holds; remote-only nodes too if
  // `remote_too` (otherwise only local ones).
  void drop_unreachable_locked(bool remote_too);
  // Queues a job for the worker (the caller reserved `reserved` bytes of the queue). Under the
  // lock, so that a pending node's payload is findable before the lock goes.
  void submit_locked(std::vector<tiers::StoreObject> job, uint64_t reserved) {
    worker->submit(std::move(job), reserved);
  }

  const CacheConfig cfg;
  const std::shared_ptr<BufferPool> pool;
  std::recursive_mutex mu;  // the index lock (recursive only for the inline worker)
  PrefixIndex index;
  std::unique_ptr<tiers::TierSet> tiers;
  std::unique_ptr<tiers::RemoteDirectory> remote_dir;
  std::unique_ptr<tiers::TransferWorker> worker;  // set by the facade (its callbacks)
  CacheStats st;
  Histogram store_hist, load_hist;
  std::atomic<uint64_t> chunk_bytes{0};  // payload bytes of one chunk (learned from stores)
};

}  // namespace kvstash::cache
