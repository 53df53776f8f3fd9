// Which agent session a request belongs to, from its headers and body (pure: the request in, a
// key and its source out). The key is logged with the request and shown on the status page, so an
// operator can follow one agent's turns across a fleet; it changes nothing about how a request is
// served.
//
// Rules:
//   1. The first source that holds a usable key wins, in this order: header
//      X-Claude-Code-Session-Id (Claude Code), header session-id (Codex CLI), body
//      metadata.user_id (Anthropic Messages), body prompt_cache_key (OpenAI Responses, Codex),
//      body user, body safety_identifier.
//   2. A usable key is a JSON string (body) or header value of 1 to kMaxSessionKeyBytes bytes of
//      printable ASCII other than space, '"' and '\''. Any other value counts as absent, so the
//      next source is asked: a hostile value never reaches the log or the status page.
//   3. No source: an empty key, source kNone.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace kvstash::server {

inline constexpr size_t kMaxSessionKeyBytes = 128;

enum class SessionSource {
  kNone,
  kClaudeCodeHeader,  // X-Claude-Code-Session-Id
  kCodexHeader,       // session-id
  kMetadataUserId,    // body metadata.user_id
  kPromptCacheKey,    // body prompt_cache_key
  kUser,              // body user
  kSafetyIdentifier,  // body safety_identifier
};
// "none", "x-claude-code-session-id", "session-id", "metadata.user_id", "prompt_cache_key",
// "user", "safety_identifier": where the key came from, as the client sent it.
const char* session_source_name(SessionSource s);

struct SessionHeaders {
  std::string claude_code_session_id;  // X-Claude-Code-Session-Id ("" when absent)
  std::string session_id;              // session-id
};

struct SessionKey {
  std::string key;  // "" when no source holds a usable key
  SessionSource source = SessionSource::kNone;
};

// `body` is the request's JSON as parsed (any value: a non-object has no body sources).
SessionKey session_key(const SessionHeaders& headers, const nlohmann::ordered_json& body);

// The members of `body` that session_key reads (metadata.user_id, prompt_cache_key, user,
// safety_identifier), so a parser can keep them without keeping the body:
// session_key(h, session_fields(body)) == session_key(h, body).
nlohmann::ordered_json session_fields(const nlohmann::ordered_json& body);

// Whether `v` is usable as a key (rule 2).
bool usable_session_key(const std::string& v);

}  // namespace kvstash::server
