#include "cache/store_policy.h"

#include <algorithm>

namespace kvstash::cache {

uint32_t anchor_position(const PrefillFacts& f, const StoreConfig& c) {
  uint32_t base = f.anchor_boundary > 0 && f.anchor_boundary <= f.prompt_tokens ? f.anchor_boundary
                                                                                : f.prompt_tokens;
  base = base > c.boundary_trim ? base - c.boundary_trim : 0;
  return c.boundary_align ? base / c.boundary_align * c.boundary_align : base;
}

ColdDecision cold_store(const PrefillFacts& f, const StoreConfig& c) {
  ColdDecision d;
  if (c.cold_max_tokens == 0) return d;
  const uint32_t anchor = anchor_position(f, c);
  if (anchor < c.min_tokens || anchor <= f.cached_tokens) return d;  // hit at or past the anchor
  if (!c.refresh_anchor && f.cached_tokens > 0) return d;            // no anchor refresh
  if (anchor > c.cold_max_tokens) {
    if (f.cached_tokens == 0) {
      d.hint = "kv cache cold store skipped: anchor of " + std::to_string(anchor) +
               " tokens exceeds --cache-cold-max-tokens " + std::to_string(c.cold_max_tokens) +
               " (raise it to cache this prompt's stable prefix)";
    }
    return d;
  }
  d.store_at = anchor;
  return d;
}

std::vector<PlannedStore> prefill_stores(const PrefillFacts& f, const StoreConfig& c,
                                         ColdDecision* cold_out) {
  std::vector<PlannedStore> out;
  const ColdDecision cold = cold_store(f, c);
  if (cold_out) *cold_out = cold;
  if (c.continued_interval > 0) {
    for (uint32_t at = (f.cached_tokens / c.continued_interval + 1) * c.continued_interval;
         at <= f.prompt_tokens; at += c.continued_interval) {
      if (at >= c.min_tokens && at != cold.store_at) out.push_back({at, Reason::kContinued});
    }
  }
  if (cold.store_at) out.push_back({cold.store_at, Reason::kCold});
  std::sort(out.begin(), out.end(),
            [](const PlannedStore& a, const PlannedStore& b) { return a.at < b.at; });
  return out;
}

bool store_live_state(uint32_t live_tokens, uint32_t already_stored_at, const StoreConfig& c) {
  return live_tokens >= c.min_tokens && live_tokens != already_stored_at;
}

bool store_before_trim(uint32_t live_tokens, uint32_t keep, uint32_t already_stored_at,
                       const StoreConfig& c) {
  return c.store_before_trim && keep < live_tokens &&
         store_live_state(live_tokens, already_stored_at, c);
}

std::vector<Key> superseded_by(Reason new_reason, uint32_t new_tokens,
                               const std::vector<EntryView>& existing, const StoreConfig& c) {
  std::vector<Key> out;
  if (!c.drop_superseded) return out;
  if (new_reason != Reason::kCold && new_reason != Reason::kContinued) return out;
  for (const auto& e : existing) {
    if (e.reason == Reason::kContinued && e.prefix_of_new && e.n_tokens < new_tokens) {
      out.push_back(e.key);
    }
  }
  return out;
}

}  // namespace kvstash::cache
