#include "core/key.h"

#include <xxhash.h>

#include <cstdio>
#include <cstring>

namespace kvstash::cache {

namespace {
// Domain tags keep chunk and entry keys apart even for equal inputs.
constexpr uint64_t kChunkSeed = 0x6b7673746173'6331ULL;
constexpr uint64_t kEntrySeed = 0x6b7673746173'6531ULL;

// Hashes parent || count || body in one shot over a contiguous copy. (XXH3's streaming state
// must be 64-byte aligned, which a stack object is not guaranteed to be: an AddressSanitizer build
// computed other keys for inputs over 240 bytes. The bytes are those of the streaming form, so
// the keys did not change.)
Key hash_parts(const Key& parent, uint32_t count, std::span<const uint8_t> body, uint64_t seed) {
  thread_local std::vector<uint8_t> buf;
  buf.resize(sizeof(parent) + sizeof(count) + body.size());
  std::memcpy(buf.data(), &parent, sizeof(parent));
  std::memcpy(buf.data() + sizeof(parent), &count, sizeof(count));
  if (!body.empty())
    std::memcpy(buf.data() + sizeof(parent) + sizeof(count), body.data(), body.size());
  const XXH128_hash_t h = XXH3_128bits_withSeed(buf.data(), buf.size(), seed);
  return {h.high64, h.low64};
}

Key hash(const Key& parent, std::span<const Token> tokens, uint64_t seed) {
  return hash_parts(parent, static_cast<uint32_t>(tokens.size()),
                    {reinterpret_cast<const uint8_t*>(tokens.data()), tokens.size_bytes()}, seed);
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
  return hash_parts(root, static_cast<uint32_t>(salt.size()),
                    {reinterpret_cast<const uint8_t*>(salt.data()), salt.size()}, 0x73616c74);
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
