// kvstash replay: trace parsing, the model-free engine's restore check, and replays of small
// traces through the real request flow and cache.
#include "replay/replay.h"

#include <gtest/gtest.h>

#include <numeric>
#include <sstream>

#include "replay/scenarios.h"
#include "replay/sim_engine.h"
#include "replay/trace.h"

using namespace kvstash;
using namespace kvstash::replay;

namespace {

std::vector<cache::Token> seq(cache::Token from, size_t n) {
  std::vector<cache::Token> t(n);
  std::iota(t.begin(), t.end(), from);
  return t;
}

TraceRecord req(std::vector<cache::Token> tokens, std::vector<uint32_t> boundaries = {},
                uint32_t anchor = 0, uint32_t gen = 0) {
  TraceRecord r;
  r.session = "s";
  r.tokens = std::move(tokens);
  r.boundaries = std::move(boundaries);
  r.anchor = anchor;
  r.gen = gen;
  return r;
}

std::string parse_error(const std::string& text) {
  std::istringstream in(text);
  try {
    read_trace(in, "t.jsonl");
  } catch (const TraceError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ReplayTrace, RoundTrips) {
  TraceRecord restart;
  restart.type = TraceRecord::Type::kRestart;
  const std::vector<TraceRecord> recs = {req({1, 2, 3, 4}, {0, 2}, 2, 16), restart,
                                         req({7}, {}, 0, 0)};
  std::stringstream ss;
  write_trace(ss, recs);
  EXPECT_EQ(read_trace(ss, "t"), recs);
}

TEST(ReplayTrace, ParsesTheDocumentedFormatWithDefaults) {
  std::istringstream in(
      "{\"type\":\"request\",\"session\":\"s1\",\"tokens\":[5,6,7],\"boundaries\":[0,1],"
      "\"anchor\":1,\"gen\":4}\n\n{\"type\":\"restart\"}\n{\"type\":\"request\",\"tokens\":[9]}\n");
  const auto t = read_trace(in, "t");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].session, "s1");
  EXPECT_EQ(t[0].tokens, (std::vector<cache::Token>{5, 6, 7}));
  EXPECT_EQ(t[0].anchor, 1u);
  EXPECT_EQ(t[0].gen, 4u);
  EXPECT_EQ(t[1].type, TraceRecord::Type::kRestart);
  EXPECT_EQ(t[2].gen, 0u);
  EXPECT_TRUE(t[2].boundaries.empty());
}

TEST(ReplayTrace, StrictErrorsNameTheLine) {
  const std::string ok = "{\"type\":\"request\",\"tokens\":[1,2]}\n";
  EXPECT_NE(parse_error(ok + "{not json\n").find("t.jsonl:2: not JSON"), std::string::npos);
  EXPECT_NE(parse_error(ok + ok + "{\"type\":\"request\",\"tokens\":[1],\"extra\":1}\n")
                .find("t.jsonl:3: unknown key \"extra\""),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"pause\"}").find("t.jsonl:1: unknown record type"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\"}").find("missing \"tokens\""), std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[]}").find("non-empty"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[1,-2]}").find("tokens[1]"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[1,2.5]}").find("tokens[1]"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[1,2,3],\"boundaries\":[0,2,1]}")
                .find("strictly ascending"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[1,2],\"boundaries\":[2]}")
                .find("not inside the prompt"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"request\",\"tokens\":[1,2],\"anchor\":3}").find("past"),
            std::string::npos);
  EXPECT_NE(parse_error("{\"type\":\"restart\",\"x\":1}").find("unknown key"), std::string::npos);
  EXPECT_NE(parse_error("[1,2]").find("JSON object"), std::string::npos);
}

// The KV of [begin, end) as a vector (the engine hands it out in a pool buffer).
std::vector<uint8_t> kv_of(SimEngine& e, uint32_t begin, uint32_t end) {
  BufferPool pool;
  const Payload p = e.extract_kv(begin, end, pool);
  return {p->span().begin(), p->span().end()};
}

