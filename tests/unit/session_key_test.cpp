// Which agent session a request belongs to (server/session_key.h): one test per source, the
// order between them, and values that must not become keys.
#include "server/session_key.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <string>

using namespace kvstash::server;
using json = nlohmann::ordered_json;

namespace {

SessionKey key(const json& body, SessionHeaders h = {}) { return session_key(h, body); }

// A request the real CLI sent (tests/fixtures/requests): its headers' session fields and body.
struct Capture {
  SessionHeaders headers;
  json body;
};
Capture capture(const std::string& name) {
  std::ifstream in(std::string(KVSTASH_SOURCE_DIR "/tests/fixtures/requests/") + name);
  const json c = json::parse(in);
  Capture out;
  for (const auto& [h, v] : c["headers"].items()) {
    std::string lower;
    for (char ch : h) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "x-claude-code-session-id") out.headers.claude_code_session_id = v;
    if (lower == "session-id") out.headers.session_id = v;
  }
  out.body = c["body"];
  return out;
}

}  // namespace

TEST(SessionKey, ClaudeCodeHeader) {
  const SessionKey k = key(json::object(), {"3f2a-cc", ""});
  EXPECT_EQ(k.key, "3f2a-cc");
  EXPECT_EQ(k.source, SessionSource::kClaudeCodeHeader);
  EXPECT_STREQ(session_source_name(k.source), "x-claude-code-session-id");
}

TEST(SessionKey, CodexHeader) {
  const SessionKey k = key(json::object(), {"", "019a-codex"});
  EXPECT_EQ(k.key, "019a-codex");
  EXPECT_EQ(k.source, SessionSource::kCodexHeader);
  EXPECT_STREQ(session_source_name(k.source), "session-id");
}

TEST(SessionKey, AnthropicMetadataUserId) {
  const SessionKey k = key({{"metadata", {{"user_id", "user_abc_session_1"}}}});
  EXPECT_EQ(k.key, "user_abc_session_1");
  EXPECT_EQ(k.source, SessionSource::kMetadataUserId);
  EXPECT_STREQ(session_source_name(k.source), "metadata.user_id");
}

TEST(SessionKey, ResponsesPromptCacheKey) {
  const SessionKey k = key({{"prompt_cache_key", "pck-7"}});
  EXPECT_EQ(k.key, "pck-7");
  EXPECT_EQ(k.source, SessionSource::kPromptCacheKey);
  EXPECT_STREQ(session_source_name(k.source), "prompt_cache_key");
}

TEST(SessionKey, User) {
  const SessionKey k = key({{"user", "alice"}});
  EXPECT_EQ(k.key, "alice");
  EXPECT_EQ(k.source, SessionSource::kUser);
  EXPECT_STREQ(session_source_name(k.source), "user");
}

TEST(SessionKey, SafetyIdentifier) {
  const SessionKey k = key({{"safety_identifier", "sid-9"}});
  EXPECT_EQ(k.key, "sid-9");
  EXPECT_EQ(k.source, SessionSource::kSafetyIdentifier);
  EXPECT_STREQ(session_source_name(k.source), "safety_identifier");
}

TEST(SessionKey, NoSourceIsAnEmptyKey) {
  for (const json& body : {json::object(), json::array({1, 2}), json("text"), json(nullptr),
                           json{{"messages", json::array()}}}) {
    const SessionKey k = key(body);
    EXPECT_EQ(k.key, "") << body.dump();
    EXPECT_EQ(k.source, SessionSource::kNone) << body.dump();
    EXPECT_STREQ(session_source_name(k.source), "none");
  }
}

TEST(SessionKey, SourcesAreAskedInOrder) {
  json body = {{"metadata", {{"user_id", "m"}}},
               {"prompt_cache_key", "p"},
               {"user", "u"},
               {"safety_identifier", "s"}};
  EXPECT_EQ(key(body, {"cc", "codex"}).source, SessionSource::kClaudeCodeHeader);
  EXPECT_EQ(key(body, {"", "codex"}).source, SessionSource::kCodexHeader);
  EXPECT_EQ(key(body).key, "m");
  body.erase("metadata");
  EXPECT_EQ(key(body).key, "p");
  body.erase("prompt_cache_key");
  EXPECT_EQ(key(body).key, "u");
  body.erase("user");
  EXPECT_EQ(key(body).key, "s");
}

TEST(SessionKey, AnUnusableValueCountsAsAbsent) {
  const json body = {{"user", "fallback"}};
  for (const std::string& bad :
       {std::string(129, 'a'), std::string("has space"), std::string("quo\"te"),
        std::string("it's"), std::string("tab\there"), std::string("new\nline"),
        std::string("nul\0byte", 8), std::string("caf\xc3\xa9"), std::string("\x7f"),
        std::string("\x1b[31mred")}) {
    const SessionKey k = key(body, {bad, ""});
    EXPECT_EQ(k.key, "fallback") << bad;
    EXPECT_EQ(k.source, SessionSource::kUser) << bad;
    EXPECT_TRUE(key({{"user", bad}}).key.empty()) << bad;
  }
  EXPECT_EQ(key({}, {std::string(128, 'a'), ""}).key.size(), 128u) << "128 bytes is the limit";
}

TEST(SessionKey, MembersOfTheWrongTypeAreAbsent) {
  const json body = {{"metadata", "user_id"},
                     {"prompt_cache_key", 42},
                     {"user", json{{"id", "x"}}},
                     {"safety_identifier", json::array({"y"})}};
  EXPECT_EQ(key(body).source, SessionSource::kNone);
  EXPECT_EQ(key({{"metadata", {{"user_id", 7}}}, {"user", "u"}}).key, "u");
}

TEST(SessionKey, TheKeptFieldsGiveTheSameKey) {
  const json body = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                     {"metadata", {{"user_id", "m"}, {"other", 1}}},
                     {"prompt_cache_key", 3},
                     {"user", "u"}};
  const json kept = session_fields(body);
  EXPECT_FALSE(kept.contains("messages"));
  EXPECT_EQ(key(kept).key, key(body).key);
  EXPECT_EQ(key(kept).source, key(body).source);
  EXPECT_EQ(session_fields(json::array()), json::object());
}

// Claude Code sends its session in a header and again inside metadata.user_id, as a JSON string
// (quotes: not a usable key); Codex in a header and again as prompt_cache_key.
TEST(SessionKey, TheRealClientsRequests) {
  const Capture cc = capture("claude-code-2.1.328-1.json");
  EXPECT_EQ(session_key(cc.headers, cc.body).key, "005120ee-b057-4c0d-a011-b9d322daf052");
  EXPECT_EQ(session_key(cc.headers, cc.body).source, SessionSource::kClaudeCodeHeader);
  EXPECT_EQ(session_key({}, cc.body).source, SessionSource::kNone)
      << "its metadata.user_id is JSON text, quotes and all";

  const Capture codex = capture("codex-0.169.0-1.json");
  EXPECT_EQ(session_key(codex.headers, codex.body).key, "01a25134-04b5-7203-896c-25494a5e9bb9");
  EXPECT_EQ(session_key(codex.headers, codex.body).source, SessionSource::kCodexHeader);
  const SessionKey body_only = session_key({}, codex.body);
  EXPECT_EQ(body_only.key, "01a25134-04b5-7203-896c-25494a5e9bb9");
  EXPECT_EQ(body_only.source, SessionSource::kPromptCacheKey);
}
