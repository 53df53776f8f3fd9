// kvstash generate: one request through the cache, in its own process, like a server that
// handles one request and exits (gracefully: the live state is stored with reason=shutdown).
// Prints a JSON report on stdout; tests use it to check restores across processes bit for bit.
#include <xxhash.h>

#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "engine/cached_session.h"
#include "server/chat_prompt.h"

namespace kvstash::cli {

Run add_generate(CLI::App& app) {
  struct Opts {
    EngineFlags engine;
    CacheFlags cache;
    std::string messages_file, prompt;
    int n_predict = 16;
    bool progress = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app);
  o->cache.add(app);
  app.add_option("--messages", o->messages_file, "JSON file: [{\"role\":..., \"content\":...}]");
  app.add_option("-p,--prompt", o->prompt, "raw prompt text (instead of --messages)");
  app.add_option("-n,--n-predict", o->n_predict, "tokens to generate (greedy)")
      ->capture_default_str();
  app.add_flag("!--no-cache", o->cache.enabled, "neither restore nor store");
  app.add_flag("--progress", o->progress, "show the prefill's progress on stderr");
  return [o] {
    engine::Model model(o->engine.model, {o->engine.n_gpu_layers});
    o->engine.resolve(model);
    engine::Session session(model, o->engine.session);
    auto cache = o->cache.open(model, session);
    engine::CachedSession cs(session, cache.get(), o->cache.store);

    server::ChatPrompt prompt;
    if (!o->messages_file.empty()) {
      std::ifstream f(o->messages_file);
      if (!f) throw std::runtime_error("cannot read " + o->messages_file);
      engine::ChatInput in;  // OpenAI messages, tool calls and results included
      in.messages_json = nlohmann::json::parse(f).dump();
      prompt = server::render_chat(model, engine::ChatTemplates(model), in);
    } else {
      prompt.tokens = model.tokenize(o->prompt);
    }
    // Whole lines (every 1024 tokens), so the cache's log lines never land mid-line.
    std::function<bool(int, int, int)> progress;
    if (o->progress) {
      progress = [shown = 0](int done, int total, int cached) mutable {
        if (done / 1024 > shown / 1024 || done == total) {
          std::cerr << "  prefill " << done << "/" << total << " (" << cached << " cached)\n";
          shown = done;
        }
        return true;
      };
    }
    const auto rep = cs.prefill(prompt.tokens, prompt.info, progress);
    const auto& first = session.logits();
    const XXH64_hash_t logits_hash = XXH3_64bits(first.data(), first.size() * sizeof(float));
    std::vector<engine::Token> out;
    for (int i = 0; i < o->n_predict; ++i) {
      out.push_back(session.greedy());
      session.decode_one(out.back());
    }
    cs.shutdown();
    nlohmann::json r;
    r["prompt_tokens"] = rep.prompt_tokens;
    r["cached_tokens"] = rep.cached_tokens;
    r["prefilled_tokens"] = rep.prompt_tokens - rep.cached_tokens;
    r["restore_ms"] = rep.restore_ms;
    r["prefill_ms"] = rep.prefill_ms;
    r["logits_hash"] = logits_hash;
    r["tokens"] = out;
    r["text"] = model.detokenize(out);
    r["boundaries"] = prompt.info.boundaries;
    r["anchor"] = prompt.info.anchor;
    std::cout << r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return 0;
  };
}

}  // namespace kvstash::cli
