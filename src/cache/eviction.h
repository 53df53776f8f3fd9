// What to evict when a tier is over budget (SPEC section 4), as a pure function.
//
// Objects form a tree: chunk i is the parent of chunk i+1, and an entry hangs under the last full
// chunk of its prefix. Only leaves are evicted (an object none of whose children remain), so every
// object left is still restorable from the root. Among leaves the lowest score goes first:
//   density (hits + 1) * tokens / bytes, times a recency boost 1 + K * 2^(-age / half_life)
// so a just-written prefix outranks a stale one of equal density (density alone evicts a prefix
// written a moment ago, before anything could hit it). Superseded continued entries are devalued
// once they are not recent; objects nothing can restore from score zero. Never evicted: pinned
// objects (in use by a running request) and the objects of the store making room (evicting them
// would make the store pointless and the next request store them again, a thrash: if the budget
// cannot be met without them, the store is skipped). Prefixes of the incoming prompt are evicted
// only when nothing else is left: the store that precedes its lookup must not evict the hit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvstash::cache {

struct EvictConfig {
  double recency_boost = 3.0;       // K
  double half_life_s = 1800.0;      // recency and "recent" horizon
  double superseded_factor = 0.25;  // applied to superseded continued entries once not recent
  // Seed-bug toggles (`kvstash replay --before ...`): false brings back the behaviour a ds4
  // change fixed. (recency_boost = 0 is the ds4 score before its recency follow-up.)
  bool protect_own_writes = true;       // a store never evicts what it just wrote
  bool protect_incoming_prefix = true;  // prefixes of the incoming prompt are evicted last
};

struct Candidate {
  int64_t parent = -1;  // index of the parent in the candidate list, -1 for none
  uint32_t hits = 0;
  uint32_t tokens = 0;
  uint64_t bytes = 0;
  double age_s = 0;  // since last use (or creation)
  bool superseded = false;
  bool useless = false;
  bool just_written = false;
  bool protected_prefix = false;
  bool pinned = false;
};

double eviction_score(const Candidate& c, const EvictConfig& cfg);

struct EvictionPlan {
  std::vector<size_t> victims;  // candidate indices, in eviction order
  bool fits = true;             // false: the budget cannot be met; victims is then empty
  uint64_t used_after = 0;
};

// `used` counts every candidate, including the just-written ones.
EvictionPlan plan_eviction(const std::vector<Candidate>& nodes, uint64_t used, uint64_t budget,
                           const EvictConfig& cfg);

}  // namespace kvstash::cache
