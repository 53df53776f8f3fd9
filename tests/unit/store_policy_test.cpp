// One test per SPEC section 3 scenario (and the ds4/lucebox documents it came from).
#include "cache/store_policy.h"

#include <gtest/gtest.h>

using namespace kvstash::cache;

namespace {
StoreConfig cfg() {
  StoreConfig c;
  c.min_tokens = 512;
  c.cold_max_tokens = 30000;
  c.boundary_align = 2048;
  c.boundary_trim = 0;
  c.continued_interval = 10240;
  return c;
}
}  // namespace

TEST(StorePolicy, ColdAnchorIsChatBoundaryBeforeLastUserTurnAlignedDown) {
  // Prompt 23029 tokens, last user turn starts at 21000: anchor = 20480.
  EXPECT_EQ(cold_store({23029, 0, 21000}, cfg()).store_at, 20480u);
}

TEST(StorePolicy, ColdAnchorFallsBackToPromptEndWithoutBoundary) {
  EXPECT_EQ(cold_store({5000, 0, 0}, cfg()).store_at, 4096u);
}

TEST(StorePolicy, ColdAnchorTrimmedBeforeAlignment) {
  auto c = cfg();
  c.boundary_trim = 1000;
  // ds4 issue157's log: 23029 tokens, trim 1000 -> 22029 -> aligned 20480 (trimmed=2549).
  EXPECT_EQ(cold_store({23029, 0, 0}, c).store_at, 20480u);
  c.boundary_trim = 3000;
  EXPECT_EQ(cold_store({23029, 0, 0}, c).store_at, 18432u);
}

TEST(StorePolicy, ColdSkippedBelowMinTokens) {
  auto c = cfg();
  c.boundary_align = 256;
  EXPECT_EQ(cold_store({400, 0, 0}, c).store_at, 0u);
  EXPECT_TRUE(cold_store({400, 0, 0}, c).hint.empty());
}

TEST(StorePolicy, ColdSkippedAboveColdMaxWithOneLineHint) {
  // pr392/pr394: a first prompt above cold-max used to skip the store silently.
  const auto d = cold_store({45000, 0, 40000}, cfg());
  EXPECT_EQ(d.store_at, 0u);
  EXPECT_NE(d.hint.find("cold store skipped"), std::string::npos);
  EXPECT_NE(d.hint.find("--cache-cold-max-tokens"), std::string::npos);
  EXPECT_EQ(d.hint.find('\n'), std::string::npos);
}

TEST(StorePolicy, ColdStoreDisabledByZeroColdMax) {
  auto c = cfg();
  c.cold_max_tokens = 0;
  EXPECT_EQ(cold_store({23029, 0, 21000}, c).store_at, 0u);
}

TEST(StorePolicy, AnchorRefreshedAfterPartialHitBelowAnchor) {
  // pr394: a hit on a shorter waypoint proves the stored anchor no longer matches.
  EXPECT_EQ(cold_store({30222, 20480, 27500}, cfg()).store_at, 26624u);
}

TEST(StorePolicy, NothingStoredForAnchorOnHitAtOrPastIt) {
  EXPECT_EQ(cold_store({30222, 26624, 27500}, cfg()).store_at, 0u);
  EXPECT_EQ(cold_store({30222, 28000, 27500}, cfg()).store_at, 0u);
}

TEST(StorePolicy, ContinuedEveryIntervalPastTheCachedPrefix) {
  auto c = cfg();
  c.cold_max_tokens = 0;
  const auto s = prefill_stores({35000, 0, 0}, c);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0], (PlannedStore{10240, Reason::kContinued}));
  EXPECT_EQ(s[1], (PlannedStore{20480, Reason::kContinued}));
  EXPECT_EQ(s[2], (PlannedStore{30720, Reason::kContinued}));
  // Resuming at 12000: the next checkpoints are 20480 and 30720.
  const auto r = prefill_stores({35000, 12000, 0}, c);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].at, 20480u);
}

TEST(StorePolicy, NoSecondStoreAtTheSamePrefixLength) {
  // issue157: the cold anchor at 20480 is also a continued boundary; store it once, as cold.
  const auto s = prefill_stores({23029, 0, 21000}, cfg());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0], (PlannedStore{10240, Reason::kContinued}));
  EXPECT_EQ(s[1], (PlannedStore{20480, Reason::kCold}));
}

