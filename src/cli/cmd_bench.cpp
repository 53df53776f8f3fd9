// kvstash bench: an agent workload against kvstash and llama-server, one after the other, with
// the same model and flags; per-request TTFT, cached tokens and the oracle, totals and ratios,
// plots. See bench/README.md for the figures and the commands that made them.
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/bench_concurrency.h"
#include "cli/commands.h"
#include "engine/model.h"
#include "loadgen/bench_run.h"
#include "loadgen/fleet_run.h"
#include "loadgen/report.h"
#include "loadgen/workload.h"
#include "server/chat_prompt.h"
#include "util/process.h"

namespace kvstash::cli {
namespace {

// llama-server: $KVSTASH_LLAMA_SERVER, else the one built with the pinned llama.cpp, else PATH.
std::string default_llama_server() {
  if (const char* e = std::getenv("KVSTASH_LLAMA_SERVER")) return e;
#ifdef KVSTASH_LLAMA_SERVER
  if (std::filesystem::exists(KVSTASH_LLAMA_SERVER)) return KVSTASH_LLAMA_SERVER;
#endif
  return "llama-server";
}

// deploy/fleet.sh of the source tree this binary was built from.
std::string default_fleet_script() {
#ifdef KVSTASH_SOURCE_DIR
  return KVSTASH_SOURCE_DIR "/deploy/fleet.sh";
#else
  return "deploy/fleet.sh";
#endif
}

// This process's command line, for the report (how to run it again).
std::string command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()), out;
  for (char c : all) out += c ? c : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string now_stamp() {
  const std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y%m%d-%H%M%S", std::localtime(&t));
  return b;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, sep);) {
    if (!p.empty()) out.push_back(p);
  }
  return out;
}

struct BenchOpts {
  std::string model, trace, out, llama_server = default_llama_server();
  std::string servers = "kvstash,llama-server", workload = "agent", api = "chat";
  std::string write_trace, write_token_trace;
  loadgen::AgentConfig agent;
  loadgen::ColdConfig cold;
  int ctx = 32768, threads = static_cast<int>(std::thread::hardware_concurrency()), ngl = 0;
  int cache_ram_mib = 8192;
  bool dry_run = false, no_restart = false;
  std::vector<std::string> kvstash_args, llama_args;
  int request_timeout = 7200;
  ConcurrencyOptions conc;
  int fleet = 0, slots = 1;  // --fleet N instances; --np slots per fleet instance
  std::string fleet_script = default_fleet_script();
};

// A server's command line: the same model, context, threads, GPU layers and slots for all.
loadgen::ServerSpec server_spec(const BenchOpts& o, const std::string& name, int slots,
                                const std::string& out) {
  const std::string T = std::to_string(o.threads), C = std::to_string(o.ctx),
                    NGL = std::to_string(o.ngl), S = std::to_string(slots);
  loadgen::ServerSpec spec{name, {}};
  if (name == "kvstash" || name == "kvstash-nocache") {
    spec.argv = {self_exe(), "serve", "-m", o.model, "--host", "127.0.0.1", "--port", "{port}",
                 "-c",       C,       "-t", T,       "--np",   S,           "--ngl",  NGL};
    if (name == "kvstash") {
      std::filesystem::remove_all(out + "/cache");
      spec.argv.insert(spec.argv.end(), {"--cache-dir", out + "/cache"});
    } else {
      spec.argv.insert(spec.argv.end(), {"--cache-scope", "off"});
    }
    spec.argv.insert(spec.argv.end(), o.kvstash_args.begin(), o.kvstash_args.end());
  } else if (name == "llama-server") {
    // Its prompt cache at its best exact settings: prompt caching on (default), the host-RAM
    // prompt cache (--cache-ram) holding other conversations' states, as many slots as kvstash,
    // flash attention like kvstash, and the model's Jinja template with the request's tools
    // (--jinja), as kvstash renders it, so both see the same prompt tokens.
    spec.argv = {o.llama_server,
                 "-m",
                 o.model,
                 "--host",
                 "127.0.0.1",
                 "--port",
                 "{port}",
                 "-c",
                 C,
                 "-t",
                 T,
                 "-np",
                 S,
                 "-fa",
                 "on",
                 "-ngl",
                 NGL,
                 "--cache-ram",
                 std::to_string(o.cache_ram_mib),
                 "--jinja",
                 "--no-webui"};
    spec.argv.insert(spec.argv.end(), o.llama_args.begin(), o.llama_args.end());
  } else {
    throw std::runtime_error("unknown server \"" + name +
                             "\" (kvstash, kvstash-nocache, llama-server)");
  }
  return spec;
}

// Says which server runs, with its whole command line (to rerun it by hand).
void announce(const loadgen::ServerSpec& spec) {
  std::cout << "running " << spec.name << ":";
  for (const auto& a : spec.argv) std::cout << " " << a;
  std::cout << std::endl;
}

