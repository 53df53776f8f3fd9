// GET /metrics: Prometheus text exposition of the server and cache counters.
#pragma once

#include <string>

#include "cache/prefix_cache.h"
#include "server/slot_pool.h"

namespace kvstash::server {

// `ready`: what GET /ready says (kvstash_ready 1 or 0).
std::string prometheus_metrics(SlotPool& pool, cache::PrefixCache* cache, int n_slots, bool ready);

}  // namespace kvstash::server
