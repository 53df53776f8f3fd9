// Delta restores and the streamed load path on real generated models: a request whose live state
// holds the first part of a prefix the cache has longer keeps the live KV and loads only the rest,
// and the result is bit for bit that of a fresh prefill (logits and 32 greedy tokens), for the
// attention-only family (flash attention on and off) and the hybrid one. Also: objects stream
// through a staging pool far smaller than the restore, and a chunk damaged on disk is found
// mid-stream, never served, and the request still answers exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "cache/prefix_cache.h"
#include "engine/cached_session.h"
#include "engine/device_kv.h"
#include "engine/session.h"
#include "greedy_trace.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash;
using engine::Session;
using engine::Token;
using fixtures::continue_greedy;
using fixtures::expect_same;
using fixtures::Trace;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t C = 256;

struct Param {
  std::string shape;  // a tiny shape of kvstash mkmodel
  bool flash_attn;
  std::string kv_type = "f16";  // K and V
};
void PrintTo(const Param& p, std::ostream* os) {
  *os << p.shape << (p.flash_attn ? "" : ", flash attention off") << ", KV " << p.kv_type;
}

class DeltaRestore : public ::testing::TestWithParam<Param> {
 protected:
  fixtures::TempDir dir;
  engine::Model& m() { return fixtures::model(GetParam().shape); }
  bool hybrid() { return m().resume_kind() != engine::ResumeKind::kAnyBoundary; }
  engine::SessionOptions opts() {
    engine::SessionOptions o;
    o.n_ctx = 2048;
    o.chunk = C;
    o.flash_attn = GetParam().flash_attn;
    o.type_k = GetParam().kv_type;
    o.type_v = GetParam().kv_type;
    return o;
  }
  std::vector<Token> prompt(size_t n) { return fixtures::prompt_tokens(m(), n); }

  std::unique_ptr<cache::PrefixCache> open_cache(const Session& s, uint64_t staging = 256 << 20,
                                                 uint64_t ram = 0) {
    cache::CacheConfig c;
    c.dir = dir.path + "/cache";
    c.ram_budget = ram;
    c.chunk = C;
    c.snapshot_only = hybrid();
    c.estimate = false;  // always the longest prefix: these tests must know which path runs
    c.pool = std::make_shared<BufferPool>(staging);
    return std::make_unique<cache::PrefixCache>(c, s.fingerprint().bytes);
  }
  cache::StoreConfig store() {
    cache::StoreConfig st;
    st.min_tokens = C;
    st.boundary_align = C;
    return st;
  }

  Trace fresh(const std::vector<Token>& p, const std::vector<int>& boundaries) {
    Session s(m(), opts());
    engine::PrefillOptions po;
    po.boundaries = boundaries;
    s.prefill(p, po);
    return continue_greedy(s);
  }

  // A writer process: prefills `p` through the cache and stores its live state on exit.
  void write(const std::vector<Token>& p, const std::vector<uint32_t>& boundaries) {
    Session s(m(), opts());
    auto c = open_cache(s);
    engine::CachedSession cs(s, c.get(), store());
    cache::PromptInfo info;
    info.boundaries = boundaries;
    cs.prefill(p, info);
    cs.shutdown();
  }

  struct Run {
    cache::PrefillReport first, second;
    Trace trace;
  };
  // A reader: prefills `live` without the cache (its own computation), optionally decodes a few
  // tokens, then asks for `p`, which the cache holds further than the live state.
  Run read(const std::vector<Token>& live, const std::vector<uint32_t>& live_breaks,
           const std::vector<Token>& p, const std::vector<uint32_t>& breaks, int decode = 0,
           uint64_t staging = 256 << 20, uint64_t ram = 0) {
    Session s(m(), opts());
    auto c = open_cache(s, staging, ram);
    engine::CachedSession cs(s, c.get(), store());
    Run r;
    cache::PromptInfo own;
    own.boundaries = live_breaks;
    own.policy.restore = false;
    own.policy.checkpoints = false;
    r.first = cs.prefill(live, own);
    for (int i = 0; i < decode; ++i) s.decode_one(s.greedy());
    cache::PromptInfo info;
    info.boundaries = breaks;
    r.second = cs.prefill(p, info);
    r.trace = continue_greedy(s);
    return r;
  }
};

