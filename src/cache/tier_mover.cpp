#include "cache/tier_mover.h"

#include "tiers/ram_tier.h"
#include "tiers/vram_tier.h"
#include "util/log.h"
#include "util/size.h"

namespace kvstash::cache {

using tiers::Where;

bool TierMover::make_room_locked(Where w, RoomRequest r) {
  const bool disk = w == Where::kDisk, vram = w == Where::kVram;
  auto& tiers = *s_.tiers;
  r.disk = disk;
  r.used = tiers.used(w);
  r.budget = tiers.budget(w);
  if (r.used + r.incoming <= r.budget) return true;
  const auto victims = choose_victims(s_.index, r, s_.cfg.evict, s_.clock_ms(), [&](const Node& n) {
    const bool in = disk ? n.on_disk || n.pending : vram ? n.in_vram : n.in_ram;
    return in ? tiers.size_in(w, n.meta) : 0;
  });
  if (!victims) return false;
  std::vector<ObjId> ids;
  for (Node* v : *victims) ids.push_back({v->meta.kind, v->meta.key});
  for (const auto& [kind, key] : ids) {
    Node* n = s_.index.find(kind, key);
    if (!n) continue;
    if (disk) {
      s_.remove_locked(*n, "disk-cache-full", true);
    } else if (vram) {
      tiers.vram()->remove(kind, key);
      s_.change_locked(*n, [](Node& x) { x.in_vram = false; });
    } else {
      demote_or_drop_locked(*n);
    }
    ++s_.st.evictions;
    ++s_.st.evictions_by_reason[disk   ? "disk-cache-full"
                                : vram ? "vram-cache-full"
                                       : "ram-cache-full"];
  }
  return true;
}

void TierMover::demote_or_drop_locked(Node& n) {
  // What exists nowhere else goes to disk if the disk has room without evicting (written by the
  // worker; the buffer stays readable there until it is durable).
  auto& tiers = *s_.tiers;
  const ObjKind kind = n.meta.kind;
  const Key key = n.meta.key;
  const DiskRoom room{tiers.disk() != nullptr, tiers.used(Where::kDisk),
                      tiers.size_in(Where::kDisk, n.meta), tiers.budget(Where::kDisk)};
  tiers::RamTier::Held held;  // the buffer and its checksum, if it is to be demoted
  if (ram_exit(n, room) == RamExit::kDemote) held = tiers.ram()->peek(kind, key).value_or({});
  const Payload& p = held.payload;
  if (p && s_.worker->try_reserve(p->size())) {
    (void)tiers.remove(Where::kRam, kind, key);
    s_.change_locked(n, [](Node& x) {
      x.in_ram = false;
      x.pending = true;
    });
    const uint32_t tokens = n.meta.n_tokens;  // an inline worker may drop the node
    s_.submit_locked({{n.meta, n.stats, p, held.checksum}}, p->size());
    log::info("kv cache demoted tokens=" + std::to_string(tokens) +
              " size=" + format_size(p->size()) + " to disk");
    return;
  }
  if (p) ++s_.st.stores_dropped["demote-queue-full"];
  (void)tiers.remove(Where::kRam, kind, key);
  s_.change_locked(n, [](Node& x) { x.in_ram = false; });
  if (!held_locally(&n)) s_.remove_locked(n, "ram-cache-full", true);
}

void TierMover::promote_locked(Node& n, const Payload& p, bool to_disk) {
  auto& tiers = *s_.tiers;
  if (to_disk) {
    ObjectMeta m = n.meta;
    m.payload_bytes = p->size();
    m.created_ms = s_.clock_ms();
    s_.change_locked(n, [&](Node& x) { x.meta = m; });
  }
  const ObjId id{n.meta.kind, n.meta.key};
  const std::vector<Key> parents{n.meta.parent};
  bool ram = tiers.ram() && !n.in_ram && p->size() <= s_.cfg.ram_budget &&
             make_room_locked(Where::kRam, room_for(p->size(), {id}, parents));
  bool disk = to_disk && tiers.disk() && !n.on_disk && !n.pending &&
              make_room_locked(Where::kDisk,
                               room_for(tiers.size_in(Where::kDisk, n.meta), {id}, parents)) &&
              s_.worker->try_reserve(p->size());
  Node* again = s_.index.find(id.first, id.second);  // making room may have moved the table
  if (!again) return;
  // The job below makes the VRAM copy too, if one is wanted.
  const bool vram = want_vram_locked(*again);
  again = s_.index.find(id.first, id.second);
  if (!again || (!ram && !disk && !vram)) return;
  s_.change_locked(*again, [&](Node& x) {
    x.in_ram = x.in_ram || ram;
    x.pending = x.pending || disk;
  });
  s_.submit_locked({{again->meta, again->stats, p, std::nullopt, !ram && !disk}},
                   disk ? p->size() : 0);
}

bool TierMover::want_vram_locked(Node& n) {
  auto& tiers = *s_.tiers;
  if (!tiers.vram() || n.meta.kind != ObjKind::kChunk) return false;
  if (n.in_vram) return false;
  const ObjId id{n.meta.kind, n.meta.key};
  const uint64_t size = tiers.size_in(Where::kVram, n.meta);
  if (size > tiers.budget(Where::kVram) ||
      !make_room_locked(Where::kVram, room_for(size, {id}, {n.meta.parent}))) {
    return false;
  }
  Node* again = s_.index.find(id.first, id.second);
  if (!again) return false;
  s_.change_locked(*again, [](Node& x) { x.in_vram = true; });
  return true;
}

void TierMover::promote_vram_locked(Node& n, const Payload& p) {
  const ObjId id{n.meta.kind, n.meta.key};
  if (!want_vram_locked(n)) return;
  if (Node* again = s_.index.find(id.first, id.second)) {
    s_.submit_locked({{again->meta, again->stats, p, std::nullopt, true}}, 0);
  }
}

}  // namespace kvstash::cache
