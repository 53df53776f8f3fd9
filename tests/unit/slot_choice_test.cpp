// Which slot serves a request (cache/slot_choice.h): one test per scenario.
#include "cache/slot_choice.h"

#include <gtest/gtest.h>

#include <vector>

using namespace kvstash::cache;

namespace {
SlotState idle(size_t shared, uint64_t last_used) { return {true, shared, last_used}; }
SlotState busy(size_t shared, uint64_t last_used) { return {false, shared, last_used}; }
std::optional<size_t> choose(std::vector<SlotState> s) { return choose_slot(s); }
}  // namespace

TEST(SlotChoice, LongestSharedPrefixWins) {
  EXPECT_EQ(choose({idle(3, 5), idle(1, 1)}), 0u);
  EXPECT_EQ(choose({idle(1, 1), idle(3, 5), idle(2, 0)}), 1u);
}

TEST(SlotChoice, LongerPrefixBeatsLessRecentUse) {
  EXPECT_EQ(choose({idle(0, 0), idle(1, 100)}), 1u);
}

TEST(SlotChoice, TiesGoToTheLeastRecentlyUsed) {
  EXPECT_EQ(choose({idle(1, 5), idle(1, 1)}), 1u);
  EXPECT_EQ(choose({idle(0, 9), idle(0, 3), idle(0, 7)}), 1u) << "nothing shared: plain LRU";
}

TEST(SlotChoice, FullTiesGoToTheFirstSlot) {
  EXPECT_EQ(choose({idle(0, 0), idle(0, 0)}), 0u);  // a fresh pool
  EXPECT_EQ(choose({idle(2, 4), idle(2, 4)}), 0u);
}

TEST(SlotChoice, BusySlotsAreNeverChosen) {
  EXPECT_EQ(choose({busy(100, 0), idle(0, 9)}), 1u);
  EXPECT_EQ(choose({busy(0, 0), idle(1, 9), busy(5, 0), idle(1, 3)}), 3u);
}

TEST(SlotChoice, NoIdleSlotNoChoice) {
  EXPECT_EQ(choose({busy(3, 1), busy(0, 0)}), std::nullopt);
  EXPECT_EQ(choose({}), std::nullopt);
}

TEST(SlotChoice, SharedPrefixOfLiveTokensAndPrompt) {
  const std::vector<Token> prompt = {1, 2, 3, 4};
  EXPECT_EQ(shared_prefix(std::vector<Token>{1, 2, 3}, prompt), 3u);
  EXPECT_EQ(shared_prefix(std::vector<Token>{1, 9}, prompt), 1u);
  EXPECT_EQ(shared_prefix(std::vector<Token>{}, prompt), 0u);
  EXPECT_EQ(shared_prefix(std::vector<Token>{1, 2, 3, 4, -1, -2}, prompt), 4u)
      << "decoded tokens past the prompt";
  EXPECT_EQ(shared_prefix(std::vector<Token>{1, 2}, std::vector<Token>{}), 0u);
}

TEST(SlotChoice, ChoosesOverLiveTokensAsServerAndReplayDo) {
  // The former replay::pick_slot cases: live tokens, last use, one prompt.
  const std::vector<Token> a = {1, 2, 3}, b = {1, 9}, prompt = {1, 2, 3, 4};
  auto pick = [&](const std::vector<Token>& x, uint64_t ux, const std::vector<Token>& y,
                  uint64_t uy) {
    return choose({idle(shared_prefix(x, prompt), ux), idle(shared_prefix(y, prompt), uy)});
  };
  EXPECT_EQ(pick(a, 5, b, 1), 0u) << "longest common prefix";
  EXPECT_EQ(pick(b, 5, b, 1), 1u) << "ties go to the least recently used";
  EXPECT_EQ(pick({}, 0, {}, 0), 0u);
}

TEST(SlotChoice, ALiveStateIsReusableOnlyByItsOwnSalt) {
  const std::vector<Token> live = {1, 2, 3}, prompt = {1, 2, 3, 4};
  EXPECT_EQ(reusable_prefix(live, "b", prompt, "b"), 3u);
  EXPECT_EQ(reusable_prefix(live, "b", prompt, "a"), 0u) << "another tenant's: just occupied";
  EXPECT_EQ(reusable_prefix(live, "", prompt, "a"), 0u);
  EXPECT_EQ(reusable_prefix(live, "b", prompt, ""), 0u);
  EXPECT_EQ(reusable_prefix(live, "", prompt, ""), 3u);
}

