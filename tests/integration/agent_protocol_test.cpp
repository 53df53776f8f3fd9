// Agent clients end to end: a request with tools is rendered as llama-server --jinja renders it,
// tool calls, reasoning and JSON replies come out parsed (streamed too), a tool loop restores
// its earlier turns from the cache bit-exactly, and what a client gets wrong is a 400 that says
// what.
//
// One `kvstash serve` on the tiny random model serves most tests. A random model writes whatever
// a grammar lets it, so the tools the model must call take bounded arguments (enums, booleans),
// and whitespace-only tokens but "\n" are banned where a grammar allows free JSON whitespace:
// replies of the same shape, a few dozen tokens shorter (grammar sampling is slow on a random
// model).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "http_helpers.h"
#include "loadgen/server_runner.h"
#include "server/api.h"
#include "server/chat_prompt.h"
#include "server_process.h"
#include "subprocess.h"
#include "temp_dir.h"
#include "test_models.h"

namespace kvstash::fixtures {
namespace {

using nlohmann::json;
// Requests keep their keys in the order written, as clients send them (a sorted dump would hide
// a server that reorders tools before the template sees them).
using ojson = nlohmann::ordered_json;

ojson tool(const std::string& name, const std::string& description, ojson properties,
           const std::vector<std::string>& required) {
  return {
      {"type", "function"},
      {"function",
       {{"name", name},
        {"description", description},
        {"parameters",
         {{"type", "object"}, {"properties", std::move(properties)}, {"required", required}}}}}};
}

const ojson kString = {{"type", "string"}};
const ojson kBool = {{"type", "boolean"}};
ojson enum_of(std::vector<std::string> values) {
  return {{"type", "string"}, {"enum", std::move(values)}};
}

// A coding agent's tools, with schemas as such clients send them.
ojson agent_tools() {
  return ojson::array(
      {tool("read_file", "Read a file of the workspace; returns its lines, numbered.",
            {{"path", {{"type", "string"}, {"description", "absolute path"}}},
             {"offset", {{"type", "integer"}, {"minimum", 0}}},
             {"limit", {{"type", "integer"}, {"minimum", 1}, {"maximum", 2000}}}},
            {"path"}),
       tool("write_file", "Write a file, replacing its content.",
            {{"path", kString}, {"content", kString}}, {"path", "content"}),
       tool("edit_file", "Replace exact text in a file.",
            {{"path", kString},
             {"old_string", kString},
             {"new_string", kString},
             {"replace_all", {{"type", "boolean"}, {"default", false}}}},
            {"path", "old_string", "new_string"}),
       tool("bash", "Run a shell command in the sandbox.",
            {{"command", kString}, {"timeout_ms", {{"type", "integer"}}}, {"background", kBool}},
            {"command"}),
       tool("glob", "Find files by glob pattern.", {{"pattern", kString}, {"path", kString}},
            {"pattern"}),
       tool("grep", "Search file contents with a regular expression.",
            {{"pattern", kString},
             {"path", kString},
             {"output_mode", enum_of({"content", "files_with_matches", "count"})},
             {"-i", kBool}},
            {"pattern"}),
       tool("list_dir", "List a directory.",
            {{"path", kString}, {"ignore", {{"type", "array"}, {"items", kString}}}}, {"path"}),
       tool("web_fetch", "Fetch a URL and summarize it.",
            {{"url", {{"type", "string"}, {"format", "uri"}}}, {"prompt", kString}},
            {"url", "prompt"}),
       tool("todo_write", "Update the task list.",
            {{"todos",
              {{"type", "array"},
               {"items",
                {{"type", "object"},
                 {"properties",
                  {{"content", kString},
                   {"status", enum_of({"pending", "in_progress", "completed"})},
                   {"id", kString}}},
                 {"required", {"content", "status", "id"}}}}}}},
            {"todos"}),
       tool("run_tests", "Run the project's tests.", {{"filter", kString}, {"verbose", kBool}}, {}),
       tool("set_mode", "Switch between planning and acting.",
            {{"mode", enum_of({"plan", "act"})}, {"confirm", kBool}}, {"mode", "confirm"}),
       tool("ask_user", "Ask the user a question.",
            {{"question", kString}, {"options", {{"type", "array"}, {"items", kString}}}},
            {"question"})});
}

ojson text_parts(const std::vector<std::string>& texts) {
  ojson parts = ojson::array();
  for (const auto& t : texts) parts.push_back({{"type", "text"}, {"text", t}});
  return parts;
}

ojson call(const std::string& id, const std::string& name, const std::string& arguments) {
  return {
      {"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
}

// A captured-style agent conversation: system and developer prompts, content as text parts,
// parallel tool calls and their results, a tool call without content, a new user turn.
ojson agent_messages() {
  return ojson::array(
      {{{"role", "system"},
        {"content", "You are a coding agent. Use the tools to inspect and change the repository."}},
       {{"role", "developer"}, {"content", "Project: kvstash. Never push to main."}},
       {{"role", "user"}, {"content", text_parts({"The build fails on CI.", "Please fix it."})}},
       {{"role", "assistant"},
        {"content", "Let me look."},
        {"tool_calls",
         {call("call_1", "bash", R"({"command": "cmake --build build 2>&1 | tail"})"),
          call("call_2", "read_file", R"({"path": "/repo/CMakeLists.txt", "limit": 40})")}}},
       {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "error: 'span' is not in std\n"}},
       {{"role", "tool"},
        {"tool_call_id", "call_2"},
        {"content", text_parts({"1\tcmake_minimum_required(VERSION 3.20)\n2\tproject(kv CXX)\n"})}},
       {{"role", "assistant"},
        {"content", nullptr},
        {"tool_calls",
         {call(
             "call_3", "edit_file",
             R"j({"path": "/repo/CMakeLists.txt", "old_string": "CXX)", "new_string": "CXX)\nset(CMAKE_CXX_STANDARD 20)"})j")}}},
       {{"role", "tool"}, {"tool_call_id", "call_3"}, {"content", "ok"}},
       {{"role", "user"}, {"content", "Now run the tests."}}});
}

// Tools whose arguments a random model cannot make endless, and a check of arguments against
// their schemas (the subset these use: objects of booleans and string enums).
ojson bounded_tools() {
  return ojson::array(
      {tool("set_mode", "Switch between planning and acting.",
            {{"mode", enum_of({"plan", "act"})}, {"confirm", kBool}}, {"mode", "confirm"}),
       tool("toggle", "Turn the verbose flag on or off.", {{"on", kBool}}, {"on"}),
       tool("pick", "Pick a color.", {{"color", enum_of({"red", "green"})}}, {"color"})});
}

// Empty when `v` matches `schema`, else what does not.
std::string mismatch(const json& v, const json& schema) {
  const std::string type = schema.value("type", "");
  if (schema.contains("enum")) {
    for (const auto& e : schema["enum"]) {
      if (e == v) return "";
    }
    return v.dump() + " is not in " + schema["enum"].dump();
  }
  if (type == "boolean") return v.is_boolean() ? "" : v.dump() + " is not a boolean";
  if (type == "string") return v.is_string() ? "" : v.dump() + " is not a string";
  if (type != "object") return "unsupported schema " + schema.dump();
  if (!v.is_object()) return v.dump() + " is not an object";
  for (const auto& r : schema.value("required", json::array())) {
    if (!v.contains(r.get<std::string>())) return "missing required " + r.dump();
  }
  for (const auto& [k, x] : v.items()) {
    if (!schema["properties"].contains(k)) return "unknown property " + k;
    if (auto why = mismatch(x, schema["properties"][k]); !why.empty()) return k + ": " + why;
  }
  return "";
}

// The schema of the tool `name` among `tools`, or null.
json tool_schema(const ojson& tools, const std::string& name) {
  for (const auto& t : tools) {
    if (t["function"]["name"] == name) return json::parse(t["function"]["parameters"].dump());
  }
  return nullptr;
}

// Where two renderings part, with some context (a whole prompt is too long to read); empty if
// they do not.
std::string first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() && i == b.size()) return "";
  const size_t from = i < 60 ? 0 : i - 60;
  return "at byte " + std::to_string(i) + "\n  kvstash:      ..." + a.substr(from, 160) +
         "\n  llama-server: ..." + b.substr(from, 160);
}

