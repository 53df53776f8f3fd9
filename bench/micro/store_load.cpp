// Store and load of KV-sized objects through the disk tier and the PrefixCache, each next to the
// raw sequential write()+fsync / read() of the same bytes in the same directory, and memcpy for
// scale. Args: KV bytes per token, objects per iteration.
#include <cstring>
#include <filesystem>
#include <map>

#include "cache/entry_payload.h"
#include "micro.h"
#include "tiers/disk_tier.h"

namespace fs = std::filesystem;

namespace kvstash::micro {

namespace {

size_t object_bytes(const benchmark::State& state) {
  return static_cast<size_t>(state.range(0)) * kChunk;
}

const std::vector<uint8_t>& payload_of(size_t bytes) {
  static std::map<size_t, std::vector<uint8_t>> cache;
  auto& p = cache[bytes];
  if (p.empty()) p = random_bytes(bytes, bytes);
  return p;
}

// write() + fsync of new files: the physical limit of the stores.
void BM_RawWrite(benchmark::State& state) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const auto& payload = payload_of(bytes);
  const std::string dir = sub_dir("raw-write");
  for (auto _ : state) {
    write_raw_files(dir, n, payload);
    state.PauseTiming();
    fs::remove_all(dir);
    fs::create_directories(dir);
    state.ResumeTiming();
  }
  set_bytes(state, n * bytes);
  fs::remove_all(dir);
}

void raw_read(benchmark::State& state, bool cold) {
  time_raw_reads(state, "raw-read", state.range(1), payload_of(object_bytes(state)), cold);
}
void BM_RawRead(benchmark::State& s) { raw_read(s, false); }
void BM_RawReadCold(benchmark::State& s) { raw_read(s, true); }

cache::ObjectMeta chunk_meta(const cache::Key& key, size_t bytes) {
  cache::ObjectMeta m;
  m.key = key;
  m.n_tokens = kChunk;
  m.payload_bytes = bytes;
  m.created_ms = cache::now_ms();
  return m;
}

// DiskTier::put: temp file, write, fsync, rename, directory fsync.
void BM_TierPut(benchmark::State& state) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const auto& payload = payload_of(bytes);
  const std::string dir = sub_dir("tier-put");
  tiers::DiskTier tier(dir, kFingerprint);
  std::mt19937_64 rng(5);
  std::vector<cache::Key> keys;
  // After SkipWithError a benchmark must leave its loop (PauseTiming would abort).
  for (auto _ : state) {
    keys.clear();
    tiers::Status st;
    for (size_t i = 0; i < n && st.ok(); ++i) {
      keys.push_back(random_key(rng));
      st = tier.put(chunk_meta(keys.back(), bytes), {}, payload);
    }
    if (!st) {
      state.SkipWithError(st.error().what.c_str());
      break;
    }
    state.PauseTiming();
    for (const auto& k : keys) tier.remove(cache::ObjKind::kChunk, k);
    state.ResumeTiming();
  }
  set_bytes(state, n * bytes);
  fs::remove_all(dir);
}

// DiskTier::get: open, header check, read into a new vector, payload checksum.
void tier_get(benchmark::State& state, bool cold) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const std::string dir = sub_dir(cold ? "tier-get-cold" : "tier-get");
  tiers::DiskTier tier(dir, kFingerprint);
  std::mt19937_64 rng(6);
  std::vector<cache::Key> keys;
  for (size_t i = 0; i < n; ++i) {
    keys.push_back(random_key(rng));
    tier.put(chunk_meta(keys.back(), bytes), {}, payload_of(bytes));
  }
  if (cold) check_cold(state, dir);
  for (auto _ : state) {
    if (cold) drop_pages_untimed(state, dir);
    for (const auto& k : keys) {
      auto p = tier.get(cache::ObjKind::kChunk, k);
      if (!p) {
        state.SkipWithError(p.error().what.c_str());
        break;
      }
      benchmark::DoNotOptimize(p);
    }
    if (state.error_occurred()) break;
  }
  set_bytes(state, n * bytes);
  fs::remove_all(dir);
}
void BM_TierGet(benchmark::State& s) { tier_get(s, false); }
void BM_TierGetCold(benchmark::State& s) { tier_get(s, true); }

