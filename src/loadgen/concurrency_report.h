// The report of the concurrency benchmark (loadgen/concurrency.h), in the output directory as
// the other workloads write theirs: report.md (what a person reads), report.json (everything, for
// scripts: its "concurrency" object holds the figures per server and the ratios of the first
// server to each other), and tokens-<server>.tsv (every token's arrival time, for plots).
#pragma once

#include <string>
#include <vector>

#include "loadgen/concurrency.h"
#include "loadgen/report.h"

namespace kvstash::loadgen {

struct ConcurrencyShape {
  int streams = 0;
  int prompt_tokens = 0;        // per stream, as asked (the servers' counts are per stream)
  int max_tokens = 0;           // generated per stream
  int interference_tokens = 0;  // 0: no interference scenario
};

// Writes every file; returns the markdown text (also printed by the verb).
std::string write_concurrency_report(const std::string& dir, const ReportInfo& info,
                                     const ConcurrencyShape& shape,
                                     const std::vector<ConcurrencyRun>& runs);

}  // namespace kvstash::loadgen
