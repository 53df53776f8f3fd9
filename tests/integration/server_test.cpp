// The HTTP server end to end: a real `kvstash serve` on loopback, a real generated model.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>

#include "http_helpers.h"
#include "redis_process.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"
#include "util/process.h"

using namespace kvstash;
using namespace kvstash::fixtures;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using fixtures::TempDir;

class Server : public ::testing::Test {
 protected:
  TempDir dir;
  std::string model = fixtures::model_path("tiny");
  std::vector<std::string> base(std::vector<std::string> extra = {}) {
    return server_args(model, dir.path + "/cache", extra);
  }
  // The answer of a fresh prefill: a server without any cache.
  std::string fresh_answer(const json& msgs, int max_tokens = 8) {
    fixtures::ServerProcess ref({"-m", model, "--ctx-size", "16384", "--cache-scope", "off"});
    return content(post(ref.port(), "/v1/chat/completions", chat_body(msgs, max_tokens)));
  }
};

// Regular files anywhere under `dir` (0 when it does not exist).
size_t files_under(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    n += it->is_regular_file();
  }
  return n;
}

// A long prompt (about 20k tokens): an agent's first turn and a 4000-line tool result.
json long_prompt(int variant) {
  json msgs = agent(variant, 1);
  std::string big;
  for (int i = 0; i < 4000; ++i) big += "row " + std::to_string(i) + " ok\n";
  msgs.push_back({{"role", "assistant"}, {"content", "reading"}});
  msgs.push_back({{"role", "user"}, {"content", big}});
  return msgs;
}

// A streamed request reporting prefill progress; `on_data` sees all received so far and returns
// false to hang up.
httplib::Request progress_request(const json& msgs,
                                  std::function<bool(const std::string&)> on_data) {
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = chat_body(msgs, 8, {{"stream", true}, {"return_progress", true}});
  req.set_header("Content-Type", "application/json");
  auto received = std::make_shared<std::string>();
  req.content_receiver = [received, on_data](const char* data, size_t n, uint64_t, uint64_t) {
    received->append(data, n);
    return on_data(*received);
  };
  return req;
}

// Whether a progress stream has reported at least `n` prompt tokens processed.
bool processed_at_least(const std::string& received, int n) {
  for (size_t at = received.find("\"processed\":"); at != std::string::npos;
       at = received.find("\"processed\":", at + 1)) {
    if (std::stoi(received.substr(at + 12)) >= n) return true;
  }
  return false;
}

using Env = std::vector<std::pair<std::string, std::string>>;

// No --cache-dir: the disk tier lives in $XDG_CACHE_HOME/kvstash/kv and survives a restart.
TEST_F(Server, PersistentCacheIsOnByDefault) {
  const std::string xdg = dir.path + "/xdg", home = dir.path + "/home", kv = xdg + "/kvstash/kv";
  const Env env = {{"XDG_CACHE_HOME", xdg}, {"HOME", home}};
  const std::vector<std::string> args = {
      "-m", model, "--ctx-size", "16384", "--cache-boundary-align", "256"};
  {
    fixtures::ServerProcess srv(args, env);
    EXPECT_NE(srv.log().find("kv cache dir " + kv + " (persistent disk tier"), std::string::npos)
        << srv.log();
    EXPECT_EQ(get(srv.port(), "/props").body["cache"]["dir"], kv);
    // The VRAM tier is sized by its rule by default; with the KV in host memory, it is none.
    EXPECT_EQ(get(srv.port(), "/props").body["cache"]["vram_budget_auto"], true);
    EXPECT_EQ(get(srv.port(), "/props").body["cache"]["vram_budget"], 0);
    ASSERT_EQ(post(srv.port(), "/v1/chat/completions", chat_body(agent(4, 1))).status, 200);
    EXPECT_EQ(srv.stop(SIGTERM), 0);
  }
  EXPECT_GT(files_under(kv), 0u) << "stores went to the default directory";
  EXPECT_FALSE(fs::exists(home)) << "$XDG_CACHE_HOME is set: nothing goes to ~/.cache";
  fixtures::ServerProcess srv(args, env);
  const Reply t2 = post(srv.port(), "/v1/chat/completions", chat_body(agent(4, 2)));
  ASSERT_EQ(t2.status, 200);
  EXPECT_GT(cached(t2), 1000) << "the restarted server restores from the default directory";
}