cache::PrefixCache::StoreRequest store_request(cache::PrefixCache& pc,
                                               const std::vector<cache::Token>& toks,
                                               const std::vector<uint8_t>& payload) {
  cache::PrefixCache::StoreRequest req;
  req.tokens = toks;
  req.reason = cache::Reason::kShutdown;
  // A copy per chunk into a pool buffer, as the engine copies each chunk out of its KV.
  req.chunk_payload = [&pc, &payload](uint32_t) { return Payload(pc.pool().copy(payload)); };
  req.entry_payload = [&pc] { return Payload(pc.pool().copy(cache::encode_entry_payload({}))); };
  return req;
}

// PrefixCache::store of a prefix of `n` full chunks (n chunk files + one small entry).
void BM_CacheStore(benchmark::State& state) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const auto& payload = payload_of(bytes);
  const std::string dir = sub_dir("cache-store");
  cache::PrefixCache pc(cache_config(dir), kFingerprint);
  const auto toks = random_tokens(n * kChunk, 9);
  for (auto _ : state) {
    const auto res = pc.store(store_request(pc, toks, payload));
    if (!res.stored) {
      state.SkipWithError(("not stored: " + res.skipped).c_str());
      break;
    }
    pc.drain(-1);  // durable: what the writer thread does off the request path
    state.PauseTiming();
    pc.clear();
    state.ResumeTiming();
  }
  set_bytes(state, n * bytes);
  fs::remove_all(dir);
}

// PrefixCache::plan + load of that prefix (the disk half of a restore).
void cache_load(benchmark::State& state, bool cold) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const std::string dir = sub_dir(cold ? "cache-load-cold" : "cache-load");
  cache::PrefixCache pc(cache_config(dir), kFingerprint);
  auto toks = random_tokens(n * kChunk, 10);
  pc.store(store_request(pc, toks, payload_of(bytes)));
  pc.drain(-1);
  toks.push_back(1);  // the request goes on past the stored prefix
  if (cold) check_cold(state, dir);
  for (auto _ : state) {
    if (cold) drop_pages_untimed(state, dir);
    const auto plan = pc.plan(toks, {});
    if (plan.chunks.size() != n) {
      state.SkipWithError("the plan does not cover the prefix");
      break;
    }
    auto loaded = pc.load(plan);
    if (!loaded) {
      state.SkipWithError("load failed");
      break;
    }
    benchmark::DoNotOptimize(loaded);
  }
  set_bytes(state, n * bytes);
  fs::remove_all(dir);
}
void BM_CacheLoad(benchmark::State& s) { cache_load(s, false); }
void BM_CacheLoadCold(benchmark::State& s) { cache_load(s, true); }

// Memory bandwidth for scale: one memcpy of an object into a reused buffer.
void BM_Memcpy(benchmark::State& state) {
  const size_t n = state.range(1), bytes = object_bytes(state);
  const auto& src = payload_of(bytes);
  std::vector<uint8_t> dst(bytes);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i) std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  set_bytes(state, n * bytes);
}

}  // namespace

void register_store_load() {
  const struct {
    const char* name;
    void (*fn)(benchmark::State&);
  } io[] = {{"Memcpy", BM_Memcpy},           {"RawWrite", BM_RawWrite},
            {"TierPut", BM_TierPut},         {"CacheStore", BM_CacheStore},
            {"RawRead", BM_RawRead},         {"TierGet", BM_TierGet},
            {"CacheLoad", BM_CacheLoad},     {"RawReadCold", BM_RawReadCold},
            {"TierGetCold", BM_TierGetCold}, {"CacheLoadCold", BM_CacheLoadCold}};
  for (uint64_t tb : g_flags.tok_bytes) {
    for (const auto& b : io) {
      benchmark::RegisterBenchmark(b.name, b.fn)
          ->Args({static_cast<int64_t>(tb), g_flags.objects})
          ->ArgNames({"tok_bytes", "objs"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace kvstash::micro
