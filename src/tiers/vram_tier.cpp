#include "tiers/vram_tier.h"

namespace kvstash::tiers {

bool VramTier::put(cache::ObjKind kind, const cache::Key& key, std::span<const uint8_t> payload) {
  DeviceRef c = mem_->upload(payload);
  if (!c) return false;
  std::lock_guard lock(mu_);
  objs_[{kind, key}] = std::move(c);
  return true;
}

DeviceRef VramTier::get(cache::ObjKind kind, const cache::Key& key) {
  std::lock_guard lock(mu_);
  auto it = objs_.find({kind, key});
  return it == objs_.end() ? nullptr : it->second;
}

bool VramTier::holds(cache::ObjKind kind, const cache::Key& key) {
  return get(kind, key) != nullptr;
}

void VramTier::remove(cache::ObjKind kind, const cache::Key& key) {
  DeviceRef gone;  // released outside the lock
  std::lock_guard lock(mu_);
  auto it = objs_.find({kind, key});
  if (it == objs_.end()) return;
  gone = std::move(it->second);
  objs_.erase(it);
}

}  // namespace kvstash::tiers
