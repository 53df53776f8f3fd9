#include "loadgen/fleet.h"

#include <set>

namespace kvstash::loadgen {

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::kLive:
      return "live";
    case Tier::kFork:
      return "fork";
    case Tier::kVram:
      return "vram";
    case Tier::kRam:
      return "ram";
    case Tier::kDisk:
      return "disk";
    case Tier::kRemote:
      return "remote";
    case Tier::kRecompute:
      break;
  }
  return "recompute";
}

bool local_tier(Tier t) { return t != Tier::kRemote && t != Tier::kRecompute; }

Tier classify_tier(const std::string& cache_source, int cached_tokens) {
  if (cached_tokens <= 0) return Tier::kRecompute;
  for (Tier t : {Tier::kLive, Tier::kFork, Tier::kVram, Tier::kRam, Tier::kDisk, Tier::kRemote}) {
    if (cache_source == tier_name(t)) return t;
  }
  return cache_source.empty() ? Tier::kLive : Tier::kRecompute;
}

double FleetSummary::live_share() const {
  return after_first ? static_cast<double>(live_after_first) / after_first : 0;
}

double FleetSummary::local_share() const {
  return after_first ? static_cast<double>(local_after_first) / after_first : 0;
}

double FleetSummary::live_share_before_kill() const {
  return after_first_before_kill
             ? static_cast<double>(live_after_first_before_kill) / after_first_before_kill
             : 0;
}

FleetSummary summarize_fleet(const std::vector<FleetRequest>& requests, size_t kill_at) {
  FleetSummary s;
  std::set<std::string> seen;
  std::map<std::string, std::set<std::string>> instances_before_kill;
  for (size_t i = 0; i < requests.size(); ++i) {
    const FleetRequest& r = requests[i];
    const bool before_kill = i < kill_at;
    const bool first = seen.insert(r.session).second;
    if (!r.ok) {
      ++s.failed;
      if (!before_kill) ++s.failed_after_kill;
      continue;
    }
    ++s.per_instance[r.instance];
    ++s.per_tier[tier_name(r.tier)];
    if (before_kill) instances_before_kill[r.session].insert(r.instance);
    if (first) continue;
    const bool live = r.tier == Tier::kLive;
    ++s.after_first;
    s.live_after_first += live;
    s.local_after_first += local_tier(r.tier);
    if (before_kill) {
      ++s.after_first_before_kill;
      s.live_after_first_before_kill += live;
    }
  }
  s.sessions = seen.size();
  s.sessions_on_one_instance = s.sessions;
  for (const auto& [session, insts] : instances_before_kill) {
    if (insts.size() > 1) --s.sessions_on_one_instance;
  }
  return s;
}

std::optional<double> ttft_ratio(const std::map<std::string, double>& ttft_by_run,
                                 const std::string& run, const std::string& over) {
  const auto a = ttft_by_run.find(run), b = ttft_by_run.find(over);
  if (a == ttft_by_run.end() || b == ttft_by_run.end() || b->second <= 0) return std::nullopt;
  return a->second / b->second;
}

}  // namespace kvstash::loadgen
