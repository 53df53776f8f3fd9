// Where a prefill's batches break (cache/batching.h): one test per scenario.
#include "cache/batching.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

using namespace kvstash::cache;

namespace {
using Batches = std::vector<Batch>;
using Positions = std::vector<uint32_t>;

Batches batches(uint32_t start, uint32_t total, uint32_t chunk, Positions boundaries = {},
                Positions snapshot_at = {}) {
  return prefill_batches(start, total, chunk, boundaries, snapshot_at);
}
}  // namespace

TEST(Batching, BreaksAtChunkMultiples) {
  EXPECT_EQ(batches(0, 768, 256), (Batches{{0, 256}, {256, 512}, {512, 768}}));
}

TEST(Batching, PromptEndEndsTheLastBatch) {
  EXPECT_EQ(batches(0, 600, 256), (Batches{{0, 256}, {256, 512}, {512, 600}}));
  EXPECT_EQ(batches(0, 10, 256), (Batches{{0, 10}}));
}

TEST(Batching, BoundaryInsideAChunkSplitsIt) {
  // The chunk grid goes on from the absolute multiple, not from the boundary.
  EXPECT_EQ(batches(0, 600, 256, {100}), (Batches{{0, 100}, {100, 256}, {256, 512}, {512, 600}}));
  EXPECT_EQ(batches(0, 600, 256, {300, 100}),
            (Batches{{0, 100}, {100, 256}, {256, 300}, {300, 512}, {512, 600}}));
}

TEST(Batching, BoundaryOnAChunkMultipleAddsNoBatch) {
  EXPECT_EQ(batches(0, 600, 256, {256, 512}), batches(0, 600, 256));
}

TEST(Batching, SnapshotPositionBreaksAndIsMarked) {
  EXPECT_EQ(batches(0, 600, 256, {}, {300}),
            (Batches{{0, 256}, {256, 300, true}, {300, 512}, {512, 600}}));
}

TEST(Batching, SnapshotOnAChunkMultipleOrAtThePromptEndIsMarked) {
  EXPECT_EQ(batches(0, 600, 256, {}, {600, 256}),
            (Batches{{0, 256, true}, {256, 512}, {512, 600, true}}));
}

TEST(Batching, BoundaryIsNotASnapshot) {
  // A boundary breaks a batch; only snapshot positions are marked.
  EXPECT_EQ(batches(0, 300, 256, {100}, {}), (Batches{{0, 100}, {100, 256}, {256, 300}}));
  EXPECT_EQ(batches(0, 300, 256, {100}, {100}), (Batches{{0, 100, true}, {100, 256}, {256, 300}}));
}

TEST(Batching, StartNotAtAChunkMultipleRunsToTheNextMultiple) {
  EXPECT_EQ(batches(100, 600, 256), (Batches{{100, 256}, {256, 512}, {512, 600}}));
  EXPECT_EQ(batches(300, 400, 256), (Batches{{300, 400}}));
}

TEST(Batching, BreaksAtOrBeforeStartOrPastTheEndBreakNothing) {
  EXPECT_EQ(batches(100, 600, 256, {0, 50, 100, 700}, {100, 800}),
            (Batches{{100, 256}, {256, 512}, {512, 600}}));
}

TEST(Batching, UnsortedDuplicatePositions) {
  EXPECT_EQ(
      batches(0, 600, 256, {300, 100, 300}, {400, 400, 100}),
      (Batches{{0, 100, true}, {100, 256}, {256, 300}, {300, 400, true}, {400, 512}, {512, 600}}));
}

TEST(Batching, NothingToDoWhenTheStateHoldsThePrompt) {
  EXPECT_TRUE(batches(600, 600, 256).empty());
  EXPECT_TRUE(batches(0, 0, 256).empty());
}

TEST(Batching, ChunkOfOneIsTokenByToken) {
  EXPECT_EQ(batches(2, 5, 1, {3}, {4}), (Batches{{2, 3}, {3, 4, true}, {4, 5}}));
}

TEST(Batching, ZeroChunkIsRefused) { EXPECT_THROW(batches(0, 10, 0), std::invalid_argument); }

TEST(Batching, ContinuingFromAnyBreakComputesTheFreshPrefillsBatches) {
  // The property restores rest on: the batches after a restore at a break position are exactly
  // the tail of a fresh prefill's batches, for every break of the fresh prefill.
  const Positions boundaries = {37, 300, 301, 555}, snaps = {420, 1000};
  const Batches fresh = batches(0, 1000, 128, boundaries, snaps);
  for (size_t i = 0; i < fresh.size(); ++i) {
    const Batches resumed = batches(fresh[i].begin, 1000, 128, boundaries, snaps);
    EXPECT_EQ(resumed, Batches(fresh.begin() + i, fresh.end())) << "from " << fresh[i].begin;
  }
  // And a shorter prompt of the same prefix breaks at the same places up to its end.
  const Batches shorter = batches(0, 420, 128, boundaries, {420});
  EXPECT_EQ(shorter, Batches(fresh.begin(), fresh.begin() + shorter.size()));
}

TEST(Batching, AutoChunkIsLargerWithTheKvOnAGpu) {
  EXPECT_EQ(auto_chunk(true), 512u);
  EXPECT_EQ(auto_chunk(false), 256u);
  // Both keep the store policy's defaults (boundary align 2048, continued interval 10240) on
  // the grid, as RequestFlow requires.
  for (const bool gpu : {true, false}) {
    EXPECT_EQ(2048 % auto_chunk(gpu), 0u);
    EXPECT_EQ(10240 % auto_chunk(gpu), 0u);
  }
}
