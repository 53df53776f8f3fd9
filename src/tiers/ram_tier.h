// The RAM tier: objects held in process memory, in front of the disk tier. Objects are immutable
// shared buffers (util/buffer_pool.h): a hit hands out the buffer itself, and a promotion keeps the
// buffer the disk or remote read filled.
#pragma once

#include <map>
#include <mutex>

#include "tiers/tier.h"

namespace kvstash::tiers {

class RamTier : public Tier {
 public:
  // Copies made by put() come from `pool` (pinned memory on GPU builds).
  explicit RamTier(std::shared_ptr<BufferPool> pool) : pool_(std::move(pool)) {}
  const char* name() const override { return "ram"; }
  Status put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
             std::span<const uint8_t> payload) override;
  Result<Payload> get(cache::ObjKind kind, const cache::Key& key) override;
  // Keeps `payload` itself (a buffer another tier read it into), not a copy.
  Status put_shared(const cache::ObjectMeta& meta, Payload payload);
  // The same with its checksum computed by the caller (outside any lock of its own).
  Status put_checked(const cache::ObjectMeta& meta, Payload payload, uint64_t checksum);
  struct Held {
    Payload payload;
    uint64_t checksum = 0;  // taken on insert
  };
  // The buffer without verifying it (the caller verifies: a demotion's disk write checks it
  // against the checksum taken on insert); kMissing if not in RAM.
  Result<Held> peek(cache::ObjKind kind, const cache::Key& key);
  Status remove(cache::ObjKind kind, const cache::Key& key) override;
  Status update_stats(cache::ObjKind, const cache::Key&, const cache::ObjectStats&) override {
    return {};  // nothing kept in RAM
  }
  uint64_t object_size(const cache::ObjectMeta& meta) const override;

 private:
  using Obj = Held;
  std::shared_ptr<BufferPool> pool_;
  std::mutex mu_;
  std::map<std::pair<cache::ObjKind, cache::Key>, Obj> objs_;
};

}  // namespace kvstash::tiers