// Without $XDG_CACHE_HOME the default is ~/.cache/kvstash/kv; --cache-dir none writes nothing.
TEST_F(Server, CacheDirFallsBackToHomeAndNoneTurnsTheDiskTierOff) {
  const std::string home = dir.path + "/home";
  const std::vector<std::string> args = {"-m", model, "--ctx-size", "16384"};
  {
    fixtures::ServerProcess srv(args, {{"XDG_CACHE_HOME", ""}, {"HOME", home}});
    EXPECT_NE(srv.log().find("kv cache dir " + home + "/.cache/kvstash/kv "), std::string::npos)
        << srv.log();
  }
  TempDir none_root;
  auto none_args = args;
  none_args.insert(none_args.end(), {"--cache-dir", "none"});
  fixtures::ServerProcess srv(
      none_args, {{"XDG_CACHE_HOME", none_root.path + "/xdg"}, {"HOME", none_root.path}});
  EXPECT_NE(srv.log().find("kv cache disk tier off (--cache-dir none)"), std::string::npos)
      << srv.log();
  EXPECT_EQ(get(srv.port(), "/props").body["cache"]["enabled"], false);
  ASSERT_EQ(post(srv.port(), "/v1/chat/completions", chat_body(agent(6, 1))).status, 200);
  EXPECT_EQ(srv.stop(SIGTERM), 0);
  EXPECT_TRUE(fs::is_empty(none_root.path)) << "--cache-dir none wrote files";
}

TEST_F(Server, ChatNonStreamingAndStreamingAgreeWithAFreshPrefill) {
  fixtures::ServerProcess srv(base());
  const json msgs = agent(1, 1);
  const Reply a = post(srv.port(), "/v1/chat/completions", chat_body(msgs));
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["object"], "chat.completion");
  EXPECT_EQ(a.body["usage"]["completion_tokens"], 8);
  EXPECT_EQ(content(a), fresh_answer(msgs));

  const Reply s = post(srv.port(), "/v1/chat/completions",
                       chat_body(msgs, 8, {{"stream", true}, {"return_progress", true}}));
  ASSERT_EQ(s.status, 200);
  std::string text;
  bool progress = false, done = false, usage = false;
  std::istringstream in(s.raw);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0) continue;
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    const json c = json::parse(line.substr(6));
    progress |= c.contains("prompt_progress");
    usage |= c.contains("usage");
    if (!c["choices"].empty() && c["choices"][0]["delta"].contains("content")) {
      text += c["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_TRUE(progress && done && usage) << s.raw;
  EXPECT_EQ(text, content(a));
}

TEST_F(Server, CachedTokensRiseOnTheSecondTurn) {
  fixtures::ServerProcess srv(base());
  const Reply t1 = post(srv.port(), "/v1/chat/completions", chat_body(agent(2, 1)));
  ASSERT_EQ(t1.status, 200);
  EXPECT_EQ(cached(t1), 0);
  const json msgs2 = agent(2, 2);
  const Reply t2 = post(srv.port(), "/v1/chat/completions", chat_body(msgs2));
  ASSERT_EQ(t2.status, 200);
  EXPECT_GT(cached(t2), t1.body["usage"]["prompt_tokens"].get<int>() * 9 / 10);
  EXPECT_EQ(content(t2), fresh_answer(msgs2));
}

TEST_F(Server, RestartThenDiskHit) {
  const json msgs2 = agent(3, 2);
  {
    fixtures::ServerProcess srv(base());
    ASSERT_EQ(post(srv.port(), "/v1/chat/completions", chat_body(agent(3, 1))).status, 200);
    EXPECT_EQ(srv.stop(SIGTERM), 0) << "graceful shutdown exits 0";
    EXPECT_NE(srv.log().find("reason=shutdown"), std::string::npos) << srv.log();
  }
  fixtures::ServerProcess srv(base());
  const Reply t2 = post(srv.port(), "/v1/chat/completions", chat_body(msgs2));
  ASSERT_EQ(t2.status, 200);
  EXPECT_GT(cached(t2), 1000);
  EXPECT_NE(srv.log().find("kv cache hit tokens="), std::string::npos);
  EXPECT_EQ(content(t2), fresh_answer(msgs2));
}

// Connections arriving together are queued by the kernel until the server accepts them; with
// httplib's own backlog of 5, 16 streams opened at once on a 16-core machine overflowed it and
// some clients saw their connection fail. The listening socket's backlog (what `ss` shows as
// Send-Q of a listening socket) must be the system's maximum, not 5.
TEST_F(Server, ListeningSocketQueuesManyConnectionsArrivingTogether) {
  fixtures::ServerProcess srv(base({}));
  const auto ss = kvstash::run_process(
      {"/bin/sh", "-c", "ss -ltnH 'sport = :" + std::to_string(srv.port()) + "'"});
  ASSERT_EQ(ss.rc, 0) << ss.err;
  std::istringstream line(ss.out);
  std::string state;
  long recv_q = -1, backlog = -1;
  line >> state >> recv_q >> backlog;
  EXPECT_EQ(state, "LISTEN") << ss.out;
  EXPECT_GE(backlog, 128) << ss.out;
  EXPECT_EQ(get(srv.port(), "/health").status, 200);
}

TEST_F(Server, ConcurrentRequestsOnTwoSlots) {
  fixtures::ServerProcess srv(base({"--parallel", "2"}));
  std::vector<std::future<Reply>> fs;
  // One token each: it comes from the prefill (or restore), which must be exact; later tokens
  // of concurrent requests are decoded in shared batches, whose last bits may differ from a lone
  // decode (so may a greedy choice between near-equal logits of a random-weight model).
  for (int i = 0; i < 4; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      return post(srv.port(), "/v1/chat/completions", chat_body(agent(10 + i % 2, 1 + i / 2), 1));
    }));
  }
  std::vector<Reply> rs;
  for (auto& f : fs) rs.push_back(f.get());
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(rs[i].status, 200) << rs[i].raw;
    EXPECT_EQ(content(rs[i]), fresh_answer(agent(10 + i % 2, 1 + i / 2), 1)) << "request " << i;
  }
  const Reply slots = get(srv.port(), "/slots");
  EXPECT_EQ(slots.body.size(), 2u);
  uint64_t total = 0;
  for (const auto& s : slots.body) total += s["requests"].get<uint64_t>();
  EXPECT_EQ(total, 4u);
}

