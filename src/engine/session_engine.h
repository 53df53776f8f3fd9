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
  bool fork_from(cache::KvEngine& src, uint32_t n) override;
  Payload extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) override;
  std::vector<uint8_t> partial_state() const override { return s_.partial_state(); }
  bool prefill(const std::vector<cache::Token>& prompt, const cache::PrefillPlan& plan) override;
  void restore_begin(uint32_t keep, uint32_t from) override {
    s_.restore_begin(static_cast<int>(keep), static_cast<int>(from));
  }
  void restore_kv(std::span<const uint8_t> section) override { s_.restore_kv(section); }
  void restore_kv_device(const DeviceCopy& copy) override { s_.restore_kv(copy); }
  void restore_sync() override { s_.restore_sync(); }
  void restore_end(std::span<const uint8_t> partial, const std::vector<cache::Token>& tokens,
                   const std::vector<float>& logits) override {
    s_.restore_end(partial, tokens, logits);
  }

 private:
  Session& s_;
};

}  // namespace kvstash::engine
