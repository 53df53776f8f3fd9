// kvstash mkmodel: writes a random-weight model, then proves llama.cpp loads it and decodes.
#include <chrono>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "engine/model.h"
#include "engine/model_gen.h"
#include "engine/session.h"

namespace kvstash::cli {

Run add_mkmodel(CLI::App& app) {
  auto opt = std::make_shared<engine::GenOptions>();
  auto verify = std::make_shared<bool>(true);
  std::string shapes;
  for (const auto& s : engine::model_shapes()) shapes += (shapes.empty() ? "" : "|") + s.name;
  app.add_option("--shape", opt->shape, shapes)->capture_default_str();
  app.add_option("--vocab", opt->vocab,
                 "tokenizer: NAME of models/ggml-vocab-NAME.gguf, or a path; default: the "
                 "family's (qwen2, llama-bpe, gemma-4, deepseek-llm)");
  app.add_option("--chat-template", opt->chat_template,
                 "chat template: NAME of llama.cpp's models/templates/NAME.jinja, a path, or "
                 "'vocab' (the vocab file's); default: the family's real one (Qwen-Qwen3-0.6B, "
                 "Qwen3.5-4B, meta-llama-Llama-3.1-8B-Instruct, ...)");
  app.add_option("-o,--out", opt->out, "output GGUF file")->required();
  app.add_option("--seed", opt->seed, "weights seed")->capture_default_str();
  app.add_option("--layers", opt->layers,
                 "build only N layers of the shape (its widths and layer pattern kept; default: "
                 "the shape's count), e.g. a real-width model small enough for a CPU benchmark")
      ->check(CLI::PositiveNumber);
  app.add_flag("!--f32", opt->f16, "store matrices in f32 instead of f16");
  app.add_flag("!--no-verify", *verify, "skip loading and decoding the written model");
  return [opt, verify] {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t n = engine::generate_model(*opt);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "kvstash: wrote " << opt->out << " (" << opt->shape << ", " << n / 1e6
              << "M parameters, " << (opt->f16 ? "f16" : "f32") << ", vocab "
              << (opt->vocab.empty() ? engine::find_shape(opt->shape).vocab : opt->vocab) << ") in "
              << s << " s" << (opt->layers ? ", " + std::to_string(opt->layers) + " layers" : "")
              << "\n";
    if (*verify) {
      engine::Model model(opt->out);
      engine::SessionOptions so;
      so.n_ctx = 512;
      engine::Session session(model, so);
      auto toks = model.tokenize("Hello from kvstash.");
      session.prefill(toks);
      std::vector<engine::Token> out;
      for (int i = 0; i < 4; ++i) {
        out.push_back(session.greedy());
        session.decode_one(out.back());
      }
      std::cerr << "kvstash: verified: llama.cpp loads it (arch " << model.arch() << ", "
                << model.n_vocab() << " tokens) and decodes " << out.size() << " tokens\n";
    }
    return 0;
  };
}

}  // namespace kvstash::cli