TEST_F(Server, BadInputGetsAClearErrorAndTheServerStaysUp) {
  fixtures::ServerProcess srv(base({"--ctx-size", "4096"}));
  const int p = srv.port();
  const json ok_msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  struct Case {
    std::string path, body, expect;
  };
  std::string huge(40000, 'x');
  for (int i = 0; i < 40000; i += 5) huge[i] = ' ';
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", "not valid JSON"},
      {"/v1/chat/completions", "[1,2]", "JSON object"},
      {"/v1/chat/completions", R"({"messages": "hi"})", "'messages' must be a non-empty array"},
      {"/v1/chat/completions", R"({"messages": []})", "'messages' must be a non-empty array"},
      {"/v1/chat/completions", R"({"messages": [{"role": "wizard", "content": "x"}]})", "role"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user", "content": 5}]})", "content"},
      {"/v1/chat/completions", chat_body(ok_msgs, -5), "max_tokens"},
      {"/v1/chat/completions", chat_body(ok_msgs, 1 << 30), "max_tokens"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"temperature", "hot"}}), "temperature"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"temperature", -1}}), "temperature"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"top_p", 2}}), "top_p"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"stop", 7}}), "stop"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"stream", "yes"}}), "stream"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"prefix_cache", {{"scope", "auto:0"}}}}),
       "scope"},
      {"/v1/chat/completions", chat_body(ok_msgs, 4, {{"prefix_cache", {{"scope", "sometimes"}}}}),
       "scope"},
      {"/v1/chat/completions",
       chat_body(ok_msgs, 4, {{"prefix_cache", {{"scope", "full"}, {"window", 8}}}}), "window"},
      {"/v1/chat/completions", chat_body(json::array({{{"role", "user"}, {"content", huge}}})),
       "context"},
      {"/v1/completions", R"({"prompt": [1, -4]})", "token ids"},
      {"/v1/completions", R"({"prompt": ""})", "prompt"},
      {"/completion", R"({"n_predict": "many", "prompt": "x"})", "n_predict"},
      {"/tokenize", R"({"text": "x"})", "content"},
      {"/detokenize", R"({"tokens": [999999999]})", "tokens"},
  };
  for (const auto& c : cases) {
    const Reply r = post(p, c.path, c.body);
    EXPECT_GE(r.status, 400) << c.path << " " << c.body.substr(0, 80);
    EXPECT_LT(r.status, 500) << c.path << " " << c.body.substr(0, 80);
    ASSERT_TRUE(r.body.is_object()) << r.raw;
    const std::string msg = r.body["error"]["message"];
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.path << ": " << msg;
  }
  EXPECT_EQ(get(p, "/nope").status, 404);
  EXPECT_EQ(get(p, "/health").status, 200);
  const Reply ok = post(p, "/v1/chat/completions", chat_body(ok_msgs, 3));
  EXPECT_EQ(ok.status, 200) << "a good request after all the bad ones";
}

