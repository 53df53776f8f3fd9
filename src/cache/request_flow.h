// The request-level flow of SPEC sections 2-3, over any KvEngine (kv_engine.h).
//
// For each prompt it picks the best starting state (the live state if it shares more than the
// cache can restore, else the cache's longest restorable prefix), stores the live state first if
// it is about to be replaced (evict), prefills the rest while taking the policy's checkpoints
// (cold anchor, anchor refresh, continued, scope), and on shutdown stores the live state.
//
// Only states computed by prefill at batch breaks are ever stored: decoded tokens were computed
// one at a time, and a fresh prefill would compute them in a batch, so reusing their KV would not
// be bit-exact. A live state is therefore stored and reused only up to the last break of the part
// that prefill computed.
//
// The same code serves the llama.cpp engine (engine/cached_session.h wraps it) and `kvstash
// replay`, which drives it with a model-free engine (replay/sim_engine.h): what replay measures
// is this flow, not a copy of it.
#pragma once

#include <array>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache/kv_engine.h"
#include "cache/prefix_cache.h"
#include "cache/scope_policy.h"
#include "cache/store_policy.h"

namespace kvstash::cache {

// What one request may do with the cache (SPEC section 5: off, full, or a scope boundary).
struct RequestPolicy {
  bool restore = true;          // look the prompt up in the cache
  bool checkpoints = true;      // full mode: cold, continued, evict and shutdown stores
  uint32_t scope_boundary = 0;  // scoped modes: store exactly this prefix (reason=scope)
};

// What a request under `scope` may do: off (neither restore nor store), full (the checkpoints),
// or a scope boundary chosen from the prompt and the recent prompts (most recent last). `log`
// receives the auto/fixed decision's line, if any. The server and replay decide through this.
RequestPolicy policy_for_scope(const Scope& scope, std::span<const Token> prompt,
                               const std::vector<uint32_t>& boundaries,
                               const std::vector<std::vector<Token>>& history, uint32_t min_tokens,
                               std::string* log = nullptr);

struct PromptInfo {
  std::vector<uint32_t> boundaries;  // chat message starts (content-derived batch breaks)
  uint32_t anchor = 0;               // the boundary before the last user turn (0: unknown)
  RequestPolicy policy;
  std::string salt;  // cache_salt: the tenant's own key space
  // The boundaries are all the prompt's message starts. When not (the renderer ran out of time),
  // its batches break elsewhere than another prompt's with the same prefix would: the request
  // neither reuses a state (live or cached) nor leaves one to reuse or store.
  bool complete = true;
};

// A store a prefill attempted (evict, cold, continued, scope), for the request's report.
struct StoreOutcome {
  Reason reason = Reason::kCold;
  uint32_t tokens = 0;
  uint64_t bytes = 0;
  // stored (queued), existed (already held), dropped (the store queue was full), skipped
  const char* outcome = "skipped";
};

struct PrefillReport {
  uint32_t prompt_tokens = 0;
  uint32_t cached_tokens = 0;  // tokens not prefilled (restored or kept from the live state)
  bool from_live = false;
  double restore_ms = 0, prefill_ms = 0;
  bool cancelled = false;
  uint32_t restore_failures = 0;       // loaded states the engine refused (never served)
  uint32_t restore_errors = 0;         // restores that failed for a transient reason (data kept)
  uint32_t kept_tokens = 0;            // live tokens kept (a delta restore loads only past them)
  uint32_t forked_tokens = 0;          // live tokens copied from another flow's (ForkSource)
  Source source = Source::kRecompute;  // what served cached_tokens (live, a tier) or recompute
  std::string plan_log;                // the restore-or-recompute decision, if one was made
  std::vector<StoreOutcome> stores;    // the stores this prefill attempted, in order
};

// A plan's object could not be fetched (missing or damaged; the cache has forgotten it).
struct FetchFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// How a restore ended; a failure is classified from what restore_plan threw (pure). Only a
// definite verdict on the bytes removes them (PrefixCache::reject, from every tier and for every
// process):
//   kGone: an object vanished or failed its checksum (FetchFailed; the cache forgot it already);
//   kRefused: the engine refused the bytes, or the entry payload is malformed (StateRefused);
//   kTransient: anything else (out of memory, a thread that could not start, an engine misused):
//     it says nothing about the bytes; the request recomputes and the objects stay.
enum class RestoreOutcome : uint8_t { kServed, kGone, kRefused, kTransient };
RestoreOutcome classify_restore_failure(const std::exception_ptr& e);

struct Restored {
  uint64_t bytes = 0;
  std::array<uint64_t, kSourceCount> by_source{};  // bytes each tier served
  Source source = Source::kRecompute;              // the tier that served most of them
  double seconds = 0;
  double wait_seconds = 0;  // waiting for fetches (reads, checksums) the uploads had overtaken
};
// Restores `plan` into the engine, keeping its live tokens [0, from) (from: a multiple of the
// chunk size, first_chunk * chunk) and loading the rest: each object is fetched on a prefetch
// thread while the previous one is uploaded. Throws FetchFailed when an object is gone,
// StateRefused when the engine refuses the bytes (a std::runtime_error out of one of its restore
// steps, kv_engine.h) or the entry is malformed, and whatever else failed as it is (the engine is
// cleared by the caller either way).
Restored restore_plan(KvEngine& e, PrefixCache& cache, const RestorePlan& plan,
                      std::span<const Token> prompt, size_t first_chunk = 0);
// Restores from objects fetched beforehand with PrefixCache::load (tools and tests).
void restore_loaded(KvEngine& e, const RestorePlan& plan, const PrefixCache::Loaded& l,
                    std::span<const Token> prompt);

class RequestFlow;

// A fork (cache/slot_choice.h): another flow, of another sequence of the same engine kind, whose
// live state shares a prefix with the prompt. Before the request runs, this flow stores its own
// live state as a live miss does (reason=evict) and takes a copy of that prefix as its live state,
// cut where the source's own request could resume the prompt (same salt, complete boundaries, a
// break of both prompts, within what prefill computed); the request then reuses it like a live
// hit. The caller keeps the source unchanged until `done` is called (once, copied or not).
struct ForkSource {
  RequestFlow* from = nullptr;
  std::function<void()> done;
};

class RequestFlow {
 public:
  // `cache` may be null: then nothing is restored or stored (--cache-scope off).
  RequestFlow(KvEngine& engine, PrefixCache* cache, const StoreConfig& store);

