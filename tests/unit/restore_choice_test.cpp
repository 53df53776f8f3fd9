// Restore or recompute: one test per scenario, estimates worked out by hand in the comments.
#include "cache/restore_choice.h"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>

using namespace kvstash::cache;

namespace {
constexpr uint64_t kTokBytes = 114688;  // Qwen3-0.6B f16: 28 layers * 8 heads * 128 * 2 (K,V) * 2

PlanOption cand(Source s, uint32_t start, uint32_t keep,
                std::initializer_list<std::pair<Source, uint64_t>> bytes = {}) {
  PlanOption c;
  c.source = s;
  c.start = start;
  c.keep = keep;
  for (auto [tier, n] : bytes) c.bytes[static_cast<size_t>(tier)] += n;
  return c;
}

// One calibration point in bucket 0; every other bucket falls back to it.
void prefill_speed(RateModel& r, double tokens_per_s) {
  r.seed_prefill(0, 1000, 1000 / tokens_per_s);
}
}  // namespace

TEST(RestoreChoice, FastTierRestoresLongPrefixRatherThanRecompute) {
  RateModel r;  // ram 8 GB/s
  prefill_speed(r, 2000);
  // ram: 32768 * 114688 B / 8e9 B/s = 0.469762 s, + 100 tokens / 2000 = 0.05 s.
  // recompute: 32868 / 2000 = 16.434 s.
  std::vector<PlanOption> c = {cand(Source::kRecompute, 0, 0),
                               cand(Source::kRam, 32768, 0, {{Source::kRam, 32768 * kTokBytes}})};
  Choice ch = choose(32868, c, r);
  EXPECT_EQ(ch.index, 1u);
  EXPECT_NEAR(ch.est_seconds[1], 0.519762, 1e-6);
  EXPECT_NEAR(ch.est_seconds[0], 16.434, 1e-9);
  EXPECT_NEAR(ch.recompute_seconds, 16.434, 1e-9);
}

TEST(RestoreChoice, SlowColdDiskRecomputes) {
  RateModel r;
  r.observe_restore(Source::kDisk, 1'000'000'000, 10.0);  // cold disk: 100 MB/s replaces the seed
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kDisk), 1e8);
  prefill_speed(r, 20000);  // a GPU
  // disk: 8192 * 114688 / 1e8 = 9.395241 s + 100 / 20000; recompute: 8292 / 20000 = 0.4146 s.
  std::vector<PlanOption> c = {cand(Source::kDisk, 8192, 0, {{Source::kDisk, 8192 * kTokBytes}}),
                               cand(Source::kRecompute, 0, 0)};
  Choice ch = choose(8292, c, r);
  EXPECT_EQ(ch.index, 1u);
  EXPECT_NEAR(ch.est_seconds[0], 9.395241 + 0.005, 1e-6);
  EXPECT_NEAR(ch.est_seconds[1], 0.4146, 1e-9);
}

TEST(RestoreChoice, LivePrefixBeatsMarginallyLongerRestore) {
  RateModel r;  // disk 1.5 GB/s
  prefill_speed(r, 2000);
  // live: 300 / 2000 = 0.15 s. disk: 20256 * 114688 / 1.5e9 = 1.548747 s + 44 / 2000 = 0.022 s.
  std::vector<PlanOption> c = {cand(Source::kLive, 20000, 20000),
                               cand(Source::kDisk, 20256, 0, {{Source::kDisk, 20256 * kTokBytes}})};
  Choice ch = choose(20300, c, r);
  EXPECT_EQ(ch.index, 0u);
  EXPECT_NEAR(ch.est_seconds[0], 0.15, 1e-9);
  EXPECT_NEAR(ch.est_seconds[1], 1.570747, 1e-6);
}

TEST(RestoreChoice, DeltaRestoreBeatsKeepingLiveAndFullRestore) {
  RateModel r;
  prefill_speed(r, 2000);
  // live: 4100 / 2000 = 2.05 s. full ram: 24000 * 114688 / 8e9 = 0.344064 s + 0.05 s.
  // delta (keep 20000, load 4000): 4000 * 114688 / 8e9 = 0.057344 s + 0.05 s.
  std::vector<PlanOption> c = {
      cand(Source::kLive, 20000, 20000),
      cand(Source::kRam, 24000, 0, {{Source::kRam, 24000 * kTokBytes}}),
      cand(Source::kRam, 24000, 20000, {{Source::kRam, 4000 * kTokBytes}})};
  Choice ch = choose(24100, c, r);
  EXPECT_EQ(ch.index, 2u);
  EXPECT_NEAR(ch.est_seconds[0], 2.05, 1e-9);
  EXPECT_NEAR(ch.est_seconds[1], 0.394064, 1e-9);
  EXPECT_NEAR(ch.est_seconds[2], 0.107344, 1e-9);
  EXPECT_EQ(ch.log.rfind("kv cache plan tokens=24100 chose=ram start=24000 keep=20000 est=107.3 ms,"
                         " recompute est=12050.0 ms",
                         0),
            0u)
      << ch.log;
}

