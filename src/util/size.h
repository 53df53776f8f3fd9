// Byte sizes as people write them: "40G", "512M", "1.5GiB", "0".
#pragma once

#include <cstdint>
#include <string>

namespace kvstash {

// Binary units (K = 1024). Throws std::invalid_argument with the offending text.
uint64_t parse_size(const std::string& text);
// "291.80 MiB"
std::string format_size(uint64_t bytes);

}  // namespace kvstash
