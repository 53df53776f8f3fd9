// Model fingerprint: identifies the exact bytes a KV state depends on.
//
// Two states are interchangeable only if they come from the same model file and the same settings
// that shape the KV bytes (KV types, flash attention, which backend computed them, the llama.cpp
// build). The fingerprint is a 128-bit hash over the file contents plus a canonical text of those
// settings, so a cache entry from another model or configuration can never match.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace kvstash::engine {

struct Fingerprint {
  std::array<uint8_t, 16> bytes{};

  std::string hex() const;
  bool operator==(const Fingerprint&) const = default;
};

// XXH3-128 over the whole file, streamed. Throws std::runtime_error when the file cannot be read.
Fingerprint hash_file(const std::string& path);

// The llama.cpp build a state comes from, as settings: "llama=<upstream commit>;patches=<id of
// kvstash's patch series (cmake/patches)>;backend=<backends compiled in, e.g. cpu+cuda>". Builds
// that differ in any of them are not bit-compatible and must not share a namespace.
std::string llama_build();

// Combines the file hash with a canonical "key=value;..." description of the KV-shaping settings.
Fingerprint combine(const Fingerprint& file, const std::string& settings);

}  // namespace kvstash::engine
