// The transfer worker with real threads: order, visibility of queued payloads, backpressure.
#include "tiers/transfer_worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

using namespace kvstash;
using namespace kvstash::tiers;
using namespace std::chrono_literals;

namespace {

StoreObject obj(uint8_t id, size_t bytes = 16) {
  static BufferPool pool;
  StoreObject o;
  o.meta.key = {id, id};
  o.meta.n_tokens = id;
  o.payload = pool.get(bytes);
  return o;
}

// A write that waits until the test opens the gate.
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
};

}  // namespace

TEST(TransferWorker, WritesJobsInSubmissionOrder) {
  std::mutex mu;
  std::vector<int> order;
  TransferWorker w(
      1 << 20,
      [&](const StoreObject& o) {
        std::lock_guard lock(mu);
        order.push_back(o.meta.n_tokens);
        return true;
      },
      [](const StoreObject&, bool) {});
  for (uint8_t j = 0; j < 5; ++j) {
    ASSERT_TRUE(w.try_reserve(32));
    w.submit({obj(uint8_t(2 * j + 1)), obj(uint8_t(2 * j + 2))}, 32);
  }
  ASSERT_TRUE(w.drain(10000));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))
      << "a parent queued by one store is written before a child queued by a later one";
  EXPECT_EQ(w.stats().written, 10u);
  EXPECT_EQ(w.stats().queued_bytes, 0u);
}

TEST(TransferWorker, QueuedPayloadIsFoundUntilItsWriteIsDone) {
  Gate gate;
  std::atomic<int> done{0};
  TransferWorker w(
      1 << 20,
      [&](const StoreObject&) {
        gate.opened.wait();
        return true;
      },
      [&](const StoreObject&, bool ok) { done += ok; });
  const StoreObject a = obj(1);
  w.submit({a}, 16);
  EXPECT_EQ(w.find(a.meta.kind, a.meta.key), a.payload) << "served from its buffer meanwhile";
  EXPECT_FALSE(w.drain(50)) << "the write has not finished";
  gate.open.set_value();
  ASSERT_TRUE(w.drain(10000));
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(w.find(a.meta.kind, a.meta.key), nullptr);
}

TEST(TransferWorker, FullQueueRefusesCheckpointsAndMakesTheOnlyCopyWait) {
  Gate gate;
  TransferWorker w(
      100,
      [&](const StoreObject&) {
        gate.opened.wait();
        return true;
      },
      [](const StoreObject&, bool) {});
  ASSERT_TRUE(w.try_reserve(500)) << "an empty queue takes a job larger than the budget";
  w.submit({obj(1, 500)}, 500);
  EXPECT_FALSE(w.try_reserve(1)) << "the queue is full";
  std::atomic<bool> reserved{false};
  std::thread waiter([&] {
    w.reserve(60);  // the only copy of a live state: waits for room
    reserved = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(reserved.load()) << "it waits while the queue is full";
  gate.open.set_value();
  waiter.join();
  EXPECT_TRUE(reserved.load());
  EXPECT_EQ(w.stats().queued_bytes, 60u);
  w.adjust(60, 0);
  EXPECT_EQ(w.stats().queued_bytes, 0u);
}

TEST(TransferWorker, FailedWriteSkipsTheRestOfItsJob) {
  std::vector<std::pair<int, bool>> seen;
  TransferWorker w(
      1 << 20, [&](const StoreObject& o) { return o.meta.n_tokens != 2; },
      [&](const StoreObject& o, bool ok) {
        seen.push_back({o.meta.n_tokens, ok});
      });
  w.submit({obj(1), obj(2), obj(3)}, 48);
  w.submit({obj(4)}, 16);
  ASSERT_TRUE(w.drain(10000));
  EXPECT_EQ(seen, (std::vector<std::pair<int, bool>>{{1, true}, {2, false}, {3, false}, {4, true}}))
      << "a child of a failed object is not written; the next job is";
  const auto s = w.stats();
  EXPECT_EQ(s.written, 2u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_EQ(s.skipped, 1u);
}

TEST(TransferWorker, InlineWorkerWritesBeforeSubmitReturns) {
  int written = 0;
  TransferWorker w(
      1, [&](const StoreObject&) { return ++written > 0; }, [](const StoreObject&, bool) {}, 0);
  EXPECT_FALSE(w.async());
  EXPECT_TRUE(w.try_reserve(1000));
  w.submit({obj(1), obj(2)}, 1000);
  EXPECT_EQ(written, 2);
  EXPECT_TRUE(w.drain(0));
}

// Jobs run on several threads, but a child waits for its parent's write in an earlier job, and an
// unrelated job does not wait for either.
TEST(TransferWorker, ParallelWritersKeepParentsBeforeChildren) {
  Gate gate;
  std::mutex mu;
  std::vector<int> order;
  TransferWorker w(
      1 << 20,
      [&](const StoreObject& o) {
        if (o.meta.n_tokens == 1) gate.opened.wait();  // the parent's write is slow
        std::lock_guard lock(mu);
        order.push_back(o.meta.n_tokens);
        return true;
      },
      [](const StoreObject&, bool) {}, 4);
  StoreObject parent = obj(1), child = obj(2), other = obj(3);
  child.meta.depth = 1;
  child.meta.parent = parent.meta.key;
  w.submit({parent}, 16);
  w.submit({child}, 16);
  w.submit({other}, 16);
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lock(mu);
      if (!order.empty()) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(50ms);  // time for the child to be written, were it not held
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(order, (std::vector<int>{3})) << "the unrelated job ran; the child waits";
  }
  gate.open.set_value();
  ASSERT_TRUE(w.drain(10000));
  EXPECT_EQ(order, (std::vector<int>{3, 1, 2}));
}
