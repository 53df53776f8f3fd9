// What the request flow (request_flow.h) needs from an engine: one live sequence whose KV can be
// copied out per token range and rebuilt from stored ranges. Nothing here is llama-specific:
// src/engine/session_engine.h adapts a llama.cpp session, src/replay/sim_engine.h is a model-free
// stand-in that lets `kvstash replay` drive the real flow with token traces.
//
// The contract the flow relies on (engine/session.h explains why it makes restores bit-exact):
//   - prefill breaks its batches at absolute multiples of chunk(), at plan.boundaries and at
//     plan.snapshot_at (cache::prefill_batches, cache/batching.h, is that rule), and calls
//     on_snapshot(pos) when the state holds exactly `pos` tokens;
//   - a state rebuilt by a restore from the KV of [0, n) (plus, for hybrid models, the recurrent
//     state at n) and continued by prefill computes what a fresh prefill would, also when the
//     restore kept the live KV of [0, keep) and loaded only [keep, n) (a delta restore): stored
//     and live KV of one prefix are the same bytes, and the cells land where a prefill puts them;
//   - resumes_anywhere(): attention-only KV can be cut at any position (trim), so any stored
//     chunk boundary is a resume point; otherwise (hybrid, recurrent, sliding window) a state
//     exists only where a snapshot was taken.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <vector>

#include "core/device_memory.h"
#include "core/key.h"
#include "util/buffer_pool.h"

namespace kvstash::cache {

struct PrefillPlan {
  std::vector<uint32_t> boundaries;               // content-derived positions where batches break
  std::vector<uint32_t> snapshot_at;              // exact positions at which to call on_snapshot
  std::function<void(uint32_t pos)> on_snapshot;  // the engine holds exactly `pos` tokens then
  std::function<bool(uint32_t done, uint32_t total)> on_progress;  // false cancels
};

// The engine's verdict that bytes do not form the state they claim to (see restore_begin).
struct StateRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
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
  // Replaces the live state with the first n tokens of `src`'s live state (another engine of the
  // same kind and model, n <= src.tokens().size()), as exact as src.trim(n) would be; src is
  // unchanged. False when this engine cannot (then nothing changed).
  virtual bool fork_from(KvEngine& src, uint32_t n);

  // The KV of tokens [begin, end) as a standalone section, copied into a buffer of `pool` (pinned
  // memory on GPU builds: the copy out of the device runs at PCIe speed, and the buffer is what
  // the store queues and the RAM tier keeps). Consecutive sections concatenate.
  virtual Payload extract_kv(uint32_t begin, uint32_t end, BufferPool& pool) = 0;
  // Hybrid models: the recurrent state at the current position (without attention KV).
  virtual std::vector<uint8_t> partial_state() const = 0;

  // Extends the live state to `prompt`, which must start with tokens(). Returns false if
  // on_progress cancelled it (the state then holds the batches done so far).
  virtual bool prefill(const std::vector<Token>& prompt, const PrefillPlan& plan) = 0;
  // A restore, in steps, so that objects are uploaded while the next ones are fetched:
  //   restore_begin(keep, from): the live tokens [0, keep) stay (keep <= tokens().size(); 0:
  //     none), the sections start at position `from` (from == keep, or a multiple of chunk()
  //     below it: the live KV of [from, keep) is replaced by the same stored bytes);
  //   restore_kv(section), repeatedly: KV sections of consecutive token ranges; the upload may
  //     still run when it returns, so the section's bytes stay unchanged until restore_sync()
  //     or restore_end() returns;
  //   restore_end(partial, tokens, logits): the state holds `tokens` (hybrid models: with the
  //     recurrent state `partial` taken at its end), whose first `keep` are the kept live ones.
  // Each step throws when the bytes do not form that state: a std::runtime_error (StateRefused,
  // or a subclass of its own) is that verdict, and the cache removes those bytes. A failure that
  // says nothing about the bytes is thrown as anything else (std::bad_alloc, std::system_error,
  // std::logic_error for misuse); the bytes stay. The caller clears the engine either way.
  virtual void restore_begin(uint32_t keep, uint32_t from) = 0;
  virtual void restore_kv(std::span<const uint8_t> section) = 0;
  // The same from a copy in the engine's device memory (the VRAM tier), copied on the device;
  // the copy stays referenced until restore_sync() or restore_end() returns. Engines without
  // device memory never get one (the cache has a VRAM tier only with the engine's memory).
  virtual void restore_kv_device(const DeviceCopy& copy);
  // Waits for the uploads restore_kv queued (engines that copy before returning need not).
  virtual void restore_sync() {}
  virtual void restore_end(std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                           const std::vector<float>& logits) = 0;
};

// The whole restore in one call: `parts` start at position `from` (tests and tools).
void restore_parts(KvEngine& e, uint32_t from, const std::vector<std::span<const uint8_t>>& parts,
                   std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                   const std::vector<float>& logits);

}  // namespace kvstash::cache
