// One line per event on stderr, prefixed with the wall-clock time (ds4-style log lines).
#pragma once

#include <functional>
#include <string>

namespace kvstash::log {

void info(const std::string& line);
void warn(const std::string& line);
void error(const std::string& line);

// Tests observe the log through a hook; it receives each line without the timestamp.
using Hook = std::function<void(const std::string&)>;
void set_hook(Hook hook);

}  // namespace kvstash::log
