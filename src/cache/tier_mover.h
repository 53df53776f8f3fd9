// Moving objects between tiers: eviction to fit a tier's budget (victims chosen by the eviction
// policy over the index, eviction_view.h), demotion of what leaves RAM to the disk (queued on the
// transfer worker: its buffer stays readable until it is durable), and promotion of what a read
// found in a slower tier (into RAM as the very buffer that was read; from the remote tier to disk
// as well).
//
// Facade layer (cache_state.h). Every function here runs under the index lock and does no I/O:
// evicted files are unlinked (remove_locked), demotions and promotions are queued for the worker.
// Which way an object leaves RAM is the pure rule ram_exit() (tier_rules.h).
#pragma once

#include "cache/cache_state.h"
#include "cache/eviction_view.h"

namespace kvstash::cache {

class TierMover {
 public:
  explicit TierMover(CacheState& s) : s_(s) {}
  // Evicts from tier `w` (disk, RAM or VRAM) until r.incoming bytes fit its budget. False if
  // they cannot (nothing is evicted then). What leaves VRAM is only a copy: it is dropped.
  bool make_room_locked(tiers::Where w, RoomRequest r);
  // `p`, just read from a slower tier, into RAM (if it fits) and, when it came from the remote
  // tier (`to_disk`), to disk as well.
  void promote_locked(Node& n, const Payload& p, bool to_disk);
  // A chunk about to be restored or just stored is hot: a VRAM copy is wanted if the tier takes
  // it (room made by the eviction scores). Returns whether it was reserved; the copy is made by
  // the transfer worker (write_targets().vram).
  bool want_vram_locked(Node& n);
  // want_vram_locked, and a job for the worker that makes the copy from `p`.
  void promote_vram_locked(Node& n, const Payload& p);

 private:
  void demote_or_drop_locked(Node& n);
  CacheState& s_;
};

}  // namespace kvstash::cache
