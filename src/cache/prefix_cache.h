// The prefix cache of one model namespace: a thin facade over the prefix index (what is stored
// where; pure), the tier set (tiers/tier_set.h: RAM, disk, remote, their budgets), the transfer
// worker (tiers/transfer_worker.h: stores made durable on a thread of their own) and the remote
// directory. Engine-agnostic: KV bytes arrive through callbacks and leave as payload buffers.
//
// Locking: one mutex guards the index and the statistics, and only index changes happen under
// it. Reads, writes, checksums, directory scans and Redis round trips run outside it, so one
// slot's I/O never holds up another slot's lookup, /metrics or /props.
//
// Stores: store() copies the KV out of the engine (the only part that must happen before the
// engine moves on), enters the objects in the index as pending, and hands them to the transfer
// worker; the request goes on at once. A pending object is served from its buffer by fetch()
// (it is as good as stored in this process) and reaches other processes when its file is
// durable. Objects being read are never evicted (pins); one evicted while its write is queued is
// not written, or its file is removed when the write completes.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "cache/eviction.h"
#include "cache/eviction_view.h"
#include "cache/prefix_index.h"
#include "cache/restore_choice.h"
#include "cache/store_policy.h"
#include "core/types.h"
#include "tiers/remote_tier.h"
#include "util/buffer_pool.h"
#include "util/histogram.h"

namespace kvstash::tiers {
class RemoteDirectory;
class TierSet;
class TransferWorker;
struct StoreObject;
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
  uint64_t disk_bytes = 0, ram_bytes = 0;
  size_t chunks = 0, entries = 0;
  size_t ram_objects = 0, disk_objects = 0, remote_objects = 0;  // objects each tier holds
  uint64_t bytes_written = 0, bytes_read = 0;
  uint64_t hits = 0, misses = 0, tokens_reused = 0;
  uint64_t evictions = 0, stores = 0, stores_skipped = 0, damaged = 0;
  std::map<std::string, uint64_t> evictions_by_reason;  // disk-cache-full, ram-cache-full
  std::map<std::string, uint64_t> stores_by_reason;     // cold, continued, evict, shutdown, scope
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
  // Waits until queued stores are durable and queued remote writes are sent, up to timeout_ms
  // (< 0: no limit). If it times out, the destructor abandons what is left instead of waiting.
  bool drain(int timeout_ms);
  // Drops every object of this namespace from the local tiers.
  void clear();
  // Evicts down to the budgets (after a budget was lowered).
  void enforce_budget();
  // Rescans the disk directory (picks up other processes' objects, drops vanished ones).
  void refresh();

 private:
  // Picks up other processes' writes (directory scan outside the lock).
  void sync(bool force);
  // Every change of a node's tier flags goes through here, so the tier byte counts follow.
  template <class F>
  void change_locked(Node& n, F&& f);
  void forget_locked(ObjKind kind, const Key& key);
  void remove_locked(Node& n, const char* why, bool log_it);
  bool make_room_locked(bool disk, RoomRequest r);
  int64_t clock_ms() const { return cfg_.clock ? cfg_.clock() : now_ms(); }
  void promote_locked(Node& n, const Payload& p, bool to_disk);
  // Queues a job for the worker (the caller reserved `reserved` bytes of the queue).
  void submit_locked(std::vector<tiers::StoreObject> job, uint64_t reserved);
  bool write_object(const tiers::StoreObject& o);  // on the worker's thread
  void object_done(const tiers::StoreObject& o, bool ok);
  StoreResult skip_store(StoreResult res, uint32_t n, Reason reason, const std::string& why);

  CacheConfig cfg_;
  std::shared_ptr<BufferPool> pool_;
  RateModel rates_;
  std::recursive_mutex mu_;  // recursive only for the inline worker (writes from under it)
  std::mutex sync_mu_;       // one directory scan at a time
  PrefixIndex index_;
  std::unique_ptr<tiers::TierSet> tiers_;
  std::unique_ptr<tiers::RemoteDirectory> remote_dir_;
  std::unique_ptr<tiers::TransferWorker> worker_;
  std::atomic<uint64_t> chunk_bytes_{0};  // payload bytes of one chunk (learned from stores)
  bool abandon_ = false;                  // a drain timed out: do not wait at destruction
  CacheStats st_;
  Histogram store_hist_, load_hist_;
};

}  // namespace kvstash::cache
