// When to store: the checkpoint decisions of SPEC section 3, as pure functions over plain data.
//
// ds4-server learned these rules in production: the cold anchor (the stable chat prefix before the
// last user turn), its refresh after a partial hit below it (the stored anchor no longer matches),
// continued checkpoints during long prefills, and never two stores at one prefix length in a
// request (the second would write the same state again). Each rule has a unit test named after its
// scenario.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/types.h"

namespace kvstash::cache {

struct StoreConfig {
  uint32_t min_tokens = 512;            // --cache-min-tokens: nothing shorter is stored
  uint32_t cold_max_tokens = 30000;     // --cache-cold-max-tokens: 0 disables the cold store
  uint32_t boundary_align = 2048;       // --cache-boundary-align
  uint32_t boundary_trim = 0;           // --cache-boundary-trim
  uint32_t continued_interval = 10240;  // --cache-continued-interval: 0 disables
  // --cache-turn-stores: after each reply, the live state is stored as the next turn's anchor
  // (only its new chunks are written), so a fleet member's sessions outlive it in the shared tier.
  bool turn_stores = false;
  // Seed-bug toggles (`kvstash replay --before ...`): false brings back the behaviour a ds4
  // change fixed, so a replay can show its effect. Servers keep the defaults.
  bool refresh_anchor = true;     // store the anchor after a partial hit below it
  bool drop_superseded = true;    // drop continued entries a new cold/continued supersedes
  bool store_before_trim = true;  // store a live state before a partial live hit cuts it
};

// The prefill a request is about to run.
struct PrefillFacts {
  uint32_t prompt_tokens = 0;
  uint32_t cached_tokens = 0;    // restored from the cache or the live state
  uint32_t anchor_boundary = 0;  // chat boundary before the last user turn (0: none known)
};

struct ColdDecision {
  uint32_t store_at = 0;  // 0: no cold store
  std::string hint;       // one-line explanation when a cold store was skipped for size
};

// The stable anchor: the chat boundary before the last user turn (else the prompt end), minus
// boundary_trim, aligned down to boundary_align.
uint32_t anchor_position(const PrefillFacts& f, const StoreConfig& c);

// Cold store on a cold prefill; anchor refresh after a partial hit below the anchor, because the
// lookup returning a shorter prefix proves the stored anchor no longer matches (without the
// refresh, every later request would pay the same partial prefill). Hits at or past the anchor
// store nothing. With refresh_anchor off only a fully cold prefill stores the anchor.
ColdDecision cold_store(const PrefillFacts& f, const StoreConfig& c);

struct PlannedStore {
  uint32_t at;
  Reason reason;
  bool operator==(const PlannedStore&) const = default;
};

// Every store this prefill makes, in position order: the cold anchor and continued checkpoints
// every continued_interval tokens past the cached prefix. One store per position: where the cold
// anchor lands on a continued boundary, only the cold store happens (not the same state twice).
std::vector<PlannedStore> prefill_stores(const PrefillFacts& f, const StoreConfig& c,
                                         ColdDecision* cold_out = nullptr);

// A live state about to be replaced (evict) or kept at exit (shutdown) is stored when it is long
// enough and not already stored at that length.
bool store_live_state(uint32_t live_tokens, uint32_t already_stored_at, const StoreConfig& c);

// A live hit that keeps only `keep` of the live state's `live_tokens` discards the rest, which may
// be the only copy (another conversation's tail, when agents share a server): it is stored first,
// like an evict store, unless it is already stored.
bool store_before_trim(uint32_t live_tokens, uint32_t keep, uint32_t already_stored_at,
                       const StoreConfig& c);

// An existing entry, as the superseded rule sees it.
struct EntryView {
  Key key;
  uint32_t n_tokens;
  Reason reason;
  bool prefix_of_new;  // its prefix is a prefix of the entry being stored
};

// Continued entries that are strict prefixes of a new cold/continued entry are redundant
// and dropped. Evict/shutdown stores drop nothing (their state may hold post-divergence tokens,
// so the shorter continued entries remain the better match for what comes next). With
// c.drop_superseded off nothing is dropped.
std::vector<Key> superseded_by(Reason new_reason, uint32_t new_tokens,
                               const std::vector<EntryView>& existing, const StoreConfig& c = {});

}  // namespace kvstash::cache
