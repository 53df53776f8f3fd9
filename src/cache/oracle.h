// The reuse an ideal cache could reach: one that kept every prefix it ever saw, forever.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/key.h"

namespace kvstash::cache {

// For each prompt, the longest token prefix it shares with any earlier prompt. `kvstash bench`
// and `kvstash replay` report reuse against it.
std::vector<uint32_t> longest_earlier_prefixes(const std::vector<std::span<const Token>>& prompts);

}  // namespace kvstash::cache