// A streamed chat reply put back together from its deltas.
struct Assembled {
  std::string content, reasoning, finish_reason;
  struct Call {
    std::string id, name, arguments;
    int ids = 0, names = 0;  // how many deltas carried them
  };
  std::vector<Call> calls;
  json usage;
  bool done = false;
};

Assembled assemble(const Reply& r) {
  Assembled a;
  std::istringstream in(r.raw);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0) continue;
    if (line == "data: [DONE]") {
      a.done = true;
      continue;
    }
    const json c = json::parse(line.substr(6));
    if (c.contains("usage")) a.usage = c["usage"];
    if (c["choices"].empty()) continue;
    const json& ch = c["choices"][0];
    if (ch["finish_reason"].is_string()) a.finish_reason = ch["finish_reason"];
    const json& d = ch["delta"];
    if (d.contains("content") && d["content"].is_string()) a.content += d["content"];
    if (d.contains("reasoning_content")) a.reasoning += d["reasoning_content"];
    for (const auto& tc : d.value("tool_calls", json::array())) {
      const size_t i = tc["index"];
      if (a.calls.size() <= i) a.calls.resize(i + 1);
      auto& call = a.calls[i];
      if (tc.contains("id")) {
        call.id = tc["id"];
        ++call.ids;
      }
      const json& fn = tc["function"];
      if (fn.contains("name")) {
        call.name = fn["name"];
        ++call.names;
      }
      if (fn.contains("arguments")) call.arguments += fn["arguments"];
    }
  }
  return a;
}

