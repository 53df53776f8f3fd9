// Batched decode (engine/shared_context.h) on real generated models: the slots of a server are
// sequences of one llama.cpp context; their decode steps run as one batch, their prefills alone.
// What must hold: a prefill computed while other slots decode is bit-exact (its stored state
// restores, in a fresh process, to the answer of a lone fresh prefill), every stream's first token
// is the one it gets served alone, every stream gets the tokens it asked for, and a stream that
// goes away leaves the others intact.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "http_helpers.h"
#include "server/slot_pool.h"
#include "server_process.h"
#include "subprocess.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash;
using nlohmann::json;

namespace {

class BatchedDecode : public ::testing::TestWithParam<std::string> {
 protected:
  engine::Model& model() { return fixtures::model(GetParam()); }
};

struct Stream {
  std::vector<engine::Token> tokens;  // generated, in order
  server::Job::Result result;
};

std::shared_ptr<server::Job> greedy_job(std::vector<engine::Token> prompt, int max_tokens,
                                        Stream& out, std::promise<void>& done) {
  auto job = std::make_shared<server::Job>();
  job->prompt = std::move(prompt);
  job->max_tokens = max_tokens;
  job->sampling.temperature = 0;
  job->logprobs = true;
  job->on_logprob = [&out](engine::Token t, float, const std::vector<engine::TokenProb>&) {
    out.tokens.push_back(t);
  };
  job->on_done = [&out, &done](const server::Job::Result& r) {
    out.result = r;
    done.set_value();
  };
  return job;
}

std::vector<std::vector<engine::Token>> prompts(engine::Model& m, int n) {
  std::vector<std::vector<engine::Token>> out;
  for (int i = 0; i < n; ++i) {
    std::string text = "Stream " + std::to_string(i) + " asks:";
    for (int w = 0; w < 40 + 13 * i; ++w) text += " word" + std::to_string(w * (i + 2));
    out.push_back(m.tokenize(text));
  }
  return out;
}

engine::SessionOptions options() {
  engine::SessionOptions so;
  so.n_ctx = 2048;
  so.chunk = 256;
  return so;
}

// A streamed "Count i" request of up to `max_tokens` tokens; `on_chunk` sees each piece of the
// stream and returns false to hang up.
void stream_count(int port, int i, int max_tokens, const std::function<bool()>& on_chunk) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(300, 0);
  const json msgs = json::array({{{"role", "user"}, {"content", "Count " + std::to_string(i)}}});
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = fixtures::chat_body(msgs, max_tokens, {{"stream", true}});
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return on_chunk(); };
  c.send(req);
}

}  // namespace

TEST_P(BatchedDecode, StreamsKeepTheirLoneFirstTokenAndCompleteTogether) {
  constexpr int kStreams = 4, kTokens = 24;
  const auto ps = prompts(model(), kStreams);
  // Alone: one slot, one request after the other.
  std::vector<Stream> alone(kStreams);
  {
    server::SlotPool pool(model(), options(), 1, nullptr, {}, cache::Scope{});
    for (int i = 0; i < kStreams; ++i) {
      std::promise<void> done;
      pool.submit(greedy_job(ps[i], kTokens, alone[i], done));
      done.get_future().wait();
    }
  }
  // Together: four slots, four requests at once.
  std::vector<Stream> together(kStreams);
  engine::SharedContext::Stats st;
  {
    server::SlotPool pool(model(), options(), kStreams, nullptr, {}, cache::Scope{});
    std::vector<std::promise<void>> done(kStreams);
    for (int i = 0; i < kStreams; ++i)
      pool.submit(greedy_job(ps[i], kTokens, together[i], done[i]));
    for (auto& d : done) d.get_future().wait();
    st = pool.decode_stats();
  }
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream " + std::to_string(i));
    ASSERT_FALSE(together[i].tokens.empty()) << together[i].result.error;
    ASSERT_FALSE(alone[i].tokens.empty()) << alone[i].result.error;
    // The first token comes from the prefill's logits, which batching must not touch.
    EXPECT_EQ(together[i].tokens[0], alone[i].tokens[0]);
    EXPECT_EQ(together[i].result.end, server::JobEnd::kLength) << together[i].result.error;
    EXPECT_EQ(together[i].result.completion_tokens, static_cast<uint32_t>(kTokens));
  }
  // The streams did share decode steps (how many depends on how the 2 cores are shared).
  EXPECT_GT(st.steps, 0u);
  EXPECT_GT(st.tokens, st.steps) << "mean batch " << double(st.tokens) / st.steps;
  EXPECT_GE(st.max_batch, 2u);
}

