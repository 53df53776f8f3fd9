// The API dialects without a model: Anthropic Messages and OpenAI Responses requests become the
// chat request the renderer takes (server/api.h), and each dialect's encoder writes the event
// stream in the order and shapes its clients parse (server/reply.h).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "server/api.h"
#include "server/api_json.h"
#include "server/reply.h"

using namespace kvstash::server;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

ParsedRequest parsed(Api api, const std::string& body) {
  auto r = parse_request(api, body, {1000, BillingHeader::kNormalize, {}});
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << e->message;
  return std::holds_alternative<ParsedRequest>(r) ? std::get<ParsedRequest>(r) : ParsedRequest{};
}

std::string error_of(Api api, const std::string& body) {
  auto r = parse_request(api, body, {1000, BillingHeader::kNormalize, {}});
  auto* e = std::get_if<ApiError>(&r);
  return e ? e->message : "";
}

// The SSE events of a stream: (event name or "", data).
std::vector<std::pair<std::string, json>> events(const std::string& sse) {
  std::vector<std::pair<std::string, json>> out;
  std::istringstream in(sse);
  std::string name;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("event: ", 0) == 0) name = line.substr(7);
    if (line.rfind("data: ", 0) == 0) {
      out.emplace_back(name, json::parse(line.substr(6), nullptr, false));
      name.clear();
    }
  }
  return out;
}

std::vector<std::string> names(const std::vector<std::pair<std::string, json>>& evs) {
  std::vector<std::string> n;
  for (const auto& [name, data] : evs) n.push_back(name);
  return n;
}

ReplyEvent text(const std::string& t) { return {ReplyEvent::Kind::kText, t, -1, "", "", nullptr}; }
ReplyEvent reasoning(const std::string& t) {
  return {ReplyEvent::Kind::kReasoning, t, -1, "", "", nullptr};
}
ReplyEvent tool_begin(int i, const std::string& id, const std::string& name) {
  return {ReplyEvent::Kind::kToolBegin, "", i, id, name, nullptr};
}
ReplyEvent tool_args(int i, const std::string& a) {
  return {ReplyEvent::Kind::kToolArgs, a, i, "", "", nullptr};
}

ReplyEnd end_of(StopReason r, uint32_t prompt, uint32_t cached, uint32_t out) {
  ReplyEnd e;
  e.reason = r;
  e.prompt_tokens = prompt;
  e.cached_tokens = cached;
  e.completion_tokens = out;
  return e;
}

}  // namespace

TEST(Messages, BecomeTheChatRequestLlamaServerRenders) {
  const auto p = parsed(Api::kMessages, R"({
    "model": "m", "max_tokens": 32000, "stream": true,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.9; cch=a5145;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "user", "content": [{"type": "text", "text": "list files"}]},
      {"role": "assistant", "content": [{"type": "thinking", "thinking": "use ls", "signature": "s"},
                                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}]},
                                   {"type": "text", "text": "thanks"}]}],
    "tools": [{"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
              {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
    "tool_choice": {"type": "any"}, "stop_sequences": ["STOP"], "temperature": 0.5, "top_k": 7,
    "thinking": {"type": "adaptive"}, "context_management": {}, "output_config": {}, "metadata": {"user_id": "u"}})");
  const json m = json::parse(p.chat.messages_json);
  ASSERT_EQ(m.size(), 5u) << m.dump();
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[0]["content"],
            "x-anthropic-billing-header: cc_version=2.1.9; cch=fffff;You are Claude Code.");
  EXPECT_EQ(m[1]["content"][0]["text"], "list files");
  EXPECT_EQ(m[2]["reasoning_content"], "use ls");
  EXPECT_EQ(m[2]["tool_calls"][0]["id"], "toolu_1");
  EXPECT_EQ(m[2]["tool_calls"][0]["function"]["arguments"], R"({"command":"ls"})");
  EXPECT_EQ(m[3]["role"], "user");  // the text of the turn, then its tool results
  EXPECT_EQ(m[4]["role"], "tool");
  EXPECT_EQ(m[4]["content"], "a.txt");
  const json tools = json::parse(p.chat.tools_json);
  ASSERT_EQ(tools.size(), 1u) << "server tools (web_search) are not the model's";
  EXPECT_EQ(tools[0]["function"]["parameters"]["properties"]["command"]["type"], "string");
  EXPECT_EQ(p.chat.tool_choice, "required");
  EXPECT_EQ(p.gen.max_tokens, 32000);
  EXPECT_EQ(p.gen.stop, std::vector<std::string>{"STOP"});
  EXPECT_TRUE(p.gen.stream);
  EXPECT_FLOAT_EQ(p.gen.sampling.temperature, 0.5f);
  EXPECT_EQ(p.gen.sampling.top_k, 7);
  EXPECT_FALSE(p.chat.enable_thinking.has_value()) << "adaptive: the template's default";
}

