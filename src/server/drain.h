// When a graceful drain ends (pure: what the drain has seen so far in, a verdict out;
// kvstash serve's signal thread asks it every kDrainPollMs).
//
// A drain begins on the first SIGTERM or SIGINT when --drain-seconds is above 0: the server
// answers GET /ready with 503, so a balancer stops sending work, but it serves whatever still
// comes until the drain ends. Rules, in order:
//   1. A second signal ends it at once.
//   2. The limit (--drain-seconds) passed since it began ends it, busy or not.
//   3. Nothing running, queued or being prepared for kDrainIdleSeconds ends it: the balancer has
//      moved the traffic elsewhere (a server idle from the start waits that long too, for the
//      requests a balancer still sends before its next health check).
// Then the shutdown runs as without a drain.
#pragma once

namespace kvstash::server {

inline constexpr double kDrainIdleSeconds = 2;
inline constexpr int kDrainPollMs = 100;

enum class DrainEnd {
  kNotYet,
  kSecondSignal,
  kTimeLimit,
  kIdle,
};
// "not yet", "a second signal", "the time limit", "idle": the log's words.
const char* drain_end_name(DrainEnd e);

struct DrainState {
  double elapsed_s = 0;  // since the drain began
  double idle_s = 0;     // since work was last seen (elapsed_s when none was seen)
  double limit_s = 0;    // --drain-seconds
  bool second_signal = false;
};

DrainEnd drain_over(const DrainState& s);

}  // namespace kvstash::server
