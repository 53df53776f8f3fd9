#include "cache/request_flow.h"

#include <algorithm>
#include <deque>
#include <future>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "cache/entry_payload.h"
#include "util/log.h"
#include "util/size.h"
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

RestoreOutcome classify_restore_failure(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const FetchFailed&) {
    return RestoreOutcome::kGone;
  } catch (const StateRefused&) {
    return RestoreOutcome::kRefused;
  } catch (...) {
    return RestoreOutcome::kTransient;
  }
}

namespace {

// One restore step of the engine: a std::runtime_error out of it is the engine's verdict on the
// bytes (kv_engine.h), passed on as StateRefused; a std::system_error (a resource failure) and
// anything else pass as they are.
template <class Step>
void engine_step(Step&& step) {
  try {
    step();
  } catch (const StateRefused&) {
    throw;
  } catch (const std::system_error&) {
    throw;
  } catch (const std::runtime_error& ex) {
    throw StateRefused(ex.what());
  }
}

}  // namespace

Restored restore_plan(KvEngine& e, PrefixCache& cache, const RestorePlan& plan,
                      std::span<const Token> prompt, size_t first_chunk) {
  const auto t0 = Clock::now();
  if (first_chunk > plan.chunks.size()) throw std::logic_error("restore_plan: chunk out of range");
  std::vector<std::pair<ObjKind, Key>> objs;
  for (size_t i = first_chunk; i < plan.chunks.size(); ++i) {
    objs.push_back({ObjKind::kChunk, plan.chunks[i]});
  }
  if (plan.entry) objs.push_back({ObjKind::kEntry, *plan.entry});
  struct Fetched {
    Payload p;
    DeviceRef dev;  // a chunk's VRAM copy (then no payload)
    uint64_t bytes = 0;
    Source from = Source::kRecompute;
  };
  auto fetch = [&cache, &objs](size_t i) {
    Fetched f;
    f.p = cache.fetch(objs[i].first, objs[i].second, &f.from);
    if (f.p) f.bytes = f.p->size();
    return f;
  };
  auto on_device = [&cache, &objs](size_t i) {
    Fetched f;
    if (objs[i].first == ObjKind::kChunk) f.dev = cache.fetch_device(objs[i].second, &f.bytes);
    f.from = Source::kVram;
    return f;
  };
  const auto from = static_cast<uint32_t>(first_chunk * e.chunk());
  e.restore_begin(from, from);
  Restored r;
  EntryPayload entry;
  // Objects are fetched (read, checksummed) `prefetch` ahead on their own threads while this one
  // uploads: the reads and checksums of several run at once, and none waits for the upload.
  // (With four, a restore from RAM on a 16-core H100 host waited for checksums half of its
  // time.) No more than one per core, plus one: more only split the cores between them, which
  // delays the first object the upload waits for (a 2-core machine restored from the page cache
  // ~8% faster with three than with eight).
  const size_t prefetch = std::clamp<size_t>(std::thread::hardware_concurrency() + 1, 3, 8);
  std::deque<std::future<Fetched>> ahead;
  size_t queued = 0;
  auto refill = [&] {
    while (queued < objs.size() && ahead.size() < prefetch) {
      const size_t i = queued++;
      if (Fetched d = on_device(i); d.dev) {  // nothing to read: no thread for it
        std::promise<Fetched> ready;
        ready.set_value(std::move(d));
        ahead.push_back(ready.get_future());
      } else {
        ahead.push_back(std::async(std::launch::async, fetch, i));
      }
    }
  };
  // Uploads are queued without a wait per object (a wait per object left the copy engine idle
  // while the next one's copies were queued); their buffers are held until the engine has waited,
  // once per `window` bytes: at most a quarter of the memory the pool keeps for reuse, so that
  // the buffers in flight are reused ones, not freshly pinned. On a throw, the guard waits
  // before the held buffers go back to the pool.
  const uint64_t window = std::min<uint64_t>(256ull << 20, cache.pool().idle_limit() / 4);
  std::vector<Payload> uploading;
  std::vector<DeviceRef> uploading_dev;  // VRAM copies whose slots the queued copies read
  uint64_t uploading_bytes = 0;
  struct SyncOnExit {
    KvEngine& e;
    ~SyncOnExit() {
      try {
        e.restore_sync();
      } catch (...) {  // nothing else to do: the caller clears the engine
      }
    }
  } sync_on_exit{e};
  refill();
  for (size_t i = 0; i < objs.size(); ++i) {
    const auto tw = Clock::now();
    Fetched f = ahead.front().get();
    r.wait_seconds += ms_since(tw) / 1000.0;
    ahead.pop_front();
    if (!f.p && !f.dev) throw FetchFailed("a cached object of the prefix is gone or damaged");
    refill();
    r.bytes += f.bytes;
    r.by_source[static_cast<size_t>(f.from)] += f.bytes;
    if (f.dev) {
      engine_step([&] { e.restore_kv_device(*f.dev); });
      uploading_dev.push_back(std::move(f.dev));
    } else if (objs[i].first == ObjKind::kChunk) {
      engine_step([&] { e.restore_kv(f.p->span()); });
      uploading.push_back(f.p);
      uploading_bytes += f.p->size();
      if (uploading_bytes >= window) {
        engine_step([&] { e.restore_sync(); });
        uploading.clear();
        uploading_dev.clear();
        uploading_bytes = 0;
      }
    } else {
      auto d = decode_entry_payload(f.p->span());
      if (!d) throw StateRefused("cache entry payload is malformed");
      entry = std::move(*d);
      if (!entry.tail_kv.empty()) engine_step([&] { e.restore_kv(entry.tail_kv); });
    }
  }
  const std::vector<Token> toks(prompt.begin(), prompt.begin() + plan.restore_tokens);
  engine_step([&] { e.restore_end(entry.partial_state, toks, entry.logits); });
  if (plan.resume_at < plan.restore_tokens) e.trim(plan.resume_at);
  r.source = static_cast<Source>(std::max_element(r.by_source.begin(), r.by_source.end()) -
                                 r.by_source.begin());
  r.seconds = ms_since(t0) / 1000.0;
  return r;
}

