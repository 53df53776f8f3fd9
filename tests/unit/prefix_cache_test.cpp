// The prefix cache over real tiers, with synthetic KV bytes (no model needed).
#include "cache/prefix_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <thread>

#include "cache/entry_payload.h"
#include "synthetic_kv.h"
#include "temp_dir.h"
#include "tiers/disk_format.h"
#include "util/hex.h"
#include "util/log.h"

using namespace kvstash;
using namespace kvstash::cache;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t C = fixtures::kSynthChunk;
constexpr size_t kChunkBytes = fixtures::kSynthChunkBytes;
using fixtures::conv;
using fixtures::kv;
using fixtures::put;

using fixtures::TempDir;

std::array<uint8_t, 16> fp() {
  std::array<uint8_t, 16> f;
  f.fill(7);
  return f;
}

// Loads the plan and checks every byte against what the prompt's KV must be.
void expect_restores(PrefixCache& c, std::span<const Token> prompt, uint32_t expect_resume) {
  std::string err;
  EXPECT_EQ(fixtures::check_restore(c, prompt, &err), expect_resume);
  EXPECT_EQ(err, "");
}

// Whether `n` is one of the objects a store of `tokens` writes (its chunks and its entry).
bool is_of(PrefixCache& c, std::span<const Token> tokens, const Node& n) {
  const auto chain = chain_keys(c.root(), tokens, C);
  const size_t k = tokens.size() / C;
  if (n.meta.kind == ObjKind::kEntry) {
    return n.meta.key == entry_key(k ? chain[k - 1] : c.root(), tokens.subspan(k * C));
  }
  return std::find(chain.begin(), chain.begin() + k, n.meta.key) != chain.begin() + k;
}

std::string file_of(const std::string& dir, const Node& n) {
  return (fs::path(dir) / to_hex(fp()) / (n.meta.kind == ObjKind::kChunk ? "chunks" : "entries") /
          (n.meta.key.hex() + ".kv"))
      .string();
}

// Drops every file behind the cache's back (its index keeps what it knew).
void remove_files(const std::string& dir) {
  for (const auto& de : fs::recursive_directory_iterator(dir)) {
    if (de.is_regular_file()) fs::remove(de.path());
  }
}

CacheConfig cfg(const std::string& dir, uint64_t disk_budget = 1ull << 30) {
  CacheConfig c;
  c.dir = dir;
  c.disk_budget = disk_budget;
  c.chunk = C;
  return c;
}

}  // namespace

TEST(PrefixCache, GrowingConversationWritesOnlyItsNewChunks) {
  TempDir t;
  PrefixCache c(cfg(t.path), fp());
  const auto tokens = conv(3000);
  const auto r1 = put(c, std::span(tokens).first(1000));
  EXPECT_EQ(r1.new_chunks, 3u);
  const auto r2 = put(c, std::span(tokens).first(1600));
  EXPECT_EQ(r2.new_chunks, 3u) << "chunks 0-2 are shared, only 3-5 are new";
  EXPECT_EQ(r2.bytes, 3 * kChunkBytes + 24 + (1600 - 1536) * 16);
  const auto s = c.stats();
  EXPECT_EQ(s.chunks, 6u);
  EXPECT_EQ(s.entries, 2u);
  expect_restores(c, tokens, 1536);
}

TEST(PrefixCache, SameStoreTwiceWritesNothing) {
  TempDir t;
  PrefixCache c(cfg(t.path), fp());
  const auto tokens = conv(1000);
  EXPECT_TRUE(put(c, tokens).stored);
  const auto again = put(c, tokens);
  EXPECT_FALSE(again.stored);
  EXPECT_TRUE(again.existed);
}

TEST(PrefixCache, RestartFindsEverythingAndRestoresIt) {
  TempDir t;
  const auto tokens = conv(2000);
  {
    PrefixCache c(cfg(t.path), fp());
    put(c, std::span(tokens).first(1300));
  }
  PrefixCache c(cfg(t.path), fp());
  expect_restores(c, tokens, 1280);
  EXPECT_EQ(c.stats().chunks, 5u);
}

