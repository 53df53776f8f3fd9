// kvstash replay: drive the cache policy with a token-level trace, no model (replay/replay.h).
//
//   kvstash replay TRACE.jsonl --policy full --policy auto --budget 4G --budget 16G
//   kvstash replay --scenario issue157             (runs it before and after the fix)
//   kvstash replay --scenario agent --write-trace agent.jsonl
//
// Every combination of --policy, --budget and --before is one run; the runs are one table.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "replay/replay.h"
#include "replay/scenarios.h"
#include "util/size.h"

namespace kvstash::cli {

namespace {

// Applies a --before value: seed toggles separated by commas.
std::string apply_before(const std::string& list, cache::StoreConfig& st, cache::EvictConfig& ev) {
  std::string label;
  std::stringstream ss(list);
  for (std::string t; std::getline(ss, t, ',');) {
    if (t == "none" || t.empty()) continue;
    const bool all = t == "all";
    bool known = all;
    if (all || t == "issue157") ev.protect_own_writes = false, known = true;
    if (all || t == "pr448") ev.protect_incoming_prefix = false, known = true;
    if (all || t == "pr394") st.refresh_anchor = false, known = true;
    if (all || t == "pr175") st.drop_superseded = false, known = true;
    if (all || t == "recency") ev.recency_boost = 0, known = true;
    if (all || t == "trim") st.store_before_trim = false, known = true;
    if (!known) {
      throw std::invalid_argument("--before: unknown toggle '" + t +
                                  "' (issue157, pr448, pr394, pr175, recency, trim, all, none)");
    }
    label += (label.empty() ? "" : ",") + t;
  }
  return label.empty() ? "none" : label;
}

// Silences the cache's log lines (stderr) while replaying, or sends them to a file.
struct QuietStderr {
  int saved = -1;
  explicit QuietStderr(const std::string& log_file) {
    std::fflush(stderr);
    const int fd = log_file.empty() ? ::open("/dev/null", O_WRONLY)
                                    : ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      throw std::runtime_error("cannot open " + (log_file.empty() ? "/dev/null" : log_file));
    saved = ::dup(2);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~QuietStderr() {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
  }
};

std::string pct(double x) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f%%", 100 * x);
  return b;
}

std::string count_of(const std::map<std::string, uint64_t>& m, const std::string& k) {
  auto it = m.find(k);
  return std::to_string(it == m.end() ? 0 : it->second);
}

void print_table(const std::vector<replay::ReplayResult>& rs) {
  std::printf(
      "| run | requests | hits (live) | hit rate | tokens reused | oracle | reused/oracle | "
      "prefilled "
      "| written | read | stores cold/cont/evict/shut/scope | skipped | evicted | own writes "
      "evicted | superseded dropped | wrong states | on disk at end |\n");
  std::printf(
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|\n");
  for (const auto& r : rs) {
    const auto& s = r.stores_by_reason;
    std::printf(
        "| %s | %llu | %llu (%llu) | %s | %llu | %llu | %s | %llu | %s | %s | %s/%s/%s/%s/%s | "
        "%llu | "
        "%llu | %llu | %llu | %llu | %s, %zu entries |\n",
        r.label.c_str(), (unsigned long long)r.requests, (unsigned long long)r.hits,
        (unsigned long long)r.live_hits, pct(r.hit_rate()).c_str(),
        (unsigned long long)r.tokens_reused, (unsigned long long)r.oracle_tokens,
        pct(r.reuse_ratio()).c_str(), (unsigned long long)r.tokens_prefilled,
        format_size(r.bytes_written).c_str(), format_size(r.bytes_read).c_str(),
        count_of(s, "cold").c_str(), count_of(s, "continued").c_str(), count_of(s, "evict").c_str(),
        count_of(s, "shutdown").c_str(), count_of(s, "scope").c_str(),
        (unsigned long long)r.stores_skipped, (unsigned long long)r.evictions,
        (unsigned long long)r.own_writes_evicted, (unsigned long long)r.superseded_dropped,
        (unsigned long long)r.wrong_states, format_size(r.final_disk_bytes).c_str(),
        r.final_entries);
  }
}

nlohmann::json to_json(const replay::ReplayResult& r, bool per_request) {
  nlohmann::json j = {{"run", r.label},
                      {"requests", r.requests},
                      {"restarts", r.restarts},
                      {"hits", r.hits},
                      {"live_hits", r.live_hits},
                      {"forks", r.forks},
                      {"hit_rate", r.hit_rate()},
                      {"prompt_tokens", r.prompt_tokens},
                      {"tokens_reused", r.tokens_reused},
                      {"oracle_tokens", r.oracle_tokens},
                      {"reuse_oracle_ratio", r.reuse_ratio()},
                      {"tokens_prefilled", r.tokens_prefilled},
                      {"bytes_written", r.bytes_written},
                      {"bytes_read", r.bytes_read},
                      {"stores", r.stores},
                      {"stores_by_reason", r.stores_by_reason},
                      {"stores_skipped", r.stores_skipped},
                      {"evictions", r.evictions},
                      {"evictions_by_reason", r.evictions_by_reason},
                      {"own_writes_evicted", r.own_writes_evicted},
                      {"superseded_dropped", r.superseded_dropped},
                      {"wrong_states", r.wrong_states},
                      {"final_disk_bytes", r.final_disk_bytes},
                      {"final_entries", r.final_entries},
                      {"final_chunks", r.final_chunks}};
  if (per_request) {
    j["cached"] = r.cached;
    j["oracle"] = r.oracle;
  }
  return j;
}

}  // namespace

Run add_replay(CLI::App& app) {
  struct Opts {
    std::string trace, scenario, write_trace, cache_dir, log_file, ram_budget = "0";
    uint64_t seed = 1;
    std::vector<std::string> policies, budgets, befores;
    replay::ReplayConfig base;
    bool hybrid = false, json = false, per_request = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("trace", o->trace, "JSONL trace (see src/replay/trace.h)");
  app.add_option("--scenario", o->scenario,
                 "a synthetic trace instead: issue157, pr394, pr448, pr175, pr364, agent");
  app.add_option("--seed", o->seed, "scenario seed")->capture_default_str();
  app.add_option("--write-trace", o->write_trace, "write the scenario's trace here and exit");
  app.add_option("--policy", o->policies,
                 "off | full | auto | auto:N | N (repeat to compare; default full)")
      ->take_all();
  app.add_option("--budget,--cache-disk-budget", o->budgets,
                 "disk budget in real bytes, e.g. 16G (repeat to compare; default 40G)")
      ->take_all();
  app.add_option("--before", o->befores,
                 "seed-bug toggles, comma-separated: issue157, pr448, pr394, pr175, recency, trim "
                 "(no store before a partial live hit), all, none (repeat to compare)")
      ->take_all();
  app.add_option("--ram-budget", o->ram_budget, "RAM tier budget (0: none)")->capture_default_str();
  app.add_option("--cache-dir", o->cache_dir, "keep the disk tier here (default: a temporary dir)");
  app.add_option("--slots,--parallel", o->base.slots, "slots, as kvstash serve --parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_flag("--hybrid", o->hybrid, "the engine resumes only at snapshots (attention+recurrent)");
  app.add_option("--chunk", o->base.sim.chunk, "prefill batch and cache chunk (tokens)")
      ->capture_default_str()
      ->check(CLI::Range(16, 8192));
  app.add_option("--bytes-per-token", o->base.sim.bytes_per_token,
                 "real KV bytes per token (Qwen3-0.6B f16: 114688)")
      ->capture_default_str();
  app.add_option("--state-bytes", o->base.sim.state_bytes, "--hybrid: real recurrent state bytes")
      ->capture_default_str();
  app.add_option("--scale", o->base.sim.scale, "store 1/scale of the real bytes")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--interval", o->base.interval_s, "virtual seconds between requests")
      ->capture_default_str();
  auto& st = o->base.store;
  app.add_option("--cache-min-tokens", st.min_tokens, "shortest prefix worth storing")
      ->capture_default_str();
  app.add_option("--cache-cold-max-tokens", st.cold_max_tokens, "longest cold anchor stored")
      ->capture_default_str();
  app.add_option("--cache-boundary-align", st.boundary_align, "cold anchor alignment")
      ->capture_default_str();
  app.add_option("--cache-boundary-trim", st.boundary_trim, "tokens cut from the anchor")
      ->capture_default_str();
  app.add_option("--cache-continued-interval", st.continued_interval,
                 "checkpoint every N prefilled tokens (0: never)")
      ->capture_default_str();
  app.add_option("--cache-recency-boost", o->base.evict.recency_boost, "eviction recency boost K")
      ->capture_default_str();
  app.add_option("--cache-recency-half-life", o->base.evict.half_life_s,
                 "eviction recency half-life (seconds)")
      ->capture_default_str();
  app.add_flag("--json", o->json, "print JSON instead of a table");
  app.add_flag("--per-request", o->per_request, "--json: add cached and oracle tokens per request");
  app.add_option("--log", o->log_file, "write the cache's log lines here (default: discarded)");

  return [o] {
    std::vector<replay::TraceRecord> trace;
    std::string title;
    if (!o->scenario.empty()) {
      if (!o->trace.empty()) throw std::invalid_argument("give a TRACE or a --scenario, not both");
      auto sc = replay::make_scenario(o->scenario, o->seed);
      if (!o->write_trace.empty()) {
        replay::write_trace_file(o->write_trace, sc.trace);
        std::printf("wrote %zu records of scenario %s to %s\n", sc.trace.size(), sc.name.c_str(),
                    o->write_trace.c_str());
        return 0;
      }
      title = "scenario " + sc.name + " (seed " + std::to_string(o->seed) + "): " + sc.about;
      if (o->budgets.empty()) o->budgets = {sc.budget};
      if (sc.hybrid) o->hybrid = true;
      if (o->policies.empty() && !sc.policies.empty()) o->policies = sc.policies;
      if (o->befores.empty() && !sc.before.empty()) o->befores = {sc.before, "none"};
      trace = std::move(sc.trace);
    } else {
      if (o->trace.empty()) throw std::invalid_argument("give a TRACE file or --scenario NAME");
      if (!o->write_trace.empty()) throw std::invalid_argument("--write-trace needs --scenario");
      trace = replay::read_trace_file(o->trace);
      title = "trace " + o->trace;
    }
    if (o->policies.empty()) o->policies = {"full"};
    if (o->budgets.empty()) o->budgets = {"40G"};
    if (o->befores.empty()) o->befores = {"none"};
    o->base.sim.hybrid = o->hybrid;
    o->base.ram_budget = parse_size(o->ram_budget);

    std::vector<replay::ReplayConfig> runs;
    for (const auto& b : o->befores) {
      for (const auto& budget : o->budgets) {
        for (const auto& p : o->policies) {
          replay::ReplayConfig c = o->base;
          std::string err;
          const auto scope = cache::parse_scope(p, &err);
          if (!scope) throw std::invalid_argument("--policy: " + err);
          c.scope = *scope;
          c.disk_budget = parse_size(budget);
          const std::string before = apply_before(b, c.store, c.evict);
          c.label = scope->str() + " " + budget + (before == "none" ? "" : " before=" + before);
          runs.push_back(c);
        }
      }
    }
    for (size_t i = 0; i < runs.size(); ++i) {
      if (!o->cache_dir.empty()) {
        runs[i].cache_dir =
            runs.size() == 1 ? o->cache_dir : o->cache_dir + "/run" + std::to_string(i);
        std::filesystem::create_directories(runs[i].cache_dir);
      }
    }
    std::vector<replay::ReplayResult> results;
    {
      QuietStderr quiet(o->log_file);
      for (const auto& c : runs) results.push_back(replay::run_replay(trace, c));
    }
    if (o->json) {
      nlohmann::json j = {{"title", title},
                          {"hybrid", o->hybrid},
                          {"slots", o->base.slots},
                          {"bytes_per_token", o->base.sim.bytes_per_token},
                          {"scale", o->base.sim.scale},
                          {"runs", nlohmann::json::array()}};
      for (const auto& r : results) j["runs"].push_back(to_json(r, o->per_request));
      std::cout << j.dump(2) << std::endl;
    } else {
      std::printf("%s\n%s, %d slot%s, %llu KV bytes/token, bytes stored at 1/%llu\n\n",
                  title.c_str(), o->hybrid ? "hybrid (resumes at snapshots only)" : "attention",
                  o->base.slots, o->base.slots == 1 ? "" : "s",
                  (unsigned long long)o->base.sim.bytes_per_token,
                  (unsigned long long)o->base.sim.scale);
      print_table(results);
    }
    uint64_t wrong = 0;
    for (const auto& r : results) wrong += r.wrong_states;
    return wrong ? 2 : 0;
  };
}

}  // namespace kvstash::cli
