// kvstash serve as a member of a fleet behind a balancer: readiness apart from liveness, the
// graceful drain on SIGTERM (--drain-seconds), and the agent session a request belongs to in the
// request log and the status document. A real `kvstash serve` on loopback, the tiny model.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "http_helpers.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash;
using namespace kvstash::fixtures;
using nlohmann::json;

namespace {

constexpr const char* kKey = "fleet-key";
// The tiny model's end-of-turn tokens, banned so that a reply runs to its max_tokens.
const json kNoEos = {{"151645", false}, {"151643", false}};

class FleetMember : public ::testing::Test {
 protected:
  TempDir dir;
  std::string model = fixtures::model_path("tiny");
  std::vector<std::string> base(std::vector<std::string> extra = {}) {
    return server_args(model, dir.path + "/cache", extra);
  }
};

httplib::Headers with_key(httplib::Headers h = {}) {
  h.emplace("Authorization", std::string("Bearer ") + kKey);
  return h;
}

Reply get_keyed(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  return to_reply(c.Get(path.c_str(), with_key()));
}

Reply post_keyed(int port, const std::string& path, const std::string& body,
                 httplib::Headers h = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  return to_reply(c.Post(path.c_str(), with_key(std::move(h)), body, "application/json"));
}

// The number in a log line after `field` ("completion=" in the request line of `session`).
int field_of(const std::string& log, const std::string& session, const std::string& field) {
  const size_t line_end = log.find(" session=" + session + "\n");
  if (line_end == std::string::npos) return -1;
  const size_t line = log.rfind('\n', line_end) + 1;
  const size_t at = log.find(field, line);
  if (at == std::string::npos || at > line_end) return -1;
  return std::stoi(log.substr(at + field.size()));
}

using Clock = std::chrono::steady_clock;

}  // namespace