// The guessing attack of issue 29: slot 0 holds tenant b's secret prompt, slot 1 is fresh. Tenant
// a's right guess and wrong guess go to the same slot (the least recently used).
TEST(SlotChoice, AnotherSaltsLiveStateDoesNotDrawAGuess) {
  const std::vector<Token> secret = {7, 7, 7, 7}, wrong = {8, 8, 8, 8};
  auto pick = [&](const std::vector<Token>& guess) {
    return choose({idle(reusable_prefix(secret, "b", guess, "a"), 5),
                   idle(reusable_prefix({}, "", guess, "a"), 0)});
  };
  EXPECT_EQ(pick(secret), 1u);
  EXPECT_EQ(pick(wrong), 1u);
  EXPECT_EQ(choose({idle(reusable_prefix(secret, "b", secret, "b"), 5), idle(0, 0)}), 0u)
      << "b's own request still goes to its live state";
}

namespace {
// An idle slot holding `live` tokens, `shared` of which are a prefix of the prompt.
SlotState held(size_t shared, uint64_t last_used, size_t live) {
  return {true, shared, last_used, live};
}
SlotState empty_slot() { return {true, 0, 0, 0}; }
const ForkRule kCanFork{true, 16};
std::optional<SlotChoice> choose_fork(std::vector<SlotState> s, ForkRule rule = kCanFork) {
  return choose_slot_or_fork(s, rule);
}
}  // namespace

TEST(SlotFork, ContinuationTakesItsSlot) {
  // The whole live state is a prefix of the prompt: nothing is cut, nothing to fork.
  const auto c = choose_fork({held(100, 5, 100), empty_slot()});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
}

TEST(SlotFork, DivergenceForksIntoAnEmptySlot) {
  const auto c = choose_fork({held(40, 5, 100), empty_slot()});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 1u);
  ASSERT_TRUE(c->fork_from);
  EXPECT_EQ(*c->fork_from, 0u);
  EXPECT_EQ(c->fork_tokens, 40u);
}

TEST(SlotFork, DivergenceForksIntoAnOlderUnrelatedState) {
  // Slot 2 shares nothing and was used before slot 0: its state is worth less than 0's tail.
  const auto c = choose_fork({held(40, 5, 100), held(0, 9, 50), held(0, 2, 70)});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 2u);
  EXPECT_EQ(c->fork_from, 0u);
}

TEST(SlotFork, EmptySlotPreferredOverAnOlderState) {
  const auto c = choose_fork({held(40, 5, 100), held(0, 1, 70), empty_slot()});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 2u);
  EXPECT_EQ(c->fork_from, 0u);
}

TEST(SlotFork, DivergenceWithNoOtherIdleSlotCuts) {
  const auto c = choose_fork({held(40, 5, 100), {false, 0, 0, 0}});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
  const auto alone = choose_fork({held(40, 5, 100)});
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->slot, 0u);
  EXPECT_FALSE(alone->fork_from);
}

TEST(SlotFork, MoreRecentlyUsedStateIsKeptAndTheBestSlotCut) {
  // Slot 1 was used after slot 0: it is the likelier to come back, so slot 0 is cut.
  const auto c = choose_fork({held(40, 5, 100), held(0, 9, 50)});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
}

TEST(SlotFork, StateSharingPartOfThePromptIsNotATarget) {
  // Slot 1 shares less than slot 0 but something: it is not worth less, whatever its age.
  const auto c = choose_fork({held(40, 5, 100), held(20, 1, 50)});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
}

TEST(SlotFork, TinySharedPrefixIsNotForked) {
  const auto c = choose_fork({held(15, 5, 100), empty_slot()});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
  const auto at_min = choose_fork({held(16, 5, 100), empty_slot()});
  ASSERT_TRUE(at_min);
  EXPECT_EQ(at_min->fork_from, 0u);
}

TEST(SlotFork, EngineThatCannotForkCuts) {
  const auto c = choose_fork({held(40, 5, 100), empty_slot()}, ForkRule{false, 16});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->slot, 0u);
  EXPECT_FALSE(c->fork_from);
}

TEST(SlotFork, NeverAcrossSalts) {
  // Another tenant's live state shares 0 tokens with the prompt (reusable_prefix), so it is
  // never a fork source: the request goes to the empty slot with nothing to copy.
  const std::vector<Token> live = {1, 2, 3, 4, 5, 6}, prompt = {1, 2, 3, 4, 9};
  const size_t shared = reusable_prefix(live, "tenant-a", prompt, "tenant-b");
  EXPECT_EQ(shared, 0u);
  const auto c = choose_fork({held(shared, 5, live.size()), empty_slot()}, ForkRule{true, 1});
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->fork_from);
  const size_t same = reusable_prefix(live, "tenant-a", prompt, "tenant-a");
  const auto own = choose_fork({held(same, 5, live.size()), empty_slot()}, ForkRule{true, 1});
  ASSERT_TRUE(own);
  EXPECT_EQ(own->fork_from, 0u) << "the same tenant's prefix is forked";
}

TEST(SlotFork, NoIdleSlotNoChoice) {
  EXPECT_FALSE(choose_fork({{false, 40, 5, 100}, {false, 0, 0, 0}}));
}
