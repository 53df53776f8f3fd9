// When a graceful drain ends (server/drain.h): one test per rule.
#include "server/drain.h"

#include <gtest/gtest.h>

using namespace kvstash::server;

TEST(Drain, BusyWithinTheLimitGoesOn) {
  EXPECT_EQ(drain_over({5, 0.5, 20, false}), DrainEnd::kNotYet);
  EXPECT_EQ(drain_over({0, 0, 20, false}), DrainEnd::kNotYet);
  EXPECT_STREQ(drain_end_name(DrainEnd::kNotYet), "not yet");
}

TEST(Drain, IdleForTwoSecondsEndsIt) {
  EXPECT_EQ(drain_over({1.9, 1.9, 20, false}), DrainEnd::kNotYet) << "idle from the start";
  EXPECT_EQ(drain_over({2, 2, 20, false}), DrainEnd::kIdle);
  EXPECT_EQ(drain_over({12, 1.99, 20, false}), DrainEnd::kNotYet) << "work ended 1.99 s ago";
  EXPECT_EQ(drain_over({12, 2.05, 20, false}), DrainEnd::kIdle);
  EXPECT_STREQ(drain_end_name(DrainEnd::kIdle), "idle");
}

TEST(Drain, TheLimitEndsItBusyOrNot) {
  EXPECT_EQ(drain_over({20, 0, 20, false}), DrainEnd::kTimeLimit);
  EXPECT_EQ(drain_over({25, 0.1, 20, false}), DrainEnd::kTimeLimit);
  EXPECT_EQ(drain_over({1, 1, 1, false}), DrainEnd::kTimeLimit) << "a limit below the idle wait";
  EXPECT_STREQ(drain_end_name(DrainEnd::kTimeLimit), "the time limit");
}

TEST(Drain, ASecondSignalEndsItAtOnce) {
  EXPECT_EQ(drain_over({0.2, 0, 20, true}), DrainEnd::kSecondSignal);
  EXPECT_EQ(drain_over({30, 5, 20, true}), DrainEnd::kSecondSignal) << "before any other rule";
  EXPECT_STREQ(drain_end_name(DrainEnd::kSecondSignal), "a second signal");
}