void restore_loaded(KvEngine& e, const RestorePlan& plan, const PrefixCache::Loaded& l,
                    std::span<const Token> prompt) {
  std::vector<std::span<const uint8_t>> parts;
  for (const auto& c : l.chunks) parts.push_back(c->span());
  EntryPayload entry;
  if (plan.entry) {
    auto p = decode_entry_payload(l.entry->span());
    if (!p) throw std::runtime_error("cache entry payload is malformed");
    entry = std::move(*p);
    if (!entry.tail_kv.empty()) parts.push_back(entry.tail_kv);
  }
  restore_parts(e, 0, parts, entry.partial_state,
                {prompt.begin(), prompt.begin() + plan.restore_tokens}, entry.logits);
  if (plan.resume_at < plan.restore_tokens) e.trim(plan.resume_at);
}

RequestFlow::RequestFlow(KvEngine& engine, PrefixCache* cache, const StoreConfig& store)
    : e_(engine), cache_(cache), store_cfg_(store) {
  const uint32_t C = engine.chunk();
  if (store.boundary_align % C || store.continued_interval % C) {
    throw std::invalid_argument(
        "--cache-boundary-align and --cache-continued-interval must be "
        "multiples of the chunk size (" +
        std::to_string(C) + ", --chunk) so checkpoints fall on batch breaks");
  }
  if (cache && cache->config().chunk != C) {
    throw std::invalid_argument("the cache chunk size must equal the engine's prefill chunk");
  }
}

uint32_t RequestFlow::live_common(const std::vector<Token>& prompt) const {
  const auto& live = e_.tokens();
  uint32_t common = 0;
  const uint32_t lim = std::min<uint32_t>(computed_, prompt.size());
  while (common < lim && live[common] == prompt[common]) ++common;
  return common;
}

