// Which slot serves a request: one rule for the server's scheduler (server/slot_pool.cpp) and for
// `kvstash replay` (replay/replay.cpp), as a pure function of plain data.
//
// A slot's live state is the cheapest state there is: the prefix it shares with a prompt needs
// no restore at all. So a request goes to the idle slot whose live tokens share the longest
// prefix with its prompt; among equals (none shares anything, say) to the least recently used,
// whose live state is the least likely to be wanted again; among equals again, the first slot.
// Busy slots are never chosen: the caller waits for one to finish.
//
// A live state counts as shared only with requests of its own cache_salt: to any other tenant a
// slot holding it is just an occupied slot, shared prefix 0, so which slot serves a request (and
// what that slot's request then reuses) never depends on another tenant's prompts. The request
// flow does not reuse another salt's live state either (request_flow.cpp).
//
// Forks (choose_slot_or_fork): the best slot's live state may only partly be a prefix of the
// prompt (a second session sharing the first one's system prompt). Serving the request there cuts
// that live state, whose owner would then restore its tail from the cache on its next turn. So
// when another idle slot holds a state worth less -- none at all, or one that shares nothing with
// the prompt and was used longer ago than the best slot's -- the request goes there instead, and
// the shared prefix is copied (forked) from the best slot, which keeps its live state. Among such
// slots an empty one goes first, then the least recently used. A state used more recently than
// the best slot's is worth more than the best slot's tail: then the best slot is cut, as without
// forks. A continuation (the whole live state is a prefix of the prompt) takes its slot as always,
// and so does a shared prefix shorter than ForkRule::min_tokens (not worth a copy). Since another
// tenant's live state shares 0 tokens (reusable_prefix), nothing is ever forked across salts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/key.h"

namespace kvstash::cache {

struct SlotState {
  bool idle = true;
  size_t shared_prefix = 0;  // tokens the live state shares with the prompt (reusable_prefix())
  uint64_t last_used = 0;    // any increasing clock; smaller: used longer ago
  // The live tokens worth keeping: those prefill computed (0: an empty slot). Decoded tokens are
  // never reused (request_flow.h), so a prompt that drops them continues the live state.
  size_t live_tokens = 0;
};

// When a request may fork: the engine can copy a sequence's prefix into another (attention KV:
// engines that resume anywhere) and the prefix is at least min_tokens long.
struct ForkRule {
  bool can_fork = false;
  size_t min_tokens = 1;
};

// Where a request runs: `slot`, after copying the first fork_tokens tokens of slot *fork_from's
// live state into it (no fork_from: with what `slot` holds).
struct SlotChoice {
  size_t slot = 0;
  std::optional<size_t> fork_from;
  size_t fork_tokens = 0;
};

// The index of the slot to use, or nullopt when none is idle.
std::optional<size_t> choose_slot(std::span<const SlotState> slots);

// choose_slot, then a fork out of the chosen slot where the rule above says so; nullopt when no
// slot is idle.
std::optional<SlotChoice> choose_slot_or_fork(std::span<const SlotState> slots,
                                              const ForkRule& rule);

// The length of the longest common prefix of a slot's live tokens and a prompt.
size_t shared_prefix(std::span<const Token> live, std::span<const Token> prompt);

// What a request of cache_salt `salt` shares with a slot whose live tokens `live` belong to
// `live_salt`: the shared prefix when the salts are equal, else 0.
size_t reusable_prefix(std::span<const Token> live, const std::string& live_salt,
                       std::span<const Token> prompt, const std::string& salt);

}  // namespace kvstash::cache
