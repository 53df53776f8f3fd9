// The request flow (cache/request_flow.h) over the real cache and tiers, driven by replay's
// model-free engine, which refuses any state whose bytes are not its tokens' own.
#include "cache/request_flow.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>
#include <system_error>
#include <utility>

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
  c.estimate = false;  // the model-free engine prefills in no time: nothing to estimate
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

// The model-free engine, whose restore steps fail with `fault` (once) when it is set: a failure
// that says nothing about the bytes.
class FlakyEngine final : public KvEngine {
 public:
  explicit FlakyEngine(const SimConfig& sim) : e_(sim) {}
  std::exception_ptr fault;

  uint32_t chunk() const override { return e_.chunk(); }
  bool resumes_anywhere() const override { return e_.resumes_anywhere(); }
  const std::vector<Token>& tokens() const override { return e_.tokens(); }
  const std::vector<float>& logits() const override { return e_.logits(); }
  void trim(size_t n) override { e_.trim(n); }
  void clear() override { e_.clear(); }
  Payload extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) override {
    return e_.extract_kv(begin, end, pool);
  }
  std::vector<uint8_t> partial_state() const override { return e_.partial_state(); }
  bool prefill(const std::vector<Token>& prompt, const PrefillPlan& plan) override {
    return e_.prefill(prompt, plan);
  }
  void restore_begin(uint32_t keep, uint32_t from) override { e_.restore_begin(keep, from); }
  void restore_kv(std::span<const uint8_t> section) override {
    if (auto f = std::exchange(fault, nullptr)) std::rethrow_exception(f);
    e_.restore_kv(section);
  }
  void restore_sync() override { e_.restore_sync(); }
  void restore_end(std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                   const std::vector<float>& logits) override {
    e_.restore_end(partial, tokens, logits);
  }

 private:
  SimEngine e_;
};

}  // namespace

TEST(RestoreFailure, AnObjectGoneIsGone) {
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(FetchFailed("gone"))),
            RestoreOutcome::kGone);
}

TEST(RestoreFailure, TheEnginesVerdictOnTheBytesIsARefusal) {
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(StateRefused("layout"))),
            RestoreOutcome::kRefused);
}

TEST(RestoreFailure, OutOfMemoryIsTransient) {
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(std::bad_alloc())),
            RestoreOutcome::kTransient);
}

TEST(RestoreFailure, AThreadThatCouldNotStartIsTransient) {
  const std::system_error e(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "std::async");
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(e)), RestoreOutcome::kTransient);
}

TEST(RestoreFailure, AnyOtherErrorIsTransient) {
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(std::runtime_error("redis"))),
            RestoreOutcome::kTransient);
  EXPECT_EQ(classify_restore_failure(std::make_exception_ptr(std::logic_error("misuse"))),
            RestoreOutcome::kTransient);
}

// A restore that fails for a reason that says nothing about the bytes (out of memory, a thread
// that could not start) recomputes the request and keeps the cached state, for this request's
// next turn and for every other process.
TEST(RequestFlow, TransientRestoreFailureRecomputesAndKeepsTheData) {
  for (auto fault :
       {std::make_exception_ptr(std::bad_alloc()),
        std::make_exception_ptr(std::system_error(
            std::make_error_code(std::errc::resource_unavailable_try_again), "std::async"))}) {
    fixtures::TempDir t;
    const SimConfig sim;
    PrefixCache c(cache_cfg(t.path, sim), fp());
    const auto prompt = seq(1, 1000);
    SimEngine a(sim);
    RequestFlow fa(a, &c, store_cfg());
    PromptInfo full;
    fa.prefill(prompt, full);  // stores the cold anchor
    ASSERT_TRUE(c.drain(-1));
    ASSERT_EQ(c.plan(prompt, {}).resume_at, 768u);
    const size_t files = files_under(t.path);

    FlakyEngine b(sim);
    b.fault = fault;
    RequestFlow fb(b, &c, store_cfg());
    const auto rb = fb.prefill(prompt, restore_only());
    EXPECT_EQ(rb.cached_tokens, 0u);
    EXPECT_EQ(rb.restore_errors, 1u);
    EXPECT_EQ(rb.restore_failures, 0u);
    EXPECT_EQ(b.tokens(), prompt) << "the request was prefilled instead";
    EXPECT_EQ(c.stats().damaged, 0u);
    EXPECT_EQ(c.plan(prompt, {}).resume_at, 768u) << "valid data was removed";
    ASSERT_TRUE(c.drain(-1));
    EXPECT_EQ(files_under(t.path), files);

    SimEngine d(sim);
    RequestFlow fd(d, &c, store_cfg());
    const auto rd = fd.prefill(prompt, restore_only());
    EXPECT_EQ(rd.cached_tokens, 768u);
    EXPECT_EQ(d.wrong_states(), 0u);
  }
}

