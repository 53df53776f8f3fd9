// The fleet benchmark's accounting (loadgen/fleet.h): tiers per request, live hits after each
// session's first turn, requests per instance, failures after the kill, ratios between runs.
#include <gtest/gtest.h>

#include "loadgen/fleet.h"

namespace kvstash::loadgen {
namespace {

TEST(FleetTier, NamedSourcesAreTheirTier) {
  EXPECT_EQ(classify_tier("live", 100), Tier::kLive);
  EXPECT_EQ(classify_tier("ram", 100), Tier::kRam);
  EXPECT_EQ(classify_tier("disk", 100), Tier::kDisk);
  EXPECT_EQ(classify_tier("remote", 100), Tier::kRemote);
  EXPECT_EQ(classify_tier("vram", 1), Tier::kVram);
  EXPECT_EQ(classify_tier("fork", 100), Tier::kFork);
  EXPECT_TRUE(local_tier(Tier::kFork));
}

TEST(FleetTier, NoCachedTokensIsARecomputeWhateverTheSource) {
  EXPECT_EQ(classify_tier("", 0), Tier::kRecompute);
  EXPECT_EQ(classify_tier("", -1), Tier::kRecompute);  // not reported
  EXPECT_EQ(classify_tier("remote", 0), Tier::kRecompute);
}

TEST(FleetTier, CachedTokensWithoutASourceAreLlamaServersOwnLiveCache) {
  EXPECT_EQ(classify_tier("", 512), Tier::kLive);
}

TEST(FleetTier, AnUnknownSourceIsNoHit) { EXPECT_EQ(classify_tier("tape", 512), Tier::kRecompute); }

TEST(FleetTier, LocalTiersAreTheInstancesOwn) {
  EXPECT_TRUE(local_tier(Tier::kLive));
  EXPECT_TRUE(local_tier(Tier::kRam));
  EXPECT_TRUE(local_tier(Tier::kDisk));
  EXPECT_FALSE(local_tier(Tier::kRemote));
  EXPECT_FALSE(local_tier(Tier::kRecompute));
}

TEST(FleetTier, NamesRoundTrip) {
  for (Tier t : {Tier::kLive, Tier::kVram, Tier::kRam, Tier::kDisk, Tier::kRemote}) {
    EXPECT_EQ(classify_tier(tier_name(t), 1), t) << tier_name(t);
  }
  EXPECT_STREQ(tier_name(Tier::kRecompute), "recompute");
}

FleetRequest req(const std::string& session, const std::string& inst, Tier t, bool ok = true) {
  return {session, inst, t, ok};
}

TEST(FleetSummary, FirstTurnsDoNotCountTowardsTheLiveShare) {
  const std::vector<FleetRequest> rs = {
      req("s0", "inst1", Tier::kRecompute), req("s1", "inst2", Tier::kRemote),
      req("s0", "inst1", Tier::kLive),      req("s1", "inst2", Tier::kLive),
      req("s0", "inst1", Tier::kDisk),
  };
  const FleetSummary s = summarize_fleet(rs, rs.size());
  EXPECT_EQ(s.sessions, 2u);
  EXPECT_EQ(s.after_first, 3u);
  EXPECT_EQ(s.live_after_first, 2u);
  EXPECT_DOUBLE_EQ(s.live_share(), 2.0 / 3);
  EXPECT_EQ(s.local_after_first, 3u);        // the disk hit is the instance's own
  EXPECT_EQ(s.after_first_before_kill, 3u);  // no kill: all of them
  EXPECT_EQ(s.per_tier.at("live"), 2u);
  EXPECT_EQ(s.per_tier.at("recompute"), 1u);
  EXPECT_EQ(s.per_tier.at("disk"), 1u);
  EXPECT_EQ(s.per_tier.count("ram"), 0u);
  EXPECT_EQ(s.failed, 0u);
}

TEST(FleetSummary, CountsAnsweredRequestsPerInstance) {
  const std::vector<FleetRequest> rs = {
      req("a", "inst1", Tier::kRecompute), req("b", "inst2", Tier::kRecompute),
      req("a", "inst1", Tier::kLive), req("c", "", Tier::kRecompute, false)};
  const FleetSummary s = summarize_fleet(rs, rs.size());
  ASSERT_EQ(s.per_instance.size(), 2u);
  EXPECT_EQ(s.per_instance.at("inst1"), 2u);
  EXPECT_EQ(s.per_instance.at("inst2"), 1u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.failed_after_kill, 0u);
}

TEST(FleetSummary, FailuresAndLiveHitsSplitAtTheKill) {
  const std::vector<FleetRequest> rs = {
      req("a", "inst1", Tier::kRecompute), req("a", "inst1", Tier::kLive),
      // kill_at = 2: instance 1 is gone, "a" moves and restores from the remote tier.
      req("a", "inst2", Tier::kRemote), req("a", "", Tier::kRecompute, false),
      req("a", "inst2", Tier::kLive)};
  const FleetSummary s = summarize_fleet(rs, 2);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.failed_after_kill, 1u);
  EXPECT_EQ(s.after_first, 3u);
  EXPECT_EQ(s.live_after_first, 2u);
  EXPECT_EQ(s.after_first_before_kill, 1u);
  EXPECT_EQ(s.live_after_first_before_kill, 1u);
  EXPECT_DOUBLE_EQ(s.live_share_before_kill(), 1.0);
  // Moving after the kill does not count against affinity.
  EXPECT_EQ(s.sessions_on_one_instance, 1u);
}

TEST(FleetSummary, ASessionSpreadOverInstancesBeforeTheKillIsNotOnOne) {
  const std::vector<FleetRequest> rs = {
      req("a", "inst1", Tier::kRecompute), req("b", "inst2", Tier::kRecompute),
      req("a", "inst3", Tier::kRemote), req("b", "inst2", Tier::kLive)};
  const FleetSummary s = summarize_fleet(rs, rs.size());
  EXPECT_EQ(s.sessions, 2u);
  EXPECT_EQ(s.sessions_on_one_instance, 1u);
  EXPECT_DOUBLE_EQ(s.live_share(), 0.5);
  EXPECT_DOUBLE_EQ(s.local_share(), 0.5);  // the remote restore is not local
}

TEST(FleetSummary, NothingAnsweredHasNoShare) {
  const FleetSummary s = summarize_fleet({}, 0);
  EXPECT_EQ(s.sessions, 0u);
  EXPECT_DOUBLE_EQ(s.live_share(), 0);
  EXPECT_DOUBLE_EQ(s.live_share_before_kill(), 0);
}

TEST(FleetRatio, DividesOneRunsTotalByAnothers) {
  const std::map<std::string, double> t = {{"kvstash", 50}, {"kvstash-roundrobin", 200}};
  ASSERT_TRUE(ttft_ratio(t, "kvstash", "kvstash-roundrobin"));
  EXPECT_DOUBLE_EQ(*ttft_ratio(t, "kvstash", "kvstash-roundrobin"), 0.25);
  EXPECT_DOUBLE_EQ(*ttft_ratio(t, "kvstash-roundrobin", "kvstash"), 4.0);
}

TEST(FleetRatio, MissingRunsOrAZeroDivisorGiveNone) {
  const std::map<std::string, double> t = {{"kvstash", 50}, {"llama-server", 0}};
  EXPECT_FALSE(ttft_ratio(t, "kvstash", "kvstash-roundrobin"));
  EXPECT_FALSE(ttft_ratio(t, "kvstash-roundrobin", "kvstash"));
  EXPECT_FALSE(ttft_ratio(t, "kvstash", "llama-server"));
}

}  // namespace
}  // namespace kvstash::loadgen