TEST(Messages, ToolChoiceNamesOneToolAndThinkingCanBeTurnedOff) {
  const auto p = parsed(Api::kMessages, R"({"max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "disabled"},
    "tools": [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "b", "disable_parallel_tool_use": true}})");
  EXPECT_EQ(p.chat.tool_name, "b");
  EXPECT_EQ(p.chat.parallel_tool_calls, std::optional<bool>(false));
  EXPECT_EQ(p.chat.enable_thinking, std::optional<bool>(false));
}

TEST(Messages, BadRequestsSayWhatIsWrong) {
  EXPECT_NE(error_of(Api::kMessages, R"({"max_tokens": 5})").find("'messages'"), std::string::npos);
  EXPECT_NE(error_of(Api::kMessages,
                     R"({"max_tokens": -1, "messages": [{"role": "user", "content": "x"}]})")
                .find("max_tokens"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kMessages, R"({"messages": [{"role": "robot", "content": "x"}]})")
                .find("messages[0].role"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kMessages, R"({"messages": [{"role": "user", "content": [{"type": "image",
              "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]})")
                .find("text models only"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kMessages, R"({"messages": [{"role": "user", "content": "x"}],
              "tool_choice": {"type": "sometimes"}})")
                .find("tool_choice"),
            std::string::npos);
}

TEST(Messages, ErrorsHaveAnthropicsShape) {
  const json e = error_json(Api::kMessages, {400, "bad"});
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["message"], "bad");
  EXPECT_EQ(error_json(Api::kMessages, {401, "k"})["error"]["type"], "authentication_error");
  EXPECT_EQ(error_json(Api::kMessages, {503, "s"})["error"]["type"], "overloaded_error");
  EXPECT_EQ(error_json(Api::kResponses, {400, "bad"})["error"]["message"], "bad");
}

TEST(BillingHeader, StampsThatDifferBecomeTheSameLineOrNoLine) {
  const std::string a =
      "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=a5145;";
  const std::string b =
      "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=0c9d2;";
  EXPECT_NE(a, b);
  EXPECT_EQ(billing_header(a, BillingHeader::kNormalize),
            billing_header(b, BillingHeader::kNormalize));
  EXPECT_EQ(billing_header(a, BillingHeader::kKeep), a);
  EXPECT_EQ(billing_header(a, BillingHeader::kDrop), "");
  EXPECT_EQ(billing_header(a + "\nYou are Claude.", BillingHeader::kDrop), "You are Claude.");
  EXPECT_EQ(billing_header("You are x. cch=a5145;", BillingHeader::kNormalize),
            "You are x. cch=a5145;");
}

TEST(Responses, BecomeTheChatRequestLlamaServerRenders) {
  const auto p = parsed(Api::kResponses, R"({
    "model": "m", "instructions": "Be Codex.", "stream": true, "store": false,
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "s1",
    "reasoning": {"summary": "auto"}, "parallel_tool_calls": false, "max_output_tokens": 64,
    "input": [
      {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: on"}]},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
      {"type": "reasoning", "summary": [], "encrypted_content": "opaque"},
      {"type": "function_call", "name": "shell", "arguments": "{\"cmd\":\"ls\"}", "call_id": "c1"},
      {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
      {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}],
    "tools": [{"type": "function", "name": "shell", "description": "Run", "parameters": {"type": "object"}},
              {"type": "web_search"}],
    "tool_choice": "auto"})");
  const json m = json::parse(p.chat.messages_json);
  ASSERT_EQ(m.size(), 6u) << m.dump();
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[0]["content"], "Be Codex.");
  EXPECT_EQ(m[1]["role"], "developer");
  EXPECT_EQ(m[2]["content"][0]["text"], "list files");
  EXPECT_EQ(m[3]["role"], "assistant");
  EXPECT_EQ(m[3]["tool_calls"][0]["id"], "c1");
  EXPECT_EQ(m[4]["role"], "tool");
  EXPECT_EQ(m[4]["tool_call_id"], "c1");
  EXPECT_EQ(m[5]["content"][0]["text"], "done");
  EXPECT_EQ(json::parse(p.chat.tools_json).size(), 1u) << "web_search is not run here";
  EXPECT_EQ(p.chat.parallel_tool_calls, std::optional<bool>(false));
  EXPECT_EQ(p.gen.max_tokens, 64);
}

