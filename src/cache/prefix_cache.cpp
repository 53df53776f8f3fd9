#include "cache/prefix_cache.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <unordered_set>

#include "tiers/disk_tier.h"
#include "tiers/ram_tier.h"
#include "tiers/remote_tier.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

namespace {

using ObjId = std::pair<ObjKind, Key>;

}  // namespace

PrefixCache::PrefixCache(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint)
    : cfg_(cfg),
      pool_(cfg.pool ? cfg.pool : std::make_shared<BufferPool>()),
      index_(root_key(fingerprint), cfg.chunk, cfg.snapshot_only) {
  if (cfg.chunk == 0) throw std::invalid_argument("the cache chunk size must be > 0");
  if (!cfg.dir.empty()) disk_ = std::make_unique<tiers::DiskTier>(cfg.dir, fingerprint, pool_);
  if (cfg.ram_budget > 0) ram_ = std::make_unique<tiers::RamTier>(pool_);
  if (!cfg.remote.url.empty())
    remote_ = std::make_unique<tiers::RemoteTier>(cfg.remote, fingerprint, pool_);
  if (disk_) {
    const auto t0 = Clock::now();
    std::lock_guard lock(mu_);
    const auto rep = disk_->scan([&](ObjKind, const Key&, const tiers::StoredObject* o) {
      if (o) index_.upsert(o->meta, o->stats).on_disk = true;
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
    log::info("kv cache disk " + disk_->dir() + ": " + std::to_string(rep.objects - orphans) +
              " objects, " + format_size(tier_bytes_locked(true)) + " of " +
              format_size(cfg.disk_budget) + " budget; removed " +
              std::to_string(rep.removed_damaged) + " damaged, " +
              std::to_string(rep.removed_temp) + " temporary, " + std::to_string(orphans) +
              " orphaned files (scan " + fmt_ms(ms_since(t0)) + " ms)");
    st_.damaged += rep.removed_damaged;
  }
}

PrefixCache::~PrefixCache() {
  // Stores made just before exit (reason=shutdown) should reach the shared tier.
  if (remote_ && !remote_->drain(5000)) log::warn("kv cache remote writes still queued at exit");
}

bool PrefixCache::drain_remote(int timeout_ms) { return !remote_ || remote_->drain(timeout_ms); }

void PrefixCache::discover_remote_locked(const Chain& c) {
  if (!remote_) return;
  const auto& chain = c.keys;
  size_t local = 0;
  while (local < chain.size() && index_.find(ObjKind::kChunk, chain[local])) ++local;
  // The remote copies of rejected objects are never taken again (other servers may upload them).
  size_t usable = local;
  while (usable < chain.size() && !rejected_.contains(chain[usable])) ++usable;
  const std::vector<Key> rest(chain.begin() + local, chain.begin() + usable);
  const size_t more = remote_->chunk_depth(rest);
  for (size_t i = 0; i < more; ++i) {
    ObjectMeta m;
    m.kind = ObjKind::kChunk;
    m.key = chain[local + i];
    m.parent = c.parent_of(local + i);
    m.depth = static_cast<uint32_t>(local + i);
    m.n_tokens = cfg_.chunk;
    index_.upsert(m, {}).on_remote = true;
  }
  for (size_t k = 0; k <= local + more; ++k) {
    for (const ObjectMeta& e : remote_->entries_under(c.parent_of(k))) {
      if (rejected_.contains(e.key)) continue;
      if (!index_.find(ObjKind::kEntry, e.key))
        index_.upsert(e, {}).on_remote = true;
      else
        index_.find(ObjKind::kEntry, e.key)->on_remote = true;
    }
  }
}

uint64_t PrefixCache::tier_bytes_locked(bool disk) {
  uint64_t total = 0;
  index_.for_each([&](Node& n) {
    if (disk && n.on_disk) total += disk_->object_size(n.meta);
    if (!disk && n.in_ram) total += ram_->object_size(n.meta);
  });
  return total;
}

void PrefixCache::sync_locked(bool force) {
  if (!disk_ || !(disk_->changed_since_last_check() || force)) return;
  std::set<ObjId> seen;
  disk_->scan(
      [&](ObjKind kind, const Key& key, const tiers::StoredObject* o) {
        seen.insert({kind, key});
        if (o) index_.upsert(o->meta, o->stats).on_disk = true;
      },
      [&](ObjKind kind, const Key& key) {
        const Node* n = index_.find(kind, key);
        return n && n->on_disk;
      });
  std::vector<ObjId> gone;
  index_.for_each([&](Node& n) {
    if (n.on_disk && !seen.contains({n.meta.kind, n.meta.key}))
      gone.push_back({n.meta.kind, n.meta.key});
  });
  for (const auto& [kind, key] : gone) {
    Node* n = index_.find(kind, key);
    n->on_disk = false;
    if (!n->in_ram && !n->on_remote) index_.erase(kind, key);
  }
}

void PrefixCache::enforce_budget() {
  std::lock_guard lock(mu_);
  if (disk_) make_room_locked(*disk_, cfg_.disk_budget, 0, {}, {}, {});
  if (ram_) make_room_locked(*ram_, cfg_.ram_budget, 0, {}, {}, {});
}

void PrefixCache::refresh() {
  std::lock_guard lock(mu_);
  sync_locked(true);
}

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
  if (n.on_disk && disk_) disk_->remove(n.meta.kind, n.meta.key);
  if (n.in_ram && ram_) ram_->remove(n.meta.kind, n.meta.key);
  n.on_disk = n.in_ram = false;
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
  std::lock_guard lock(mu_);
  sync_locked(false);
  const Chain chain = make_chain(salted_root(index_.root(), salt), prompt, cfg_.chunk);
  discover_remote_locked(chain);
  return index_.plan(prompt, chain, Breaks(cfg_.chunk, boundaries));
}

Payload PrefixCache::fetch(ObjKind kind, const Key& key, Source* from) {
  // The reads and checksums run outside the index lock, so that several objects are fetched at
  // once (restore_plan's prefetch) and other slots' lookups do not wait on I/O. The objects of a
  // plan being restored are pinned, so eviction does not remove them meanwhile; anything else
  // that removes one (clear, reject) just makes the read miss or the bookkeeping below find no
  // node.
  bool in_ram = false, on_disk = false, on_remote = false;
  {
    std::lock_guard lock(mu_);
    const Node* n = index_.find(kind, key);
    if (!n) return nullptr;
    in_ram = n->in_ram;
    on_disk = n->on_disk;
    on_remote = n->on_remote;
  }
  auto served = [&](Source s, const Payload& p) {
    if (from) *from = s;
    return p;
  };
  std::string why;
  if (in_ram) {
    if (auto p = ram_->get(kind, key, &why)) return served(Source::kRam, p);
    std::lock_guard lock(mu_);
    if (Node* n = index_.find(kind, key)) n->in_ram = false;
    log::warn("kv cache RAM copy unusable (" + why + "), trying disk");
  }
  if (on_disk) {
    auto p = disk_->get(kind, key, &why);
    std::lock_guard lock(mu_);
    Node* n = index_.find(kind, key);
    if (p) {
      st_.bytes_read += p->size();
      if (ram_ && n) put_ram_locked(n->meta, n->stats, p);  // promotion: the buffer itself
      return served(Source::kDisk, p);
    }
    ++st_.damaged;
    if (n) n->on_disk = false;
  }
  if (on_remote) {
    if (auto p = remote_->get(kind, key, &why)) {
      std::lock_guard lock(mu_);
      // Promotion into the local tiers: the next request finds it here.
      if (Node* n = index_.find(kind, key)) {
        ObjectMeta m = n->meta;
        m.payload_bytes = p->size();
        m.created_ms = clock_ms();
        n->meta = m;
        const ObjectStats st = n->stats;
        if (disk_ &&
            make_room_locked(*disk_, cfg_.disk_budget, disk_->object_size(m), {{kind, key}},
                             {m.parent}, {}) &&
            disk_->put(m, st, p->span()).empty()) {
          if (Node* again = index_.find(kind, key)) again->on_disk = true;
          st_.bytes_written += p->size();
        }
        if (ram_) put_ram_locked(m, st, p);
      }
      return served(Source::kRemote, p);
    }
  }
  std::lock_guard lock(mu_);
  log::warn("kv cache object " + key.hex() + " unusable: " + why);
  forget_locked(kind, key);
  return nullptr;
}

std::array<uint64_t, kSourceCount> PrefixCache::plan_bytes(const RestorePlan& plan,
                                                           size_t first_chunk) {
  std::lock_guard lock(mu_);
  std::array<uint64_t, kSourceCount> bytes{};
  auto add = [&](ObjKind kind, const Key& key) {
    const Node* n = index_.find(kind, key);
    if (!n) return;
    const Source s = n->in_ram ? Source::kRam : n->on_disk ? Source::kDisk : Source::kRemote;
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
  std::lock_guard lock(mu_);
  const int64_t now = clock_ms();
  auto bump = [&](ObjKind kind, const Key& key) {
    if (Node* n = index_.find(kind, key)) {
      ++n->stats.hits;
      n->stats.last_used_ms = now;
      if (n->on_disk) disk_->update_stats(kind, key, n->stats);
    }
  };
  for (const Key& k : plan.chunks) bump(ObjKind::kChunk, k);
  if (plan.entry) bump(ObjKind::kEntry, *plan.entry);
  ++st_.hits;
  st_.tokens_reused += plan.resume_at;
}

void PrefixCache::reject(const RestorePlan& plan, const std::string& why) {
  std::lock_guard lock(mu_);
  std::vector<ObjId> objs;
  for (const Key& k : plan.chunks) objs.push_back({ObjKind::kChunk, k});
  if (plan.entry) objs.push_back({ObjKind::kEntry, *plan.entry});
  for (const auto& [kind, key] : objs) {
    rejected_.insert(key);
    Node* n = index_.find(kind, key);
    if (!n) continue;
    if (n->on_remote && remote_) remote_->remove(kind, key);
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

void PrefixCache::put_ram_locked(const ObjectMeta& meta, const ObjectStats& st,
                                 const Payload& payload) {
  if (!ram_ || payload->size() > cfg_.ram_budget) return;
  if (!make_room_locked(*ram_, cfg_.ram_budget, payload->size(), {{meta.kind, meta.key}},
                        {meta.parent}, {})) {
    return;
  }
  ram_->put_shared(meta, payload);
  index_.upsert(meta, st).in_ram = true;
}

bool PrefixCache::make_room_locked(tiers::Tier& tier, uint64_t budget, uint64_t incoming,
                                   const std::vector<ObjId>& incoming_objs,
                                   const std::vector<Key>& incoming_parents,
                                   std::span<const Token> protect, const std::string& salt,
                                   const std::vector<ObjId>& written) {
  const bool is_disk = &tier == disk_.get();
  const uint64_t used = tier_bytes_locked(is_disk) + incoming;
  if (used <= budget) return true;

  // Candidates: every indexed object (those not in this tier only as structure), then the
  // incoming ones. Parent links use chunk keys.
  std::vector<Node*> nodes;
  std::unordered_map<Key, size_t, KeyHash> chunk_idx;
  index_.for_each([&](Node& n) {
    if (n.meta.kind == ObjKind::kChunk) chunk_idx[n.meta.key] = nodes.size();
    nodes.push_back(&n);
  });
  std::unordered_set<Key, KeyHash> protected_keys, has_child_chunk, useful;
  const std::set<ObjId> written_set(written.begin(), written.end());
  if (!protect.empty()) {
    const Chain chain = make_chain(salted_root(index_.root(), salt), protect, cfg_.chunk);
    protected_keys.insert(chain.keys.begin(), chain.keys.end());
    for (const Node* e : index_.entries_on_path(protect, chain)) protected_keys.insert(e->meta.key);
  }
  for (Node* n : nodes) {
    if (n->meta.kind == ObjKind::kChunk) has_child_chunk.insert(n->meta.parent);
  }
  // Snapshot-only models restore only through entries: chunks with no entry below are useless.
  for (Node* n : nodes) {
    if (n->meta.kind != ObjKind::kEntry) continue;
    for (Key k = n->meta.parent; chunk_idx.contains(k) && useful.insert(k).second;) {
      k = nodes[chunk_idx[k]]->meta.parent;
    }
  }
  for (const Key& p : incoming_parents) {
    for (Key k = p; chunk_idx.contains(k) && useful.insert(k).second;)
      k = nodes[chunk_idx[k]]->meta.parent;
  }

  const int64_t now = clock_ms();
  std::vector<Candidate> cands;
  for (Node* n : nodes) {
    Candidate c;
    auto pit = chunk_idx.find(n->meta.parent);
    c.parent = pit == chunk_idx.end() ? -1 : static_cast<int64_t>(pit->second);
    c.hits = n->stats.hits;
    c.tokens = n->meta.n_tokens;
    const bool here = is_disk ? n->on_disk : n->in_ram;
    c.bytes = here ? tier.object_size(n->meta) : 0;
    c.pinned = n->pins > 0 || !here;
    c.age_s = (now - std::max(n->stats.last_used_ms, n->meta.created_ms)) / 1000.0;
    c.protected_prefix = protected_keys.contains(n->meta.key);
    c.just_written = written_set.contains({n->meta.kind, n->meta.key});
    // A continued checkpoint at a chunk boundary is superseded once the chain goes on below it.
    c.superseded = n->meta.kind == ObjKind::kEntry && n->meta.reason == Reason::kContinued &&
                   n->meta.n_tokens == n->meta.depth * cfg_.chunk &&
                   has_child_chunk.contains(n->meta.parent);
    c.useless =
        cfg_.snapshot_only && n->meta.kind == ObjKind::kChunk && !useful.contains(n->meta.key);
    cands.push_back(c);
  }
  for (size_t i = 0; i < incoming_objs.size(); ++i) {
    Candidate c;
    c.just_written = true;
    auto pit = chunk_idx.find(incoming_parents[i]);
    c.parent = pit == chunk_idx.end() ? -1 : static_cast<int64_t>(pit->second);
    cands.push_back(c);
  }
  const EvictionPlan ep = plan_eviction(cands, used, budget, cfg_.evict);
  if (!ep.fits) return false;
  for (size_t v : ep.victims) {
    Node* n = nodes[v];
    if (is_disk) {
      remove_locked(*n, "disk-cache-full", true);
    } else {
      // RAM eviction: demote what exists nowhere else, if the disk has room without evicting.
      if (!n->on_disk && disk_ &&
          tier_bytes_locked(true) + disk_->object_size(n->meta) <= cfg_.disk_budget) {
        if (auto p = ram_->get(n->meta.kind, n->meta.key, nullptr)) {
          if (const std::string err = disk_->put(n->meta, n->stats, p->span()); err.empty()) {
            n->on_disk = true;
            st_.bytes_written += p->size();
            log::info("kv cache demoted tokens=" + std::to_string(n->meta.n_tokens) +
                      " size=" + format_size(p->size()) + " to disk");
          } else {
            ++st_.io_errors["demote"];
            log::error("kv cache demotion to disk failed tokens=" +
                       std::to_string(n->meta.n_tokens) + ", evicting the only copy: " + err);
          }
        }
      }
      ram_->remove(n->meta.kind, n->meta.key);
      n->in_ram = false;
      if (!n->on_disk) remove_locked(*n, "ram-cache-full", true);
    }
    ++st_.evictions;
    ++st_.evictions_by_reason[is_disk ? "disk-cache-full" : "ram-cache-full"];
  }
  return true;
}

PrefixCache::StoreResult PrefixCache::store(const StoreRequest& req) {
  std::lock_guard lock(mu_);
  const auto t0 = Clock::now();
  StoreResult res;
  sync_locked(false);
  const uint32_t C = cfg_.chunk;
  const auto n = static_cast<uint32_t>(req.tokens.size());
  const uint32_t k = n / C;
  const Chain ch = make_chain(salted_root(index_.root(), req.salt), req.tokens, C);
  const auto& chain = ch.keys;
  const Key parent = ch.parent_of(k);
  const Key ekey = entry_key(parent, req.tokens.subspan(size_t(k) * C));
  const int64_t now = clock_ms();

  auto local = [](const Node* n) { return n && (n->on_disk || n->in_ram); };
  if (Node* e = index_.find(ObjKind::kEntry, ekey); local(e)) {
    e->stats.last_used_ms = now;
    if (e->on_disk) disk_->update_stats(ObjKind::kEntry, ekey, e->stats);
    res.existed = true;
    return res;
  }

  // Continued checkpoints this store makes redundant (strict prefixes of it): dropped, so one
  // long prefill does not leave nested copies of itself.
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

  std::vector<uint32_t> fresh;
  for (uint32_t i = 0; i < k; ++i) {
    if (!local(index_.find(ObjKind::kChunk, chain[i]))) fresh.push_back(i);
  }
  const std::vector<uint8_t> entry = req.entry_payload();
  std::vector<uint8_t> first;
  if (!fresh.empty()) first = req.chunk_payload(fresh[0]);

  ObjectMeta em;
  em.kind = ObjKind::kEntry;
  em.key = ekey;
  em.parent = parent;
  em.depth = k;
  em.n_tokens = n;
  em.reason = req.reason;
  em.has_logits = req.has_logits;
  em.created_ms = now;
  em.payload_bytes = entry.size();
  auto chunk_meta = [&](uint32_t i, uint64_t bytes) {
    ObjectMeta m;
    m.kind = ObjKind::kChunk;
    m.key = chain[i];
    m.parent = ch.parent_of(i);
    m.depth = i;
    m.n_tokens = C;
    m.created_ms = now;
    m.payload_bytes = bytes;
    return m;
  };
  std::vector<ObjId> incoming;
  std::vector<Key> parents;
  for (uint32_t i : fresh) {
    incoming.push_back({ObjKind::kChunk, chain[i]});
    parents.push_back(ch.parent_of(i));
  }
  incoming.push_back({ObjKind::kEntry, ekey});
  parents.push_back(parent);
  const uint64_t payload_total = first.size() * fresh.size() + entry.size();
  res.bytes = payload_total;
  res.new_chunks = static_cast<uint32_t>(fresh.size());

  auto skip = [&](const std::string& why) {
    res.skipped = why;
    ++st_.stores_skipped;
    log::info("kv cache store skipped tokens=" + std::to_string(n) + " reason=" +
              reason_name(req.reason) + " size=" + format_size(payload_total) + ": " + why);
    return res;
  };

  tiers::Tier* primary = disk_ ? static_cast<tiers::Tier*>(disk_.get()) : ram_.get();
  if (!primary) return skip("no cache tier is configured");
  const uint64_t budget = disk_ ? cfg_.disk_budget : cfg_.ram_budget;
  const uint64_t incoming_bytes =
      disk_ ? payload_total + tiers::kHeaderSize * incoming.size() : payload_total;
  // With protect_own_writes off (replay's seed-bug toggle) a store writes first and evicts
  // afterwards, its own objects included: the store-then-evict thrash.
  const bool store_then_evict = !cfg_.evict.protect_own_writes;
  if (!store_then_evict && !make_room_locked(*primary, budget, incoming_bytes, incoming, parents,
                                             req.protect, req.protect_salt)) {
    return skip(std::string("it does not fit the ") + primary->name() + " budget of " +
                format_size(budget) + " without evicting what this store writes");
  }

  // Parents before children: a reader (this or another process) never sees an entry whose
  // chunks are not there yet.
  auto put = [&](const ObjectMeta& m, std::span<const uint8_t> payload) -> bool {
    const ObjectStats st{0, now};
    if (disk_) {
      const std::string err = disk_->put(m, st, payload);
      if (!err.empty()) {
        log::error("kv cache store failed tokens=" + std::to_string(n) + ": " + err);
        return false;
      }
      index_.upsert(m, st).on_disk = true;
      st_.bytes_written += payload.size();
      if (ram_) put_ram_locked(m, st, pool_->copy(payload));
    } else {
      ram_->put(m, st, payload);
      index_.upsert(m, st).in_ram = true;
    }
    rejected_.erase(m.key);  // freshly computed: no longer the bytes the engine refused
    if (Node* n = index_.find(m.kind, m.key); remote_ && !n->on_remote) {
      remote_->put(m, st, payload);  // queued: written behind, never blocking this request
      n->on_remote = true;
    }
    return true;
  };
  for (size_t j = 0; j < fresh.size(); ++j) {
    std::vector<uint8_t> p = j == 0 ? std::move(first) : req.chunk_payload(fresh[j]);
    if (!put(chunk_meta(fresh[j], p.size()), p)) return skip("write failed");
  }
  if (!put(em, entry)) return skip("write failed");
  res.stored = true;
  if (store_then_evict) {
    make_room_locked(*primary, budget, 0, {}, {}, req.protect, req.protect_salt, incoming);
    for (const auto& [kind, key] : incoming) {
      if (!local(index_.find(kind, key))) ++st_.own_writes_evicted;
    }
  }
  res.ms = ms_since(t0);
  store_hist_.observe(res.ms / 1000.0);
  ++st_.stores;
  ++st_.stores_by_reason[reason_name(req.reason)];
  log::info("kv cache stored tokens=" + std::to_string(n) + " reason=" + reason_name(req.reason) +
            " size=" + format_size(payload_total) + " new_chunks=" + std::to_string(fresh.size()) +
            " save=" + fmt_ms(res.ms) + " ms");
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
  std::lock_guard lock(mu_);
  CacheStats s = st_;
  s.chunks = s.entries = 0;
  index_.for_each([&](Node& n) { (n.meta.kind == ObjKind::kChunk ? s.chunks : s.entries)++; });
  if (disk_) {
    const auto io = disk_->io_errors();
    if (io.dir_fsync) s.io_errors["dir-fsync"] = io.dir_fsync;
    if (io.stats_write) s.io_errors["stats-write"] = io.stats_write;
  }
  s.disk_bytes = disk_ ? tier_bytes_locked(true) : 0;
  s.ram_bytes = ram_ ? tier_bytes_locked(false) : 0;
  if (remote_) s.remote = remote_->stats();
  s.buffers = pool_->allocator_name();
  return s;
}

std::vector<Node> PrefixCache::objects() {
  std::lock_guard lock(mu_);
  sync_locked(false);
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
