#include "test_models.h"

#include <filesystem>
#include <map>
#include <mutex>

#include "engine/model_gen.h"

namespace kvstash::fixtures {

std::string model_path(const std::string& shape) {
  static std::mutex mu;
  std::lock_guard lock(mu);
  std::filesystem::create_directories(KVSTASH_TEST_MODEL_DIR);
  const std::string path = std::string(KVSTASH_TEST_MODEL_DIR) + "/" + shape + ".gguf";
  if (!std::filesystem::exists(path)) {
    engine::GenOptions o;
    o.shape = shape;
    o.out = path;
    engine::generate_model(o);
  }
  return path;
}

engine::Model& model(const std::string& shape) {
  static std::map<std::string, std::unique_ptr<engine::Model>> models;
  auto& m = models[shape];
  if (!m) m = std::make_unique<engine::Model>(model_path(shape));
  return *m;
}

std::string llama_server_path() {
#ifdef KVSTASH_TEST_LLAMA_SERVER
  return KVSTASH_TEST_LLAMA_SERVER;
#else
  return "";
#endif
}

std::vector<engine::Token> prompt_tokens(engine::Model& m, size_t n, int variant) {
  std::string text =
      "<|im_start|>system\nYou are agent " + std::to_string(variant) + ". Tools follow.\n";
  std::vector<engine::Token> toks;
  for (int i = 0;; ++i) {
    text += "{\"name\":\"tool_" + std::to_string(i * 7 + variant) +
            "\",\"description\":\"reads file number " + std::to_string(i) +
            " and returns its lines\"}\n";
    if (i % 16 == 15) {
      toks = m.tokenize(text);
      if (toks.size() >= n) break;
    }
  }
  toks.resize(n);
  return toks;
}

}  // namespace kvstash::fixtures
