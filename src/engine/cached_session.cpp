#include "engine/cached_session.h"

namespace kvstash::engine {

CachedSession::CachedSession(Session& session, cache::PrefixCache* cache,
                             const cache::StoreConfig& store)
    : s_(session), engine_(session), flow_(engine_, cache, store) {}

cache::Restored restore_plan(Session& s, cache::PrefixCache& cache, const cache::RestorePlan& plan,
                             std::span<const Token> prompt) {
  SessionEngine e(s);
  return cache::restore_plan(e, cache, plan, prompt);
}

void restore_loaded(Session& s, const cache::RestorePlan& plan, const cache::PrefixCache::Loaded& l,
                    std::span<const Token> prompt) {
  SessionEngine e(s);
  cache::restore_loaded(e, plan, l, prompt);
}

}  // namespace kvstash::engine
