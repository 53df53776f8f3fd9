// Micro-benchmarks of the cache (google-benchmark): prefix index lookup, chunk hashing, and the
// store/load throughput of KV-sized objects through the disk tier and the PrefixCache, each next
// to the raw sequential write()/read() throughput of the same bytes in the same directory and the
// same run, so the report is a ratio to the physical limit. With KVSTASH_BENCH_MODEL set, also the
// whole engine restore (PrefixCache load + restore_plan into a llama.cpp context).
//
//   kvstash-bench-micro [google-benchmark flags] [--bench_dir=DIR] [--tok_bytes=114688,147456]
//                       [--objects=8] [--index_chunks=1000,10000,100000] [--engine_tokens=4096]
//
// DIR (or $KVSTASH_BENCH_DIR; default a fresh directory under /tmp) is removed at the end.
// --tok_bytes: KV bytes per token of the shapes to test; a chunk object is 256 tokens of it
// (qwen3-0.6b f16: 114688 B/token = 28 MiB per chunk; the 8B shape: 147456 B/token = 36 MiB).
// --objects: chunk objects written or read per iteration.
// Cold reads drop the files' clean pages with posix_fadvise(POSIX_FADV_DONTNEED) before each
// iteration (outside the timed region); the program checks with mincore() that it worked.
// See bench/MICRO.md for the commands and the figures.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cache/entry_payload.h"
#include "core/key.h"
#include "cache/prefix_cache.h"
#include "cache/prefix_index.h"
#include "engine/cached_session.h"
#include "engine/kv_blob.h"
#include "engine/model.h"
#include "engine/session.h"
#include "tiers/disk_tier.h"

namespace fs = std::filesystem;
using namespace kvstash;

namespace {

constexpr uint32_t kChunk = 256;

struct Flags {
  std::string dir;
  std::vector<uint64_t> tok_bytes = {114688, 147456};
  uint32_t objects = 8;
  std::vector<uint64_t> index_chunks = {1000, 10000, 100000};
  std::vector<uint64_t> engine_tokens = {4096};
} g_flags;

std::vector<uint64_t> parse_list(const std::string& s) {
  std::vector<uint64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string part = s.substr(pos, comma == std::string::npos ? comma : comma - pos);
    if (!part.empty()) out.push_back(std::strtoull(part.c_str(), nullptr, 10));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// File helpers

void die(const std::string& what) {
  std::fprintf(stderr, "kvstash-bench-micro: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_all(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("read");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// Every regular file under `dir`.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& de : fs::recursive_directory_iterator(dir, ec)) {
    if (de.is_regular_file()) out.push_back(de.path().string());
  }
  return out;
}

// Drops the clean page-cache pages of every file under `dir` (the files were fsynced).
void drop_pages(const std::string& dir) {
  for (const auto& p : files_under(dir)) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Fraction of the pages of the files under `dir` that are in the page cache (mincore).
double resident_fraction(const std::string& dir) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t total = 0, resident = 0;
  for (const auto& p : files_under(dir)) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      void* m = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) {
        std::vector<unsigned char> vec((st.st_size + page - 1) / page);
        if (::mincore(m, st.st_size, vec.data()) == 0) {
          for (unsigned char v : vec) resident += v & 1;
          total += vec.size();
        }
        ::munmap(m, st.st_size);
      }
    }
    ::close(fd);
  }
  return total ? double(resident) / double(total) : 0.0;
}

// Checked once per cold benchmark: did POSIX_FADV_DONTNEED drop the pages?
// google-benchmark 1.7 has no SkipWithMessage: a benchmark that cannot run here says so with
// this prefix; any other SkipWithError is a failure, and the program exits 1 (so CI notices).
constexpr std::string_view kSkipped = "skipped: ";
void skip(benchmark::State& state, const std::string& why) {
  state.SkipWithError((std::string(kSkipped) + why).c_str());
}

void check_cold(benchmark::State& state, const std::string& dir) {
  drop_pages(dir);
  const double r = resident_fraction(dir);
  state.counters["resident_after_drop"] = r;
  if (r > 0.01) {
    std::fprintf(stderr,
                 "warning: %.0f%% of %s still in the page cache after POSIX_FADV_DONTNEED: "
                 "the cold figures are not cold\n",
                 r * 100, dir.c_str());
  }
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> b(n);
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  for (; i < n; ++i) b[i] = static_cast<uint8_t>(rng());
  return b;
}

std::vector<cache::Token> random_tokens(size_t n, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<cache::Token> t(n);
  for (auto& x : t) x = static_cast<cache::Token>(rng() % 151000);
  return t;
}

cache::Key random_key(std::mt19937_64& rng) { return {rng(), rng()}; }

