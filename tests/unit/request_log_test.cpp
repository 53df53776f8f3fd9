// The status page's request log: a bounded ring of finished requests, totals over all of them,
// and the requests still running.
#include "server/request_log.h"

#include <gtest/gtest.h>

using namespace kvstash::server;

namespace {

RequestRecord finished(uint64_t id, uint32_t prompt, uint32_t cached, std::string source,
                       std::string reason = "stop") {
  RequestRecord r;
  r.id = id;
  r.endpoint = "chat";
  r.slot = 0;
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.completion_tokens = 2;
  r.cache_source = std::move(source);
  r.saved_ms = cached / 10.0;
  r.finish_reason = std::move(reason);
  return r;
}

TEST(RequestLog, KeepsTheLastRequestsAndTotalsOverAll) {
  RequestLog log(3);
  for (uint64_t i = 1; i <= 5; ++i) {
    const uint64_t id = log.begin("chat", 100 * i, 0);
    ASSERT_EQ(id, i);
    log.finish(finished(id, 100 * i, i % 2 ? 50 : 0, i % 2 ? "disk" : ""));
  }
  const auto s = log.snapshot();
  ASSERT_EQ(s.recent.size(), 3u) << "bounded by its capacity";
  EXPECT_EQ(s.recent[0].id, 5u) << "newest first";
  EXPECT_EQ(s.recent[2].id, 3u);
  EXPECT_TRUE(s.in_flight.empty());
  EXPECT_EQ(s.totals.requests, 5u) << "totals count every request, not only those kept";
  EXPECT_EQ(s.totals.prompt_tokens, 1500u);
  EXPECT_EQ(s.totals.cached_tokens, 150u);
  EXPECT_EQ(s.totals.prefilled_tokens, 1350u);
  EXPECT_EQ(s.totals.completion_tokens, 10u);
  EXPECT_EQ(s.totals.hits_by_source.at("disk"), 3u);
  EXPECT_EQ(s.totals.hits_by_source.count(""), 0u) << "a miss is no hit";
  EXPECT_DOUBLE_EQ(s.totals.saved_ms, 15.0);
}

TEST(RequestLog, FollowsARunningRequestUntilItFinishes) {
  RequestLog log;
  const uint64_t id = log.begin("completion", 4000, 1234);
  auto f = log.snapshot().in_flight;
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].phase, "queued");
  EXPECT_EQ(f[0].slot, -1);
  EXPECT_EQ(f[0].started_ms, 1234);
  log.started(id, 1);
  log.progress(id, 2048, 1024);
  f = log.snapshot().in_flight;
  EXPECT_EQ(f[0].phase, "prefill");
  EXPECT_EQ(f[0].slot, 1);
  EXPECT_EQ(f[0].done, 2048u);
  EXPECT_EQ(f[0].cached, 1024u);
  log.first_token(id);
  EXPECT_EQ(log.snapshot().in_flight[0].phase, "decode");
  log.finish(finished(id, 4000, 1024, "ram"));
  const auto s = log.snapshot();
  EXPECT_TRUE(s.in_flight.empty());
  ASSERT_EQ(s.recent.size(), 1u);
  EXPECT_EQ(s.recent[0].cache_source, "ram");
}

TEST(RequestLog, FailedAndRefusedRequestsPrefillNothing) {
  RequestLog log;
  RequestRecord refused = finished(log.begin("chat", 500, 0), 500, 0, "", "error");
  refused.slot = -1;  // refused at shutdown, before any slot
  log.finish(refused);
  log.finish(finished(log.begin("chat", 300, 0), 300, 0, "", "cancelled"));
  const auto t = log.snapshot().totals;
  EXPECT_EQ(t.requests, 2u);
  EXPECT_EQ(t.errors, 1u);
  EXPECT_EQ(t.cancelled, 1u);
  EXPECT_EQ(t.prefilled_tokens, 300u) << "a cancelled prefill counts, as the slot pool counts it";
}

}  // namespace

TEST(RequestLog, TheLogLineNamesTheSessionWhenThereIsOne) {
  RequestRecord r = finished(7, 300, 256, "disk");
  r.ttft_ms = 12.4;
  r.total_ms = 80.6;
  EXPECT_EQ(request_line(r),
            "request 7 chat slot=0 prompt=300 cached=256 source=disk completion=2 finish=stop "
            "ttft_ms=12 total_ms=81");
  r.session = "cc-1234";
  r.session_source = "x-claude-code-session-id";
  EXPECT_EQ(request_line(r).substr(request_line(r).size() - 16), " session=cc-1234");
  r.cache_source.clear();
  EXPECT_EQ(request_line(r).find("source="), std::string::npos);
}

TEST(RequestLog, ARunningRequestKeepsItsSession) {
  RequestLog log;
  const uint64_t id = log.begin("messages", 10, 0, "sess-A");
  ASSERT_EQ(log.snapshot().in_flight.size(), 1u);
  EXPECT_EQ(log.snapshot().in_flight[0].session, "sess-A");
  RequestRecord r = finished(id, 10, 0, "");
  r.session = "sess-A";
  log.finish(r);
  EXPECT_EQ(log.snapshot().recent[0].session, "sess-A");
}
