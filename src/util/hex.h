// Lower-case hex of bytes (fingerprints name cache namespaces in directories and Redis keys).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace kvstash {

inline std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

}  // namespace kvstash
