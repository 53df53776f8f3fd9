// A storage tier for cache objects (chunks and entries), addressed by kind and key.
//
// Tiers only store and fetch bytes; what to store and what to evict is decided in src/cache/.
// Every tier verifies what it returns: a damaged object is dropped and reported, never served.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/types.h"
#include "util/buffer_pool.h"

namespace kvstash::tiers {

struct StoredObject {
  cache::ObjectMeta meta;
  cache::ObjectStats stats;
};

class Tier {
 public:
  virtual ~Tier() = default;
  virtual const char* name() const = 0;
  // Stores atomically: afterwards the object is either complete or absent. Returns an error
  // message, empty on success.
  virtual std::string put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                          std::span<const uint8_t> payload) = 0;
  // The verified payload, or null with the reason in *why (missing, damaged: then removed).
  virtual Payload get(cache::ObjKind kind, const cache::Key& key, std::string* why) = 0;
  virtual void remove(cache::ObjKind kind, const cache::Key& key) = 0;
  virtual void update_stats(cache::ObjKind kind, const cache::Key& key,
                            const cache::ObjectStats& stats) = 0;
  // Bytes the object occupies in this tier (what its budget counts).
  virtual uint64_t object_size(const cache::ObjectMeta& meta) const = 0;
};

}  // namespace kvstash::tiers