uint32_t RequestFlow::live_resume(const std::vector<Token>& prompt, uint32_t common,
                                  const Breaks& breaks) const {
  const auto& live = e_.tokens();
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
  BufferPool& pool = cache_->pool();
  req.chunk_payload = [&](uint32_t i) { return e_.extract_kv(i * C, (i + 1) * C, pool); };
  req.entry_payload = [&] {
    const uint32_t start = n / C * C;
    const Payload tail = n > start ? e_.extract_kv(start, n, pool) : nullptr;
    std::vector<uint8_t> live_partial;
    std::span<const uint8_t> partial;
    std::span<const float> logits;
    if (snapshot_only) {
      if (at_live_end) live_partial = e_.partial_state();
      partial = at_live_end ? std::span<const uint8_t>(live_partial) : checkpoint_.partial;
      if (with_logits) logits = e_.logits();
    }
    return encode_entry_payload(pool, tail ? tail->span() : std::span<const uint8_t>(), partial,
                                logits);
  };
  const auto r = cache_->store(req);
  if (stores_out_ && live_salt_ == stores_salt_) {
    stores_out_->push_back({reason, n, r.bytes,
                            r.stored    ? "stored"
                            : r.existed ? "existed"
                            : r.dropped ? "dropped"
                                        : "skipped"});
  }
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

void RequestFlow::store_before_cut(uint32_t keep, std::span<const Token> prompt,
                                   const std::string& salt) {
  if (!live_checkpoints_ || !cache_ || !e_.resumes_anywhere()) return;
  const uint32_t held = Breaks(e_.chunk(), breaks_).last_at_or_below(computed_);
  if (store_before_trim(held, keep, last_stored_, store_cfg_)) {
    store_live(Reason::kEvict, prompt, salt);
  }
}

void RequestFlow::drop_live() {
  e_.clear();
  computed_ = 0;
  last_stored_ = 0;
  checkpoint_ = {};
}

RestoreOutcome RequestFlow::try_restore(const RestorePlan& plan, std::span<const Token> prompt,
                                        size_t first_chunk, uint64_t page_cached,
                                        PrefillReport& rep, PrefixCache::Pin& pin) {
  pin = cache_->pin(plan);
  RestoreOutcome out = RestoreOutcome::kTransient;
  try {
    const Restored r = restore_plan(e_, *cache_, plan, prompt, first_chunk);
    rep.cached_tokens = plan.resume_at;
    rep.kept_tokens = static_cast<uint32_t>(first_chunk * e_.chunk());
    rep.restore_ms = r.seconds * 1000.0;
    rep.source = r.source;
    cache_->rates().observe_restore(r.source, r.bytes, r.seconds, page_cached);
    cache_->record_hit(plan, r.seconds);
    log::info("kv cache hit tokens=" + std::to_string(plan.resume_at) +
              (rep.kept_tokens ? " kept=" + std::to_string(rep.kept_tokens) : "") + " load=" +
              fmt_ms(rep.restore_ms) + " ms (waited for reads " + fmt_ms(r.wait_seconds * 1000) +
              " ms) from=" + source_name(r.source) + " size=" + format_size(r.bytes) + " chunks=" +
              std::to_string(plan.chunks.size() - first_chunk) + (plan.entry ? " entry=1" : ""));
    return RestoreOutcome::kServed;
  } catch (const std::exception& ex) {
    out = classify_restore_failure(std::current_exception());
    if (out == RestoreOutcome::kGone) {
      log::warn(std::string("kv cache restore incomplete, not served: ") + ex.what());
    } else if (out == RestoreOutcome::kRefused) {
      log::warn(std::string("kv cache restore refused, not served: ") + ex.what());
      ++rep.restore_failures;
      cache_->reject(plan, ex.what());
    } else {
      log::warn(std::string("kv cache restore failed, recomputing; the cached state is kept: ") +
                ex.what());
      ++rep.restore_errors;
    }
  }
  pin = {};
  drop_live();
  return out;
}

uint32_t RequestFlow::fork_in(RequestFlow& src, const std::vector<Token>& prompt,
                              const PromptInfo& info, const Breaks& breaks) {
  if (&src == this || !e_.resumes_anywhere() || !info.complete) return 0;
  if (src.e_.tokens().empty() || src.live_salt_ != info.salt || !src.live_reusable_) return 0;
  const uint32_t at = src.live_resume(prompt, src.live_common(prompt), breaks);
  if (at == 0) return 0;
  if (!e_.tokens().empty()) store_live(Reason::kEvict, prompt, info.salt);
  drop_live();
  if (!e_.fork_from(src.e_, at)) return 0;
  computed_ = at;
  breaks_ = src.breaks_;
  prompt_len_ = src.prompt_len_;
  live_checkpoints_ = src.live_checkpoints_;
  live_salt_ = src.live_salt_;
  live_reusable_ = true;
  log::info("kv cache fork tokens=" + std::to_string(at));
  return at;
}

PrefillReport RequestFlow::prefill(const std::vector<Token>& prompt, const PromptInfo& info,
                                   const std::function<bool(int, int, int)>& progress,
                                   const ForkSource* fork) {
  PrefillReport rep;
  rep.prompt_tokens = static_cast<uint32_t>(prompt.size());
  if (prompt.empty()) throw std::invalid_argument("empty prompt");
  // Stores made while this prefill runs are reported with it (the pointer never outlives it),
  // those of its own salt only: another tenant's evicted live state is none of its business.
  stores_out_ = &rep.stores;
  stores_salt_ = info.salt;
  struct Unset {
    std::vector<StoreOutcome>*& p;
    ~Unset() { p = nullptr; }
  } unset{stores_out_};
  const uint32_t C = e_.chunk();
  const Breaks breaks(C, info.boundaries);
  const bool snapshot_only = !e_.resumes_anywhere();
  if (fork) {
    if (fork->from) rep.forked_tokens = fork_in(*fork->from, prompt, info, breaks);
    if (fork->done) fork->done();
  }

  // Another tenant's live state is never reused (it would reveal that the prefix was seen).
  const bool own =
      !e_.tokens().empty() && info.salt == live_salt_ && live_reusable_ && info.complete;
  const uint32_t common = own ? live_common(prompt) : 0;
  const uint32_t live = own ? live_resume(prompt, common, breaks) : 0;
  RestorePlan plan;
  const bool restore = cache_ && info.policy.restore;
  if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
  PrefixCache::Pin pin;

  // The candidates: keep the live prefix; restore the cache's prefix (a delta on top of the live
  // state's whole chunks where it has some); recompute. The cheapest by the measured rates wins.
  // A delta keeps the live attention KV of whole chunks that prefill computed for this prompt's
  // tokens (chunk multiples are batch breaks of every prompt); a hybrid model's recurrent state
  // comes from the entry, so its live state need not end there.
  std::vector<PlanOption> cands;
  if (live > 0) cands.push_back({Source::kLive, live, live, {}});
  size_t first_chunk = 0;
  if (restore && plan.resume_at > live) {
    first_chunk = std::min<size_t>(common / C, plan.chunks.size());
    cands.push_back(cache_->restore_option(plan, first_chunk));
  }
  Source chosen = Source::kRecompute;
  uint64_t page_cached = 0;
  if (!cands.empty()) {
    cands.push_back({});      // recompute
    const RateModel longest;  // no prefill data: the largest start wins
    const Choice ch = choose(rep.prompt_tokens, cands,
                             cache_ && cache_->config().estimate ? cache_->rates() : longest);
    chosen = cands[ch.index].source;
    page_cached = cands[ch.index].page_cached;
    if (cands.size() > 2 || chosen != Source::kLive) {
      rep.plan_log = ch.log;
      log::info(ch.log);
    }
    if (cache_) cache_->count_choice(chosen);
  }
  const bool delta = chosen != Source::kLive && chosen != Source::kRecompute && first_chunk > 0;

  if (chosen == Source::kLive || delta) {
    const uint32_t keep = chosen == Source::kLive ? live : static_cast<uint32_t>(first_chunk * C);
    if (snapshot_only && delta) {
      store_live(Reason::kEvict, prompt, info.salt);  // the live state is replaced past `keep`
    } else {
      store_before_cut(keep, prompt, info.salt);
    }
    if (chosen == Source::kLive) {
      if (live < e_.tokens().size()) e_.trim(live);
      rep.from_live = true;
      rep.cached_tokens = live;
      rep.kept_tokens = live;
      rep.source = Source::kLive;
      log::info("kv cache live hit tokens=" + std::to_string(live));
    } else if (const auto out = try_restore(plan, prompt, first_chunk, page_cached, rep, pin);
               out != RestoreOutcome::kServed) {
      // What failed for the bytes is gone and a new plan finds the next best prefix; after a
      // transient failure the request recomputes.
      if (out == RestoreOutcome::kTransient) chosen = Source::kRecompute;
      plan = cache_->plan(prompt, info.boundaries, info.salt);
    }
  }
  if (rep.cached_tokens == 0) {
    // Live miss: the live state is about to be replaced, and may be the only copy (evict store).
    // Prefixes of the incoming prompt are protected while it makes room: evicting them would
    // throw away the hit this request is about to look up.
    if (!e_.tokens().empty()) {
      store_live(Reason::kEvict, prompt, info.salt);
      if (restore) plan = cache_->plan(prompt, info.boundaries, info.salt);
    }
    drop_live();
    for (int attempt = 0;
         chosen != Source::kRecompute && restore && plan.resume_at > 0 && attempt < 3; ++attempt) {
      const uint64_t cached = cache_->restore_option(plan, 0).page_cached;
      const auto out = try_restore(plan, prompt, 0, cached, rep, pin);
      if (out == RestoreOutcome::kServed || out == RestoreOutcome::kTransient) break;
      // restore_plan's fetch or reject() removed what failed, so this plan is a different one.
      plan = cache_->plan(prompt, info.boundaries, info.salt);
    }
    if (restore && rep.cached_tokens == 0) cache_->record_miss();
  }
  computed_ = rep.cached_tokens;
  breaks_ = info.boundaries;
  prompt_len_ = rep.prompt_tokens;
  live_checkpoints_ = info.policy.checkpoints;
  live_salt_ = info.salt;
  live_reusable_ = info.complete;
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
  double store_ms = 0;  // checkpoints taken inside the prefill (not prefill speed)
  pp.on_snapshot = [&](uint32_t pos) {
    const auto ts = Clock::now();
    computed_ = pos;
    if (snapshot_only && pos == last_break) checkpoint_ = {last_break, e_.partial_state()};
    for (const auto& st : stores) {
      if (st.at == pos) store_at(st.at, st.reason, {}, {});
    }
    store_ms += ms_since(ts);
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
  if (cache_ && !rep.cancelled && computed_ > rep.cached_tokens) {
    cache_->rates().observe_prefill(rep.cached_tokens, computed_,
                                    std::max(0.0, rep.prefill_ms - store_ms) / 1000.0);
  }
  return rep;
}

void RequestFlow::shutdown() { store_live(Reason::kShutdown, {}, {}); }

// The next turn's prompt starts with this one's: the live state up to its last break is that
// turn's cold anchor, stored ahead of time rather than when it might be the only copy.
void RequestFlow::store_turn() {
  if (store_cfg_.turn_stores) store_live(Reason::kCold, {}, {});
}

void RequestFlow::reset() {
  drop_live();
  breaks_.clear();
  prompt_len_ = 0;
}

}  // namespace kvstash::cache
