#include "loadgen/bench_run.h"

#include <algorithm>
#include <cstdio>

#include "cache/oracle.h"
#include "loadgen/server_runner.h"

namespace kvstash::loadgen {

std::vector<uint32_t> oracle_reuse(const std::vector<std::vector<int32_t>>& prompts) {
  auto out = cache::longest_earlier_prefixes({prompts.begin(), prompts.end()});
  // At least the last token is always computed, as on a real server.
  for (size_t i = 0; i < out.size(); ++i) {
    if (!prompts[i].empty()) out[i] = std::min<uint32_t>(out[i], prompts[i].size() - 1);
  }
  return out;
}

void add_cache_counters(ServerRun& run, int port) {
  const auto m = http_get("127.0.0.1", port, "/metrics");
  if (!m) return;
  run.bytes_written += prometheus_value(*m, "kvstash_cache_bytes_written_total");
  run.bytes_read += prometheus_value(*m, "kvstash_cache_bytes_read_total");
}

namespace {
std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
}  // namespace

std::vector<std::string> substitute_port(std::vector<std::string> argv, int port) {
  for (auto& a : argv) {
    if (const auto p = a.find("{port}"); p != std::string::npos) {
      a.replace(p, 6, std::to_string(port));
    }
  }
  return argv;
}

ServerRun run_server(const ServerSpec& spec, const Workload& w,
                     const std::vector<uint32_t>& prompt_tokens,
                     const std::vector<uint32_t>& oracle_tokens, const RunOptions& opt) {
  ServerRun run;
  run.name = spec.name;
  const int port = free_port();
  const std::vector<std::string> argv = substitute_port(spec.argv, port);
  const auto say = [&](const std::string& s) {
    if (opt.progress) opt.progress("[" + spec.name + "] " + s);
  };
  ServerRunner server(argv, opt.out_dir + "/" + spec.name + ".log", port);
  try {
    run.startup_s.push_back(server.start(opt.start_timeout_s));
    say("ready in " + fmt("%.1f", run.startup_s.back()) + " s");
    size_t req = 0;
    const size_t n_req = count_requests(w);
    for (size_t i = 0; i < w.size(); ++i) {
      const Step& s = w[i];
      if (s.kind == Step::Kind::kRestart) {
        add_cache_counters(run, port);
        const int rc = server.stop(opt.stop_timeout_s);
        say("restart (exit status " + std::to_string(rc) + ")");
        run.startup_s.push_back(server.start(opt.start_timeout_s));
        continue;
      }
      RequestRecord r;
      r.step = i;
      r.session = s.session;
      r.prompt_tokens = prompt_tokens.at(req);
      r.oracle_tokens = oracle_tokens.at(req);
      ChatExtras extras;
      extras.wire = opt.wire;
      r.result = stream_chat("127.0.0.1", port, s, opt.request_timeout_s, extras);
      ++req;
      if (!r.result.ok) {
        run.failed = true;
        run.error = "request " + std::to_string(req) + " (" + s.session + "): " + r.result.error;
        say(run.error);
        run.requests.push_back(std::move(r));
        break;
      }
      say(std::to_string(req) + "/" + std::to_string(n_req) + " " + s.session +
          " prompt=" + std::to_string(r.result.prompt_tokens) +
          " cached=" + std::to_string(r.result.cached_tokens) +
          " oracle=" + std::to_string(r.oracle_tokens) + " ttft=" + fmt("%.2f", r.result.ttft_s) +
          " s decode=" + fmt("%.1f", r.result.decode_tok_s) + " tok/s");
      run.requests.push_back(std::move(r));
    }
    add_cache_counters(run, port);
    server.stop(opt.stop_timeout_s);
  } catch (const std::exception& e) {
    run.failed = true;
    run.error = e.what();
    say(std::string("failed: ") + e.what());
  }
  return run;
}

}  // namespace kvstash::loadgen
