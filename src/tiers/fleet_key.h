// The fleet key: authenticates the objects of the shared remote tier (--cache-remote-key FILE).
//
// Every server of a fleet holds the same secret. A writer appends HMAC-SHA-256(secret, name '\n'
// value) to each value it stores under a Redis key `name`; a reader accepts a value only if that
// tag matches, so bytes written by anyone without the secret (or moved to another key) are never
// restored. The tag covers the whole header and payload, not their XXH3 checksums, which an
// attacker can recompute.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

struct evp_mac_st;

namespace kvstash::tiers {

class FleetKey {
 public:
  static constexpr size_t kMinSecret = 32;
  static constexpr size_t kTagSize = 32;
  using Tag = std::array<uint8_t, kTagSize>;

  // Throws std::invalid_argument when the secret is shorter than kMinSecret bytes.
  explicit FleetKey(std::string secret);
  // The file's whole contents are the secret. Throws std::invalid_argument when it cannot be read
  // or is too short (configuration, read once by the tier's constructor).
  static FleetKey from_file(const std::string& path);

  Tag sign(std::string_view name, std::span<const uint8_t> value) const;
  // Whether `tag` is value's tag under `name` (compared in constant time).
  bool verify(std::string_view name, std::span<const uint8_t> value,
              std::span<const uint8_t> tag) const;

 private:
  std::string secret_;
  std::shared_ptr<evp_mac_st> mac_;  // OpenSSL's HMAC implementation, fetched once
};

}  // namespace kvstash::tiers
