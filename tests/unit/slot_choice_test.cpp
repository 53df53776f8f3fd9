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