class AgentProtocol : public ::testing::Test {
 protected:
  // One server for the suite. `-n 3`: a request without max_tokens gets 3 tokens (every other
  // request here sets its own).
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    srv_ = new ServerProcess({"-m", model_path("tiny"), "--ctx-size", "8192", "--cache-dir",
                              dir_->path + "/cache", "--cache-boundary-align", "256", "-n", "3"});
    engine::Model& m = model("tiny");
    ws_bias_ = new ojson(ojson::object());
    for (engine::Token t = 0; t < m.n_vocab(); ++t) {
      const std::string s = m.token_text(t);
      if (!s.empty() && s != "\n" && s.find_first_not_of(" \t\n") == std::string::npos) {
        (*ws_bias_)[std::to_string(t)] = false;
      }
    }
  }
  static void TearDownTestSuite() {
    delete srv_;
    delete dir_;
    delete ws_bias_;
  }
  static Reply chat(const ojson& body) {
    return post(srv_->port(), "/v1/chat/completions", body.dump());
  }
  // A request the model must answer with a tool call or JSON: greedy, no thinking, no
  // whitespace-only tokens but "\n".
  static ojson constrained(ojson messages) {
    return {{"messages", std::move(messages)},
            {"temperature", 0},
            {"max_tokens", 200},
            {"chat_template_kwargs", {{"enable_thinking", false}}},
            {"logit_bias", *ws_bias_}};
  }
  // One tool call of the reply (non-streamed), checked against the tools it may call.
  static void expect_valid_call(const Reply& r, const ojson& tools, const std::string& only = "") {
    ASSERT_EQ(r.status, 200) << r.raw;
    const json& choice = r.body["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << r.raw;
    const json& calls = choice["message"]["tool_calls"];
    ASSERT_TRUE(calls.is_array() && calls.size() == 1) << r.raw;
    EXPECT_EQ(calls[0]["type"], "function");
    EXPECT_FALSE(calls[0]["id"].get<std::string>().empty());
    const std::string name = calls[0]["function"]["name"];
    if (!only.empty()) {
      EXPECT_EQ(name, only);
    }
    const json schema = tool_schema(tools, name);
    ASSERT_FALSE(schema.is_null()) << "the model called " << name << ", not among the tools";
    const json args =
        json::parse(calls[0]["function"]["arguments"].get<std::string>(), nullptr, false);
    ASSERT_FALSE(args.is_discarded()) << calls[0]["function"]["arguments"];
    EXPECT_EQ(mismatch(args, schema), "") << args.dump();
  }
  static inline TempDir* dir_ = nullptr;
  static inline ServerProcess* srv_ = nullptr;
  static inline ojson* ws_bias_ = nullptr;
};

