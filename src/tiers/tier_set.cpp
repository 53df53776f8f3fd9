#include "tiers/tier_set.h"

#include "tiers/disk_tier.h"
#include "tiers/ram_tier.h"

namespace kvstash::tiers {

TierSet::TierSet(const TierConfig& cfg, const Fingerprint16& fingerprint,
                 std::shared_ptr<BufferPool> pool)
    : cfg_(cfg) {
  if (!cfg.dir.empty()) disk_ = std::make_unique<DiskTier>(cfg.dir, fingerprint, pool);
  if (cfg.ram_budget > 0) ram_ = std::make_unique<RamTier>(pool);
  if (!cfg.remote.url.empty())
    remote_ = std::make_unique<RemoteTier>(cfg.remote, fingerprint, pool);
}

TierSet::~TierSet() = default;

uint64_t TierSet::size_in(Where w, const cache::ObjectMeta& meta) const {
  return w == Where::kDisk ? kHeaderSize + meta.payload_bytes : meta.payload_bytes;
}

void TierSet::count(Where w, const cache::ObjectMeta& meta, bool add) {
  auto& u = used_[w == Where::kDisk];
  const uint64_t n = size_in(w, meta);
  if (add) {
    u += n;
  } else {
    // Never below zero, even if a caller's bookkeeping slipped (a budget then errs generous).
    uint64_t cur = u.load();
    while (!u.compare_exchange_weak(cur, cur >= n ? cur - n : 0)) {
    }
  }
}

TierSet::Read TierSet::read(cache::ObjKind kind, const cache::Key& key, Held held) {
  Read r;
  if (held.ram && ram_) {
    if ((r.payload = ram_->get(kind, key, &r.why))) {
      r.from = Where::kRam;
      return r;
    }
    r.ram_bad = true;
  }
  if (held.disk && disk_) {
    if ((r.payload = disk_->get(kind, key, &r.why))) {
      r.from = Where::kDisk;
      return r;
    }
    r.disk_bad = true;
  }
  if (held.remote && remote_) {
    if ((r.payload = remote_->get(kind, key, &r.why))) r.from = Where::kRemote;
  }
  return r;
}

std::string TierSet::write_disk(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                                const Payload& payload) {
  if (!disk_) return "no disk tier";
  return disk_->put(meta, st, payload->span());
}

void TierSet::put_ram(const cache::ObjectMeta& meta, const Payload& payload, uint64_t checksum) {
  if (ram_) ram_->put_checked(meta, payload, checksum);
}

void TierSet::put_remote(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                         const Payload& payload) {
  if (remote_) remote_->put(meta, st, payload->span());
}

void TierSet::remove(Where w, cache::ObjKind kind, const cache::Key& key) {
  if (w == Where::kDisk && disk_) disk_->remove(kind, key);
  if (w == Where::kRam && ram_) ram_->remove(kind, key);
  if (w == Where::kRemote && remote_) remote_->remove(kind, key);
}

void TierSet::update_disk_stats(cache::ObjKind kind, const cache::Key& key,
                                const cache::ObjectStats& st) {
  if (disk_) disk_->update_stats(kind, key, st);
}

}  // namespace kvstash::tiers
