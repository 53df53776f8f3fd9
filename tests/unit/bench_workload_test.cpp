// The benchmark's workload generator, trace format, oracle and metrics parsing (no model).
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "loadgen/bench_run.h"
#include "loadgen/chat_client.h"
#include "loadgen/workload.h"

namespace kvstash::loadgen {
namespace {

AgentConfig small() {
  AgentConfig c;
  c.sessions = 4;
  c.sessions_per_env = 2;
  c.turns = 3;
  c.subagents = 1;
  c.subagent_after = 2;
  c.subagent_turns = 2;
  c.system_tokens = 800;
  c.tool_result_tokens = 100;
  return c;
}

std::vector<const Step*> requests_of(const Workload& w, const std::string& session) {
  std::vector<const Step*> out;
  for (const auto& s : w) {
    if (s.kind == Step::Kind::kRequest && s.session == session) out.push_back(&s);
  }
  return out;
}

TEST(BenchWorkload, SameSeedSameWorkloadOtherSeedOther) {
  auto c = small();
  const auto a = agent_workload(c), b = agent_workload(c);
  EXPECT_EQ(a, b);
  c.seed = 2;
  EXPECT_NE(agent_workload(c), a);
}

TEST(BenchWorkload, SessionsInterleaveAndTheServerRestartsHalfWay) {
  const auto w = agent_workload(small());
  // 4 sessions x (3 turns + 1 sub-agent x 2 turns) requests and one restart.
  ASSERT_EQ(count_requests(w), 20u);
  ASSERT_EQ(w.size(), 21u);
  size_t restart = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i].kind == Step::Kind::kRestart) restart = i;
  }
  EXPECT_EQ(restart, 10u);
  // The first requests come from different sessions (agents sharing a server).
  EXPECT_EQ(w[0].session, "s0");
  EXPECT_EQ(w[1].session, "s1");
  EXPECT_EQ(w[2].session, "s2");
}

TEST(BenchWorkload, TurnsGrowTheConversationAndSubAgentsBranchFromIt) {
  const auto w = agent_workload(small());
  const auto main = requests_of(w, "s1");
  ASSERT_EQ(main.size(), 3u);
  for (size_t t = 1; t < main.size(); ++t) {
    const auto& prev = main[t - 1]->messages;
    const auto& cur = main[t]->messages;
    ASSERT_EQ(cur.size(), prev.size() + 2);  // an assistant tool call and its result
    EXPECT_TRUE(std::equal(prev.begin(), prev.end(), cur.begin()));
  }
  const auto sub = requests_of(w, "s1.sub0");
  ASSERT_EQ(sub.size(), 2u);
  // Branches after the parent's 2nd request: its whole conversation is the sub-agent's prefix.
  const auto& parent = main[1]->messages;
  EXPECT_TRUE(std::equal(parent.begin(), parent.end(), sub[0]->messages.begin()));
  EXPECT_NE(sub[0]->messages.back(), main[2]->messages[parent.size()]);
}

TEST(BenchWorkload, TheEarlyEnvironmentBlockChangesBetweenGroupsOfSessions) {
  const auto w = agent_workload(small());
  const auto sys = [&](const std::string& s) { return requests_of(w, s)[0]->messages[0].content; };
  EXPECT_EQ(sys("s0"), sys("s1"));
  EXPECT_NE(sys("s0"), sys("s2"));
  EXPECT_EQ(sys("s2"), sys("s3"));
  // Early: most of the system block (the tool schemas, which templates render after the system
  // message) comes after the changed block (pr394).
  const std::string a = sys("s0"), b = sys("s2");
  const size_t common = std::mismatch(a.begin(), a.end(), b.begin()).first - a.begin();
  EXPECT_LT(common, (a.size() + w[0].tools.size()) / 4);
}

TEST(BenchWorkload, SizesFollowTheTokenCounter) {
  auto c = small();
  c.system_tokens = 4000;
  const auto w = agent_workload(c);
  // The system prompt plus the tool schemas the request sends.
  const size_t sys = estimate_tokens(w[0].messages[0].content) + estimate_tokens(w[0].tools);
  EXPECT_GE(sys, 3900u);
  EXPECT_LE(sys, 4400u);
}

