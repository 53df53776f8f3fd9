#include "tiers/tier_set.h"

#include <algorithm>

#include "tiers/disk_tier.h"
#include "tiers/ram_tier.h"
#include "tiers/vram_tier.h"

namespace kvstash::tiers {

TierSet::TierSet(const TierConfig& cfg, const Fingerprint16& fingerprint,
                 std::shared_ptr<BufferPool> pool)
    : cfg_(cfg) {
  if (!cfg.dir.empty()) disk_ = std::make_unique<DiskTier>(cfg.dir, fingerprint, pool);
  if (cfg.ram_budget > 0) ram_ = std::make_unique<RamTier>(pool);
  if (!cfg.remote.url.empty())
    remote_ = std::make_unique<RemoteTier>(cfg.remote, fingerprint, pool);
  if (cfg.vram && cfg.vram->capacity() > 0) vram_ = std::make_unique<VramTier>(cfg.vram);
}

uint64_t TierSet::budget(Where w) const {
  if (w == Where::kVram) return vram_ ? cfg_.vram->capacity() : 0;
  return w == Where::kDisk ? std::min(cfg_.disk_budget, disk_cap_.load()) : cfg_.ram_budget;
}

void TierSet::refresh_disk_cap() {
  if (!disk_) return;
  const auto free = disk_->free_bytes();
  disk_cap_ = free ? used(Where::kDisk) + *free : UINT64_MAX;
}

TierSet::~TierSet() = default;

uint64_t TierSet::size_in(Where w, const cache::ObjectMeta& meta) const {
  return w == Where::kDisk ? kHeaderSize + meta.payload_bytes : meta.payload_bytes;
}

void TierSet::count(Where w, const cache::ObjectMeta& meta, bool add) {
  auto& u = used_[index(w)];
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

namespace {
IoError no_tier(const char* which) {
  return {IoError::kUnavailable, std::string("no ") + which + " tier"};
}
}  // namespace

TierSet::Read TierSet::read(cache::ObjKind kind, const cache::Key& key, Held held) {
  Read r{IoError{IoError::kMissing, "held by no tier"}, {}};
  const std::pair<Where, Tier*> order[] = {{Where::kRam, held.ram ? ram_.get() : nullptr},
                                           {Where::kDisk, held.disk ? disk_.get() : nullptr},
                                           {Where::kRemote, held.remote ? remote_.get() : nullptr}};
  for (const auto& [where, tier] : order) {
    if (!tier) continue;
    auto got = tier->get(kind, key);
    if (got) {
      r.got = Served{std::move(*got), where};
      return r;
    }
    r.failed.emplace_back(where, got.error());
    r.got = got.error();
  }
  return r;
}

Status TierSet::write_disk(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                           const Payload& payload) {
  if (!disk_) return no_tier("disk");
  return disk_->put(meta, st, payload->span());
}

Status TierSet::put_ram(const cache::ObjectMeta& meta, const Payload& payload, uint64_t checksum) {
  if (!ram_) return no_tier("RAM");
  return ram_->put_checked(meta, payload, checksum);
}

Status TierSet::put_remote(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                           const Payload& payload) {
  if (!remote_) return no_tier("remote");
  return remote_->put(meta, st, payload->span());
}

Status TierSet::remove(Where w, cache::ObjKind kind, const cache::Key& key) {
  Tier* t = w == Where::kDisk     ? static_cast<Tier*>(disk_.get())
            : w == Where::kRam    ? static_cast<Tier*>(ram_.get())
            : w == Where::kRemote ? static_cast<Tier*>(remote_.get())
                                  : nullptr;
  if (!t) return no_tier("such");
  return t->remove(kind, key);
}

Status TierSet::update_disk_stats(cache::ObjKind kind, const cache::Key& key,
                                  const cache::ObjectStats& st) {
  if (!disk_) return no_tier("disk");
  return disk_->update_stats(kind, key, st);
}

}  // namespace kvstash::tiers