// The fleets one --servers entry runs: kvstash with affinity and round-robin, llama-server with
// affinity. Each instance gets the bench's model, context, threads, GPU layers and slots.
std::vector<loadgen::FleetSpec> fleet_specs(const BenchOpts& o, const std::string& name) {
  const std::string T = std::to_string(o.threads), C = std::to_string(o.ctx),
                    NGL = std::to_string(o.ngl), S = std::to_string(o.slots);
  std::vector<std::string> base = {"-m",
                                   o.model,
                                   "-n",
                                   std::to_string(o.fleet),
                                   "--kvstash",
                                   self_exe(),
                                   "--llama-server",
                                   o.llama_server,
                                   "--server"};
  const auto spec = [&](const std::string& row, const std::string& balance) {
    loadgen::FleetSpec f{row, balance, o.fleet_script, o.fleet, base};
    f.start_args.insert(f.start_args.end(), {name, "--balance", balance, "--", "-c", C, "-t", T});
    if (name == "kvstash") {
      f.start_args.insert(f.start_args.end(), {"--np", S, "--ngl", NGL});
      f.start_args.insert(f.start_args.end(), o.kvstash_args.begin(), o.kvstash_args.end());
    } else {
      f.start_args.insert(f.start_args.end(),
                          {"-np", S, "-ngl", NGL, "--cache-ram", std::to_string(o.cache_ram_mib)});
      f.start_args.insert(f.start_args.end(), o.llama_args.begin(), o.llama_args.end());
    }
    return f;
  };
  if (name == "kvstash")
    return {spec("kvstash", "affinity"), spec("kvstash-roundrobin", "roundrobin")};
  if (name == "llama-server") return {spec("llama-server", "affinity")};
  throw std::runtime_error("--fleet runs kvstash and llama-server, not \"" + name + "\"");
}

loadgen::RunOptions run_options(const BenchOpts& o, const std::string& out) {
  loadgen::RunOptions ro;
  ro.out_dir = out;
  ro.request_timeout_s = o.request_timeout;
  ro.wire = loadgen::parse_wire(o.api);
  ro.progress = [](const std::string& s) { std::cout << s << std::endl; };
  return ro;
}

// The output directory, made and absolute (the servers run elsewhere).
std::string out_dir(BenchOpts& o) {
  if (o.out.empty()) o.out = "bench-results/" + now_stamp();
  std::filesystem::create_directories(o.out);
  return std::filesystem::absolute(o.out).string();
}

// --concurrency N: its own requests and report (cli/bench_concurrency.h).
int run_concurrency(BenchOpts& o, bool max_tokens_given, const engine::Model& tok,
                    const engine::ChatTemplates& templates) {
  o.conc.max_tokens = max_tokens_given ? o.agent.max_tokens : 64;
  o.conc.seed = o.agent.seed;
  o.conc.ctx = o.ctx;
  o.conc.dry_run = o.dry_run;
  const std::string out = o.dry_run ? "" : out_dir(o);  // a dry run writes nothing
  const auto spec = [&](const std::string& name, int slots) {
    auto s = server_spec(o, name, slots, out);
    announce(s);
    return s;
  };
  return bench_concurrency(o.conc, tok, templates, split(o.servers, ','), spec, run_options(o, out),
                           {command_line(), "", o.model});
}

// --fleet N: each server's fleets in turn, the fleet report; 1 when a fleet failed to run or a
// request failed.
int run_fleets(const BenchOpts& o, const loadgen::Workload& w, const std::vector<uint32_t>& lens,
               const std::vector<uint32_t>& oracle, const std::string& out,
               const loadgen::ReportInfo& info) {
  std::vector<loadgen::FleetRun> runs;
  for (const auto& name : split(o.servers, ',')) {
    for (const auto& spec : fleet_specs(o, name)) {
      std::cout << "running a fleet of " << spec.instances << " " << name << " (" << spec.balance
                << "): " << spec.script;
      for (const auto& a : spec.start_args) std::cout << " " << a;
      std::cout << std::endl;
      runs.push_back(loadgen::run_fleet(spec, w, lens, oracle, run_options(o, out)));
    }
  }
  const std::string md = loadgen::write_fleet_report(out, info, runs);
  std::cout << "\n" << md << "\nreport: " << out << "/report.md\n";
  for (const auto& r : runs) {
    if (r.run.failed) return 1;
    for (const auto& q : r.run.requests) {
      if (!q.result.ok) return 1;
    }
  }
  return 0;
}

}  // namespace

