// Request validation without a server: what the fuzzer found stays fixed.
#include "server/api.h"

#include <gtest/gtest.h>

#include "util/size.h"

using namespace kvstash;
using namespace kvstash::server;

namespace {
std::string error_of(Api ep, const std::string& body) {
  auto r = parse_request(ep, body, ApiOptions{1000, BillingHeader::kNormalize, {}});
  auto* e = std::get_if<ApiError>(&r);
  return e ? e->message : "";
}
}  // namespace

TEST(Api, ParsesAFullChatRequest) {
  auto r = parse_request(Api::kChat, R"({
    "messages": [{"role": "developer", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                 {"role": "assistant", "content": null}],
    "max_tokens": 5, "temperature": 0, "stop": "END", "stream": true,
    "prefix_cache": {"scope": "auto", "window": 8}, "cache_salt": "t"})",
                         ApiOptions{1000, BillingHeader::kNormalize, {}});
  ASSERT_TRUE(std::holds_alternative<ParsedRequest>(r));
  const auto& p = std::get<ParsedRequest>(r);
  const auto m = nlohmann::json::parse(p.chat.messages_json);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0]["role"], "developer");  // the template maps roles, as in llama-server
  EXPECT_EQ(m[1]["content"][0]["text"], "hi");
  EXPECT_EQ(p.gen.max_tokens, 5);
  EXPECT_EQ(p.gen.stop, std::vector<std::string>{"END"});
  ASSERT_TRUE(p.gen.scope.has_value());
  EXPECT_EQ(p.gen.scope->str(), "auto:8");
  EXPECT_EQ(p.gen.cache_salt, "t");
}

TEST(Api, ParsesToolsToolChoiceAndFormats) {
  auto r = parse_request(Api::kChat, R"({
    "messages": [{"role": "user", "content": "go"},
                 {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "ls", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "a b"}],
    "tools": [{"type": "function", "function": {"name": "ls", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "ls"}},
    "parallel_tool_calls": false, "reasoning_format": "none",
    "chat_template_kwargs": {"enable_thinking": false},
    "logprobs": true, "top_logprobs": 3, "logit_bias": {"5": -100},
    "frequency_penalty": 0.5, "seed": 7})",
                         ApiOptions{1000, BillingHeader::kNormalize, {}});
  ASSERT_TRUE(std::holds_alternative<ParsedRequest>(r)) << std::get<ApiError>(r).message;
  const auto& p = std::get<ParsedRequest>(r);
  EXPECT_EQ(p.chat.tool_name, "ls");
  EXPECT_EQ(p.chat.parallel_tool_calls, false);
  EXPECT_EQ(p.chat.enable_thinking, false);
  EXPECT_EQ(p.chat.reasoning_format, "none");
  EXPECT_EQ(nlohmann::json::parse(p.chat.tools_json).size(), 1u);
  EXPECT_TRUE(p.gen.logprobs);
  EXPECT_EQ(p.gen.sampling.n_probs, 3);
  ASSERT_EQ(p.gen.sampling.logit_bias.size(), 1u);
  EXPECT_EQ(p.gen.sampling.logit_bias[0].first, 5);
  EXPECT_FLOAT_EQ(p.gen.sampling.frequency_penalty, 0.5f);
  EXPECT_EQ(p.gen.sampling.seed, 7u);
}