TEST(PrefixCache, DamagedChunkIsNeverServedAndLookupFallsBack) {
  TempDir t;
  PrefixCache c(cfg(t.path), fp());
  const auto tokens = conv(2000);
  put(c, std::span(tokens).first(1300));
  ASSERT_TRUE(c.drain(-1));  // the files are written
  // Damage chunk 3's payload.
  const auto chain = chain_keys(c.root(), tokens, C);
  std::string path;
  for (const auto& de : fs::recursive_directory_iterator(t.path)) {
    if (de.path().filename().string().starts_with(chain[3].hex())) path = de.path();
  }
  ASSERT_FALSE(path.empty());
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(tiers::kHeaderSize + 100);
    f.put('\x7f');
  }
  auto plan = c.plan(tokens, {});
  EXPECT_EQ(plan.resume_at, 1280u);
  EXPECT_FALSE(c.load(plan)) << "a damaged chunk fails the whole load";
  expect_restores(c, tokens, 768);  // chunks 0-2 remain
}

TEST(PrefixCache, SmallBudgetEvictsButEveryRemainingEntryStaysRestorable) {
  TempDir t;
  // About 6 chunks of room.
  PrefixCache c(cfg(t.path, 6 * (kChunkBytes + tiers::kHeaderSize) + 4 * 200), fp());
  std::vector<std::vector<Token>> convs;
  for (int i = 0; i < 6; ++i) convs.push_back(conv(900, i + 1));
  for (auto& v : convs) put(c, v);
  const auto s = c.stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_LE(s.disk_bytes, c.config().disk_budget);
  // Leaves-first eviction: every object left still has its whole parent chain.
  const auto objs = c.objects();
  std::set<Key> chunks;
  for (const auto& n : objs) {
    if (n.meta.kind == ObjKind::kChunk) chunks.insert(n.meta.key);
  }
  for (const auto& n : objs) {
    if (n.meta.depth > 0) {
      EXPECT_TRUE(chunks.contains(n.meta.parent)) << n.meta.key.hex();
    }
  }
  size_t restorable = 0;
  for (auto& v : convs) {
    const auto p = c.plan(v, {});
    if (p.resume_at > 0) {
      expect_restores(c, v, p.resume_at);
      ++restorable;
    }
  }
  EXPECT_GT(restorable, 0u);
}

