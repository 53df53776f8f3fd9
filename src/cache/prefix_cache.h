// The prefix cache of one model namespace: the index, the tiers behind it, and the policies that
// decide what goes in and what comes out. Engine-agnostic: KV bytes arrive through callbacks and
// leave as byte vectors; src/engine/cache_bridge.* connects it to a session.
//
// Tiers: RAM in front of disk. A store writes through to disk (the persistent tier) and keeps a
// copy in RAM; a disk hit is promoted into RAM; an object evicted from RAM that is not on disk is
// demoted to it. Each tier has its own byte budget and its own eviction (eviction.h).
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "cache/eviction.h"
#include "cache/prefix_index.h"
#include "cache/restore_choice.h"
#include "cache/store_policy.h"
#include "cache/types.h"
#include "tiers/remote_tier.h"
#include "util/buffer_pool.h"
#include "util/histogram.h"

namespace kvstash::tiers {
class DiskTier;
class RamTier;
class RemoteTier;
class Tier;
}  // namespace kvstash::tiers

namespace kvstash::cache {

struct CacheConfig {
  std::string dir;                     // disk tier directory; empty: no disk tier
  uint64_t disk_budget = 40ull << 30;  // --cache-disk-budget
  uint64_t ram_budget = 0;             // --cache-ram-budget; 0: no RAM tier
  uint32_t chunk = 256;                // --chunk (the engine's prefill batch)
  bool snapshot_only = false;          // the model resumes only at stored snapshots
  EvictConfig evict;
  tiers::RemoteConfig remote;  // remote.url empty: no remote tier
  // Restore or recompute by the measured rates (restore_choice.h); false: always the longest
  // prefix the live state or the cache offers (--cache-plan longest; tests use it to be sure
  // which path runs).
  bool estimate = true;
  // Where payload buffers come from (pinned memory on GPU builds); null: a pageable pool.
  std::shared_ptr<BufferPool> pool;
  // Milliseconds since the epoch for creation and last-use times (null: the wall clock).
  // `kvstash replay` runs a virtual clock so that recency means what it would in the trace.
  std::function<int64_t()> clock;
};

struct CacheStats {
  uint64_t disk_bytes = 0, ram_bytes = 0;
  size_t chunks = 0, entries = 0;
  uint64_t bytes_written = 0, bytes_read = 0;
  uint64_t hits = 0, misses = 0, tokens_reused = 0;
  uint64_t evictions = 0, stores = 0, stores_skipped = 0, damaged = 0;
  std::map<std::string, uint64_t> evictions_by_reason;  // disk-cache-full, ram-cache-full
  std::map<std::string, uint64_t> stores_by_reason;     // cold, continued, evict, shutdown, scope
  // Failed I/O that did not fail a request, by operation: dir-fsync and stats-write (disk tier),
  // demote (a RAM eviction could not keep the only copy on disk, so it was lost).
  std::map<std::string, uint64_t> io_errors;
  uint64_t superseded_dropped = 0;  // continued entries dropped by a newer store of a longer prefix
  uint64_t own_writes_evicted = 0;  // objects a store evicted right after writing them
  std::map<std::string, uint64_t> plan_choices;  // live, ram, disk, remote, recompute
  std::string buffers;                           // where payload buffers live (pinned/pageable)
  std::optional<tiers::RemoteStats> remote;
};

class PrefixCache {
 public:
  PrefixCache(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint);
  ~PrefixCache();

  const CacheConfig& config() const { return cfg_; }
  const Key& root() const { return index_.root(); }

  // `salt`: the request's cache_salt ("" for none).
  RestorePlan plan(std::span<const Token> prompt, const std::vector<uint32_t>& boundaries,
                   const std::string& salt = "");