TEST(ReplaySimEngine, RestoresOnlyTheBytesItsTokensProduce) {
  SimConfig cfg;
  cfg.chunk = 16;
  SimEngine e(cfg);
  const auto p = seq(100, 40);
  cache::PrefillPlan plan;
  ASSERT_TRUE(e.prefill(p, plan));
  EXPECT_EQ(e.prefilled(), 40u);
  const auto a = kv_of(e, 0, 16), b = kv_of(e, 16, 32);
  EXPECT_EQ(a.size(), 16 * cfg.unit());
  EXPECT_EQ(a, SimEngine::kv_bytes(cfg, p, 0, 16));

  SimEngine f(cfg);
  const std::vector<cache::Token> prefix(p.begin(), p.begin() + 32);
  cache::restore_parts(f, 0, {a, b}, {}, prefix, {});
  EXPECT_EQ(f.tokens(), prefix);
  EXPECT_EQ(f.wrong_states(), 0u);

  // The same bytes offered for other tokens (one differs), or out of order: a wrong state.
  auto other = prefix;
  other[20] = 7;
  EXPECT_THROW(cache::restore_parts(f, 0, {a, b}, {}, other, {}), std::runtime_error);
  EXPECT_THROW(cache::restore_parts(f, 0, {b, a}, {}, prefix, {}), std::runtime_error);
  EXPECT_THROW(cache::restore_parts(f, 0, {a}, {}, prefix, {}), std::runtime_error);
  EXPECT_EQ(f.wrong_states(), 3u);
  EXPECT_TRUE(f.tokens().empty());
}

TEST(ReplaySimEngine, HybridChecksTheRecurrentStateAndResumesOnlyAtSnapshots) {
  SimConfig cfg;
  cfg.chunk = 16;
  cfg.hybrid = true;
  SimEngine e(cfg);
  EXPECT_FALSE(e.resumes_anywhere());
  const auto p = seq(1, 20);
  std::vector<uint32_t> snaps;
  cache::PrefillPlan plan;
  plan.snapshot_at = {5, 20};
  plan.on_snapshot = [&](uint32_t pos) { snaps.push_back(pos); };
  ASSERT_TRUE(e.prefill(p, plan));
  EXPECT_EQ(snaps, (std::vector<uint32_t>{5, 20}));
  EXPECT_THROW(e.trim(10), std::logic_error);
  const auto kv = kv_of(e, 0, 20), state = e.partial_state();
  SimEngine f(cfg);
  cache::restore_parts(f, 0, {kv}, state, p, e.logits());
  EXPECT_EQ(f.tokens(), p);
  auto shorter = std::vector<cache::Token>(p.begin(), p.begin() + 19);
  EXPECT_THROW(cache::restore_parts(f, 0, {kv_of(e, 0, 19)}, state, shorter, {}),
               std::runtime_error)
      << "the state of 20 tokens served for 19";
  EXPECT_EQ(f.wrong_states(), 1u);
}

TEST(Replay, OracleIsTheLongestCommonPrefixWithAnyEarlierRequest) {
  TraceRecord restart;
  restart.type = TraceRecord::Type::kRestart;
  const std::vector<TraceRecord> t = {req({1, 2, 3, 4}),    req({1, 2, 9}),
                                      req({7, 7}),          restart,
                                      req({1, 2, 3, 5, 6}), req({1, 2, 3, 5, 6})};
  EXPECT_EQ(oracle_reuse(t), (std::vector<uint32_t>{0, 2, 0, 3, 5}));
}

TEST(Replay, RestartKeepsDiskEntries) {
  // Two long requests of one conversation around a restart: the second restores from disk.
  const auto p = seq(10, 3000);
  TraceRecord restart;
  restart.type = TraceRecord::Type::kRestart;
  auto longer = p;
  for (int i = 0; i < 500; ++i) longer.push_back(5000 + i);
  const std::vector<TraceRecord> t = {req(p, {0, 2500}, 2500, 8), restart,
                                      req(longer, {0, 2500, 3000}, 3000, 8)};
  ReplayConfig cfg;
  const auto r = run_replay(t, cfg);
  EXPECT_EQ(r.requests, 2u);
  EXPECT_EQ(r.restarts, 1u);
  ASSERT_EQ(r.cached.size(), 2u);
  EXPECT_EQ(r.cached[0], 0u);
  // The shutdown store before the restart (at the last batch break of the prefill: 2816, a
  // multiple of the chunk), found by the startup scan.
  EXPECT_EQ(r.cached[1], 2816u);
  EXPECT_EQ(r.oracle, (std::vector<uint32_t>{0, 3000}));
  EXPECT_EQ(r.hits, 1u);
  EXPECT_GE(r.stores_by_reason.at("shutdown"), 1u);
  EXPECT_EQ(r.tokens_prefilled, 3000u + (3500u - 2816u));
  EXPECT_EQ(r.wrong_states, 0u);
  EXPECT_GT(r.bytes_written, 3000ull * cfg.sim.bytes_per_token * 9 / 10);
}

