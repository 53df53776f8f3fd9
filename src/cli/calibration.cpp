#include "cli/calibration.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "util/log.h"

namespace kvstash::cli {

double calibrate_prefill(engine::Session& s, cache::RateModel& rates, int tokens) {
  const int chunk = s.options().chunk;
  tokens = std::min(tokens, s.options().n_ctx) / chunk * chunk;
  if (tokens < 2 * chunk) return 0;
  // Tokens of the vocabulary's ordinary range; their values do not change the speed.
  std::vector<engine::Token> toks(static_cast<size_t>(tokens));
  for (int i = 0; i < tokens; ++i) toks[static_cast<size_t>(i)] = 10 + (i * 7) % 1000;
  s.clear();
  s.prefill({toks.begin(), toks.begin() + chunk});
  const auto t0 = std::chrono::steady_clock::now();
  s.prefill(toks);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.clear();
  if (secs <= 0) return 0;
  rates.seed_prefill(static_cast<uint32_t>(chunk), static_cast<uint32_t>(tokens), secs);
  const double rate = (tokens - chunk) / secs;
  char line[160];
  std::snprintf(line, sizeof line,
                "kv cache calibration: prefill %d tokens in %.1f ms (%.0f tokens/s), the "
                "estimate's seed until requests measure it",
                tokens - chunk, secs * 1e3, rate);
  log::info(line);
  return rate;
}

}  // namespace kvstash::cli
