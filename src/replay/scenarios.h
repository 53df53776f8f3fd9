// Synthetic, model-free traces for `kvstash replay --scenario NAME`: one per seed bug of SPEC
// sections 3-5, named like replay's --before values (issue157, pr175, pr394, pr448; pr364 for the
// scope policy; each scenario's comment in scenarios.cpp says what it exercises) and a mixed agent
// workload.
// Tokens are random ids (seeded), laid out as chat messages with their boundaries and anchors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replay/trace.h"

namespace kvstash::replay {

struct Scenario {
  std::string name, about;
  std::vector<TraceRecord> trace;
  std::string budget = "40G";         // what it shows best with (used when --budget is absent)
  bool hybrid = false;                // likewise for --hybrid
  std::string before;                 // the seed toggle it demonstrates (--before), "" for none
  std::vector<std::string> policies;  // likewise for --policy
};

std::vector<std::string> scenario_names();
// Throws std::invalid_argument for an unknown name.
Scenario make_scenario(const std::string& name, uint64_t seed);

}  // namespace kvstash::replay
