#include "replay/scenarios.h"

#include <random>
#include <stdexcept>

namespace kvstash::replay {

namespace {

using Tokens = std::vector<cache::Token>;

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(uint64_t seed) : rng(seed) {}
  Tokens block(size_t n) {
    std::uniform_int_distribution<cache::Token> d(100, 150000);
    Tokens t(n);
    for (auto& x : t) x = d(rng);
    return t;
  }
  uint32_t between(uint32_t a, uint32_t b) {
    return std::uniform_int_distribution<uint32_t>(a, b)(rng);
  }
};

// A prompt made of messages; the last one is the user turn (the anchor is where it starts).
struct Prompt {
  std::vector<Tokens> msgs;
  TraceRecord record(const std::string& session, uint32_t gen = 16) const {
    TraceRecord r;
    r.session = session;
    r.gen = gen;
    for (const auto& m : msgs) {
      r.boundaries.push_back(static_cast<uint32_t>(r.tokens.size()));
      if (r.boundaries.size() > 1) r.anchor = r.boundaries.back();
      r.tokens.insert(r.tokens.end(), m.begin(), m.end());
    }
    return r;
  }
};

TraceRecord restart() {
  TraceRecord r;
  r.type = TraceRecord::Type::kRestart;
  return r;
}

// issue157: a budget just above one prompt's state. Prompt A is reused (its objects gather
// hits); then the workload moves to prompt B. Before the fix every store of B writes and then
// evicts its own objects (A's score is higher): B never gets cached and is written again and
// again. After it, B's store makes room by evicting A.
Scenario issue157(Gen& g) {
  Scenario s;
  s.name = "issue157";
  s.about = "budget just above one prompt; A reused, then B repeated: store-then-evict thrash";
  s.budget = "1600M";
  s.before = "issue157";
  const Prompt a{{g.block(10000), g.block(2000)}}, b{{g.block(10000), g.block(2000)}};
  auto other = [&] { return Prompt{{g.block(300)}}.record("x"); };  // short: never stored
  for (int i = 0; i < 4; ++i) {
    s.trace.push_back(a.record("a"));
    s.trace.push_back(other());
  }
  for (int i = 0; i < 6; ++i) {
    s.trace.push_back(b.record("b"));
    s.trace.push_back(other());
  }
  return s;
}

// pr448: on a live miss the old live state is stored (evict) before the incoming prompt is looked
// up. Under budget pressure that store must not evict the incoming prompt's own prefix (A: old,
// never hit and shorter, so its entries score lowest) while there are other entries (C, recent
// and hit) to evict.
Scenario pr448(Gen& g) {
  Scenario s;
  s.name = "pr448";
  s.about = "live miss whose evict store would evict the incoming prompt's prefix";
  s.budget = "2200M";
  s.before = "pr448";
  const Prompt a{{g.block(5000), g.block(1000)}}, c{{g.block(10000), g.block(2000)}};
  auto other = [&] { return Prompt{{g.block(300)}}.record("x"); };
  s.trace.push_back(a.record("a"));
  s.trace.push_back(other());
  for (int i = 0; i < 3; ++i) {
    s.trace.push_back(c.record("c"));
    s.trace.push_back(other());
  }
  // A long single-message request: no checkpoint during its prefill (its anchor is below
  // --cache-min-tokens and it is shorter than the continued interval), only the evict store.
  s.trace.push_back(Prompt{{g.block(1000), g.block(9000)}}.record("l"));
  s.trace.push_back(a.record("a"));
  return s;
}

// pr394: S (system) | G (a block that changes between epochs, like Claude Code's git status) |
// T (tools) | user turns. Sub-agents share S only. A fresh session first hits a waypoint below
// its anchor (the sub-agent's checkpoint, or one before G); before the fix the anchor is never
// stored then, and every fresh session of the epoch pays for G + T again. Shows on models that
// resume only at snapshots (--hybrid); with attention KV every chunk is a resume point.
Scenario pr394(Gen& g) {
  Scenario s;
  s.name = "pr394";
  s.about =
      "an early block changes between epochs: the anchor must be refreshed after a partial hit";
  s.hybrid = true;
  s.before = "pr394";
  const Tokens sys = g.block(10000), tools = g.block(14000);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const Tokens git = g.block(2000);
    s.trace.push_back(Prompt{{sys, g.block(1500)}}.record("sub" + std::to_string(epoch), 64));
    for (int sess = 0; sess < 3; ++sess) {
      const std::string name = "e" + std::to_string(epoch) + "s" + std::to_string(sess);
      Prompt p{{sys, git, tools}};
      for (int turn = 0; turn < 3; ++turn) {
        if (turn) p.msgs.push_back(g.block(g.between(200, 600)));  // the assistant's reply
        p.msgs.push_back(g.block(g.between(300, 1200)));           // the user turn
        s.trace.push_back(p.record(name, 64));
      }
    }
  }
  return s;
}

