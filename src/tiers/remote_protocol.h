// The remote tier's wire formats as pure functions: the server URL, cluster redirections and the
// members of entry listings. Everything read from Redis is untrusted (anyone who can write to it
// may have written it): each parser returns nullopt for input it cannot fully vouch for, and
// never throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/types.h"

namespace kvstash::tiers {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  std::string user;      // empty: the default user (AUTH <password>)
  std::string password;  // empty: no AUTH
  bool operator==(const RedisEndpoint&) const = default;
};

// Parses redis://[[user]:password@]host[:port][/...] (user and password percent-decoded). Throws
// std::invalid_argument with the reason: configuration parsing, for the tier's constructor.
RedisEndpoint parse_redis_url(const std::string& url);
// redis://[user@]host:port: the endpoint as logs name it, never with its password.
std::string display_url(const RedisEndpoint& ep);

// A cluster redirection: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". An empty
// host means the node that answered (Redis writes ":port" when it does not know its address).
struct Redirect {
  enum Kind : uint8_t { kMoved, kAsk };
  Kind kind = kMoved;
  std::string host;
  int port = 0;
};
// nullopt for any other error reply, and for a malformed redirection.
std::optional<Redirect> parse_redirect(std::string_view error);

// A listing member: "<key>:<tokens>:<depth>:<reason>:<logits>", one per entry under a parent.
std::string format_listing_member(const cache::ObjectMeta& entry);
// The entry's metadata (kind kEntry, parent as given), or nullopt if any field is malformed.
std::optional<cache::ObjectMeta> parse_listing_member(std::string_view member,
                                                      const cache::Key& parent);
// Whether an entry listed under chain position `depth` can be one: it hangs under the last full
// chunk of its prefix, so its depth is `depth` and its length lies in [depth*C, (depth+1)*C).
bool listing_fits(const cache::ObjectMeta& entry, uint32_t depth, uint32_t chunk);

}  // namespace kvstash::tiers