// Tools, schemas and template arguments reach the template and the grammar with their keys in
// the client's order, as llama-server passes them: sorted keys would render another prompt.
TEST(Api, KeepsTheClientsKeyOrder) {
  auto r = parse_request(Api::kChat, R"({
    "messages": [{"role": "user", "content": "go"}],
    "tools": [{"type": "function", "function": {"name": "ls", "parameters":
      {"type": "object", "properties": {"path": {"type": "string"}, "all": {"type": "boolean"}}}}}],
    "response_format": {"type": "json_schema", "json_schema": {"schema":
      {"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "string"}}}}},
    "chat_template_kwargs": {"opts": {"zeta": 1, "alpha": 2}}})",
                         ApiOptions{1000, BillingHeader::kNormalize, {}});
  ASSERT_TRUE(std::holds_alternative<ParsedRequest>(r)) << std::get<ApiError>(r).message;
  const auto& c = std::get<ParsedRequest>(r).chat;
  EXPECT_EQ(c.tools_json,
            R"([{"type":"function","function":{"name":"ls","parameters":{"type":"object",)"
            R"("properties":{"path":{"type":"string"},"all":{"type":"boolean"}}}}}])");
  EXPECT_EQ(c.json_schema,
            R"({"type":"object","properties":{"z":{"type":"string"},"a":{"type":"string"}}})");
  EXPECT_EQ(c.template_kwargs.at("opts"), R"({"zeta":1,"alpha":2})");
}

TEST(Api, BadToolsAndFormatsSayWhatIsWrong) {
  const std::string user = R"("messages": [{"role": "user", "content": "x"}])";
  auto err = [&](const std::string& extra) {
    return error_of(Api::kChat, "{" + user + "," + extra + "}");
  };
  EXPECT_NE(err(R"("tools": {"name": "x"})").find("'tools' must be an array"), std::string::npos);
  EXPECT_NE(err(R"("tools": [{"type": "function", "function": {"description": "d"}}])")
                .find("tools[0].function.name"),
            std::string::npos);
  EXPECT_NE(err(R"("tools": [{"type": "function", "function": {"name": "a", "parameters": 3}}])")
                .find("parameters"),
            std::string::npos);
  EXPECT_NE(err(R"("tools": [{"type": "function", "function": {"name": "a"}}],
                   "tool_choice": {"type": "function", "function": {"name": "b"}})")
                .find("'b', which is not among 'tools'"),
            std::string::npos);
  EXPECT_NE(err(R"("tool_choice": "always")").find("tool_choice"), std::string::npos);
  EXPECT_NE(err(R"("tool_choice": "required")").find("no 'tools'"), std::string::npos);
  EXPECT_NE(err(R"("response_format": {"type": "xml"})").find("response_format.type"),
            std::string::npos);
  EXPECT_NE(err(R"("response_format": {"type": "json_schema", "json_schema": {"schema": 5}})")
                .find("schema"),
            std::string::npos);
  EXPECT_NE(err(R"("logit_bias": {"abc": 1})").find("logit_bias"), std::string::npos);
  EXPECT_NE(err(R"("logit_bias": {"5000": 1})").find("not in [0, 1000)"), std::string::npos);
  EXPECT_NE(error_of(Api::kChat, R"({"messages": [{"role": "assistant", "tool_calls":
                [{"function": {"arguments": "{}"}}]}]})")
                .find("messages[0].tool_calls[0].function.name"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kChat, R"({"messages": [{"role": "user", "content":
                [{"type": "image_url", "image_url": {"url": "x"}}]}]})")
                .find("not supported"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kCompletions, R"({"prompt": "x", "json_schema": 7})").find("schema"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kCompletions, R"({"prompt": "x", "json_schema": {}, "grammar": "r"})")
                .find("cannot be combined"),
            std::string::npos);
}

TEST(Api, HugeNumbersAndBadTypesAreClientErrors) {
  // Found by fuzz_http_request: json's number overflow is not a parse_error.
  EXPECT_NE(error_of(Api::kCompletions, R"({"prompt":22222222E2222222222222})"), "");
  EXPECT_NE(
      error_of(Api::kChat, R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1e400})"),
      "");
  EXPECT_NE(error_of(Api::kCompletions, R"({"prompt":[1,2,1000]})").find("token ids"),
            std::string::npos);
  EXPECT_NE(error_of(Api::kLlamaCompletion, R"({"prompt":"x","n_predict":-2})").find("n_predict"),
            std::string::npos);
}

