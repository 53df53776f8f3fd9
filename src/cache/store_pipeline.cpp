#include "cache/store_pipeline.h"

#include "cache/store_policy.h"
#include "tiers/disk_format.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

using tiers::StoreObject;
using tiers::Where;

void StorePipeline::write_vram(const StoreObject& o) {
  tiers::VramTier& v = *s_.tiers->vram();
  const auto kind = o.meta.kind;
  const auto& key = o.meta.key;
  if (v.holds(kind, key)) return;
  const bool made = v.put(kind, key, o.payload->span());  // outside the lock: a device copy
  std::lock_guard lock(s_.mu);
  Node* n = s_.index.find(kind, key);
  if (!n || !n->in_vram) {
    v.remove(kind, key);  // evicted or dropped while it was copied
  } else if (!made) {
    s_.change_locked(*n, [](Node& x) { x.in_vram = false; });
  }
}

bool StorePipeline::write_object(const StoreObject& o) {
  WriteTargets to;
  {
    std::lock_guard lock(s_.mu);
    const Node* n = s_.index.find(o.meta.kind, o.meta.key);
    if (!n) return false;  // removed while queued (clear, reject)
    // Children only under a parent that is still indexed: otherwise the file would be an orphan.
    if (o.meta.depth > 0 && !s_.index.find(ObjKind::kChunk, o.meta.parent)) return false;
    to = write_targets(*n, s_.tiers->remote() != nullptr);
    if (o.vram_only) to = {.vram = to.vram};
  }
  if (o.checksum && tiers::payload_checksum(o.payload->span()) != *o.checksum) {
    log::error("kv cache RAM copy damaged, not demoted tokens=" + std::to_string(o.meta.n_tokens));
    return false;
  }
  if (to.ram) {
    const uint64_t sum = tiers::payload_checksum(o.payload->span());  // once, on insert
    std::lock_guard lock(s_.mu);
    const Node* n = s_.index.find(o.meta.kind, o.meta.key);
    if (n && n->in_ram) (void)s_.tiers->put_ram(o.meta, o.payload, sum);  // cannot fail
  }
  if (to.vram) write_vram(o);
  if (to.disk) {
    if (const auto st = write_disk_making_room(o); !st) {
      log::error("kv cache store failed tokens=" + std::to_string(o.meta.n_tokens) + ": " +
                 st.error().what);
      std::lock_guard lock(s_.mu);
      ++s_.st.io_errors["write"];
      return false;
    }
  }
  // Queued for the Redis writer; a drop is counted by the remote tier and costs nothing here.
  if (to.remote) (void)s_.tiers->put_remote(o.meta, o.stats, o.payload);
  return true;
}

tiers::Status StorePipeline::write_disk_making_room(const StoreObject& o) {
  auto& tiers = *s_.tiers;
  tiers::Status st = tiers.write_disk(o.meta, o.stats, o.payload);
  for (int retry = 0; retry < kFullDiskRetries && !st && st.error().kind == tiers::IoError::kFull;
       ++retry) {
    {
      std::lock_guard lock(s_.mu);
      // What the disk holds now is all it holds: room for this object is made below that.
      const uint64_t used = tiers.used(Where::kDisk), size = tiers.size_in(Where::kDisk, o.meta);
      tiers.cap_disk(used > size ? used - size : 0);
      const ObjId id{o.meta.kind, o.meta.key};
      if (!mover_.make_room_locked(Where::kDisk, room_for(0, {id}, {o.meta.parent}))) break;
    }
    log::warn("kv cache disk full: evicted to make room, retrying the write tokens=" +
              std::to_string(o.meta.n_tokens));
    st = tiers.write_disk(o.meta, o.stats, o.payload);
  }
  return st;
}

void StorePipeline::object_done(const StoreObject& o, bool ok) {
  std::lock_guard lock(s_.mu);
  Node* n = s_.index.find(o.meta.kind, o.meta.key);
  if (!n) {
    // Removed while the write was queued (clear, reject): its file must not outlive it.
    if (ok) (void)s_.tiers->remove(Where::kDisk, o.meta.kind, o.meta.key);
    return;
  }
  if (ok && s_.tiers->remote()) n->on_remote = true;
  if (!n->pending) return;
  if (ok) s_.st.bytes_written += o.payload->size();
  if (!ok && o.checksum) {
    ++s_.st.io_errors["demote"];
    log::error("kv cache demotion to disk failed tokens=" + std::to_string(o.meta.n_tokens) +
               ", the only copy is lost");
  }
  s_.change_locked(*n, [&](Node& x) {
    x.pending = false;
    x.on_disk = x.on_disk || ok;
  });
  if (!ok && !held_locally(n) && !n->on_remote) s_.remove_locked(*n, "write-failed", false);
}