// pr175: a long prefill takes continued checkpoints every 10240 tokens (its anchor is past
// --cache-cold-max-tokens), then a longer prompt continues it. Each continued checkpoint
// supersedes the previous one; before the fix they all stay.
Scenario pr175(Gen& g) {
  Scenario s;
  s.name = "pr175";
  s.about = "long prefills with continued checkpoints, then longer ones";
  s.before = "pr175";
  s.budget = "16G";
  for (int doc = 0; doc < 3; ++doc) {
    const std::string name = "d" + std::to_string(doc);
    Prompt p{{g.block(1000), g.block(44000)}};
    s.trace.push_back(p.record(name));
    p.msgs.push_back(g.block(500));
    p.msgs.push_back(g.block(15000));
    s.trace.push_back(p.record(name));
    s.trace.push_back(Prompt{{g.block(300)}}.record("x"));
  }
  s.trace.push_back(s.trace[0]);  // the first document again
  return s;
}

// pr364 (the scope policy): agent prompts = a stable context (system, tools, AGENTS.md) + a tail
// that changes on every request (recent tool results sliding by one, a retrieved memory block, the
// user's message). Compare the scope policies.
Scenario pr364(Gen& g) {
  Scenario s;
  s.name = "pr364";
  s.about = "agent prompts whose tail changes on every request: scope policies";
  s.hybrid = true;
  s.policies = {"full", "auto:30", "auto:2", "off"};
  const Tokens sys = g.block(3000), tools = g.block(3000), agents = g.block(2000);
  std::vector<Tokens> results, memories;
  for (int i = 0; i < 40; ++i) results.push_back(g.block(g.between(300, 900)));
  for (int i = 0; i < 3; ++i) memories.push_back(g.block(1500));
  for (int i = 0; i < 30; ++i) {
    Prompt p{{sys, tools, agents}};
    if (g.between(0, 2) > 0) p.msgs.push_back(memories[g.between(0, 2)]);
    for (int k = 0; k < 3; ++k) p.msgs.push_back(results[i + k]);
    p.msgs.push_back(g.block(g.between(100, 400)));
    s.trace.push_back(p.record("agent", 64));
    if (i == 14) s.trace.push_back(restart());
  }
  return s;
}

// A mixed agent workload: sessions sharing one system prompt with tools, turns that grow with
// tool outputs, sub-agents with their own system prompt, two sessions interleaved, a restart.
Scenario agent(Gen& g) {
  Scenario s;
  s.name = "agent";
  s.about = "sessions sharing a system prompt, growing turns, sub-agents, a restart";
  s.policies = {"full", "auto", "auto:2", "8192", "off"};
  s.budget = "8G";
  const Tokens sys = g.block(9000), tools = g.block(3000), sub_sys = g.block(4000);
  struct Sess {
    std::string name;
    Prompt p;
  };
  auto fresh = [&](int i) {
    return Sess{"s" + std::to_string(i), Prompt{{sys, tools, g.block(g.between(200, 800))}}};
  };
  std::vector<Sess> live = {fresh(0), fresh(1)};
  int next = 2;
  for (int step = 0; step < 36; ++step) {
    if (step == 18) s.trace.push_back(restart());
    Sess& cur = live[step % 2];
    s.trace.push_back(cur.p.record(cur.name, 32));
    if (g.between(0, 3) == 0) {  // the session starts a sub-agent
      s.trace.push_back(
          Prompt{{sub_sys, g.block(g.between(500, 2000))}}.record(cur.name + "-sub", 32));
    }
    cur.p.msgs.push_back(g.block(g.between(100, 400)));      // assistant (tool call)
    cur.p.msgs.push_back(g.block(g.between(500, 3000)));     // tool output
    cur.p.msgs.push_back(g.block(g.between(50, 300)));       // user
    if (cur.p.msgs.size() > 3 + 3 * 6) cur = fresh(next++);  // a session ends after 6 turns
  }
  return s;
}

}  // namespace

std::vector<std::string> scenario_names() {
  return {"issue157", "pr394", "pr448", "pr175", "pr364", "agent"};
}

Scenario make_scenario(const std::string& name, uint64_t seed) {
  Gen g(seed);
  if (name == "issue157") return issue157(g);
  if (name == "pr394") return pr394(g);
  if (name == "pr448") return pr448(g);
  if (name == "pr175") return pr175(g);
  if (name == "pr364") return pr364(g);
  if (name == "agent") return agent(g);
  std::string all;
  for (const auto& n : scenario_names()) all += (all.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown scenario '" + name + "' (" + all + ")");
}

}  // namespace kvstash::replay
