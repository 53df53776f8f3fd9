// Fuzzes what the remote tier reads from Redis before it trusts it: entry listing members (as a
// SMEMBERS reply delivers them: the input split at newlines), cluster redirections, and the
// checks of a parsed member against its chain position; also the --cache-remote URL parser.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/key.h"
#include "tiers/remote_protocol.h"

using namespace kvstash;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static const cache::Key parent = cache::root_key(std::vector<uint8_t>(16, 1));
  size_t start = 0;
  while (start <= in.size()) {
    size_t end = in.find('\n', start);
    if (end == std::string_view::npos) end = in.size();
    const std::string_view member = in.substr(start, end - start);
    if (auto m = tiers::parse_listing_member(member, parent)) {
      // A member that parses round-trips, and fits at most the one position its depth names.
      if (tiers::format_listing_member(*m).size() > member.size() + 64) __builtin_trap();
      for (uint32_t chunk : {1u, 256u, 4096u}) {
        if (tiers::listing_fits(*m, m->depth + 1, chunk)) __builtin_trap();
        if (tiers::listing_fits(*m, m->depth, chunk) && m->n_tokens / chunk != m->depth) {
          __builtin_trap();
        }
      }
    }
    if (auto r = tiers::parse_redirect(member)) {
      if (r->port < 1 || r->port > 65535) __builtin_trap();
    }
    start = end + 1;
  }
  try {
    (void)tiers::parse_redis_url(std::string(in));
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
