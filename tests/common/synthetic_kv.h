// Synthetic conversations and KV bytes for cache tests that need no model: the bytes of each
// token's "KV" depend on the token and its position, so any misplaced or stale byte shows.
#pragma once

#include <algorithm>
#include <span>
#include <vector>

#include "cache/entry_payload.h"
#include "cache/prefix_cache.h"

namespace kvstash::fixtures {

constexpr uint32_t kSynthChunk = 256;
constexpr size_t kSynthBytesPerToken = 16;
constexpr size_t kSynthChunkBytes = kSynthChunk * kSynthBytesPerToken;

inline std::vector<cache::Token> conv(size_t n, cache::Token seed = 0) {
  std::vector<cache::Token> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<cache::Token>((i * 31 + seed * 1009) % 50000);
  return t;
}

inline std::vector<uint8_t> kv(std::span<const cache::Token> t, size_t begin, size_t end) {
  std::vector<uint8_t> out;
  for (size_t i = begin; i < end; ++i) {
    for (size_t b = 0; b < kSynthBytesPerToken; ++b)
      out.push_back(static_cast<uint8_t>(t[i] * 13 + b + i));
  }
  return out;
}

inline cache::PrefixCache::StoreResult put(cache::PrefixCache& c, std::span<const cache::Token> t,
                                           cache::Reason r = cache::Reason::kCold,
                                           std::span<const cache::Token> protect = {}) {
  cache::PrefixCache::StoreRequest req;
  req.tokens = t;
  req.reason = r;
  req.protect = protect;
  req.chunk_payload = [&](uint32_t i) {
    return Payload(c.pool().copy(kv(t, size_t(i) * kSynthChunk, size_t(i + 1) * kSynthChunk)));
  };
  req.entry_payload = [&] {
    cache::EntryPayload p;
    p.tail_kv = kv(t, t.size() / kSynthChunk * kSynthChunk, t.size());
    return Payload(c.pool().copy(cache::encode_entry_payload(p)));
  };
  return c.store(req);
}

// Loads the plan for `prompt` and checks that every byte is the prompt's own. Returns resume_at.
inline uint32_t check_restore(cache::PrefixCache& c, std::span<const cache::Token> prompt,
                              std::string* error) {
  const auto plan = c.plan(prompt, {});
  if (plan.resume_at == 0) return 0;
  auto l = c.load(plan);
  if (!l) {
    *error = "load failed";
    return 0;
  }
  for (size_t i = 0; i < l->chunks.size(); ++i) {
    const auto want = kv(prompt, i * kSynthChunk, (i + 1) * kSynthChunk);
    if (!std::ranges::equal(l->chunks[i]->span(), want)) {
      *error = "chunk " + std::to_string(i) + " holds other bytes";
    }
  }
  if (plan.entry) {
    auto e = cache::decode_entry_payload(l->entry->span());
    if (!e || e->tail_kv != kv(prompt, plan.chunks.size() * kSynthChunk, plan.restore_tokens)) {
      *error = "entry tail holds other bytes";
    }
  }
  return plan.resume_at;
}

}  // namespace kvstash::fixtures