const std::array<uint8_t, 16> kFingerprint = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// ---------------------------------------------------------------------------------------------
// Index lookup and hashing

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

// ---------------------------------------------------------------------------------------------
// Store and load of KV-sized objects. Args: KV bytes per token, objects per iteration.

size_t object_bytes(const benchmark::State& state) {
  return static_cast<size_t>(state.range(0)) * kChunk;
}

const std::vector<uint8_t>& payload_of(size_t bytes) {
  static std::map<size_t, std::vector<uint8_t>> cache;
  auto& p = cache[bytes];
  if (p.empty()) p = random_bytes(bytes, bytes);
  return p;
}

std::string sub_dir(const std::string& name) {
  const std::string d = g_flags.dir + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Raw files the size of a disk-tier file: header + payload.
void write_raw_files(const std::string& dir, size_t n, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> head(tiers::kHeaderSize, 0x5a);
  for (size_t i = 0; i < n; ++i) {
    const std::string p = dir + "/raw" + std::to_string(i);
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("open " + p);
    write_all(fd, head.data(), head.size());
    write_all(fd, payload.data(), payload.size());
    if (::fsync(fd) != 0) die("fsync");
    ::close(fd);
  }
}

void set_bytes(benchmark::State& state, size_t per_iteration) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * per_iteration));
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

void raw_read_files(const std::string& dir, size_t n, std::vector<uint8_t>& buf) {
  for (size_t i = 0; i < n; ++i) {
    const std::string p = dir + "/raw" + std::to_string(i);
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open " + p);
    read_all(fd, buf.data(), buf.size());
    ::close(fd);
  }
}

