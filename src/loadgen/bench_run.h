// Runs a workload against one server process after another and collects what each did.
//
// Each server gets the same steps: a request is one streamed chat completion, timed by the
// client; a restart stops the server gracefully (SIGTERM) and starts it again, with the same
// command line, so only what it persisted survives. Cache counters are read from /metrics before
// each stop (a restart resets them).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "loadgen/chat_client.h"
#include "loadgen/workload.h"

namespace kvstash::loadgen {

struct ServerSpec {
  std::string name;               // "kvstash", "llama-server", ...
  std::vector<std::string> argv;  // "{port}" is replaced by the port chosen for the run
};

struct RequestRecord {
  size_t step = 0;  // index in the workload
  std::string session;
  uint32_t prompt_tokens = 0;  // as kvstash's tokenizer renders the request
  uint32_t oracle_tokens = 0;  // longest prefix shared with any earlier request
  ChatResult result;
};

struct ServerRun {
  std::string name;
  std::vector<RequestRecord> requests;
  std::vector<double> startup_s;             // model load to healthy, per start
  double bytes_written = 0, bytes_read = 0;  // from kvstash_cache_* metrics (0 if none)
  bool failed = false;
  std::string error;
};

struct RunOptions {
  std::string out_dir;  // logs go here
  int start_timeout_s = 600;
  int request_timeout_s = 3600;
  int stop_timeout_s = 120;
  Wire wire = Wire::kChat;                           // the API the requests go over
  std::function<void(const std::string&)> progress;  // one line per event
};

// `argv` with "{port}" replaced by `port`.
std::vector<std::string> substitute_port(std::vector<std::string> argv, int port);

// Adds the server's kvstash_cache_bytes_{written,read}_total from its /metrics (none: nothing).
void add_cache_counters(ServerRun& run, int port);

// `prompt_tokens` and `oracle_tokens` are indexed like the workload's requests.
ServerRun run_server(const ServerSpec& spec, const Workload& w,
                     const std::vector<uint32_t>& prompt_tokens,
                     const std::vector<uint32_t>& oracle_tokens, const RunOptions& opt);

// For each request, the longest common token prefix with any earlier request (restarts do not
// matter: this is what an ideal persistent cache could reuse).
std::vector<uint32_t> oracle_reuse(const std::vector<std::vector<int32_t>>& prompts);

}  // namespace kvstash::loadgen
