#include "cache/key.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <cstdio>
#include <cstring>

namespace kvstash::cache {

namespace {
// Domain tags keep chunk and entry keys apart even for equal inputs.
constexpr uint64_t kChunkSeed = 0x6b7673746173'6331ULL;
constexpr uint64_t kEntrySeed = 0x6b7673746173'6531ULL;

Key hash(const Key& parent, std::span<const Token> tokens, uint64_t seed) {
  XXH3_state_t st;
  XXH3_128bits_reset_withSeed(&st, seed);
  XXH3_128bits_update(&st, &parent, sizeof(parent));
  const uint32_t n = static_cast<uint32_t>(tokens.size());
  XXH3_128bits_update(&st, &n, sizeof(n));
  XXH3_128bits_update(&st, tokens.data(), tokens.size_bytes());
  const XXH128_hash_t h = XXH3_128bits_digest(&st);
  return {h.high64, h.low64};
}
}  // namespace

std::string Key::hex() const {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

std::optional<Key> Key::from_hex(const std::string& s) {
  if (s.size() != 32) return std::nullopt;
  Key k;
  for (size_t i = 0; i < 32; ++i) {
    const char c = s[i];
    int v;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else
      return std::nullopt;
    uint64_t& w = i < 16 ? k.hi : k.lo;
    w = (w << 4) | static_cast<uint64_t>(v);
  }
  return k;
}

Key root_key(std::span<const uint8_t> fingerprint) {
  const XXH128_hash_t h = XXH3_128bits_withSeed(fingerprint.data(), fingerprint.size(), 0x726f6f74);
  return {h.high64, h.low64};
}

Key chunk_key(const Key& parent, std::span<const Token> tokens) {
  return hash(parent, tokens, kChunkSeed);
}

Key entry_key(const Key& parent, std::span<const Token> tail) {
  return hash(parent, tail, kEntrySeed);
}

Key salted_root(const Key& root, const std::string& salt) {
  if (salt.empty()) return root;
  XXH3_state_t st;
  XXH3_128bits_reset_withSeed(&st, 0x73616c74);
  XXH3_128bits_update(&st, &root, sizeof(root));
  XXH3_128bits_update(&st, salt.data(), salt.size());
  const XXH128_hash_t h = XXH3_128bits_digest(&st);
  return {h.high64, h.low64};
}

Chain make_chain(const Key& root, std::span<const Token> tokens, uint32_t chunk) {
  return {root, chain_keys(root, tokens, chunk)};
}

std::vector<Key> chain_keys(const Key& root, std::span<const Token> tokens, uint32_t chunk) {
  std::vector<Key> out;
  Key parent = root;
  for (size_t i = 0; (i + 1) * chunk <= tokens.size(); ++i) {
    parent = chunk_key(parent, tokens.subspan(i * chunk, chunk));
    out.push_back(parent);
  }
  return out;
}

}  // namespace kvstash::cache
