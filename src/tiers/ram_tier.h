// The RAM tier: objects held in process memory, in front of the disk tier.
#pragma once

#include <map>
#include <mutex>

#include "tiers/tier.h"

namespace kvstash::tiers {

class RamTier : public Tier {
 public:
  const char* name() const override { return "ram"; }
  std::string put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                  std::span<const uint8_t> payload) override;
  std::optional<std::vector<uint8_t>> get(cache::ObjKind kind, const cache::Key& key,
                                          std::string* why) override;
  void remove(cache::ObjKind kind, const cache::Key& key) override;
  void update_stats(cache::ObjKind, const cache::Key&, const cache::ObjectStats&) override {}
  uint64_t object_size(const cache::ObjectMeta& meta) const override;

 private:
  struct Obj {
    std::vector<uint8_t> payload;
    uint64_t checksum;
  };
  std::mutex mu_;
  std::map<std::pair<cache::ObjKind, cache::Key>, Obj> objs_;
};

}  // namespace kvstash::tiers