Run add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOpts>();
  app.add_option("-m,--model", o->model, "GGUF model both servers load")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--workload", o->workload,
                 "built-in workload: agent, or cold (prompts that share nothing)")
      ->check(CLI::IsMember({"agent", "cold"}))
      ->capture_default_str();
  app.add_option("--trace", o->trace, "replay a recorded text trace (JSONL) instead")
      ->check(CLI::ExistingFile);
  app.add_option("--seed", o->agent.seed, "workload seed")->capture_default_str();
  app.add_option("--cold-requests", o->cold.requests, "cold workload: requests")
      ->capture_default_str();
  app.add_option("--cold-tokens", o->cold.tokens, "cold workload: tokens per prompt")
      ->capture_default_str();
  app.add_option("--sessions", o->agent.sessions, "agent sessions")->capture_default_str();
  app.add_option("--sessions-per-env", o->agent.sessions_per_env,
                 "sessions sharing one early environment block before it changes")
      ->capture_default_str();
  app.add_option("--turns", o->agent.turns, "requests per session")->capture_default_str();
  app.add_option("--subagents", o->agent.subagents, "sub-agents per session")
      ->capture_default_str();
  app.add_option("--subagent-turns", o->agent.subagent_turns, "requests per sub-agent")
      ->capture_default_str();
  app.add_option("--system-tokens", o->agent.system_tokens,
                 "system prompt with tool schemas (tokens)")
      ->capture_default_str();
  app.add_option("--tool-result-tokens", o->agent.tool_result_tokens, "mean tool result (tokens)")
      ->capture_default_str();
  auto* max_tokens =
      app.add_option("--max-tokens", o->agent.max_tokens,
                     "tokens generated per request (--concurrency: per stream, default 64)")
          ->capture_default_str();
  app.add_option("--concurrency", o->conc.streams,
                 "N concurrent streams with distinct prompts instead of a workload: aggregate "
                 "decode tok/s, inter-token latency, TTFT (servers get N slots)");
  app.add_option("--concurrency-prompt-tokens", o->conc.prompt_tokens,
                 "--concurrency: prompt tokens per stream")
      ->capture_default_str();
  app.add_option(
         "--concurrency-interference", o->conc.interference_tokens,
         "--concurrency: also send a prompt of this many tokens to slot N+1 while the "
         "streams decode, and measure their inter-token latency during its prefill (0: off)")
      ->capture_default_str();
  app.add_flag("--no-restart", o->no_restart,
               "no server restart half-way (--fleet: no instance killed)");
  app.add_option("--fleet", o->fleet,
                 "N instances of each server behind HAProxy (deploy/fleet.sh) instead of one: "
                 "kvstash with session affinity and round-robin, llama-server with affinity; "
                 "the restart becomes kill -9 of instance 1")
      ->check(CLI::Range(1, 64));
  app.add_option("--fleet-script", o->fleet_script, "--fleet: the fleet script")
      ->capture_default_str();
  app.add_option("--np", o->slots, "--fleet: slots per instance")->capture_default_str();
  app.add_option("--api", o->api,
                 "the API the agent workload's requests go over: chat (/v1/chat/completions), "
                 "messages (Anthropic /v1/messages) or responses (OpenAI /v1/responses); both "
                 "servers serve all three")
      ->capture_default_str()
      ->check(CLI::IsMember({"chat", "messages", "responses"}));
  app.add_option("--servers", o->servers,
                 "comma-separated: kvstash, kvstash-nocache, llama-server (first is the subject)")
      ->capture_default_str();
  app.add_option("--llama-server", o->llama_server, "llama-server binary")->capture_default_str();
  app.add_option("-c,--ctx-size", o->ctx, "context size for both servers")->capture_default_str();
  app.add_option("-t,--threads", o->threads, "threads for both servers")->capture_default_str();
  app.add_option("--ngl", o->ngl, "layers on the GPU for both servers (-1: all)")
      ->capture_default_str();
  app.add_option("--llama-cache-ram", o->cache_ram_mib,
                 "llama-server --cache-ram (MiB): its in-memory prompt cache")
      ->capture_default_str();
  app.add_option("--kvstash-arg", o->kvstash_args, "extra argument for kvstash serve (repeat)")
      ->allow_extra_args(false);
  app.add_option("--llama-server-arg", o->llama_args, "extra argument for llama-server (repeat)")
      ->allow_extra_args(false);
  app.add_option("-o,--out", o->out, "output directory (default bench-results/<time>)");
  app.add_option("--request-timeout", o->request_timeout, "seconds per request")
      ->capture_default_str();
  app.add_option("--write-trace", o->write_trace, "write the workload as a text trace (JSONL)");
  app.add_option("--write-token-trace", o->write_token_trace,
                 "write the workload as a token trace for `kvstash replay`");
  app.add_flag("--dry-run", o->dry_run, "only build the workload (and write traces), no servers");

  return [o, max_tokens] {
    o->agent.restart = !o->no_restart;
    loadgen::Workload w;
    engine::Model tok(o->model, {0, true});
    const engine::ChatTemplates templates(tok);
    if (o->conc.streams > 0) return run_concurrency(*o, max_tokens->count() > 0, tok, templates);
    const auto count = [&](const std::string& s) { return tok.tokenize(s, false, false).size(); };
    std::string desc;
    if (!o->trace.empty()) {
      std::ifstream f(o->trace);
      w = loadgen::read_trace(f);
      desc = "trace " + o->trace;
    } else if (o->workload == "cold") {
      o->cold.seed = o->agent.seed;
      o->cold.max_tokens = o->agent.max_tokens;
      w = loadgen::cold_workload(o->cold, count);
      desc = "cold seed=" + std::to_string(o->cold.seed) +
             " requests=" + std::to_string(o->cold.requests) +
             " tokens=" + std::to_string(o->cold.tokens) +
             " max-tokens=" + std::to_string(o->cold.max_tokens);
    } else if (o->workload != "agent") {
      throw std::invalid_argument("unknown workload \"" + o->workload + "\" (agent, cold)");
    } else {
      w = loadgen::agent_workload(o->agent, count);
      const auto& a = o->agent;
      desc = "agent seed=" + std::to_string(a.seed) + " sessions=" + std::to_string(a.sessions) +
             " sessions-per-env=" + std::to_string(a.sessions_per_env) +
             " turns=" + std::to_string(a.turns) + " subagents=" + std::to_string(a.subagents) +
             "x" + std::to_string(a.subagent_turns) +
             " system-tokens=" + std::to_string(a.system_tokens) +
             " tool-result-tokens=" + std::to_string(a.tool_result_tokens) +
             " max-tokens=" + std::to_string(a.max_tokens) + (a.restart ? " restart" : "");
    }
    if (!o->write_trace.empty()) {
      std::ofstream f(o->write_trace);
      loadgen::write_trace(f, w);
    }

    // Render every request as kvstash does, for the oracle and the token trace.
    std::vector<std::vector<int32_t>> prompts;
    std::ofstream tt;
    if (!o->write_token_trace.empty()) tt.open(o->write_token_trace);
    for (const auto& s : w) {
      if (s.kind == loadgen::Step::Kind::kRestart) {
        if (tt) tt << "{\"type\":\"restart\"}\n";
        continue;
      }
      engine::ChatInput in;
      in.messages_json = loadgen::messages_json(s.messages).dump();
      in.tools_json = s.tools;
      auto p = server::render_chat(tok, templates, in);
      if (tt) {
        tt << nlohmann::json{{"type", "request"},       {"session", s.session},
                             {"tokens", p.tokens},      {"boundaries", p.info.boundaries},
                             {"anchor", p.info.anchor}, {"gen", s.max_tokens}}
                  .dump()
           << "\n";
      }
      prompts.push_back(std::move(p.tokens));
    }
    const auto oracle = loadgen::oracle_reuse(prompts);
    std::vector<uint32_t> lens;
    uint64_t total = 0, reusable = 0;
    size_t longest = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      lens.push_back(static_cast<uint32_t>(prompts[i].size()));
      total += prompts[i].size();
      reusable += oracle[i];
      longest = std::max(longest, prompts[i].size());
    }
    if (o->api != "chat") desc += ", over the " + o->api + " API";
    std::cout << "workload: " << desc << "\n  " << prompts.size() << " requests, "
              << w.size() - prompts.size() << " restarts, " << total << " prompt tokens (longest "
              << longest << "), oracle reusable " << reusable << " ("
              << (total ? 100.0 * reusable / total : 0) << "%)\n";
    if (static_cast<int>(longest) + o->agent.max_tokens + 8 > o->ctx) {
      throw std::runtime_error("the longest prompt (" + std::to_string(longest) +
                               " tokens) does not fit --ctx-size " + std::to_string(o->ctx));
    }
    if (o->dry_run) return 0;

    const std::string out = out_dir(*o);
    const loadgen::ReportInfo info{command_line(), desc, o->model};
    if (o->fleet > 0) return run_fleets(*o, w, lens, oracle, out, info);
    std::vector<loadgen::ServerRun> runs;
    for (const auto& name : split(o->servers, ',')) {
      const loadgen::ServerSpec spec = server_spec(*o, name, 1, out);
      const loadgen::RunOptions ro = run_options(*o, out);
      announce(spec);
      runs.push_back(loadgen::run_server(spec, w, lens, oracle, ro));
    }
    const std::string md = loadgen::write_report(out, info, runs);
    std::cout << "\n" << md << "\nreport: " << out << "/report.md\n";
    for (const auto& r : runs) {
      if (r.failed) return 1;
    }
    return 0;
  };
}

}  // namespace kvstash::cli
