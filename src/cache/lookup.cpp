#include "cache/lookup.h"

#include <algorithm>

#include "tiers/disk_tier.h"
#include "util/log.h"
#include "util/page_cache.h"

namespace kvstash::cache {

using tiers::Where;

RestorePlan Lookup::plan(std::span<const Token> prompt, const std::vector<uint32_t>& boundaries,
                         const std::string& salt) {
  disk_.sync(false);
  const Chain chain = make_chain(salted_root(s_.index.root(), salt), prompt, s_.cfg.chunk);
  if (s_.tiers->remote()) {
    size_t known = 0;
    {
      std::lock_guard lock(s_.mu);
      while (known < chain.keys.size() && s_.index.find(ObjKind::kChunk, chain.keys[known])) {
        ++known;
      }
    }
    const auto found = s_.remote_dir->discover(chain, known);  // Redis round trips: no lock
    std::lock_guard lock(s_.mu);
    for (const ObjectMeta& m : found) {
      if (Node* n = s_.index.find(m.kind, m.key)) {
        n->on_remote = true;
      } else {
        s_.index.upsert(m, {}).on_remote = true;
      }
    }
  }
  std::lock_guard lock(s_.mu);
  return s_.index.plan(prompt, chain, Breaks(s_.cfg.chunk, boundaries));
}

Payload Lookup::fetch(ObjKind kind, const Key& key, Source* from) {
  // The objects of a plan being restored are pinned, so eviction does not remove them while they
  // are read; anything else that removes one (clear, reject) just makes the read miss or the
  // bookkeeping below find no node.
  auto served = [&](Source s, Payload p) {
    if (from) *from = s;
    return p;
  };
  tiers::TierSet::Held held;
  {
    std::lock_guard lock(s_.mu);
    // An object being stored is served from the buffer the store copied it into. (Under the
    // lock: a store enters its objects and queues them in one locked step, and a finished write
    // updates the flags before its buffer leaves the worker, so one of the two always finds it.)
    if (Payload p = s_.worker->find(kind, key)) return served(Source::kRam, p);
    const Node* n = s_.index.find(kind, key);
    if (!n) return nullptr;
    held = {n->in_ram, n->on_disk, n->on_remote};
  }
  const auto r = s_.tiers->read(kind, key, held);
  std::lock_guard lock(s_.mu);
  Node* n = s_.index.find(kind, key);
  for (const auto& [where, err] : r.failed) {
    if (where == Where::kRam) {
      log::warn("kv cache RAM copy unusable (" + err.what + "), trying disk");
      if (n) s_.change_locked(*n, [](Node& x) { x.in_ram = false; });
    } else if (where == Where::kDisk) {
      ++s_.st.damaged;
      if (n) s_.change_locked(*n, [](Node& x) { x.on_disk = false; });
    }
  }
  if (!r.got) {
    log::warn("kv cache object " + key.hex() + " unusable: " + r.got.error().what);
    s_.forget_locked(kind, key);
    return nullptr;
  }
  const auto& [payload, where] = *r.got;
  if (where == Where::kRam) {
    if (n) mover_.promote_vram_locked(*n, payload);
    return served(Source::kRam, payload);
  }
  s_.st.bytes_read += payload->size();
  // Promotion: the next request finds it in a faster tier (the buffer itself, not a copy).
  if (n) mover_.promote_locked(*n, payload, where == Where::kRemote);
  return served(where == Where::kDisk ? Source::kDisk : Source::kRemote, payload);
}

DeviceRef Lookup::fetch_device(const Key& key, uint64_t* bytes) {
  tiers::VramTier* v = s_.tiers->vram();
  if (!v) return nullptr;
  {
    std::lock_guard lock(s_.mu);
    const Node* n = s_.index.find(ObjKind::kChunk, key);
    if (!n || !n->in_vram) return nullptr;
    if (bytes) *bytes = n->meta.payload_bytes;
  }
  return v->get(ObjKind::kChunk, key);
}

std::optional<Loaded> Lookup::load(const RestorePlan& plan) {
  Loaded out;
  for (const Key& k : plan.chunks) {
    auto p = fetch(ObjKind::kChunk, k, nullptr);
    if (!p) return std::nullopt;
    out.chunks.push_back(std::move(p));
  }
  if (plan.entry) {
    out.entry = fetch(ObjKind::kEntry, *plan.entry, nullptr);
    if (!out.entry) return std::nullopt;
  }
  return out;
}

PlanOption Lookup::restore_option(const RestorePlan& plan, size_t first_chunk) {
  PlanOption o;
  o.start = plan.resume_at;
  o.keep = static_cast<uint32_t>(first_chunk * s_.cfg.chunk);
  std::vector<ObjId> on_disk;
  {
    std::lock_guard lock(s_.mu);
    auto add = [&](ObjKind kind, const Key& key) {
      if (const Node* n = s_.index.find(kind, key)) {
        const Source t = serving_tier(*n);
        o.bytes[static_cast<size_t>(t)] += n->meta.payload_bytes;
        if (t == Source::kDisk) on_disk.push_back({kind, key});
      }
    };
    for (size_t i = first_chunk; i < plan.chunks.size(); ++i) add(ObjKind::kChunk, plan.chunks[i]);
    if (plan.entry) add(ObjKind::kEntry, *plan.entry);
  }
  // Outside the lock: a few system calls per file. The header's bytes count as payload's.
  if (tiers::DiskTier* d = s_.tiers->disk()) {
    for (const auto& [kind, key] : on_disk)
      o.page_cached += util::page_cached_bytes(d->path(kind, key));
  }
  o.page_cached = std::min(o.page_cached, o.bytes[static_cast<size_t>(Source::kDisk)]);
  o.source = Source::kRam;
  for (Source t : {Source::kDisk, Source::kRemote}) {
    if (o.bytes[static_cast<size_t>(t)] > 0) o.source = t;
  }
  return o;
}

}  // namespace kvstash::cache
