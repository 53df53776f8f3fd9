#include "cache/disk_sync.h"

#include <set>

#include "tiers/disk_tier.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

using tiers::Where;

void DiskSync::load() {
  auto* disk = s_.tiers->disk();
  if (!disk) return;
  const auto t0 = Clock::now();
  std::lock_guard lock(s_.mu);
  const auto rep = disk->scan([&](ObjKind, const Key&, const tiers::StoredObject* o) {
    if (o) s_.change_locked(s_.index.upsert(o->meta, o->stats), [](Node& n) { n.on_disk = true; });
  });
  // An object whose parent is gone can never be restored: remove it now.
  size_t orphans = 0;
  for (auto unreachable = s_.index.unreachable(); !unreachable.empty();
       unreachable = s_.index.unreachable()) {
    for (const auto& [kind, key] : unreachable) {
      if (Node* n = s_.index.find(kind, key)) s_.remove_locked(*n, "orphan", false);
      ++orphans;
    }
  }
  log::info("kv cache disk " + disk->dir() + ": " + std::to_string(rep.objects - orphans) +
            " objects, " + format_size(s_.tiers->used(Where::kDisk)) + " of " +
            format_size(s_.cfg.disk_budget) + " budget; removed " +
            std::to_string(rep.removed_damaged) + " damaged, " + std::to_string(rep.removed_temp) +
            " temporary, " + std::to_string(orphans) + " orphaned files (scan " +
            fmt_ms(ms_since(t0)) + " ms)");
  s_.st.damaged += rep.removed_damaged;
}

void DiskSync::sync(bool force) {
  auto* disk = s_.tiers->disk();
  if (!disk) return;
  std::lock_guard scan_lock(mu_);
  if (!disk->changed_since_last_check() && !force) return;
  std::set<ObjId> known, seen;
  {
    std::lock_guard lock(s_.mu);
    s_.index.for_each([&](Node& n) {
      if (n.on_disk) known.insert({n.meta.kind, n.meta.key});
    });
  }
  std::vector<tiers::StoredObject> found;
  disk->scan(
      [&](ObjKind kind, const Key& key, const tiers::StoredObject* o) {
        seen.insert({kind, key});
        if (o) found.push_back(*o);
      },
      [&](ObjKind kind, const Key& key) {
        return known.contains({kind, key});
      });
  std::lock_guard lock(s_.mu);
  for (const auto& o : found) {
    // A file this process is still writing is left to the write's completion: the object may
    // have been evicted meanwhile, and re-indexing it here would bring it back without its parent.
    if (s_.worker->find(o.meta.kind, o.meta.key)) continue;
    s_.change_locked(s_.index.upsert(o.meta, o.stats), [](Node& n) { n.on_disk = true; });
  }
  for (const auto& [kind, key] : known) {
    Node* n = s_.index.find(kind, key);
    if (!n || !n->on_disk || seen.contains({kind, key})) continue;
    s_.change_locked(*n, [](Node& x) { x.on_disk = false; });
    if (!held_locally(n) && !n->on_remote) s_.index.erase(kind, key);
  }
  // Whatever the rescan brought in must hang under what the index holds (a file seen just before
  // its write completed and its object was evicted, another process's eviction half seen).
  s_.drop_unreachable_locked(false);
}

}  // namespace kvstash::cache
