// The llama.cpp session as a cache::KvEngine: what the request flow (cache/request_flow.h) runs
// against. A thin adapter; the session (session.h) does the work.
#pragma once

#include "cache/kv_engine.h"
#include "engine/session.h"

namespace kvstash::engine {

class SessionEngine final : public cache::KvEngine {
 public:
  explicit SessionEngine(Session& s) : s_(s) {}

  Session& session() { return s_; }

  uint32_t chunk() const override;
  bool resumes_anywhere() const override;
  const std::vector<cache::Token>& tokens() const override { return s_.tokens(); }
  const std::vector<float>& logits() const override { return s_.logits(); }
  void trim(size_t n) override { s_.trim(n); }
  void clear() override { s_.clear(); }
  std::vector<uint8_t> extract_kv(uint32_t begin, uint32_t end) override;
  std::vector<uint8_t> partial_state() const override { return s_.partial_state(); }
  bool prefill(const std::vector<cache::Token>& prompt, const cache::PrefillPlan& plan) override;
  void restore(const std::vector<std::span<const uint8_t>>& parts, std::span<const uint8_t> partial,
               const std::vector<cache::Token>& tokens, const std::vector<float>& logits) override;

 private:
  Session& s_;
};

}  // namespace kvstash::engine
