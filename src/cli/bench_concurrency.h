// `kvstash bench --concurrency N`: builds the concurrency benchmark's requests from the model
// (distinct prompts, the interference prompt, the ban of end-of-generation tokens), checks they
// fit each slot's context, runs every server and writes the report (loadgen/concurrency.h says
// what is measured, loadgen/concurrency_report.h what is written).
#pragma once

#include <string>
#include <vector>

#include "engine/chat.h"
#include "engine/model.h"
#include "loadgen/concurrency.h"
#include "loadgen/report.h"

namespace kvstash::cli {

struct ConcurrencyOptions {
  int streams = 0;  // 0: the mode is off
  uint32_t prompt_tokens = 128;
  int max_tokens = 64;
  uint32_t interference_tokens = 0;  // 0: no interference scenario
  uint64_t seed = 1;
  int ctx = 0;           // the servers' total context, split across their slots
  bool dry_run = false;  // build and check the requests only
};

// `spec_for(name, slots)` gives a server's command line; `info.workload` is filled in here.
int bench_concurrency(const ConcurrencyOptions& o, const engine::Model& tok,
                      const engine::ChatTemplates& templates,
                      const std::vector<std::string>& servers,
                      const std::function<loadgen::ServerSpec(const std::string&, int)>& spec_for,
                      const loadgen::RunOptions& run, loadgen::ReportInfo info);

}  // namespace kvstash::cli
