// The prefix cache of one model namespace: a thin facade over the prefix index (what is stored
// where; pure), the tier set (tiers/tier_set.h: RAM, disk, remote, their budgets), the transfer
// worker (tiers/transfer_worker.h: stores made durable on a thread of their own) and the remote
// directory. Engine-agnostic: KV bytes arrive through callbacks and leave as payload buffers.
//
// The work is done by the units of the facade layer, which tie src/cache/ to src/tiers/ (the two
// do not include each other): cache_state.h (the shared state, the index lock and the index
// changes made under it), disk_sync.h (the index in step with the disk directory), lookup.h
// (plans and reads), tier_mover.h (eviction, demotion, promotion) and store_pipeline.h (the store
// protocol and the transfer worker's callbacks). The facade wires them together and keeps the
// statistics, hit/miss accounting, rejection of refused states and pins.
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
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cache/cache_types.h"
#include "cache/prefix_index.h"
#include "cache/restore_choice.h"
#include "cache/store_policy.h"
#include "util/histogram.h"

namespace kvstash::cache {

struct CacheState;
class DiskSync;
class Lookup;
class StorePipeline;
class TierMover;

class PrefixCache {
 public:
  PrefixCache(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint);
  ~PrefixCache();

  const CacheConfig& config() const;
  const Key& root() const;

  // `salt`: the request's cache_salt ("" for none).
  RestorePlan plan(std::span<const Token> prompt, const std::vector<uint32_t>& boundaries,
                   const std::string& salt = "");

  // One object, verified, from the fastest tier that has it (promoted into RAM on the way; the
  // buffer is shared, not copied). Null if it is missing or damaged: the index forgets it, so a
  // new plan() finds the next best prefix. `from` receives the tier that served it. Safe to call
  // from a prefetch thread while the caller uploads the previous object.
  Payload fetch(ObjKind kind, const Key& key, Source* from = nullptr);
  // The chunk's copy in the VRAM tier, or null (none, or not made yet: fetch() serves it then).
  // `bytes` receives its payload size.
  DeviceRef fetch_device(const Key& key, uint64_t* bytes = nullptr);
  using Loaded = cache::Loaded;
  // Fetches all of the plan's objects (tools and tests; a request streams them with fetch()).
  std::optional<Loaded> load(const RestorePlan& plan);
  // Restoring the plan on top of the live state's first `first_chunk` chunks, as a candidate of
  // the restore-or-recompute choice: the bytes each tier would serve for the plan's chunks from
  // `first_chunk` on and its entry (the fastest tier holding each object), how many of the disk's
  // the page cache holds now, and the slowest tier involved.
  PlanOption restore_option(const RestorePlan& plan, size_t first_chunk);
  // The disk tier's file of an object ("" without a disk tier).
  std::string disk_path(ObjKind kind, const Key& key) const;
  RateModel& rates() { return rates_; }
  BufferPool& pool();
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

  using StoreRequest = cache::StoreRequest;
  using StoreResult = cache::StoreResult;
  StoreResult store(const StoreRequest& req);

  // Objects a running request depends on are never evicted while pinned.
  class Pin {
   public:
    Pin() = default;
    Pin(CacheState* s, std::vector<std::pair<ObjKind, Key>> objs);
    Pin(Pin&& o) noexcept;
    Pin& operator=(Pin&& o) noexcept;
    ~Pin();

   private:
    void release();
    CacheState* s_ = nullptr;
    std::vector<std::pair<ObjKind, Key>> objs_;
  };
  Pin pin(const RestorePlan& plan);

  CacheStats stats();
  const Histogram& store_latency() const;
  const Histogram& load_latency() const;
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
  std::unique_ptr<CacheState> s_;
  std::unique_ptr<DiskSync> disk_;
  std::unique_ptr<TierMover> mover_;
  std::unique_ptr<Lookup> lookup_;
  std::unique_ptr<StorePipeline> pipeline_;
  RateModel rates_;
  bool abandon_ = false;  // a drain timed out: do not wait at destruction
};

}  // namespace kvstash::cache
