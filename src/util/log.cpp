#include "util/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace kvstash::log {

namespace {
std::mutex mu;
Hook hook;

void emit(const char* level, const std::string& line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  localtime_r(&t, &tm);
  std::lock_guard lock(mu);
  std::fprintf(stderr, "%02d:%02d:%02d.%03d %s%s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, ms, level,
               line.c_str());
  if (hook) hook(line);
}
}  // namespace

void info(const std::string& line) { emit("", line); }
void warn(const std::string& line) { emit("warning: ", line); }
void error(const std::string& line) { emit("error: ", line); }

void set_hook(Hook h) {
  std::lock_guard lock(mu);
  hook = std::move(h);
}

}  // namespace kvstash::log
