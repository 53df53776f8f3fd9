#include "cache/slot_choice.h"

#include <algorithm>

namespace kvstash::cache {

std::optional<size_t> choose_slot(std::span<const SlotState> slots) {
  std::optional<size_t> best;
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotState& s = slots[i];
    if (!s.idle) continue;
    if (!best || s.shared_prefix > slots[*best].shared_prefix ||
        (s.shared_prefix == slots[*best].shared_prefix && s.last_used < slots[*best].last_used)) {
      best = i;
    }
  }
  return best;
}

namespace {

// An idle slot other than `best` whose state is worth less than best's: empty first, then one
// that shares nothing with the prompt and was used before best was (the least recently used).
std::optional<size_t> fork_target(std::span<const SlotState> slots, size_t best) {
  std::optional<size_t> out;
  auto worth = [](const SlotState& s) { return std::pair{s.live_tokens > 0, s.last_used}; };
  for (size_t i = 0; i < slots.size(); ++i) {
    const SlotState& s = slots[i];
    if (i == best || !s.idle) continue;
    const bool cheaper =
        s.live_tokens == 0 || (s.shared_prefix == 0 && s.last_used < slots[best].last_used);
    if (cheaper && (!out || worth(s) < worth(slots[*out]))) out = i;
  }
  return out;
}

}  // namespace

std::optional<SlotChoice> choose_slot_or_fork(std::span<const SlotState> slots,
                                              const ForkRule& rule) {
  const std::optional<size_t> best = choose_slot(slots);
  if (!best) return std::nullopt;
  const SlotState& b = slots[*best];
  const bool cuts = b.shared_prefix < b.live_tokens;
  const bool worth = b.shared_prefix > 0 && b.shared_prefix >= rule.min_tokens;
  if (!rule.can_fork || !cuts || !worth) return SlotChoice{*best};
  const std::optional<size_t> to = fork_target(slots, *best);
  if (!to) return SlotChoice{*best};
  return SlotChoice{*to, *best, b.shared_prefix};
}

size_t shared_prefix(std::span<const Token> live, std::span<const Token> prompt) {
  return static_cast<size_t>(
      std::mismatch(live.begin(), live.end(), prompt.begin(), prompt.end()).first - live.begin());
}

size_t reusable_prefix(std::span<const Token> live, const std::string& live_salt,
                       std::span<const Token> prompt, const std::string& salt) {
  return live_salt == salt ? shared_prefix(live, prompt) : 0;
}

}  // namespace kvstash::cache
