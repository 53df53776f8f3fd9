// kvstash demo: the cache's promise on one machine, in numbers, through the real cache.
//
// An agent conversation (long system prompt with tool schemas, tool results) runs as separate
// `kvstash generate` processes, each one request of a server that then exits gracefully:
//   1. turn 1, cold, with the disk tier in a demo cache directory: it stores the chat anchor
//      (reason=cold) and, at exit, its live state (reason=shutdown);
//   2. turn 2 without any cache: the reference answer and the cold time to first token;
//   3. turn 2 again in a new process (a restart) with the same directory: it restores turn 1's
//      prefix from disk and prefills only the new tokens.
// The children's log lines are the ones `kvstash serve` prints (`kv cache hit ...`, `kv cache
// stored ...`). The demo fails unless step 3's logits and greedy tokens are bit-identical to step
// 2's.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "engine/model.h"
#include "server/chat_prompt.h"
#include "util/process.h"
#include "util/timing.h"

namespace kvstash::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A deterministic agent-style system prompt: instructions plus JSON tool schemas.
std::string system_prompt(size_t approx_chars) {
  std::string s =
      "You are a coding agent working in a large repository. Use the tools to read, search and "
      "edit files; run tests before you claim success; keep answers short.\n\n# Tools\n";
  const char* verbs[] = {"read", "write", "search", "list", "run", "patch", "diff", "grep"};
  const char* things[] = {"file",   "directory", "symbol", "test",
                          "branch", "issue",     "log",    "config"};
  for (int i = 0; s.size() < approx_chars; ++i) {
    const std::string name =
        std::string(verbs[i % 8]) + "_" + things[(i / 8) % 8] + "_" + std::to_string(i);
    s += "{\"type\":\"function\",\"function\":{\"name\":\"" + name + "\",\"description\":\"" +
         verbs[i % 8] + " a " + things[(i / 8) % 8] +
         " in the workspace; returns JSON with status, content and a cursor for paging. Call it "
         "again with the cursor to continue.\",\"parameters\":{\"type\":\"object\",\"properties\":"
         "{\"path\":{\"type\":\"string\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,"
         "\"maximum\":" +
         std::to_string(100 + i) +
         "},\"cursor\":{\"type\":\"string\"}},\"required\":[\"path\"]}}}\n";
  }
  return s;
}

// The demo's scratch directory (messages, and the cache unless --cache-dir), removed at the end.
struct Scratch {
  std::string path;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "kvstash-demo-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create " + tmpl);
    path = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string write_messages(const std::string& path, const std::vector<server::ChatMessage>& msgs) {
  json j = json::array();
  for (const auto& m : msgs) j.push_back({{"role", m.role}, {"content", m.content}});
  std::ofstream(path) << j.dump();
  return path;
}

// One `kvstash generate` process; its log lines go straight to stderr. Returns its JSON report.
json generate(const std::vector<std::string>& argv, double* wall_s) {
  const auto t0 = Clock::now();
  const ProcResult r = run_process(argv, {.env = {}, .capture_stderr = false});
  *wall_s = ms_since(t0) / 1000;
  if (r.rc != 0)
    throw std::runtime_error("kvstash generate exited with status " + std::to_string(r.rc));
  return json::parse(r.out);
}

double ttft_s(const json& rep) {
  return (rep.at("restore_ms").get<double>() + rep.at("prefill_ms").get<double>()) / 1000;
}

}  // namespace

