#include "loadgen/fleet_run.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "loadgen/server_runner.h"
#include "util/process.h"

namespace kvstash::loadgen {
namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Runs deploy/fleet.sh with `args`, its output appended to `log`; throws with the log's tail
// when it fails.
void fleet_sh(const std::string& script, const std::vector<std::string>& args,
              const std::string& log) {
  std::vector<std::string> argv = {script};
  argv.insert(argv.end(), args.begin(), args.end());
  SpawnOptions so;
  so.stdout_path = so.stderr_path = log;
  Child c(argv, so);
  const int rc = c.wait();
  if (rc != 0) {
    throw std::runtime_error(script + " " + args.at(0) + " failed (exit status " +
                             std::to_string(rc) + "):\n" + file_tail(log));
  }
}

// Stops the fleet whatever happens to the run.
struct FleetGuard {
  std::string script, dir, log;
  ~FleetGuard() {
    try {
      fleet_sh(script, {"stop", dir}, log);
    } catch (...) {
    }
  }
};

}  // namespace

FleetRun run_fleet(const FleetSpec& spec, const Workload& w,
                   const std::vector<uint32_t>& prompt_tokens,
                   const std::vector<uint32_t>& oracle_tokens, const RunOptions& opt) {
  FleetRun fr;
  fr.instances = spec.instances;
  fr.balance = spec.balance;
  ServerRun& run = fr.run;
  run.name = spec.name;
  const auto say = [&](const std::string& s) {
    if (opt.progress) opt.progress("[" + spec.name + "] " + s);
  };
  const std::string dir = opt.out_dir + "/fleet-" + spec.name;
  const std::string log = opt.out_dir + "/fleet-" + spec.name + ".log";
  std::filesystem::remove_all(dir);
  std::filesystem::remove(log);
  try {
    const int port = free_port_block(spec.instances + 1, false);
    int redis_port = free_port_block(3, true);
    while (redis_port <= port + spec.instances && redis_port + 3 > port) {
      redis_port = free_port_block(3, true);
    }
    std::vector<std::string> args = {
        "start", dir, "--port", std::to_string(port), "--redis-port", std::to_string(redis_port)};
    args.insert(args.end(), spec.start_args.begin(), spec.start_args.end());
    const auto t0 = std::chrono::steady_clock::now();
    FleetGuard guard{spec.script, dir, log};
    fleet_sh(spec.script, args, log);
    run.startup_s.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    say(std::to_string(spec.instances) + " instances behind port " + std::to_string(port) + " (" +
        spec.balance + ") ready in " + fmt("%.1f", run.startup_s.back()) + " s");
    size_t req = 0;
    const size_t n_req = count_requests(w);
    fr.kill_at = n_req;
    for (size_t i = 0; i < w.size(); ++i) {
      const Step& s = w[i];
      if (s.kind == Step::Kind::kRestart) {
        fleet_sh(spec.script, {"kill", dir, "1"}, log);
        fr.kill_at = req;
        say("instance 1 killed (kill -9) after request " + std::to_string(req));
        continue;
      }
      RequestRecord r;
      r.step = i;
      r.session = s.session;
      r.prompt_tokens = prompt_tokens.at(req);
      r.oracle_tokens = oracle_tokens.at(req);
      ChatExtras extras;
      extras.wire = opt.wire;
      extras.headers = {{"X-Claude-Code-Session-Id", s.session}};
      r.result = stream_chat("127.0.0.1", port, s, opt.request_timeout_s, extras);
      ++req;
      const auto& res = r.result;
      say(std::to_string(req) + "/" + std::to_string(n_req) + " " + s.session + " " +
          (res.ok ? res.served_by + " " +
                        tier_name(classify_tier(res.cache_source, res.cached_tokens)) +
                        " prompt=" + std::to_string(res.prompt_tokens) +
                        " cached=" + std::to_string(res.cached_tokens) +
                        " ttft=" + fmt("%.2f", res.ttft_s) + " s"
                  : "FAILED: " + res.error));
      run.requests.push_back(std::move(r));
    }
    for (int k = 1; k <= spec.instances; ++k) add_cache_counters(run, port + k);
  } catch (const std::exception& e) {
    run.failed = true;
    run.error = e.what();
    say(std::string("failed: ") + e.what());
  }
  // The instances' disk caches are big and of no use after the run; their logs stay.
  for (int k = 1; k <= spec.instances; ++k) {
    std::error_code ec;
    std::filesystem::remove_all(dir + "/inst" + std::to_string(k) + "/cache", ec);
  }
  return fr;
}

