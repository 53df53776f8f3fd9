// The server's slots in process, on a real generated model: how jobs reach idle slots, and what
// happens to a slot's live state when a request fails.
#include "server/slot_pool.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>

#include "temp_dir.h"
#include "test_models.h"
#include "util/log.h"

using namespace kvstash;

namespace {

// Collects the log lines of every thread while it lives.
struct LogCapture {
  std::mutex mu;
  std::vector<std::string> lines;
  LogCapture() {
    log::set_hook([this](const std::string& l) {
      std::lock_guard lock(mu);
      lines.push_back(l);
    });
  }
  ~LogCapture() { log::set_hook(nullptr); }
  size_t count(const std::string& what) {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& l : lines) n += l.find(what) != std::string::npos;
    return n;
  }
};

}  // namespace

// A request that fails after its prefill leaves a cleared slot; the graceful shutdown must not
// then try to store the live state the slot no longer has.
TEST(SlotPool, ShutdownAfterAFailedRequestStoresNoVanishedState) {
  fixtures::TempDir dir;
  engine::Model& model = fixtures::model("tiny");
  engine::SessionOptions so;
  so.n_ctx = 1024;
  so.chunk = 256;
  cache::StoreConfig store;
  store.min_tokens = 256;
  store.cold_max_tokens = 0;  // no cold store: the live state would be the only copy
  std::unique_ptr<cache::PrefixCache> cache;
  {
    engine::Session probe(model, so);
    cache::CacheConfig cc;
    cc.dir = dir.path;
    cc.chunk = 256;
    cache = std::make_unique<cache::PrefixCache>(cc, probe.fingerprint().bytes);
  }
  LogCapture logs;
  server::SlotPool pool(model, so, 1, cache.get(), store, cache::Scope{});

  auto job = std::make_shared<server::Job>();
  job->prompt = fixtures::prompt_tokens(model, 700);
  job->max_tokens = 4;
  // The client callback fails once the prompt is in (as a broken stream would).
  job->on_progress = [](int done, int total, int) {
    if (done == total) throw std::runtime_error("client callback failed");
  };
  std::promise<server::Job::Result> done;
  job->on_done = [&](const server::Job::Result& r) { done.set_value(r); };
  pool.submit(job);
  const auto r = done.get_future().get();
  ASSERT_EQ(r.end, server::JobEnd::kError);
  // The client gets a plain message; the exception's text is the log's.
  EXPECT_EQ(r.error.find("client callback failed"), std::string::npos) << r.error;
  EXPECT_EQ(logs.count("client callback failed"), 1u);

  pool.shutdown();
  EXPECT_EQ(logs.count("shutdown store failed"), 0u);
  EXPECT_EQ(cache->stats().stores, 0u) << "the failed request's state was cleared, not stored";
}

// Jobs arriving together each start on an idle slot at once: one that finds an idle slot never
// waits for another request to end (a slot that takes a job wakes the others, so the next job in
// the queue is seen by the slot that is best for it).
TEST(SlotPool, JobsArrivingTogetherAllStartBeforeAnyEnds) {
  constexpr int kSlots = 8;
  engine::Model& model = fixtures::model("tiny");
  engine::SessionOptions so;
  so.n_ctx = 1024;
  so.chunk = 256;
  server::SlotPool pool(model, so, kSlots, nullptr, {}, cache::Scope{});
  std::mutex mu;
  std::vector<std::string> events;
  std::vector<std::promise<void>> done(kSlots);
  std::vector<std::shared_ptr<server::Job>> jobs;
  for (int i = 0; i < kSlots; ++i) {
    auto job = std::make_shared<server::Job>();
    job->prompt = fixtures::prompt_tokens(model, 40 + i);
    job->max_tokens = 200;
    job->on_start = [&](int) {
      std::lock_guard lock(mu);
      events.push_back("start");
    };
    job->on_done = [&, i](const server::Job::Result& r) {
      {
        std::lock_guard lock(mu);
        events.push_back(std::string("end ") + server::job_end_name(r.end) + " " + r.error);
      }
      done[i].set_value();
    };
    jobs.push_back(std::move(job));
  }
  for (auto& j : jobs) pool.submit(j);
  for (auto& d : done) d.get_future().wait();
  ASSERT_EQ(events.size(), 2u * kSlots);
  for (int i = 0; i < kSlots; ++i) EXPECT_EQ(events[i], "start") << "event " << i;
  for (int i = kSlots; i < 2 * kSlots; ++i) EXPECT_EQ(events[i], "end length ") << "event " << i;
}
