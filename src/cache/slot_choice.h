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
};

// The index of the slot to use, or nullopt when none is idle.
std::optional<size_t> choose_slot(std::span<const SlotState> slots);

// The length of the longest common prefix of a slot's live tokens and a prompt.
size_t shared_prefix(std::span<const Token> live, std::span<const Token> prompt);

// What a request of cache_salt `salt` shares with a slot whose live tokens `live` belong to
// `live_salt`: the shared prefix when the salts are equal, else 0.
size_t reusable_prefix(std::span<const Token> live, const std::string& live_salt,
                       std::span<const Token> prompt, const std::string& salt);

}  // namespace kvstash::cache
