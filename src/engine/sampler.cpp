#include "engine/sampler.h"

#include <llama.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace kvstash::engine {

Sampler::Sampler(const Model& model, const SamplingParams& p, int n_ctx) : p_(p) {
  const llama_vocab* vocab = model.vocab();
  if (!p.grammar.grammar.empty()) {
    std::vector<const char*> patterns;
    for (const auto& s : p.grammar.trigger_patterns) patterns.push_back(s.c_str());
    grammar_ = p.grammar.lazy
                   ? llama_sampler_init_grammar_lazy_patterns(
                         vocab, p.grammar.grammar.c_str(), "root", patterns.data(), patterns.size(),
                         p.grammar.trigger_tokens.data(), p.grammar.trigger_tokens.size())
                   : llama_sampler_init_grammar(vocab, p.grammar.grammar.c_str(), "root");
    if (!grammar_) throw std::invalid_argument("the grammar cannot be parsed (GBNF)");
    try {
      for (Token t : p.grammar.prefill) llama_sampler_accept(grammar_, t);
    } catch (const std::exception& e) {
      llama_sampler_free(grammar_);
      throw std::invalid_argument(std::string("the grammar rejects the generation prompt: ") +
                                  e.what());
    }
  }
  const bool penalties =
      p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  if (p.temperature <= 0 && !penalties && p.logit_bias.empty()) return;  // plain argmax
  chain_ = llama_sampler_chain_init(llama_sampler_chain_default_params());
  if (!p.logit_bias.empty()) {
    std::vector<llama_logit_bias> bias;
    for (const auto& [t, b] : p.logit_bias) bias.push_back({t, b});
    llama_sampler_chain_add(
        chain_, llama_sampler_init_logit_bias(model.n_vocab(), static_cast<int32_t>(bias.size()),
                                              bias.data()));
  }
  if (penalties) {
    const int last_n = p.penalty_last_n < 0 ? n_ctx : p.penalty_last_n;
    llama_sampler_chain_add(chain_,
                            llama_sampler_init_penalties(model.n_vocab(), last_n, p.repeat_penalty,
                                                         p.frequency_penalty, p.presence_penalty));
  }
  if (p.temperature <= 0) {
    llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
    return;
  }
  if (p.top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(p.top_k));
  if (p.typical_p < 1.0f)
    llama_sampler_chain_add(chain_, llama_sampler_init_typical(p.typical_p, 1));
  if (p.top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(p.top_p, 1));
  if (p.min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(p.min_p, 1));
  llama_sampler_chain_add(chain_, llama_sampler_init_temp(p.temperature));
  llama_sampler_chain_add(chain_, llama_sampler_init_dist(p.seed));
}

Sampler::~Sampler() {
  if (chain_) llama_sampler_free(chain_);
  if (grammar_) llama_sampler_free(grammar_);
}

void Sampler::fill(const std::vector<float>& logits) {
  cand_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i)
    cand_[i] = {static_cast<llama_token>(i), logits[i], 0.0f};
}

Token Sampler::sample(const std::vector<float>& logits) {
  if (logits.empty()) throw std::logic_error("no logits to sample from");
  // One draw: the chain (or argmax) over candidates, optionally narrowed by the grammar first.
  auto draw = [&](bool with_grammar) -> Token {
    fill(logits);
    llama_token_data_array arr{cand_.data(), cand_.size(), -1, false};
    if (with_grammar) llama_sampler_apply(grammar_, &arr);
    if (chain_) {
      llama_sampler_apply(chain_, &arr);
    } else {
      size_t best = 0;
      for (size_t i = 1; i < arr.size; ++i)
        if (arr.data[i].logit > arr.data[best].logit) best = i;
      arr.selected = static_cast<int64_t>(best);
    }
    if (arr.selected < 0 || static_cast<size_t>(arr.selected) >= arr.size ||
        arr.data[arr.selected].logit == -INFINITY) {
      throw std::runtime_error("sampling selected no token (the grammar allows none)");
    }
    return arr.data[arr.selected].id;
  };
  Token t = draw(false);
  if (grammar_) {
    llama_token_data one{t, 1.0f, 0.0f};
    llama_token_data_array single{&one, 1, -1, false};
    llama_sampler_apply(grammar_, &single);
    if (one.logit == -INFINITY) t = draw(true);
    llama_sampler_accept(grammar_, t);
  }
  if (chain_) llama_sampler_accept(chain_, t);
  return t;
}

std::pair<float, std::vector<TokenProb>> Sampler::logprobs(const std::vector<float>& logits,
                                                           Token chosen, int n) {
  float mx = -INFINITY;
  for (float l : logits) mx = std::max(mx, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  std::vector<TokenProb> top;
  if (n > 0) {
    std::vector<Token> idx(logits.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<Token>(i);
    const size_t k = std::min(idx.size(), static_cast<size_t>(n));
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(),
                      [&](Token a, Token b) { return logits[a] > logits[b]; });
    for (size_t i = 0; i < k; ++i) top.push_back({idx[i], logits[idx[i]] - lse});
  }
  return {logits[chosen] - lse, top};
}

}  // namespace kvstash::engine