// A faulty writer stored bytes that pass every checksum but are another prefix's KV: the engine
// refuses them once, and they are gone, not loaded and refused again on every request.
TEST(RequestFlow, PrefixTheEngineRefusesIsRemovedAndNeverPlannedAgain) {
  fixtures::TempDir t;
  const SimConfig sim;
  PrefixCache c(cache_cfg(t.path, sim), fp());
  const auto prompt = seq(1, 1000), other = seq(5000, 1000);
  PrefixCache::StoreRequest req;
  req.tokens = std::span(prompt).first(768);
  req.chunk_payload = [&](uint32_t i) {
    return Payload(
        c.pool().copy(SimEngine::kv_bytes(sim, other, i * sim.chunk, (i + 1) * sim.chunk)));
  };
  req.entry_payload = [&] { return Payload(c.pool().copy(encode_entry_payload({}))); };
  ASSERT_TRUE(c.store(req).stored);
  ASSERT_TRUE(c.drain(-1));
  ASSERT_EQ(c.plan(prompt, {}).resume_at, 768u);

  SimEngine a(sim);
  RequestFlow fa(a, &c, store_cfg());
  const auto ra = fa.prefill(prompt, restore_only());
  EXPECT_EQ(ra.restore_failures, 1u) << "the refused prefix was loaded again";
  EXPECT_EQ(ra.cached_tokens, 0u);
  EXPECT_EQ(a.wrong_states(), 1u);
  EXPECT_EQ(a.tokens(), prompt) << "the request was prefilled instead";
  EXPECT_EQ(c.plan(prompt, {}).resume_at, 0u);
  EXPECT_EQ(c.stats().damaged, 3u) << "the plan's 3 chunks";
  ASSERT_TRUE(c.drain(-1));
  EXPECT_EQ(files_under(t.path), 0u) << "the entry below them is an orphan now";

  // The next request (another slot) does not try them again.
  SimEngine b(sim);
  RequestFlow fb(b, &c, store_cfg());
  PromptInfo full;
  const auto rb = fb.prefill(prompt, full);  // stores the anchor from its own prefill
  EXPECT_EQ(rb.restore_failures, 0u);
  EXPECT_EQ(b.wrong_states(), 0u);

  // What a fresh prefill stores under the same keys is served.
  SimEngine d(sim);
  RequestFlow fd(d, &c, store_cfg());
  const auto rd = fd.prefill(prompt, restore_only());
  EXPECT_EQ(rd.restore_failures, 0u);
  EXPECT_EQ(rd.cached_tokens, 768u);
  EXPECT_EQ(d.wrong_states(), 0u);
  EXPECT_EQ(d.tokens(), prompt);
}

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

// Turn stores (--cache-turn-stores): after each reply the live state is stored as the next turn's
// anchor, so the conversation so far is in the tiers (a fleet's shared one) before its server
// could be lost; without the setting, a reply stores nothing.
TEST(RequestFlow, TurnStoresKeepTheConversationSoFarOnlyWhenAsked) {
  fixtures::TempDir t;
  const SimConfig sim;
  PrefixCache c(cache_cfg(t.path, sim), fp());
  auto sc = store_cfg();
  sc.cold_max_tokens = 0;  // no cold store: only turn stores write
  const auto turn1 = seq(1, 1000);
  auto turn2 = turn1;
  for (Token x : seq(5000, 600)) turn2.push_back(x);
  PromptInfo full;

  SimEngine a(sim);
  RequestFlow off(a, &c, sc);
  off.prefill(turn1, full);
  off.store_turn();
  EXPECT_EQ(c.stats().stores, 0u);
  off.reset();

  sc.turn_stores = true;
  SimEngine b(sim);
  RequestFlow on(b, &c, sc);
  on.prefill(turn1, full);
  on.store_turn();
  EXPECT_EQ(c.stats().stores, 1u);
  EXPECT_EQ(c.plan(turn2, {}).resume_at, 768u) << "turn 1's live state, to its last break";
  EXPECT_EQ(on.prefill(turn2, full).cached_tokens, 768u);
  on.store_turn();
  EXPECT_EQ(c.stats().stores, 2u);
  EXPECT_EQ(c.plan(turn2, {}).resume_at, 1536u) << "turn 2's";
  on.store_turn();
  EXPECT_EQ(c.stats().stores, 2u) << "never the same state twice";
}