// /ready is 200 from the start; SIGTERM with --drain-seconds turns it 503 (with Retry-After)
// while /health stays 200, the streamed reply in flight runs to its last token, a request that
// arrives during the drain is served, and the process exits 0 once idle, long before the limit.
TEST_F(FleetMember, SigtermDrainsServingInFlightAndNewRequestsThenExits) {
  fixtures::ServerProcess srv(
      base({"--drain-seconds", "20", "--threads", "1", "--api-key", kKey, "--parallel", "2"}));
  const int port = srv.port();
  EXPECT_EQ(get(port, "/ready").status, 200) << "open like /health";
  EXPECT_EQ(get(port, "/ready").body, json({{"status", "ready"}}));
  EXPECT_NE(get_keyed(port, "/metrics").raw.find("\nkvstash_ready 1\n"), std::string::npos);

  constexpr int kTokens = 600;
  std::promise<void> streaming;
  auto stream = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.headers = with_key({{"session-id", "stream-1"}});
    req.body = chat_body(agent(3, 1), kTokens, {{"stream", true}, {"logit_bias", kNoEos}});
    req.set_header("Content-Type", "application/json");
    std::string received;
    bool told = false;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      received.append(data, n);
      if (!told && received.find("\"content\":") != std::string::npos) {
        told = true;
        streaming.set_value();
      }
      return true;
    };
    const auto r = c.send(req);
    if (!told) streaming.set_value();
    return std::make_pair(r ? r->status : 0, received);
  });
  streaming.get_future().wait();
  const json slots = get_keyed(port, "/status.json").body["slots"];
  bool shown = false;
  for (const auto& sl : slots)
    shown |= sl["request"].is_object() && sl["request"]["session"] == "stream-1";
  EXPECT_TRUE(shown) << "the running request's session: " << slots.dump();

  const auto signalled = Clock::now();
  ASSERT_EQ(::kill(srv.pid(), SIGTERM), 0);
  Reply ready;
  for (int i = 0; i < 100 && ready.status != 503; ++i) {
    ready = get(port, "/ready");
    if (ready.status != 503) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ready.status, 503) << ready.raw;
  EXPECT_EQ(ready.body, json({{"status", "draining"}}));
  {
    httplib::Client c("127.0.0.1", port);
    const auto r = c.Get("/ready");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("Retry-After"), "20");
  }
  EXPECT_EQ(get(port, "/health").status, 200) << "still alive";
  EXPECT_NE(get_keyed(port, "/metrics").raw.find("\nkvstash_ready 0\n"), std::string::npos);
  // A balancer still sends work until its next health check: it is served.
  const Reply late =
      post_keyed(port, "/v1/chat/completions", chat_body(agent(4, 1), 8, {{"logit_bias", kNoEos}}),
                 {{"X-Claude-Code-Session-Id", "late-1"}});
  EXPECT_EQ(late.status, 200) << late.raw;
  EXPECT_EQ(late.body["usage"]["completion_tokens"], 8) << late.raw;

  const auto [status, received] = stream.get();
  EXPECT_EQ(status, 200);
  EXPECT_NE(received.find("\"finish_reason\":\"length\""), std::string::npos)
      << "not cancelled: " << received.substr(received.size() > 400 ? received.size() - 400 : 0);
  EXPECT_NE(received.find("[DONE]"), std::string::npos);

  EXPECT_EQ(srv.wait_exit(15), 0) << "exits 0 once idle";
  EXPECT_LT(Clock::now() - signalled, std::chrono::seconds(15)) << "well before the 20 s limit";
  const std::string log = srv.log();
  EXPECT_NE(log.find("draining: not ready, finishing 1 requests (at most 20 s)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("s: idle (0 requests left)"), std::string::npos) << log;
  EXPECT_EQ(field_of(log, "stream-1", "completion="), kTokens) << log;
  EXPECT_NE(log.find("finish=length ttft_ms="), std::string::npos) << log;
  EXPECT_EQ(field_of(log, "late-1", "completion="), 8) << log;
  // The shutdown ran after the drain, as without one.
  const size_t drained = log.find("drain over after");
  ASSERT_NE(drained, std::string::npos) << log;
  EXPECT_NE(log.find("storing live states and shutting down", drained), std::string::npos) << log;
  EXPECT_NE(log.find("shutdown complete", drained), std::string::npos) << log;
}

// A second SIGTERM ends the drain at once: the request still running is cancelled as in a
// shutdown without a drain (503), and the process exits 0 long before --drain-seconds.
TEST_F(FleetMember, ASecondSigtermSkipsTheRestOfTheDrain) {
  fixtures::ServerProcess srv(base({"--drain-seconds", "60", "--threads", "1"}));
  auto f = std::async(std::launch::async, [&] {
    return post(srv.port(), "/v1/chat/completions",
                chat_body(agent(5, 1), 100000, {{"logit_bias", kNoEos}}));
  });
  // Wait until the slot works on it.
  for (int i = 0; i < 200; ++i) {
    const json s = get(srv.port(), "/slots").body;
    if (s.is_array() && !s.empty() && s[0]["is_processing"] == true) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  const auto t0 = Clock::now();
  ASSERT_EQ(::kill(srv.pid(), SIGTERM), 0);
  for (int i = 0; i < 100 && get(srv.port(), "/ready").status != 503; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(get(srv.port(), "/ready").status, 503);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(srv.wait_exit(0), -1) << "still draining: the request runs";
  ASSERT_EQ(::kill(srv.pid(), SIGTERM), 0);
  EXPECT_EQ(srv.wait_exit(20), 0);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(f.get().status, 503);
  const std::string log = srv.log();
  EXPECT_NE(log.find(": a second signal (1 requests left)"), std::string::npos) << log;
}

// The agent session a request belongs to (server/session_key.h) is in its request log line and in
// status.json's recent requests, from each dialect's own source, the header first.
TEST_F(FleetMember, TheSessionKeyIsLoggedAndShownOnTheStatusPage) {
  std::string log;
  {
    fixtures::ServerProcess srv(base({"--api-key", kKey}));
    const int port = srv.port();
    Reply r =
        post_keyed(port, "/v1/chat/completions", chat_body(agent(1, 1), 4, {{"user", "body-user"}}),
                   {{"X-Claude-Code-Session-Id", "cc-sess-42"}});
    ASSERT_EQ(r.status, 200) << r.raw;
    r = post_keyed(port, "/v1/messages",
                   json{{"model", "m"},
                        {"max_tokens", 4},
                        {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                        {"metadata", {{"user_id", "anthropic-u7"}}}}
                       .dump());
    ASSERT_EQ(r.status, 200) << r.raw;
    r = post_keyed(
        port, "/v1/responses",
        json{{"input", "hi"}, {"max_output_tokens", 4}, {"prompt_cache_key", "pck-1"}}.dump());
    ASSERT_EQ(r.status, 200) << r.raw;
    r = post_keyed(port, "/v1/chat/completions", chat_body(agent(2, 1), 4),
                   {{"X-Claude-Code-Session-Id", "has space\"quote"}});
    ASSERT_EQ(r.status, 200) << r.raw;

    const Reply st = get_keyed(port, "/status.json");
    ASSERT_EQ(st.status, 200) << st.raw;
    const json recent = st.body["recent"];
    ASSERT_EQ(recent.size(), 4u) << st.raw;
    EXPECT_EQ(recent[3]["session"], "cc-sess-42") << "the header wins over the body's user";
    EXPECT_EQ(recent[3]["session_source"], "x-claude-code-session-id");
    EXPECT_EQ(recent[2]["session"], "anthropic-u7");
    EXPECT_EQ(recent[2]["session_source"], "metadata.user_id");
    EXPECT_EQ(recent[1]["session"], "pck-1");
    EXPECT_EQ(recent[1]["session_source"], "prompt_cache_key");
    EXPECT_EQ(recent[0]["session"], "") << "a hostile value is dropped";
    EXPECT_EQ(recent[0]["session_source"], "none");
    EXPECT_EQ(get(port, "/status.json").status, 401) << "the document still needs the key";
    EXPECT_EQ(srv.stop(SIGTERM), 0);
    log = srv.log();
  }
  EXPECT_NE(log.find(" chat slot=0 "), std::string::npos) << log;
  EXPECT_EQ(field_of(log, "cc-sess-42", "completion="), 4) << log;
  EXPECT_GT(field_of(log, "anthropic-u7", "prompt="), 0) << log;
  EXPECT_NE(log.find(" messages slot="), std::string::npos) << log;
  EXPECT_NE(log.find(" session=pck-1\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("has space"), std::string::npos) << log;
  EXPECT_EQ(log.find("session=body-user"), std::string::npos) << log;
}
