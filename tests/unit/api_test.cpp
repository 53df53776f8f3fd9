// Request validation without a server: what the fuzzer found stays fixed.
#include "server/api.h"

#include <gtest/gtest.h>

#include "util/size.h"

using namespace kvstash;
using namespace kvstash::server;

namespace {
std::string error_of(Endpoint ep, const std::string& body) {
  auto r = parse_request(ep, body, 1000);
  auto* e = std::get_if<ApiError>(&r);
  return e ? e->message : "";
}
}  // namespace

TEST(Api, ParsesAFullChatRequest) {
  auto r = parse_request(Endpoint::kChat, R"({
    "messages": [{"role": "developer", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                 {"role": "assistant", "content": null}],
    "max_tokens": 5, "temperature": 0, "stop": "END", "stream": true,
    "prefix_cache": {"scope": "auto", "window": 8}, "cache_salt": "t"})",
                         1000);
  ASSERT_TRUE(std::holds_alternative<ParsedRequest>(r));
  const auto& p = std::get<ParsedRequest>(r);
  ASSERT_EQ(p.messages.size(), 3u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_EQ(p.messages[1].content, "hi");
  EXPECT_EQ(p.gen.max_tokens, 5);
  EXPECT_EQ(p.gen.stop, std::vector<std::string>{"END"});
  ASSERT_TRUE(p.gen.scope.has_value());
  EXPECT_EQ(p.gen.scope->str(), "auto:8");
  EXPECT_EQ(p.gen.cache_salt, "t");
}

TEST(Api, HugeNumbersAndBadTypesAreClientErrors) {
  // Found by fuzz_http_request: json's number overflow is not a parse_error.
  EXPECT_NE(error_of(Endpoint::kCompletions, R"({"prompt":22222222E2222222222222})"), "");
  EXPECT_NE(error_of(Endpoint::kChat,
                     R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1e400})"),
            "");
  EXPECT_NE(error_of(Endpoint::kCompletions, R"({"prompt":[1,2,1000]})").find("token ids"),
            std::string::npos);
  EXPECT_NE(
      error_of(Endpoint::kLlamaCompletion, R"({"prompt":"x","n_predict":-2})").find("n_predict"),
      std::string::npos);
}

TEST(Api, ErrorBodiesSurviveInvalidUtf8) {
  const std::string bad =
      std::string(R"({"messages":[{"role":"x)") + "\xbb" + R"(","content":"y"}]})";
  auto r = parse_request(Endpoint::kChat, bad, 1000);
  ASSERT_TRUE(std::holds_alternative<ApiError>(r));
  EXPECT_NO_THROW(error_json(std::get<ApiError>(r))
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
