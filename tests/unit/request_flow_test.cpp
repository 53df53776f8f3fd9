// The request flow (cache/request_flow.h) over the real cache and tiers, driven by replay's
// model-free engine, which refuses any state whose bytes are not its tokens' own.
#include "cache/request_flow.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "cache/entry_payload.h"
#include "replay/sim_engine.h"
#include "temp_dir.h"

using namespace kvstash;
using namespace kvstash::cache;
using replay::SimConfig;
using replay::SimEngine;
namespace fs = std::filesystem;

namespace {

std::vector<Token> seq(Token from, size_t n) {
  std::vector<Token> t(n);
  std::iota(t.begin(), t.end(), from);
  return t;
}

std::array<uint8_t, 16> fp() {
  std::array<uint8_t, 16> f;
  f.fill(3);
  return f;
}

CacheConfig cache_cfg(const std::string& dir, const SimConfig& sim) {
  CacheConfig c;
  c.dir = dir;
  c.chunk = sim.chunk;
  return c;
}

StoreConfig store_cfg() {
  StoreConfig s;
  s.min_tokens = 256;
  s.boundary_align = 256;
  s.continued_interval = 0;
  return s;
}

PromptInfo restore_only() {
  PromptInfo info;
  info.policy.checkpoints = false;
  return info;
}

size_t files_under(const std::string& dir) {
  size_t n = 0;
  for (const auto& de : fs::recursive_directory_iterator(dir)) n += de.is_regular_file();
  return n;
}

}  // namespace

// After a failed request the server clears the slot: the flow must forget the state with it, or
// the shutdown store would read tokens the engine no longer holds.
TEST(RequestFlow, ResetForgetsTheLiveStateSoShutdownStoresNothing) {
  fixtures::TempDir t;
  const SimConfig sim;
  PrefixCache c(cache_cfg(t.path, sim), fp());
  auto sc = store_cfg();
  sc.cold_max_tokens = 0;  // no cold store: the live state is the only copy
  const auto prompt = seq(1, 1000);
  PromptInfo full;

  SimEngine a(sim);
  RequestFlow fa(a, &c, sc);
  fa.prefill(prompt, full);
  a.clear();  // what the server did before: the engine forgot, the flow did not
  EXPECT_THROW(fa.shutdown(), std::logic_error);
  EXPECT_EQ(c.stats().stores, 0u);

  SimEngine b(sim);
  RequestFlow fb(b, &c, sc);
  fb.prefill(prompt, full);
  fb.reset();
  EXPECT_TRUE(b.tokens().empty());
  fb.shutdown();
  EXPECT_EQ(c.stats().stores, 0u) << "nothing is left to store";
  // The slot goes on from a clean state.
  const auto r = fb.prefill(prompt, full);
  EXPECT_EQ(r.cached_tokens, 0u);
  EXPECT_EQ(b.tokens(), prompt);
  fb.shutdown();
  EXPECT_EQ(c.stats().stores, 1u);
  EXPECT_EQ(c.plan(prompt, {}).resume_at, 768u);
}
