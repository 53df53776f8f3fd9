#include "server/chat_prompt.h"

#include <algorithm>
#include <stdexcept>

namespace kvstash::server {

namespace {
std::vector<std::pair<std::string, std::string>> pairs(const std::vector<ChatMessage>& m,
                                                       size_t n) {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < n; ++i) out.push_back({m[i].role, m[i].content});
  return out;
}
}  // namespace

ChatPrompt render_chat(const engine::Model& model, const std::vector<ChatMessage>& messages) {
  if (messages.empty()) throw std::invalid_argument("a chat needs at least one message");
  ChatPrompt p;
  const std::string full = model.apply_chat_template(pairs(messages, messages.size()), true);
  p.tokens = model.tokenize(full);

  // Tokenize the rendering message by message; where templates start messages with special
  // tokens (BPE never merges across them) the pieces add up to the full tokenization, and each
  // piece's end is a boundary. Verified against the full tokenization, never assumed.
  std::vector<engine::Token> acc;
  std::string prev;
  std::vector<uint32_t> ends;
  bool ok = true;
  // Pieces: message 1, ..., message n, then the generation prompt ("<|im_start|>assistant\n").
  for (size_t i = 1; i <= messages.size() + 1 && ok; ++i) {
    const std::string text =
        i > messages.size() ? full : model.apply_chat_template(pairs(messages, i), false);
    if (text.size() < prev.size() || text.compare(0, prev.size(), prev) != 0) {
      ok = false;
      break;
    }
    const auto piece = model.tokenize(text.substr(prev.size()), prev.empty(), true);
    acc.insert(acc.end(), piece.begin(), piece.end());
    ends.push_back(static_cast<uint32_t>(acc.size()));
    prev = text;
  }
  ok = ok && acc == p.tokens;
  if (!ok) return p;  // no boundaries: the cache still works at chunk granularity
  ends.pop_back();    // the end of the prompt is not a message start
  for (size_t i = 0; i < ends.size(); ++i) {
    if (ends[i] == 0 || ends[i] >= p.tokens.size()) continue;
    if (!p.info.boundaries.empty() && p.info.boundaries.back() == ends[i]) continue;
    p.info.boundaries.push_back(ends[i]);
    // ends[i] is where message i+1 starts (or, past the last message, the generation prompt).
    if (i + 1 < messages.size() && messages[i + 1].role == "user") p.info.anchor = ends[i];
  }
  return p;
}

}  // namespace kvstash::server
