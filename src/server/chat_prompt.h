// Chat prompts and their boundaries.
//
// A message start is a position every later prompt of the same conversation shares, so it is
// where the engine breaks prefill batches (bit-exact resume) and where the cache may checkpoint.
// Boundaries are found without knowing the template's syntax: the conversation is rendered up to
// each message, and the token length of that rendering is a boundary wherever it is a token prefix
// of the full prompt.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/cached_session.h"
#include "engine/model.h"

namespace kvstash::server {

struct ChatMessage {
  std::string role, content;
};

struct ChatPrompt {
  std::vector<engine::Token> tokens;
  engine::PromptInfo info;  // boundaries and the anchor before the last user turn
};

ChatPrompt render_chat(const engine::Model& model, const std::vector<ChatMessage>& messages);

}  // namespace kvstash::server