TEST(Responses, PreviousResponseIdAsksForTheFullInput) {
  EXPECT_NE(error_of(Api::kResponses, R"({"input": "hi", "previous_response_id": "resp_1"})")
                .find("send the whole conversation"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kResponses, R"({"model": "m"})").find("'input'"), std::string::npos);
  EXPECT_NE(error_of(Api::kResponses, R"({"input": [{"type": "computer_call"}]})").find("input[0]"),
            std::string::npos);
}

TEST(Dialects, TheSameConversationIsTheSameChatRequest) {
  const auto chat = parsed(Api::kChat, R"({"messages": [{"role": "system", "content": "S"},
    {"role": "user", "content": "U"}], "tools": [{"type": "function", "function":
    {"name": "f", "description": "d", "parameters": {"type": "object"}}}], "tool_choice": "required"})");
  const auto msgs = parsed(Api::kMessages, R"({"system": "S", "messages": [{"role": "user",
    "content": "U"}], "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any"}})");
  const auto resp = parsed(Api::kResponses, R"({"instructions": "S", "input": "U", "tools":
    [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
    "tool_choice": "required"})");
  EXPECT_EQ(msgs.chat.messages_json, chat.chat.messages_json);
  EXPECT_EQ(resp.chat.messages_json, chat.chat.messages_json);
  EXPECT_EQ(msgs.chat.tools_json, chat.chat.tools_json);
  EXPECT_EQ(resp.chat.tools_json, chat.chat.tools_json);
  EXPECT_EQ(msgs.chat.tool_choice, "required");
  EXPECT_EQ(resp.chat.tool_choice, "required");
}

