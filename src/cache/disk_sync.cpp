#include "cache/disk_sync.h"

#include <set>

#include "tiers/disk_tier.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

using tiers::Where;

DiskSync::Listing DiskSync::read_directory(const std::set<ObjId>& known,
                                           const std::set<Key>& indexed_chunks) {
  auto* disk = s_.tiers->disk();
  Listing l;
  l.report = disk->scan(
      [&](ObjKind kind, const Key& key, const tiers::StoredObject* o) {
        l.seen.insert({kind, key});
        if (o) l.found.push_back(*o);
      },
      [&](ObjKind kind, const Key& key) {
        return known.contains({kind, key});
      });
  // A parent is renamed into place before its children: one the listing missed (renamed while
  // the listing was past its name) is there now, under the children it did find.
  auto have = [&](const Key& chunk) {
    return indexed_chunks.contains(chunk) || l.seen.contains({ObjKind::kChunk, chunk});
  };
  for (size_t i = 0; i < l.found.size(); ++i) {
    const ObjectMeta m = l.found[i].meta;  // a copy: found grows below
    if (m.depth == 0 || have(m.parent)) continue;
    auto parent = disk->probe(ObjKind::kChunk, m.parent);
    if (!parent) continue;
    l.seen.insert({ObjKind::kChunk, m.parent});
    l.found.push_back(*parent);
  }
  return l;
}

size_t DiskSync::settle_orphans_locked() {
  auto* disk = s_.tiers->disk();
  size_t removed = 0;
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& [kind, key] : s_.index.unreachable()) {
      Node* n = s_.index.find(kind, key);
      if (!n || !held_locally(n)) continue;
      // A stat under the lock, like remove_locked()'s unlink: a metadata operation.
      const auto age = n->on_disk ? disk->age_ms(kind, key) : tiers::Result<int64_t>(int64_t{0});
      const bool remove_file =
          n->on_disk && (!age || tiers::orphan_fate(*age) == tiers::OrphanFate::kRemove);
      if (n->on_disk && !remove_file) s_.change_locked(*n, [](Node& x) { x.on_disk = false; });
      removed += remove_file;
      s_.remove_locked(*n, "orphan", false);
      progress = true;
    }
  }
  return removed;
}

void DiskSync::load() {
  auto* disk = s_.tiers->disk();
  if (!disk) return;
  const auto t0 = Clock::now();
  std::lock_guard scan_lock(mu_);
  const Listing l = read_directory({}, {});
  std::lock_guard lock(s_.mu);
  for (const auto& o : l.found) {
    s_.change_locked(s_.index.upsert(o.meta, o.stats), [](Node& n) { n.on_disk = true; });
  }
  // An object whose parent is gone can never be restored: its file goes once it is old.
  const size_t orphans = settle_orphans_locked();
  log::info("kv cache disk " + disk->dir() + ": " + std::to_string(s_.index.size()) + " objects, " +
            format_size(s_.tiers->used(Where::kDisk)) + " of " + format_size(s_.cfg.disk_budget) +
            " budget; removed " + std::to_string(l.report.removed_damaged) + " damaged, " +
            std::to_string(l.report.removed_temp) + " temporary, " + std::to_string(orphans) +
            " orphaned files; skipped " + std::to_string(l.report.skipped) +
            " files this build does not read (scan " + fmt_ms(ms_since(t0)) + " ms)");
  s_.st.damaged += l.report.removed_damaged;
}

void DiskSync::sync(bool force) {
  auto* disk = s_.tiers->disk();
  if (!disk) return;
  std::lock_guard scan_lock(mu_);
  if (!disk->changed_since_last_check() && !force) return;
  std::set<ObjId> known;
  std::set<Key> indexed_chunks;
  {
    std::lock_guard lock(s_.mu);
    s_.index.for_each([&](Node& n) {
      if (n.on_disk) known.insert({n.meta.kind, n.meta.key});
      if (n.meta.kind == ObjKind::kChunk) indexed_chunks.insert(n.meta.key);
    });
  }
  const Listing l = read_directory(known, indexed_chunks);
  std::lock_guard lock(s_.mu);
  for (const auto& o : l.found) {
    // A file this process is still writing is left to the write's completion: the object may
    // have been evicted meanwhile, and re-indexing it here would bring it back without its parent.
    if (s_.worker->find(o.meta.kind, o.meta.key)) continue;
    s_.change_locked(s_.index.upsert(o.meta, o.stats), [](Node& n) { n.on_disk = true; });
  }
  for (const auto& [kind, key] : known) {
    Node* n = s_.index.find(kind, key);
    if (!n || !n->on_disk || l.seen.contains({kind, key})) continue;
    s_.change_locked(*n, [](Node& x) { x.on_disk = false; });
    if (!held_locally(n) && !n->on_remote) s_.index.erase(kind, key);
  }
  // Whatever the rescan brought in must hang under what the index holds (a file seen just before
  // its write completed and its object was evicted, another process's eviction half seen).
  settle_orphans_locked();
}

}  // namespace kvstash::cache
