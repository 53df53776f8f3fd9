#include "engine/sampler.h"

#include <llama.h>

#include <algorithm>
#include <stdexcept>

namespace kvstash::engine {

Sampler::Sampler(const Model&, const SamplingParams& p) : p_(p) {
  if (p.temperature <= 0) return;  // greedy needs no chain
  chain_ = llama_sampler_chain_init(llama_sampler_chain_default_params());
  if (p.top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(p.top_k));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain_, llama_sampler_init_temp(p.temperature));
  llama_sampler_chain_add(chain_, llama_sampler_init_dist(p.seed));
}

Sampler::~Sampler() {
  if (chain_) llama_sampler_free(chain_);
}

Token Sampler::sample(const std::vector<float>& logits) {
  if (logits.empty()) throw std::logic_error("no logits to sample from");
  if (!chain_) {
    return static_cast<Token>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<llama_token_data> cand(logits.size());
  for (size_t i = 0; i < logits.size(); ++i)
    cand[i] = {static_cast<llama_token>(i), logits[i], 0.0f};
  llama_token_data_array arr{cand.data(), cand.size(), -1, false};
  llama_sampler_apply(chain_, &arr);
  if (arr.selected < 0 || static_cast<size_t>(arr.selected) >= arr.size) {
    throw std::runtime_error("sampling selected no token");
  }
  const Token t = arr.data[arr.selected].id;
  llama_sampler_accept(chain_, t);
  return t;
}

}  // namespace kvstash::engine
