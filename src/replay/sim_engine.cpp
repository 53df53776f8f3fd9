#include "replay/sim_engine.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "cache/batching.h"

namespace kvstash::replay {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t prefix_hash(std::span<const cache::Token> prefix) {
  uint64_t h = 0x6b76737461736821ull;
  for (cache::Token t : prefix) h = mix(h ^ static_cast<uint32_t>(t));
  return mix(h ^ prefix.size());
}

void fill(uint8_t* out, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = mix(seed + i);
    std::memcpy(out + i, &v, std::min<size_t>(8, n - i));
  }
}

}  // namespace

uint64_t SimConfig::unit() const { return std::max<uint64_t>(1, bytes_per_token / scale); }
uint64_t SimConfig::state_unit() const { return std::max<uint64_t>(8, state_bytes / scale); }

std::string SimConfig::describe() const {
  return "sim;chunk=" + std::to_string(chunk) + ";unit=" + std::to_string(unit()) +
         ";hybrid=" + (hybrid ? "1;state=" + std::to_string(state_unit()) : std::string("0"));
}

SimEngine::SimEngine(const SimConfig& cfg) : cfg_(cfg) {
  if (cfg.chunk == 0 || cfg.scale == 0) throw std::invalid_argument("chunk and scale must be > 0");
}

std::vector<uint8_t> SimEngine::kv_bytes(const SimConfig& cfg, std::span<const cache::Token> tokens,
                                         uint32_t begin, uint32_t end) {
  const uint64_t u = cfg.unit();
  std::vector<uint8_t> out((end - begin) * u);
  for (uint32_t p = begin; p < end; ++p) {
    fill(out.data() + (p - begin) * u, u,
         mix((uint64_t{p} << 32) ^ static_cast<uint32_t>(tokens[p])));
  }
  return out;
}

std::vector<uint8_t> SimEngine::state_bytes(const SimConfig& cfg,
                                            std::span<const cache::Token> prefix) {
  std::vector<uint8_t> out(cfg.state_unit());
  fill(out.data(), out.size(), prefix_hash(prefix));
  return out;
}

std::vector<float> SimEngine::logits_for(std::span<const cache::Token> prefix) const {
  return {static_cast<float>(prefix_hash(prefix) & 0xffffff)};
}

void SimEngine::trim(size_t n) {
  if (n >= tokens_.size()) return;
  if (cfg_.hybrid) throw std::logic_error("this model's state cannot be cut to a shorter prefix");
  tokens_.resize(n);
  logits_.clear();
}

bool SimEngine::fork_from(cache::KvEngine& src, uint32_t n) {
  auto* from = dynamic_cast<SimEngine*>(&src);
  if (!from || cfg_.hybrid || n > from->tokens_.size()) return false;
  tokens_.assign(from->tokens_.begin(), from->tokens_.begin() + n);
  logits_.clear();
  queued_.clear();
  return true;
}

void SimEngine::clear() {
  tokens_.clear();
  logits_.clear();
  queued_.clear();
}

Payload SimEngine::extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) {
  if (end <= begin || end > tokens_.size()) {
    throw std::out_of_range("extract_kv: range outside the live state");
  }
  return pool.copy(kv_bytes(cfg_, tokens_, begin, end));
}

std::vector<uint8_t> SimEngine::partial_state() const {
  if (!cfg_.hybrid) throw std::logic_error("partial_state: only hybrid models have one");
  return state_bytes(cfg_, tokens_);
}