// The same request through kvstash and llama-server --jinja (same model, same template): the
// same prompt text, the same tokens, the same prompt token counts in both servers' usage.
TEST_F(AgentProtocol, RenderingMatchesLlamaServerJinjaWithAndWithoutTools) {
  const std::string peer = llama_server_path();
  ASSERT_TRUE(!peer.empty() && std::filesystem::exists(peer))
      << "llama-server not found (" << (peer.empty() ? "no llama.cpp prefix" : peer)
      << "): the llama.cpp build makes it; rebuild it (cmake/llama.sh)";
  const int port = loadgen::free_port();
  loadgen::ServerRunner ls(
      {peer, "-m", model_path("tiny"), "--jinja", "-c", "4096", "--no-webui", "-np", "1", "-t", "2",
       "--host", "127.0.0.1", "--port", std::to_string(port)},
      dir_->path + "/llama-server.log", port);
  ls.start(120);
  engine::Model& m = model("tiny");
  const engine::ChatTemplates templates(m);
  for (const bool with_tools : {true, false}) {
    SCOPED_TRACE(with_tools ? "with tools" : "without tools");
    ojson body = {{"messages", agent_messages()}, {"max_tokens", 1}, {"temperature", 0}};
    if (with_tools) body["tools"] = agent_tools();
    const Reply applied = post(port, "/apply-template", body.dump());
    ASSERT_EQ(applied.status, 200) << applied.raw;
    const std::string expected = applied.body["prompt"];
    const Reply toks =
        post(port, "/tokenize", json{{"content", expected}, {"add_special", true}}.dump());
    ASSERT_EQ(toks.status, 200) << toks.raw;
    const std::vector<engine::Token> expected_tokens = toks.body["tokens"];

    // kvstash's own rendering, through the server's request parser.
    auto parsed = server::parse_request(server::Api::kChat, body.dump(), {m.n_vocab(), server::BillingHeader::kNormalize, {}});
    ASSERT_TRUE(std::holds_alternative<server::ParsedRequest>(parsed))
        << std::get<server::ApiError>(parsed).message;
    const auto cp = server::render_chat(m, templates, std::get<server::ParsedRequest>(parsed).chat);
    EXPECT_EQ(first_difference(cp.render.prompt, expected), "");
    EXPECT_EQ(cp.tokens, expected_tokens);
    if (with_tools) {
      EXPECT_NE(expected.find(R"("parameters": {"type": "object", "properties": {"todos")"),
                std::string::npos)
          << "schemas keep the client's key order";
    }

    // What the servers count when they serve it.
    const Reply a = chat(body);
    const Reply b = post(port, "/v1/chat/completions", body.dump());
    ASSERT_EQ(a.status, 200) << a.raw;
    ASSERT_EQ(b.status, 200) << b.raw;
    EXPECT_EQ(a.body["usage"]["prompt_tokens"], expected_tokens.size());
    EXPECT_EQ(b.body["usage"]["prompt_tokens"], expected_tokens.size());
    EXPECT_EQ(
        b.body["timings"]["prompt_n"].get<size_t>() + b.body["timings"]["cache_n"].get<size_t>(),
        expected_tokens.size());
    EXPECT_EQ(
        a.body["timings"]["prompt_n"].get<size_t>() + a.body["timings"]["cache_n"].get<size_t>(),
        expected_tokens.size());
  }
}

// Message boundaries do not depend on what the renderer remembers: a server that saw the
// conversation's earlier turns (prefix renderings and their tokens remembered, unremembered ones
// rendered in parallel) finds the same tokens, boundaries and anchor as one that sees the turn
// first, and on a repeat it knows every boundary's tokens without tokenizing them.
TEST_F(AgentProtocol, RememberedPrefixesGiveTheSameBoundariesAsFreshOnes) {
  engine::Model& m = model("tiny");
  const engine::ChatTemplates warm(m);
  const ojson all = agent_messages();
  size_t checked = 0;
  for (size_t n = 3; n <= all.size(); ++n) {
    SCOPED_TRACE("messages: " + std::to_string(n));
    engine::ChatInput in;
    in.messages_json = ojson(std::vector<ojson>(all.begin(), all.begin() + n)).dump();
    in.tools_json = agent_tools().dump();
    const engine::ChatTemplates cold(m);
    const auto a = server::render_chat(m, warm, in);
    const auto b = server::render_chat(m, cold, in);
    ASSERT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.info.boundaries, b.info.boundaries);
    EXPECT_EQ(a.info.anchor, b.info.anchor);
    const auto again = server::render_chat(m, warm, in);
    EXPECT_EQ(again.info.boundaries, a.info.boundaries);
    size_t known = 0;
    for (const auto& t : again.render.prefix_tokens) {
      const auto at = std::find(a.info.boundaries.begin(), a.info.boundaries.end(), t.count);
      known += t.count > 0 && at != a.info.boundaries.end();
    }
    EXPECT_EQ(known, a.info.boundaries.size()) << "every boundary's tokens remembered";
    checked += a.info.boundaries.size();
  }
  EXPECT_GT(checked, 10u) << "the conversation has boundaries to compare";
}

