// A llama.cpp session backed by the prefix cache: the request-level flow of SPEC sections 2-3.
//
// The flow itself (live reuse vs restore, evict store with the incoming prompt protected, cold /
// continued / scope stores during prefill, shutdown store) is engine-agnostic and lives in
// cache/request_flow.h, where `kvstash replay` drives it without a model. This class binds it to
// an engine::Session through the SessionEngine adapter.
//
// Only states computed by prefill at batch breaks are ever stored: decoded tokens were computed
// one at a time, and a fresh prefill would compute them in a batch, so reusing their KV would not
// be bit-exact. A live state is therefore stored and reused only up to the last break of the part
// that prefill computed.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "cache/prefix_cache.h"
#include "cache/request_flow.h"
#include "cache/store_policy.h"
#include "engine/session.h"
#include "engine/session_engine.h"

namespace kvstash::engine {

using RequestPolicy = cache::RequestPolicy;
using PromptInfo = cache::PromptInfo;
using PrefillReport = cache::PrefillReport;

class CachedSession {
 public:
  // `cache` may be null: then nothing is restored or stored (--cache-scope off).
  CachedSession(Session& session, cache::PrefixCache* cache, const cache::StoreConfig& store);

  Session& session() { return s_; }

  // progress(done, total, cached) after each batch; returning false cancels.
  // `fork`: start from a prefix of another slot's live state (cache::ForkSource; may be null).
  PrefillReport prefill(const std::vector<Token>& prompt, const PromptInfo& info,
                        const std::function<bool(int, int, int)>& progress = nullptr,
                        const cache::ForkSource* fork = nullptr) {
    return flow_.prefill(prompt, info, progress, fork);
  }
  cache::RequestFlow& flow() { return flow_; }
  // Stores the live state (graceful exit).
  void shutdown() { flow_.shutdown(); }
  // After a reply (StoreConfig::turn_stores): the live state as the next turn's anchor.
  void store_turn() { flow_.store_turn(); }
  // Clears the session and the flow's record of it (after a failed request).
  void reset() { flow_.reset(); }

 private:
  Session& s_;
  SessionEngine engine_;
  cache::RequestFlow flow_;
};

// Restores `plan` into the session, streaming it from the cache (cache::restore_plan). Throws on
// a missing, damaged or inconsistent state.
cache::Restored restore_plan(Session& s, cache::PrefixCache& cache, const cache::RestorePlan& plan,
                             std::span<const Token> prompt);
// The same from objects loaded beforehand (cache::restore_loaded).
void restore_loaded(Session& s, const cache::RestorePlan& plan, const cache::PrefixCache::Loaded& l,
                    std::span<const Token> prompt);

}  // namespace kvstash::engine
