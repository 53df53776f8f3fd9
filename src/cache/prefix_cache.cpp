#include "cache/prefix_cache.h"

#include <set>

#include "tiers/disk_format.h"
#include "tiers/disk_tier.h"
#include "tiers/ram_tier.h"
#include "tiers/remote_directory.h"
#include "tiers/tier_set.h"
#include "tiers/transfer_worker.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

using tiers::StoreObject;
using tiers::Where;

namespace {
bool local(const Node* n) { return n && (n->on_disk || n->in_ram || n->pending); }
}  // namespace

PrefixCache::PrefixCache(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint)
    : cfg_(cfg),
      pool_(cfg.pool ? cfg.pool : std::make_shared<BufferPool>()),
      index_(root_key(fingerprint), cfg.chunk, cfg.snapshot_only) {
  if (cfg.chunk == 0) throw std::invalid_argument("the cache chunk size must be > 0");
  tiers_ = std::make_unique<tiers::TierSet>(
      tiers::TierConfig{cfg.dir, cfg.disk_budget, cfg.ram_budget, cfg.remote}, fingerprint, pool_);
  remote_dir_ = std::make_unique<tiers::RemoteDirectory>(tiers_->remote(), cfg.chunk);
  worker_ = std::make_unique<tiers::TransferWorker>(
      cfg.store_queue, [this](const StoreObject& o) { return write_object(o); },
      [this](const StoreObject& o, bool ok) { object_done(o, ok); }, cfg.store_threads);
  if (auto* disk = tiers_->disk()) {
    const auto t0 = Clock::now();
    std::lock_guard lock(mu_);
    const auto rep = disk->scan([&](ObjKind, const Key&, const tiers::StoredObject* o) {
      if (o) change_locked(index_.upsert(o->meta, o->stats), [](Node& n) { n.on_disk = true; });
    });
    // An object whose parent is gone can never be restored: remove it now.
    size_t orphans = 0;
    for (auto unreachable = index_.unreachable(); !unreachable.empty();
         unreachable = index_.unreachable()) {
      for (const auto& [kind, key] : unreachable) {
        if (Node* n = index_.find(kind, key)) remove_locked(*n, "orphan", false);
        ++orphans;
      }
    }
    log::info("kv cache disk " + disk->dir() + ": " + std::to_string(rep.objects - orphans) +
              " objects, " + format_size(tiers_->used(Where::kDisk)) + " of " +
              format_size(cfg.disk_budget) + " budget; removed " +
              std::to_string(rep.removed_damaged) + " damaged, " +
              std::to_string(rep.removed_temp) + " temporary, " + std::to_string(orphans) +
              " orphaned files (scan " + fmt_ms(ms_since(t0)) + " ms)");
    st_.damaged += rep.removed_damaged;
  }
}

PrefixCache::~PrefixCache() {
  // Stores made just before exit (reason=shutdown) should be durable and reach the shared tier,
  // unless a bounded drain already gave up on them.
  if (!abandon_) drain(-1);
  worker_.reset();  // before the tiers it writes to
  if (auto* r = tiers_->remote(); r && !abandon_ && !r->drain(5000)) {
    log::warn("kv cache remote writes still queued at exit");
  }
}

bool PrefixCache::drain(int timeout_ms) {
  const auto t0 = Clock::now();
  bool ok = worker_->drain(timeout_ms);
  if (auto* r = tiers_->remote(); ok && r) {
    const int left = timeout_ms < 0 ? 600000 : std::max(0, timeout_ms - int(ms_since(t0)));
    ok = r->drain(left);
  }
  if (!ok) {
    abandon_ = true;
    log::warn("kv cache stores still queued after " + std::to_string(timeout_ms) +
              " ms: abandoned (" + format_size(worker_->stats().queued_bytes) + ")");
  }
  return ok;
}