TEST_F(Server, ApiKeyIsRequiredEverywhereButHealth) {
  fixtures::ServerProcess srv(base({"--api-key", "s3cret"}));
  httplib::Client c("127.0.0.1", srv.port());
  EXPECT_EQ(c.Get("/health")->status, 200);
  for (const char* path : {"/props", "/metrics", "/slots", "/v1/models", "/status.json"}) {
    auto r = c.Get(path);
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_NE(r->body.find("API key"), std::string::npos);
  }
  EXPECT_EQ(c.Post("/v1/chat/completions", chat_body(agent(1, 1)), "application/json")->status,
            401);
  httplib::Headers wrong = {{"Authorization", "Bearer nope"}},
                   right = {{"Authorization", "Bearer s3cret"}};
  EXPECT_EQ(c.Get("/props", wrong)->status, 401);
  EXPECT_EQ(c.Get("/props", right)->status, 200);
  EXPECT_EQ(
      c.Post("/v1/chat/completions", right, chat_body(agent(1, 1), 2), "application/json")->status,
      200);
}

TEST_F(Server, CacheSaltKeepsTenantsApart) {
  fixtures::ServerProcess srv(base());
  const json msgs = agent(5, 1);
  auto ask = [&](const std::string& salt, int variant) {
    json extra = salt.empty() ? json::object() : json{{"cache_salt", salt}};
    return post(srv.port(), "/v1/chat/completions", chat_body(agent(variant, 1), 4, extra));
  };
  ASSERT_EQ(ask("tenant-a", 5).status, 200);
  ASSERT_EQ(ask("tenant-a", 6).status, 200);  // evicts a's live state to the disk
  const Reply same = ask("tenant-a", 5);
  EXPECT_GT(cached(same), 1000) << "a tenant hits its own prefix";
  const Reply other = ask("tenant-b", 5);
  EXPECT_EQ(cached(other), 0) << "another tenant neither hits nor sees it";
  const Reply none = ask("", 5);
  EXPECT_EQ(cached(none), 0);
  EXPECT_EQ(content(other), content(same));
  EXPECT_EQ(
      post(srv.port(), "/v1/chat/completions", chat_body(msgs, 2, {{"cache_salt", 5}})).status,
      400);
}

TEST_F(Server, RequestSizeIsLimited) {
  fixtures::ServerProcess srv(base({"--max-request-bytes", "2K"}));
  const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(agent(1, 1)));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(get(srv.port(), "/health").status, 200);
}

