#include "server/session_key.h"

#include <algorithm>

namespace kvstash::server {

namespace {

using json = nlohmann::ordered_json;

// body[a][b]... as a string, or "" when a member is missing or not of its type.
std::string string_at(const json& body, std::initializer_list<const char*> path) {
  const json* at = &body;
  for (const char* name : path) {
    if (!at->is_object()) return "";
    const auto it = at->find(name);
    if (it == at->end()) return "";
    at = &*it;
  }
  return at->is_string() ? at->get<std::string>() : "";
}

}  // namespace

const char* session_source_name(SessionSource s) {
  switch (s) {
    case SessionSource::kNone:
      return "none";
    case SessionSource::kClaudeCodeHeader:
      return "x-claude-code-session-id";
    case SessionSource::kCodexHeader:
      return "session-id";
    case SessionSource::kMetadataUserId:
      return "metadata.user_id";
    case SessionSource::kPromptCacheKey:
      return "prompt_cache_key";
    case SessionSource::kUser:
      return "user";
    case SessionSource::kSafetyIdentifier:
      return "safety_identifier";
  }
  return "none";
}

bool usable_session_key(const std::string& v) {
  if (v.empty() || v.size() > kMaxSessionKeyBytes) return false;
  return std::all_of(v.begin(), v.end(),
                     [](unsigned char c) { return c > ' ' && c < 0x7f && c != '"' && c != '\''; });
}

json session_fields(const json& body) {
  json out = json::object();
  if (!body.is_object()) return out;
  if (const std::string id = string_at(body, {"metadata", "user_id"}); !id.empty()) {
    out["metadata"] = {{"user_id", id}};
  }
  for (const char* name : {"prompt_cache_key", "user", "safety_identifier"}) {
    if (const auto it = body.find(name); it != body.end() && it->is_string()) out[name] = *it;
  }
  return out;
}

SessionKey session_key(const SessionHeaders& headers, const json& body) {
  const std::pair<SessionSource, std::string> sources[] = {
      {SessionSource::kClaudeCodeHeader, headers.claude_code_session_id},
      {SessionSource::kCodexHeader, headers.session_id},
      {SessionSource::kMetadataUserId, string_at(body, {"metadata", "user_id"})},
      {SessionSource::kPromptCacheKey, string_at(body, {"prompt_cache_key"})},
      {SessionSource::kUser, string_at(body, {"user"})},
      {SessionSource::kSafetyIdentifier, string_at(body, {"safety_identifier"})}};
  for (const auto& [source, value] : sources) {
    if (usable_session_key(value)) return {value, source};
  }
  return {};
}

}  // namespace kvstash::server
