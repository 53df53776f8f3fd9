// Slots keep their sessions (cache/slot_choice.h, choose_slot_or_fork): a real `kvstash serve
// --parallel 2` on the tiny model, two sessions sharing a system prompt. The second session must
// fork the system prompt into the idle slot instead of cutting the first session's live state,
// the first session's next turn must find itself live, and the forked request must answer what a
// fresh prefill answers, bit for bit. Below the server, the engine's fork itself.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <regex>
#include <string>
#include <thread>

#include "engine/session.h"
#include "engine/session_engine.h"
#include "engine/shared_context.h"
#include "http_helpers.h"
#include "server/slot_pool.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash;
using namespace kvstash::fixtures;
using nlohmann::json;

namespace {

// Greedy, with no end of turn before max_tokens (the tiny model's EOS tokens banned).
std::string greedy_body(const json& msgs, int max_tokens) {
  return chat_body(msgs, max_tokens, {{"logit_bias", {{"151645", false}, {"151643", false}}}});
}

// The value of a counter without labels in a /metrics page (-1: absent).
long counter(const std::string& metrics, const std::string& name) {
  const std::regex line("(^|\n)" + name + " ([0-9]+)");
  std::smatch m;
  return std::regex_search(metrics, m, line) ? std::stol(m[2]) : -1;
}

// The request log lines of `log` (request_log.cpp: "request N chat slot=S ...").
std::vector<std::string> request_lines(const std::string& log) {
  std::vector<std::string> out;
  const std::regex line("request [0-9]+ [a-z]+ slot=[^\n]*");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    out.push_back(it->str());
  }
  return out;
}

