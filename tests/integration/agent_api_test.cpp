// Anthropic Messages and OpenAI Responses on a real server (tiny model): one conversation over
// the three chat APIs is one prompt and one cache entry, Claude Code's billing stamp does not
// break the prefix, streams keep waiting clients alive, the server's generation cap holds, and
// each dialect's errors come in its own shape. The vendor SDKs and the real agent CLIs are in
// agent_clients_test.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "http_helpers.h"
#include "loadgen/server_runner.h"
#include "server_process.h"
#include "temp_dir.h"
#include "test_models.h"

namespace kvstash::fixtures {
namespace {

using ojson = nlohmann::ordered_json;

class AgentApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    srv_ = new ServerProcess(server_args(model_path("tiny"), dir_->path + "/cache",
                                         {"--max-tokens-cap", "6", "--cache-min-tokens", "64"}));
  }
  static void TearDownTestSuite() {
    delete srv_;
    delete dir_;
  }
  static int port() { return srv_->port(); }
  static inline TempDir* dir_ = nullptr;
  static inline ServerProcess* srv_ = nullptr;
};

// A conversation long enough to be stored: a system prompt, then user / assistant turns.
struct Conversation {
  std::string system;
  std::vector<std::string> turns;  // user, assistant, user, ...
};

Conversation conversation(int variant) {
  Conversation c;
  c.system = "You are agent " + std::to_string(variant) + ".\n";
  for (int i = 0; i < 60; ++i) c.system += "Rule " + std::to_string(i) + ": keep files tidy.\n";
  c.turns = {"Fix the build.", "Reading the log.", "The log says: error in main.cpp line 7."};
  return c;
}

ojson as_chat(const Conversation& c) {
  ojson m = ojson::array({{{"role", "system"}, {"content", c.system}}});
  for (size_t i = 0; i < c.turns.size(); ++i) {
    m.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", c.turns[i]}});
  }
  return {{"messages", m}, {"max_tokens", 4}, {"temperature", 0}};
}

ojson as_messages(const Conversation& c) {
  ojson m = ojson::array();
  for (size_t i = 0; i < c.turns.size(); ++i) {
    m.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", c.turns[i]}});
  }
  return {
      {"model", "m"}, {"system", c.system}, {"messages", m}, {"max_tokens", 4}, {"temperature", 0}};
}

ojson as_responses(const Conversation& c) {
  ojson in = ojson::array();
  for (size_t i = 0; i < c.turns.size(); ++i) {
    in.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", c.turns[i]}});
  }
  return {{"model", "m"},
          {"instructions", c.system},
          {"input", in},
          {"max_output_tokens", 4},
          {"temperature", 0}};
}

struct Usage {
  int prompt = 0, cached = 0;
};

Usage usage_of(const std::string& api, const Reply& r) {
  const json& u = r.body["usage"];
  if (api == "messages") {
    const int cached = u["cache_read_input_tokens"];
    return {u["input_tokens"].get<int>() + cached, cached};
  }
  if (api == "responses") return {u["input_tokens"], u["input_tokens_details"]["cached_tokens"]};
  return {u["prompt_tokens"], u["prompt_tokens_details"]["cached_tokens"]};
}

