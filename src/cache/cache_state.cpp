#include "cache/cache_state.h"

#include "util/log.h"
#include "util/size.h"

namespace kvstash::cache {

using tiers::Where;

CacheState::CacheState(const CacheConfig& c, const std::array<uint8_t, 16>& fingerprint)
    : cfg(c),
      pool(c.pool ? c.pool : std::make_shared<BufferPool>()),
      index(root_key(fingerprint), c.chunk, c.snapshot_only) {
  if (c.chunk == 0) throw std::invalid_argument("the cache chunk size must be > 0");
  tiers = std::make_unique<tiers::TierSet>(
      tiers::TierConfig{c.dir, c.disk_budget, c.ram_budget, c.remote, c.vram}, fingerprint, pool);
  remote_dir = std::make_unique<tiers::RemoteDirectory>(tiers->remote(), c.chunk);
}

void CacheState::remove_locked(Node& n, const char* why, bool log_it) {
  if (log_it) {
    log::info(
        std::string("kv cache evicted reason=") + why +
        " kind=" + (n.meta.kind == ObjKind::kChunk ? "chunk" : "entry") +
        " tokens=" + std::to_string(n.meta.n_tokens) + " hits=" + std::to_string(n.stats.hits) +
        " size=" + format_size(n.meta.payload_bytes) +
        (n.meta.kind == ObjKind::kEntry ? std::string(" entry_reason=") + reason_name(n.meta.reason)
                                        : ""));
  }
  // Unlinking a file is a metadata operation; it stays under the lock so that a later store of
  // the same key cannot be overtaken by it. A failed removal leaves a file the next scan sees.
  if (n.on_disk) (void)tiers->remove(Where::kDisk, n.meta.kind, n.meta.key);
  if (n.in_ram) (void)tiers->remove(Where::kRam, n.meta.kind, n.meta.key);
  if (n.in_vram) tiers->vram()->remove(n.meta.kind, n.meta.key);
  // A pending write finds its node gone when it completes and removes its file (object_done).
  change_locked(n, [](Node& x) { x.on_disk = x.in_ram = x.pending = x.in_vram = false; });
  // The shared tier keeps its copy (it has its own budget); the index still knows where it is.
  if (!n.on_remote) index.erase(n.meta.kind, n.meta.key);
}

void CacheState::forget_locked(ObjKind kind, const Key& key) {
  if (Node* n = index.find(kind, key)) {
    n->on_remote = false;
    remove_locked(*n, "damaged", false);
  }
}

void CacheState::drop_unreachable_locked(bool remote_too) {
  for (const auto& [kind, key] : index.unreachable()) {
    Node* n = index.find(kind, key);
    if (!n || (!remote_too && !held_locally(n))) continue;
    if (remote_too) n->on_remote = false;
    remove_locked(*n, "orphan", false);
  }
}

}  // namespace kvstash::cache
