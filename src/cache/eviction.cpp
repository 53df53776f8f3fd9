#include "cache/eviction.h"

#include <cmath>
#include <queue>

namespace kvstash::cache {

double eviction_score(const Candidate& c, const EvictConfig& cfg) {
  if (c.useless) return 0.0;
  const double density = (c.hits + 1.0) * c.tokens / static_cast<double>(c.bytes ? c.bytes : 1);
  const double boost = 1.0 + cfg.recency_boost * std::exp2(-c.age_s / cfg.half_life_s);
  double s = density * boost;
  if (c.superseded && c.age_s > cfg.half_life_s) s *= cfg.superseded_factor;
  return s;
}

EvictionPlan plan_eviction(const std::vector<Candidate>& nodes, uint64_t used, uint64_t budget,
                           const EvictConfig& cfg) {
  EvictionPlan plan;
  plan.used_after = used;
  if (used <= budget) return plan;

  std::vector<uint32_t> children(nodes.size(), 0);
  for (const auto& n : nodes) {
    if (n.parent >= 0) ++children[n.parent];
  }
  std::vector<double> score(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) score[i] = eviction_score(nodes[i], cfg);

  struct Item {
    double score, age;
    size_t idx;
    bool operator>(const Item& o) const {
      if (score != o.score) return score > o.score;
      if (age != o.age) return age < o.age;  // equal score: the older goes first
      return idx > o.idx;
    }
  };
  std::vector<bool> gone(nodes.size(), false);
  for (bool allow_protected : {false, true}) {
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
    auto evictable = [&](size_t i) {
      const auto& n = nodes[i];
      return !gone[i] && children[i] == 0 && !n.pinned &&
             (!n.just_written || !cfg.protect_own_writes) &&
             (allow_protected || !n.protected_prefix || !cfg.protect_incoming_prefix);
    };
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (evictable(i)) heap.push({score[i], nodes[i].age_s, i});
    }
    while (plan.used_after > budget && !heap.empty()) {
      const size_t i = heap.top().idx;
      heap.pop();
      if (!evictable(i)) continue;
      gone[i] = true;
      plan.victims.push_back(i);
      plan.used_after -= nodes[i].bytes;
      const int64_t p = nodes[i].parent;
      if (p >= 0 && --children[p] == 0 && evictable(p))
        heap.push({score[p], nodes[p].age_s, size_t(p)});
    }
    if (plan.used_after <= budget) return plan;
  }
  plan.fits = false;
  plan.victims.clear();
  plan.used_after = used;
  return plan;
}

}  // namespace kvstash::cache
