// Plain data shared by the cache's decision functions, index and tiers: a leaf that src/cache/
// and src/tiers/ both include, so that neither includes the other. (The namespace stays `cache`:
// these are the cache's objects.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/key.h"

namespace kvstash::cache {

// Why an entry (a checkpoint of a prefix) was stored (SPEC section 3).
enum class Reason : uint8_t {
  kCold = 1,       // stable anchor prefix on a cold or partial prefill
  kContinued = 2,  // periodic checkpoint during a long prefill
  kEvict = 3,      // live state replaced by an unrelated request
  kShutdown = 4,   // live state on graceful exit
  kScope = 5,      // the boundary chosen by --cache-scope N|auto
};
const char* reason_name(Reason r);
std::optional<Reason> parse_reason(const std::string& s);

// Chunks hold the KV of C tokens; entries are checkpoints: a prefix length, the KV of the tokens
// past the last full chunk (the tail), and for recurrent models the state at that position.
enum class ObjKind : uint8_t { kChunk = 1, kEntry = 2 };

struct ObjectMeta {
  ObjKind kind = ObjKind::kChunk;
  Key key;
  Key parent;                     // previous chunk (or the root key)
  uint32_t depth = 0;             // chunk: its index; entry: number of full chunks below it
  uint32_t n_tokens = 0;          // chunk: tokens in it; entry: prefix length
  Reason reason = Reason::kCold;  // entries only
  bool has_logits = false;        // entry carries the logits after its last token
  int64_t created_ms = 0;
  uint64_t payload_bytes = 0;
};

struct ObjectStats {
  uint32_t hits = 0;
  int64_t last_used_ms = 0;
};

int64_t now_ms();

}  // namespace kvstash::cache
