#include "replay/replay.h"

#include <stdlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>

#include "cache/oracle.h"
#include "cache/prefix_cache.h"
#include "cache/request_flow.h"
#include "cache/slot_choice.h"

namespace kvstash::replay {

namespace {

constexpr size_t kHistory = 64;      // as server/slot_pool.cpp: recent prompts for auto:N
constexpr size_t kHistorySalts = 1;  // a trace has no cache_salt

std::array<uint8_t, 16> fingerprint_of(const std::string& s) {
  std::array<uint8_t, 16> fp{};
  uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
  for (unsigned char c : s) {
    a = (a ^ c) * 0x100000001b3ull;
    b = (b ^ c) * 0x100000001b3ull + 7;
  }
  for (int i = 0; i < 8; ++i) {
    fp[i] = static_cast<uint8_t>(a >> (8 * i));
    fp[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
  return fp;
}

void add_stats(ReplayResult& r, const cache::CacheStats& s, uint64_t scale) {
  r.bytes_written += s.bytes_written * scale;
  r.bytes_read += s.bytes_read * scale;
  r.stores += s.stores;
  r.stores_skipped += s.stores_skipped;
  r.superseded_dropped += s.superseded_dropped;
  r.own_writes_evicted += s.own_writes_evicted;
  r.evictions += s.evictions;
  for (const auto& [k, v] : s.stores_by_reason) r.stores_by_reason[k] += v;
  for (const auto& [k, v] : s.evictions_by_reason) r.evictions_by_reason[k] += v;
}

// The server's decision (cache::policy_for_scope), over the replay's own history.
cache::RequestPolicy policy_for(const cache::Scope& scope, const TraceRecord& rec,
                                const cache::PromptHistory& history, uint32_t min_tokens) {
  return cache::policy_for_scope(scope, rec.tokens, rec.boundaries, history.recent(""), min_tokens);
}

}  // namespace

std::vector<uint32_t> oracle_reuse(const std::vector<TraceRecord>& trace) {
  std::vector<std::span<const cache::Token>> prompts;
  for (const auto& r : trace) {
    if (r.type == TraceRecord::Type::kRequest) prompts.push_back(r.tokens);
  }
  return cache::longest_earlier_prefixes(prompts);
}

ReplayResult run_replay(const std::vector<TraceRecord>& trace, const ReplayConfig& cfg) {
  if (cfg.slots < 1) throw std::invalid_argument("--slots must be at least 1");
  ReplayResult res;
  res.label = cfg.label;
  res.oracle = oracle_reuse(trace);

  namespace fs = std::filesystem;
  std::string dir = cfg.cache_dir;
  const bool temporary = dir.empty();
  if (temporary) {
    // tmpfs where there is one: the disk tier's fsyncs cost nothing there, and the objects are
    // 1/scale of the real size.
    std::error_code ec;
    const fs::path tmp =
        fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    const fs::path base = tmp / "kvstash-replay-XXXXXX";
    std::string tmpl = base.string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary directory");
    dir = tmpl;
  }
  struct Cleanup {
    std::string dir;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(dir, ec);
    }
  } cleanup{dir, temporary};

  int64_t clock = cache::now_ms();
  cache::CacheConfig cc;
  cc.dir = dir;
  cc.disk_budget = cfg.disk_budget / cfg.sim.scale;
  cc.ram_budget = cfg.ram_budget / cfg.sim.scale;
  cc.chunk = cfg.sim.chunk;
  cc.snapshot_only = cfg.sim.hybrid;
  cc.evict = cfg.evict;
  // The model-free engine prefills in no time, so measured rates would always say recompute:
  // replay measures reuse with the longest-prefix rule.
  cc.estimate = false;
  cc.store_threads = 0;  // the virtual clock needs each store finished before the next request
  cc.clock = [&clock] { return clock; };
  const auto fp = fingerprint_of(cfg.sim.describe());

  struct Slot {
    std::unique_ptr<SimEngine> engine;
    std::unique_ptr<cache::RequestFlow> flow;
    uint64_t last_used = 0;
    size_t computed = 0;  // live tokens prefill computed (the rest were decoded)
  };
  std::unique_ptr<cache::PrefixCache> cache;
  std::vector<Slot> slots;
  cache::PromptHistory history(kHistory, kHistorySalts);
  auto open = [&] {
    cache = std::make_unique<cache::PrefixCache>(cc, fp);
    slots.clear();
    for (int i = 0; i < cfg.slots; ++i) {
      Slot s;
      s.engine = std::make_unique<SimEngine>(cfg.sim);
      s.flow = std::make_unique<cache::RequestFlow>(*s.engine, cache.get(), cfg.store);
      slots.push_back(std::move(s));
    }
  };
  auto close = [&] {
    for (auto& s : slots) s.flow->shutdown();
    add_stats(res, cache->stats(), cfg.sim.scale);
    for (auto& s : slots) {
      res.tokens_prefilled += s.engine->prefilled();
      res.wrong_states += s.engine->wrong_states();
    }
    slots.clear();
    cache.reset();
  };
  open();

  uint64_t seq = 0;
  for (const auto& rec : trace) {
    if (rec.type == TraceRecord::Type::kRestart) {
      close();
      history.clear();  // a new process remembers no recent prompts
      ++res.restarts;
      open();
      continue;
    }
    clock += static_cast<int64_t>(cfg.interval_s * 1000);
    cache::PromptInfo info;
    info.boundaries = rec.boundaries;
    info.anchor = rec.anchor;
    info.policy = policy_for(cfg.scope, rec, history, cfg.store.min_tokens);
    history.add("", rec.tokens);

    // The server's rule (cache/slot_choice.h), forks included; requests run one at a time, so
    // every slot is idle.
    std::vector<cache::SlotState> states;
    for (const auto& s : slots) {
      states.push_back(
          {true, cache::shared_prefix(s.engine->tokens(), rec.tokens), s.last_used, s.computed});
    }
    const cache::ForkRule rule{slots.size() > 1 && !cfg.sim.hybrid, cfg.sim.chunk};
    const cache::SlotChoice choice = *cache::choose_slot_or_fork(states, rule);
    Slot& s = slots[choice.slot];
    cache::ForkSource fork;
    if (choice.fork_from) fork.from = slots[*choice.fork_from].flow.get();
    const auto rep = s.flow->prefill(rec.tokens, info, nullptr, &fork);
    s.computed = s.engine->tokens().size();
    s.engine->decode(rec.gen);
    s.last_used = ++seq;

    ++res.requests;
    res.prompt_tokens += rec.tokens.size();
    if (rep.cached_tokens > 0) ++res.hits;
    if (rep.from_live) ++res.live_hits;
    if (rep.forked_tokens > 0) ++res.forks;
    res.tokens_reused += rep.cached_tokens;
    res.cached.push_back(rep.cached_tokens);
  }
  for (uint32_t o : res.oracle) res.oracle_tokens += o;
  // The end of the trace is a graceful exit too.
  {
    for (auto& s : slots) s.flow->shutdown();
    const auto st = cache->stats();
    res.final_disk_bytes = st.disk_bytes * cfg.sim.scale;
    res.final_entries = st.entries;
    res.final_chunks = st.chunks;
    for (auto& s : slots) s.flow.reset();  // no second shutdown store in close()
    add_stats(res, st, cfg.sim.scale);
    for (auto& s : slots) {
      res.tokens_prefilled += s.engine->prefilled();
      res.wrong_states += s.engine->wrong_states();
    }
    slots.clear();
    cache.reset();
  }
  return res;
}

}  // namespace kvstash::replay
