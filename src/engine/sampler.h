// Token sampling over a session's logits (llama.cpp's sampler chain).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model.h"

struct llama_sampler;

namespace kvstash::engine {

struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  uint32_t seed = 0xFFFFFFFF;  // LLAMA_DEFAULT_SEED: random
};

class Sampler {
 public:
  Sampler(const Model& model, const SamplingParams& p);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  Token sample(const std::vector<float>& logits);

 private:
  SamplingParams p_;
  llama_sampler* chain_ = nullptr;
  std::vector<float> scratch_;
};

}  // namespace kvstash::engine