// Rendering under a budget: out of time, the boundaries found are marked incomplete (the server
// then serves the request without the cache) and the next rendering goes on from what was
// remembered until all are found, the same as an unhurried rendering's; a client that left
// stops it.
TEST_F(AgentProtocol, RenderingOutOfTimeIsIncompleteAndLaterRenderingsFinishIt) {
  engine::Model& m = model("tiny");
  ojson msgs = ojson::array();
  for (int i = 0; i < 60; ++i) {
    msgs.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "m" + std::to_string(i)}});
  }
  engine::ChatInput in;
  in.messages_json = msgs.dump();
  const engine::ChatTemplates reference(m);
  const auto whole = server::render_chat(m, reference, in);
  ASSERT_TRUE(whole.render.complete);
  ASSERT_GT(whole.info.boundaries.size(), 50u);

  const engine::ChatTemplates hurried(m);
  engine::RenderBudget none;
  none.deadline = std::chrono::steady_clock::now();
  const auto cut = server::render_chat(m, hurried, in, none);
  EXPECT_FALSE(cut.render.complete);
  EXPECT_LT(cut.info.boundaries.size(), whole.info.boundaries.size());
  EXPECT_EQ(cut.tokens, whole.tokens) << "the prompt itself is whole";
  const auto after = server::render_chat(m, hurried, in);
  EXPECT_TRUE(after.render.complete);
  EXPECT_EQ(after.info.boundaries, whole.info.boundaries);

  const engine::ChatTemplates left(m);
  engine::RenderBudget gone;
  gone.cancelled = [] { return true; };
  EXPECT_THROW(server::render_chat(m, left, in, gone), engine::ChatCancelled);
}

