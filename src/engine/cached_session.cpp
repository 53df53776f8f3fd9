#include "engine/cached_session.h"

#include <algorithm>
#include <chrono>

#include "cache/entry_payload.h"
#include "engine/kv_blob.h"
#include "util/log.h"
#include "util/timing.h"

namespace kvstash::engine {

void restore_plan(Session& s, const cache::RestorePlan& plan, const cache::PrefixCache::Loaded& l,
                  std::span<const Token> prompt) {
  std::vector<std::span<const uint8_t>> parts(l.chunks.begin(), l.chunks.end());
  cache::EntryPayload entry;
  if (plan.entry) {
    auto e = cache::decode_entry_payload(l.entry);
    if (!e) throw StateMismatch("cache entry payload is malformed");
    entry = std::move(*e);
    if (!entry.tail_kv.empty()) parts.push_back(entry.tail_kv);
  }
  const std::vector<Token> toks(prompt.begin(), prompt.begin() + plan.restore_tokens);
  s.restore_chunks(parts, entry.partial_state, toks, entry.logits);
  if (plan.resume_at < plan.restore_tokens) s.trim(plan.resume_at);
}

CachedSession::CachedSession(Session& session, cache::PrefixCache* cache,
                             const cache::StoreConfig& store)
    : s_(session), cache_(cache), store_cfg_(store) {
  const uint32_t C = session.options().chunk;
  if (store.boundary_align % C || store.continued_interval % C) {
    throw std::invalid_argument(
        "--cache-boundary-align and --cache-continued-interval must be "
        "multiples of the chunk size (" +
        std::to_string(C) + ") so checkpoints fall on batch breaks");
  }
  if (cache && cache->config().chunk != static_cast<uint32_t>(C)) {
    throw std::invalid_argument("the cache chunk size must equal the engine's prefill chunk");
  }
}

uint32_t CachedSession::live_resume(const std::vector<Token>& prompt,
                                    const cache::Breaks& breaks) const {
  const auto& live = s_.tokens();
  uint32_t common = 0;
  const uint32_t lim = std::min<uint32_t>(computed_, prompt.size());
  while (common < lim && live[common] == prompt[common]) ++common;
  if (s_.model().resume_kind() == ResumeKind::kAnyBoundary) {
    const uint32_t cap = std::min<uint32_t>(common, prompt.size() - 1);
    // A break of the new prompt that was also a break when the live state was computed.
    cache::Breaks old_breaks(s_.options().chunk, breaks_);
    for (uint32_t r = breaks.last_at_or_below(cap); r > 0; r = breaks.last_at_or_below(r - 1)) {
      if (old_breaks.is_break(r)) return r;
    }
    return 0;
  }
  // Snapshot-only: the live state continues only if it is exactly a prefix that prefill left.
  const bool whole = common == live.size() && computed_ == live.size();
  return whole && common < prompt.size() && breaks.is_break(common) ? common : 0;
}

bool CachedSession::store_at(uint32_t n, cache::Reason reason, std::span<const Token> protect,
                             const std::string& protect_salt) {
  if (!cache_ || n == 0) return false;
  const bool snapshot_only = s_.model().resume_kind() != ResumeKind::kAnyBoundary;
  const bool at_live_end = n == s_.tokens().size();
  if (snapshot_only && !at_live_end && checkpoint_.at != n) return false;
  const uint32_t C = s_.options().chunk;
  cache::PrefixCache::StoreRequest req;
  const std::vector<Token> toks(s_.tokens().begin(), s_.tokens().begin() + n);
  req.tokens = toks;
  req.reason = reason;
  req.protect = protect;
  req.salt = live_salt_;
  req.protect_salt = protect_salt;
  // Logits matter only to a request whose prompt ends exactly here; any longer prompt computes
  // its own. Recurrent states cannot recompute them, so they are kept for the prompt end only.
  const bool with_logits = snapshot_only && at_live_end && n == prompt_len_;
  req.has_logits = with_logits;
  req.chunk_payload = [&](uint32_t i) { return s_.extract_kv(i * C, (i + 1) * C); };
  req.entry_payload = [&] {
    cache::EntryPayload p;
    const uint32_t start = n / C * C;
    if (n > start) p.tail_kv = s_.extract_kv(start, n);
    if (snapshot_only) {
      p.partial_state = at_live_end ? s_.partial_state() : checkpoint_.partial;
      if (with_logits) p.logits = s_.logits();
    }
    return cache::encode_entry_payload(p);
  };
  const auto r = cache_->store(req);
  if (r.stored || r.existed) last_stored_ = n;
  return r.stored;
}

void CachedSession::store_live(cache::Reason reason, std::span<const Token> protect,
                               const std::string& protect_salt) {
  if (!cache_ || computed_ == 0 || !live_checkpoints_) return;
  const cache::Breaks breaks(s_.options().chunk, breaks_);
  uint32_t at = breaks.last_at_or_below(computed_);
  if (s_.model().resume_kind() != ResumeKind::kAnyBoundary) at = checkpoint_.at;
  if (!cache::store_live_state(at, last_stored_, store_cfg_)) return;
  store_at(at, reason, protect, protect_salt);
}

PrefillReport CachedSession::prefill(const std::vector<Token>& prompt, const PromptInfo& info,
                                     const std::function<bool(int, int, int)>& progress) {
  PrefillReport rep;
  rep.prompt_tokens = static_cast<uint32_t>(prompt.size());
  if (prompt.empty()) throw std::invalid_argument("empty prompt");
  const uint32_t C = s_.options().chunk;
  const cache::Breaks breaks(C, info.boundaries);
  const bool snapshot_only = s_.model().resume_kind() != ResumeKind::kAnyBoundary;
  const auto t0 = Clock::now();

  // Another tenant's live state is never reused (it would reveal that the prefix was seen).
  uint32_t live = s_.tokens().empty() || info.salt != live_salt_ ? 0 : live_resume(prompt, breaks);
  cache::RestorePlan plan;
  const bool restore = cache_ && info.policy.restore;
  if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
  cache::PrefixCache::Pin pin;

  if (live > 0 && live >= plan.resume_at) {
    if (live < s_.tokens().size()) s_.trim(live);
    rep.from_live = true;
    rep.cached_tokens = live;
    log::info("kv cache live hit tokens=" + std::to_string(live));
  } else {
    // Live miss: the live state is about to be replaced, and may be the only copy (evict store).
    // Prefixes of the incoming prompt are protected while it makes room (pr448).
    if (!s_.tokens().empty()) {
      store_live(cache::Reason::kEvict, prompt, info.salt);
      if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
    }
    s_.clear();
    computed_ = 0;
    last_stored_ = 0;
    checkpoint_ = {};
    for (int attempt = 0; restore && plan.resume_at > 0 && attempt < 3; ++attempt) {
      const auto tl = Clock::now();
      pin = cache_->pin(plan);
      auto loaded = cache_->load(plan);
      if (loaded) {
        try {
          restore_plan(s_, plan, *loaded, prompt);
          rep.cached_tokens = plan.resume_at;
          rep.restore_ms = ms_since(tl);
          cache_->record_hit(plan, rep.restore_ms / 1000.0);
          log::info("kv cache hit tokens=" + std::to_string(plan.resume_at) + " load=" +
                    fmt_ms(rep.restore_ms) + " ms chunks=" + std::to_string(plan.chunks.size()) +
                    (plan.entry ? " entry=1" : ""));
          break;
        } catch (const std::exception& e) {
          log::warn(std::string("kv cache restore failed, not served: ") + e.what());
          s_.clear();
        }
      }
      plan = cache_->plan(prompt, info.boundaries, info.salt);  // the index forgot what failed
    }
    if (restore && rep.cached_tokens == 0) cache_->record_miss();
  }
  computed_ = rep.cached_tokens;
  breaks_ = info.boundaries;
  prompt_len_ = rep.prompt_tokens;
  live_checkpoints_ = info.policy.checkpoints;
  live_salt_ = info.salt;
  // A snapshot-only state restored (or kept) at a break is the checkpoint until prefill passes
  // the next one.
  if (snapshot_only && rep.cached_tokens > 0) checkpoint_ = {rep.cached_tokens, s_.partial_state()};

  // Checkpoints this prefill takes.
  cache::PrefillFacts facts{rep.prompt_tokens, rep.cached_tokens, info.anchor};
  cache::ColdDecision cold;
  std::vector<cache::PlannedStore> stores;
  if (info.policy.scope_boundary > 0) {
    if (cache_ && info.policy.scope_boundary > rep.cached_tokens) {
      stores.push_back({info.policy.scope_boundary, cache::Reason::kScope});
    }
  } else if (cache_ && info.policy.checkpoints) {
    stores = cache::prefill_stores(facts, store_cfg_, &cold);
    if (!cold.hint.empty()) log::info(cold.hint);
  }
  PrefillOptions po;
  po.boundaries.assign(info.boundaries.begin(), info.boundaries.end());
  for (const auto& st : stores) po.snapshot_at.push_back(static_cast<int>(st.at));
  // Snapshot-only models keep their state at the last break below the prompt end: that is where
  // the next turn of the conversation resumes.
  const uint32_t last_break = breaks.last_at_or_below(rep.prompt_tokens - 1);
  if (snapshot_only && last_break > rep.cached_tokens) po.snapshot_at.push_back(last_break);
  po.on_snapshot = [&](int pos) {
    computed_ = static_cast<uint32_t>(pos);
    if (snapshot_only && static_cast<uint32_t>(pos) == last_break) {
      checkpoint_ = {last_break, s_.partial_state()};
    }
    for (const auto& st : stores) {
      if (st.at == static_cast<uint32_t>(pos)) store_at(st.at, st.reason, {}, {});
    }
  };
  po.on_progress = [&](int done, int total) {
    computed_ = static_cast<uint32_t>(done);
    return progress ? progress(done, total, static_cast<int>(rep.cached_tokens)) : true;
  };
  const auto tp = Clock::now();
  rep.cancelled = !s_.prefill(prompt, po);
  rep.prefill_ms = ms_since(tp);
  computed_ = static_cast<uint32_t>(s_.tokens().size());
  (void)t0;
  return rep;
}

void CachedSession::shutdown() { store_live(cache::Reason::kShutdown, {}, {}); }

}  // namespace kvstash::engine
