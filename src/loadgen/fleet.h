// Fleet benchmark accounting: which instance and tier served each request, and what a run adds up
// to (requests per instance, live hits after each session's first turn, failures after the kill,
// ratios between runs). Pure functions over plain data; `kvstash bench --fleet N` reports them.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvstash::loadgen {

// Where a request's cached tokens came from; kRecompute when it had none.
// kFork: another slot's live state copied on the instance (a session's first turn sharing a
// system prompt with one already there).
enum class Tier { kLive, kFork, kVram, kRam, kDisk, kRemote, kRecompute };
const char* tier_name(Tier t);
// Whether the tier is the serving instance's own (live, vram, ram, disk), not shared or none.
bool local_tier(Tier t);

// No cached tokens is a recompute; otherwise a named source (kvstash's `cache_source`) is the
// tier, a name outside the tiers counts as a recompute, and a server that names none
// (llama-server) served them from its own slot or prompt cache: live.
Tier classify_tier(const std::string& cache_source, int cached_tokens);

// One request as the fleet saw it.
struct FleetRequest {
  std::string session;
  std::string instance;  // HAProxy's X-Served-By ("inst2"); empty when no answer came
  Tier tier = Tier::kRecompute;
  bool ok = false;
};

struct FleetSummary {
  std::map<std::string, size_t> per_instance;  // answered requests by instance
  std::map<std::string, size_t> per_tier;      // answered requests by tier name
  size_t after_first = 0;        // answered requests that were not their session's first
  size_t live_after_first = 0;   // ... of them served live
  size_t local_after_first = 0;  // ... served from the instance's own tiers (live, vram, ram, disk)
  // The same two, counting only requests sent before the kill (failover moves sessions).
  size_t after_first_before_kill = 0, live_after_first_before_kill = 0;
  size_t failed = 0, failed_after_kill = 0;
  size_t sessions = 0;
  size_t sessions_on_one_instance = 0;    // sessions whose requests before the kill all had one
                                          // instance (sessions with none before it count as such)
  double live_share() const;              // live_after_first / after_first (0 when none)
  double local_share() const;             // local_after_first / after_first (0 when none)
  double live_share_before_kill() const;  // the same before the kill
};

// `kill_at`: the number of requests sent before the kill (requests.size() when none).
FleetSummary summarize_fleet(const std::vector<FleetRequest>& requests, size_t kill_at);

// Total TTFT of a run over another's; nullopt when either run is missing or failed (absent from
// `ttft_by_run`) or the divisor is 0.
std::optional<double> ttft_ratio(const std::map<std::string, double>& ttft_by_run,
                                 const std::string& run, const std::string& over);

}  // namespace kvstash::loadgen
