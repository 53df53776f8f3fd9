// Finding and reading objects: the longest restorable prefix of a prompt (the index, plus what
// the remote directory finds along the prompt's chain), one object read from the fastest tier
// that holds it (promoted into faster tiers on the way), and the bytes each tier would serve.
//
// Facade layer (cache_state.h). Redis round trips, reads and checksums run outside the index
// lock, so several objects are fetched at once (a restore's prefetch) and other slots' lookups
// never wait on I/O; the index changes they lead to (flags, promotion, forgetting an unusable
// object) take it afterwards.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cache/cache_state.h"
#include "cache/disk_sync.h"
#include "cache/restore_choice.h"
#include "cache/tier_mover.h"

namespace kvstash::cache {

class Lookup {
 public:
  Lookup(CacheState& s, DiskSync& disk, TierMover& mover) : s_(s), disk_(disk), mover_(mover) {}
  RestorePlan plan(std::span<const Token> prompt, const std::vector<uint32_t>& boundaries,
                   const std::string& salt);
  // The verified object, or null (then forgotten: a new plan finds the next best prefix).
  Payload fetch(ObjKind kind, const Key& key, Source* from);
  // The chunk's VRAM copy (null if it has none yet); `bytes` receives its payload size.
  DeviceRef fetch_device(const Key& key, uint64_t* bytes);
  std::optional<Loaded> load(const RestorePlan& plan);
  PlanOption restore_option(const RestorePlan& plan, size_t first_chunk);

 private:
  CacheState& s_;
  DiskSync& disk_;
  TierMover& mover_;
};

}  // namespace kvstash::cache
