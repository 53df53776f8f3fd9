// Keeping the index in step with the disk directory: the scan at startup (what survived the last
// run, minus damaged, temporary and orphaned files) and the rescans that pick up other processes'
// writes and removals when the directory's modification time changes.
//
// Facade layer (cache_state.h): it enters disk objects into the index. The directory is read
// outside the index lock; only the resulting index changes take it. One scan runs at a time.
#pragma once

#include <mutex>

#include "cache/cache_state.h"

namespace kvstash::cache {

class DiskSync {
 public:
  explicit DiskSync(CacheState& s) : s_(s) {}
  // The startup scan (logged with what it found and removed). No-op without a disk tier.
  void load();
  // A rescan if the directory changed since the last one (always if `force`).
  void sync(bool force);

 private:
  CacheState& s_;
  std::mutex mu_;  // one directory scan at a time
};

}  // namespace kvstash::cache
