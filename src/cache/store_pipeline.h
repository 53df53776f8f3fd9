// The store protocol: how a prefix's KV goes from the engine to the tiers without the request
// waiting for I/O.
//
//   1. plan, under the index lock (no I/O): is the entry there already; which chunks are new;
//      which continued checkpoints the store supersedes (store_policy.h; dropped);
//   2. admission to the store queue (tier_rules.h store_admission): a checkpoint is dropped when
//      the queue is full, the only copy of a live state waits for room;
//   3. extract, on the caller's thread and outside the lock: the KV is copied out of the engine
//      (the only part that must happen before the engine moves on);
//   4. commit, under the lock: room is made in the tier's budget (tier_mover.h; never by evicting
//      what this store writes, unless replay's store-then-evict toggle is on), the objects enter
//      the index as pending (and in RAM where they fit), and the job is submitted to the transfer
//      worker, parents first. Another slot that stored some of them meanwhile wrote them once.
//
// The worker then calls back write_object() (checksum for RAM, durable disk write, remote queue;
// outside the lock) and object_done() (the node's flags follow; an object evicted while queued
// has its file removed) for each object, on its own thread (inline for `kvstash replay`).
//
// Facade layer (cache_state.h).
#pragma once

#include "cache/cache_state.h"
#include "cache/disk_sync.h"
#include "cache/tier_mover.h"

namespace kvstash::cache {

class StorePipeline {
 public:
  StorePipeline(CacheState& s, DiskSync& disk, TierMover& mover)
      : s_(s), disk_(disk), mover_(mover) {}
  StoreResult store(const StoreRequest& req);
  // The transfer worker's callbacks (tiers/transfer_worker.h), on a writer thread.
  bool write_object(const tiers::StoreObject& o);
  // The object's VRAM copy, unless one is made already (the worker's thread).
  void write_vram(const tiers::StoreObject& o);
  void object_done(const tiers::StoreObject& o, bool ok);

 private:
  // The disk write of a worker's object. On a full disk (ENOSPC) the disk budget is capped at
  // what the disk holds, the least valuable objects are evicted to make room for this one
  // (never the object itself or its parent), and the write is retried, kFullDiskRetries times
  // at most.
  static constexpr int kFullDiskRetries = 3;
  tiers::Status write_disk_making_room(const tiers::StoreObject& o);
  StoreResult skip(StoreResult res, uint32_t n, Reason reason, const std::string& why);
  CacheState& s_;
  DiskSync& disk_;
  TierMover& mover_;
};

}  // namespace kvstash::cache
