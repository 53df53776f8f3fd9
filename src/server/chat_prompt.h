// Chat prompts and their boundaries.
//
// The prompt is the model's Jinja template applied to the request (engine/chat.h), tokenized as
// llama-server tokenizes it. A message start is a position every later prompt of the same
// conversation shares, so it is where the engine breaks prefill batches (bit-exact resume) and
// where the cache may checkpoint. Boundaries are found without knowing the template's syntax:
// the conversation is rendered up to each message, and the token length of that rendering is a
// boundary wherever its tokens are a prefix of the full prompt's (where the template renders a
// last message differently, the boundary is just after the next message's header:
// engine::ChatRender::prefix_ends). Each boundary depends only on
// the messages before it, so every turn of a conversation finds the same ones.
#pragma once

#include <string>
#include <vector>

#include "engine/cached_session.h"
#include "engine/chat.h"
#include "engine/model.h"

namespace kvstash::server {

struct ChatMessage {
  std::string role, content;
};

struct ChatPrompt {
  std::vector<engine::Token> tokens;
  engine::PromptInfo info;  // boundaries and the anchor before the last user turn
  engine::ChatRender render;
};

// Throws engine::ChatError for what the request got wrong, engine::ChatCancelled when the
// budget's client went away.
ChatPrompt render_chat(const engine::Model& model, const engine::ChatTemplates& templates,
                       const engine::ChatInput& input, const engine::RenderBudget& budget = {});
// Plain role/content conversations (the CLI, the bench's token traces, tests).
ChatPrompt render_chat(const engine::Model& model, const engine::ChatTemplates& templates,
                       const std::vector<ChatMessage>& messages);

}  // namespace kvstash::server
