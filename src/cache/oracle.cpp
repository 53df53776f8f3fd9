#include "cache/oracle.h"

#include <algorithm>

namespace kvstash::cache {

std::vector<uint32_t> longest_earlier_prefixes(const std::vector<std::span<const Token>>& prompts) {
  std::vector<uint32_t> out(prompts.size(), 0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& a = prompts[i];
    for (size_t j = 0; j < i && out[i] < a.size(); ++j) {
      const auto& b = prompts[j];
      const size_t k = std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin();
      out[i] = std::max(out[i], static_cast<uint32_t>(k));
    }
  }
  return out;
}

}  // namespace kvstash::cache
