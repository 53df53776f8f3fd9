// The status document: everything the status page shows, as one JSON object (GET /status.json).
//
// Built from what the server already keeps in memory: the cache's stats() (tier byte counts are
// kept incrementally, the index walk happens under its mutex only), the slot pool's counters and
// slot list, and the request log. Nothing here reads a file or talks to Redis, so the endpoint
// answers while every slot is busy and the disk is slow. The fields are listed in README.md
// ("Status page").
//
// The document is the operator's and lists every tenant's requests. What it shows of a request
// depends only on the data of that request's own cache_salt: the slot that served it (chosen by
// cache::reusable_prefix), what it reused (salted keys) and the stores it reports (its own salt's
// only: cache::RequestFlow), so no tenant can read another's prompts off its own entries.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "cache/prefix_cache.h"
#include "server/request_log.h"
#include "server/slot_pool.h"

namespace kvstash::server {

struct StatusInfo {
  std::string model_id;
  int slot_ctx = 0;
  int64_t started_ms = 0;  // Unix time the server started
};

nlohmann::json status_json(SlotPool& pool, cache::PrefixCache* cache, const RequestLog& log,
                           const StatusInfo& info);

}  // namespace kvstash::server