// The guessing attack of issue 29 on one slot: its live state is tenant b's secret prompt when
// tenant a sends a right guess, or a wrong one of the same length. Nothing of b's state is reused
// or reported with a's request (its evict store is the cache's, not a's), so a learns nothing.
TEST(RequestFlow, AnotherSaltsLiveStateIsNeitherReusedNorReported) {
  const SimConfig sim;
  const auto secret = seq(1, 1000), wrong = seq(5000, 1000);
  PromptInfo b, a;
  b.salt = "b";
  a.salt = "a";
  auto guess = [&](const std::vector<Token>& prompt) {
    fixtures::TempDir t;
    PrefixCache c(cache_cfg(t.path, sim), fp());
    auto sc = store_cfg();
    sc.cold_max_tokens = 0;  // b's live state is the only copy: a's request evicts it
    SimEngine e(sim);
    RequestFlow f(e, &c, sc);
    f.prefill(secret, b);
    PrefillReport r = f.prefill(prompt, a);
    c.drain(-1);
    EXPECT_EQ(c.plan(secret, {}, "b").resume_at, 768u) << "b's state was stored all the same";
    return r;
  };
  const PrefillReport right_r = guess(secret), wrong_r = guess(wrong);
  for (const PrefillReport* r : {&right_r, &wrong_r}) {
    EXPECT_EQ(r->cached_tokens, 0u);
    EXPECT_FALSE(r->from_live);
    for (const StoreOutcome& s : r->stores) EXPECT_NE(s.reason, Reason::kEvict);
  }
  ASSERT_EQ(right_r.stores.size(), wrong_r.stores.size());
  for (size_t i = 0; i < right_r.stores.size(); ++i) {
    EXPECT_EQ(right_r.stores[i].reason, wrong_r.stores[i].reason);
    EXPECT_EQ(right_r.stores[i].tokens, wrong_r.stores[i].tokens);
    EXPECT_EQ(std::string(right_r.stores[i].outcome), wrong_r.stores[i].outcome);
  }
}

// A prompt whose boundaries are incomplete (the renderer ran out of time) breaks its batches
// elsewhere than its conversation's other prompts: it reuses no live state, and the state it
// leaves is neither reused by the next prompt nor stored on its way out.
TEST(RequestFlow, IncompleteBoundariesNeitherReuseNorLeaveAState) {
  const SimConfig sim;
  fixtures::TempDir t;
  PrefixCache c(cache_cfg(t.path, sim), fp());
  SimEngine e(sim);
  RequestFlow f(e, &c, store_cfg());
  const auto first = seq(1, 1000);
  auto longer = first;
  for (Token x : seq(3000, 300)) longer.push_back(x);
  PromptInfo whole, partial;
  partial.complete = false;
  partial.policy.restore = false;  // the server serves such a request with the cache off
  partial.policy.checkpoints = false;
  f.prefill(first, whole);
  const PrefillReport r = f.prefill(longer, partial);
  EXPECT_FALSE(r.from_live);
  EXPECT_EQ(r.cached_tokens, 0u);
  const PrefillReport next = f.prefill(longer, whole);
  EXPECT_FALSE(next.from_live) << "the incomplete prompt's live state is not reused";
  for (const StoreOutcome& s : next.stores) EXPECT_NE(s.reason, Reason::kEvict);
}

// A fork (ForkSource): the destination stores what it held (reason=evict), takes the source's
// prefix up to the last break both prompts share, and reuses it as a live hit; the source keeps
// its live state. Another salt's state is never forked; `done` is called either way.
TEST(RequestFlow, ForkReusesTheSourcesPrefixOfItsOwnSaltOnly) {
  const SimConfig sim;
  fixtures::TempDir t;
  PrefixCache c(cache_cfg(t.path, sim), fp());
  auto sc = store_cfg();
  sc.cold_max_tokens = 0;  // no cold stores: the stores seen are the fork's evict only
  SimEngine src_e(sim), dst_e(sim);
  RequestFlow src(src_e, &c, sc), dst(dst_e, &c, sc);
  PromptInfo info;
  info.boundaries = {0, 600};
  auto a = seq(1, 900);
  src.prefill(a, info);
  dst.prefill(seq(20000, 700), info);  // what the destination held
  auto b = std::vector<Token>(a.begin(), a.begin() + 600);
  for (Token x : seq(40000, 300)) b.push_back(x);

  int done = 0;
  ForkSource fork{&src, [&] { ++done; }};
  PromptInfo other = info;
  other.salt = "another tenant";
  const PrefillReport no = dst.prefill(b, other, nullptr, &fork);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(no.forked_tokens, 0u);
  EXPECT_EQ(no.cached_tokens, 0u);

  dst.prefill(seq(20000, 700), info);  // the destination's own state again
  const PrefillReport r = dst.prefill(b, info, nullptr, &fork);
  EXPECT_EQ(done, 2);
  EXPECT_EQ(r.forked_tokens, 600u);
  EXPECT_TRUE(r.from_live);
  EXPECT_EQ(r.cached_tokens, 600u);
  ASSERT_FALSE(r.stores.empty());
  EXPECT_EQ(r.stores[0].reason, Reason::kEvict) << "what the destination held is stored first";
  EXPECT_EQ(r.stores[0].tokens, 600u) << "up to its last break";
  EXPECT_EQ(dst_e.tokens(), b);
  EXPECT_EQ(src_e.tokens(), a) << "the source keeps its live state";
  EXPECT_EQ(dst_e.wrong_states(), 0u);
}
