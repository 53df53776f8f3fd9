#include "cache/prefix_index.h"

#include <gtest/gtest.h>

#include <numeric>

using namespace kvstash::cache;

namespace {
constexpr uint32_t C = 4;

std::vector<Token> toks(size_t n, Token start = 0) {
  std::vector<Token> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

// Adds the chunks of `t` (all full chunks) and optionally an entry at n tokens.
void add(PrefixIndex& idx, const std::vector<Token>& t, size_t chunks, int entry_at = -1,
         bool logits = false) {
  const auto chain = chain_keys(idx.root(), t, C);
  for (size_t i = 0; i < chunks; ++i) {
    ObjectMeta m;
    m.kind = ObjKind::kChunk;
    m.key = chain[i];
    m.parent = i ? chain[i - 1] : idx.root();
    m.depth = static_cast<uint32_t>(i);
    m.n_tokens = C;
    idx.upsert(m, {});
  }
  if (entry_at >= 0) {
    const uint32_t n = entry_at, k = n / C;
    ObjectMeta m;
    m.kind = ObjKind::kEntry;
    m.parent = k ? chain[k - 1] : idx.root();
    m.key = entry_key(m.parent, std::span<const Token>(t).subspan(k * C, n - k * C));
    m.depth = k;
    m.n_tokens = n;
    m.has_logits = logits;
    idx.upsert(m, {});
  }
}

RestorePlan plan(const PrefixIndex& idx, const std::vector<Token>& p,
                 std::vector<uint32_t> bounds = {}) {
  return idx.plan(p, make_chain(idx.root(), p, C), Breaks(C, bounds));
}
}  // namespace

TEST(Keys, ChainNamesTheWholePrefix) {
  const Key root = root_key(std::vector<uint8_t>(16, 1));
  auto a = toks(12), b = toks(12);
  b[1] = 99;  // differs in chunk 0 only
  const auto ca = chain_keys(root, a, C), cb = chain_keys(root, b, C);
  ASSERT_EQ(ca.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(ca[i], cb[i]) << "chunk " << i;
  EXPECT_EQ(Key::from_hex(ca[2].hex()), ca[2]);
  EXPECT_FALSE(Key::from_hex("xyz").has_value());
}

TEST(Keys, AnotherFingerprintIsAnotherKeySpace) {
  const auto t = toks(8);
  EXPECT_NE(chain_keys(root_key(std::vector<uint8_t>(16, 1)), t, C)[0],
            chain_keys(root_key(std::vector<uint8_t>(16, 2)), t, C)[0]);
}

TEST(PrefixIndex, AttentionResumesAtLongestStoredChunkBoundary) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  const auto t = toks(20);
  add(idx, t, 3);
  const auto p = plan(idx, t);
  EXPECT_EQ(p.resume_at, 12u);
  EXPECT_EQ(p.chunks.size(), 3u);
  EXPECT_FALSE(p.entry.has_value());
}

TEST(PrefixIndex, AttentionNeverResumesAtThePromptEnd) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  const auto t = toks(12);
  add(idx, t, 3);
  // All 12 tokens are stored, but the last token's logits must be computed: resume at 8.
  EXPECT_EQ(plan(idx, t).resume_at, 8u);
}

TEST(PrefixIndex, AttentionEntryTailCutBackToTheLastBreak) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  const auto t = toks(20);
  add(idx, t, 2, 11);  // entry holds 11 tokens
  EXPECT_EQ(plan(idx, t).resume_at, 8u) << "11 is no break: cut back to 8";
  const auto p = plan(idx, t, {10});
  EXPECT_EQ(p.resume_at, 10u) << "a chat boundary at 10 is a break";
  EXPECT_EQ(p.restore_tokens, 11u);
  EXPECT_TRUE(p.entry.has_value());
}

TEST(PrefixIndex, SnapshotOnlyResumesExactlyAtAnEntryOnABreak) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, true);
  const auto t = toks(20);
  add(idx, t, 3);
  EXPECT_EQ(plan(idx, t).resume_at, 0u) << "chunks alone cannot restore a recurrent state";
  add(idx, t, 2, 10);
  EXPECT_EQ(plan(idx, t).resume_at, 0u) << "10 is not a break of this prompt";
  EXPECT_EQ(plan(idx, t, {10}).resume_at, 10u);
  add(idx, t, 3, 12);
  EXPECT_EQ(plan(idx, t, {10}).resume_at, 12u);
}