template <class F>
void PrefixCache::change_locked(Node& n, F&& f) {
  const bool disk0 = n.on_disk || n.pending, ram0 = n.in_ram;
  f(n);
  const bool disk1 = n.on_disk || n.pending, ram1 = n.in_ram;
  if (disk0 != disk1) tiers_->count(Where::kDisk, n.meta, disk1);
  if (ram0 != ram1) tiers_->count(Where::kRam, n.meta, ram1);
}

void PrefixCache::sync(bool force) {
  auto* disk = tiers_->disk();
  if (!disk) return;
  std::lock_guard scan_lock(sync_mu_);
  if (!disk->changed_since_last_check() && !force) return;
  std::set<ObjId> known, seen;
  {
    std::lock_guard lock(mu_);
    index_.for_each([&](Node& n) {
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
  std::lock_guard lock(mu_);
  for (const auto& o : found) {
    // A file this process is still writing is left to the write's completion: the object may
    // have been evicted meanwhile, and re-indexing it here would bring it back without its parent.
    if (worker_->find(o.meta.kind, o.meta.key)) continue;
    change_locked(index_.upsert(o.meta, o.stats), [](Node& n) { n.on_disk = true; });
  }
  for (const auto& [kind, key] : known) {
    Node* n = index_.find(kind, key);
    if (!n || !n->on_disk || seen.contains({kind, key})) continue;
    change_locked(*n, [](Node& x) { x.on_disk = false; });
    if (!local(n) && !n->on_remote) index_.erase(kind, key);
  }
  // Whatever the rescan brought in must hang under what the index holds (a file seen just before
  // its write completed and its object was evicted, another process's eviction half seen).
  for (const auto& [kind, key] : index_.unreachable()) {
    if (Node* n = index_.find(kind, key); n && local(n)) remove_locked(*n, "orphan", false);
  }
}

void PrefixCache::enforce_budget() {
  std::lock_guard lock(mu_);
  if (tiers_->disk()) make_room_locked(true, {});
  if (tiers_->ram()) make_room_locked(false, {});
}

void PrefixCache::refresh() { sync(true); }

void PrefixCache::remove_locked(Node& n, const char* why, bool log_it) {
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
  // the same key cannot be overtaken by it.
  if (n.on_disk) tiers_->remove(Where::kDisk, n.meta.kind, n.meta.key);
  if (n.in_ram) tiers_->remove(Where::kRam, n.meta.kind, n.meta.key);
  // A pending write finds its node gone when it completes and removes its file (object_done).
  change_locked(n, [](Node& x) { x.on_disk = x.in_ram = x.pending = false; });
  // The shared tier keeps its copy (it has its own budget); the index still knows where it is.
  if (!n.on_remote) index_.erase(n.meta.kind, n.meta.key);
}

void PrefixCache::forget_locked(ObjKind kind, const Key& key) {
  if (Node* n = index_.find(kind, key)) {
    n->on_remote = false;
    remove_locked(*n, "damaged", false);
  }
}

RestorePlan PrefixCache::plan(std::span<const Token> prompt,
                              const std::vector<uint32_t>& boundaries, const std::string& salt) {
  sync(false);
  const Chain chain = make_chain(salted_root(index_.root(), salt), prompt, cfg_.chunk);
  if (tiers_->remote()) {
    size_t known = 0;
    {
      std::lock_guard lock(mu_);
      while (known < chain.keys.size() && index_.find(ObjKind::kChunk, chain.keys[known])) ++known;
    }
    const auto found = remote_dir_->discover(chain, known);  // Redis round trips: no lock
    std::lock_guard lock(mu_);
    for (const ObjectMeta& m : found) {
      if (Node* n = index_.find(m.kind, m.key)) {
        n->on_remote = true;
      } else {
        index_.upsert(m, {}).on_remote = true;
      }
    }
  }
  std::lock_guard lock(mu_);
  return index_.plan(prompt, chain, Breaks(cfg_.chunk, boundaries));
}

Payload PrefixCache::fetch(ObjKind kind, const Key& key, Source* from) {
  // The reads and checksums run outside the index lock, so that several objects are fetched at
  // once (restore_plan's prefetch) and other slots' lookups do not wait on I/O. The objects of a
  // plan being restored are pinned, so eviction does not remove them meanwhile; anything else
  // that removes one (clear, reject) just makes the read miss or the bookkeeping below find no
  // node.
  auto served = [&](Source s, Payload p) {
    if (from) *from = s;
    return p;
  };
  tiers::TierSet::Held held;
  {
    std::lock_guard lock(mu_);
    // An object being stored is served from the buffer the store copied it into. (Under the
    // lock: a store enters its objects and queues them in one locked step, and a finished write
    // updates the flags before its buffer leaves the worker, so one of the two always finds it.)
    if (Payload p = worker_->find(kind, key)) return served(Source::kRam, p);
    const Node* n = index_.find(kind, key);
    if (!n) return nullptr;
    held = {n->in_ram, n->on_disk, n->on_remote};
  }
  const auto r = tiers_->read(kind, key, held);
  std::lock_guard lock(mu_);
  Node* n = index_.find(kind, key);
  if (r.ram_bad) {
    log::warn("kv cache RAM copy unusable (" + r.why + "), trying disk");
    if (n) change_locked(*n, [](Node& x) { x.in_ram = false; });
  }
  if (r.disk_bad) {
    ++st_.damaged;
    if (n) change_locked(*n, [](Node& x) { x.on_disk = false; });
  }
  if (!r.payload) {
    log::warn("kv cache object " + key.hex() + " unusable: " + r.why);
    forget_locked(kind, key);
    return nullptr;
  }
  if (r.from == Where::kRam) return served(Source::kRam, r.payload);
  st_.bytes_read += r.payload->size();
  // Promotion: the next request finds it in a faster tier (the buffer itself, not a copy).
  if (n) promote_locked(*n, r.payload, r.from == Where::kRemote);
  return served(r.from == Where::kDisk ? Source::kDisk : Source::kRemote, r.payload);
}

void PrefixCache::promote_locked(Node& n, const Payload& p, bool to_disk) {
  if (to_disk) {
    ObjectMeta m = n.meta;
    m.payload_bytes = p->size();
    m.created_ms = clock_ms();
    change_locked(n, [&](Node& x) { x.meta = m; });
  }
  const ObjId id{n.meta.kind, n.meta.key};
  const std::vector<Key> parents{n.meta.parent};
  bool ram = tiers_->ram() && !n.in_ram && p->size() <= cfg_.ram_budget &&
             make_room_locked(false, room_for(p->size(), {id}, parents));
  bool disk =
      to_disk && tiers_->disk() && !n.on_disk && !n.pending &&
      make_room_locked(true, room_for(tiers_->size_in(Where::kDisk, n.meta), {id}, parents)) &&
      worker_->try_reserve(p->size());
  Node* again = index_.find(id.first, id.second);  // making room may have moved the table
  if (!again || (!ram && !disk)) return;
  change_locked(*again, [&](Node& x) {
    x.in_ram = x.in_ram || ram;
    x.pending = x.pending || disk;
  });
  submit_locked({{again->meta, again->stats, p, std::nullopt}}, disk ? p->size() : 0);
}

std::array<uint64_t, kSourceCount> PrefixCache::plan_bytes(const RestorePlan& plan,
                                                           size_t first_chunk) {
  std::lock_guard lock(mu_);
  std::array<uint64_t, kSourceCount> bytes{};
  auto add = [&](ObjKind kind, const Key& key) {
    const Node* n = index_.find(kind, key);
    if (!n) return;
    const Source s = n->in_ram || n->pending ? Source::kRam
                     : n->on_disk            ? Source::kDisk
                                             : Source::kRemote;
    bytes[static_cast<size_t>(s)] += n->meta.payload_bytes;
  };
  for (size_t i = first_chunk; i < plan.chunks.size(); ++i) add(ObjKind::kChunk, plan.chunks[i]);
  if (plan.entry) add(ObjKind::kEntry, *plan.entry);
  return bytes;
}

std::optional<PrefixCache::Loaded> PrefixCache::load(const RestorePlan& plan) {
  Loaded out;
  for (const Key& k : plan.chunks) {
    auto p = fetch(ObjKind::kChunk, k);
    if (!p) return std::nullopt;
    out.chunks.push_back(std::move(p));
  }
  if (plan.entry) {
    out.entry = fetch(ObjKind::kEntry, *plan.entry);
    if (!out.entry) return std::nullopt;
  }
  return out;
}

void PrefixCache::record_hit(const RestorePlan& plan, double load_seconds) {
  load_hist_.observe(load_seconds);
  std::vector<std::tuple<ObjKind, Key, ObjectStats>> disk_stats;
  {
    std::lock_guard lock(mu_);
    const int64_t now = clock_ms();
    auto bump = [&](ObjKind kind, const Key& key) {
      if (Node* n = index_.find(kind, key)) {
        ++n->stats.hits;
        n->stats.last_used_ms = now;
        if (n->on_disk) disk_stats.emplace_back(kind, key, n->stats);
      }
    };
    for (const Key& k : plan.chunks) bump(ObjKind::kChunk, k);
    if (plan.entry) bump(ObjKind::kEntry, *plan.entry);
    ++st_.hits;
    st_.tokens_reused += plan.resume_at;
  }
  for (const auto& [kind, key, stats] : disk_stats) tiers_->update_disk_stats(kind, key, stats);
}

void PrefixCache::reject(const RestorePlan& plan, const std::string& why) {
  std::vector<ObjId> objs, remote_copies;
  for (const Key& k : plan.chunks) objs.push_back({ObjKind::kChunk, k});
  if (plan.entry) objs.push_back({ObjKind::kEntry, *plan.entry});
  {
    std::lock_guard lock(mu_);
    for (const auto& [kind, key] : objs) {
      remote_dir_->reject(key);
      Node* n = index_.find(kind, key);
      if (!n) continue;
      if (n->on_remote) remote_copies.push_back({kind, key});
      n->on_remote = false;
      remove_locked(*n, "rejected", false);
      ++st_.damaged;
    }
    // What hung below them is unreachable now; left behind, an entry would make a fresh store of
    // this prefix look done ("existed") while its chunks are gone.
    for (const auto& [kind, key] : index_.unreachable()) {
      if (Node* n = index_.find(kind, key)) {
        n->on_remote = false;
        remove_locked(*n, "orphan", false);
      }
    }
  }
  for (const auto& [kind, key] : remote_copies) tiers_->remove(Where::kRemote, kind, key);
  log::warn("kv cache removed " + std::to_string(objs.size()) + " objects of a " +
            std::to_string(plan.restore_tokens) + "-token prefix the engine refused: " + why);
}

void PrefixCache::count_choice(Source s) {
  std::lock_guard lock(mu_);
  ++st_.plan_choices[source_name(s)];
}

void PrefixCache::record_miss() {
  std::lock_guard lock(mu_);
  ++st_.misses;
}

bool PrefixCache::make_room_locked(bool disk, RoomRequest r) {
  const Where w = disk ? Where::kDisk : Where::kRam;
  r.disk = disk;
  r.used = tiers_->used(w);
  r.budget = tiers_->budget(w);
  if (r.used + r.incoming <= r.budget) return true;
  const auto victims = choose_victims(index_, r, cfg_.evict, clock_ms(), [&](const Node& n) {
    return (disk ? n.on_disk || n.pending : n.in_ram) ? tiers_->size_in(w, n.meta) : 0;
  });
  if (!victims) return false;
  std::vector<ObjId> ids;
  for (Node* v : *victims) ids.push_back({v->meta.kind, v->meta.key});
  for (const auto& [kind, key] : ids) {
    Node* n = index_.find(kind, key);
    if (!n) continue;
    if (disk) {
      remove_locked(*n, "disk-cache-full", true);
    } else {
      // RAM eviction: what exists nowhere else goes to disk if the disk has room without
      // evicting (written by the worker; the buffer stays readable there until it is durable).
      const bool only_copy = !n->on_disk && !n->pending;
      uint64_t sum = 0;
      Payload p = only_copy && tiers_->disk() &&
                          tiers_->used(Where::kDisk) + tiers_->size_in(Where::kDisk, n->meta) <=
                              cfg_.disk_budget
                      ? tiers_->ram()->peek(kind, key, &sum)
                      : nullptr;
      if (p && worker_->try_reserve(p->size())) {
        tiers_->remove(Where::kRam, kind, key);
        change_locked(*n, [](Node& x) {
          x.in_ram = false;
          x.pending = true;
        });
        submit_locked({{n->meta, n->stats, p, sum}}, p->size());
        log::info("kv cache demoted tokens=" + std::to_string(n->meta.n_tokens) +
                  " size=" + format_size(p->size()) + " to disk");
      } else {
        if (p) ++st_.stores_dropped["demote-queue-full"];
        tiers_->remove(Where::kRam, kind, key);
        change_locked(*n, [](Node& x) { x.in_ram = false; });
        if (!local(n)) remove_locked(*n, "ram-cache-full", true);
      }
    }
    ++st_.evictions;
    ++st_.evictions_by_reason[disk ? "disk-cache-full" : "ram-cache-full"];
  }
  return true;
}

void PrefixCache::submit_locked(std::vector<StoreObject> job, uint64_t reserved) {
  // Queued under the lock, so that a pending node's payload is findable before the lock goes.
  // (An inline worker, replay's, writes right here: the lock is recursive for it.)
  worker_->submit(std::move(job), reserved);
}

bool PrefixCache::write_object(const StoreObject& o) {
  bool ram = false, disk = false, remote = false;
  {
    std::lock_guard lock(mu_);
    const Node* n = index_.find(o.meta.kind, o.meta.key);
    if (!n) return false;  // removed while queued (clear, reject)
    // Children only under a parent that is still indexed: otherwise the file would be an orphan.
    if (o.meta.depth > 0 && !index_.find(ObjKind::kChunk, o.meta.parent)) return false;
    ram = n->in_ram;
    disk = n->pending;
    remote = tiers_->remote() && !n->on_remote;
  }
  if (o.checksum && tiers::payload_checksum(o.payload->span()) != *o.checksum) {
    log::error("kv cache RAM copy damaged, not demoted tokens=" + std::to_string(o.meta.n_tokens));
    return false;
  }
  if (ram) {
    const uint64_t sum = tiers::payload_checksum(o.payload->span());  // once, on insert
    std::lock_guard lock(mu_);
    const Node* n = index_.find(o.meta.kind, o.meta.key);
    if (n && n->in_ram) tiers_->put_ram(o.meta, o.payload, sum);
  }
  if (disk) {
    if (const std::string err = tiers_->write_disk(o.meta, o.stats, o.payload); !err.empty()) {
      log::error("kv cache store failed tokens=" + std::to_string(o.meta.n_tokens) + ": " + err);
      std::lock_guard lock(mu_);
      ++st_.io_errors["write"];
      return false;
    }
  }
  if (remote) tiers_->put_remote(o.meta, o.stats, o.payload);  // queued for the Redis writer
  return true;
}

void PrefixCache::object_done(const StoreObject& o, bool ok) {
  std::lock_guard lock(mu_);
  Node* n = index_.find(o.meta.kind, o.meta.key);
  if (!n) {
    // Removed while the write was queued (clear, reject): its file must not outlive it.
    if (ok) tiers_->remove(Where::kDisk, o.meta.kind, o.meta.key);
    return;
  }
  if (ok && tiers_->remote()) n->on_remote = true;
  if (!n->pending) return;
  if (ok) st_.bytes_written += o.payload->size();
  if (!ok && o.checksum) {
    ++st_.io_errors["demote"];
    log::error("kv cache demotion to disk failed tokens=" + std::to_string(o.meta.n_tokens) +
               ", the only copy is lost");
  }
  change_locked(*n, [&](Node& x) {
    x.pending = false;
    x.on_disk = x.on_disk || ok;
  });
  if (!ok && !local(n) && !n->on_remote) remove_locked(*n, "write-failed", false);
}

PrefixCache::StoreResult PrefixCache::skip_store(StoreResult res, uint32_t n, Reason reason,
                                                 const std::string& why) {
  res.skipped = why;
  {
    std::lock_guard lock(mu_);
    ++st_.stores_skipped;
  }
  log::info("kv cache store skipped tokens=" + std::to_string(n) +
            " reason=" + reason_name(reason) + " size=" + format_size(res.bytes) + ": " + why);
  return res;
}

PrefixCache::StoreResult PrefixCache::store(const StoreRequest& req) {
  const auto t0 = Clock::now();
  StoreResult res;
  sync(false);
  const uint32_t C = cfg_.chunk;
  const auto n = static_cast<uint32_t>(req.tokens.size());
  const uint32_t k = n / C;
  const Chain ch = make_chain(salted_root(index_.root(), req.salt), req.tokens, C);
  const Key parent = ch.parent_of(k);
  const Key ekey = entry_key(parent, req.tokens.subspan(size_t(k) * C));
  const int64_t now = clock_ms();
  if (!tiers_->disk() && !tiers_->ram())
    return skip_store(res, n, req.reason, "no cache tier is configured");

  // 1. What is new (under the lock; no I/O).
  std::vector<uint32_t> fresh;
  std::vector<std::tuple<ObjKind, Key, ObjectStats>> touched;
  {
    std::lock_guard lock(mu_);
    if (Node* e = index_.find(ObjKind::kEntry, ekey); local(e)) {
      e->stats.last_used_ms = now;
      res.existed = true;
      if (e->on_disk) touched.emplace_back(ObjKind::kEntry, ekey, e->stats);
    } else {
      // Continued checkpoints this store makes redundant (strict prefixes of it): dropped, so
      // one long prefill does not leave nested copies of itself.
      if (req.reason == Reason::kCold || req.reason == Reason::kContinued) {
        std::vector<EntryView> views;
        for (const Node* e : index_.entries_on_path(req.tokens, ch)) {
          views.push_back({e->meta.key, e->meta.n_tokens, e->meta.reason, true});
        }
        StoreConfig sc;
        sc.drop_superseded = req.drop_superseded;
        for (const Key& key : superseded_by(req.reason, n, views, sc)) {
          if (Node* e = index_.find(ObjKind::kEntry, key); e && e->pins == 0) {
            log::info("kv cache dropped superseded continued entry tokens=" +
                      std::to_string(e->meta.n_tokens) + " (its chunks stay shared)");
            remove_locked(*e, "superseded", false);
            ++st_.superseded_dropped;
          }
        }
      }
      for (uint32_t i = 0; i < k; ++i) {
        if (!local(index_.find(ObjKind::kChunk, ch.keys[i]))) fresh.push_back(i);
      }
    }
  }
  for (const auto& [kind, key, stats] : touched) tiers_->update_disk_stats(kind, key, stats);
  if (res.existed) return res;

  // 2. Room in the store queue. A checkpoint is an optimisation: dropped when the queue is full
  // (never blocking the request); the only copy of a live state waits for room.
  const uint64_t estimate = chunk_bytes_.load() * fresh.size();
  const bool only_copy = req.reason == Reason::kEvict || req.reason == Reason::kShutdown;
  const auto tw = Clock::now();
  if (only_copy) {
    worker_->reserve(estimate);
    res.wait_ms = ms_since(tw);
  } else if (!worker_->try_reserve(estimate)) {
    res.dropped = true;
    std::lock_guard lock(mu_);
    ++st_.stores_dropped["queue-full"];
    log::info("kv cache store dropped reason=queue-full tokens=" + std::to_string(n) +
              " checkpoint=" + reason_name(req.reason) + " queued=" +
              format_size(worker_->stats().queued_bytes) + " of " + format_size(cfg_.store_queue));
    return res;
  }

  // 3. Copy the KV out of the engine (the caller's thread: the engine is about to move on).
  std::vector<Payload> chunks;
  for (uint32_t i : fresh) chunks.push_back(req.chunk_payload(i));
  const Payload entry = req.entry_payload();
  uint64_t total = entry->size();
  for (const auto& p : chunks) total += p->size();
  if (!chunks.empty()) chunk_bytes_ = chunks.front()->size();
  worker_->adjust(estimate, total);
  res.bytes = total;
  res.new_chunks = static_cast<uint32_t>(fresh.size());

  // 4. Enter the objects as pending and queue them, parents first. Another slot may have stored
  // some of them meanwhile: those are written once, by whoever came first.
  std::unique_lock lock(mu_);
  if (local(index_.find(ObjKind::kEntry, ekey))) {
    lock.unlock();
    worker_->adjust(total, 0);
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
    if (local(index_.find(ObjKind::kChunk, ch.keys[i]))) continue;
    add({ObjKind::kChunk, ch.keys[i], ch.parent_of(i), i, C}, chunks[j]);
  }
  ObjectMeta em{ObjKind::kEntry, ekey, parent, k, n, req.reason, req.has_logits};
  add(em, entry);
  std::vector<ObjId> incoming;
  std::vector<Key> parents;
  uint64_t queued = 0, disk_bytes = 0;
  for (const auto& o : job) {
    incoming.push_back({o.meta.kind, o.meta.key});
    parents.push_back(o.meta.parent);
    queued += o.payload->size();
    disk_bytes += tiers_->size_in(Where::kDisk, o.meta);
  }
  const bool disk = tiers_->disk() != nullptr;
  // With protect_own_writes off (replay's seed-bug toggle) a store writes first and evicts
  // afterwards, its own objects included: the store-then-evict thrash.
  const bool store_then_evict = !cfg_.evict.protect_own_writes;
  const RoomRequest room =
      room_for(disk ? disk_bytes : queued, incoming, parents, req.protect, req.protect_salt);
  if (!store_then_evict && !make_room_locked(disk, room)) {
    lock.unlock();
    worker_->adjust(total, 0);
    res.bytes = queued;
    return skip_store(res, n, req.reason,
                      std::string("it does not fit the ") + (disk ? "disk" : "ram") +
                          " budget of " +
                          format_size(tiers_->budget(disk ? Where::kDisk : Where::kRam)) +
                          " without evicting what this store writes");
  }
  const bool ram = tiers_->ram() != nullptr;
  for (const auto& o : job) {
    remote_dir_->accept(o.meta.key);  // freshly computed: no longer the bytes the engine refused
    Node& node = index_.upsert(o.meta, o.stats);
    change_locked(node, [&](Node& x) {
      x.pending = x.pending || disk;
      // A RAM copy as well, if it fits without evicting what this store writes.
      if (ram && !x.in_ram && !disk) x.in_ram = true;
    });
  }
  if (ram && disk) {
    for (const auto& o : job) {
      const ObjId id{o.meta.kind, o.meta.key};
      if (o.payload->size() <= cfg_.ram_budget &&
          make_room_locked(false, room_for(o.payload->size(), {id}, {o.meta.parent}))) {
        if (Node* x = index_.find(id.first, id.second)) {
          change_locked(*x, [](Node& y) { y.in_ram = true; });
        }
      }
    }
  }
  const size_t objects = job.size();
  submit_locked(std::move(job), total);
  if (store_then_evict) {
    RoomRequest after = room_for(0, {}, {}, req.protect, req.protect_salt);
    after.written = incoming;
    make_room_locked(disk, after);
    for (const auto& [kind, key] : incoming) {
      if (!local(index_.find(kind, key))) ++st_.own_writes_evicted;
    }
  }
  res.stored = true;
  res.ms = ms_since(t0);
  store_hist_.observe(res.ms / 1000.0);
  ++st_.stores;
  ++st_.stores_by_reason[reason_name(req.reason)];
  lock.unlock();
  log::info("kv cache stored tokens=" + std::to_string(n) + " reason=" + reason_name(req.reason) +
            " size=" + format_size(queued) + " new_chunks=" + std::to_string(objects - 1) +
            " copy=" + fmt_ms(res.ms - res.wait_ms) + " ms" +
            (res.wait_ms >= 1 ? " waited for the queue=" + fmt_ms(res.wait_ms) + " ms" : "") +
            (worker_->async() ? " (queued)" : ""));
  return res;
}

PrefixCache::Pin::Pin(PrefixCache* c, std::vector<ObjId> objs) : cache_(c), objs_(std::move(objs)) {
  std::lock_guard lock(cache_->mu_);
  for (const auto& [kind, key] : objs_) {
    if (Node* n = cache_->index_.find(kind, key)) ++n->pins;
  }
}
PrefixCache::Pin::Pin(Pin&& o) noexcept : cache_(o.cache_), objs_(std::move(o.objs_)) {
  o.cache_ = nullptr;
}
PrefixCache::Pin& PrefixCache::Pin::operator=(Pin&& o) noexcept {
  if (this != &o) {
    release();
    cache_ = o.cache_;
    objs_ = std::move(o.objs_);
    o.cache_ = nullptr;
  }
  return *this;
}
PrefixCache::Pin::~Pin() { release(); }
void PrefixCache::Pin::release() {
  if (!cache_) return;
  std::lock_guard lock(cache_->mu_);
  for (const auto& [kind, key] : objs_) {
    if (Node* n = cache_->index_.find(kind, key); n && n->pins > 0) --n->pins;
  }
  cache_ = nullptr;
}

PrefixCache::Pin PrefixCache::pin(const RestorePlan& plan) {
  std::vector<ObjId> objs;
  for (const Key& k : plan.chunks) objs.push_back({ObjKind::kChunk, k});
  if (plan.entry) objs.push_back({ObjKind::kEntry, *plan.entry});
  return Pin(this, std::move(objs));
}

CacheStats PrefixCache::stats() {
  CacheStats s;
  {
    std::lock_guard lock(mu_);
    s = st_;
    s.chunks = s.entries = 0;
    index_.for_each([&](Node& n) {
      (n.meta.kind == ObjKind::kChunk ? s.chunks : s.entries)++;
      s.ram_objects += n.in_ram;
      s.disk_objects += n.on_disk;
      s.remote_objects += n.on_remote;
    });
  }
  if (auto* disk = tiers_->disk()) {
    const auto io = disk->io_errors();
    if (io.dir_fsync) s.io_errors["dir-fsync"] = io.dir_fsync;
    if (io.stats_write) s.io_errors["stats-write"] = io.stats_write;
  }
  s.disk_bytes = tiers_->disk() ? tiers_->used(Where::kDisk) : 0;
  s.ram_bytes = tiers_->ram() ? tiers_->used(Where::kRam) : 0;
  if (auto* r = tiers_->remote()) s.remote = r->stats();
  const auto w = worker_->stats();
  s.store_queue_bytes = w.queued_bytes;
  s.store_queue_jobs = w.queued_jobs;
  s.store_queue_budget = cfg_.store_queue;
  s.buffers = pool_->allocator_name();
  return s;
}

std::vector<Node> PrefixCache::objects() {
  sync(false);
  std::lock_guard lock(mu_);
  std::vector<Node> out;
  index_.for_each([&](Node& n) { out.push_back(n); });
  return out;
}

void PrefixCache::clear() {
  std::lock_guard lock(mu_);
  std::vector<ObjId> all;
  index_.for_each([&](Node& n) { all.push_back({n.meta.kind, n.meta.key}); });
  for (const auto& [kind, key] : all) {
    if (Node* n = index_.find(kind, key)) remove_locked(*n, "clear", false);
  }
}

}  // namespace kvstash::cache