TEST(AnthropicStream, TextThenAToolCallInBlocks) {
  auto enc = make_encoder({Api::kMessages, "7", 0, "m", 40});
  std::string s = enc->begin();
  s += enc->keepalive();
  for (const auto& e : {reasoning("hm"), text("He"), text("llo"), tool_begin(0, "call_1", "Bash"),
                        tool_args(0, "{\"c\":"), tool_args(0, "1}")}) {
    s += enc->event(e);
  }
  ReplyMessage m;
  m.tool_calls.push_back({"call_1", "Bash", "{\"c\":1}"});
  s += enc->end(end_of(StopReason::kToolCalls, 40, 30, 9), m);
  const auto evs = events(s);
  EXPECT_EQ(names(evs), (std::vector<std::string>{
                            "message_start", "ping", "content_block_start", "content_block_delta",
                            "content_block_stop", "content_block_start", "content_block_delta",
                            "content_block_delta", "content_block_stop", "content_block_start",
                            "content_block_delta", "content_block_delta", "content_block_stop",
                            "message_delta", "message_stop"}));
  EXPECT_EQ(evs[0].second["message"]["usage"]["input_tokens"], 40);
  EXPECT_EQ(evs[2].second["content_block"]["type"], "thinking");
  EXPECT_EQ(evs[5].second["index"], 1);
  EXPECT_EQ(evs[6].second["delta"]["text"], "He");
  EXPECT_EQ(evs[9].second["content_block"]["type"], "tool_use");
  EXPECT_EQ(evs[9].second["content_block"]["name"], "Bash");
  EXPECT_EQ(evs[10].second["delta"]["type"], "input_json_delta");
  EXPECT_EQ(evs[13].second["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(evs[13].second["usage"]["input_tokens"], 10);
  EXPECT_EQ(evs[13].second["usage"]["cache_read_input_tokens"], 30);
  EXPECT_EQ(evs[13].second["usage"]["output_tokens"], 9);
}

TEST(AnthropicWhole, StopSequenceAndToolUseBlocks) {
  auto enc = make_encoder({Api::kMessages, "7", 0, "m", 5});
  ReplyMessage m;
  m.content = "hi";
  ReplyEnd e = end_of(StopReason::kStopSequence, 5, 0, 2);
  e.stop_sequence = "STOP";
  json j = enc->whole(e, m);
  EXPECT_EQ(j["type"], "message");
  EXPECT_EQ(j["stop_reason"], "stop_sequence");
  EXPECT_EQ(j["stop_sequence"], "STOP");
  EXPECT_EQ(j["content"][0]["text"], "hi");
  m.content.clear();
  m.tool_calls.push_back({"call_2", "Read", "{\"path\":\"a\"}"});
  j = enc->whole(end_of(StopReason::kToolCalls, 5, 0, 2), m);
  EXPECT_EQ(j["content"][0]["type"], "tool_use");
  EXPECT_EQ(j["content"][0]["input"]["path"], "a");
  EXPECT_EQ(j["stop_reason"], "tool_use");
}

TEST(ResponsesStream, TheLifecycleInOrderWithSequenceNumbers) {
  auto enc = make_encoder({Api::kResponses, "9", 0, "m", 12});
  std::string s = enc->begin();
  for (const auto& e :
       {text("a"), text("b"), tool_begin(0, "call_3", "shell"), tool_args(0, "{}")}) {
    s += enc->event(e);
  }
  ReplyMessage m;
  m.content = "ab";
  m.tool_calls.push_back({"call_3", "shell", "{}"});
  s += enc->end(end_of(StopReason::kToolCalls, 12, 4, 3), m);
  const auto evs = events(s);
  EXPECT_EQ(
      names(evs),
      (std::vector<std::string>{
          "response.created", "response.in_progress", "response.output_item.added",
          "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
          "response.output_text.done", "response.content_part.done", "response.output_item.done",
          "response.output_item.added", "response.function_call_arguments.delta",
          "response.function_call_arguments.done", "response.output_item.done",
          "response.completed"}));
  for (size_t i = 0; i < evs.size(); ++i) {
    EXPECT_EQ(evs[i].second["sequence_number"], i);
    EXPECT_EQ(evs[i].second["type"], evs[i].first);
  }
  EXPECT_EQ(evs[6].second["text"], "ab");
  EXPECT_EQ(evs[9].second["output_index"], 1);
  EXPECT_EQ(evs[9].second["item"]["call_id"], "call_3");
  const json& r = evs.back().second["response"];
  EXPECT_EQ(r["status"], "completed");
  ASSERT_EQ(r["output"].size(), 2u);
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "ab");
  EXPECT_EQ(r["output"][1]["type"], "function_call");
  EXPECT_EQ(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
}

TEST(ResponsesStream, ALengthCutIsIncompleteAndAnErrorIsFailed) {
  auto enc = make_encoder({Api::kResponses, "9", 0, "m", 12});
  std::string s = enc->begin();
  s += enc->event(text("a"));
  ReplyMessage m;
  m.content = "a";
  s += enc->end(end_of(StopReason::kLength, 12, 0, 1), m);
  const auto evs = events(s);
  EXPECT_EQ(evs.back().first, "response.incomplete");
  EXPECT_EQ(evs.back().second["response"]["incomplete_details"]["reason"], "max_output_tokens");
  const auto err = events(enc->error({500, "boom"}));
  EXPECT_EQ(err.back().first, "response.failed");
  EXPECT_EQ(err.back().second["response"]["error"]["message"], "boom");
}

TEST(OpenAiStream, ToolCallDeltasCarryTheIdAndNameOnce) {
  auto enc = make_encoder({Api::kChat, "1", 0, "m", 3});
  std::string s = enc->begin();
  s += enc->event(tool_begin(0, "call_4", "f"));
  s += enc->event(tool_args(0, "{}"));
  s += enc->end(end_of(StopReason::kToolCalls, 3, 0, 2), {});
  const auto evs = events(s);
  ASSERT_EQ(evs.size(), 5u);  // role, call, arguments, finish, [DONE] (not JSON)
  EXPECT_EQ(evs[0].second["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(evs[1].second["choices"][0]["delta"]["tool_calls"][0]["id"], "call_4");
  EXPECT_FALSE(evs[2].second["choices"][0]["delta"]["tool_calls"][0].contains("id"));
  EXPECT_EQ(evs[3].second["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(evs[4].second.is_discarded());
}