TEST(PrefixCache, StoreThatCannotFitIsSkippedAndEvictsNothing) {
  TempDir t;
  PrefixCache c(cfg(t.path, 2 * (kChunkBytes + tiers::kHeaderSize) + 300), fp());
  const auto small = conv(300, 1);
  EXPECT_TRUE(put(c, small).stored);
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  const auto big = conv(2000, 2);
  const auto r = put(c, big);
  log::set_hook(nullptr);
  EXPECT_FALSE(r.stored);
  EXPECT_FALSE(r.skipped.empty());
  EXPECT_EQ(c.stats().evictions, 0u);
  expect_restores(c, conv(600, 1), 256);
  bool said = false;
  for (const auto& l : logs) said |= l.find("kv cache store skipped") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(PrefixCache, IncomingPromptPrefixSurvivesTheLiveMissStore) {
  TempDir t;
  // Room for two 3-chunk conversations.
  PrefixCache c(cfg(t.path, 7 * (kChunkBytes + tiers::kHeaderSize)), fp());
  const auto incoming = conv(800, 1), old = conv(800, 2), live = conv(800, 3);
  put(c, incoming);
  put(c, old);
  // Make the incoming prompt's prefix the stale one: the old conversation was used since.
  ASSERT_TRUE(c.load(c.plan(old, {})));
  c.record_hit(c.plan(old, {}), 0.01);
  put(c, live, Reason::kEvict, incoming);  // pr448
  EXPECT_EQ(c.plan(incoming, {}).resume_at, 768u) << "the incoming prompt's prefix was evicted";
}

TEST(PrefixCache, PinnedPrefixIsNotEvicted) {
  TempDir t;
  // The cache's clock: `a` is an hour older than `b`, so eviction takes `a` first unless its
  // pin holds (no tie on millisecond ages left to the hash order).
  int64_t now = 1'000'000'000;
  auto config = cfg(t.path, 7 * (kChunkBytes + tiers::kHeaderSize));
  config.clock = [&now] { return now; };
  PrefixCache c(config, fp());
  const auto a = conv(800, 1), b = conv(800, 2), d = conv(800, 3);
  put(c, a);
  auto pin = c.pin(c.plan(a, {}));
  now += 3'600'000;
  put(c, b);
  put(c, d);
  EXPECT_GT(c.stats().evictions, 0u);
  EXPECT_EQ(c.plan(a, {}).resume_at, 768u) << "the pinned prefix was evicted";
  EXPECT_LT(c.plan(b, {}).resume_at, 768u) << "the newer one made room instead";
}

TEST(PrefixCache, SupersededContinuedEntryDroppedItsChunksStay) {
  TempDir t;
  PrefixCache c(cfg(t.path), fp());
  const auto tokens = conv(2048);
  put(c, std::span(tokens).first(1024), Reason::kContinued);
  put(c, std::span(tokens).first(2048), Reason::kContinued);
  size_t entries = 0;
  for (const auto& n : c.objects()) entries += n.meta.kind == ObjKind::kEntry;
  EXPECT_EQ(entries, 1u);
  expect_restores(c, conv(3000), 2048);
  // An evict store keeps the shorter continued one (pr175).
  const auto other = conv(3000, 5);
  put(c, std::span(other).first(1024), Reason::kContinued);
  put(c, std::span(other).first(2048), Reason::kEvict);
  entries = 0;
  for (const auto& n : c.objects()) entries += n.meta.kind == ObjKind::kEntry;
  EXPECT_EQ(entries, 3u);
}

TEST(PrefixCache, RamTierPromotesOnHitAndDemotesOnEviction) {
  TempDir t;
  auto config = cfg(t.path);
  config.ram_budget = 5 * kChunkBytes;  // a little over one conversation of 3 chunks
  PrefixCache c(config, fp());
  const auto a = conv(800, 1), b = conv(800, 2);
  put(c, a);
  EXPECT_GT(c.stats().ram_bytes, 0u);
  put(c, b);  // pushes a's chunks out of RAM; they stay on disk
  expect_restores(c, a, 768);
  size_t a_in_ram = 0;
  const auto chain = chain_keys(c.root(), a, C);
  for (const auto& n : c.objects()) {
    if (n.in_ram && n.meta.kind == ObjKind::kChunk &&
        std::find(chain.begin(), chain.end(), n.meta.key) != chain.end()) {
      ++a_in_ram;
    }
  }
  EXPECT_EQ(a_in_ram, 3u) << "a disk hit is promoted into RAM";
  EXPECT_LE(c.stats().ram_bytes, config.ram_budget);
}

TEST(PrefixCache, RamOnlyObjectIsDemotedToDiskWhenEvictedFromRam) {
  TempDir t;
  auto config = cfg(t.path);
  config.ram_budget = 5 * kChunkBytes;
  PrefixCache c(config, fp());
  const auto a = conv(800, 1);
  put(c, a);
  ASSERT_TRUE(c.drain(-1));
  // Simulate a RAM-only copy: drop the files behind the cache's back, keep the index.
  remove_files(t.path);
  // The next store's disk sync sees the files gone and keeps the RAM copies; its own objects
  // then push some of them out of RAM, which demotes them to disk.
  put(c, conv(800, 2));
  ASSERT_TRUE(c.drain(-1));  // demotions are written by the transfer worker
  const uint64_t ram_evictions = c.stats().evictions_by_reason["ram-cache-full"];
  EXPECT_GT(ram_evictions, 0u);
  size_t kept = 0, on_disk = 0;
  for (const auto& n : c.objects()) {
    if (!is_of(c, a, n)) continue;
    ++kept;
    if (n.in_ram) continue;
    EXPECT_TRUE(n.on_disk);
    on_disk += fs::exists(file_of(t.path, n));
  }
  EXPECT_EQ(kept, 4u) << "an object of a evicted from RAM was lost, not demoted";
  EXPECT_EQ(on_disk, ram_evictions) << "what left RAM is on disk";
  expect_restores(c, a, 768);
}

// A RAM eviction whose demotion fails (a disk error no eviction cures) loses the only copy: that
// is logged and counted, not silent.
TEST(PrefixCache, FailedDemotionIsLoggedAndCounted) {
  TempDir t;
  auto config = cfg(t.path);
  config.ram_budget = 5 * kChunkBytes;
  // The disk fails right after a's store (3 chunks and an entry). The next store pushes a's
  // entry out of RAM (as in the test above); its demotion is queued before that store's own
  // objects, and both fail.
  const size_t full = 4 * tiers::kHeaderSize + 3 * kChunkBytes + 24 + (800 - 768) * 16;
  ::setenv("KVSTASH_FAULT_EIO_AFTER", std::to_string(full).c_str(), 1);
  PrefixCache c(config, fp());
  ::unsetenv("KVSTASH_FAULT_EIO_AFTER");
  const auto a = conv(800, 1);
  put(c, a);
  ASSERT_TRUE(c.drain(-1));
  remove_files(t.path);
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  put(c, conv(800, 2));
  ASSERT_TRUE(c.drain(-1));
  log::set_hook(nullptr);
  auto s = c.stats();
  EXPECT_EQ(s.io_errors["demote"], 1u);
  size_t said = 0;
  for (const auto& l : logs)
    said += l.find("kv cache demotion to disk failed") != std::string::npos;
  EXPECT_EQ(said, 1u);
  size_t lost = 0;
  for (const auto& n : c.objects()) lost += is_of(c, a, n) && !n.in_ram && !n.on_disk;
  EXPECT_EQ(lost, 0u) << "a lost object stays in the index";
  EXPECT_EQ(s.entries, 0u) << "a's entry is lost, and the failing disk refused the next store's";
}

TEST(PrefixCache, TwoProcessesShareOneDirectory) {
  TempDir t;
  PrefixCache a(cfg(t.path), fp());
  PrefixCache b(cfg(t.path), fp());  // opened before a wrote anything
  const auto tokens = conv(1500);
  put(a, tokens);
  ASSERT_TRUE(a.drain(-1));          // durable: now another process may see them
  expect_restores(b, tokens, 1280);  // b picks up a's files
}

// Another process's write seen half-way: its entry and last chunks are on disk, its first chunk
// is not yet seen. Neither a rescan nor a fresh open (`kvstash cache ls`) deletes them; once the
// parent is there, the whole prefix is found. Only an old orphan is removed.
TEST(PrefixCache, ObjectsFoundBeforeTheirParentAreLeftUntilOld) {
  TempDir t, stash;
  const auto tokens = conv(1000);
  std::vector<std::pair<std::string, bool>> files;  // path, is the first chunk
  {
    PrefixCache a(cfg(stash.path), fp());
    put(a, tokens);
    ASSERT_TRUE(a.drain(-1));
    for (const auto& n : a.objects()) {
      files.push_back(
          {file_of(stash.path, n), n.meta.kind == ObjKind::kChunk && n.meta.depth == 0});
    }
  }
  PrefixCache b(cfg(t.path), fp());
  auto place = [&](bool first_chunk) {
    for (const auto& [f, first] : files) {
      if (first != first_chunk) continue;
      const fs::path to = fs::path(t.path) / fs::relative(f, stash.path);
      fs::copy_file(f, to, fs::copy_options::overwrite_existing);
    }
  };
  auto on_disk = [&] {
    size_t n = 0;
    for (const auto& [f, first] : files)
      n += fs::exists(fs::path(t.path) / fs::relative(f, stash.path));
    return n;
  };
  place(false);  // the children first: what a listing that missed the parent sees
  b.refresh();
  EXPECT_EQ(on_disk(), files.size() - 1) << "a rescan deleted another process's new objects";
  { PrefixCache ls(cfg(t.path), fp()); }
  EXPECT_EQ(on_disk(), files.size() - 1) << "opening the directory deleted them";
  place(true);
  b.refresh();
  expect_restores(b, tokens, 768);

  // An orphan left for long is removed.
  const std::string first =
      (fs::path(t.path) /
       fs::relative(
           std::find_if(files.begin(), files.end(), [](const auto& f) { return f.second; })->first,
           stash.path))
          .string();
  fs::remove(first);
  for (const auto& [f, is_first] : files) {
    const fs::path at = fs::path(t.path) / fs::relative(f, stash.path);
    if (fs::exists(at)) {
      fs::last_write_time(at, fs::file_time_type::clock::now() - std::chrono::minutes(5));
    }
  }
  PrefixCache c(cfg(t.path), fp());
  EXPECT_EQ(on_disk(), 0u) << "old orphans stay";
}

// A disk smaller than the budget: once it is full, stores evict the least valuable objects
// instead of failing, back-to-back ones (whose writes find the disk full) and the only copy of a
// live state (evict store) included.
TEST(PrefixCache, FullDiskMakesRoomInsteadOfFailingEveryStore) {
  TempDir t;
  const size_t per_conv = 4 * tiers::kHeaderSize + 3 * kChunkBytes + 24 + (1000 - 768) * 16;
  ::setenv("KVSTASH_FAULT_ENOSPC_AFTER", std::to_string(3 * per_conv).c_str(), 1);
  PrefixCache c(cfg(t.path), fp());  // a budget of 1 GiB
  ::unsetenv("KVSTASH_FAULT_ENOSPC_AFTER");
  for (Token k = 1; k <= 6; ++k) {
    ASSERT_TRUE(put(c, conv(1000, k)).stored) << k;
    ASSERT_TRUE(c.drain(-1));
  }
  // Two at once: the second's writes were planned before the first's took the space.
  ASSERT_TRUE(put(c, conv(1000, 7)).stored);
  ASSERT_TRUE(put(c, conv(1000, 8), Reason::kEvict).stored);
  ASSERT_TRUE(c.drain(-1));
  const auto s = c.stats();
  EXPECT_EQ(s.io_errors.count("write"), 0u) << "a store failed on the full disk";
  EXPECT_GT(s.evictions, 0u);
  expect_restores(c, conv(1000, 6), 768);
  expect_restores(c, conv(1000, 7), 768);
  expect_restores(c, conv(1000, 8), 768);
  uint64_t bytes = 0;
  for (const auto& de : fs::recursive_directory_iterator(t.path)) {
    if (de.is_regular_file()) bytes += de.file_size();
  }
  EXPECT_LE(bytes, 3 * per_conv);
}

TEST(PrefixCacheConcurrency, TwoRequestsStoringOnePrefixAtOnceWriteItOnce) {
  TempDir t;
  PrefixCache c(cfg(t.path), fp());
  const auto tokens = conv(2000);
  std::atomic<int> stored{0};
  std::vector<std::thread> th;
  for (int i = 0; i < 4; ++i) {
    th.emplace_back([&] { stored += put(c, tokens).stored ? 1 : 0; });
  }
  for (auto& x : th) x.join();
  ASSERT_TRUE(c.drain(-1));
  EXPECT_EQ(stored.load(), 1);
  const auto s = c.stats();
  EXPECT_EQ(s.chunks, 7u);
  EXPECT_EQ(s.bytes_written, 7 * kChunkBytes + 24 + (2000 - 1792) * 16);
}

// Stores leave the request: while the disk is slow, a checkpoint finds the store queue full and
// is dropped (counted, logged), never blocking; a store of a live state's only copy waits for
// room and is kept.
TEST(PrefixCacheStoreQueue, FullQueueDropsCheckpointsButNotTheOnlyCopy) {
  TempDir t;
  auto config = cfg(t.path);
  config.store_queue = 1;  // any queued job fills it
  ::setenv("KVSTASH_FAULT_WRITE_DELAY_MS", "300", 1);
  PrefixCache c(config, fp());
  ::unsetenv("KVSTASH_FAULT_WRITE_DELAY_MS");
  const auto a = conv(1000, 1), b = conv(1000, 2), d = conv(1000, 3);
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(put(c, a).stored) << "an empty queue takes any store";
  const auto rb = put(c, b, Reason::kContinued);
  const double dropped_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(rb.dropped);
  EXPECT_FALSE(rb.stored);
  EXPECT_LT(dropped_ms, 250) << "neither store waited for the disk";
  const auto rd = put(c, d, Reason::kEvict);
  log::set_hook(nullptr);
  EXPECT_TRUE(rd.stored) << "the only copy of a live state waits for room instead";
  ASSERT_TRUE(c.drain(-1));
  const auto s = c.stats();
  EXPECT_EQ(s.stores_dropped.at("queue-full"), 1u);
  EXPECT_EQ(s.store_queue_bytes, 0u);
  size_t said = 0;
  for (const auto& l : logs)
    said += l.find("kv cache store dropped reason=queue-full") != std::string::npos;
  EXPECT_EQ(said, 1u);
  expect_restores(c, a, 768);
  expect_restores(c, d, 768);
  EXPECT_EQ(c.plan(b, {}).resume_at, 0u);
}

// The copy out of the engine throws (out of memory, a device error) after the store reserved
// its room in the queue: the room goes back, so later checkpoints are not dropped as "queue full"
// and a store of the only copy does not wait for it forever.
TEST(PrefixCacheStoreQueue, CopyThatThrowsGivesItsQueueRoomBack) {
  TempDir t;
  auto config = cfg(t.path);
  config.store_queue = 4 * kChunkBytes;
  PrefixCache c(config, fp());
  ASSERT_TRUE(put(c, conv(1000, 1)).stored);  // the cache learns a chunk's size
  ASSERT_TRUE(c.drain(-1));
  const auto b = conv(1000, 2);
  PrefixCache::StoreRequest req;
  req.tokens = b;
  req.chunk_payload = [](uint32_t) -> Payload { throw std::bad_alloc(); };
  req.entry_payload = [&] { return Payload(c.pool().copy(encode_entry_payload({}))); };
  EXPECT_THROW(c.store(req), std::bad_alloc);
  EXPECT_EQ(c.stats().store_queue_bytes, 0u) << "the failed store's reservation leaked";
  const auto r = put(c, conv(1000, 3), Reason::kContinued);
  EXPECT_TRUE(r.stored) << "a checkpoint found the queue full of a store that never came";
  ASSERT_TRUE(c.drain(-1));
  EXPECT_EQ(c.stats().store_queue_bytes, 0u);
}

// A store is served from its buffer before its files exist, and reaches the disk afterwards.
TEST(PrefixCacheStoreQueue, PendingStoreIsServedAndBecomesDurable) {
  TempDir t;
  ::setenv("KVSTASH_FAULT_WRITE_DELAY_MS", "200", 1);
  PrefixCache c(cfg(t.path), fp());
  ::unsetenv("KVSTASH_FAULT_WRITE_DELAY_MS");
  const auto a = conv(1000, 1);
  ASSERT_TRUE(put(c, a).stored);
  EXPECT_GT(c.stats().store_queue_bytes, 0u) << "still queued (the disk is slow)";
  expect_restores(c, a, 768);  // from the queued buffers
  ASSERT_TRUE(c.drain(-1));
  PrefixCache other(cfg(t.path), fp());  // another process: reads the files
  expect_restores(other, a, 768);
}

// Tier byte counts are kept incrementally: after stores, promotions, evictions, demotions and
// removals they equal what a walk over the objects finds.
TEST(PrefixCache, TierByteCountsFollowEveryChange) {
  TempDir t;
  auto config = cfg(t.path, 14 * (kChunkBytes + tiers::kHeaderSize));
  config.ram_budget = 5 * kChunkBytes;
  PrefixCache c(config, fp());
  auto check = [&](const char* when) {
    ASSERT_TRUE(c.drain(-1));
    uint64_t disk = 0, ram = 0;
    for (const auto& n : c.objects()) {
      if (n.on_disk) disk += tiers::kHeaderSize + n.meta.payload_bytes;
      if (n.in_ram) ram += n.meta.payload_bytes;
    }
    const auto s = c.stats();
    EXPECT_EQ(s.disk_bytes, disk) << when;
    EXPECT_EQ(s.ram_bytes, ram) << when;
    EXPECT_LE(s.disk_bytes, config.disk_budget) << when;
    EXPECT_LE(s.ram_bytes, config.ram_budget) << when;
  };
  for (int i = 1; i <= 6; ++i) put(c, conv(800 + 100 * i, i));
  check("after stores and evictions");
  EXPECT_GT(c.stats().evictions, 0u);
  std::string err;
  fixtures::check_restore(c, conv(900, 1), &err);  // a disk hit, promoted into RAM
  check("after a promotion");
  const auto plan = c.plan(conv(1400, 6), {});
  c.reject(plan, "test");
  check("after a rejection");
  c.clear();
  check("after clear");
  EXPECT_EQ(c.stats().disk_bytes, 0u);
}

// A load racing evictions either gets the right bytes or falls back; never another prefix's.
TEST(PrefixCacheConcurrency, LoadRacingEvictionNeverServesWrongBytes) {
  TempDir t;
  PrefixCache c(cfg(t.path, 10 * (kChunkBytes + tiers::kHeaderSize)), fp());
  const auto x = conv(1000, 1);
  put(c, x);
  std::atomic<bool> stop{false};
  std::atomic<int> loads{0}, hits{0};
  std::string error;
  std::thread reader([&] {
    while (!stop) {
      // As a request does: plan, pin, load. An object evicted before the pin makes the load
      // fail (the request re-plans); what loads must be x's own bytes.
      const auto plan = c.plan(x, {});
      const auto pin = c.pin(plan);
      const auto l = plan.resume_at ? c.load(plan) : std::nullopt;
      ++loads;
      if (!l) continue;
      ++hits;
      for (size_t i = 0; i < l->chunks.size(); ++i) {
        if (!std::ranges::equal(l->chunks[i]->span(), kv(x, i * C, (i + 1) * C)) && error.empty()) {
          error = "chunk " + std::to_string(i) + " holds another prefix's bytes";
        }
      }
    }
  });
  while (loads.load() == 0) std::this_thread::yield();
  for (int i = 2; i < 40; ++i) put(c, conv(1000, i));  // each store evicts something
  stop = true;
  reader.join();
  EXPECT_EQ(error, "");
  EXPECT_GT(loads.load(), 0);
  EXPECT_GT(c.stats().evictions, 0u);
}
