// The payload buffer pool: buffers are recycled by size class up to the idle limit, a buffer made
// by one allocator never returns to another, and buffers may outlive their pool.
#include "util/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>

using kvstash::BufferPool;

namespace {

// An allocator that counts what it hands out and takes back.
struct Counting {
  int allocs = 0, frees = 0;
  BufferPool::Allocator make(const std::string& name) {
    return {name,
            [this](size_t n, void** h) {
              ++allocs;
              void* p = std::malloc(n);
              *h = p;
              return p;
            },
            [this](void* h) {
              ++frees;
              std::free(h);
            }};
  }
};

TEST(BufferPool, ReleasedBuffersAreReusedBySizeClass) {
  Counting c;
  BufferPool pool(64 << 20);
  pool.set_allocator(c.make("counting"));
  const uint8_t* first = nullptr;
  {
    auto b = pool.get(3 << 20);
    first = b->data();
    EXPECT_EQ(b->size(), 3u << 20);
    EXPECT_EQ(pool.stats().live_bytes, 3u << 20);
  }
  EXPECT_EQ(pool.stats().idle_bytes, 3u << 20);
  auto again = pool.get((3 << 20) - 100);  // same 1 MiB class
  EXPECT_EQ(again->data(), first) << "the released buffer was not reused";
  EXPECT_EQ(c.allocs, 1);
  EXPECT_EQ(pool.stats().reuses, 1u);
  auto other = pool.get(5 << 20);  // another class: a new allocation
  EXPECT_EQ(c.allocs, 2);
}

TEST(BufferPool, WarmedBuffersServeTheFirstRequestsWithoutAllocating) {
  Counting c;
  BufferPool pool(10 << 20);
  pool.set_allocator(c.make("counting"));
  EXPECT_EQ(pool.warm(3 << 20, 5), 3u) << "as many as the idle limit allows";
  EXPECT_EQ(c.allocs, 3);
  EXPECT_EQ(pool.stats().idle_bytes, 9u << 20);
  {
    auto a = pool.get((3 << 20) - 7), b = pool.get(3 << 20), d = pool.get(3 << 20);
    EXPECT_EQ(c.allocs, 3) << "the warmed buffers were used";
    EXPECT_EQ(pool.stats().reuses, 3u);
  }
  EXPECT_EQ(pool.warm(1 << 20, 4), 1u) << "the limit counts what is idle";
}

TEST(BufferPool, IdleMemoryStaysWithinTheLimit) {
  Counting c;
  BufferPool pool(4 << 20);
  pool.set_allocator(c.make("counting"));
  { auto a = pool.get(3 << 20), b = pool.get(3 << 20); }
  EXPECT_LE(pool.stats().idle_bytes, 4u << 20);
  EXPECT_EQ(c.frees, 1) << "one of the two released buffers exceeds the limit";
  pool.set_idle_limit(0);
  EXPECT_EQ(pool.stats().idle_bytes, 0u);
  EXPECT_EQ(c.frees, 2);
}

TEST(BufferPool, ABufferGoesBackToTheAllocatorThatMadeIt) {
  Counting a, b;
  BufferPool pool(64 << 20);
  pool.set_allocator(a.make("a"));
  auto held = pool.get(1 << 20);
  pool.set_allocator(b.make("b"));
  EXPECT_EQ(pool.allocator_name(), "b");
  held.reset();
  EXPECT_EQ(a.frees, 1) << "a's buffer must not be kept for b's callers";
  auto fresh = pool.get(1 << 20);
  EXPECT_EQ(b.allocs, 1);
}

TEST(BufferPool, BuffersMayOutliveThePool) {
  Counting c;
  std::shared_ptr<kvstash::Bytes> b;
  {
    BufferPool pool;
    pool.set_allocator(c.make("counting"));
    b = pool.copy(std::vector<uint8_t>(1000, 7));
  }
  EXPECT_EQ(b->span()[999], 7);
  b.reset();
  EXPECT_EQ(c.frees, 1);
}

}  // namespace