Run add_demo(CLI::App& app) {
  struct Opts {
    std::string model, cache_dir;
    size_t prompt_tokens = 4000;  // about 2 minutes in all on 2 cores (bench/RESULTS.md)
    int threads = 0, chunk = 256, n_predict = 4;
    bool flash_attn = true;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required()->check(CLI::ExistingFile);
  app.add_option("--prompt-tokens", o->prompt_tokens, "approximate size of turn 1")
      ->capture_default_str();
  app.add_option("--cache-dir", o->cache_dir,
                 "the demo's disk tier, kept afterwards (default: a temporary directory)");
  app.add_option("-t,--threads", o->threads, "threads (0: all)");
  app.add_option("--chunk", o->chunk, "prefill batch and cache chunk (tokens)")
      ->capture_default_str();
  app.add_option("-n,--n-predict", o->n_predict, "greedy tokens compared after the prompt")
      ->capture_default_str();
  app.add_flag("!--no-flash-attn", o->flash_attn, "disable flash attention");
  return [o] {
    Scratch scratch;
    const std::string cache_dir = o->cache_dir.empty() ? scratch.path + "/kv" : o->cache_dir;

    // The conversation, sized in tokens with the model's own tokenizer and template.
    const engine::Model model(o->model, {.vocab_only = true});
    const engine::ChatTemplates templates(model);
    const std::string sample = system_prompt(20000);
    const double chars_per_token = double(sample.size()) / model.tokenize(sample).size();
    std::vector<server::ChatMessage> msgs{
        {"system", system_prompt(size_t(o->prompt_tokens * chars_per_token))},
        {"user", "The test suite fails in tests/test_cache.py; find out why."},
        {"assistant", "Running the failing test first."},
        {"tool", "FAILED tests/test_cache.py::test_evict - AssertionError: 3 != 2"}};
    const size_t n1 = server::render_chat(model, templates, msgs).tokens.size();
    const std::string turn1 = write_messages(scratch.path + "/turn1.json", msgs);
    msgs.push_back({"assistant", "The eviction count is off by one; reading the policy."});
    msgs.push_back({"user", "Fix it and rerun the tests, then summarise the change."});
    const size_t n2 = server::render_chat(model, templates, msgs).tokens.size();
    const std::string turn2 = write_messages(scratch.path + "/turn2.json", msgs);

    // One `kvstash generate` process per step, with the demo's engine settings.
    auto run = [&](const std::string& messages, int n_predict, const std::string& cache,
                   double* wall_s) {
      std::vector<std::string> argv = {self_exe(),   "generate",
                                       "-m",         o->model,
                                       "-c",         std::to_string(n2 + o->n_predict + 256),
                                       "--chunk",    std::to_string(o->chunk),
                                       "--messages", messages,
                                       "-n",         std::to_string(n_predict),
                                       "--progress"};
      if (o->threads > 0) argv.insert(argv.end(), {"-t", std::to_string(o->threads)});
      if (!o->flash_attn) argv.push_back("--no-flash-attn");
      if (cache.empty()) {
        argv.push_back("--no-cache");
      } else {
        argv.insert(argv.end(), {"--cache-dir", cache});
      }
      return generate(argv, wall_s);
    };

    std::cerr << "kvstash demo: model " << o->model << ", turn 1 " << n1 << " tokens, turn 2 " << n2
              << " tokens; disk tier in " << cache_dir
              << (o->cache_dir.empty() ? " (removed at the end)" : "") << "\n"
              << "Each step is a new `kvstash generate` process: one request, then a graceful "
                 "exit, as a server restart.\n";
    double wall1 = 0, wall2 = 0, wall3 = 0;
    std::cerr << "\n[1/3] turn 1, cold: stores the chat anchor, then its live state at exit\n";
    // No answer needed: decoded tokens are never stored.
    const json r1 = run(turn1, 0, cache_dir, &wall1);
    std::fprintf(stderr, "turn 1: TTFT %.2f s, %d tokens prefilled (process %.1f s)\n", ttft_s(r1),
                 r1.at("prefilled_tokens").get<int>(), wall1);

    std::cerr << "\n[2/3] turn 2 without the cache: the reference answer\n";
    const json cold = run(turn2, o->n_predict, "", &wall2);
    std::fprintf(stderr, "turn 2 cold: TTFT %.2f s, %d tokens prefilled (process %.1f s)\n",
                 ttft_s(cold), cold.at("prefilled_tokens").get<int>(), wall2);

    std::cerr << "\n[3/3] turn 2 after a restart: restores turn 1's prefix from the disk tier\n";
    const json warm = run(turn2, o->n_predict, cache_dir, &wall3);
    const bool exact =
        warm.at("logits_hash") == cold.at("logits_hash") && warm.at("tokens") == cold.at("tokens");
    std::fprintf(stderr,
                 "turn 2 restored: TTFT %.3f s (restore %.0f ms, %d tokens from disk, %d "
                 "prefilled; process %.1f s); logits and %d greedy tokens %s\n",
                 ttft_s(warm), warm.at("restore_ms").get<double>(),
                 warm.at("cached_tokens").get<int>(), warm.at("prefilled_tokens").get<int>(), wall3,
                 o->n_predict, exact ? "bit-identical to cold" : "DIFFER FROM COLD");
    std::printf("turn 2 (%zu tokens): cold TTFT %.2f s, restored TTFT %.3f s, %.1fx faster\n", n2,
                ttft_s(cold), ttft_s(warm), ttft_s(cold) / ttft_s(warm));
    if (warm.at("cached_tokens").get<int>() == 0) {
      std::cerr << "kvstash demo: the restarted process restored nothing from " << cache_dir
                << "\n";
      return 1;
    }
    return exact ? 0 : 1;
  };
}

}  // namespace kvstash::cli
