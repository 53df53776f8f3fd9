#include "server/request_log.h"

#include <cmath>

namespace kvstash::server {

std::string request_line(const RequestRecord& r) {
  auto ms = [](double v) { return std::to_string(std::llround(v)); };
  std::string s = "request " + std::to_string(r.id) + " " + r.endpoint +
                  " slot=" + std::to_string(r.slot) + " prompt=" + std::to_string(r.prompt_tokens) +
                  " cached=" + std::to_string(r.cached_tokens);
  if (!r.cache_source.empty()) s += " source=" + r.cache_source;
  s += " completion=" + std::to_string(r.completion_tokens) + " finish=" + r.finish_reason +
       " ttft_ms=" + ms(r.ttft_ms) + " total_ms=" + ms(r.total_ms);
  if (!r.session.empty()) s += " session=" + r.session;
  return s;
}

RequestLog::RequestLog(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

uint64_t RequestLog::begin(const std::string& endpoint, uint32_t prompt_tokens, int64_t started_ms,
                           const std::string& session) {
  std::lock_guard lock(mu_);
  InFlightRecord f;
  f.id = ++next_id_;
  f.endpoint = endpoint;
  f.started_ms = started_ms;
  f.prompt_tokens = prompt_tokens;
  f.session = session;
  in_flight_[f.id] = f;
  return f.id;
}

void RequestLog::started(uint64_t id, int slot) {
  std::lock_guard lock(mu_);
  if (auto it = in_flight_.find(id); it != in_flight_.end()) {
    it->second.slot = slot;
    it->second.phase = "prefill";
  }
}

void RequestLog::progress(uint64_t id, uint32_t done, uint32_t cached) {
  std::lock_guard lock(mu_);
  if (auto it = in_flight_.find(id); it != in_flight_.end()) {
    it->second.done = done;
    it->second.cached = cached;
  }
}

void RequestLog::first_token(uint64_t id) {
  std::lock_guard lock(mu_);
  if (auto it = in_flight_.find(id); it != in_flight_.end()) it->second.phase = "decode";
}

void RequestLog::finish(RequestRecord r) {
  std::lock_guard lock(mu_);
  in_flight_.erase(r.id);
  auto& t = totals_;
  ++t.requests;
  t.errors += r.finish_reason == "error";
  t.cancelled += r.finish_reason == "cancelled";
  t.prompt_tokens += r.prompt_tokens;
  t.cached_tokens += r.cached_tokens;
  // The rest of the prompt once a slot ran its prefill (a cancelled one counts whole, as the slot
  // pool's kvstash_tokens_prefilled_total does); a failed request is left out.
  if (r.slot >= 0 && r.finish_reason != "error") {
    t.prefilled_tokens += r.prompt_tokens - r.cached_tokens;
  }
  t.completion_tokens += r.completion_tokens;
  if (!r.cache_source.empty()) ++t.hits_by_source[r.cache_source];
  t.saved_ms += r.saved_ms;
  t.restore_ms += r.restore_ms;
  t.prefill_ms += r.prefill_ms;
  recent_.push_back(std::move(r));
  while (recent_.size() > capacity_) recent_.pop_front();
}

RequestLog::Snapshot RequestLog::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  s.recent.assign(recent_.rbegin(), recent_.rend());
  for (const auto& [id, f] : in_flight_) s.in_flight.push_back(f);
  s.totals = totals_;
  s.capacity = capacity_;
  return s;
}

}  // namespace kvstash::server
