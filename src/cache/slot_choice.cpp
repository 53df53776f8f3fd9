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

size_t shared_prefix(std::span<const Token> live, std::span<const Token> prompt) {
  return static_cast<size_t>(
      std::mismatch(live.begin(), live.end(), prompt.begin(), prompt.end()).first - live.begin());
}

size_t reusable_prefix(std::span<const Token> live, const std::string& live_salt,
                       std::span<const Token> prompt, const std::string& salt) {
  return live_salt == salt ? shared_prefix(live, prompt) : 0;
}

}  // namespace kvstash::cache