  // One object, verified, from the fastest tier that has it (promoted into RAM on the way; the
  // buffer is shared, not copied). Null if it is missing or damaged: the index forgets it, so a
  // new plan() finds the next best prefix. `from` receives the tier that served it. Safe to call
  // from a prefetch thread while the caller uploads the previous object.
  Payload fetch(ObjKind kind, const Key& key, Source* from = nullptr);
  struct Loaded {
    std::vector<Payload> chunks;
    Payload entry;  // encoded EntryPayload (null without an entry)
  };
  // Fetches all of the plan's objects (tools and tests; a request streams them with fetch()).
  std::optional<Loaded> load(const RestorePlan& plan);
  // Bytes each tier would serve for the plan's chunks from index `first_chunk` on and its entry
  // (the fastest tier holding each object), indexed by Source.
  std::array<uint64_t, kSourceCount> plan_bytes(const RestorePlan& plan, size_t first_chunk);
  RateModel& rates() { return rates_; }
  BufferPool& pool() { return *pool_; }
  void record_hit(const RestorePlan& plan, double load_seconds);
  // The engine refused the state `plan` loaded: its objects passed their checksums but do not
  // form a state the engine accepts (e.g. written by a faulty build). Which of them is wrong
  // cannot be told, so all are removed from every tier and counted as damaged, and this
  // process never takes them from the remote tier again unless it stores them itself; otherwise
  // every request for this prefix would load and refuse them again.
  void reject(const RestorePlan& plan, const std::string& why);
  void record_miss();
  // The restore-or-recompute decision of a request (counted in stats().plan_choices).
  void count_choice(Source s);

  struct StoreRequest {
    std::span<const Token> tokens;  // the prefix to store
    Reason reason = Reason::kCold;
    bool has_logits = false;
    std::function<std::vector<uint8_t>(uint32_t chunk_index)> chunk_payload;
    std::function<std::vector<uint8_t>()> entry_payload;
    std::span<const Token> protect;  // the incoming prompt on a live miss: its prefixes go last
    std::string salt;                // cache_salt of the stored prefix
    std::string protect_salt;        // cache_salt of the incoming prompt
    bool drop_superseded = true;     // StoreConfig::drop_superseded
  };
  struct StoreResult {
    bool stored = false, existed = false;
    uint64_t bytes = 0;
    uint32_t new_chunks = 0;
    double ms = 0;
    std::string skipped;  // why nothing was written
  };
  StoreResult store(const StoreRequest& req);

  // Objects a running request depends on are never evicted while pinned.
  class Pin {
   public:
    Pin() = default;
    Pin(PrefixCache* c, std::vector<std::pair<ObjKind, Key>> objs);
    Pin(Pin&& o) noexcept;
    Pin& operator=(Pin&& o) noexcept;
    ~Pin();

   private:
    void release();
    PrefixCache* cache_ = nullptr;
    std::vector<std::pair<ObjKind, Key>> objs_;
  };
  Pin pin(const RestorePlan& plan);

  CacheStats stats();
  const Histogram& store_latency() const { return store_hist_; }
  const Histogram& load_latency() const { return load_hist_; }
  // Every object, for `kvstash cache ls` and tests.
  std::vector<Node> objects();
  // Waits (bounded) until queued remote writes are sent.
  bool drain_remote(int timeout_ms);
  // Drops every object of this namespace from the local tiers.
  void clear();
  // Evicts down to the budgets (after a budget was lowered).
  void enforce_budget();
  // Rescans the disk directory (picks up other processes' objects, drops vanished ones).
  void refresh();

 private:
  void sync_locked(bool force);
  void forget_locked(ObjKind kind, const Key& key);
  void remove_locked(Node& n, const char* why, bool log_it);
  bool make_room_locked(tiers::Tier& tier, uint64_t budget, uint64_t incoming,
                        const std::vector<std::pair<ObjKind, Key>>& incoming_objs,
                        const std::vector<Key>& incoming_parents, std::span<const Token> protect,
                        const std::string& salt = "",
                        const std::vector<std::pair<ObjKind, Key>>& written = {});
  int64_t clock_ms() const { return cfg_.clock ? cfg_.clock() : now_ms(); }
  uint64_t tier_bytes_locked(bool disk);
  void put_ram_locked(const ObjectMeta& meta, const ObjectStats& st, const Payload& payload);
  // Learns which objects along `chain` the remote tier has beyond what the index knows.
  void discover_remote_locked(const Chain& chain);

  CacheConfig cfg_;
  std::shared_ptr<BufferPool> pool_;
  RateModel rates_;
  std::recursive_mutex mu_;
  PrefixIndex index_;
  std::unique_ptr<tiers::DiskTier> disk_;
  std::unique_ptr<tiers::RamTier> ram_;
  std::unique_ptr<tiers::RemoteTier> remote_;
  CacheStats st_;
  Histogram store_hist_, load_hist_;
  std::unordered_set<Key, KeyHash> rejected_;  // refused by the engine (reject())
};

}  // namespace kvstash::cache
