// The VRAM tier: copies of chunk objects in the engine's device memory (core/device_memory.h),
// in front of the RAM tier. A hit from it is a device-to-device copy into the slot.
//
// It holds copies, never the only one: an object enters it from a payload a host tier holds (a
// store's buffer, a read from RAM, disk or the remote tier) and leaves it when evicted to fit
// its budget (the copy is dropped: the host tiers still hold the bytes) or when the object leaves
// the host tiers. Its contents are gone with the process, like the RAM tier's.
//
// Thread safety: its own mutex; upload() runs outside it (a copy into device memory).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "core/device_memory.h"
#include "core/types.h"

namespace kvstash::tiers {

class VramTier {
 public:
  explicit VramTier(std::shared_ptr<DeviceMemory> mem) : mem_(std::move(mem)) {}
  const DeviceMemory& memory() const { return *mem_; }
  // Copies `payload` into device memory and keeps it under the key; false if the memory takes
  // no copy now (full: the slots of evicted copies are still referenced by a restore).
  bool put(cache::ObjKind kind, const cache::Key& key, std::span<const uint8_t> payload);
  DeviceRef get(cache::ObjKind kind, const cache::Key& key);
  bool holds(cache::ObjKind kind, const cache::Key& key);
  void remove(cache::ObjKind kind, const cache::Key& key);

 private:
  std::shared_ptr<DeviceMemory> mem_;
  std::mutex mu_;
  std::map<std::pair<cache::ObjKind, cache::Key>, DeviceRef> objs_;
};

}  // namespace kvstash::tiers
