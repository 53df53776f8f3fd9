// The benchmark report: totals per server, ratios to the peer, a per-request table, and plots.
//
// Written to the output directory: report.md (what a person reads), report.json (everything,
// for scripts), one requests-<server>.tsv per server, and when gnuplot is installed ttft.png
// (TTFT per request, all servers) and prefill.png (cumulative TTFT over the run).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loadgen/bench_run.h"

namespace kvstash::loadgen {

struct Totals {
  size_t requests = 0;
  double ttft_s = 0;
  double prompt_tokens = 0, cached_tokens = 0, oracle_tokens = 0;
  double reuse_of_oracle = 0;  // cached / oracle (1 when the oracle is 0)
  double decode_tok_s = 0;     // token-weighted mean over requests
  double bytes_written = 0, bytes_read = 0;
};

Totals totals(const ServerRun& run);

struct ReportInfo {
  std::string command;   // how the run was started
  std::string workload;  // one line describing it
  std::string model;
};

// What a caller adds to the report (the fleet's section).
struct ReportExtra {
  std::string markdown;                            // after the totals and ratios
  nlohmann::json json = nlohmann::json::object();  // merged into report.json's top level
  bool per_request_table = true;                   // the caller has its own when false
};

// Writes every file; returns the markdown text (also printed by the verb).
std::string write_report(const std::string& dir, const ReportInfo& info,
                         const std::vector<ServerRun>& runs, const ReportExtra& extra = {});

}  // namespace kvstash::loadgen
