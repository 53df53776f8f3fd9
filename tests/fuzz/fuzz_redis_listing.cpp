// Fuzzes what the remote tier reads from Redis before it trusts it, from the wire up: the input
// is RESP, as a server (or whoever answers on its port) sends it, parsed by hiredis' reader as
// RedisConn does; every string of an array reply is an entry listing member (as SMEMBERS delivers
// them) and every error reply a possible cluster redirection. Each parsed member is checked
// against its chain position. The input also goes, as is, to the --cache-remote URL parser.
#include <hiredis/hiredis.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/key.h"
#include "tiers/remote_protocol.h"

using namespace kvstash;

namespace {

const cache::Key& parent() {
  static const cache::Key k = cache::root_key(std::vector<uint8_t>(16, 1));
  return k;
}

void member(std::string_view m) {
  if (auto e = tiers::parse_listing_member(m, parent())) {
    // A member that parses fits at most the one chain position its depth names.
    for (uint32_t chunk : {1u, 256u, 4096u}) {
      if (tiers::listing_fits(*e, e->depth + 1, chunk)) __builtin_trap();
      if (tiers::listing_fits(*e, e->depth, chunk) && e->n_tokens / chunk != e->depth) {
        __builtin_trap();
      }
    }
    if (tiers::parse_listing_member(tiers::format_listing_member(*e), parent())->key != e->key) {
      __builtin_trap();
    }
  }
}

void reply(const redisReply* r, int depth) {
  if (!r || depth > 8) return;
  if (r->type == REDIS_REPLY_ERROR && r->str) {
    if (auto to = tiers::parse_redirect(std::string_view(r->str, r->len))) {
      if (to->port < 1 || to->port > 65535) __builtin_trap();
    }
  } else if (r->str) {
    member(std::string_view(r->str, r->len));
  }
  for (size_t i = 0; i < r->elements; ++i) reply(r->element[i], depth + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  redisReader* rd = redisReaderCreate();
  if (redisReaderFeed(rd, in.data(), in.size()) == REDIS_OK) {
    void* r = nullptr;
    while (redisReaderGetReply(rd, &r) == REDIS_OK && r) {
      reply(static_cast<const redisReply*>(r), 0);
      freeReplyObject(r);
      r = nullptr;
    }
  }
  redisReaderFree(rd);
  try {
    (void)tiers::parse_redis_url(std::string(in));
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