TEST_F(Server, EndpointsAnswerInTheirDocumentedShapes) {
  fixtures::ServerProcess srv(base({"--cache-scope", "auto:8"}));
  const int p = srv.port();
  EXPECT_EQ(get(p, "/v1/models").body["data"][0]["id"], "tiny.gguf");
  const Reply props = get(p, "/props");
  EXPECT_EQ(props.body["cache"]["scope"], "auto:8");
  EXPECT_EQ(props.body["cache"]["chunk_tokens"], 256);
  EXPECT_TRUE(props.body["cache"].contains("disk_budget"));
  const Reply tok = post(p, "/tokenize", R"({"content": "hello world"})");
  ASSERT_EQ(tok.status, 200);
  const Reply detok = post(p, "/detokenize", json{{"tokens", tok.body["tokens"]}}.dump());
  EXPECT_EQ(detok.body["content"], "hello world");
  const Reply c1 =
      post(p, "/completion", R"({"prompt": "Once upon a time", "n_predict": 4, "temperature": 0})");
  ASSERT_EQ(c1.status, 200) << c1.raw;
  EXPECT_EQ(c1.body["tokens_predicted"], 4);
  const Reply c2 = post(p, "/v1/completions",
                        R"({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0})");
  ASSERT_EQ(c2.status, 200) << c2.raw;
  EXPECT_EQ(c2.body["choices"][0]["text"], c1.body["content"]);
  const Reply m = get(p, "/metrics");
  for (const char* name : {"kvstash_requests_total 2", "kvstash_cache_hits_total",
                           "kvstash_cache_bytes_written_total{tier=\"disk\"}",
                           "kvstash_cache_evictions_total{reason=\"disk-cache-full\"}",
                           "kvstash_cache_io_errors_total{op=\"dir-fsync\"} 0",
                           "kvstash_cache_load_seconds_bucket", "kvstash_tokens_prefilled_total"}) {
    EXPECT_NE(m.raw.find(name), std::string::npos) << name;
  }
}

