#include "core/types.h"

#include <chrono>

namespace kvstash::cache {

const char* reason_name(Reason r) {
  switch (r) {
    case Reason::kCold:
      return "cold";
    case Reason::kContinued:
      return "continued";
    case Reason::kEvict:
      return "evict";
    case Reason::kShutdown:
      return "shutdown";
    case Reason::kScope:
      return "scope";
  }
  return "unknown";
}

std::optional<Reason> parse_reason(const std::string& s) {
  for (Reason r :
       {Reason::kCold, Reason::kContinued, Reason::kEvict, Reason::kShutdown, Reason::kScope}) {
    if (s == reason_name(r)) return r;
  }
  return std::nullopt;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace kvstash::cache
