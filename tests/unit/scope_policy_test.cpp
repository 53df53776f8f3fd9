// Boundary selection of the scoped policy on synthetic request histories (lucebox pr364).
#include "cache/scope_policy.h"

#include <gtest/gtest.h>

using namespace kvstash::cache;

namespace {
std::vector<Token> seq(std::initializer_list<std::pair<Token, int>> runs) {
  std::vector<Token> t;
  for (auto [v, n] : runs) {
    for (int i = 0; i < n; ++i) t.push_back(v * 100000 + static_cast<Token>(t.size()));
  }
  return t;
}
}  // namespace

TEST(ScopePolicy, ParsesEveryFormAndRejectsTheRest) {
  std::string err;
  EXPECT_EQ(parse_scope("off", &err)->kind, Scope::Kind::kOff);
  EXPECT_EQ(parse_scope("full", &err)->kind, Scope::Kind::kFull);
  EXPECT_EQ(parse_scope("auto", &err)->n, 30u);
  EXPECT_EQ(parse_scope("auto:8", &err)->n, 8u);
  EXPECT_EQ(parse_scope("1000", &err)->kind, Scope::Kind::kFixed);
  for (const char* bad : {"", "auto:", "auto:0", "auto:x", "-5", "12k", "ful", "auto:99999"}) {
    err.clear();
    EXPECT_FALSE(parse_scope(bad, &err).has_value()) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(ScopePolicy, FixedAlignsDownToAChatBoundary) {
  const auto p = seq({{1, 3000}});
  const auto c = choose_scope_boundary({Scope::Kind::kFixed, 1000}, p, {400, 900, 1500}, {}, 512);
  EXPECT_EQ(c.boundary, 900u);
  EXPECT_NE(c.log.find("selected=900"), std::string::npos);
}

TEST(ScopePolicy, FixedBelowMinTokensSelectsNothing) {
  const auto p = seq({{1, 3000}});
  EXPECT_EQ(choose_scope_boundary({Scope::Kind::kFixed, 1000}, p, {400}, {}, 512).boundary, 0u);
}

TEST(ScopePolicy, AutoPicksTheBestMatchingRecentRequest) {
  // Stable context of 2000 tokens, then a tail that changes every time.
  const auto stable = seq({{1, 2000}});
  auto with_tail = [&](Token tail) {
    auto t = stable;
    for (int i = 0; i < 500; ++i) t.push_back(tail * 1000 + i);
    return t;
  };
  const std::vector<std::vector<Token>> history = {seq({{9, 2500}}), with_tail(1), with_tail(2)};
  const auto prompt = with_tail(3);
  const auto c =
      choose_scope_boundary({Scope::Kind::kAuto, 30}, prompt, {100, 1990, 2100}, history, 512);
  EXPECT_EQ(c.boundary, 1990u) << "LCP 2000 aligned down to the message start at 1990";
  EXPECT_NE(c.log.find("3 candidates"), std::string::npos) << c.log;
  EXPECT_NE(c.log.find("best=2000"), std::string::npos) << c.log;
}

TEST(ScopePolicy, AutoWindowLimitsTheCandidates) {
  const auto stable = seq({{1, 2000}});
  std::vector<std::vector<Token>> history = {stable};
  for (int i = 0; i < 5; ++i) history.push_back(seq({{Token(20 + i), 2000}}));
  const auto c2 = choose_scope_boundary({Scope::Kind::kAuto, 2}, stable, {1500}, history, 512);
  EXPECT_EQ(c2.boundary, 0u) << "the matching request is outside a window of 2";
  const auto c8 = choose_scope_boundary({Scope::Kind::kAuto, 8}, stable, {1500}, history, 512);
  EXPECT_EQ(c8.boundary, 1500u);
}

TEST(ScopePolicy, AutoWithoutHistorySelectsNothingAndSaysSo) {
  const auto c = choose_scope_boundary({Scope::Kind::kAuto, 30}, seq({{1, 3000}}), {1000}, {}, 512);
  EXPECT_EQ(c.boundary, 0u);
  EXPECT_NE(c.log.find("no recent requests"), std::string::npos);
}

TEST(ScopePolicy, NeverTheWholePrompt) {
  // An identical earlier request: the boundary stays below the prompt end.
  const auto p = seq({{1, 3000}});
  const auto c = choose_scope_boundary({Scope::Kind::kAuto, 30}, p, {1000, 2999}, {p}, 512);
  EXPECT_EQ(c.boundary, 2999u);
  EXPECT_LT(c.boundary, p.size());
}

// The guessing attack of issue 29: tenant b sent a secret prompt; tenant a sends a right guess
// and a wrong one of the same length. Only a's own prompts are candidates, so both choose alike.
TEST(ScopePolicy, AutoCandidatesAreTheRequestersOwnSaltsPromptsOnly) {
  const auto secret = seq({{1, 3000}}), wrong = seq({{2, 3000}});
  PromptHistory h(64, 16);
  h.add("b", secret);
  const Scope scope{Scope::Kind::kAuto, 30};
  const std::vector<uint32_t> boundaries = {1000, 2000};
  const auto right_c = choose_scope_boundary(scope, secret, boundaries, h.recent("a"), 512);
  const auto wrong_c = choose_scope_boundary(scope, wrong, boundaries, h.recent("a"), 512);
  EXPECT_EQ(right_c.boundary, 0u);
  EXPECT_EQ(wrong_c.boundary, 0u);
  EXPECT_EQ(right_c.log, wrong_c.log) << "not even the logged candidates differ";
  EXPECT_EQ(choose_scope_boundary(scope, secret, boundaries, h.recent("b"), 512).boundary, 2000u)
      << "b's own next request still finds its prompt";
  EXPECT_EQ(choose_scope_boundary(scope, secret, boundaries, h.recent(""), 512).boundary, 0u)
      << "no salt is a salt of its own";
}

TEST(ScopePolicy, HistoryKeepsEachSaltsLastPrompts) {
  PromptHistory h(2, 16);
  for (int i = 1; i <= 3; ++i) h.add("a", seq({{Token(i), 10}}));
  EXPECT_EQ(h.recent("a"), (std::vector<std::vector<Token>>{seq({{2, 10}}), seq({{3, 10}})}))
      << "the last two, most recent last";
  EXPECT_TRUE(h.recent("b").empty());
}

TEST(ScopePolicy, OneSaltsTrafficNeverPushesAnothersPromptsOut) {
  PromptHistory h(2, 16);
  h.add("a", seq({{1, 10}}));
  for (int i = 0; i < 100; ++i) h.add("b", seq({{Token(2 + i), 10}}));
  EXPECT_EQ(h.recent("a"), (std::vector<std::vector<Token>>{seq({{1, 10}})}));
}

TEST(ScopePolicy, BeyondMaxSaltsTheLeastRecentlySeenSaltIsForgotten) {
  PromptHistory h(4, 2);
  h.add("a", seq({{1, 10}}));
  h.add("b", seq({{2, 10}}));
  h.add("a", seq({{3, 10}}));
  h.add("c", seq({{4, 10}}));
  EXPECT_TRUE(h.recent("b").empty());
  EXPECT_EQ(h.recent("a").size(), 2u);
  EXPECT_EQ(h.recent("c").size(), 1u);
  h.clear();
  EXPECT_TRUE(h.recent("a").empty());
}
