#include "tiers/ram_tier.h"

#include "tiers/disk_format.h"

namespace kvstash::tiers {

Status RamTier::put(const cache::ObjectMeta& meta, const cache::ObjectStats&,
                    std::span<const uint8_t> payload) {
  return put_shared(meta, pool_->copy(payload));
}

Status RamTier::put_shared(const cache::ObjectMeta& meta, Payload payload) {
  const uint64_t sum = payload_checksum(payload->span());
  return put_checked(meta, std::move(payload), sum);
}

Status RamTier::put_checked(const cache::ObjectMeta& meta, Payload payload, uint64_t checksum) {
  std::lock_guard lock(mu_);
  objs_[{meta.kind, meta.key}] = {std::move(payload), checksum};
  return {};
}

Result<RamTier::Held> RamTier::peek(cache::ObjKind kind, const cache::Key& key) {
  std::lock_guard lock(mu_);
  auto it = objs_.find({kind, key});
  if (it == objs_.end()) return IoError{IoError::kMissing, "not in RAM"};
  return it->second;
}

Result<Payload> RamTier::get(cache::ObjKind kind, const cache::Key& key) {
  Obj o;
  {
    std::lock_guard lock(mu_);
    auto it = objs_.find({kind, key});
    if (it == objs_.end()) return IoError{IoError::kMissing, "not in RAM"};
    o = it->second;
  }
  // Memory can be damaged too (a stray write). The checksum runs outside the lock, so the
  // objects of one restore are verified in parallel (restore_plan fetches several at once).
  if (payload_checksum(o.payload->span()) != o.checksum) {
    std::lock_guard lock(mu_);
    auto it = objs_.find({kind, key});
    if (it != objs_.end() && it->second.payload == o.payload) objs_.erase(it);
    return IoError{IoError::kDamaged, "checksum mismatch in RAM"};
  }
  return o.payload;
}

Status RamTier::remove(cache::ObjKind kind, const cache::Key& key) {
  std::lock_guard lock(mu_);
  objs_.erase({kind, key});
  return {};
}

uint64_t RamTier::object_size(const cache::ObjectMeta& meta) const { return meta.payload_bytes; }

}  // namespace kvstash::tiers
