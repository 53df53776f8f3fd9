// Token sampling over a session's logits, with llama.cpp's samplers: logit bias, repetition
// penalties, top-k / typical / top-p / min-p, temperature, and a grammar (tool calls, JSON
// schemas, client GBNF; lazy grammars wait for their trigger) checked by rejection as llama.cpp's
// common sampler does: sample freely, and only if the grammar refuses that token sample again
// from the candidates the grammar allows.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "engine/chat.h"
#include "engine/model.h"

struct llama_sampler;
struct llama_token_data;

namespace kvstash::engine {

struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float typical_p = 1.0f;
  uint32_t seed = 0xFFFFFFFF;  // LLAMA_DEFAULT_SEED: random
  int penalty_last_n = 64;     // tokens the penalties look back over (-1: the context)
  float repeat_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
  std::vector<std::pair<Token, float>> logit_bias;
  GrammarSpec grammar;
  int n_probs = 0;  // > 0: report the log probabilities of this many top tokens per step
};

struct TokenProb {
  Token token;
  float logprob;
};

class Sampler {
 public:
  // Throws std::invalid_argument for a grammar llama.cpp cannot parse.
  Sampler(const Model& model, const SamplingParams& p, int n_ctx);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  // Picks the next token and feeds it to the penalties and the grammar.
  Token sample(const std::vector<float>& logits);
  // The log-softmax of the raw logits: the chosen token's and the `n` most likely.
  static std::pair<float, std::vector<TokenProb>> logprobs(const std::vector<float>& logits,
                                                           Token chosen, int n);

 private:
  void fill(const std::vector<float>& logits);
  SamplingParams p_;
  llama_sampler* chain_ = nullptr;
  llama_sampler* grammar_ = nullptr;
  std::vector<float> scratch_;
  std::vector<llama_token_data> cand_;
};

}  // namespace kvstash::engine
