#include "cache/request_flow.h"

#include <algorithm>
#include <stdexcept>

#include "cache/entry_payload.h"
#include "util/log.h"
#include "util/timing.h"

namespace kvstash::cache {

RequestPolicy policy_for_scope(const Scope& scope, std::span<const Token> prompt,
                               const std::vector<uint32_t>& boundaries,
                               const std::vector<std::vector<Token>>& history, uint32_t min_tokens,
                               std::string* log) {
  RequestPolicy p;
  switch (scope.kind) {
    case Scope::Kind::kOff:
      p.restore = false;
      p.checkpoints = false;
      break;
    case Scope::Kind::kFull:
      break;
    case Scope::Kind::kFixed:
    case Scope::Kind::kAuto: {
      p.checkpoints = false;
      const auto c = choose_scope_boundary(scope, prompt, boundaries, history, min_tokens);
      if (log) *log = c.log;
      p.scope_boundary = c.boundary;
      break;
    }
  }
  return p;
}

void restore_plan(KvEngine& e, const RestorePlan& plan, const PrefixCache::Loaded& l,
                  std::span<const Token> prompt) {
  std::vector<std::span<const uint8_t>> parts(l.chunks.begin(), l.chunks.end());
  EntryPayload entry;
  if (plan.entry) {
    auto p = decode_entry_payload(l.entry);
    if (!p) throw std::runtime_error("cache entry payload is malformed");
    entry = std::move(*p);
    if (!entry.tail_kv.empty()) parts.push_back(entry.tail_kv);
  }
  const std::vector<Token> toks(prompt.begin(), prompt.begin() + plan.restore_tokens);
  e.restore(parts, entry.partial_state, toks, entry.logits);
  if (plan.resume_at < plan.restore_tokens) e.trim(plan.resume_at);
}

RequestFlow::RequestFlow(KvEngine& engine, PrefixCache* cache, const StoreConfig& store)
    : e_(engine), cache_(cache), store_cfg_(store) {
  const uint32_t C = engine.chunk();
  if (store.boundary_align % C || store.continued_interval % C) {
    throw std::invalid_argument(
        "--cache-boundary-align and --cache-continued-interval must be "
        "multiples of the chunk size (" +
        std::to_string(C) + ") so checkpoints fall on batch breaks");
  }
  if (cache && cache->config().chunk != C) {
    throw std::invalid_argument("the cache chunk size must equal the engine's prefill chunk");
  }
}

uint32_t RequestFlow::live_resume(const std::vector<Token>& prompt, const Breaks& breaks) const {
  const auto& live = e_.tokens();
  uint32_t common = 0;
  const uint32_t lim = std::min<uint32_t>(computed_, prompt.size());
  while (common < lim && live[common] == prompt[common]) ++common;
  if (e_.resumes_anywhere()) {
    const uint32_t cap = std::min<uint32_t>(common, prompt.size() - 1);
    // A break of the new prompt that was also a break when the live state was computed.
    Breaks old_breaks(e_.chunk(), breaks_);
    for (uint32_t r = breaks.last_at_or_below(cap); r > 0; r = breaks.last_at_or_below(r - 1)) {
      if (old_breaks.is_break(r)) return r;
    }
    return 0;
  }
  // Snapshot-only: the live state continues only if it is exactly a prefix that prefill left.
  const bool whole = common == live.size() && computed_ == live.size();
  return whole && common < prompt.size() && breaks.is_break(common) ? common : 0;
}

bool RequestFlow::store_at(uint32_t n, Reason reason, std::span<const Token> protect,
                           const std::string& protect_salt) {
  if (!cache_ || n == 0) return false;
  const bool snapshot_only = !e_.resumes_anywhere();
  if (n > e_.tokens().size()) {
    throw std::logic_error("store of " + std::to_string(n) + " tokens from a live state of " +
                           std::to_string(e_.tokens().size()) + " (engine cleared without reset?)");
  }
  const bool at_live_end = n == e_.tokens().size();
  if (snapshot_only && !at_live_end && checkpoint_.at != n) return false;
  const uint32_t C = e_.chunk();
  PrefixCache::StoreRequest req;
  const std::vector<Token> toks(e_.tokens().begin(), e_.tokens().begin() + n);
  req.tokens = toks;
  req.reason = reason;
  req.protect = protect;
  req.salt = live_salt_;
  req.protect_salt = protect_salt;
  req.drop_superseded = store_cfg_.drop_superseded;
  // Logits matter only to a request whose prompt ends exactly here; any longer prompt computes
  // its own. Recurrent states cannot recompute them, so they are kept for the prompt end only.
  const bool with_logits = snapshot_only && at_live_end && n == prompt_len_;
  req.has_logits = with_logits;
  req.chunk_payload = [&](uint32_t i) { return e_.extract_kv(i * C, (i + 1) * C); };
  req.entry_payload = [&] {
    EntryPayload p;
    const uint32_t start = n / C * C;
    if (n > start) p.tail_kv = e_.extract_kv(start, n);
    if (snapshot_only) {
      p.partial_state = at_live_end ? e_.partial_state() : checkpoint_.partial;
      if (with_logits) p.logits = e_.logits();
    }
    return encode_entry_payload(p);
  };
  const auto r = cache_->store(req);
  if (r.stored || r.existed) last_stored_ = n;
  return r.stored;
}

void RequestFlow::store_live(Reason reason, std::span<const Token> protect,
                             const std::string& protect_salt) {
  if (!cache_ || computed_ == 0 || !live_checkpoints_) return;
  const Breaks breaks(e_.chunk(), breaks_);
  uint32_t at = breaks.last_at_or_below(computed_);
  if (!e_.resumes_anywhere()) at = checkpoint_.at;
  if (!store_live_state(at, last_stored_, store_cfg_)) return;
  store_at(at, reason, protect, protect_salt);
}

PrefillReport RequestFlow::prefill(const std::vector<Token>& prompt, const PromptInfo& info,
                                   const std::function<bool(int, int, int)>& progress) {
  PrefillReport rep;
  rep.prompt_tokens = static_cast<uint32_t>(prompt.size());
  if (prompt.empty()) throw std::invalid_argument("empty prompt");
  const uint32_t C = e_.chunk();
  const Breaks breaks(C, info.boundaries);
  const bool snapshot_only = !e_.resumes_anywhere();

  // Another tenant's live state is never reused (it would reveal that the prefix was seen).
  uint32_t live = e_.tokens().empty() || info.salt != live_salt_ ? 0 : live_resume(prompt, breaks);
  RestorePlan plan;
  const bool restore = cache_ && info.policy.restore;
  if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
  PrefixCache::Pin pin;

  if (live > 0 && live >= plan.resume_at) {
    if (live_checkpoints_ && cache_ && e_.resumes_anywhere()) {
      const uint32_t held = Breaks(C, breaks_).last_at_or_below(computed_);
      if (store_before_trim(held, live, last_stored_, store_cfg_)) {
        store_live(Reason::kEvict, prompt, info.salt);
      }
    }
    if (live < e_.tokens().size()) e_.trim(live);
    rep.from_live = true;
    rep.cached_tokens = live;
    log::info("kv cache live hit tokens=" + std::to_string(live));
  } else {
    // Live miss: the live state is about to be replaced, and may be the only copy (evict store).
    // Prefixes of the incoming prompt are protected while it makes room: evicting them would
    // throw away the hit this request is about to look up.
    if (!e_.tokens().empty()) {
      store_live(Reason::kEvict, prompt, info.salt);
      if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
    }
    e_.clear();
    computed_ = 0;
    last_stored_ = 0;
    checkpoint_ = {};
    for (int attempt = 0; restore && plan.resume_at > 0 && attempt < 3; ++attempt) {
      const auto tl = Clock::now();
      pin = cache_->pin(plan);
      auto loaded = cache_->load(plan);
      if (loaded) {
        try {
          restore_plan(e_, plan, *loaded, prompt);
          rep.cached_tokens = plan.resume_at;
          rep.restore_ms = ms_since(tl);
          cache_->record_hit(plan, rep.restore_ms / 1000.0);
          log::info("kv cache hit tokens=" + std::to_string(plan.resume_at) + " load=" +
                    fmt_ms(rep.restore_ms) + " ms chunks=" + std::to_string(plan.chunks.size()) +
                    (plan.entry ? " entry=1" : ""));
          break;
        } catch (const std::exception& ex) {
          log::warn(std::string("kv cache restore failed, not served: ") + ex.what());
          ++rep.restore_failures;
          e_.clear();
          cache_->reject(plan, ex.what());
        }
      }
      // load() or reject() removed what failed, so this plan is a different one.
      plan = cache_->plan(prompt, info.boundaries, info.salt);
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
  if (snapshot_only && rep.cached_tokens > 0) checkpoint_ = {rep.cached_tokens, e_.partial_state()};

  // Checkpoints this prefill takes.
  PrefillFacts facts{rep.prompt_tokens, rep.cached_tokens, info.anchor};
  ColdDecision cold;
  std::vector<PlannedStore> stores;
  if (info.policy.scope_boundary > 0) {
    if (cache_ && info.policy.scope_boundary > rep.cached_tokens) {
      stores.push_back({info.policy.scope_boundary, Reason::kScope});
    }
  } else if (cache_ && info.policy.checkpoints) {
    stores = prefill_stores(facts, store_cfg_, &cold);
    if (!cold.hint.empty()) log::info(cold.hint);
  }
  PrefillPlan pp;
  pp.boundaries = info.boundaries;
  for (const auto& st : stores) pp.snapshot_at.push_back(st.at);
  // Snapshot-only engines keep their state at the last break below the prompt end: that is where
  // the next turn of the conversation resumes.
  const uint32_t last_break = breaks.last_at_or_below(rep.prompt_tokens - 1);
  if (snapshot_only && last_break > rep.cached_tokens) pp.snapshot_at.push_back(last_break);
  pp.on_snapshot = [&](uint32_t pos) {
    computed_ = pos;
    if (snapshot_only && pos == last_break) checkpoint_ = {last_break, e_.partial_state()};
    for (const auto& st : stores) {
      if (st.at == pos) store_at(st.at, st.reason, {}, {});
    }
  };
  pp.on_progress = [&](uint32_t done, uint32_t total) {
    computed_ = done;
    return progress ? progress(static_cast<int>(done), static_cast<int>(total),
                               static_cast<int>(rep.cached_tokens))
                    : true;
  };
  const auto tp = Clock::now();
  rep.cancelled = !e_.prefill(prompt, pp);
  rep.prefill_ms = ms_since(tp);
  computed_ = static_cast<uint32_t>(e_.tokens().size());
  return rep;
}

void RequestFlow::shutdown() { store_live(Reason::kShutdown, {}, {}); }

void RequestFlow::reset() {
  e_.clear();
  breaks_.clear();
  computed_ = 0;
  last_stored_ = 0;
  prompt_len_ = 0;
  checkpoint_ = {};
}

}  // namespace kvstash::cache
