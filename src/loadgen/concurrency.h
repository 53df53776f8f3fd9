// The concurrency benchmark (`kvstash bench --concurrency N`): N streams at once on one server,
// the case of several agents sharing it, measured with the client's own clock.
//
// Per server, one process with N slots (`--parallel N` / `-np N`): a short warm-up request, then
// N streamed chat requests released together, each with its own prompt (no prefix shared between
// streams, so no server can reuse one stream's prefill for another) and the same number of
// generated tokens (the caller bans the end-of-generation tokens, so every stream decodes exactly
// `max_tokens`). The client records when each token chunk arrives.
//
// What it reports, and why these definitions:
//  - aggregate decode tok/s: the tokens decoded after each stream's first one, summed over the
//    streams, over the wall time from the earliest first token to the latest last token. The
//    first token comes out of the prefill, so it starts the decode phase rather than belonging to
//    it; with one stream this is exactly the per-request decode speed of the other workloads
//    ((tokens - 1) / (last - first)). This is the figure llama.cpp's batched benchmarks call text
//    generation speed: completion tokens over the wall time of the decode phase.
//  - throughput tok/s: all completion tokens over the whole wall time (prefills included).
//  - inter-token latency: every interval between two token chunks of one stream, pooled over the
//    streams (median, p99, max), and per stream; TTFT per stream (median, p99).
//
// The interference scenario (`--concurrency-interference TOKENS`) runs in a second process with
// N + 1 slots: the N streams start as above, and once each has streamed a few tokens one more
// request with a long prompt (TOKENS tokens, one generated token) takes the free slot. Its
// prefill window is the time from sending it to its first token; every interval of the running
// streams that overlaps the window counts as "in the window", the others as "outside", and the
// report gives p99 in the window over the median outside (issue 13's target: at most 2).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/bench_run.h"
#include "loadgen/chat_client.h"
#include "loadgen/workload.h"

namespace kvstash::loadgen {

struct Stats {
  size_t n = 0;
  double median = 0, p99 = 0, max = 0, mean = 0;
};
// Percentiles by linear interpolation between the closest ranks (numpy's default).
Stats stats(std::vector<double> v);

struct ScenarioResult {
  int slots = 0;
  std::vector<ChatResult> streams;
  // The streams' token times relative to when they were released (seconds): stream k's tokens.
  std::vector<std::vector<double>> token_at;
  int completion_tokens = 0;  // summed over the streams (the server's counts)
  double wall_s = 0;          // release to the last stream's end
  double decode_wall_s = 0;   // earliest first token to latest last token
  double aggregate_decode_tok_s = 0, throughput_tok_s = 0;
  Stats itl_s, ttft_s;
  std::vector<Stats> stream_itl_s;  // each stream's own intervals
  // Interference only: the long request, its prefill window (relative to the release) and the
  // running streams' intervals in and outside it.
  std::optional<ChatResult> long_request;
  double window_start_s = 0, window_end_s = 0;
  Stats itl_in_window_s, itl_outside_s;
  bool window_covered = false;  // every stream was still streaming when the window closed
};

// Fills the derived fields of `r` from its streams (and long request); pure, for the tests.
void summarize(ScenarioResult& r);

struct ConcurrencyConfig {
  std::vector<Step> streams;        // one request per stream, prompts sharing nothing
  std::optional<Step> long_prompt;  // the interference request (none: no second scenario)
  Step warmup;                      // sent alone first: one-off costs stay out of the figures
  ChatExtras extras;                // what every request adds (e.g. the ban of EOG tokens)
  int interference_after = 8;       // tokens every stream has before the long request goes
};

struct ConcurrencyRun {
  std::string name;
  std::optional<ScenarioResult> steady, interference;
  bool failed = false;
  std::string error;
};

// The server's command line for a number of slots ("{port}" replaced as in run_server).
using SpecForSlots = std::function<ServerSpec(int slots)>;

// Runs both scenarios (the second when `cfg.long_prompt` is set) on the server `spec` makes.
ConcurrencyRun run_concurrency(const std::string& name, const SpecForSlots& spec,
                               const ConcurrencyConfig& cfg, const RunOptions& opt);

}  // namespace kvstash::loadgen