TEST(BenchWorkload, TurnsAreToolCallsAnsweredByToolResults) {
  const auto w = agent_workload(small());
  const auto tools = nlohmann::json::parse(w[0].tools);
  ASSERT_GE(tools.size(), 2u);
  EXPECT_EQ(tools[0]["function"]["name"], "read_file");
  size_t calls = 0;
  for (const auto& s : w) {
    for (size_t i = 0; i + 1 < s.messages.size(); ++i) {
      const auto& m = s.messages[i];
      if (m.tool_calls.empty()) continue;
      ++calls;
      EXPECT_EQ(m.role, "assistant");
      const auto c = nlohmann::json::parse(m.tool_calls);
      // The next message is the tool's result for exactly this call.
      EXPECT_EQ(s.messages[i + 1].role, "tool");
      EXPECT_EQ(s.messages[i + 1].tool_call_id, c[0]["id"]);
      EXPECT_TRUE(nlohmann::json::accept(c[0]["function"]["arguments"].get<std::string>()));
    }
  }
  EXPECT_GT(calls, 0u);
}

TEST(BenchWorkload, TraceRoundTrips) {
  const auto w = agent_workload(small());
  std::stringstream ss;
  write_trace(ss, w);
  EXPECT_EQ(read_trace(ss), w);
}

TEST(BenchWorkload, BadTraceLinesAreNamed) {
  std::stringstream bad("{\"type\":\"restart\"}\n\n{\"type\":\"request\",\"messages\":[]}\n");
  try {
    read_trace(bad);
    FAIL() << "accepted a request without messages";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("trace line 3"), std::string::npos) << e.what();
  }
  std::stringstream junk("not json\n");
  EXPECT_THROW(read_trace(junk), std::runtime_error);
  std::stringstream unknown("{\"type\":\"nap\"}\n");
  EXPECT_THROW(read_trace(unknown), std::runtime_error);
}

TEST(BenchOracle, LongestPrefixWithAnyEarlierRequest) {
  const std::vector<std::vector<int32_t>> p = {
      {1, 2, 3, 4, 5},        // nothing earlier
      {1, 2, 3, 9, 9, 9},     // shares 3 with #0
      {1, 2, 3, 9, 9, 9, 7},  // shares 6 with #1
      {7, 7},                 // shares nothing
      {1, 2, 3, 4, 5},        // identical to #0: all but the last token
  };
  EXPECT_EQ(oracle_reuse(p), (std::vector<uint32_t>{0, 3, 6, 0, 4}));
}

TEST(BenchMetrics, PrometheusValues) {
  const std::string m =
      "# HELP kvstash_cache_bytes_written_total Bytes.\n"
      "kvstash_cache_bytes_written_total 1234\n"
      "kvstash_cache_bytes{tier=\"disk\"} 99\n"
      "kvstash_cache_bytes{tier=\"ram\"} 5\n";
  EXPECT_EQ(prometheus_value(m, "kvstash_cache_bytes_written_total"), 1234);
  EXPECT_EQ(prometheus_value(m, "kvstash_cache_bytes", "tier=\"disk\""), 99);
  EXPECT_EQ(prometheus_value(m, "kvstash_cache_bytes"), 104);  // all tiers
  EXPECT_EQ(prometheus_value(m, "kvstash_missing"), 0);
}

TEST(BenchWorkload, ColdPromptsShareNothingAndHaveTheirSize) {
  ColdConfig cfg;
  cfg.requests = 3;
  cfg.tokens = 2000;
  const auto w = cold_workload(cfg);
  ASSERT_EQ(w.size(), 3u);
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(w[i].messages.size(), 1u);
    const std::string& text = w[i].messages[0].content;
    EXPECT_GE(estimate_tokens(text), 1950u);
    EXPECT_LT(estimate_tokens(text), 2200u);
    for (size_t j = 0; j < i; ++j) {
      const std::string& other = w[j].messages[0].content;
      const auto diff = std::mismatch(text.begin(), text.end(), other.begin(), other.end());
      EXPECT_LT(diff.first - text.begin(), 12)
          << "requests " << j << " and " << i << " share a prefix";
    }
  }
  EXPECT_EQ(cold_workload(cfg), w) << "the same seed gives the same workload";
}

}  // namespace
}  // namespace kvstash::loadgen