// The same conversation sent over chat, Messages and Responses renders to the same tokens; the
// second and third requests reuse the first's state whole.
TEST_F(AgentApi, OneConversationOverThreeApisIsOnePromptAndOneCacheEntry) {
  const Conversation c = conversation(1);
  const Reply chat = post(port(), "/v1/chat/completions", as_chat(c).dump());
  const Reply msgs = post(port(), "/v1/messages", as_messages(c).dump());
  const Reply resp = post(port(), "/v1/responses", as_responses(c).dump());
  ASSERT_EQ(chat.status, 200) << chat.raw;
  ASSERT_EQ(msgs.status, 200) << msgs.raw;
  ASSERT_EQ(resp.status, 200) << resp.raw;
  const Usage a = usage_of("chat", chat), b = usage_of("messages", msgs),
              d = usage_of("responses", resp);
  EXPECT_GT(a.prompt, 500);
  EXPECT_EQ(b.prompt, a.prompt);
  EXPECT_EQ(d.prompt, a.prompt);
  // The whole conversation; the generation prompt after it is prefilled again.
  EXPECT_GE(b.cached, a.prompt - 4) << msgs.raw;
  EXPECT_GE(d.cached, a.prompt - 4) << resp.raw;
  // The counting endpoints agree with what was served.
  const Reply n1 = post(port(), "/v1/messages/count_tokens", as_messages(c).dump());
  const Reply n2 = post(port(), "/v1/responses/input_tokens", as_responses(c).dump());
  const Reply n3 = post(port(), "/v1/chat/completions/input_tokens", as_chat(c).dump());
  EXPECT_EQ(n1.body["input_tokens"], a.prompt) << n1.raw;
  EXPECT_EQ(n2.body["input_tokens"], a.prompt) << n2.raw;
  EXPECT_EQ(n3.body["input_tokens"], a.prompt) << n3.raw;
}

// Claude Code's billing header changes its cch stamp per request in some versions; normalized,
// two requests that differ only there share their whole prefix.
TEST_F(AgentApi, BillingStampsThatDifferShareTheWholePrefix) {
  const Conversation c = conversation(2);
  auto body = [&](const std::string& cch) {
    ojson b = as_messages(c);
    b["system"] = ojson::array(
        {{{"type", "text"},
          {"text",
           "x-anthropic-billing-header: cc_version=2.1.328.a1b; cc_entrypoint=sdk-cli; cch=" + cch +
               ";"}},
         {{"type", "text"}, {"text", c.system}, {"cache_control", {{"type", "ephemeral"}}}}});
    return b.dump();
  };
  const Reply first = post(port(), "/v1/messages", body("a5145"));
  const Reply second = post(port(), "/v1/messages", body("0c9d2"));
  ASSERT_EQ(first.status, 200) << first.raw;
  ASSERT_EQ(second.status, 200) << second.raw;
  const Usage u1 = usage_of("messages", first), u2 = usage_of("messages", second);
  EXPECT_EQ(u1.prompt, u2.prompt);
  EXPECT_GE(u2.cached, u2.prompt - 4) << second.raw;
}

// Clients asking for 32000 tokens (Claude Code, Qwen Code) get the server's cap, and the reply
// says it stopped for length, in each dialect's words.
TEST_F(AgentApi, TheGenerationCapEndsRepliesForLength) {
  ojson m = as_messages(conversation(3));
  m["max_tokens"] = 32000;
  m["logit_bias"] = {{"151645", false}, {"151643", false}};  // no end of turn before the cap
  const Reply a = post(port(), "/v1/messages", m.dump());
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["stop_reason"], "max_tokens");
  EXPECT_EQ(a.body["usage"]["output_tokens"], 6);
  ojson r = as_responses(conversation(3));
  r["max_output_tokens"] = 32000;
  r["logit_bias"] = m["logit_bias"];
  const Reply b = post(port(), "/v1/responses", r.dump());
  ASSERT_EQ(b.status, 200) << b.raw;
  EXPECT_EQ(b.body["status"], "incomplete");
  EXPECT_EQ(b.body["usage"]["output_tokens"], 6);
}

TEST_F(AgentApi, ErrorsComeInEachDialectsShape) {
  const Reply a = post(port(), "/v1/messages", R"({"model": "m", "max_tokens": 5})");
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.body["type"], "error") << a.raw;
  EXPECT_EQ(a.body["error"]["type"], "invalid_request_error");
  const Reply b = post(port(), "/v1/responses", R"({"input": "x", "previous_response_id": "r"})");
  EXPECT_EQ(b.status, 400);
  EXPECT_NE(b.body["error"]["message"].get<std::string>().find("whole conversation"),
            std::string::npos)
      << b.raw;
  const Reply c = post(port(), "/v1/messages", "{not json");
  EXPECT_EQ(c.status, 400);
  EXPECT_EQ(c.body["error"]["type"], "invalid_request_error") << c.raw;
  const Reply d = post(port(), "/v1/messages/nope", "{}");
  EXPECT_EQ(d.status, 404);
  EXPECT_EQ(d.body["error"]["type"], "not_found_error") << d.raw;
}

