// The fleet key: authenticates the objects of the shared remote tier (--cache-remote-key FILE).
//
// Every server of a fleet holds the same secret. A writer seals each value it stores under a
// Redis key `name` with AES-256-GMAC (OpenSSL: AES-256-GCM authenticating `name` '\n' value, a
// fresh random 96-bit nonce per seal) and stores the seal (nonce and 128-bit tag) after it; a
// reader accepts a value only if its seal verifies, so bytes written by anyone without the secret
// (or moved to another key) are never restored. The tag covers the whole header and payload, not
// their XXH3 checksums, which an attacker can recompute. GMAC rather than HMAC-SHA-256: it runs
// at several times the speed (bench/MICRO.md), and the restore path pays it on every byte.
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
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kSealSize = kNonceSize + 16;  // nonce, then the tag
  using Seal = std::array<uint8_t, kSealSize>;

  // The AES key is SHA-256 of the secret. Throws std::invalid_argument when the secret is
  // shorter than kMinSecret bytes.
  explicit FleetKey(const std::string& secret);
  // The file's whole contents are the secret. Throws std::invalid_argument when it cannot be read
  // or is too short (configuration, read once by the tier's constructor).
  static FleetKey from_file(const std::string& path);

  // A seal under a fresh nonce; all zero (which verifies nothing) if OpenSSL failed.
  Seal seal(std::string_view name, std::span<const uint8_t> value) const;
  // Whether `seal` is a seal of value under `name` (the tag compared in constant time).
  bool verify(std::string_view name, std::span<const uint8_t> value,
              std::span<const uint8_t> seal) const;

 private:
  bool tag(std::string_view name, std::span<const uint8_t> value, const uint8_t* nonce,
           uint8_t* out) const;
  std::array<uint8_t, 32> key_{};
  std::shared_ptr<evp_mac_st> mac_;  // OpenSSL's GMAC implementation, fetched once
};

}  // namespace kvstash::tiers
