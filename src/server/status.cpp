#include "server/status.h"

#include <chrono>
#include <map>
#include <optional>

namespace kvstash::server {

using nlohmann::json;

namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json counts(const std::map<std::string, uint64_t>& m, std::initializer_list<const char*> keys) {
  json j = json::object();
  for (const char* k : keys) j[k] = 0;  // the known keys always, so the page shows zeros
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

uint64_t hits(const RequestTotals& t, const char* source) {
  auto it = t.hits_by_source.find(source);
  return it == t.hits_by_source.end() ? 0 : it->second;
}

json request_json(const RequestRecord& r) {
  json stores = json::array();
  for (const auto& s : r.stores) {
    stores.push_back(
        {{"reason", s.reason}, {"outcome", s.outcome}, {"tokens", s.tokens}, {"bytes", s.bytes}});
  }
  return {{"id", r.id},
          {"endpoint", r.endpoint},
          {"started_ms", r.started_ms},
          {"finished_ms", r.finished_ms},
          {"slot", r.slot},
          {"prompt_tokens", r.prompt_tokens},
          {"cached_tokens", r.cached_tokens},
          {"prefilled_tokens",
           r.slot >= 0 && r.finish_reason != "error" ? r.prompt_tokens - r.cached_tokens : 0},
          {"completion_tokens", r.completion_tokens},
          {"cache_source", r.cache_source},
          {"restore_ms", r.restore_ms},
          {"prefill_ms", r.prefill_ms},
          {"ttft_ms", r.ttft_ms},
          {"total_ms", r.total_ms},
          {"saved_ms", r.saved_ms},
          {"finish_reason", r.finish_reason},
          {"stores", stores},
          {"session", r.session},
          {"session_source", r.session_source}};
}

}  // namespace

json status_json(SlotPool& pool, cache::PrefixCache* cache, const RequestLog& log,
                 const StatusInfo& info) {
  const auto snap = log.snapshot();
  const int64_t now = unix_ms();
  json j;
  j["model"] = info.model_id;
  j["now_ms"] = now;
  j["started_ms"] = info.started_ms;
  j["uptime_s"] = (now - info.started_ms) / 1000.0;

  // Tiers, fastest first, only those configured. Hits are requests whose reused tokens the tier
  // served (a restore that read from several tiers counts for the slowest one it read from).
  json tiers = json::array();
  std::optional<cache::CacheStats> st;
  if (cache) {
    st = cache->stats();
    const auto& cfg = cache->config();
    if (st->vram_budget > 0) {
      tiers.push_back({{"name", "vram"},
                       {"bytes", st->vram_bytes},
                       {"budget", st->vram_budget},
                       {"objects", st->vram_objects},
                       {"hits", hits(snap.totals, "vram")},
                       {"device", st->vram_device}});
    }
    if (cfg.ram_budget > 0) {
      tiers.push_back({{"name", "ram"},
                       {"bytes", st->ram_bytes},
                       {"budget", cfg.ram_budget},
                       {"objects", st->ram_objects},
                       {"hits", hits(snap.totals, "ram")}});
    }
    if (!cfg.dir.empty()) {
      tiers.push_back({{"name", "disk"},
                       {"bytes", st->disk_bytes},
                       {"budget", cfg.disk_budget},
                       {"objects", st->disk_objects},
                       {"hits", hits(snap.totals, "disk")},
                       {"dir", cfg.dir}});
    }
    if (st->remote) {
      // Redis' maxmemory is this tier's budget, and its used bytes are Redis' to know: the page
      // shows what this server moved instead. The URL is left out (it may carry a password).
      tiers.push_back({{"name", "remote"},
                       {"up", st->remote->up},
                       {"bytes", nullptr},
                       {"budget", nullptr},
                       {"objects", st->remote_objects},
                       {"hits", hits(snap.totals, "remote")},
                       {"bytes_written", st->remote->write_bytes},
                       {"bytes_read", st->remote->read_bytes},
                       {"pending_bytes", st->remote->pending_bytes},
                       {"dropped", st->remote->dropped}});
    }
  }
  j["tiers"] = tiers;

  const auto& t = snap.totals;
  json totals = {
      {"requests", t.requests},
      {"errors", t.errors},
      {"cancelled", t.cancelled},
      {"prompt_tokens", t.prompt_tokens},
      {"cached_tokens", t.cached_tokens},
      {"prefilled_tokens", t.prefilled_tokens},
      {"completion_tokens", t.completion_tokens},
      {"hits_by_source", counts(t.hits_by_source, {"live", "fork", "ram", "disk", "remote"})},
      {"saved_ms", t.saved_ms},
      {"restore_ms", t.restore_ms},
      {"prefill_ms", t.prefill_ms}};
  if (st) {
    totals["cache"] = {
        {"hits", st->hits},
        {"misses", st->misses},
        {"chunks", st->chunks},
        {"entries", st->entries},
        {"stores", st->stores},
        {"stores_skipped", st->stores_skipped},
        {"stores_by_reason",
         counts(st->stores_by_reason, {"cold", "continued", "evict", "shutdown", "scope"})},
        {"stores_dropped", counts(st->stores_dropped, {"queue-full", "demote-queue-full"})},
        {"evictions_by_reason",
         counts(st->evictions_by_reason, {"disk-cache-full", "ram-cache-full"})},
        {"store_queue_bytes", st->store_queue_bytes},
        {"store_queue_budget", st->store_queue_budget},
        {"damaged", st->damaged}};
  } else {
    totals["cache"] = nullptr;
  }
  j["totals"] = totals;

  json recent = json::array();
  for (const auto& r : snap.recent) recent.push_back(request_json(r));
  j["recent"] = recent;
  j["recent_capacity"] = snap.capacity;

  // Slots, with the request each is running (matched by the slot that took it).
  std::map<int, const InFlightRecord*> running;
  size_t queued = 0;
  for (const auto& f : snap.in_flight) {
    if (f.slot >= 0)
      running[f.slot] = &f;
    else
      ++queued;
  }
  json slots = json::array();
  for (const auto& s : pool.slots()) {
    json req = nullptr;
    std::string state = s.busy ? "busy" : "idle";
    if (auto it = running.find(s.id); it != running.end() && s.busy) {
      const InFlightRecord& f = *it->second;
      state = f.phase;
      req = {{"id", f.id},
             {"endpoint", f.endpoint},
             {"prompt_tokens", f.prompt_tokens},
             {"prefill_done", f.done},
             {"cached_tokens", f.cached},
             {"age_ms", now - f.started_ms},
             {"session", f.session}};
    }
    slots.push_back({{"id", s.id},
                     {"state", state},
                     {"live_tokens", s.live_tokens},
                     {"n_ctx", info.slot_ctx},
                     {"requests", s.requests},
                     {"request", req}});
  }
  j["slots"] = slots;
  j["queued"] = queued;
  return j;
}

}  // namespace kvstash::server
