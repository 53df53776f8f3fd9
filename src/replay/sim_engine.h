// A model-free engine for `kvstash replay`: it runs the real request flow and the real cache with
// token traces, at a fraction of the real bytes, in no time.
//
// Prefill is instant but counted. The "KV" of the token at position p is `unit` bytes derived
// from (p, token), unit = bytes_per_token / scale, so the cache stores, evicts and restores real
// objects of 1/scale the real size: eviction depends on size ratios, so its decisions are those
// of the real sizes (object headers aside), and reported bytes are multiplied back by scale.
// restore() checks that the bytes it is given are exactly those the prefix's tokens produce: a
// replay that serves a wrong state says so (wrong_states()).
//
// Hybrid mode (resumes_anywhere() false) stands for an attention + recurrent model: the state
// exists only at snapshots, and a restore needs the recurrent state, derived here from the hash
// of the whole prefix, so it too is checked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache/kv_engine.h"

namespace kvstash::replay {

struct SimConfig {
  uint32_t chunk = 256;
  // Qwen3-0.6B's f16 KV: 28 layers * 8 KV heads * 128 dims * 2 (K, V) * 2 bytes.
  uint64_t bytes_per_token = 114688;
  uint64_t scale = 1024;  // stored bytes are 1/scale of the real ones
  bool hybrid = false;
  uint64_t state_bytes = 8ull << 20;  // hybrid: real bytes of the recurrent state
  uint64_t unit() const;              // stored bytes per token
  uint64_t state_unit() const;        // stored bytes of a recurrent state
  std::string describe() const;       // goes into the cache fingerprint
};

class SimEngine final : public cache::KvEngine {
 public:
  explicit SimEngine(const SimConfig& cfg);

  uint32_t chunk() const override { return cfg_.chunk; }
  bool resumes_anywhere() const override { return !cfg_.hybrid; }
  const std::vector<cache::Token>& tokens() const override { return tokens_; }
  const std::vector<float>& logits() const override { return logits_; }
  void trim(size_t n) override;
  void clear() override;
  bool fork_from(cache::KvEngine& src, uint32_t n) override;
  Payload extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) override;
  std::vector<uint8_t> partial_state() const override;
  bool prefill(const std::vector<cache::Token>& prompt, const cache::PrefillPlan& plan) override;
  void restore_begin(uint32_t keep, uint32_t from) override;
  // Like a GPU engine's queued upload, a section's bytes are read only when the restore waits
  // (restore_sync, restore_end): a caller that lets the buffer change before then restores wrong
  // bytes, which this engine refuses.
  void restore_kv(std::span<const uint8_t> section) override;
  void restore_sync() override;
  void restore_end(std::span<const uint8_t> partial, const std::vector<cache::Token>& tokens,
                   const std::vector<float>& logits) override;

  // Decodes n tokens after the prompt. They never match a trace's prompt tokens (they are
  // negative), as decoded tokens are never reused from the cache anyway (request_flow.h).
  void decode(uint32_t n);

  uint64_t prefilled() const { return prefilled_; }
  uint64_t wrong_states() const { return wrong_; }

  // The stored bytes of tokens [begin, end) of `tokens`.
  static std::vector<uint8_t> kv_bytes(const SimConfig& cfg, std::span<const cache::Token> tokens,
                                       uint32_t begin, uint32_t end);
  static std::vector<uint8_t> state_bytes(const SimConfig& cfg,
                                          std::span<const cache::Token> prefix);

 private:
  std::vector<float> logits_for(std::span<const cache::Token> prefix) const;

  SimConfig cfg_;
  std::vector<cache::Token> tokens_;
  std::vector<float> logits_;
  uint64_t prefilled_ = 0, wrong_ = 0;
  // Between restore_begin and restore_end: where the sections start, and their bytes.
  uint32_t restore_from_ = 0;
  bool restoring_ = false;
  std::vector<uint8_t> received_;
  std::vector<std::span<const uint8_t>> queued_;  // sections not read yet
  int32_t next_decoded_ = -1;
};

}  // namespace kvstash::replay
