// Keeping the index in step with the disk directory: the scan at startup (what survived the last
// run, minus damaged, temporary and orphaned files) and the rescans that pick up other processes'
// writes and removals when the directory's modification time changes.
//
// Other processes write and remove files while a scan lists them. A listing may miss a parent
// renamed into place during it yet find the child written after it: the parent is probed before
// the child is taken for an orphan. A file found without its parent is removed only once it is
// old (tiers::orphan_fate()); a young one is forgotten until a later scan finds it whole.
//
// Facade layer (cache_state.h): it enters disk objects into the index. The directory is read
// outside the index lock; only the resulting index changes take it. One scan runs at a time.
#pragma once

#include <mutex>
#include <set>
#include <vector>

#include "cache/cache_state.h"
#include "tiers/disk_tier.h"

namespace kvstash::cache {

class DiskSync {
 public:
  explicit DiskSync(CacheState& s) : s_(s) {}
  // The startup scan (logged with what it found and removed). No-op without a disk tier.
  void load();
  // A rescan if the directory changed since the last one (always if `force`).
  void sync(bool force);

 private:
  struct Listing {
    std::vector<tiers::StoredObject> found;  // objects whose headers were read
    std::set<ObjId> seen;                    // every object listed (or probed)
    tiers::DiskTier::ScanReport report;
  };
  // The directory's objects (headers read only for those not `known`), with the parents the
  // listing missed of those it found (`indexed_chunks`: what need not be probed). No lock held.
  Listing read_directory(const std::set<ObjId>& known, const std::set<Key>& indexed_chunks);
  // Objects that no longer hang under the index leave the local tiers; a file is removed only
  // where orphan_fate() says so. Returns the files removed.
  size_t settle_orphans_locked();

  CacheState& s_;
  std::mutex mu_;  // one directory scan at a time
};

}  // namespace kvstash::cache
