// `kvstash replay`: a token-level trace through the real request flow (cache/request_flow.h) and
// the real prefix cache, with a model-free engine (sim_engine.h), so cache policies and budgets
// can be compared at scale: hit rate, tokens reused against what an ideal cache could reuse,
// tokens prefilled, bytes written and read, stores and evictions by reason.
//
// As in `kvstash serve`: requests go to one of N slots (the one whose live tokens share the
// longest prefix with the prompt, else the least recently used, or a fork of that prefix into a
// slot whose state is worth less: cache::choose_slot_or_fork, the rule server/slot_pool.cpp
// uses), the scope policy is chosen per request by
// cache::choose_scope_boundary over the recent prompts, and a restart record stores the live states
// (shutdown), drops the cache and the slots, and opens the directory again (the real startup scan).
// Time is virtual: each request advances a clock by `interval_s`, which the cache uses for
// creation and last-use times, so recency in eviction means what it would in the trace.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "cache/eviction.h"
#include "cache/scope_policy.h"
#include "cache/store_policy.h"
#include "replay/sim_engine.h"
#include "replay/trace.h"

namespace kvstash::replay {

struct ReplayConfig {
  SimConfig sim;
  cache::StoreConfig store;
  cache::EvictConfig evict;
  cache::Scope scope;                  // --policy
  uint64_t disk_budget = 40ull << 30;  // real bytes (the cache gets 1/scale of it)
  uint64_t ram_budget = 0;             // real bytes; 0: no RAM tier
  std::string cache_dir;               // empty: a temporary directory, removed afterwards
  int slots = 1;
  double interval_s = 60;  // virtual seconds between requests
  std::string label;       // names the run in tables
};

struct ReplayResult {
  std::string label;
  uint64_t requests = 0, hits = 0, live_hits = 0, restarts = 0;  // hits: cached > 0
  uint64_t forks = 0;  // requests that started from another slot's prefix (slot_choice.h)
  uint64_t prompt_tokens = 0, tokens_reused = 0, oracle_tokens = 0, tokens_prefilled = 0;
  uint64_t bytes_written = 0, bytes_read = 0;  // real bytes (scaled back)
  uint64_t stores = 0, stores_skipped = 0, superseded_dropped = 0, own_writes_evicted = 0;
  uint64_t evictions = 0, wrong_states = 0;
  std::map<std::string, uint64_t> stores_by_reason, evictions_by_reason;
  // At the end (after the final shutdown stores).
  uint64_t final_disk_bytes = 0;
  size_t final_entries = 0, final_chunks = 0;
  std::vector<uint32_t> cached;  // per request
  std::vector<uint32_t> oracle;  // per request
  double hit_rate() const { return requests ? double(hits) / requests : 0; }
  double reuse_ratio() const { return oracle_tokens ? double(tokens_reused) / oracle_tokens : 0; }
};

// For each request: the longest common prefix with any earlier request (restarts ignored).
std::vector<uint32_t> oracle_reuse(const std::vector<TraceRecord>& trace);

ReplayResult run_replay(const std::vector<TraceRecord>& trace, const ReplayConfig& cfg);

}  // namespace kvstash::replay
