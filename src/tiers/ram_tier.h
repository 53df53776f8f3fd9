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
  std::string put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                  std::span<const uint8_t> payload) override;
  Payload get(cache::ObjKind kind, const cache::Key& key, std::string* why) override;
  // Keeps `payload` itself (a buffer another tier read it into), not a copy.
  void put_shared(const cache::ObjectMeta& meta, Payload payload);
  // The same with its checksum computed by the caller (outside any lock of its own).
  void put_checked(const cache::ObjectMeta& meta, Payload payload, uint64_t checksum);
  // The buffer without verifying it (the caller verifies: a demotion's disk write checks it
  // against the checksum taken on insert).
  Payload peek(cache::ObjKind kind, const cache::Key& key, uint64_t* checksum = nullptr);
  void remove(cache::ObjKind kind, const cache::Key& key) override;
  void update_stats(cache::ObjKind, const cache::Key&, const cache::ObjectStats&) override {}
  uint64_t object_size(const cache::ObjectMeta& meta) const override;

 private:
  struct Obj {
    Payload payload;
    uint64_t checksum;
  };
  std::shared_ptr<BufferPool> pool_;
  std::mutex mu_;
  std::map<std::pair<cache::ObjKind, cache::Key>, Obj> objs_;
};

}  // namespace kvstash::tiers
