#include "server/chat_prompt.h"

#include <xxhash.h>

#include <nlohmann/json.hpp>

namespace kvstash::server {

ChatPrompt render_chat(const engine::Model& model, const engine::ChatTemplates& templates,
                       const engine::ChatInput& input, const engine::RenderBudget& budget) {
  ChatPrompt p;
  p.render = templates.render(input, true, budget);
  p.info.complete = p.render.complete;
  const std::string& full = p.render.prompt;
  p.tokens = model.tokenize(full, true, true);

  // Tokenize the rendering piece by piece from the last verified boundary; where templates start
  // messages with special tokens (BPE never merges across them) a piece's tokens continue the
  // full tokenization, and its end is a boundary. Verified, never assumed: a prefix the template
  // renders differently, or whose tokens merge across the cut, is skipped. A prefix verified by
  // an earlier request (same rendering) is checked by the hash of its tokens instead: an agent's
  // next turn tokenizes only its new messages twice, not the whole conversation.
  const auto tokens_hash = [&](size_t n) {
    return XXH3_64bits(p.tokens.data(), n * sizeof(engine::Token));
  };
  size_t prev_chars = 0, prev_tokens = 0;
  for (size_t i = 0; i < p.render.prefix_ends.size(); ++i) {
    const size_t end = p.render.prefix_ends[i];  // 0 when not a prefix of the full rendering
    if (end <= prev_chars || end >= full.size()) continue;
    const auto known = i < p.render.prefix_tokens.size() ? p.render.prefix_tokens[i]
                                                         : engine::ChatRender::PrefixTokens{};
    if (known.count > prev_tokens && known.count < p.tokens.size() &&
        tokens_hash(known.count) == known.hash) {
      prev_tokens = known.count;
    } else {
      const auto piece =
          model.tokenize(full.substr(prev_chars, end - prev_chars), prev_chars == 0, true);
      if (prev_tokens + piece.size() >= p.tokens.size() ||
          !std::equal(piece.begin(), piece.end(), p.tokens.begin() + prev_tokens)) {
        continue;
      }
      prev_tokens += piece.size();
      if (i < p.render.prefix_keys.size()) {
        templates.remember_tokens(p.render.prefix_keys[i],
                                  {static_cast<uint32_t>(prev_tokens), tokens_hash(prev_tokens)});
      }
    }
    prev_chars = end;
    const auto b = static_cast<uint32_t>(prev_tokens);
    if (!p.info.boundaries.empty() && p.info.boundaries.back() == b) continue;
    p.info.boundaries.push_back(b);
    // b is where message i+1 starts: before a user turn, it is the cold anchor candidate.
    const auto& roles = p.render.roles;
    if (i + 1 < roles.size() && roles[i + 1] == "user") p.info.anchor = b;
  }
  return p;
}

ChatPrompt render_chat(const engine::Model& model, const engine::ChatTemplates& templates,
                       const std::vector<ChatMessage>& messages) {
  nlohmann::json m = nlohmann::json::array();
  for (const auto& x : messages) m.push_back({{"role", x.role}, {"content", x.content}});
  engine::ChatInput in;
  in.messages_json = m.dump();
  return render_chat(model, templates, in);
}

}  // namespace kvstash::server
