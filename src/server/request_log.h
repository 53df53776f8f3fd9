// The recent requests and the totals since start that the status page shows (GET /status.json).
//
// The HTTP layer fills it where it learns about a request: begin() when a job is submitted,
// started() when a slot takes it, progress() during prefill, first_token(), and finish() from
// the job's on_done (on the slot thread). The status endpoint reads a snapshot().
//
// Why a ring of finished records: an operator looks at the last few dozen requests, and a server
// that runs for months must not grow, so only `capacity` records are kept; the totals are plain
// sums over every finished request since start. One mutex guards everything and each call is a
// few copies under it (no I/O, no call out), so neither a slot nor the status endpoint ever waits
// on anything slow here.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kvstash::server {

// One store a request's prefill attempted (cache::StoreOutcome, by name).
struct StoreRecord {
  std::string reason;   // cold, continued, evict, scope
  std::string outcome;  // stored, existed, dropped, skipped
  uint32_t tokens = 0;
  uint64_t bytes = 0;
};

// A finished request.
struct RequestRecord {
  uint64_t id = 0;
  std::string endpoint;                     // chat, completions, completion
  int64_t started_ms = 0, finished_ms = 0;  // Unix time
  int slot = -1;                            // -1: never reached a slot (refused at shutdown)
  uint32_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  std::string cache_source;   // live, ram, disk, remote; "" when nothing was reused
  double restore_ms = 0;      // restoring cached_tokens from a tier
  double prefill_ms = 0;      // computing the rest (the prompt phase without the restore)
  double ttft_ms = 0;         // arrival to the first token out (or to the end without one)
  double total_ms = 0;        // arrival to the end
  double saved_ms = 0;        // estimated prefill time the reuse saved, net of the restore
  std::string finish_reason;  // stop, length, cancelled, error
  std::vector<StoreRecord> stores;
  std::string session;         // the agent session (server/session_key.h); "" for none
  std::string session_source;  // where it came from (session_source_name)
};

// The log's line for a finished request: "request ID ENDPOINT slot=.. prompt=.. cached=..
// [source=..] completion=.. finish=.. ttft_ms=.. total_ms=.. [session=KEY]" (a session key holds no
// spaces or quotes: session_key.h).
std::string request_line(const RequestRecord& r);

// A request submitted and not finished yet.
struct InFlightRecord {
  uint64_t id = 0;
  std::string endpoint;
  int64_t started_ms = 0;
  uint32_t prompt_tokens = 0;
  int slot = -1;                  // -1: queued
  std::string phase = "queued";   // queued, prefill, decode
  uint32_t done = 0, cached = 0;  // prefill progress (tokens)
  std::string session;            // as RequestRecord::session
};

struct RequestTotals {
  uint64_t requests = 0, errors = 0, cancelled = 0;
  uint64_t prompt_tokens = 0, cached_tokens = 0, prefilled_tokens = 0, completion_tokens = 0;
  std::map<std::string, uint64_t> hits_by_source;  // requests whose reuse each source served
  double saved_ms = 0, restore_ms = 0, prefill_ms = 0;
};

class RequestLog {
 public:
  explicit RequestLog(size_t capacity = 100);

  // A request was submitted; returns its id (1, 2, ...).
  uint64_t begin(const std::string& endpoint, uint32_t prompt_tokens, int64_t started_ms,
                 const std::string& session = "");
  void started(uint64_t id, int slot);
  void progress(uint64_t id, uint32_t done, uint32_t cached);
  void first_token(uint64_t id);
  // The request ended: it leaves the in-flight set and enters the ring and the totals.
  void finish(RequestRecord r);

  struct Snapshot {
    std::vector<RequestRecord> recent;  // newest first
    std::vector<InFlightRecord> in_flight;
    RequestTotals totals;
    size_t capacity = 0;
  };
  Snapshot snapshot() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  uint64_t next_id_ = 0;
  std::deque<RequestRecord> recent_;  // oldest first
  std::map<uint64_t, InFlightRecord> in_flight_;
  RequestTotals totals_;
};

}  // namespace kvstash::server
