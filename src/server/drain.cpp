#include "server/drain.h"

namespace kvstash::server {

const char* drain_end_name(DrainEnd e) {
  switch (e) {
    case DrainEnd::kNotYet:
      return "not yet";
    case DrainEnd::kSecondSignal:
      return "a second signal";
    case DrainEnd::kTimeLimit:
      return "the time limit";
    case DrainEnd::kIdle:
      return "idle";
  }
  return "not yet";
}

DrainEnd drain_over(const DrainState& s) {
  if (s.second_signal) return DrainEnd::kSecondSignal;
  if (s.elapsed_s >= s.limit_s) return DrainEnd::kTimeLimit;
  if (s.idle_s >= kDrainIdleSeconds) return DrainEnd::kIdle;
  return DrainEnd::kNotYet;
}

}  // namespace kvstash::server
