// The scoped prefix policy (SPEC section 5): which prefix of a prompt the cache keeps.
//
// Agent prompts are a large stable context followed by a tail that changes on every request. With
// `full`, the whole prompt is the cache scope and a changed tail can cost a hit. A scope caches a
// shorter, stable prefix instead:
//   off       no restore, no save
//   full      the checkpoints of SPEC sections 3-4 (default)
//   N         exactly the first N prompt tokens, aligned down to a chat boundary
//   auto[:W]  the longest common token prefix with any of the last W requests (W defaults to 30),
//             aligned down to a chat boundary (a message start)
// The server prefills exactly to the chosen boundary, snapshots it (reason=scope), then continues.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/key.h"

namespace kvstash::cache {

struct Scope {
  enum class Kind { kOff, kFull, kFixed, kAuto } kind = Kind::kFull;
  uint32_t n = 0;  // kFixed: tokens; kAuto: window
  std::string str() const;
};

constexpr uint32_t kDefaultAutoWindow = 30;

// Parses off | full | auto | auto:N | N. On failure returns nullopt and says why in *error.
std::optional<Scope> parse_scope(const std::string& text, std::string* error);

struct ScopeChoice {
  uint32_t boundary = 0;  // 0: nothing to snapshot for this request
  std::string log;        // one line: the candidates and the choice (auto and fixed modes)
};

// `history` holds the recent prompts of this request's cache_salt (PromptHistory::recent), most
// recent last; `boundaries` are this prompt's chat boundaries (message starts), sorted.
ScopeChoice choose_scope_boundary(const Scope& scope, std::span<const Token> prompt,
                                  const std::vector<uint32_t>& boundaries,
                                  const std::vector<std::vector<Token>>& history,
                                  uint32_t min_tokens);

// The recent prompts the auto scope compares a prompt with, kept per cache_salt: a request's
// candidates are its own tenant's prompts only, so no tenant can learn from its scope boundary
// (the stores it records, the hits it gets) whether another tenant sent a prompt. Each salt
// keeps its own last `per_salt` prompts, so no tenant's traffic pushes another's out; beyond
// `max_salts` salts, the one seen least recently is forgotten whole.
class PromptHistory {
 public:
  PromptHistory(size_t per_salt, size_t max_salts);
  void add(const std::string& salt, std::vector<Token> prompt);
  // The salt's recent prompts, most recent last.
  std::vector<std::vector<Token>> recent(const std::string& salt) const;
  void clear() { salts_.clear(); }

 private:
  struct Prompts {
    std::deque<std::vector<Token>> prompts;  // most recent last
    uint64_t seen = 0;                       // when add() last saw the salt
  };
  size_t per_salt_, max_salts_;
  uint64_t clock_ = 0;
  std::map<std::string, Prompts> salts_;
};

}  // namespace kvstash::cache