TEST(PrefixIndex, SnapshotAtThePromptEndNeedsItsLogits) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, true);
  const auto t = toks(14);
  add(idx, t, 3, 14, false);
  EXPECT_EQ(plan(idx, t).resume_at, 0u);
  add(idx, toks(14), 3, 14, true);
  EXPECT_EQ(plan(idx, t).resume_at, 14u);
}

TEST(PrefixIndex, DivergingPromptStopsAtTheFirstDifferentChunk) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  auto t = toks(20);
  add(idx, t, 4);
  t[9] = 1000;  // chunk 2 differs
  EXPECT_EQ(plan(idx, t).resume_at, 8u);
}

TEST(PrefixIndex, MissingParentMakesDescendantsUnreachable) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  const auto t = toks(16);
  add(idx, t, 4, 14);
  idx.erase(ObjKind::kChunk, chain_keys(idx.root(), t, C)[1]);
  EXPECT_EQ(plan(idx, t).resume_at, 4u);
  EXPECT_EQ(idx.unreachable().size(), 3u);  // chunks 2, 3 and the entry
}

TEST(PrefixIndex, SaltedPrefixesLiveInTheirOwnKeySpace) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 1)), C, false);
  const auto t = toks(16);
  const Key a = salted_root(idx.root(), "tenant-a"), b = salted_root(idx.root(), "tenant-b");
  EXPECT_EQ(salted_root(idx.root(), ""), idx.root());
  EXPECT_NE(a, b);
  const auto ca = make_chain(a, t, C);
  for (size_t i = 0; i < 3; ++i) {
    ObjectMeta m;
    m.key = ca.keys[i];
    m.parent = ca.parent_of(i);
    m.depth = static_cast<uint32_t>(i);
    m.n_tokens = C;
    idx.upsert(m, {});
  }
  EXPECT_EQ(idx.plan(t, make_chain(a, t, C), Breaks(C, {})).resume_at, 12u);
  EXPECT_EQ(idx.plan(t, make_chain(b, t, C), Breaks(C, {})).resume_at, 0u);
  EXPECT_EQ(idx.plan(t, make_chain(idx.root(), t, C), Breaks(C, {})).resume_at, 0u);
  EXPECT_TRUE(idx.unreachable().empty()) << "a salted chain is not an orphan";
}

// An entry of t's first 10 tokens hung under the root, as another server's listing may claim.
ObjectMeta entry_under_root(const PrefixIndex& idx, const std::vector<Token>& t) {
  ObjectMeta m;
  m.kind = ObjKind::kEntry;
  m.parent = idx.root();
  m.key = entry_key(m.parent, std::span<const Token>(t).first(10));
  m.n_tokens = 10;
  return m;
}

// Entry metadata may come from another server (the remote tier's listings): an entry whose depth
// does not match the chain position it hangs under is never planned (its depth would index past
// the chain).
TEST(PrefixIndex, EntryWhoseDepthDoesNotFitItsPositionIsIgnored) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 2)), C, false);
  const auto t = toks(11);
  ObjectMeta m = entry_under_root(idx, t);
  for (uint32_t depth : {1000000u, 1u}) {
    m.depth = depth;
    idx.upsert(m, {});
    const auto p = plan(idx, t, {10});
    EXPECT_FALSE(p.entry.has_value()) << depth;
    EXPECT_EQ(p.resume_at, 0u) << depth;
    EXPECT_TRUE(p.chunks.empty()) << depth;
  }
}

TEST(PrefixIndex, EntryLongerThanItsChunkIsIgnored) {
  PrefixIndex idx(root_key(std::vector<uint8_t>(16, 2)), C, false);
  const auto t = toks(11);
  ObjectMeta m = entry_under_root(idx, t);  // 10 tokens cannot hang under the root at depth 0
  m.depth = 0;                              // (C = 4)
  idx.upsert(m, {});
  EXPECT_FALSE(plan(idx, t, {10}).entry.has_value());
}