TEST_F(AgentProtocol, ToolChoiceRequiredYieldsAValidToolCall) {
  const ojson tools = bounded_tools();
  ojson body = constrained(ojson::array({{{"role", "user"}, {"content", "Switch to acting."}}}));
  body["tools"] = tools;
  body["tool_choice"] = "required";
  body["parallel_tool_calls"] = false;
  const Reply r = chat(body);
  expect_valid_call(r, tools);
  EXPECT_TRUE(r.body["choices"][0]["message"]["content"].is_null()) << r.raw;

  body["stream"] = true;
  const Reply s = chat(body);
  ASSERT_EQ(s.status, 200) << s.raw;
  const Assembled a = assemble(s);
  EXPECT_TRUE(a.done) << s.raw;
  EXPECT_EQ(a.finish_reason, "tool_calls");
  EXPECT_EQ(a.content, "");
  ASSERT_EQ(a.calls.size(), 1u) << s.raw;
  EXPECT_EQ(a.calls[0].ids, 1) << "the id comes once";
  EXPECT_EQ(a.calls[0].names, 1) << "the name comes once";
  const json& whole = r.body["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(a.calls[0].name, whole["function"]["name"]);
  EXPECT_EQ(a.calls[0].arguments, whole["function"]["arguments"]) << "the same greedy reply";
  EXPECT_NE(a.calls[0].id, whole["id"]) << "ids are unique";
  EXPECT_EQ(a.usage["completion_tokens"], r.body["usage"]["completion_tokens"]);
}

TEST_F(AgentProtocol, ToolChoiceNamingAFunctionCallsExactlyIt) {
  const ojson tools = bounded_tools();
  ojson body = constrained(ojson::array({{{"role", "user"}, {"content", "Pick one."}}}));
  body["tools"] = tools;
  body["parallel_tool_calls"] = false;
  for (const std::string name : {"pick", "toggle"}) {
    body["tool_choice"] = {{"type", "function"}, {"function", {{"name", name}}}};
    expect_valid_call(chat(body), tools, name);
  }
}

TEST_F(AgentProtocol, JsonSchemaRepliesValidate) {
  const ojson schema = {{"type", "object"},
                        {"properties", {{"ok", kBool}, {"mode", enum_of({"plan", "act"})}}},
                        {"required", {"ok", "mode"}},
                        {"additionalProperties", false}};
  const json plain = json::parse(schema.dump());
  ojson body = constrained(ojson::array({{{"role", "user"}, {"content", "Answer in JSON."}}}));
  body["response_format"] = {{"type", "json_schema"},
                             {"json_schema", {{"name", "answer"}, {"schema", schema}}}};
  const Reply r = chat(body);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop") << r.raw;
  const json reply = json::parse(content(r), nullptr, false);
  ASSERT_FALSE(reply.is_discarded()) << content(r);
  EXPECT_EQ(mismatch(reply, plain), "") << reply.dump();

  const ojson completion = {{"prompt", "Answer in JSON:"},
                            {"json_schema", schema},
                            {"temperature", 0},
                            {"max_tokens", 200},
                            {"logit_bias", *ws_bias_}};
  const Reply c = post(srv_->port(), "/v1/completions", completion.dump());
  ASSERT_EQ(c.status, 200) << c.raw;
  EXPECT_EQ(c.body["choices"][0]["finish_reason"], "stop") << c.raw;
  const json text = json::parse(c.body["choices"][0]["text"].get<std::string>(), nullptr, false);
  ASSERT_FALSE(text.is_discarded()) << c.raw;
  EXPECT_EQ(mismatch(text, plain), "") << text.dump();
}

// Qwen3's template with thinking on: the generation prompt is "<|im_start|>assistant\n", so the
// grammar makes the model open and close a think block itself, as a thinking model does.
TEST_F(AgentProtocol, ReasoningIsSplitOutOfTheContent) {
  ojson body = {{"messages", ojson::array({{{"role", "user"}, {"content", "Think first."}}})},
                {"temperature", 0},
                {"max_tokens", 60},
                {"chat_template_kwargs", {{"enable_thinking", true}}},
                {"grammar", R"(root ::= "<think>" [a-z]{1,8} "</think>" [a-z]{1,8})"}};
  const Reply r = chat(body);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& msg = r.body["choices"][0]["message"];
  ASSERT_TRUE(msg.contains("reasoning_content")) << r.raw;
  const std::string reasoning = msg["reasoning_content"], text = msg["content"];
  EXPECT_FALSE(reasoning.empty());
  EXPECT_FALSE(text.empty());
  for (const std::string& s : {reasoning, text}) {
    EXPECT_EQ(s.find("think>"), std::string::npos) << r.raw;
  }

  body["stream"] = true;
  const Reply s = chat(body);
  ASSERT_EQ(s.status, 200) << s.raw;
  const Assembled a = assemble(s);
  EXPECT_EQ(a.reasoning, reasoning) << s.raw;
  EXPECT_EQ(a.content, text) << s.raw;
  EXPECT_EQ(a.finish_reason, "stop");

  // Without reasoning extraction the block stays in the content: the split is the parser's.
  body.erase("stream");
  body["reasoning_format"] = "none";
  const Reply raw = chat(body);
  ASSERT_EQ(raw.status, 200) << raw.raw;
  EXPECT_EQ(content(raw), "<think>" + reasoning + "</think>" + text);
}

// An agent's tool loop, tools in every request, while another conversation takes the slot
// between turns: each turn restores all of the turns before it from the cache, and the restored
// state answers as a fresh prefill does, to the last bit of every logprob.
TEST_F(AgentProtocol, ToolLoopRestoresEveryTurnBitExact) {
  ojson msgs = ojson::array(
      {{{"role", "system"}, {"content", "You are a coding agent."}},
       {{"role", "user"}, {"content", text_parts({"Find why the tests fail.", "Then fix it."})}}});
  auto body = [&](const ojson& m) {
    return ojson{{"messages", m},    {"tools", agent_tools()}, {"max_tokens", 4},
                 {"temperature", 0}, {"logprobs", true},       {"top_logprobs", 5}};
  };
  const ojson other = {
      {"messages", ojson::array({{{"role", "user"}, {"content", "Something else entirely."}}})},
      {"max_tokens", 1}};
  auto restores = [&] {
    const std::string log = srv_->log();
    int n = 0;
    for (size_t at = log.find("kv cache hit tokens="); at != std::string::npos;
         at = log.find("kv cache hit tokens=", at + 1)) {
      ++n;
    }
    return n;
  };
  int prev_prompt = 0;
  Reply last;
  for (int turn = 0; turn < 4; ++turn) {
    SCOPED_TRACE("turn " + std::to_string(turn));
    if (turn > 0) {
      const std::string id = "call_" + std::to_string(turn);
      msgs.push_back(
          {{"role", "assistant"},
           {"content", ""},
           {"tool_calls",
            {call(id, "read_file",
                  R"({"path": "/repo/src/file)" + std::to_string(turn) + R"(.cpp"})")}}});
      std::string out;
      for (int l = 0; l < 60; ++l) {
        out += std::to_string(l + 1) + "\tint f" + std::to_string(l * turn) + "() { return " +
               std::to_string(l) + "; }\n";
      }
      msgs.push_back({{"role", "tool"}, {"tool_call_id", id}, {"content", out}});
    }
    ASSERT_EQ(chat(other).status, 200);  // the slot's live state is now another's
    const int before = restores();
    last = chat(body(msgs));
    ASSERT_EQ(last.status, 200) << last.raw;
    const int prompt = last.body["usage"]["prompt_tokens"];
    if (turn > 0) {
      EXPECT_EQ(restores(), before + 1) << "restored from the cache, not the live state";
      EXPECT_GE(cached(last), prev_prompt - 256) << "of " << prompt;
      EXPECT_GT(prompt, prev_prompt + 256) << "each turn adds more than a chunk";
    }
    prev_prompt = prompt;
  }
  EXPECT_GT(cached(last), 2000);

  ServerProcess fresh({"-m", model_path("tiny"), "--ctx-size", "8192", "--cache-scope", "off"});
  const Reply ref = post(fresh.port(), "/v1/chat/completions", body(msgs).dump());
  ASSERT_EQ(ref.status, 200) << ref.raw;
  EXPECT_EQ(cached(ref), 0);
  EXPECT_EQ(ref.body["choices"][0]["message"], last.body["choices"][0]["message"]);
  EXPECT_EQ(ref.body["choices"][0]["logprobs"], last.body["choices"][0]["logprobs"])
      << "the same numbers to the last bit";
  EXPECT_EQ(ref.body["choices"][0]["logprobs"]["content"].size(), 4u);
}

TEST_F(AgentProtocol, BadToolsSchemasAndGrammarsGet400SayingWhat) {
  const ojson user = ojson::array({{{"role", "user"}, {"content", "hi"}}});
  auto with = [&](ojson extra) {
    ojson b = {{"messages", user}, {"max_tokens", 2}};
    b.update(extra);
    return b;
  };
  const ojson bad_schema = {{"type", "object"}, {"properties", {{"a", {{"$ref", "#/nowhere"}}}}}};
  struct Case {
    std::string path;
    ojson body;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", with({{"tools", "read_file"}}), "'tools' must be an array"},
      {"/v1/chat/completions", with({{"tools", {{{"type", "function"}}}}}),
       "tools[0].function is required"},
      {"/v1/chat/completions",
       with({{"tools", {{{"type", "function"}, {"function", {{"description", "x"}}}}}}}),
       "tools[0].function.name"},
      {"/v1/chat/completions",
       with(
           {{"tools", {{{"type", "function"}, {"function", {{"name", "a"}, {"parameters", 5}}}}}}}),
       "tools[0].function.parameters must be a JSON schema object"},
      {"/v1/chat/completions",
       with({{"tools", ojson::array({tool("a", "x", {{"p", bad_schema["properties"]["a"]}}, {})})},
             {"tool_choice", "required"}}),
       "'tools[0].function.parameters' is not a usable JSON schema"},
      {"/v1/chat/completions",
       with({{"tools", bounded_tools()},
             {"tool_choice", {{"type", "function"}, {"function", {{"name", "launch"}}}}}}),
       "'tool_choice' names the function 'launch', which is not among 'tools'"},
      {"/v1/chat/completions", with({{"tool_choice", "required"}}), "has no 'tools'"},
      {"/v1/chat/completions", with({{"tools", bounded_tools()}, {"tool_choice", "always"}}),
       "'tool_choice' must be"},
      {"/v1/chat/completions",
       with(
           {{"response_format",
             {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", bad_schema}}}}}}),
       "invalid JSON schema: JSON schema conversion failed:\nJSON schema error at #/properties/a: "
       "cannot resolve $ref #/nowhere"},
      {"/v1/chat/completions", with({{"response_format", {{"type", "yaml"}}}}),
       "'response_format.type'"},
      {"/v1/chat/completions", with({{"grammar", "root ::= ("}}), "invalid grammar"},
      {"/v1/chat/completions", with({{"grammar", "root ::= undefined-rule"}}), "invalid grammar"},
      {"/v1/chat/completions", with({{"tools", bounded_tools()}, {"grammar", "root ::= \"x\""}}),
       "'grammar' cannot be combined with 'tools'"},
      {"/v1/chat/completions", with({{"chat_template_kwargs", {{"enable_thinking", "yes"}}}}),
       "'chat_template_kwargs.enable_thinking' must be true or false"},
      {"/v1/completions",
       {{"prompt", "x"}, {"json_schema", bad_schema}},
       "cannot resolve $ref #/nowhere"},
      {"/v1/completions", {{"prompt", "x"}, {"grammar", "root ::= ["}}, "invalid grammar"},
  };
  for (const auto& c : cases) {
    const Reply r = post(srv_->port(), c.path, c.body.dump());
    EXPECT_EQ(r.status, 400) << c.body.dump();
    ASSERT_TRUE(r.body.is_object()) << r.raw;
    EXPECT_EQ(r.body["error"]["code"], 400);
    const std::string msg = r.body["error"]["message"];
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.body.dump() << "\n  got: " << msg;
  }
  EXPECT_EQ(chat(with({{"max_tokens", 2}})).status, 200) << "the server stays up";
}

// A template that raises while rendering fails that request (400, with the template's message);
// one that cannot be parsed stops `kvstash serve` at startup, saying where.
TEST_F(AgentProtocol, TemplateErrorsAreClear) {
  const std::string raising = dir_->path + "/raising.jinja", broken = dir_->path + "/broken.jinja";
  std::ofstream(raising)
      << "{% if messages[0].content == 'boom' %}{{ raise_exception('the template says boom') }}"
         "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  std::ofstream(broken) << "{% for m in messages %}{{ m.content }\n{% endfor %}";
  {
    ServerProcess srv({"-m", model_path("tiny"), "--ctx-size", "2048", "--cache-scope", "off",
                       "--chat-template-file", raising});
    const Reply bad = post(srv.port(), "/v1/chat/completions",
                           chat_body(json::array({{{"role", "user"}, {"content", "boom"}}}), 2));
    EXPECT_EQ(bad.status, 400) << bad.raw;
    EXPECT_NE(bad.raw.find("the template says boom"), std::string::npos) << bad.raw;
    const Reply ok = post(srv.port(), "/v1/chat/completions",
                          chat_body(json::array({{{"role", "user"}, {"content", "hi"}}}), 2));
    EXPECT_EQ(ok.status, 200) << ok.raw;
  }
  const auto r = run_kvstash({"serve", "-m", model_path("tiny"), "--host", "127.0.0.1", "--port",
                              "0", "--cache-scope", "off", "--chat-template-file", broken});
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("cannot load the chat template: parser: Parser Error: Expected }}"),
            std::string::npos)
      << r.err;
}

// --n-predict caps a reply that sets no max_tokens (this suite's server runs with -n 3); with
// the default (-1) a reply runs to the context's end, and either ends as "length".
TEST_F(AgentProtocol, NPredictAndTheContextEndCapReplies) {
  const json msgs = json::array({{{"role", "user"}, {"content", "Tell me a long story."}}});
  const Reply r = chat(json{{"messages", msgs}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 3);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  const Reply c = post(srv_->port(), "/v1/completions", R"({"prompt": "Once", "temperature": 0})");
  ASSERT_EQ(c.status, 200) << c.raw;
  EXPECT_EQ(c.body["usage"]["completion_tokens"], 3);
  EXPECT_EQ(c.body["choices"][0]["finish_reason"], "length");
  const Reply more = chat(json{{"messages", msgs}, {"temperature", 0}, {"max_tokens", 5}});
  EXPECT_EQ(more.body["usage"]["completion_tokens"], 5) << "max_tokens wins over -n";

  ServerProcess small({"-m", model_path("tiny"), "--ctx-size", "256", "--cache-scope", "off"});
  const Reply end = post(small.port(), "/v1/chat/completions",
                         json{{"messages", msgs}, {"temperature", 0}}.dump());
  ASSERT_EQ(end.status, 200) << end.raw;
  EXPECT_EQ(end.body["choices"][0]["finish_reason"], "length") << end.raw;
  EXPECT_GE(end.body["usage"]["total_tokens"].get<int>(), 255) << end.raw;
}

}  // namespace
}  // namespace kvstash::fixtures
