#include "cli/bench_concurrency.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "loadgen/concurrency_report.h"
#include "loadgen/workload.h"
#include "server/chat_prompt.h"

namespace kvstash::cli {
namespace {

// The prompt tokens of a one-message request, as both servers render it (same template).
size_t rendered_tokens(const engine::Model& tok, const engine::ChatTemplates& templates,
                       const loadgen::Step& s) {
  std::vector<server::ChatMessage> m;
  for (const auto& x : s.messages) m.push_back({x.role, x.content});
  return server::render_chat(tok, templates, m).tokens.size();
}

// Every end-of-generation token banned (llama.cpp's `false` bias): each stream then decodes
// exactly its max_tokens on both servers. This is what llama-server's own `ignore_eos` does
// (it biases the same tokens); kvstash has no `ignore_eos`, and the same body for both keeps the
// sampling identical.
nlohmann::json ban_end_of_generation(const engine::Model& tok) {
  nlohmann::json bias = nlohmann::json::array();
  for (int t = 0; t < tok.n_vocab(); ++t) {
    if (tok.is_eog(t)) bias.push_back({t, false});
  }
  return {{"logit_bias", bias}};
}

}  // namespace

int bench_concurrency(const ConcurrencyOptions& o, const engine::Model& tok,
                      const engine::ChatTemplates& templates,
                      const std::vector<std::string>& servers,
                      const std::function<loadgen::ServerSpec(const std::string&, int)>& spec_for,
                      const loadgen::RunOptions& run, loadgen::ReportInfo info) {
  if (o.streams < 1 || o.max_tokens < 2) {
    throw std::invalid_argument("--concurrency needs N >= 1 streams and --max-tokens >= 2");
  }
  const auto count = [&](const std::string& s) { return tok.tokenize(s, false, false).size(); };
  loadgen::ConcurrencyConfig cfg;
  // The cold workload's prompts differ from their first token on: no stream can reuse another's.
  cfg.streams = loadgen::cold_workload({o.seed, o.streams, o.prompt_tokens, o.max_tokens}, count);
  if (o.interference_tokens > 0) {
    // Another run number in its head, so it shares no prefix with the streams either.
    cfg.long_prompt =
        loadgen::cold_workload({o.seed + 7919, 1, o.interference_tokens, 1}, count).front();
  }
  cfg.warmup.session = "warmup";
  cfg.warmup.max_tokens = 4;
  cfg.warmup.messages = {{"user", "Warm-up request. Say hello.", "", ""}};
  cfg.extras.body = ban_end_of_generation(tok);
  cfg.interference_after = std::clamp(o.max_tokens / 4, 1, 8);

  // Each slot holds a 1/slots share of the context, on both servers.
  size_t longest = 0;
  for (const auto& s : cfg.streams) longest = std::max(longest, rendered_tokens(tok, templates, s));
  const int slots = o.streams + (cfg.long_prompt ? 1 : 0);
  const size_t need =
      std::max(longest + o.max_tokens, cfg.long_prompt
                                           ? rendered_tokens(tok, templates, *cfg.long_prompt) + 1
                                           : size_t{0}) +
      8;
  if (need * static_cast<size_t>(slots) > static_cast<size_t>(o.ctx)) {
    throw std::runtime_error("each of the " + std::to_string(slots) + " slots needs " +
                             std::to_string(need) + " tokens of context: raise --ctx-size to " +
                             std::to_string(need * slots) + " or more");
  }
  info.workload =
      "concurrency streams=" + std::to_string(o.streams) +
      " prompt-tokens=" + std::to_string(o.prompt_tokens) + " (rendered up to " +
      std::to_string(longest) + ", distinct) max-tokens=" + std::to_string(o.max_tokens) +
      " (end of generation banned)" +
      (cfg.long_prompt
           ? " interference=" + std::to_string(o.interference_tokens) + " tokens after " +
                 std::to_string(cfg.interference_after) + " tokens per stream"
           : "") +
      " seed=" + std::to_string(o.seed);
  std::cout << "workload: " << info.workload << std::endl;
  if (o.dry_run) return 0;

  std::vector<loadgen::ConcurrencyRun> runs;
  for (const auto& name : servers) {
    const auto spec = [&](int n) { return spec_for(name, n); };
    runs.push_back(loadgen::run_concurrency(name, spec, cfg, run));
  }
  const std::string md =
      loadgen::write_concurrency_report(run.out_dir, info,
                                        {o.streams, static_cast<int>(o.prompt_tokens), o.max_tokens,
                                         static_cast<int>(o.interference_tokens)},
                                        runs);
  std::cout << "\n" << md << "\nreport: " << run.out_dir << "/report.md\n";
  const bool failed = std::any_of(runs.begin(), runs.end(), [](const auto& r) { return r.failed; });
  return failed ? 1 : 0;
}

}  // namespace kvstash::cli