  KvEngine& engine() { return e_; }

  // progress(done, total, cached) after each batch; returning false cancels.
  // `fork`: the live state to start from instead of this flow's own (may be null).
  PrefillReport prefill(const std::vector<Token>& prompt, const PromptInfo& info,
                        const std::function<bool(int, int, int)>& progress = nullptr,
                        const ForkSource* fork = nullptr);
  // Stores the live state (graceful exit).
  void shutdown();
  // After a reply, with StoreConfig::turn_stores: stores the live state as the next turn's anchor.
  void store_turn();
  // Drops the live state and everything the flow knew about it (after a failed request, whose
  // state may be half-written), so no later store reads tokens the engine no longer holds.
  void reset();

 private:
  // Leading tokens the live state shares with `prompt` and computed by prefill.
  uint32_t live_common(const std::vector<Token>& prompt) const;
  // Where the live state can resume `prompt` as it is (0: nowhere).
  uint32_t live_resume(const std::vector<Token>& prompt, uint32_t common,
                       const Breaks& breaks) const;
  // Replaces the live state with src's prefix (ForkSource); the tokens forked, 0 for none.
  uint32_t fork_in(RequestFlow& src, const std::vector<Token>& prompt, const PromptInfo& info,
                   const Breaks& breaks);
  // Before the live state is cut to `keep`: the evict store of what would be lost.
  void store_before_cut(uint32_t keep, std::span<const Token> prompt, const std::string& salt);
  // Tries restore_plan with the plan's objects pinned in `pin` (kept while the request runs);
  // on failure unpins, drops the live state, counts it, and rejects the plan's objects only if
  // the failure was kRefused. `page_cached`: the plan's disk bytes the page cache held (for the
  // rate the restore is observed at).
  RestoreOutcome try_restore(const RestorePlan& plan, std::span<const Token> prompt,
                             size_t first_chunk, uint64_t page_cached, PrefillReport& rep,
                             PrefixCache::Pin& pin);
  // Empties the engine and what the flow knew of its live state.
  void drop_live();
  void store_live(Reason reason, std::span<const Token> protect, const std::string& protect_salt);
  bool store_at(uint32_t n, Reason reason, std::span<const Token> protect,
                const std::string& protect_salt);

  KvEngine& e_;
  PrefixCache* cache_;
  StoreConfig store_cfg_;
  std::vector<uint32_t> breaks_;  // boundaries of the prompt the live state was prefilled for
  uint32_t computed_ = 0;         // leading live tokens computed by prefill
  uint32_t last_stored_ = 0;      // live prefix length stored last
  uint32_t prompt_len_ = 0;       // of the last prefill
  bool live_checkpoints_ = true;  // the live state's request allows evict/shutdown stores
  std::string live_salt_;         // cache_salt of the live state's request
  bool live_reusable_ = true;     // its request's boundaries were complete (PromptInfo::complete)
  // Snapshot-only engines: the state at the last break of the last prefill (what an evict or
  // shutdown store saves, since the live state has moved on past it).
  struct Checkpoint {
    uint32_t at = 0;
    std::vector<uint8_t> partial;
  };
  Checkpoint checkpoint_;
  std::vector<StoreOutcome>* stores_out_ = nullptr;  // the running prefill's report, if any
  std::string stores_salt_;  // the running prefill's cache_salt: its stores are reported
};

}  // namespace kvstash::cache