TEST(Replay, PolicyOffNeitherRestoresNorStores) {
  const auto p = seq(10, 3000);
  ReplayConfig cfg;
  cfg.scope.kind = cache::Scope::Kind::kOff;
  const auto r = run_replay({req(p, {0}, 0, 4), req(seq(90000, 600)), req(p)}, cfg);
  EXPECT_EQ(r.hits, 0u);
  EXPECT_EQ(r.stores, 0u);
  EXPECT_EQ(r.bytes_written, 0u);
}

TEST(Replay, Issue157ThrashWithTheToggleAndNoneWithout) {
  const auto sc = make_scenario("issue157", 1);
  ReplayConfig cfg;
  cfg.disk_budget = 1600ull << 20;
  const auto after = run_replay(sc.trace, cfg);
  cfg.evict.protect_own_writes = false;
  const auto before = run_replay(sc.trace, cfg);
  EXPECT_EQ(after.own_writes_evicted, 0u);
  EXPECT_GT(before.own_writes_evicted, 0u);
  EXPECT_GE(after.tokens_reused, before.tokens_reused);
  EXPECT_LT(after.bytes_written, before.bytes_written);
  EXPECT_EQ(after.wrong_states + before.wrong_states, 0u);
}

TEST(Replay, EveryScenarioServesNoWrongState) {
  for (const auto& name : scenario_names()) {
    const auto sc = make_scenario(name, 2);
    ReplayConfig cfg;
    cfg.sim.hybrid = sc.hybrid;
    cfg.disk_budget = 4ull << 30;
    const auto r = run_replay(sc.trace, cfg);
    EXPECT_EQ(r.wrong_states, 0u) << name;
    EXPECT_GT(r.requests, 0u) << name;
    EXPECT_LE(r.tokens_reused, r.prompt_tokens) << name;
  }
}

TEST(Replay, SecondSessionForksTheSharedPrefixAndTheFirstStaysLive) {
  // Two slots; sessions A and B share a 1000-token system prompt. B forks it out of A's slot into
  // the empty one, so A's next turn finds its own state live on its slot.
  const auto sys = seq(10, 1000);
  auto a1 = sys, b1 = sys;
  for (cache::Token t : seq(50000, 300)) a1.push_back(t);
  for (cache::Token t : seq(60000, 300)) b1.push_back(t);
  auto a2 = a1;
  for (cache::Token t : seq(70000, 200)) a2.push_back(t);
  ReplayConfig cfg;
  cfg.slots = 2;
  const auto r = run_replay(
      {req(a1, {0, 1000}, 1000, 8), req(b1, {0, 1000}, 1000, 8), req(a2, {0, 1000, 1300}, 1300, 8)},
      cfg);
  ASSERT_EQ(r.cached.size(), 3u);
  EXPECT_EQ(r.cached[1], 1000u) << "the system prompt, forked";
  // A's state is whole on its slot: it resumes at the last break both prompts share (1280, a
  // chunk multiple), where a cut slot would have kept only the system prompt.
  EXPECT_EQ(r.cached[2], 1280u);
  EXPECT_EQ(r.live_hits, 2u);
  EXPECT_EQ(r.forks, 1u);
  EXPECT_EQ(r.stores_by_reason.count("evict"), 0u);
  EXPECT_EQ(r.wrong_states, 0u);
}

TEST(Replay, ANextTurnDroppingOnlyDecodedTokensContinuesItsSlot) {
  // The live state ends with 8 decoded tokens the next prompt does not repeat: those are never
  // reused anyway, so the turn continues on its slot rather than forking into the empty one.
  auto a1 = seq(10, 1300), a2 = a1;
  for (cache::Token t : seq(70000, 200)) a2.push_back(t);
  ReplayConfig cfg;
  cfg.slots = 2;
  const auto r = run_replay({req(a1, {0, 1000}, 1000, 8), req(a2, {0, 1000, 1300}, 1300, 8)}, cfg);
  EXPECT_EQ(r.forks, 0u);
  EXPECT_EQ(r.live_hits, 1u);
  ASSERT_EQ(r.cached.size(), 2u);
  EXPECT_EQ(r.cached[1], 1280u);
}
