// kvstash demo: the cache's promise on one machine, in numbers.
//
// Turn 1 of an agent conversation (long system prompt with tool schemas, tool results) is
// prefilled cold and its state saved to a file. Turn 2 extends the conversation. It is answered
// twice: cold (full prefill) and restored (load the file, prefill only the new tokens). The demo
// prints both times-to-first-token and checks that the two give bit-identical logits.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "engine/model.h"
#include "engine/session.h"

namespace kvstash::cli {

namespace {

using Clock = std::chrono::steady_clock;
using Messages = std::vector<std::pair<std::string, std::string>>;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

// Positions of the chat template's message-start token (<|im_start|> in ChatML templates).
std::vector<int> message_starts(const engine::Model& model, const std::vector<engine::Token>& p) {
  const auto start = model.tokenize("<|im_start|>", false, true);
  std::vector<int> out;
  if (start.size() != 1) return out;
  for (size_t i = 1; i < p.size(); ++i) {
    if (p[i] == start[0]) out.push_back(static_cast<int>(i));
  }
  return out;
}

void write_file(const std::string& path, const engine::Snapshot& s) {
  const std::string tmp = path + ".tmp";
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  const uint64_t n[3] = {s.tokens.size(), s.state.size(), s.logits.size()};
  bool ok = std::fwrite(s.fingerprint.bytes.data(), 1, 16, f.get()) == 16 &&
            std::fwrite(n, sizeof(n), 1, f.get()) == 1 &&
            std::fwrite(s.tokens.data(), sizeof(engine::Token), n[0], f.get()) == n[0] &&
            std::fwrite(s.state.data(), 1, n[1], f.get()) == n[1] &&
            std::fwrite(s.logits.data(), sizeof(float), n[2], f.get()) == n[2] &&
            std::fflush(f.get()) == 0 && ::fsync(fileno(f.get())) == 0;
  f.reset();
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  }
}

engine::Snapshot read_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot read " + path);
  engine::Snapshot s;
  uint64_t n[3];
  bool ok = std::fread(s.fingerprint.bytes.data(), 1, 16, f.get()) == 16 &&
            std::fread(n, sizeof(n), 1, f.get()) == 1 && n[0] < (1u << 24) && n[2] < (1u << 24);
  if (ok) {
    s.tokens.resize(n[0]);
    s.state.resize(n[1]);
    s.logits.resize(n[2]);
    ok = std::fread(s.tokens.data(), sizeof(engine::Token), n[0], f.get()) == n[0] &&
         std::fread(s.state.data(), 1, n[1], f.get()) == n[1] &&
         std::fread(s.logits.data(), sizeof(float), n[2], f.get()) == n[2];
  }
  if (!ok) throw std::runtime_error(path + " is truncated or not a kvstash demo state");
  return s;
}

}  // namespace

Run add_demo(CLI::App& app) {
  struct Opts {
    std::string model, state = "/tmp/kvstash-demo.state";
    size_t prompt_tokens = 6000;
    int threads = 0, chunk = 256;
    bool flash_attn = true;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-m,--model", o->model, "GGUF model")->required();
  app.add_option("--prompt-tokens", o->prompt_tokens, "approximate size of turn 1")
      ->capture_default_str();
  app.add_option("--state-file", o->state, "where turn 1's state is saved")->capture_default_str();
  app.add_option("-t,--threads", o->threads, "threads (0: all)");
  app.add_option("--chunk", o->chunk, "prefill batch (tokens)")->capture_default_str();
  app.add_flag("!--no-flash-attn", o->flash_attn, "disable flash attention");
  return [o] {
    engine::Model model(o->model);
    engine::SessionOptions so;
    so.n_threads = o->threads;
    so.chunk = o->chunk;
    so.flash_attn = o->flash_attn;
    so.n_ctx = static_cast<int>(o->prompt_tokens + 2048);

    // Size the system prompt in tokens: measure the tokenizer's chars per token on a sample.
    const std::string sample = system_prompt(20000);
    const double chars_per_token = double(sample.size()) / model.tokenize(sample).size();
    Messages msgs{{"system", system_prompt(size_t(o->prompt_tokens * chars_per_token))},
                  {"user", "The test suite fails in tests/test_cache.py; find out why."},
                  {"assistant", "Running the failing test first."},
                  {"tool", "FAILED tests/test_cache.py::test_evict - AssertionError: 3 != 2"}};
    const auto p1 = model.tokenize(model.apply_chat_template(msgs, true));
    msgs.push_back({"assistant", "The eviction count is off by one; reading the policy."});
    msgs.push_back({"user", "Fix it and rerun the tests, then summarise the change."});
    const auto p2 = model.tokenize(model.apply_chat_template(msgs, true));
    size_t common = 0;
    while (common < p1.size() && common < p2.size() && p1[common] == p2[common]) ++common;
    // Batches break at message starts (content-derived, the same for both turns), so turn 2 can
    // resume bit-exactly from the last message start it shares with turn 1.
    const auto breaks = message_starts(model, p2);
    size_t resume = common / o->chunk * o->chunk;
    for (int b : breaks) {
      if (static_cast<size_t>(b) <= common) resume = std::max(resume, static_cast<size_t>(b));
    }
    std::cerr << "kvstash demo: model " << o->model << " (" << model.arch() << "), turn 1 "
              << p1.size() << " tokens, turn 2 " << p2.size() << " tokens (" << p2.size() - common
              << " new)\n";

    auto progress = [](int done, int total) {
      std::cerr << "\r  prefill " << done << "/" << total << std::flush;
      if (done == total) std::cerr << "\n";
      return true;
    };
    engine::PrefillOptions po;
    po.on_progress = progress;
    po.boundaries = breaks;
    {
      engine::Session s(model, so);
      const auto t0 = Clock::now();
      s.prefill(p1, po);
      s.greedy();
      std::cerr << "turn 1 cold: TTFT " << since(t0) << " s\n";
      const auto t1 = Clock::now();
      write_file(o->state, s.snapshot());
      std::cerr << "turn 1 state saved to " << o->state << " in " << since(t1) * 1000 << " ms\n";
    }
    double cold = 0, warm = 0;
    std::vector<float> cold_logits;
    engine::Token cold_tok;
    {
      engine::Session s(model, so);
      const auto t0 = Clock::now();
      s.prefill(p2, po);
      cold_tok = s.greedy();
      cold = since(t0);
      cold_logits = s.logits();
    }
    {
      engine::Session s(model, so);
      const auto t0 = Clock::now();
      s.restore(read_file(o->state));
      const double load = since(t0);
      if (model.resume_kind() == engine::ResumeKind::kAnyBoundary) s.trim(resume);
      const size_t prefilled = p2.size() - s.tokens().size();
      engine::PrefillOptions warm_po;
      warm_po.boundaries = breaks;
      s.prefill(p2, warm_po);
      const engine::Token tok = s.greedy();
      warm = since(t0);
      const bool exact = s.logits() == cold_logits && tok == cold_tok;
      std::cerr << "turn 2 restored: load " << load * 1000 << " ms, prefilled " << prefilled
                << " tokens, logits " << (exact ? "bit-identical to cold" : "DIFFER FROM COLD")
                << "\n";
      std::printf("turn 2 (%zu tokens): cold TTFT %.2f s, restored TTFT %.3f s, %.1fx faster\n",
                  p2.size(), cold, warm, cold / warm);
      if (!exact) return 1;
    }
    return 0;
  };
}

}  // namespace kvstash::cli