// Waits until no slot runs a job: a slot marks itself idle, with its new live state, only after
// it has answered, so a next request sent at once may find it still busy.
void wait_idle(const std::function<bool()>& busy) {
  for (int i = 0; i < 500 && busy(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(busy()) << "a slot stayed busy";
}
bool any_busy(int port) {
  const Reply r = get(port, "/slots");
  for (const auto& s : r.body) {
    if (s["is_processing"].get<bool>()) return true;
  }
  return !r.body.is_array();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(SlotFork, SecondSessionForksTheSystemPromptAndTheFirstStaysLive) {
  TempDir dir;
  const std::string model = model_path("tiny");
  const json s1 = agent(1, 1, 1);  // a long system prompt, then session 1's task
  const json s2 = agent(1, 1, 2);  // the same system prompt, another task
  // The reference: a fresh prefill of session 2, and the system prompt's length.
  std::string fresh2;
  int system_tokens = 0;
  {
    ServerProcess ref({"-m", model, "--ctx-size", "16384", "--cache-scope", "off"});
    const Reply r = post(ref.port(), "/v1/chat/completions", greedy_body(s2, 8));
    ASSERT_EQ(r.status, 200) << r.raw << ref.log();
    fresh2 = content(r);
    const json sys_only = json::array({s1[0]});
    const Reply sys = post(ref.port(), "/v1/chat/completions", greedy_body(sys_only, 1));
    ASSERT_EQ(sys.status, 200) << sys.raw << ref.log();
    // Less the generation prompt, "<|im_start|>assistant\n".
    system_tokens = sys.body["usage"]["prompt_tokens"].get<int>() - 3;
  }
  ASSERT_GT(system_tokens, 512) << "the system prompt must be worth a fork (a chunk at least)";

  ServerProcess srv(server_args(model, dir.path + "/cache", {"--parallel", "2"}));
  const int p = srv.port();
  const Reply a1 = post(p, "/v1/chat/completions", greedy_body(s1, 8));
  ASSERT_EQ(a1.status, 200) << a1.raw;
  wait_idle([&] { return any_busy(p); });
  const Reply b1 = post(p, "/v1/chat/completions", greedy_body(s2, 8));
  ASSERT_EQ(b1.status, 200) << b1.raw;
  wait_idle([&] { return any_busy(p); });
  json s1_next = s1;
  s1_next.push_back({{"role", "assistant"}, {"content", content(a1)}});
  s1_next.push_back({{"role", "user"}, {"content", "Go on."}});
  const Reply a2 = post(p, "/v1/chat/completions", greedy_body(s1_next, 8));
  ASSERT_EQ(a2.status, 200) << a2.raw;

  // Session 2 started from the system prompt forked out of session 1's slot...
  EXPECT_EQ(b1.body["timings"]["cache_source"], "fork") << b1.raw;
  EXPECT_GE(cached(b1), system_tokens) << b1.raw;
  EXPECT_EQ(content(b1), fresh2) << "a forked prefix continues exactly as a fresh prefill";
  // ...on the other slot, so session 1 found itself live on its own.
  const std::string log = srv.log();
  const auto reqs = request_lines(log);
  ASSERT_EQ(reqs.size(), 3u) << log;
  EXPECT_NE(reqs[0].find("slot=0"), std::string::npos) << reqs[0];
  EXPECT_NE(reqs[1].find("slot=1"), std::string::npos) << reqs[1];
  EXPECT_NE(reqs[2].find("slot=0"), std::string::npos) << reqs[2];
  EXPECT_EQ(a2.body["timings"]["cache_source"], "live") << a2.raw;
  EXPECT_GT(cached(a2), system_tokens) << "session 1's own turn, not just the system prompt";
  EXPECT_EQ(count(log, "reason=evict"), 0u) << "no live state was cut or stored away\n" << log;

  const std::string metrics = get(p, "/metrics").raw;
  EXPECT_EQ(counter(metrics, "kvstash_slot_forks_total"), 1) << metrics;
  EXPECT_EQ(counter(metrics, "kvstash_slot_evictions_total"), 0) << metrics;
}

// The engine's fork (Session::fork_from): the forked prefix continued computes the logits of a
// fresh prefill, also when the source's cells are rewritten by a restore right after the fork
// (llama.cpp queues the copy of the buffers; the fork must have made it before it returns).
TEST(SlotFork, ForkedPrefixContinuesBitExactEvenWhenTheSourceIsRewrittenAtOnce) {
  engine::Model& m = fixtures::model("tiny");
  engine::SessionOptions so;
  so.n_ctx = 2048;
  so.chunk = 256;
  auto tokens = [&](int from, int n) {
    std::vector<engine::Token> t;
    for (int i = 0; i < n; ++i)
      t.push_back(static_cast<engine::Token>(100 + (from + i * 7) % 5000));
    return t;
  };
  const auto p = tokens(0, 700);  // the source's prompt
  auto p2 = std::vector<engine::Token>(p.begin(), p.begin() + 512);
  for (auto t : tokens(3000, 150)) p2.push_back(t);  // shares 512 tokens (two chunks) with p
  const auto q = tokens(9000, 512);                  // what the source holds next

  auto shared = std::make_shared<engine::SharedContext>(m, so, 2);
  engine::Session src(m, so, shared, 0), dst(m, so, shared, 1);
  ASSERT_TRUE(src.prefill(p));
  dst.fork_from(src, 512);
  EXPECT_EQ(dst.tokens(), std::vector<engine::Token>(p.begin(), p.begin() + 512));
  EXPECT_EQ(src.tokens(), p) << "the source keeps its live state";

  // The source is rewritten by a restore (no llama_decode) before dst computes anything.
  engine::Session other(m, so);
  ASSERT_TRUE(other.prefill(q));
  const std::vector<uint8_t> kv = other.extract_kv(0, 512);
  src.restore_begin(0, 0);
  src.restore_kv(kv);
  src.restore_end({}, q, {});

  ASSERT_TRUE(dst.prefill(p2));
  engine::Session fresh(m, so);
  ASSERT_TRUE(fresh.prefill(p2));
  ASSERT_FALSE(fresh.logits().empty());
  EXPECT_EQ(dst.logits(), fresh.logits()) << "a fork continues exactly as a fresh prefill";
  // And the source holds what was restored into it, untouched by the fork.
  const auto q2 = [&] {
    auto t = q;
    for (auto x : tokens(4000, 40)) t.push_back(x);
    return t;
  }();
  ASSERT_TRUE(src.prefill(q2));
  engine::Session fresh_q(m, so);
  ASSERT_TRUE(fresh_q.prefill(q2));
  EXPECT_EQ(src.logits(), fresh_q.logits());
}

// Only attention KV forks: a hybrid model's recurrent state cannot be cut, so its engine refuses
// and its pool cuts the best slot as without forks; the tiny model's pool forks.
TEST(SlotFork, OnlyModelsThatResumeAnywhereFork) {
  engine::SessionOptions so;
  so.n_ctx = 2048;
  so.chunk = 256;
  std::vector<engine::Token> sys;
  for (int i = 0; i < 600; ++i) sys.push_back(static_cast<engine::Token>(200 + i * 3 % 4000));
  auto turn = [&](int from) {
    auto t = sys;
    for (int i = 0; i < 100; ++i) t.push_back(static_cast<engine::Token>(from + i));
    return t;
  };
  for (const std::string shape : {"tiny", "hybrid-tiny"}) {
    SCOPED_TRACE(shape);
    engine::Model& m = fixtures::model(shape);
    const bool forks = shape == "tiny";
    {
      auto shared = std::make_shared<engine::SharedContext>(m, so, 2);
      engine::Session a(m, so, shared, 0), b(m, so, shared, 1);
      ASSERT_TRUE(a.prefill(turn(5000)));
      engine::SessionEngine ea(a), eb(b);
      EXPECT_EQ(eb.fork_from(ea, 512), forks);
      EXPECT_EQ(b.tokens().size(), forks ? 512u : 0u);
    }
    server::SlotPool pool(m, so, 2, nullptr, {}, cache::Scope{});
    std::vector<int> slots;
    for (int from : {5000, 6000}) {
      auto job = std::make_shared<server::Job>();
      job->prompt = turn(from);
      job->info.boundaries = {0, 600};
      job->max_tokens = 2;
      job->sampling.temperature = 0;
      std::promise<server::Job::Result> done;
      job->on_done = [&](const server::Job::Result& r) { done.set_value(r); };
      pool.submit(job);
      const server::Job::Result r = done.get_future().get();
      ASSERT_EQ(r.end, server::JobEnd::kLength) << r.error;
      slots.push_back(r.slot);
      wait_idle([&] {
        for (const auto& s : pool.slots()) {
          if (s.busy) return true;
        }
        return false;
      });
      // A hybrid state cannot be cut, and this pool has no cache: nothing is reused.
      if (from == 6000) EXPECT_EQ(r.cache_source, forks ? "fork" : "");
    }
    EXPECT_EQ(slots, (std::vector<int>{0, forks ? 1 : 0}));
    EXPECT_EQ(pool.counters().forks.load(), forks ? 1u : 0u);
    EXPECT_EQ(pool.counters().evictions.load(), forks ? 0u : 1u);
  }
}
