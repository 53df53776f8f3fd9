// Runs a workload against a fleet (deploy/fleet.sh: N instances, a Redis Cluster, HAProxy) and
// writes the fleet report.
//
// Each run starts a fresh fleet in its own directory (empty caches, a new Redis Cluster), sends
// the workload's requests one after another to HAProxy's port, each with its session in the
// X-Claude-Code-Session-Id header (HAProxy's affinity key), and stops the fleet at the end. The
// workload's restart marker becomes a failure drill: instance 1 is killed (kill -9) and the run
// goes on; a request that fails is recorded and the run continues.
#pragma once

#include <string>
#include <vector>

#include "loadgen/bench_run.h"
#include "loadgen/fleet.h"
#include "loadgen/report.h"

namespace kvstash::loadgen {

struct FleetSpec {
  std::string name;     // the report's row: "kvstash", "kvstash-roundrobin", "llama-server"
  std::string balance;  // "affinity" or "roundrobin"
  std::string script;   // deploy/fleet.sh
  int instances = 3;
  // After `start DIR --port P --redis-port R`: -m, --server, binaries, `--` and server flags.
  std::vector<std::string> start_args;
};

struct FleetRun {
  ServerRun run;       // requests, startup, cache counters of the instances alive at the end
  size_t kill_at = 0;  // requests sent before instance 1 was killed (all of them: no kill)
  int instances = 0;
  std::string balance;
};

FleetRun run_fleet(const FleetSpec& spec, const Workload& w,
                   const std::vector<uint32_t>& prompt_tokens,
                   const std::vector<uint32_t>& oracle_tokens, const RunOptions& opt);

// The fleet's view of a run's requests: instance (X-Served-By) and tier of each.
std::vector<FleetRequest> fleet_requests(const ServerRun& run);

// report.md and report.json as write_report makes them, with the fleet's section; returns the
// markdown.
std::string write_fleet_report(const std::string& dir, const ReportInfo& info,
                               const std::vector<FleetRun>& runs);

}  // namespace kvstash::loadgen
