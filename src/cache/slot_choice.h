// Which slot serves a request: one rule for the server's scheduler (server/slot_pool.cpp) and for
// `kvstash replay` (replay/replay.cpp), as a pure function of plain data.
//
// A slot's live state is the cheapest state there is: the prefix it shares with a prompt needs
// no restore at all. So a request goes to the idle slot whose live tokens share the longest
// prefix with its prompt; among equals (none shares anything, say) to the least recently used,
// whose live state is the least likely to be wanted again; among equals again, the first slot.
// Busy slots are never chosen: the caller waits for one to finish.
//
// The live state is compared by tokens only: a slot whose live state belongs to another cache
// salt is chosen like any other (the request flow then does not reuse it: request_flow.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/key.h"

namespace kvstash::cache {

struct SlotState {
  bool idle = true;
  size_t shared_prefix = 0;  // tokens the live state shares with the prompt (shared_prefix())
  uint64_t last_used = 0;    // any increasing clock; smaller: used longer ago
};

// The index of the slot to use, or nullopt when none is idle.
std::optional<size_t> choose_slot(std::span<const SlotState> slots);

// The length of the longest common prefix of a slot's live tokens and a prompt.
size_t shared_prefix(std::span<const Token> live, std::span<const Token> prompt);

}  // namespace kvstash::cache
