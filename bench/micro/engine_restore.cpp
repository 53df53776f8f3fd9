// The whole engine restore (needs a model: KVSTASH_BENCH_MODEL=path.gguf): PrefixCache plan + load
// + restore into a llama.cpp context, next to the raw read of the same bytes. Arg: prefix tokens.
//
// The stored prefix is synthesised: one real 256-token KV chunk is computed by prefill, then
// copied with its positions rewritten to make the chunks of a long prefix. The bytes and the
// path through the cache and llama.cpp are those of a real restore; only the K/V values repeat.
// (A real prefill of the 0.6B shape runs at ~55 tok/s here at long context.)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "cache/entry_payload.h"
#include "engine/cached_session.h"
#include "engine/kv_blob.h"
#include "engine/model.h"
#include "engine/session.h"
#include "micro.h"

namespace fs = std::filesystem;

namespace kvstash::micro {

namespace {

struct EngineFixture {
  std::unique_ptr<engine::Model> model;
  std::map<uint64_t, std::unique_ptr<engine::Session>> sessions;
  std::vector<uint8_t> chunk0;  // the KV section of tokens [0, 256)
  size_t cell_ext = 0;
};

EngineFixture* engine_fixture() {
  static std::unique_ptr<EngineFixture> f;
  static bool tried = false;
  if (tried) return f.get();
  tried = true;
  const char* path = std::getenv("KVSTASH_BENCH_MODEL");
  if (!path || !*path) return nullptr;
  f = std::make_unique<EngineFixture>();
  engine::set_llama_verbose(false);
  f->model = std::make_unique<engine::Model>(path);
  f->cell_ext = f->model->cell_ext_size();
  engine::SessionOptions so;
  so.n_ctx = 2 * kChunk;
  so.chunk = kChunk;
  engine::Session s(*f->model, so);
  std::vector<engine::Token> toks = random_tokens(kChunk, 4);
  for (auto& t : toks) t %= f->model->n_vocab();
  s.prefill(toks);
  f->chunk0 = s.extract_kv(0, kChunk);
  return f.get();
}

engine::Session& engine_session(EngineFixture& f, uint64_t tokens) {
  auto& s = f.sessions[tokens];
  if (!s) {
    engine::SessionOptions so;
    so.n_ctx = static_cast<int>(tokens + kChunk);
    so.chunk = kChunk;
    s = std::make_unique<engine::Session>(*f.model, so);
  }
  return *s;
}

// Chunk i: chunk0 with positions i*256 .. i*256+255.
std::vector<uint8_t> shifted_chunk(const EngineFixture& f, uint32_t i) {
  std::vector<uint8_t> c = f.chunk0;
  const auto sec = engine::parse_kv_section(c, f.cell_ext);
  for (uint32_t j = 0; j < sec.cell_count; ++j) {
    const int32_t pos = static_cast<int32_t>(i * kChunk + j);
    std::memcpy(c.data() + sec.meta_offset + j * sec.meta_cell_size, &pos, sizeof(pos));
  }
  return c;
}

void engine_restore(benchmark::State& state, bool cold) {
  EngineFixture* f = engine_fixture();
  if (!f) {
    skip(state, "set KVSTASH_BENCH_MODEL=model.gguf to measure the engine restore");
    for (auto _ : state) {
    }
    return;
  }
  if (f->model->resume_kind() != engine::ResumeKind::kAnyBoundary || f->model->hybrid()) {
    skip(state, "the engine restore benchmark needs an attention-only model");
    for (auto _ : state) {
    }
    return;
  }
  const uint64_t tokens = state.range(0) / kChunk * kChunk;
  const uint32_t n = static_cast<uint32_t>(tokens / kChunk);
  engine::Session& s = engine_session(*f, tokens);
  const std::string dir = sub_dir(cold ? "engine-cold" : "engine");
  cache::CacheConfig cc = cache_config(dir);
  cache::PrefixCache pc(cc, s.fingerprint().bytes);
  auto toks = random_tokens(tokens, 12);
  {
    cache::PrefixCache::StoreRequest req;
    req.tokens = toks;
    req.reason = cache::Reason::kShutdown;
    req.chunk_payload = [&](uint32_t i) { return Payload(pc.pool().copy(shifted_chunk(*f, i))); };
    req.entry_payload = [&] { return Payload(pc.pool().copy(cache::encode_entry_payload({}))); };
    if (!pc.store(req).stored || !pc.drain(-1)) {
      state.SkipWithError("store failed");
      for (auto _ : state) {
      }
      return;
    }
  }
  toks.push_back(1);
  const size_t bytes = f->chunk0.size() * n;
  if (cold) check_cold(state, dir);
  using Clock = std::chrono::steady_clock;
  double t_load = 0, t_restore = 0;
  for (auto _ : state) {
    if (cold) drop_pages_untimed(state, dir);
    const auto t0 = Clock::now();
    const auto plan = pc.plan(toks, {});
    auto loaded = pc.load(plan);
    if (!loaded || plan.restore_tokens != tokens) {
      state.SkipWithError("load failed");
      break;
    }
    const auto t1 = Clock::now();
    engine::restore_loaded(s, plan, *loaded, toks);
    const auto t2 = Clock::now();
    t_load += std::chrono::duration<double>(t1 - t0).count();
    t_restore += std::chrono::duration<double>(t2 - t1).count();
    if (s.tokens().size() != tokens) {
      state.SkipWithError("restored the wrong number of tokens");
      break;
    }
  }
  set_bytes(state, bytes);
  const double it = static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  state.counters["load_ms"] = 1e3 * t_load / it;
  state.counters["restore_ms"] = 1e3 * t_restore / it;
  state.counters["MiB"] = static_cast<double>(bytes) / (1 << 20);
  fs::remove_all(dir);
}
void BM_EngineRestore(benchmark::State& s) { engine_restore(s, false); }
void BM_EngineRestoreCold(benchmark::State& s) { engine_restore(s, true); }

// The raw read of the same bytes for the engine ratio: files of the engine's chunk size.
void engine_raw_read(benchmark::State& state, bool cold) {
  EngineFixture* f = engine_fixture();
  if (!f) {
    skip(state, "set KVSTASH_BENCH_MODEL=model.gguf to measure the engine restore");
    for (auto _ : state) {
    }
    return;
  }
  time_raw_reads(state, "engine-raw", state.range(0) / kChunk, f->chunk0, cold);
}
void BM_EngineRawRead(benchmark::State& s) { engine_raw_read(s, false); }
void BM_EngineRawReadCold(benchmark::State& s) { engine_raw_read(s, true); }

}  // namespace

void register_engine() {
  const struct {
    const char* name;
    void (*fn)(benchmark::State&);
  } eng[] = {{"EngineRawRead", BM_EngineRawRead},
             {"EngineRestore", BM_EngineRestore},
             {"EngineRawReadCold", BM_EngineRawReadCold},
             {"EngineRestoreCold", BM_EngineRestoreCold}};
  const char* model = std::getenv("KVSTASH_BENCH_MODEL");
  if (!model || !*model) {
    std::fprintf(stderr,
                 "note: KVSTASH_BENCH_MODEL is not set: the Engine* benchmarks are skipped\n");
    return;
  }
  for (uint64_t t : g_flags.engine_tokens) {
    for (const auto& b : eng) {
      benchmark::RegisterBenchmark(b.name, b.fn)
          ->Arg(static_cast<int64_t>(t))
          ->ArgName("tokens")
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace kvstash::micro
