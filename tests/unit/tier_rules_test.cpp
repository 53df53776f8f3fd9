// One test per scenario of the facade's tier rules (src/cache/tier_rules.h).
#include "cache/tier_rules.h"

#include <gtest/gtest.h>

using namespace kvstash::cache;

namespace {
Node node(bool disk, bool ram, bool pending, bool remote = false) {
  return {.meta = {},
          .stats = {},
          .on_disk = disk,
          .in_ram = ram,
          .on_remote = remote,
          .pending = pending};
}
}  // namespace

TEST(TierRules, HeldLocallyOnDiskInRamOrPendingButNotRemoteOnly) {
  EXPECT_FALSE(held_locally(nullptr));
  const Node d = node(true, false, false), r = node(false, true, false),
             p = node(false, false, true), remote = node(false, false, false, true);
  EXPECT_TRUE(held_locally(&d));
  EXPECT_TRUE(held_locally(&r));
  EXPECT_TRUE(held_locally(&p)) << "a pending object is served from its buffer";
  EXPECT_FALSE(held_locally(&remote));
}

TEST(TierRules, ServedFromRamWhenInRamOrPendingElseDiskElseRemote) {
  EXPECT_EQ(serving_tier(node(true, true, false)), Source::kRam);
  EXPECT_EQ(serving_tier(node(false, false, true)), Source::kRam);
  EXPECT_EQ(serving_tier(node(true, false, false)), Source::kDisk);
  EXPECT_EQ(serving_tier(node(false, false, false, true)), Source::kRemote);
}

Node with_vram(Node n) {
  n.in_vram = true;
  return n;
}

TEST(TierRules, ServedFromVramWhenACopyIsThereOrOnItsWay) {
  EXPECT_EQ(serving_tier(with_vram(node(true, true, false))), Source::kVram);
  EXPECT_EQ(serving_tier(with_vram(node(true, false, false))), Source::kVram);
}

TEST(TierRules, AVramCopyAloneIsNotHeldLocally) {
  // The VRAM tier holds copies of what a host tier holds; it never keeps an object alive.
  const Node n = with_vram(node(false, false, false, true));
  EXPECT_FALSE(held_locally(&n));
}

TEST(TierRules, CheckpointsAreDroppedWhenTheQueueIsFullOnlyCopiesWait) {
  EXPECT_EQ(store_admission(Reason::kCold), Admission::kDropWhenFull);
  EXPECT_EQ(store_admission(Reason::kContinued), Admission::kDropWhenFull);
  EXPECT_EQ(store_admission(Reason::kScope), Admission::kDropWhenFull);
  EXPECT_EQ(store_admission(Reason::kEvict), Admission::kWaitForRoom);
  EXPECT_EQ(store_admission(Reason::kShutdown), Admission::kWaitForRoom);
}

TEST(TierRules, RamOnlyCopyIsDemotedWhenTheDiskTakesItWithoutEvicting) {
  EXPECT_EQ(ram_exit(node(false, true, false), {true, 100, 50, 150}), RamExit::kDemote);
}

TEST(TierRules, RamCopyIsDroppedWhenTheDiskHasItOrItIsBeingWritten) {
  EXPECT_EQ(ram_exit(node(true, true, false), {true, 0, 50, 1000}), RamExit::kDrop);
  EXPECT_EQ(ram_exit(node(false, true, true), {true, 0, 50, 1000}), RamExit::kDrop);
}

TEST(TierRules, RamOnlyCopyIsDroppedWhenTheDiskIsFullOrAbsent) {
  EXPECT_EQ(ram_exit(node(false, true, false), {true, 100, 51, 150}), RamExit::kDrop);
  EXPECT_EQ(ram_exit(node(false, true, false), {false, 0, 50, 1000}), RamExit::kDrop);
}

TEST(TierRules, WriteGoesWhereTheNodeStillWantsIt) {
  const auto all = write_targets(node(false, true, true), true);
  EXPECT_TRUE(all.ram && all.disk && all.remote);
  const auto evicted_meanwhile = write_targets(node(false, false, false), true);
  EXPECT_FALSE(evicted_meanwhile.ram || evicted_meanwhile.disk);
  EXPECT_FALSE(write_targets(node(false, false, true, true), true).remote)
      << "the remote tier holds it already";
  EXPECT_FALSE(write_targets(node(false, false, true), false).remote) << "no remote tier";
  EXPECT_FALSE(all.vram) << "no VRAM copy wanted";
  EXPECT_TRUE(write_targets(with_vram(node(true, false, false)), false).vram);
}

TEST(TierRules, AutoRamBudgetIsEightGiBWithTheKvOnAGpu) {
  EXPECT_EQ(auto_ram_budget(true, 128ull << 30), 8ull << 30);
}

TEST(TierRules, AutoRamBudgetIsAnEighthOfASmallHost) {
  EXPECT_EQ(auto_ram_budget(true, 32ull << 30), 4ull << 30);
}

TEST(TierRules, AutoRamBudgetIsNoneOnACpu) { EXPECT_EQ(auto_ram_budget(false, 128ull << 30), 0u); }

TEST(TierRules, AutoVramBudgetIsHalfOfWhatIsFreeBeyondTheMargin) {
  // An 80 GiB card with 56 GiB free after an 8B model and its context: a 4 GiB margin.
  EXPECT_EQ(auto_vram_budget(true, 56ull << 30, 80ull << 30), 26ull << 30);
  // A small card: the margin is at least 1 GiB.
  EXPECT_EQ(auto_vram_budget(true, 3ull << 30, 8ull << 30), 1ull << 30);
}

TEST(TierRules, AutoVramBudgetIsNoneWhenTheCardIsFull) {
  EXPECT_EQ(auto_vram_budget(true, 4ull << 30, 80ull << 30), 0u);
  EXPECT_EQ(auto_vram_budget(true, 0, 80ull << 30), 0u);
}

TEST(TierRules, AutoVramBudgetIsNoneWithTheKvInHostMemory) {
  EXPECT_EQ(auto_vram_budget(false, 56ull << 30, 80ull << 30), 0u);
}