std::vector<int> ints(const std::vector<uint32_t>& v) { return {v.begin(), v.end()}; }

std::vector<Token> head(const std::vector<Token>& p, size_t n) {
  return {p.begin(), p.begin() + n};
}

TEST_P(DeltaRestore, OneChunkOnTopOfTheLiveState) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);  // stores up to 1024
  // The live state holds 800 tokens (computed here); the cache has 1024: only chunk 3 is loaded.
  const auto r = read(head(p, 800), {300}, p, b);
  EXPECT_EQ(r.first.cached_tokens, 0u);
  EXPECT_EQ(r.second.kept_tokens, 768u) << "the live state's whole chunks stay";
  EXPECT_EQ(r.second.cached_tokens, 1024u);
  EXPECT_EQ(r.second.source, cache::Source::kDisk);
  expect_same(r.trace, fresh(p, ints(b)));
}

TEST_P(DeltaRestore, ManyChunksOnTopOfTheLiveState) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);
  const auto r = read(head(p, 300), {}, p, b);
  EXPECT_EQ(r.second.kept_tokens, 256u);
  EXPECT_EQ(r.second.cached_tokens, 1024u);
  expect_same(r.trace, fresh(p, ints(b)));
}

TEST_P(DeltaRestore, AcrossAnEntryTail) {
  // The stored prefix ends at a message boundary inside a chunk (800): chunks [512, 768) and the
  // entry's tail [768, 800) are loaded on top of the live 600 tokens.
  const auto p = prompt(1000);
  const std::vector<uint32_t> b = {300, 600, 800, 990};
  write(head(p, 850), {300, 600, 800});
  const auto r = read(head(p, 600), {300}, p, b);
  EXPECT_EQ(r.second.kept_tokens, 512u);
  EXPECT_EQ(r.second.cached_tokens, 800u);
  expect_same(r.trace, fresh(p, ints(b)));
}

TEST_P(DeltaRestore, DecodedTokensInTheLiveTailAreDropped) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);
  // 800 prompt tokens, then 10 decoded ones the new prompt does not have.
  const auto r = read(head(p, 800), {300}, p, b, /*decode=*/10);
  EXPECT_EQ(r.second.kept_tokens, 768u);
  EXPECT_EQ(r.second.cached_tokens, 1024u);
  expect_same(r.trace, fresh(p, ints(b)));
}

TEST_P(DeltaRestore, StreamsThroughAStagingPoolSmallerThanTheRestore) {
  const auto p = prompt(1600);
  const std::vector<uint32_t> b = {300};
  write(p, b);
  // No buffer is kept for reuse: every chunk is read, uploaded and released on its own.
  const auto r = read(head(p, 10), {}, p, b, 0, /*staging=*/0);
  EXPECT_EQ(r.second.cached_tokens, 1536u);
  expect_same(r.trace, fresh(p, ints(b)));
}

TEST_P(DeltaRestore, RamTierServesTheSameBytes) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);
  Session s(m(), opts());
  auto c = open_cache(s, 256 << 20, 64 << 20);
  engine::CachedSession cs(s, c.get(), store());
  cache::PromptInfo info;
  info.boundaries = b;
  EXPECT_EQ(cs.prefill(p, info).source, cache::Source::kDisk) << "first from disk (promoted)";
  s.clear();
  cs.reset();
  const auto rep = cs.prefill(p, info);
  EXPECT_EQ(rep.source, cache::Source::kRam);
  EXPECT_EQ(rep.cached_tokens, 1024u);
  expect_same(continue_greedy(s), fresh(p, ints(b)));
}