TEST(RestoreChoice, NoPrefillDataLongestStartWins) {
  RateModel r;
  EXPECT_FALSE(r.knows_prefill());
  EXPECT_EQ(r.prefill_seconds(5, 5), 0.0);
  EXPECT_TRUE(std::isnan(r.prefill_seconds(0, 10)));
  // The disk restore is slow, but without a prefill rate nothing can be compared: longest wins.
  std::vector<PlanOption> c = {cand(Source::kRecompute, 0, 0),
                               cand(Source::kDisk, 16384, 0, {{Source::kDisk, 16384 * kTokBytes}}),
                               cand(Source::kRam, 8192, 0, {{Source::kRam, 8192 * kTokBytes}})};
  Choice ch = choose(16500, c, r);
  EXPECT_EQ(ch.index, 1u);
  EXPECT_TRUE(std::isnan(ch.est_seconds[1]));
  EXPECT_TRUE(std::isnan(ch.recompute_seconds));
  EXPECT_NE(ch.log.find("no prefill data"), std::string::npos) << ch.log;
}

TEST(RestoreChoice, EwmaConvergesTowardNewObservations) {
  RateModel r;
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kRam), 8e9);     // seed
  r.observe_restore(Source::kRam, 1'000'000'000, 1.0);  // first replaces the seed
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kRam), 1e9);
  r.observe_restore(Source::kRam, 2'000'000'000, 1.0);  // 1e9 + 0.3 * (2e9 - 1e9)
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kRam), 1.3e9);
  for (int i = 0; i < 30; ++i) r.observe_restore(Source::kRam, 2'000'000'000, 1.0);
  EXPECT_NEAR(r.tier_rate(Source::kRam), 2e9, 2e9 * 1e-3);  // 0.7^31 * 1e9 left
  r.observe_restore(Source::kRam, 0, 1.0);                  // ignored
  r.observe_restore(Source::kRam, 100, 0.0);                // ignored
  EXPECT_NEAR(r.tier_rate(Source::kRam), 2e9, 2e9 * 1e-3);
  EXPECT_DOUBLE_EQ(r.restore_seconds(Source::kDisk, 3'000'000'000), 2.0);  // untouched seed
}

TEST(RestoreChoice, PrefillBucketsLongContextSlowerAndNearestFallback) {
  RateModel r;
  r.observe_prefill(0, 1000, 0.5);       // midpoint 500, bucket <1k: 2000 tok/s
  r.observe_prefill(64000, 66000, 2.0);  // midpoint 65000, bucket [32k, 64k): 1000 tok/s
  EXPECT_TRUE(r.knows_prefill());
  EXPECT_EQ(RateModel::bucket_of(65000), 6u);
  EXPECT_DOUBLE_EQ(r.prefill_seconds(0, 1000), 0.5);
  EXPECT_DOUBLE_EQ(r.prefill_seconds(40000, 41000), 1.0);  // same tokens, long context: slower
  // No data in [1k, 2k) and [2k, 4k): nearest is <1k. 48 + 452 tokens at 2000 tok/s.
  EXPECT_DOUBLE_EQ(r.prefill_seconds(2000, 2500), 0.25);
  // >=64k: nearest is [32k, 64k). Straddling the border: 536 + 536 tokens at 1000 tok/s.
  EXPECT_DOUBLE_EQ(r.prefill_seconds(100000, 101000), 1.0);
  EXPECT_DOUBLE_EQ(r.prefill_seconds(65000, 66072), 1.072);
  // [4k, 8k) is 3 buckets from both: the longer context wins the tie.
  EXPECT_DOUBLE_EQ(r.prefill_seconds(5000, 6000), 1.0);
  // A seed does not override an observation.
  r.seed_prefill(0, 1000, 0.1);
  EXPECT_DOUBLE_EQ(r.prefill_seconds(0, 1000), 0.5);
}

TEST(RestoreChoice, MixedTiersAddUp) {
  RateModel r;
  prefill_speed(r, 2000);
  // ram 1e9 B / 8e9 = 0.125 s, disk 1.5e9 B / 1.5e9 = 1.0 s, + 100 / 2000 = 0.05 s.
  std::vector<PlanOption> c = {
      cand(Source::kRecompute, 0, 0),
      cand(Source::kDisk, 20000, 0,
           {{Source::kRam, 1'000'000'000}, {Source::kDisk, 1'500'000'000}})};
  Choice ch = choose(20100, c, r);
  EXPECT_EQ(ch.index, 1u);
  EXPECT_NEAR(ch.est_seconds[1], 1.175, 1e-9);
  EXPECT_NEAR(ch.est_seconds[0], 10.05, 1e-9);
}

TEST(RestoreChoice, UnknownRestoreNeverChosenOverKnown) {
  RateModel r;
  r.seed_restore(Source::kRemote, 0);  // unknown
  EXPECT_TRUE(std::isnan(r.restore_seconds(Source::kRemote, 1)));
  std::vector<PlanOption> c = {
      cand(Source::kRemote, 30000, 0, {{Source::kRemote, 30000 * kTokBytes}}),
      cand(Source::kRecompute, 0, 0)};
  EXPECT_EQ(choose(30100, c, r).index, 1u);  // no prefill data either: still not the unknown one
  prefill_speed(r, 100);                     // recompute 301 s: the remote would be unknown
  EXPECT_EQ(choose(30100, c, r).index, 1u);
}

TEST(RestoreChoice, TieWithinTwoPercentGoesToLongerStart) {
  RateModel r;
  prefill_speed(r, 1000);
  // live: 1000 / 1000 = 1.0 s. ram: 8e9 B / 8e9 = 1.0 s + 10 / 1000 = 1.01 s, within 2%.
  std::vector<PlanOption> c = {cand(Source::kLive, 9000, 9000),
                               cand(Source::kRam, 9990, 0, {{Source::kRam, 8'000'000'000}})};
  EXPECT_EQ(choose(10000, c, r).index, 1u);
  // ram at 1.1 s is 10% slower: live wins.
  c[1].bytes[static_cast<size_t>(Source::kRam)] = 8'800'000'000;
  EXPECT_EQ(choose(10000, c, r).index, 0u);
}

TEST(RestoreChoice, PageCachedDiskBytesReadAtThePageCacheRate) {
  RateModel r;  // disk 1.5 GB/s from the device, 6 GB/s from the page cache
  // 3e9 B, 2.4e9 of them cached: 2.4e9 / 6e9 + 0.6e9 / 1.5e9 = 0.4 + 0.4 = 0.8 s.
  EXPECT_NEAR(r.restore_seconds(Source::kDisk, 3'000'000'000, 2'400'000'000), 0.8, 1e-9);
  EXPECT_NEAR(r.restore_seconds(Source::kDisk, 3'000'000'000), 2.0, 1e-9);
  // More cached than moved counts as all of it; other tiers have no page cache.
  EXPECT_NEAR(r.restore_seconds(Source::kDisk, 3'000'000'000, 9'000'000'000), 0.5, 1e-9);
  EXPECT_NEAR(r.restore_seconds(Source::kRam, 8'000'000'000, 8'000'000'000), 1.0, 1e-9);
}

TEST(RestoreChoice, RestartWithCachedFilesRestoresWhereAColdDiskRecomputes) {
  // After a restart the files are still in the page cache; after a reboot they are not.
  RateModel r;
  r.seed_restore(Source::kDisk, 1.3e9);
  r.seed_page_cache(8e9);
  prefill_speed(r, 14000);  // the H100's 8B
  // 27000 tokens of 147456 B = 3.981312e9 B. Cached: 0.497664 s + 1700 / 14000 = 0.619093 s;
  // from the device: 3.062548 s + 0.121429 s; recompute: 28700 / 14000 = 2.05 s.
  const uint64_t bytes = 27000ull * 147456;
  PlanOption disk = cand(Source::kDisk, 27000, 0, {{Source::kDisk, bytes}});
  disk.page_cached = bytes;
  std::vector<PlanOption> c = {disk, cand(Source::kRecompute, 0, 0)};
  Choice warm = choose(28700, c, r);
  EXPECT_EQ(warm.index, 0u);
  EXPECT_NEAR(warm.est_seconds[0], 0.619093, 1e-6);
  EXPECT_NE(warm.log.find("(page cache 100%)"), std::string::npos) << warm.log;
  c[0].page_cached = 0;
  Choice cold = choose(28700, c, r);
  EXPECT_EQ(cold.index, 1u);
  EXPECT_NEAR(cold.est_seconds[0], 3.183977, 1e-6);
}

TEST(RestoreChoice, DiskObservationUpdatesTheRateItMeasured) {
  RateModel r;
  // 95% cached: the page cache's rate (the first observation replaces the seed).
  r.observe_restore(Source::kDisk, 1'000'000'000, 0.125, 950'000'000);
  EXPECT_DOUBLE_EQ(r.page_cache_rate(), 8e9);
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kDisk), 1.5e9);
  // 5% cached: the device's.
  r.observe_restore(Source::kDisk, 1'000'000'000, 1.0, 50'000'000);
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kDisk), 1e9);
  EXPECT_DOUBLE_EQ(r.page_cache_rate(), 8e9);
  // Half cached: the time cannot be split, neither moves.
  r.observe_restore(Source::kDisk, 1'000'000'000, 0.5, 500'000'000);
  EXPECT_DOUBLE_EQ(r.tier_rate(Source::kDisk), 1e9);
  EXPECT_DOUBLE_EQ(r.page_cache_rate(), 8e9);
  // A seed no longer replaces an observed rate.
  r.seed_page_cache(1e9);
  EXPECT_DOUBLE_EQ(r.page_cache_rate(), 8e9);
}