std::vector<FleetRequest> fleet_requests(const ServerRun& run) {
  std::vector<FleetRequest> out;
  for (const auto& r : run.requests) {
    out.push_back({r.session, r.result.served_by,
                   classify_tier(r.result.cache_source, r.result.cached_tokens), r.result.ok});
  }
  return out;
}

}  // namespace kvstash::loadgen

namespace kvstash::loadgen {
namespace {

std::string instance_counts(const FleetSummary& s) {
  std::string out;
  for (const auto& [inst, n] : s.per_instance) {
    out += (out.empty() ? "" : ", ") + (inst.empty() ? "?" : inst) + " " + std::to_string(n);
  }
  return out.empty() ? "-" : out;
}

std::string tier_counts(const FleetSummary& s) {
  std::string out;
  for (const auto& [tier, n] : s.per_tier) {
    out += (out.empty() ? "" : ", ") + tier + " " + std::to_string(n);
  }
  return out.empty() ? "-" : out;
}

std::string share(size_t part, size_t whole) {
  return std::to_string(part) + "/" + std::to_string(whole) +
         (whole ? " (" + fmt("%.1f%%", 100.0 * part / whole) + ")" : "");
}

// The per-run table of the fleet section.
void summary_table(std::ostringstream& md, const std::vector<FleetRun>& runs,
                   const std::vector<FleetSummary>& sums) {
  md << "| |";
  for (const auto& r : runs) md << " " << r.run.name << " |";
  md << "\n|---|";
  for (size_t i = 0; i < runs.size(); ++i) md << "---|";
  md << "\n";
  const auto row = [&](const std::string& name, auto get) {
    md << "| " << name << " |";
    for (size_t i = 0; i < runs.size(); ++i) md << " " << get(i) << " |";
    md << "\n";
  };
  row("balance", [&](size_t i) { return runs[i].balance; });
  row("instance 1 killed after request", [&](size_t i) { return std::to_string(runs[i].kill_at); });
  row("failed requests (after the kill)", [&](size_t i) {
    return std::to_string(sums[i].failed) + " (" + std::to_string(sums[i].failed_after_kill) + ")";
  });
  row("requests per instance", [&](size_t i) { return instance_counts(sums[i]); });
  row("tiers", [&](size_t i) { return tier_counts(sums[i]); });
  row("live hits after a session's first turn",
      [&](size_t i) { return share(sums[i].live_after_first, sums[i].after_first); });
  row("local hits (live, ram, disk) after a session's first turn",
      [&](size_t i) { return share(sums[i].local_after_first, sums[i].after_first); });
  row("live hits before the kill", [&](size_t i) {
    return share(sums[i].live_after_first_before_kill, sums[i].after_first_before_kill);
  });
  row("sessions on one instance before the kill",
      [&](size_t i) { return share(sums[i].sessions_on_one_instance, sums[i].sessions); });
}

// One row per request: session, prompt, and each run's instance, tier, cached tokens and TTFT.
void fleet_request_table(std::ostringstream& md, const std::vector<FleetRun>& runs) {
  md << "\n### Per request\n\n| # | session | prompt |";
  for (const auto& r : runs) md << " " << r.run.name << ": instance, tier, cached, TTFT (s) |";
  md << "\n|---|---|---|";
  for (size_t i = 0; i < runs.size(); ++i) md << "---|";
  md << "\n";
  size_t n = 0;
  for (const auto& r : runs) n = std::max(n, r.run.requests.size());
  for (size_t k = 0; k < n; ++k) {
    const RequestRecord* any = nullptr;
    for (const auto& r : runs) {
      if (k < r.run.requests.size()) any = &r.run.requests[k];
    }
    if (k > 0 && k == runs.front().kill_at) {
      md << "| | **instance 1 killed (kill -9)** | |";
      for (size_t i = 0; i < runs.size(); ++i) md << " |";
      md << "\n";
    }
    md << "| " << k + 1 << " | " << any->session << " | " << any->prompt_tokens << " |";
    for (const auto& r : runs) {
      if (k >= r.run.requests.size()) {
        md << " - |";
        continue;
      }
      const auto& res = r.run.requests[k].result;
      md << " " << (res.ok ? res.served_by : "FAILED") << ", "
         << tier_name(classify_tier(res.cache_source, res.cached_tokens)) << ", "
         << res.cached_tokens << ", " << fmt("%.2f", res.ttft_s) << " |";
    }
    md << "\n";
  }
}

nlohmann::json run_json(const FleetRun& r, const FleetSummary& s) {
  nlohmann::json reqs = nlohmann::json::array();
  const auto fr = fleet_requests(r.run);
  for (size_t k = 0; k < fr.size(); ++k) {
    const auto& q = r.run.requests[k];
    reqs.push_back({{"session", q.session},
                    {"instance", fr[k].instance},
                    {"tier", tier_name(fr[k].tier)},
                    {"prompt_tokens", q.prompt_tokens},
                    {"cached_tokens", q.result.cached_tokens},
                    {"ttft_s", q.result.ttft_s},
                    {"ok", q.result.ok},
                    {"after_kill", k >= r.kill_at}});
  }
  return {{"name", r.run.name},
          {"balance", r.balance},
          {"instances", r.instances},
          {"kill_at", r.kill_at},
          {"failed", s.failed},
          {"failed_after_kill", s.failed_after_kill},
          {"requests_per_instance", s.per_instance},
          {"requests_per_tier", s.per_tier},
          {"after_first", s.after_first},
          {"live_after_first", s.live_after_first},
          {"live_share", s.live_share()},
          {"local_after_first", s.local_after_first},
          {"local_share", s.local_share()},
          {"live_share_before_kill", s.live_share_before_kill()},
          {"sessions", s.sessions},
          {"sessions_on_one_instance", s.sessions_on_one_instance},
          {"requests", reqs}};
}

}  // namespace

std::string write_fleet_report(const std::string& dir, const ReportInfo& info,
                               const std::vector<FleetRun>& runs) {
  std::vector<ServerRun> plain;
  std::vector<FleetSummary> sums;
  std::map<std::string, double> ttft;
  ReportExtra extra;
  extra.per_request_table = false;
  extra.json["fleet"]["runs"] = nlohmann::json::array();
  for (const auto& r : runs) {
    plain.push_back(r.run);
    sums.push_back(summarize_fleet(fleet_requests(r.run), r.kill_at));
    if (!r.run.failed) ttft[r.run.name] = totals(r.run).ttft_s;
    extra.json["fleet"]["runs"].push_back(run_json(r, sums.back()));
  }
  std::ostringstream md;
  md << "\n## Fleet: " << (runs.empty() ? 0 : runs[0].instances)
     << " instances behind HAProxy (deploy/fleet.sh)\n\n";
  summary_table(md, runs, sums);
  md << "\n";
  const auto ratio = [&](const std::string& key, const std::string& a, const std::string& b) {
    const auto v = ttft_ratio(ttft, a, b);
    extra.json["fleet"]["ratios"][key] = v ? nlohmann::json(*v) : nlohmann::json();
    md << "- total TTFT " << a << " / " << b << " = " << (v ? fmt("%.3f", *v) : "-") << "\n";
  };
  ratio("kvstash_over_roundrobin", "kvstash", "kvstash-roundrobin");
  ratio("kvstash_over_llama_server", "kvstash", "llama-server");
  fleet_request_table(md, runs);
  extra.markdown = md.str();
  return write_report(dir, info, plain, extra);
}

}  // namespace kvstash::loadgen
