// Request bodies of the HTTP API, parsed and validated into plain structs.
//
// Every check a client can fail is here, with a message that says what is wrong and where, so
// the HTTP layer only maps ApiError to a 4xx response. Unknown fields are ignored (clients send
// many); known fields of the wrong type or out of range are errors.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cache/scope_policy.h"
#include "engine/chat.h"
#include "engine/sampler.h"

namespace kvstash::server {

struct ApiError {
  int status = 400;
  std::string message;
};

enum class Endpoint { kChat, kCompletions, kLlamaCompletion };

struct GenerationParams {
  int max_tokens = -1;  // -1: the server's --n-predict (default: until EOS or the context's end)
  engine::SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool return_progress = false;
  std::optional<cache::Scope> scope;  // per-request override of --cache-scope
  std::string cache_salt;             // the tenant's own cache key space ("" for none)
  bool logprobs = false;              // report log probabilities (top: sampling.n_probs)
  std::string json_schema;            // completions: constrain the text to this schema (JSON)
};

struct ParsedRequest {
  Endpoint endpoint;
  engine::ChatInput chat;              // kChat: messages, tools, formats, as JSON text
  std::string prompt_text;             // completions with a text prompt
  std::vector<int32_t> prompt_tokens;  // completions with token ids
  GenerationParams gen;
};

std::variant<ParsedRequest, ApiError> parse_request(Endpoint ep, const std::string& body,
                                                    int n_vocab);

// The JSON error body (OpenAI's shape).
nlohmann::json error_json(const ApiError& e);

}  // namespace kvstash::server