// read() of n files of `payload` into one reused buffer: the physical limit of the loads.
void time_raw_reads(benchmark::State& state, const std::string& name, size_t n,
                    const std::vector<uint8_t>& payload, bool cold) {
  const std::string dir = sub_dir(cold ? name + "-cold" : name);
  write_raw_files(dir, n, payload);
  std::vector<uint8_t> buf(payload.size() + tiers::kHeaderSize);
  if (cold) check_cold(state, dir);
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      drop_pages(dir);
      state.ResumeTiming();
    }
    raw_read_files(dir, n, buf);
    benchmark::ClobberMemory();
  }
  set_bytes(state, n * payload.size());
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
    std::string err;
    for (size_t i = 0; i < n && err.empty(); ++i) {
      keys.push_back(random_key(rng));
      err = tier.put(chunk_meta(keys.back(), bytes), {}, payload);
    }
    if (!err.empty()) {
      state.SkipWithError(err.c_str());
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
    if (cold) {
      state.PauseTiming();
      drop_pages(dir);
      state.ResumeTiming();
    }
    for (const auto& k : keys) {
      std::string why;
      auto p = tier.get(cache::ObjKind::kChunk, k, &why);
      if (!p) {
        state.SkipWithError(why.c_str());
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

cache::CacheConfig cache_config(const std::string& dir) {
  cache::CacheConfig cc;
  cc.dir = dir;
  cc.chunk = kChunk;
  cc.disk_budget = 1ull << 40;
  return cc;
}

cache::PrefixCache::StoreRequest store_request(const std::vector<cache::Token>& toks,
                                               const std::vector<uint8_t>& payload) {
  cache::PrefixCache::StoreRequest req;
  req.tokens = toks;
  req.reason = cache::Reason::kShutdown;
  // A copy per chunk, as the engine hands the cache a fresh vector per chunk.
  req.chunk_payload = [&payload](uint32_t) { return payload; };
  req.entry_payload = [] { return cache::encode_entry_payload({}); };
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
    const auto res = pc.store(store_request(toks, payload));
    if (!res.stored) {
      state.SkipWithError(("not stored: " + res.skipped).c_str());
      break;
    }
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
  pc.store(store_request(toks, payload_of(bytes)));
  toks.push_back(1);  // the request goes on past the stored prefix
  if (cold) check_cold(state, dir);
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      drop_pages(dir);
      state.ResumeTiming();
    }
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

// ---------------------------------------------------------------------------------------------
// Engine restore (needs a model: KVSTASH_BENCH_MODEL=path.gguf). Arg: prefix tokens.
//
// The stored prefix is synthesised: one real 256-token KV chunk is computed by prefill, then
// copied with its positions rewritten to make the chunks of a long prefix. The bytes and the
// path through the cache and llama.cpp are those of a real restore; only the K/V values repeat.
// (A real prefill of the 0.6B shape runs at ~55 tok/s here at long context.)

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
    req.chunk_payload = [&](uint32_t i) { return shifted_chunk(*f, i); };
    req.entry_payload = [] { return cache::encode_entry_payload({}); };
    if (!pc.store(req).stored) {
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
    if (cold) {
      state.PauseTiming();
      drop_pages(dir);
      state.ResumeTiming();
    }
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

// ---------------------------------------------------------------------------------------------
// Ratio table

// Console output as usual; remembers bytes/s per benchmark for the ratio table.
class Recorder : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (this reporter replaces the one --benchmark_color would set up).
  Recorder() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.error_occurred && !r.error_message.starts_with(kSkipped)) {
        failed_.push_back(r.benchmark_name() + ": " + r.error_message);
      }
      if (r.error_occurred) continue;
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      auto it = r.counters.find("bytes_per_second");
      if (it == r.counters.end()) continue;
      // "Op/tok_bytes:114688/objs:8/real_time" -> op, rest
      std::string name = r.run_name.str();
      const size_t slash = name.find('/');
      if (slash == std::string::npos) continue;
      if (name.ends_with("/real_time")) name.resize(name.size() - 10);
      rates_[name.substr(slash + 1)][name.substr(0, slash)] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  const std::vector<std::string>& failed() const { return failed_; }

  void print_ratios() const {
    static const struct {
      const char *what, *op, *base;
    } pairs[] = {
        {"store: DiskTier::put / raw write+fsync", "TierPut", "RawWrite"},
        {"store: PrefixCache::store / raw write+fsync", "CacheStore", "RawWrite"},
        {"load warm: DiskTier::get / raw read", "TierGet", "RawRead"},
        {"load warm: PrefixCache::load / raw read", "CacheLoad", "RawRead"},
        {"load cold: DiskTier::get / raw read", "TierGetCold", "RawReadCold"},
        {"load cold: PrefixCache::load / raw read", "CacheLoadCold", "RawReadCold"},
        {"engine restore warm / raw read", "EngineRestore", "EngineRawRead"},
        {"engine restore cold / raw read", "EngineRestoreCold", "EngineRawReadCold"},
    };
    bool header = false;
    for (const auto& [args, ops] : rates_) {
      for (const auto& p : pairs) {
        auto a = ops.find(p.op), b = ops.find(p.base);
        if (a == ops.end() || b == ops.end() || b->second <= 0) continue;
        if (!header) {
          std::printf("\n| ratio | args | MiB/s | raw MiB/s | ratio |\n|---|---|---|---|---|\n");
          header = true;
        }
        std::printf("| %s | %s | %.0f | %.0f | %.2f |\n", p.what, args.c_str(),
                    a->second / (1 << 20), b->second / (1 << 20), a->second / b->second);
      }
    }
  }

 private:
  std::map<std::string, std::map<std::string, double>> rates_;
  std::vector<std::string> failed_;  // benchmarks that reported an error
};

void register_all() {
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

}  // namespace

int main(int argc, char** argv) {
  // Our flags first; the rest goes to google-benchmark.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::string f = std::string(flag) + "=";
      return a.rfind(f, 0) == 0 ? argv[i] + f.size() : nullptr;
    };
    if (const char* v = value("--bench_dir")) {
      g_flags.dir = v;
    } else if (const char* v = value("--tok_bytes")) {
      g_flags.tok_bytes = parse_list(v);
    } else if (const char* v = value("--objects")) {
      g_flags.objects = static_cast<uint32_t>(std::max(1ull, std::strtoull(v, nullptr, 10)));
    } else if (const char* v = value("--index_chunks")) {
      g_flags.index_chunks = parse_list(v);
    } else if (const char* v = value("--engine_tokens")) {
      g_flags.engine_tokens = parse_list(v);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;

  std::string base = g_flags.dir;
  if (base.empty()) {
    if (const char* e = std::getenv("KVSTASH_BENCH_DIR"); e && *e) base = e;
  }
  bool made_temp = false;
  if (base.empty()) {
    char tmpl[] = "/tmp/kvstash-bench-micro.XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    base = tmpl;
    made_temp = true;
  }
  g_flags.dir = base + (made_temp ? "" : "/kvstash-bench-micro");
  fs::create_directories(g_flags.dir);
  std::fprintf(stderr, "bench dir: %s\n", g_flags.dir.c_str());

  register_all();
  Recorder rec;
  const size_t ran = benchmark::RunSpecifiedBenchmarks(&rec);
  rec.print_ratios();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(g_flags.dir, ec);
  for (const auto& f : rec.failed()) std::fprintf(stderr, "error: %s\n", f.c_str());
  if (ran == 0) std::fprintf(stderr, "error: no benchmark matches the filter\n");
  return rec.failed().empty() && ran > 0 ? 0 : 1;
}