bool SimEngine::prefill(const std::vector<cache::Token>& prompt, const cache::PrefillPlan& plan) {
  if (prompt.size() < tokens_.size() ||
      !std::equal(tokens_.begin(), tokens_.end(), prompt.begin())) {
    throw std::logic_error("prefill: the live state is not a prefix of the prompt");
  }
  if (prompt.size() == tokens_.size() && logits_.empty() && !tokens_.empty()) {
    trim(tokens_.size() - 1);  // the state is complete but its logits are unknown
  }
  // The batches of engine::Session::prefill (cache/batching.h), so snapshots and progress fire
  // at the same places.
  const auto total = static_cast<uint32_t>(prompt.size());
  for (const cache::Batch& b :
       cache::prefill_batches(static_cast<uint32_t>(tokens_.size()), total, cfg_.chunk,
                              plan.boundaries, plan.snapshot_at)) {
    tokens_.insert(tokens_.end(), prompt.begin() + b.begin, prompt.begin() + b.end);
    prefilled_ += b.end - b.begin;
    logits_.clear();
    if (plan.on_snapshot && b.snapshot) {
      logits_ = logits_for(tokens_);
      plan.on_snapshot(b.end);
    }
    if (plan.on_progress && !plan.on_progress(b.end, total)) return false;
  }
  logits_ = logits_for(tokens_);
  return true;
}

void SimEngine::restore_begin(uint32_t keep, uint32_t from) {
  if (keep > tokens_.size() || from > keep || (from < keep && from % cfg_.chunk != 0)) {
    throw std::out_of_range("restore_begin: keep outside the live state");
  }
  tokens_.resize(keep);
  logits_.clear();
  restore_from_ = from;
  restoring_ = true;
  received_.clear();
  queued_.clear();
}

void SimEngine::restore_kv(std::span<const uint8_t> section) {
  if (!restoring_) throw std::logic_error("restore_kv outside a restore");
  queued_.push_back(section);
}

void SimEngine::restore_sync() {
  for (const auto& s : queued_) received_.insert(received_.end(), s.begin(), s.end());
  queued_.clear();
}

void SimEngine::restore_end(std::span<const uint8_t> partial,
                            const std::vector<cache::Token>& tokens,
                            const std::vector<float>& logits) {
  if (!restoring_) throw std::logic_error("restore_end outside a restore");
  restoring_ = false;
  restore_sync();
  auto wrong = [&](const std::string& why) {
    ++wrong_;
    clear();
    throw std::runtime_error("wrong state for a " + std::to_string(tokens.size()) +
                             "-token prefix: " + why);
  };
  if (cfg_.hybrid == partial.empty()) {
    clear();
    throw std::invalid_argument(cfg_.hybrid ? "a hybrid model needs the recurrent state to resume"
                                            : "this model has no recurrent state to restore");
  }
  if (tokens.size() < tokens_.size() ||
      !std::equal(tokens_.begin(), tokens_.end(), tokens.begin())) {
    wrong("the kept live tokens are not a prefix of it");
  }
  const size_t want_tokens = tokens.size() - restore_from_;
  if (received_.size() != want_tokens * cfg_.unit()) {
    wrong("KV holds " + std::to_string(received_.size() / cfg_.unit()) + " tokens from " +
          std::to_string(restore_from_) + ", expected " + std::to_string(want_tokens));
  }
  const auto want = kv_bytes(cfg_, tokens, restore_from_, static_cast<uint32_t>(tokens.size()));
  const auto bad = std::mismatch(received_.begin(), received_.end(), want.begin());
  if (bad.first != received_.end()) {
    wrong("KV bytes from position " +
          std::to_string(restore_from_ + (bad.first - received_.begin()) / cfg_.unit()) +
          " belong to other tokens");
  }
  if (cfg_.hybrid) {
    const auto st = state_bytes(cfg_, tokens);
    if (!std::equal(partial.begin(), partial.end(), st.begin(), st.end())) {
      wrong("the recurrent state belongs to another prefix");
    }
  }
  if (!logits.empty() && logits != logits_for(tokens)) wrong("the logits belong to another prefix");
  received_.clear();
  tokens_ = tokens;
  logits_ = logits;
}

void SimEngine::decode(uint32_t n) {
  for (uint32_t i = 0; i < n; ++i) {
    tokens_.push_back(next_decoded_--);
    if (next_decoded_ == INT32_MIN) next_decoded_ = -1;
  }
  if (n) logits_ = logits_for(tokens_);
}

}  // namespace kvstash::replay