// While a stream waits (here: for the only slot, held by another request), it receives a
// keep-alive at least every few seconds, in the dialect's form: Anthropic's ping event, an SSE
// comment for the OpenAI APIs.
TEST_F(AgentApi, WaitingStreamsReceiveKeepAlives) {
  // The slot is held by a long generation that cannot end its turn, until its client leaves.
  TempDir d;
  ServerProcess srv(server_args(model_path("tiny"), d.path + "/cache", {"--ctx-size", "65536"}));
  std::atomic<bool> hold{true};
  std::thread holder([&] {
    httplib::Client cli("127.0.0.1", srv.port());
    cli.set_read_timeout(120, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.body = json{{"messages", {{{"role", "user"}, {"content", "count"}}}},
                    {"stream", true},
                    {"logit_bias", {{"151645", false}, {"151643", false}}}}
                   .dump();
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return hold.load(); };
    cli.send(req);
  });
  // Let the holder take the slot.
  for (int i = 0; i < 100 && get(srv.port(), "/slots").body[0]["is_processing"] != true; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  struct Case {
    std::string path, body, keepalive, token;  // token: what a generated token looks like
  };
  const std::vector<Case> cases = {
      {"/v1/messages", as_messages(conversation(4)).dump(), "event: ping", "text_delta"},
      {"/v1/responses", as_responses(conversation(4)).dump(), ": keep-alive", "output_text.delta"},
      {"/v1/chat/completions", as_chat(conversation(4)).dump(), ": keep-alive",
       R"("finish_reason":")"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    json body = json::parse(c.body);
    body["stream"] = true;
    httplib::Client cli("127.0.0.1", srv.port());
    cli.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = c.path;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    std::string got;
    const auto t0 = std::chrono::steady_clock::now();
    req.content_receiver = [&](const char* p, size_t n, uint64_t, uint64_t) {
      got.append(p, n);
      return std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(5500);
    };
    cli.send(req);
    size_t count = 0;
    for (size_t at = got.find(c.keepalive); at != std::string::npos;
         at = got.find(c.keepalive, at + 1)) {
      ++count;
    }
    EXPECT_GE(count, 2u) << got;
    EXPECT_EQ(got.find(c.token), std::string::npos) << "the slot was busy: no token yet\n" << got;
  }
  hold = false;
  holder.join();
}

}  // namespace
}  // namespace kvstash::fixtures

