// What the request flow (request_flow.h) needs from an engine: one live sequence whose KV can be
// copied out per token range and rebuilt from stored ranges. Nothing here is llama-specific:
// src/engine/session_engine.h adapts a llama.cpp session, src/replay/sim_engine.h is a model-free
// stand-in that lets `kvstash replay` drive the real flow with token traces.
//
// The contract the flow relies on (engine/session.h explains why it makes restores bit-exact):
//   - prefill breaks its batches at absolute multiples of chunk(), at plan.boundaries and at
//     plan.snapshot_at, and calls on_snapshot(pos) when the state holds exactly `pos` tokens;
//   - a state rebuilt by restore() from the KV of [0, n) (plus, for hybrid models, the recurrent
//     state at n) and continued by prefill computes what a fresh prefill would;
//   - resumes_anywhere(): attention-only KV can be cut at any position (trim), so any stored
//     chunk boundary is a resume point; otherwise (hybrid, recurrent, sliding window) a state
//     exists only where a snapshot was taken.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "cache/key.h"

namespace kvstash::cache {

struct PrefillPlan {
  std::vector<uint32_t> boundaries;               // content-derived positions where batches break
  std::vector<uint32_t> snapshot_at;              // exact positions at which to call on_snapshot
  std::function<void(uint32_t pos)> on_snapshot;  // the engine holds exactly `pos` tokens then
  std::function<bool(uint32_t done, uint32_t total)> on_progress;  // false cancels
};

class KvEngine {
 public:
  virtual ~KvEngine() = default;

  // Prefill batch size; the cache's chunk size must equal it.
  virtual uint32_t chunk() const = 0;
  // True for attention-only KV (any break is a resume point); false: only snapshots.
  virtual bool resumes_anywhere() const = 0;

  virtual const std::vector<Token>& tokens() const = 0;
  // Logits after the last token (empty when not known).
  virtual const std::vector<float>& logits() const = 0;
  // Cuts the live state to its first n tokens (only where resumes_anywhere()).
  virtual void trim(size_t n) = 0;
  virtual void clear() = 0;

  // The KV of tokens [begin, end) as a standalone section; consecutive sections concatenate.
  virtual std::vector<uint8_t> extract_kv(uint32_t begin, uint32_t end) = 0;
  // Hybrid models: the recurrent state at the current position (without attention KV).
  virtual std::vector<uint8_t> partial_state() const = 0;

  // Extends the live state to `prompt`, which must start with tokens(). Returns false if
  // on_progress cancelled it (the state then holds the batches done so far).
  virtual bool prefill(const std::vector<Token>& prompt, const PrefillPlan& plan) = 0;
  // Rebuilds the prefix `tokens` from consecutive KV sections starting at position 0 (plus the
  // recurrent state at its end for hybrid models). Throws when the bytes do not form that state.
  virtual void restore(const std::vector<std::span<const uint8_t>>& parts,
                       std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                       const std::vector<float>& logits) = 0;
};

}  // namespace kvstash::cache