// The VRAM tier (copies in the memory the KV lives in: the host's on this CPU build, through the
// same device-copy path a GPU takes) serves chunks on top of a live state, bit-exactly; with room
// for two chunks only, a restore mixes VRAM copies and RAM buffers. Sliding-window sections
// carry the window's trailer and stay out of it.
TEST_P(DeltaRestore, VramTierServesTheSameBytesOnTopOfTheLiveState) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);
  uint64_t chunk_bytes = 0;
  {
    Session s(m(), opts());
    for (const auto& n : open_cache(s)->objects()) {
      if (n.meta.kind == cache::ObjKind::kChunk) chunk_bytes = n.meta.payload_bytes;
    }
  }
  ASSERT_GT(chunk_bytes, 0u);
  const bool takes = !m().sliding_window();
  for (const bool small : {false, true}) {
    SCOPED_TRACE(small ? "room for two chunks" : "room for all");
    Session s(m(), opts());
    cache::CacheConfig cfg;
    cfg.dir = dir.path + "/cache";
    cfg.ram_budget = 64 << 20;
    cfg.chunk = C;
    cfg.snapshot_only = hybrid();
    cfg.estimate = false;
    cfg.pool = std::make_shared<BufferPool>(256 << 20);
    cfg.vram = engine::make_device_kv(small ? chunk_bytes * 5 / 2 : 64 << 20, m().cell_ext_size(),
                                      m().kv_has_v());
    cache::PrefixCache c(cfg, s.fingerprint().bytes);
    {
      engine::CachedSession cs(s, &c, store());
      cache::PromptInfo info;
      info.boundaries = b;
      EXPECT_EQ(cs.prefill(p, info).source, cache::Source::kDisk) << "promoted on the way";
    }
    c.drain(-1);  // the transfer worker makes the copies
    EXPECT_EQ(c.stats().vram_objects, takes ? (small ? 2u : 4u) : 0u);
    Session s2(m(), opts());
    engine::CachedSession cs(s2, &c, store());
    cache::PromptInfo own;
    own.boundaries = {};
    own.policy.restore = false;
    own.policy.checkpoints = false;
    cs.prefill(head(p, 300), own);
    cache::PromptInfo info;
    info.boundaries = b;
    const auto r = cs.prefill(p, info);
    EXPECT_EQ(r.cached_tokens, 1024u);
    if (!hybrid()) {
      EXPECT_EQ(r.kept_tokens, 256u);
    }
    if (takes && !small) {
      EXPECT_EQ(r.source, cache::Source::kVram);
    }
    expect_same(continue_greedy(s2), fresh(p, ints(b)));
  }
}

TEST_P(DeltaRestore, ChunkDamagedOnDiskIsFoundMidStreamAndNeverServed) {
  const auto p = prompt(1100);
  const std::vector<uint32_t> b = {300, 800};
  write(p, b);
  // Flip one payload byte of every chunk file: whichever one the restore reaches first fails its
  // checksum after others were uploaded.
  size_t damaged = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir.path + "/cache")) {
    if (!e.is_regular_file() || e.path().parent_path().filename() != "chunks") continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-100, std::ios::end);
    char ch = 0;
    f.read(&ch, 1);
    ch ^= 0x5a;
    f.seekp(-100, std::ios::end);
    f.write(&ch, 1);
    ++damaged;
  }
  ASSERT_GE(damaged, 4u);
  const auto r = read(head(p, 300), {}, p, b);
  EXPECT_EQ(r.second.restore_failures, 0u) << "damage is found by the checksum, not the engine";
  EXPECT_LT(r.second.cached_tokens, 1024u) << "a damaged chunk was served";
  expect_same(r.trace, fresh(p, ints(b)));
}

// Besides the two original families: quantized KV, MLA's latent KV (deepseek2) and a
// sliding-window model (gemma3: full-attention chunks, the window from the entry).
INSTANTIATE_TEST_SUITE_P(Models, DeltaRestore,
                         ::testing::Values(Param{"tiny", true}, Param{"tiny", false},
                                           Param{"hybrid-tiny", true}, Param{"tiny", true, "q8_0"},
                                           Param{"gemma3-tiny", true},
                                           Param{"deepseek2-tiny", true}),
                         [](const auto& i) {
                           std::string n = i.param.shape + (i.param.flash_attn ? "" : "_noFA");
                           if (i.param.kv_type != "f16") n += "_" + i.param.kv_type;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

}  // namespace
