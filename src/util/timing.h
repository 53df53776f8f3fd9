// Milliseconds for log lines and reports.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace kvstash {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// "12.3": one decimal, as the log lines print times.
inline std::string fmt_ms(double ms) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f", ms);
  return b;
}

}  // namespace kvstash
