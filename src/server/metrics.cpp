#include "server/metrics.h"

#include <utility>
#include <vector>

namespace kvstash::server {

namespace {

// One family: HELP and TYPE once, then all its samples together (the text format refuses a
// family named twice or split by another).
using Samples = std::vector<std::pair<std::string, uint64_t>>;  // {labels, value}
void family(std::string& out, const char* name, const char* type, const char* help,
            const Samples& samples) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  for (const auto& [labels, value] : samples) {
    out += std::string(name) + labels + " " + std::to_string(value) + "\n";
  }
}
void metric(std::string& out, const char* name, const char* type, const char* help,
            uint64_t value) {
  family(out, name, type, help, {{"", value}});
}

}  // namespace

std::string prometheus_metrics(SlotPool& pool, cache::PrefixCache* cache, int n_slots, bool ready) {
  std::string out;
  metric(out, "kvstash_ready", "gauge",
         "1 while the server takes new work (GET /ready), 0 once it drains or shuts down.",
         ready ? 1 : 0);
  auto& c = pool.counters();
  metric(out, "kvstash_requests_total", "counter", "Requests executed by the slots.", c.requests);
  metric(out, "kvstash_requests_cancelled_total", "counter", "Requests cancelled (client gone).",
         c.cancelled);
  metric(out, "kvstash_prompt_tokens_total", "counter", "Prompt tokens received.", c.prompt_tokens);
  metric(out, "kvstash_tokens_reused_total", "counter",
         "Prompt tokens not prefilled (restored from the cache or kept from a live state).",
         c.cached_tokens);
  metric(out, "kvstash_tokens_prefilled_total", "counter", "Prompt tokens prefilled.",
         c.prefilled_tokens);
  metric(out, "kvstash_tokens_generated_total", "counter", "Tokens generated.", c.generated_tokens);
  metric(out, "kvstash_slot_forks_total", "counter",
         "Requests that started from a prefix copied out of another slot's live state.", c.forks);
  metric(out, "kvstash_slot_evictions_total", "counter",
         "Live states cut or dropped to serve another request (not all a prefix of its prompt).",
         c.evictions);
  metric(out, "kvstash_slots", "gauge", "Slots.", static_cast<uint64_t>(n_slots));
  metric(out, "kvstash_slots_busy", "gauge", "Slots executing a request.",
         static_cast<uint64_t>(pool.busy()));
  const auto d = pool.decode_stats();
  metric(out, "kvstash_decode_steps_total", "counter",
         "Decode steps (one llama_decode for the next token of every generating slot).", d.steps);
  metric(out, "kvstash_decode_step_tokens_total", "counter",
         "Tokens those steps decoded (divided by the steps: the mean batch).", d.tokens);
  if (!cache) return out;
  const auto s = cache->stats();
  metric(out, "kvstash_cache_hits_total", "counter", "Requests restored from the cache.", s.hits);
  metric(out, "kvstash_cache_misses_total", "counter", "Requests the cache had nothing for.",
         s.misses);
  metric(out, "kvstash_cache_tokens_restored_total", "counter", "Tokens restored from the cache.",
         s.tokens_reused);
  family(out, "kvstash_cache_bytes", "gauge", "Bytes stored per tier.",
         {{"{tier=\"disk\"}", s.disk_bytes},
          {"{tier=\"ram\"}", s.ram_bytes},
          {"{tier=\"vram\"}", s.vram_bytes}});
  // Disk I/O, and the remote tier's when there is one.
  Samples written = {{"{tier=\"disk\"}", s.bytes_written}};
  Samples read = {{"{tier=\"disk\"}", s.bytes_read}};
  if (s.remote) {
    written.push_back({"{tier=\"remote\"}", s.remote->write_bytes});
    read.push_back({"{tier=\"remote\"}", s.remote->read_bytes});
  }
  family(out, "kvstash_cache_bytes_written_total", "counter", "Bytes written per tier.", written);
  family(out, "kvstash_cache_bytes_read_total", "counter", "Bytes read per tier.", read);
  metric(out, "kvstash_cache_entries", "gauge", "Entries (checkpoints) in the cache.", s.entries);
  metric(out, "kvstash_cache_chunks", "gauge", "KV chunks in the cache.", s.chunks);
  metric(out, "kvstash_cache_stores_total", "counter", "Stores written.", s.stores);
  metric(out, "kvstash_cache_stores_skipped_total", "counter",
         "Stores skipped (budget could not be met without evicting themselves, or write errors).",
         s.stores_skipped);
  metric(out, "kvstash_cache_damaged_total", "counter", "Damaged objects detected and removed.",
         s.damaged);
  Samples dropped;
  for (const char* reason : {"queue-full", "demote-queue-full"}) {
    auto it = s.stores_dropped.find(reason);
    dropped.push_back({std::string("{reason=\"") + reason + "\"}",
                       it == s.stores_dropped.end() ? 0 : it->second});
  }
  family(out, "kvstash_cache_stores_dropped_total", "counter",
         "Stores not made because the store queue was full, by reason.", dropped);
  metric(out, "kvstash_cache_store_queue_bytes", "gauge",
         "Bytes of stores waiting to be written (--cache-store-queue bounds it).",
         s.store_queue_bytes);
  Samples evictions;
  for (const char* reason : {"disk-cache-full", "ram-cache-full"}) {
    auto it = s.evictions_by_reason.find(reason);
    evictions.push_back({std::string("{reason=\"") + reason + "\"}",
                         it == s.evictions_by_reason.end() ? 0 : it->second});
  }
  family(out, "kvstash_cache_evictions_total", "counter", "Objects evicted, by reason.", evictions);
  Samples choices;
  for (const char* c : {"live", "vram", "ram", "disk", "remote", "recompute"}) {
    auto it = s.plan_choices.find(c);
    choices.push_back(
        {std::string("{choice=\"") + c + "\"}", it == s.plan_choices.end() ? 0 : it->second});
  }
  family(out, "kvstash_cache_plan_choices_total", "counter",
         "Restore-or-recompute decisions: where the chosen start came from.", choices);
  const auto buffers = cache->pool().stats();
  family(out, "kvstash_cache_buffer_bytes", "gauge",
         "Payload buffer memory (pinned on GPU builds): in use, and idle kept for reuse.",
         {{"{state=\"used\"}", buffers.live_bytes}, {"{state=\"idle\"}", buffers.idle_bytes}});
  Samples io;
  for (const char* op : {"write", "dir-fsync", "stats-write", "demote"}) {
    auto it = s.io_errors.find(op);
    io.push_back({std::string("{op=\"") + op + "\"}", it == s.io_errors.end() ? 0 : it->second});
  }
  family(out, "kvstash_cache_io_errors_total", "counter",
         "Failed cache I/O that did not fail a request (each is logged), by operation.", io);
  if (s.remote) {
    const auto& r = *s.remote;
    metric(out, "kvstash_cache_remote_up", "gauge", "1 while the remote tier answers.", r.up);
    metric(out, "kvstash_cache_remote_writes_total", "counter",
           "Objects written to the remote tier.", r.writes);
    metric(out, "kvstash_cache_remote_reads_total", "counter", "Objects read from the remote tier.",
           r.reads);
    metric(out, "kvstash_cache_remote_dropped_total", "counter",
           "Remote writes dropped (queue full or remote down).", r.dropped);
    metric(out, "kvstash_cache_remote_errors_total", "counter", "Remote tier errors.", r.errors);
    metric(out, "kvstash_cache_remote_damaged_total", "counter",
           "Damaged remote objects detected and deleted.", r.damaged);
    metric(out, "kvstash_cache_remote_rejected_total", "counter",
           "Remote values refused: objects without a valid fleet-key tag (deleted), malformed "
           "listing members.",
           r.rejected);
    metric(out, "kvstash_cache_remote_pending_bytes", "gauge", "Remote writes queued.",
           r.pending_bytes);
  }
  out += cache->store_latency().prometheus(
      "kvstash_cache_store_seconds",
      "Time a store held its request (copy out of the engine, queueing; "
      "the write happens behind it).");
  out += cache->load_latency().prometheus("kvstash_cache_load_seconds",
                                          "Time to restore a prefix (read and load).");
  return out;
}

}  // namespace kvstash::server
