// Content keys for token prefixes.
//
// A prompt is cut into fixed chunks of C tokens. Chunk i's key hashes the previous chunk's key
// with its own tokens, so a key names the whole prefix up to the end of its chunk (a hash chain,
// like vLLM's block hashes). The chain starts from a root key derived from the model fingerprint:
// prefixes of another model or KV setting live in another key space and never match. An entry's
// key hashes the key of its last full chunk with the remaining tail tokens.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kvstash::cache {

using Token = int32_t;

struct Key {
  uint64_t hi = 0, lo = 0;
  auto operator<=>(const Key&) const = default;
  std::string hex() const;
  static std::optional<Key> from_hex(const std::string& s);
};

struct KeyHash {
  size_t operator()(const Key& k) const { return static_cast<size_t>(k.lo ^ (k.hi * 31)); }
};

Key root_key(std::span<const uint8_t> fingerprint);
// A tenant's own key space under the model's root (vLLM's cache_salt): prefixes stored with one
// salt never match a request with another, so tenants cannot hit or time each other's prefixes.
Key salted_root(const Key& root, const std::string& salt);
Key chunk_key(const Key& parent, std::span<const Token> tokens);
Key entry_key(const Key& parent, std::span<const Token> tail);
// Keys of every full chunk of `tokens`.
std::vector<Key> chain_keys(const Key& root, std::span<const Token> tokens, uint32_t chunk);

// A prompt's chain: its root and the keys of its full chunks.
struct Chain {
  Key root;
  std::vector<Key> keys;
  const Key& parent_of(size_t i) const { return i ? keys[i - 1] : root; }
};
Chain make_chain(const Key& root, std::span<const Token> tokens, uint32_t chunk);

}  // namespace kvstash::cache