StoreResult StorePipeline::skip(StoreResult res, uint32_t n, Reason reason,
                                const std::string& why) {
  res.skipped = why;
  {
    std::lock_guard lock(s_.mu);
    ++s_.st.stores_skipped;
  }
  log::info("kv cache store skipped tokens=" + std::to_string(n) +
            " reason=" + reason_name(reason) + " size=" + format_size(res.bytes) + ": " + why);
  return res;
}

StoreResult StorePipeline::store(const StoreRequest& req) {
  const auto t0 = Clock::now();
  StoreResult res;
  disk_.sync(false);
  s_.tiers->refresh_disk_cap();  // the budget never exceeds what the disk can take
  auto& tiers = *s_.tiers;
  auto& worker = *s_.worker;
  const uint32_t C = s_.cfg.chunk;
  const auto n = static_cast<uint32_t>(req.tokens.size());
  const uint32_t k = n / C;
  const Chain ch = make_chain(salted_root(s_.index.root(), req.salt), req.tokens, C);
  const Key parent = ch.parent_of(k);
  const Key ekey = entry_key(parent, req.tokens.subspan(size_t(k) * C));
  const int64_t now = s_.clock_ms();
  if (!tiers.disk() && !tiers.ram()) return skip(res, n, req.reason, "no cache tier is configured");

  // 1. What is new (under the lock; no I/O).
  std::vector<uint32_t> fresh;
  std::vector<std::tuple<ObjKind, Key, ObjectStats>> touched;
  {
    std::lock_guard lock(s_.mu);
    if (Node* e = s_.index.find(ObjKind::kEntry, ekey); held_locally(e)) {
      e->stats.last_used_ms = now;
      res.existed = true;
      if (e->on_disk) touched.emplace_back(ObjKind::kEntry, ekey, e->stats);
    } else {
      // Continued checkpoints this store makes redundant (strict prefixes of it): dropped, so
      // one long prefill does not leave nested copies of itself.
      if (req.reason == Reason::kCold || req.reason == Reason::kContinued) {
        std::vector<EntryView> views;
        for (const Node* e : s_.index.entries_on_path(req.tokens, ch)) {
          views.push_back({e->meta.key, e->meta.n_tokens, e->meta.reason, true});
        }
        StoreConfig sc;
        sc.drop_superseded = req.drop_superseded;
        for (const Key& key : superseded_by(req.reason, n, views, sc)) {
          if (Node* e = s_.index.find(ObjKind::kEntry, key); e && e->pins == 0) {
            log::info("kv cache dropped superseded continued entry tokens=" +
                      std::to_string(e->meta.n_tokens) + " (its chunks stay shared)");
            s_.remove_locked(*e, "superseded", false);
            ++s_.st.superseded_dropped;
          }
        }
      }
      for (uint32_t i = 0; i < k; ++i) {
        if (!held_locally(s_.index.find(ObjKind::kChunk, ch.keys[i]))) fresh.push_back(i);
      }
    }
  }
  // Usage statistics only: an object evicted meanwhile has nothing to update.
  for (const auto& [kind, key, stats] : touched) (void)tiers.update_disk_stats(kind, key, stats);
  if (res.existed) return res;

  // 2. Room in the store queue.
  const uint64_t estimate = s_.chunk_bytes.load() * fresh.size();
  const auto tw = Clock::now();
  if (store_admission(req.reason) == Admission::kWaitForRoom) {
    worker.reserve(estimate);
    res.wait_ms = ms_since(tw);
  } else if (!worker.try_reserve(estimate)) {
    res.dropped = true;
    std::lock_guard lock(s_.mu);
    ++s_.st.stores_dropped["queue-full"];
    log::info("kv cache store dropped reason=queue-full tokens=" + std::to_string(n) +
              " checkpoint=" + reason_name(req.reason) + " queued=" +
              format_size(worker.stats().queued_bytes) + " of " + format_size(s_.cfg.store_queue));
    return res;
  }
  // Released on every way out but the job's submission, a throw out of the engine included.
  tiers::TransferWorker::Reservation room_held(worker, estimate);

  // 3. Copy the KV out of the engine (the caller's thread: the engine is about to move on).
  std::vector<Payload> chunks;
  for (uint32_t i : fresh) chunks.push_back(req.chunk_payload(i));
  const Payload entry = req.entry_payload();
  uint64_t total = entry->size();
  for (const auto& p : chunks) total += p->size();
  if (!chunks.empty()) s_.chunk_bytes = chunks.front()->size();
  room_held.resize(total);
  res.bytes = total;
  res.new_chunks = static_cast<uint32_t>(fresh.size());

  // 4. Enter the objects as pending and queue them, parents first. Another slot may have stored
  // some of them meanwhile: those are written once, by whoever came first.
  std::unique_lock lock(s_.mu);
  if (held_locally(s_.index.find(ObjKind::kEntry, ekey))) {
    lock.unlock();
    res.existed = true;
    return res;
  }
  std::vector<StoreObject> job;
  auto add = [&](ObjectMeta m, const Payload& p) {
    m.created_ms = now;
    m.payload_bytes = p->size();
    job.push_back({m, {0, now}, p, std::nullopt});
  };
  for (size_t j = 0; j < fresh.size(); ++j) {
    const uint32_t i = fresh[j];
    if (held_locally(s_.index.find(ObjKind::kChunk, ch.keys[i]))) continue;
    add({ObjKind::kChunk, ch.keys[i], ch.parent_of(i), i, C}, chunks[j]);
  }
  add({ObjKind::kEntry, ekey, parent, k, n, req.reason, req.has_logits}, entry);
  std::vector<ObjId> incoming;
  std::vector<Key> parents;
  uint64_t queued = 0, disk_bytes = 0;
  for (const auto& o : job) {
    incoming.push_back({o.meta.kind, o.meta.key});
    parents.push_back(o.meta.parent);
    queued += o.payload->size();
    disk_bytes += tiers.size_in(Where::kDisk, o.meta);
  }
  const bool disk = tiers.disk() != nullptr;
  // With protect_own_writes off (replay's seed-bug toggle) a store writes first and evicts
  // afterwards, its own objects included: the store-then-evict thrash.
  const bool store_then_evict = !s_.cfg.evict.protect_own_writes;
  const RoomRequest room =
      room_for(disk ? disk_bytes : queued, incoming, parents, req.protect, req.protect_salt);
  if (!store_then_evict && !mover_.make_room_locked(disk ? Where::kDisk : Where::kRam, room)) {
    lock.unlock();
    res.bytes = queued;
    return skip(res, n, req.reason,
                std::string("it does not fit the ") + (disk ? "disk" : "ram") + " budget of " +
                    format_size(tiers.budget(disk ? Where::kDisk : Where::kRam)) +
                    " without evicting what this store writes");
  }
  const bool ram = tiers.ram() != nullptr;
  for (const auto& o : job) {
    s_.remote_dir->accept(o.meta.key);  // freshly computed: no longer the bytes the engine refused
    Node& node = s_.index.upsert(o.meta, o.stats);
    s_.change_locked(node, [&](Node& x) {
      x.pending = x.pending || disk;
      // A RAM copy as well, if it fits without evicting what this store writes.
      if (ram && !x.in_ram && !disk) x.in_ram = true;
    });
  }
  if (ram && disk) {
    for (const auto& o : job) {
      const ObjId id{o.meta.kind, o.meta.key};
      if (o.payload->size() <= s_.cfg.ram_budget &&
          mover_.make_room_locked(Where::kRam,
                                  room_for(o.payload->size(), {id}, {o.meta.parent}))) {
        if (Node* x = s_.index.find(id.first, id.second)) {
          s_.change_locked(*x, [](Node& y) { y.in_ram = true; });
        }
      }
    }
  }
  // Freshly computed chunks are the likeliest hits (the next turn, a sub-agent): a VRAM copy too,
  // made by the worker from the same buffer.
  for (const auto& o : job) {
    if (Node* x = s_.index.find(o.meta.kind, o.meta.key)) mover_.want_vram_locked(*x);
  }
  const size_t objects = job.size();
  s_.submit_locked(std::move(job), room_held.release());
  if (store_then_evict) {
    RoomRequest after = room_for(0, {}, {}, req.protect, req.protect_salt);
    after.written = incoming;
    mover_.make_room_locked(disk ? Where::kDisk : Where::kRam, after);
    for (const auto& [kind, key] : incoming) {
      if (!held_locally(s_.index.find(kind, key))) ++s_.st.own_writes_evicted;
    }
  }
  res.stored = true;
  res.ms = ms_since(t0);
  s_.store_hist.observe(res.ms / 1000.0);
  ++s_.st.stores;
  ++s_.st.stores_by_reason[reason_name(req.reason)];
  lock.unlock();
  log::info("kv cache stored tokens=" + std::to_string(n) + " reason=" + reason_name(req.reason) +
            " size=" + format_size(queued) + " new_chunks=" + std::to_string(objects - 1) +
            " copy=" + fmt_ms(res.ms - res.wait_ms) + " ms" +
            (res.wait_ms >= 1 ? " waited for the queue=" + fmt_ms(res.wait_ms) + " ms" : "") +
            (worker.async() ? " (queued)" : ""));
  return res;
}

}  // namespace kvstash::cache