TEST(Api, ErrorBodiesSurviveInvalidUtf8) {
  const std::string bad =
      std::string(R"({"messages":[{"role":"x)") + "\xbb" + R"(","content":"y"}]})";
  auto r = parse_request(Api::kChat, bad, ApiOptions{1000, BillingHeader::kNormalize, {}});
  ASSERT_TRUE(std::holds_alternative<ApiError>(r));
  EXPECT_NO_THROW(error_json(Api::kChat, std::get<ApiError>(r))
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

TEST(Size, ParsesUnitsAndRejectsGarbage) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("40G"), 40ull << 30);
  EXPECT_EQ(parse_size("1.5MiB"), 3ull << 19);
  EXPECT_EQ(parse_size("512k"), 512ull << 10);
  for (const char* bad : {"", "G", "12X", "..", "3333333333333333333333333333333"}) {
    EXPECT_THROW(parse_size(bad), std::invalid_argument) << bad;
  }
  EXPECT_EQ(format_size(291ull << 20), "291.00 MiB");
}

// The limits (api.h Limits): each is refused with a message naming it, just past it, in every
// dialect that carries the field.
namespace {
std::string limited(Api ep, const std::string& body, Limits lim) {
  auto r = parse_request(ep, body, ApiOptions{1000, BillingHeader::kNormalize, lim});
  auto* e = std::get_if<ApiError>(&r);
  return e ? e->message : "";
}
std::string nest(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string msgs(int n) {
  std::string m = "[";
  for (int i = 0; i < n; ++i) m += std::string(i ? "," : "") + R"({"role":"user","content":"a"})";
  return m + "]";
}
}  // namespace

TEST(ApiLimits, JsonDepthIsCountedWhileParsing) {
  Limits lim;
  lim.json_depth = 8;
  const auto body = [](int d) {
    return R"({"messages":[{"role":"user","content":"a","x":)" + nest(d) + "}]}";
  };
  EXPECT_EQ(limited(Api::kChat, body(5), lim), "");  // 8 levels: object, array, object, 5
  EXPECT_NE(limited(Api::kChat, body(6), lim).find("more than 8 deep"), std::string::npos);
  // The default refuses what would overflow a stack, before anything recurses over it.
  EXPECT_NE(error_of(Api::kMessages, body(200000)).find("deep"), std::string::npos);
  EXPECT_NE(error_of(Api::kResponses, nest(300000)).find("deep"), std::string::npos);
}

TEST(ApiLimits, MessagesAndToolsAreCounted) {
  Limits lim;
  lim.messages = 3;
  lim.tools = 1;
  EXPECT_EQ(limited(Api::kChat, R"({"messages":)" + msgs(3) + "}", lim), "");
  EXPECT_NE(limited(Api::kChat, R"({"messages":)" + msgs(4) + "}", lim).find("--max-messages"),
            std::string::npos);
  const std::string tool = R"({"type":"function","function":{"name":"f","parameters":{}}})";
  EXPECT_EQ(limited(Api::kChat, R"({"messages":)" + msgs(1) + R"(,"tools":[)" + tool + "]}", lim),
            "");
  EXPECT_NE(limited(Api::kChat,
                    R"({"messages":)" + msgs(1) + R"(,"tools":[)" + tool + "," + tool + "]}", lim)
                .find("--max-tools"),
            std::string::npos);
  // Anthropic's messages count as translated.
  EXPECT_NE(limited(Api::kMessages, R"({"max_tokens":1,"messages":)" + msgs(4) + "}", lim)
                .find("--max-messages"),
            std::string::npos);
}

TEST(ApiLimits, GrammarsAreMeasuredAndTheirNestingBounded) {
  Limits lim;
  lim.grammar_bytes = 64;
  EXPECT_EQ(limited(Api::kCompletions, R"({"prompt":"a","grammar":"root ::= \"a\""})", lim), "");
  EXPECT_NE(
      limited(Api::kCompletions,
              R"({"prompt":"a","grammar":"root ::= \")" + std::string(64, 'a') + R"(\""})", lim)
          .find("--max-grammar-bytes"),
      std::string::npos);
  const auto nested = [](int d) {
    return "root ::= " + std::string(d, '(') + "\"a\"" + std::string(d, ')');
  };
  EXPECT_NO_THROW(check_grammar_size(nested(kMaxGrammarDepth), 1 << 20));
  EXPECT_THROW(check_grammar_size(nested(kMaxGrammarDepth + 1), 1 << 20), std::invalid_argument);
  // Parentheses in literals, classes and comments are not groups.
  const std::string quoted = "root ::= \"" + std::string(1000, '(') + "\" [(\\]((] # (((((\n";
  EXPECT_NO_THROW(check_grammar_size(quoted, 1 << 20));
  const std::string bomb = error_of(Api::kChat, R"({"messages":)" + msgs(1) + R"(,"grammar":)" +
                                                    nlohmann::json(nested(100000)).dump() + "}");
  EXPECT_NE(bomb.find("deep"), std::string::npos) << bomb;
}

TEST(ApiLimits, StopStringsAndLogitBiasAreBounded) {
  EXPECT_NE(error_of(Api::kChat, R"({"messages":)" + msgs(1) + R"(,"stop":")" +
                                     std::string(kMaxStopBytes + 1, 's') + "\"}")
                .find("at most"),
            std::string::npos);
  EXPECT_EQ(error_of(Api::kChat, R"({"messages":)" + msgs(1) + R"(,"stop":")" +
                                     std::string(kMaxStopBytes, 's') + "\"}"),
            "");
  std::string lb = "[";
  for (int i = 0; i < 1001; ++i) lb += std::string(i ? "," : "") + "[1,1]";
  EXPECT_NE(error_of(Api::kLlamaCompletion, R"({"prompt":"a","logit_bias":)" + lb + "]}")
                .find("more entries than the vocabulary"),
            std::string::npos);
}
