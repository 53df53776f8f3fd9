// One test per SPEC section 4 scenario.
#include "cache/eviction.h"

#include <gtest/gtest.h>

using namespace kvstash::cache;

namespace {
Candidate leaf(uint32_t tokens, uint64_t bytes, double age_s = 7200, uint32_t hits = 0) {
  Candidate c;
  c.tokens = tokens;
  c.bytes = bytes;
  c.age_s = age_s;
  c.hits = hits;
  return c;
}
uint64_t total(const std::vector<Candidate>& v) {
  uint64_t t = 0;
  for (const auto& c : v) t += c.bytes;
  return t;
}
}  // namespace

TEST(Eviction, LowestDensityGoesFirst) {
  // Same size; the one with hits is denser.
  std::vector<Candidate> v = {leaf(1000, 100, 7200, 3), leaf(1000, 100, 7200, 0)};
  const auto p = plan_eviction(v, total(v), 150, {});
  ASSERT_TRUE(p.fits);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 1u);
}

TEST(Eviction, RecencyBoostRanksAFreshPrefixAboveAStaleOneOfEqualDensity) {
  // ds4 follow-up to pr448: hits == 0 everywhere used to make the fresh entry the victim.
  std::vector<Candidate> v = {leaf(1000, 100, 5), leaf(1000, 100, 86400)};
  EXPECT_GT(eviction_score(v[0], {}), eviction_score(v[1], {}));
  const auto p = plan_eviction(v, total(v), 150, {});
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 1u);
}

TEST(Eviction, SupersededContinuedDevaluedOnlyWhenNotRecent) {
  EvictConfig cfg;
  Candidate recent = leaf(1000, 100, 10);
  Candidate stale = leaf(1000, 100, 10 * cfg.half_life_s);
  const double r0 = eviction_score(recent, cfg), s0 = eviction_score(stale, cfg);
  recent.superseded = stale.superseded = true;
  EXPECT_DOUBLE_EQ(eviction_score(recent, cfg), r0);
  EXPECT_DOUBLE_EQ(eviction_score(stale, cfg), s0 * cfg.superseded_factor);
}

TEST(Eviction, NeverEvictsWhatTheStoreJustWrote) {
  // issue157: the just-written object would be the best victim by density, and it is not taken.
  std::vector<Candidate> v = {leaf(1000, 100, 60, 5), leaf(100, 300, 0)};
  v[1].just_written = true;
  const auto p = plan_eviction(v, total(v), 350, {});
  ASSERT_TRUE(p.fits);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 0u);
}

TEST(Eviction, StoreSkippedWhenItCannotFitWithoutEvictingItself) {
  std::vector<Candidate> v = {leaf(1000, 100), leaf(100, 300, 0)};
  v[1].just_written = true;
  const auto p = plan_eviction(v, total(v), 250, {});
  EXPECT_FALSE(p.fits);
  EXPECT_TRUE(p.victims.empty()) << "nothing is evicted for a store that is skipped";
}

TEST(Eviction, IncomingPromptPrefixesProtectedDuringLiveMissStore) {
  // pr448: the unrelated entry goes even though the protected one scores lower.
  std::vector<Candidate> v = {leaf(100, 100, 86400), leaf(1000, 100, 5, 3)};
  v[0].protected_prefix = true;
  const auto p = plan_eviction(v, total(v), 150, {});
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 1u);
  // As a last resort, protected objects go too.
  const auto q = plan_eviction(v, total(v), 0, {});
  EXPECT_TRUE(q.fits);
  EXPECT_EQ(q.victims.size(), 2u);
}

TEST(Eviction, EvictsLeavesFirstSoEveryRemainingObjectStaysRestorable) {
  // chunk0 <- chunk1 <- entry; chunk0 is the least dense but has descendants.
  std::vector<Candidate> v = {leaf(10, 1000), leaf(256, 100), leaf(300, 10)};
  v[1].parent = 0;
  v[2].parent = 1;
  const auto p = plan_eviction(v, total(v), 1000, {});
  ASSERT_TRUE(p.fits);
  ASSERT_EQ(p.victims.size(), 2u);
  EXPECT_EQ(p.victims[0], 2u);  // the leaf entry first
  EXPECT_EQ(p.victims[1], 1u);  // then its now-leaf parent
  // chunk0 only after its subtree is gone.
  const auto all = plan_eviction(v, total(v), 0, {});
  EXPECT_EQ(all.victims.back(), 0u);
}

TEST(Eviction, PinnedObjectsAndTheirAncestorsStay) {
  std::vector<Candidate> v = {leaf(10, 1000), leaf(10, 1000)};
  v[1].parent = 0;
  v[1].pinned = true;
  const auto p = plan_eviction(v, total(v), 100, {});
  EXPECT_FALSE(p.fits);
}

TEST(Eviction, UselessObjectsGoFirst) {
  std::vector<Candidate> v = {leaf(10, 100, 86400), leaf(1000, 100, 1)};
  v[1].useless = true;
  const auto p = plan_eviction(v, total(v), 150, {});
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 1u);
}

TEST(Eviction, NothingToDoUnderBudget) {
  std::vector<Candidate> v = {leaf(10, 100)};
  const auto p = plan_eviction(v, 100, 100, {});
  EXPECT_TRUE(p.fits);
  EXPECT_TRUE(p.victims.empty());
}

// Seed toggles (`kvstash replay --before ...`): off brings back the behaviour before the fix.

TEST(Eviction, BeforeIssue157AStoreEvictsWhatItJustWrote) {
  // The same candidates as NeverEvictsWhatTheStoreJustWrote: the fresh, less dense object goes.
  std::vector<Candidate> v = {leaf(1000, 100, 60, 5), leaf(100, 300, 0)};
  v[1].just_written = true;
  EvictConfig cfg;
  cfg.protect_own_writes = false;
  const auto p = plan_eviction(v, total(v), 350, cfg);
  ASSERT_TRUE(p.fits);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 1u);
}

TEST(Eviction, BeforePr448IncomingPromptPrefixesAreNotProtected) {
  std::vector<Candidate> v = {leaf(100, 100, 86400), leaf(1000, 100, 5, 3)};
  v[0].protected_prefix = true;
  EvictConfig cfg;
  cfg.protect_incoming_prefix = false;
  const auto p = plan_eviction(v, total(v), 150, cfg);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], 0u) << "the lowest score goes, prefix of the incoming prompt or not";
}

TEST(Eviction, BeforeRecencyFollowUpAFreshPrefixHasNoAdvantage) {
  // recency_boost = 0 is ds4's score before its recency follow-up to pr448.
  EvictConfig cfg;
  cfg.recency_boost = 0;
  EXPECT_DOUBLE_EQ(eviction_score(leaf(1000, 100, 5), cfg),
                   eviction_score(leaf(1000, 100, 86400), cfg));
}
