// Prefix index lookup and chunk hashing: the walk of a prompt's chain through an index of 1k-100k
// chunks, the whole lookup with the hashing, and the hash chain alone.
#include <map>
#include <memory>

#include "cache/prefix_index.h"
#include "micro.h"

namespace kvstash::micro {

namespace {

// An index of `n_chunks` chunks: the prompt's own chain (as much of it as fits) with an entry at
// its end, the rest other conversations' chains of 64 chunks each.
struct IndexFixture {
  std::vector<cache::Token> prompt;
  cache::Chain chain;
  std::unique_ptr<cache::PrefixIndex> index;
};

IndexFixture& index_fixture(uint64_t n_chunks, uint64_t prompt_tokens) {
  static std::map<std::pair<uint64_t, uint64_t>, std::unique_ptr<IndexFixture>> cache;
  auto& f = cache[{n_chunks, prompt_tokens}];
  if (f) return *f;
  f = std::make_unique<IndexFixture>();
  const cache::Key root = cache::root_key(kFingerprint);
  f->prompt = random_tokens(prompt_tokens, 7);
  f->chain = cache::make_chain(root, f->prompt, kChunk);
  f->index = std::make_unique<cache::PrefixIndex>(root, kChunk, false);
  auto add_chunk = [&](const cache::Key& key, const cache::Key& parent, uint32_t depth) {
    cache::ObjectMeta m;
    m.key = key;
    m.parent = parent;
    m.depth = depth;
    m.n_tokens = kChunk;
    m.payload_bytes = 114688ull * kChunk;
    f->index->upsert(m, {});
  };
  const size_t own = std::min<size_t>(n_chunks, f->chain.keys.size());
  for (size_t i = 0; i < own; ++i) add_chunk(f->chain.keys[i], f->chain.parent_of(i), i);
  cache::ObjectMeta e;
  e.kind = cache::ObjKind::kEntry;
  e.parent = f->chain.parent_of(own);
  e.key = cache::entry_key(e.parent, {});
  e.depth = static_cast<uint32_t>(own);
  e.n_tokens = static_cast<uint32_t>(own * kChunk);
  f->index->upsert(e, {});
  std::mt19937_64 rng(11);
  for (size_t added = own; added < n_chunks;) {
    cache::Key parent = root;
    for (uint32_t d = 0; d < 64 && added < n_chunks; ++d, ++added) {
      const cache::Key k = random_key(rng);
      add_chunk(k, parent, d);
      parent = k;
    }
  }
  return *f;
}

// Args: chunks in the index, prompt tokens. The walk of a prompt's precomputed chain.
void BM_IndexPlan(benchmark::State& state) {
  auto& f = index_fixture(state.range(0), state.range(1));
  const cache::Breaks breaks(kChunk, {});
  uint32_t got = 0;
  for (auto _ : state) {
    auto plan = f.index->plan(f.prompt, f.chain, breaks);
    got = plan.restore_tokens;
    benchmark::DoNotOptimize(plan);
  }
  const double chunks = static_cast<double>(f.chain.keys.size());
  state.SetItemsProcessed(state.iterations());  // lookups/s
  state.counters["chunks"] = chunks;
  state.counters["restorable_tok"] = got;
  state.counters["t_per_chunk"] = benchmark::Counter(
      chunks, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// The whole lookup as PrefixCache::plan does it minus locking: hash the prompt into its chain,
// then walk the index.
void BM_IndexLookup(benchmark::State& state) {
  auto& f = index_fixture(state.range(0), state.range(1));
  const cache::Breaks breaks(kChunk, {});
  for (auto _ : state) {
    const auto chain = cache::make_chain(f.index->root(), f.prompt, kChunk);
    auto plan = f.index->plan(f.prompt, chain, breaks);
    benchmark::DoNotOptimize(plan);
  }
  const double chunks = static_cast<double>(f.chain.keys.size());
  state.SetItemsProcessed(state.iterations());
  state.counters["t_per_chunk"] = benchmark::Counter(
      chunks, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Args: prompt tokens. The hash chain over a prompt (one XXH3-128 per 256-token chunk).
void BM_ChainKeys(benchmark::State& state) {
  const auto toks = random_tokens(state.range(0), 3);
  const cache::Key root = cache::root_key(kFingerprint);
  for (auto _ : state) {
    auto ch = cache::make_chain(root, toks, kChunk);
    benchmark::DoNotOptimize(ch);
  }
  state.SetItemsProcessed(state.iterations() * toks.size());  // tokens/s
  state.SetBytesProcessed(state.iterations() * toks.size() * sizeof(cache::Token));
}

}  // namespace

void register_index() {
  for (uint64_t chunks : g_flags.index_chunks) {
    for (int64_t toks : {32768, 102400}) {
      benchmark::RegisterBenchmark("IndexPlan", BM_IndexPlan)
          ->Args({static_cast<int64_t>(chunks), toks})
          ->ArgNames({"chunks", "prompt_tok"});
      benchmark::RegisterBenchmark("IndexLookup", BM_IndexLookup)
          ->Args({static_cast<int64_t>(chunks), toks})
          ->ArgNames({"chunks", "prompt_tok"});
    }
  }
  benchmark::RegisterBenchmark("ChainKeys", BM_ChainKeys)
      ->Arg(32768)
      ->Arg(102400)
      ->ArgName("tokens");
}

}  // namespace kvstash::micro
