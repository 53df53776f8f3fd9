#include "cache/kv_engine.h"

#include <stdexcept>

namespace kvstash::cache {

void KvEngine::restore_kv_device(const DeviceCopy&) {
  throw std::logic_error("this engine has no device memory to restore from");
}

bool KvEngine::fork_from(KvEngine&, uint32_t) { return false; }

void restore_parts(KvEngine& e, uint32_t from, const std::vector<std::span<const uint8_t>>& parts,
                   std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                   const std::vector<float>& logits) {
  e.restore_begin(from, from);
  for (const auto& p : parts) e.restore_kv(p);
  e.restore_end(partial, tokens, logits);
}

}  // namespace kvstash::cache