namespace kvstash::fixtures {
namespace {

// A forced tool call, then the next turn as an agent sends it: the reply appended in the
// dialect's own form, then the tool's result.
struct ToolTurn {
  std::string path;
  ojson first;
  std::function<ojson(const ojson& first, const json& reply)> next;
  std::function<Usage(const Reply&)> usage;
  std::function<json(const Reply&)> answer;  // the reply without ids (they differ per server)
};

const ojson kCitySchema = {
    {"type", "object"},
    {"properties", {{"city", {{"type", "string"}, {"enum", {"Paris", "Oslo"}}}}}},
    {"required", {"city"}}};

std::string system_prompt() {
  std::string s = "You are a careful agent.\n";
  for (int i = 0; i < 60; ++i) s += "Rule " + std::to_string(i) + ": check before acting.\n";
  return s;
}

// Whitespace-only tokens but "\n" banned: a random model fills free JSON whitespace for as long
// as a grammar lets it, and grammar sampling is slow.
ojson whitespace_bias() {
  engine::Model& m = model("tiny");
  ojson bias = ojson::object();
  for (engine::Token t = 0; t < m.n_vocab(); ++t) {
    const std::string s = m.token_text(t);
    if (!s.empty() && s != "\n" && s.find_first_not_of(" \t\n") == std::string::npos) {
      bias[std::to_string(t)] = false;
    }
  }
  return bias;
}

std::vector<ToolTurn> tool_turns() {
  const std::string sys = system_prompt();
  const ojson bias = whitespace_bias();
  ToolTurn chat{
      "/v1/chat/completions",
      {{"messages",
        {{{"role", "system"}, {"content", sys}}, {{"role", "user"}, {"content", "Oslo?"}}}},
       {"tools",
        {{{"type", "function"}, {"function", {{"name", "weather"}, {"parameters", kCitySchema}}}}}},
       {"tool_choice", "required"},
       {"parallel_tool_calls", false},
       {"chat_template_kwargs", {{"enable_thinking", false}}},
       {"logit_bias", bias},
       {"temperature", 0},
       {"max_tokens", 200}},
      [](const ojson& first, const json& reply) {
        ojson b = first;
        const json& msg = reply["choices"][0]["message"];
        b["messages"].push_back(
            {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", msg["tool_calls"]}});
        for (const auto& c : msg["tool_calls"]) {
          b["messages"].push_back(
              {{"role", "tool"}, {"tool_call_id", c["id"]}, {"content", "sunny, 21 C"}});
        }
        b["tool_choice"] = "auto";
        b["max_tokens"] = 8;
        return b;
      },
      [](const Reply& r) { return usage_of("chat", r); },
      [](const Reply& r) { return r.body["choices"][0]["message"]["content"]; }};
  ToolTurn msgs{
      "/v1/messages",
      {{"model", "m"},
       {"system", sys},
       {"messages", {{{"role", "user"}, {"content", "Oslo?"}}}},
       {"tools", {{{"name", "weather"}, {"input_schema", kCitySchema}}}},
       {"tool_choice", {{"type", "any"}, {"disable_parallel_tool_use", true}}},
       {"thinking", {{"type", "disabled"}}},
       {"logit_bias", bias},
       {"temperature", 0},
       {"max_tokens", 200}},
      [](const ojson& first, const json& reply) {
        ojson b = first;
        b["messages"].push_back(
            {{"role", "assistant"}, {"content", ojson::parse(reply["content"].dump())}});
        ojson results = ojson::array();
        for (const auto& c : reply["content"]) {
          if (c["type"] != "tool_use") continue;
          results.push_back(
              {{"type", "tool_result"}, {"tool_use_id", c["id"]}, {"content", "sunny, 21 C"}});
        }
        b["messages"].push_back({{"role", "user"}, {"content", results}});
        b["tool_choice"] = {{"type", "auto"}};
        b["max_tokens"] = 8;
        return b;
      },
      [](const Reply& r) { return usage_of("messages", r); },
      [](const Reply& r) {
        json out = json::array();
        for (const auto& c : r.body["content"]) out.push_back(c.value("text", c.dump()));
        return out;
      }};
  ToolTurn resp{
      "/v1/responses",
      {{"model", "m"},
       {"instructions", sys},
       {"input", "Oslo?"},
       {"tools", {{{"type", "function"}, {"name", "weather"}, {"parameters", kCitySchema}}}},
       {"tool_choice", "required"},
       {"parallel_tool_calls", false},
       {"chat_template_kwargs", {{"enable_thinking", false}}},
       {"logit_bias", bias},
       {"temperature", 0},
       {"max_output_tokens", 200}},
      [](const ojson& first, const json& reply) {
        ojson b = first;
        b["input"] = ojson::array({{{"role", "user"}, {"content", "Oslo?"}}});
        // OpenAI's documented loop: the response's output items, then each call's
        // output.
        for (const auto& item : reply["output"]) {
          b["input"].push_back(ojson::parse(item.dump()));
        }
        for (const auto& item : reply["output"]) {
          if (item["type"] != "function_call") continue;
          b["input"].push_back({{"type", "function_call_output"},
                                {"call_id", item["call_id"]},
                                {"output", "sunny, 21 C"}});
        }
        b["tool_choice"] = "auto";
        b["max_output_tokens"] = 8;
        return b;
      },
      [](const Reply& r) { return usage_of("responses", r); },
      [](const Reply& r) {
        json out = json::array();
        for (const auto& o : r.body["output"]) out.push_back(o.value("content", json()));
        return out;
      }};
  return {chat, msgs, resp};
}

// After a forced tool call, the next turn finds the previous prompt and the assistant turn as
// the client resends it in the cache (the slot settled the turn to the client's rendering), and
// its reply equals a fresh prefill's.
TEST(AgentApiTurns, ToolCallTurnsStayInTheCacheAndRestoreExactly) {
  TempDir d;
  ServerProcess srv(server_args(model_path("tiny"), d.path + "/cache"));
  ServerProcess fresh({"-m", model_path("tiny"), "--ctx-size", "16384", "--cache-scope", "off"});
  for (const auto& t : tool_turns()) {
    SCOPED_TRACE(t.path);
    const Reply r1 = post(srv.port(), t.path, t.first.dump());
    ASSERT_EQ(r1.status, 200) << r1.raw;
    const ojson second = t.next(t.first, r1.body);
    const Reply r2 = post(srv.port(), t.path, second.dump());
    const Reply ref = post(fresh.port(), t.path, second.dump());
    ASSERT_EQ(r2.status, 200) << r2.raw;
    ASSERT_EQ(ref.status, 200) << ref.raw;
    const Usage u1 = t.usage(r1), u2 = t.usage(r2);
    // The previous prompt less its generation prompt, then the assistant turn as resent.
    EXPECT_GT(u2.cached, u1.prompt) << r2.raw;
    EXPECT_EQ(t.usage(ref).prompt, u2.prompt);
    EXPECT_EQ(t.answer(r2), t.answer(ref)) << r2.raw << "\n" << ref.raw;
    std::cout << "[ turn reuse ] " << t.path << ": next turn " << u2.cached << " of " << u2.prompt
              << " prompt tokens from the cache (previous prompt " << u1.prompt << ")\n";
  }
  EXPECT_NE(srv.log().find("settled the turn"), std::string::npos);
}

}  // namespace
}  // namespace kvstash::fixtures

namespace kvstash::fixtures {
namespace {

// The requests the real CLIs sent (tests/fixtures/requests, captured through
// tests/clients/record_proxy.mjs in front of the pinned llama-server): kvstash accepts each and
// counts the same prompt tokens as llama-server for it, so both render it alike.
TEST(AgentApiFixtures, CapturedCliRequestsCountAsInLlamaServer) {
  const std::string peer = llama_server_path();
  ASSERT_TRUE(!peer.empty() && std::filesystem::exists(peer)) << "llama-server not found";
  TempDir d;
  ServerProcess srv(server_args(model_path("tiny"), d.path + "/cache", {"--ctx-size", "65536"}));
  const int port = loadgen::free_port();
  loadgen::ServerRunner ls({peer, "-m", model_path("tiny"), "--jinja", "-c", "65536", "--no-webui",
                            "-np", "1", "-t", "2", "--host", "127.0.0.1", "--port",
                            std::to_string(port)},
                           d.path + "/llama-server.log", port);
  ls.start(120);
  int compared = 0;
  for (const auto& f : std::filesystem::directory_iterator(KVSTASH_FIXTURES_DIR "/requests")) {
    if (f.path().extension() != ".json") continue;
    SCOPED_TRACE(f.path().filename().string());
    std::ifstream in(f.path());
    const ojson capture = ojson::parse(in);
    const std::string path = capture["path"].get<std::string>().substr(
        0, capture["path"].get<std::string>().find('?'));
    const std::string count_path = path == "/v1/messages"    ? "/v1/messages/count_tokens"
                                   : path == "/v1/responses" ? "/v1/responses/input_tokens"
                                                             : "/v1/chat/completions/input_tokens";
    const std::string body = capture["body"].dump();
    const Reply ours = post(srv.port(), count_path, body);
    const Reply theirs = post(port, count_path, body);
    if (theirs.status != 200) {
      // llama-server refuses a few shapes kvstash takes (e.g. Codex's reasoning items without
      // text): nothing to compare, but kvstash must accept them.
      EXPECT_EQ(ours.status, 200) << ours.raw;
      continue;
    }
    ASSERT_EQ(ours.status, 200) << ours.raw;
    EXPECT_EQ(ours.body["input_tokens"], theirs.body["input_tokens"]) << path;
    ++compared;
  }
  EXPECT_GE(compared, 15);
}

}  // namespace
}  // namespace kvstash::fixtures
