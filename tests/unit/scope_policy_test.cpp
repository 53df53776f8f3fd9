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
