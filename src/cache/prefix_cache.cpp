#include "cache/prefix_cache.h"

#include "cache/cache_state.h"
#include "cache/disk_sync.h"
#include "cache/lookup.h"
#include "cache/store_pipeline.h"
#include "cache/tier_mover.h"
#include "tiers/disk_tier.h"
#include "util/log.h"
#include "util/size.h"
#include "util/timing.h"

namespace kvstash::cache {

using tiers::StoreObject;
using tiers::Where;

PrefixCache::PrefixCache(const CacheConfig& cfg, const std::array<uint8_t, 16>& fingerprint)
    : s_(std::make_unique<CacheState>(cfg, fingerprint)),
      disk_(std::make_unique<DiskSync>(*s_)),
      mover_(std::make_unique<TierMover>(*s_)),
      lookup_(std::make_unique<Lookup>(*s_, *disk_, *mover_)),
      pipeline_(std::make_unique<StorePipeline>(*s_, *disk_, *mover_)) {
  StorePipeline* p = pipeline_.get();
  s_->worker = std::make_unique<tiers::TransferWorker>(
      cfg.store_queue, [p](const StoreObject& o) { return p->write_object(o); },
      [p](const StoreObject& o, bool ok) { p->object_done(o, ok); }, cfg.store_threads);
  disk_->load();
}

PrefixCache::~PrefixCache() {
  // Stores made just before exit (reason=shutdown) should be durable and reach the shared tier,
  // unless a bounded drain already gave up on them.
  if (!abandon_) drain(-1);
  s_->worker.reset();  // before the tiers it writes to
  if (auto* r = s_->tiers->remote(); r && !abandon_ && !r->drain(5000)) {
    log::warn("kv cache remote writes still queued at exit");
  }
}

const CacheConfig& PrefixCache::config() const { return s_->cfg; }
const Key& PrefixCache::root() const { return s_->index.root(); }
BufferPool& PrefixCache::pool() { return *s_->pool; }
const Histogram& PrefixCache::store_latency() const { return s_->store_hist; }
const Histogram& PrefixCache::load_latency() const { return s_->load_hist; }

bool PrefixCache::drain(int timeout_ms) {
  const auto t0 = Clock::now();
  bool ok = s_->worker->drain(timeout_ms);
  if (auto* r = s_->tiers->remote(); ok && r) {
    const int left = timeout_ms < 0 ? 600000 : std::max(0, timeout_ms - int(ms_since(t0)));
    ok = r->drain(left);
  }
  if (!ok) {
    abandon_ = true;
    log::warn("kv cache stores still queued after " + std::to_string(timeout_ms) +
              " ms: abandoned (" + format_size(s_->worker->stats().queued_bytes) + ")");
  }
  return ok;
}

void PrefixCache::enforce_budget() {
  std::lock_guard lock(s_->mu);
  if (s_->tiers->disk()) mover_->make_room_locked(Where::kDisk, {});
  if (s_->tiers->ram()) mover_->make_room_locked(Where::kRam, {});
  if (s_->tiers->vram()) mover_->make_room_locked(Where::kVram, {});
}

void PrefixCache::refresh() { disk_->sync(true); }

RestorePlan PrefixCache::plan(std::span<const Token> prompt,
                              const std::vector<uint32_t>& boundaries, const std::string& salt) {
  return lookup_->plan(prompt, boundaries, salt);
}

Payload PrefixCache::fetch(ObjKind kind, const Key& key, Source* from) {
  return lookup_->fetch(kind, key, from);
}

DeviceRef PrefixCache::fetch_device(const Key& key, uint64_t* bytes) {
  return lookup_->fetch_device(key, bytes);
}

std::optional<Loaded> PrefixCache::load(const RestorePlan& plan) { return lookup_->load(plan); }

PlanOption PrefixCache::restore_option(const RestorePlan& plan, size_t first_chunk) {
  return lookup_->restore_option(plan, first_chunk);
}

std::string PrefixCache::disk_path(ObjKind kind, const Key& key) const {
  return s_->tiers->disk() ? s_->tiers->disk()->path(kind, key) : "";
}

StoreResult PrefixCache::store(const StoreRequest& req) { return pipeline_->store(req); }

namespace {
std::vector<ObjId> objects_of(const RestorePlan& plan) {
  std::vector<ObjId> objs;
  for (const Key& k : plan.chunks) objs.push_back({ObjKind::kChunk, k});
  if (plan.entry) objs.push_back({ObjKind::kEntry, *plan.entry});
  return objs;
}
}  // namespace

void PrefixCache::record_hit(const RestorePlan& plan, double load_seconds) {
  s_->load_hist.observe(load_seconds);
  std::vector<std::tuple<ObjKind, Key, ObjectStats>> disk_stats;
  {
    std::lock_guard lock(s_->mu);
    const int64_t now = s_->clock_ms();
    for (const auto& [kind, key] : objects_of(plan)) {
      if (Node* n = s_->index.find(kind, key)) {
        ++n->stats.hits;
        n->stats.last_used_ms = now;
        if (n->on_disk) disk_stats.emplace_back(kind, key, n->stats);
      }
    }
    ++s_->st.hits;
    s_->st.tokens_reused += plan.resume_at;
  }
  for (const auto& [kind, key, stats] : disk_stats) {
    (void)s_->tiers->update_disk_stats(kind, key, stats);  // usage statistics only
  }
}

void PrefixCache::reject(const RestorePlan& plan, const std::string& why) {
  const std::vector<ObjId> objs = objects_of(plan);
  std::vector<ObjId> remote_copies;
  {
    std::lock_guard lock(s_->mu);
    for (const auto& [kind, key] : objs) {
      s_->remote_dir->reject(key);
      Node* n = s_->index.find(kind, key);
      if (!n) continue;
      if (n->on_remote) remote_copies.push_back({kind, key});
      n->on_remote = false;
      s_->remove_locked(*n, "rejected", false);
      ++s_->st.damaged;
    }
    // What hung below them is unreachable now; left behind, an entry would make a fresh store of
    // this prefix look done ("existed") while its chunks are gone.
    s_->drop_unreachable_locked(true);
  }
  // A copy left behind by an outage is never taken again (the remote directory rejects it).
  for (const auto& [kind, key] : remote_copies) (void)s_->tiers->remove(Where::kRemote, kind, key);
  log::warn("kv cache removed " + std::to_string(objs.size()) + " objects of a " +
            std::to_string(plan.restore_tokens) + "-token prefix the engine refused: " + why);
}

void PrefixCache::count_choice(Source s) {
  std::lock_guard lock(s_->mu);
  ++s_->st.plan_choices[source_name(s)];
}

void PrefixCache::record_miss() {
  std::lock_guard lock(s_->mu);
  ++s_->st.misses;
}

PrefixCache::Pin::Pin(CacheState* s, std::vector<ObjId> objs) : s_(s), objs_(std::move(objs)) {
  std::lock_guard lock(s_->mu);
  for (const auto& [kind, key] : objs_) {
    if (Node* n = s_->index.find(kind, key)) ++n->pins;
  }
}
PrefixCache::Pin::Pin(Pin&& o) noexcept : s_(o.s_), objs_(std::move(o.objs_)) { o.s_ = nullptr; }
PrefixCache::Pin& PrefixCache::Pin::operator=(Pin&& o) noexcept {
  if (this != &o) {
    release();
    s_ = o.s_;
    objs_ = std::move(o.objs_);
    o.s_ = nullptr;
  }
  return *this;
}
PrefixCache::Pin::~Pin() { release(); }
void PrefixCache::Pin::release() {
  if (!s_) return;
  std::lock_guard lock(s_->mu);
  for (const auto& [kind, key] : objs_) {
    if (Node* n = s_->index.find(kind, key); n && n->pins > 0) --n->pins;
  }
  s_ = nullptr;
}

PrefixCache::Pin PrefixCache::pin(const RestorePlan& plan) {
  return Pin(s_.get(), objects_of(plan));
}

CacheStats PrefixCache::stats() {
  CacheStats s;
  auto& tiers = *s_->tiers;
  {
    std::lock_guard lock(s_->mu);
    s = s_->st;
    s.chunks = s.entries = 0;
    s_->index.for_each([&](Node& n) {
      (n.meta.kind == ObjKind::kChunk ? s.chunks : s.entries)++;
      s.ram_objects += n.in_ram;
      s.disk_objects += n.on_disk;
      s.remote_objects += n.on_remote;
      s.vram_objects += n.in_vram;
    });
  }
  if (auto* disk = tiers.disk()) {
    const auto io = disk->io_errors();
    if (io.dir_fsync) s.io_errors["dir-fsync"] = io.dir_fsync;
    if (io.stats_write) s.io_errors["stats-write"] = io.stats_write;
  }
  s.disk_bytes = tiers.disk() ? tiers.used(Where::kDisk) : 0;
  s.ram_bytes = tiers.ram() ? tiers.used(Where::kRam) : 0;
  if (auto* v = tiers.vram()) {
    s.vram_bytes = tiers.used(Where::kVram);
    s.vram_budget = tiers.budget(Where::kVram);
    s.vram_device = v->memory().name();
  }
  if (auto* r = tiers.remote()) s.remote = r->stats();
  const auto w = s_->worker->stats();
  s.store_queue_bytes = w.queued_bytes;
  s.store_queue_jobs = w.queued_jobs;
  s.store_queue_budget = s_->cfg.store_queue;
  s.buffers = s_->pool->allocator_name();
  return s;
}

std::vector<Node> PrefixCache::objects() {
  disk_->sync(false);
  std::lock_guard lock(s_->mu);
  std::vector<Node> out;
  s_->index.for_each([&](Node& n) { out.push_back(n); });
  return out;
}

void PrefixCache::clear() {
  std::lock_guard lock(s_->mu);
  std::vector<ObjId> all;
  s_->index.for_each([&](Node& n) { all.push_back({n.meta.kind, n.meta.key}); });
  for (const auto& [kind, key] : all) {
    if (Node* n = s_->index.find(kind, key)) s_->remove_locked(*n, "clear", false);
  }
}

}  // namespace kvstash::cache
