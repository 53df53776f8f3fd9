// Token-level request traces (JSONL), what `kvstash replay` reads and `kvstash bench` and
// `kvstash replay --scenario ... --write-trace` write. One JSON object per line:
//
//   {"type":"request","session":"s1","tokens":[1,2,...],"boundaries":[0,812,...],"anchor":812,
//    "gen":16}
//   {"type":"restart"}
//
// request: tokens (required, non-empty, 0 <= id < 2^31) is the prompt; boundaries are the chat
// message start positions (ascending, each < the prompt length); anchor is the boundary before the
// last user turn (0: unknown, at most the prompt length); gen is the number of tokens decoded
// after the prompt (default 0); session names the conversation (default ""). restart: the server
// exits gracefully (shutdown stores) and starts again on the same cache directory.
// Parsing is strict: an unknown type or key, a wrong type or a bad value is an error that names
// the line. Blank lines are skipped.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/key.h"

namespace kvstash::replay {

struct TraceRecord {
  enum class Type { kRequest, kRestart } type = Type::kRequest;
  std::string session;
  std::vector<cache::Token> tokens;
  std::vector<uint32_t> boundaries;
  uint32_t anchor = 0;
  uint32_t gen = 0;
  bool operator==(const TraceRecord&) const = default;
};

struct TraceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws TraceError("NAME:LINE: why").
TraceRecord parse_trace_line(const std::string& line, const std::string& name, size_t line_no);
std::vector<TraceRecord> read_trace(std::istream& in, const std::string& name);
std::vector<TraceRecord> read_trace_file(const std::string& path);

std::string trace_line(const TraceRecord& r);  // without the newline
void write_trace(std::ostream& out, const std::vector<TraceRecord>& records);
void write_trace_file(const std::string& path, const std::vector<TraceRecord>& records);

}  // namespace kvstash::replay