// /metrics through Prometheus' own parser and linter (`promtool check metrics`, Debian's
// prometheus package), with the remote tier's families too: a family named twice, or split by
// another, is a scrape error.
TEST_F(Server, MetricsAreValidPrometheusTextWithAndWithoutARemoteTier) {
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool is missing: install Debian's prometheus package (setup.sh does)";
  fixtures::RedisProcess redis;
  for (const bool remote : {false, true}) {
    SCOPED_TRACE(remote ? "with --cache-remote" : "local tiers only");
    fixtures::ServerProcess srv(
        remote ? base({"--cache-remote", redis.url(), "--cache-ram-budget", "64M"}) : base());
    ASSERT_EQ(post(srv.port(), "/v1/chat/completions", chat_body(agent(3, 1), 2)).status, 200);
    const Reply m = get(srv.port(), "/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_EQ(m.raw.find("kvstash_cache_remote_up") != std::string::npos, remote);
    const std::string file = dir.path + "/metrics.txt";
    std::ofstream(file) << m.raw;
    std::string out;
    FILE* p = ::popen(("promtool check metrics < " + file + " 2>&1").c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int status = ::pclose(p);
    EXPECT_EQ(status, 0) << "promtool: " << out << "\n" << m.raw;
  }
}

TEST_F(Server, AutoScopeTurnsChangingTailsIntoDiskHits) {
  // One slot, two agents taking turns: the live state is always the other agent's, so every hit
  // past the first rounds comes from the disk, and every request's tail is new.
  fixtures::ServerProcess srv(base({"--cache-scope", "auto:30", "--cache-min-tokens", "256"}));
  int hits = 0;
  for (int round = 0; round < 4; ++round) {
    for (int a = 0; a < 2; ++a) {
      const json msgs = agent(20 + a, 1, round);
      const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(msgs, 4));
      ASSERT_EQ(r.status, 200) << r.raw;
      if (round >= 2) {
        EXPECT_GT(cached(r), 1000) << "round " << round << " agent " << a;
        EXPECT_EQ(content(r), fresh_answer(msgs, 4));
      }
      hits += cached(r) > 0;
    }
  }
  EXPECT_GE(hits, 4);
  const std::string log = srv.log();
  EXPECT_NE(log.find("kv cache scope auto:30:"), std::string::npos);
  EXPECT_NE(log.find("reason=scope"), std::string::npos);
  EXPECT_NE(log.find("kv cache hit tokens="), std::string::npos) << "hits come from the disk";
}

TEST_F(Server, ClientDisconnectCancelsThePrefillAndKeepsItsCheckpoint) {
  fixtures::ServerProcess srv(
      base({"--ctx-size", "40000", "--threads", "1", "--cache-continued-interval", "1024"}));
  const json msgs = long_prompt(30);
  httplib::Client c("127.0.0.1", srv.port());
  bool got_progress = false;
  // Hang up once a continued checkpoint (every 1024 tokens) must have been stored.
  const httplib::Request req = progress_request(msgs, [&](const std::string& received) {
    got_progress = processed_at_least(received, 2048);
    return !got_progress;  // returning false closes the connection
  });
  c.send(req);
  EXPECT_TRUE(got_progress);
  std::string log;
  for (int i = 0; i < 200; ++i) {
    log = srv.log();
    if (log.find("cancelled during prefill") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(log.find("cancelled during prefill"), std::string::npos) << log;
  EXPECT_NE(log.find("reason=continued"), std::string::npos) << "the checkpoint made so far stays";
  EXPECT_EQ(get(srv.port(), "/health").status, 200);
}

// SIGTERM while a long prompt is prefilled (past --cache-min-tokens, so its live state is worth
// storing): the slot stops at the next batch and stores its live state (reason=shutdown), and the
// server exits only once the store queue is written, even on a slow disk. The next server restores
// that prefix.
TEST_F(Server, SigtermDuringALongPrefillStoresTheLiveStateAndDrainsTheQueue) {
  const json msgs = long_prompt(31);
  std::string log;
  {
    fixtures::ServerProcess srv(base({"--ctx-size", "40000", "--threads", "1"}),
                                {{"KVSTASH_FAULT_WRITE_DELAY_MS", "100"}});
    std::promise<void> started;
    auto f = std::async(std::launch::async, [&] {
      httplib::Client c("127.0.0.1", srv.port());
      c.set_read_timeout(120);
      bool told = false;
      const httplib::Request req = progress_request(msgs, [&](const std::string& received) {
        if (!told && processed_at_least(received, 1024)) {
          told = true;
          started.set_value();
        }
        return true;
      });
      c.send(req);
      if (!told) started.set_value();
    });
    started.get_future().wait();
    EXPECT_EQ(srv.stop(SIGTERM, 120), 0) << "graceful shutdown exits 0";
    f.wait();
    log = srv.log();
  }
  EXPECT_NE(log.find("cancelled during prefill"), std::string::npos) << log;
  EXPECT_NE(log.find("reason=shutdown"), std::string::npos) << log;
  EXPECT_EQ(log.find("abandoned"), std::string::npos) << log;
  fixtures::ServerProcess srv(base({"--ctx-size", "40000"}));
  const Reply r = post(srv.port(), "/v1/chat/completions", chat_body(msgs));
  ASSERT_EQ(r.status, 200) << r.raw;
  // What the shutdown store held: the prefix prefilled before the signal.
  const size_t at = log.find("tokens=", log.find("reason=shutdown") - 40);
  ASSERT_NE(at, std::string::npos) << log;
  const int stored = std::stoi(log.substr(at + 7));
  EXPECT_GE(stored, 256);
  EXPECT_GE(cached(r), stored) << "the prefix prefilled before the signal was stored";
  fixtures::ServerProcess ref({"-m", model, "--ctx-size", "40000", "--cache-scope", "off"});
  EXPECT_EQ(content(r), content(post(ref.port(), "/v1/chat/completions", chat_body(msgs))));
}

// SIGTERM while a non-streamed request is served: its job is cancelled first, so the handler
// answers (503, the request can be retried) and the HTTP threads end; the slot stores its live
// state and the process exits 0 well within --shutdown-timeout (the watchdog's exit 1 is a
// failure).
TEST_F(Server, SigtermDuringANonStreamedRequestAnswersItAndStoresTheLiveState) {
  fixtures::ServerProcess srv(base({"--shutdown-timeout", "20", "--threads", "1"}));
  auto f = std::async(std::launch::async, [&] {
    return post(
        srv.port(), "/v1/chat/completions",
        chat_body(agent(5, 2), 10000, {{"logit_bias", {{"151645", false}, {"151643", false}}}}));
  });
  // Decoding: the slot has a live state.
  for (int i = 0; i < 200 && srv.log().find("prefill") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(srv.stop(SIGTERM, 60), 0) << srv.log();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15)) << srv.log();
  const Reply r = f.get();
  EXPECT_EQ(r.status, 503) << r.raw;
  EXPECT_NE(srv.log().find("reason=shutdown"), std::string::npos) << srv.log();
}

}  // namespace