TEST(StorePolicy, EvictAndShutdownStoreTheLiveStateOnce) {
  const auto c = cfg();
  EXPECT_TRUE(store_live_state(5000, 0, c));
  EXPECT_FALSE(store_live_state(5000, 5000, c)) << "already stored at this length";
  EXPECT_FALSE(store_live_state(300, 0, c)) << "below --cache-min-tokens";
}

TEST(StorePolicy, PartialLiveHitStoresTheLiveStateItCuts) {
  StoreConfig c;
  // Agents sharing a server: session B's request keeps only the system prompt of session A's
  // live state; A's conversation tail would be lost, so it is stored first.
  EXPECT_TRUE(store_before_trim(6144, 4096, 0, c));
  EXPECT_FALSE(store_before_trim(6144, 6144, 0, c)) << "nothing is cut";
  EXPECT_FALSE(store_before_trim(6144, 4096, 6144, c)) << "already stored";
  EXPECT_FALSE(store_before_trim(400, 256, 0, c)) << "below --cache-min-tokens";
  c.store_before_trim = false;
  EXPECT_FALSE(store_before_trim(6144, 4096, 0, c)) << "switched off: the tail is dropped";
}

TEST(StorePolicy, SupersededContinuedDroppedOnColdAndContinuedStores) {
  // pr175: nested continued snapshots of one prefill.
  const std::vector<EntryView> existing = {
      {{1, 1}, 10240, Reason::kContinued, true},
      {{2, 2}, 20480, Reason::kContinued, true},
      {{3, 3}, 10240, Reason::kContinued, false},  // another conversation
      {{4, 4}, 8192, Reason::kCold, true},         // an intentional checkpoint
  };
  for (Reason r : {Reason::kCold, Reason::kContinued}) {
    const auto drop = superseded_by(r, 30720, existing);
    ASSERT_EQ(drop.size(), 2u) << reason_name(r);
    EXPECT_EQ(drop[0], (Key{1, 1}));
    EXPECT_EQ(drop[1], (Key{2, 2}));
  }
}

TEST(StorePolicy, SupersededKeptOnEvictAndShutdownStores) {
  const std::vector<EntryView> existing = {{{1, 1}, 10240, Reason::kContinued, true}};
  EXPECT_TRUE(superseded_by(Reason::kEvict, 30720, existing).empty());
  EXPECT_TRUE(superseded_by(Reason::kShutdown, 30720, existing).empty());
}

TEST(StorePolicy, EntryOfTheSameLengthIsNotSuperseded) {
  const std::vector<EntryView> existing = {{{1, 1}, 20480, Reason::kContinued, true}};
  EXPECT_TRUE(superseded_by(Reason::kCold, 20480, existing).empty());
}

// Seed toggles (`kvstash replay --before ...`): off brings back the behaviour before the fix.

TEST(StorePolicy, BeforePr394NoAnchorRefreshAfterAPartialHit) {
  auto c = cfg();
  c.refresh_anchor = false;
  EXPECT_EQ(cold_store({30222, 20480, 27500}, c).store_at, 0u) << "partial hit: no refresh";
  EXPECT_EQ(cold_store({30222, 0, 27500}, c).store_at, 26624u) << "cold prefills still store";
  for (const auto& s : prefill_stores({30222, 20480, 27500}, c)) {
    EXPECT_NE(s.reason, Reason::kCold);
  }
}

TEST(StorePolicy, BeforePr175SupersededContinuedEntriesAreKept) {
  auto c = cfg();
  c.drop_superseded = false;
  const std::vector<EntryView> existing = {{{1, 1}, 10240, Reason::kContinued, true},
                                           {{2, 2}, 20480, Reason::kContinued, true}};
  EXPECT_TRUE(superseded_by(Reason::kContinued, 30720, existing, c).empty());
  EXPECT_TRUE(superseded_by(Reason::kCold, 30720, existing, c).empty());
  EXPECT_EQ(superseded_by(Reason::kCold, 30720, existing, cfg()).size(), 2u);
}