TEST_P(BatchedDecode, CancellingOneStreamLeavesTheOthersIntact) {
  constexpr int kStreams = 3, kTokens = 48;
  const auto ps = prompts(model(), kStreams);
  std::vector<Stream> out(kStreams);
  std::vector<std::promise<void>> done(kStreams);
  server::SlotPool pool(model(), options(), kStreams, nullptr, {}, cache::Scope{});
  std::vector<std::shared_ptr<server::Job>> jobs;
  for (int i = 0; i < kStreams; ++i) jobs.push_back(greedy_job(ps[i], kTokens, out[i], done[i]));
  // Stream 1's client goes away after its 5th token (what a disconnect does to the job).
  jobs[1]->on_logprob = [&, j = jobs[1].get()](engine::Token t, float,
                                               const std::vector<engine::TokenProb>&) {
    out[1].tokens.push_back(t);
    if (out[1].tokens.size() == 5) j->cancelled = true;
  };
  for (auto& j : jobs) pool.submit(j);
  for (auto& d : done) d.get_future().wait();
  EXPECT_EQ(out[1].result.end, server::JobEnd::kCancelled);
  EXPECT_LT(out[1].result.completion_tokens, static_cast<uint32_t>(kTokens));
  for (int i : {0, 2}) {
    EXPECT_EQ(out[i].result.end, server::JobEnd::kLength) << out[i].result.error;
    EXPECT_EQ(out[i].result.completion_tokens, static_cast<uint32_t>(kTokens));
  }
  // The slot of the cancelled stream serves the next request normally.
  Stream again;
  std::promise<void> d;
  pool.submit(greedy_job(ps[1], 8, again, d));
  d.get_future().wait();
  EXPECT_EQ(again.result.completion_tokens, 8u) << again.result.error;
  ASSERT_FALSE(again.tokens.empty());
  EXPECT_EQ(again.tokens[0], out[1].tokens[0]);
}

// A prompt prefilled by a server while three other slots decode, stored, and restored by a fresh
// process gives the logits and 32 greedy tokens of a lone fresh prefill.
TEST_P(BatchedDecode, PrefillBesideDecodingSlotsRestoresBitExactInAFreshProcess) {
  fixtures::TempDir dir;
  const std::string cache_dir = dir.path + "/cache";
  const std::string model_path = fixtures::model_path(GetParam());
  fixtures::ServerProcess srv({"-m", model_path, "--ctx-size", "16384", "--parallel", "4",
                               "--cache-dir", cache_dir, "--cache-boundary-align", "256"});
  // Three streams that decode until told to stop (their clients then hang up).
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  std::vector<int> received(3, 0);
  std::vector<std::thread> streams;
  for (int i = 0; i < 3; ++i) {
    streams.emplace_back([&, i] {
      stream_count(srv.port(), i, 7000, [&] {
        if (received[i]++ == 0) ++started;
        return !stop.load();
      });
    });
  }
  while (started.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto steps = [&] {
    const auto m = fixtures::get(srv.port(), "/metrics").raw;
    const auto at = m.find("\nkvstash_decode_steps_total ");
    return at == std::string::npos ? -1L : std::stol(m.substr(at + 28));
  };
  const json msgs = fixtures::agent(7, 3);
  const long before = steps();
  const auto r = fixtures::post(srv.port(), "/v1/chat/completions", fixtures::chat_body(msgs, 1));
  const long after = steps();
  ASSERT_EQ(r.status, 200) << r.raw;
  const int prompt_tokens = r.body["usage"]["prompt_tokens"];
  ASSERT_GE(prompt_tokens, 1024) << "the prompt must take several prefill batches";
  // The other slots decoded between its prefill batches (at least one step per batch).
  EXPECT_GE(after - before, prompt_tokens / 256) << srv.log();
  stop = true;
  for (auto& t : streams) t.join();
  for (int n : received) EXPECT_GT(n, 0);
  ASSERT_EQ(srv.stop(SIGTERM), 0) << srv.log();  // stores drained

  const std::string file = dir.path + "/messages.json";
  std::ofstream(file) << msgs.dump();
  auto generate = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate",   model_path, "--messages",
                                     file,         "-n",       "32",
                                     "--ctx-size", "8192",     "--cache-boundary-align",
                                     "256"};
    args.insert(args.begin() + 1, "-m");
    args.insert(args.end(), extra.begin(), extra.end());
    const auto p = fixtures::run_kvstash(args);
    EXPECT_EQ(p.rc, 0) << p.err;
    return json::parse(p.out.empty() ? "{}" : p.out);
  };
  const json restored = generate({"--cache-dir", cache_dir});
  const json fresh = generate({"--no-cache"});
  EXPECT_GE(restored.value("cached_tokens", 0), 1024) << restored.dump();
  EXPECT_EQ(restored.at("logits_hash"), fresh.at("logits_hash")) << "logits after the prompt";
  EXPECT_EQ(restored.at("tokens"), fresh.at("tokens")) << "32 greedy tokens";
}

INSTANTIATE_TEST_SUITE_P(Models, BatchedDecode, ::testing::Values("tiny", "hybrid-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// Every slot streams at once, also when the server has more slots than its HTTP library would
// give threads by default (8 on a small machine, one per core less one on a larger one): without
// a thread per slot, the last streams would start only when others end.
TEST(BatchedDecodeServer, EverySlotStreamsAtOnceWithMoreSlotsThanDefaultHttpThreads) {
  const int n = std::max(10, static_cast<int>(std::thread::hardware_concurrency()) + 2);
  fixtures::ServerProcess srv({"-m", fixtures::model_path("tiny"), "--ctx-size",
                               std::to_string(n * 4096), "--parallel", std::to_string(n),
                               "--cache-dir", "none"});
  std::atomic<bool> stop{false};
  std::atomic<int> started{0}, ended{0};
  std::vector<std::thread> streams;
  for (int i = 0; i < n; ++i) {
    streams.emplace_back([&, i] {
      bool first = true;
      stream_count(srv.port(), i, 4000, [&] {
        if (first) ++started;
        first = false;
        return !stop.load();
      });
      ++ended;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (started.load() < n && ended.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(started.load(), n) << "streams started before the first one ended\n" << srv.log();
  EXPECT_EQ(ended.load(), 0) << "a stream ended before every stream had started";
  stop = true;
  for (auto& t : streams) t.join();
}
