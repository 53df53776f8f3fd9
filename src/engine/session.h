// An engine session: one live sequence over a llama.cpp context, with exact-position snapshots.
//
// Bit-exact restore rests on one rule: a prefill's batches are a function of the prompt alone.
// Kernels are not batch-invariant (matmul tiling, the gated delta net's 64-token chunking), so a
// token computed in another batch shape can differ in its last bits. Batches therefore break at
// absolute multiples of `chunk` and at `boundaries`, positions the caller derives from the prompt's
// content (chat message starts) and so passes identically for every prompt sharing that prefix
// (cache/batching.h: the rule, shared with replay's model-free engine).
// A state restored at such a break position and continued computes exactly the batches of a
// fresh prefill. Snapshots can also be taken at other exact positions (the end of a prompt, the
// lucebox end-of-prefill case); those carry their logits and are exact for the same prompt.
// Every batch requests the logits of its last token, so each snapshot carries them.
//
// A session is one sequence of a llama.cpp context: a context of its own, or one shared with the
// other slots of a server (shared_context.h: one KV stream per sequence keeps prefills exact, and
// decode steps are batched across sequences). Token ranges are copied out of the live sequence
// with kvstash's range-limited state functions (cmake/patches/kv-seq-streams.patch).
//
// Restores append stored KV sections to the live sequence with kvstash's llama.cpp patch
// (LLAMA_STATE_SEQ_FLAGS_KV_APPEND, cmake/patches/kv-append.patch): llama.cpp places them with the
// same cell search a prefill uses, so a sequence whose cells are position-ordered from cell 0 (a
// fresh prefill, a trim, a restore) gets the appended cells right after its last one, where a
// prefill would have put them; the bit-exactness tests prove it per model family.
//
// Sliding-window models (gemma3, gpt-oss) are snapshot-only: their full-attention KV is chunked
// like any attention KV, and a snapshot's partial state is the window's cells (the only ones
// llama.cpp writes). A restore puts the window back at the cell indices a prefill gives it, behind
// masked filler cells (append_window), since kernels group cells by index.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/device_memory.h"
#include "engine/fingerprint.h"
#include "engine/model.h"
#include "util/buffer_pool.h"

struct llama_context;

namespace kvstash::engine {

class SharedContext;

struct SessionOptions {
  int n_ctx = 8192;
  int chunk = 256;    // prefill batch, aligned to absolute positions
  int n_threads = 0;  // 0: all hardware threads
  std::string type_k = "f16";
  std::string type_v = "f16";
  bool flash_attn = true;
};

// Raised when a saved state does not belong to this model and these settings.
struct StateMismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Snapshot {
  Fingerprint fingerprint;
  std::vector<Token> tokens;   // the prefix whose state this is
  std::vector<uint8_t> state;  // llama.cpp sequence state
  std::vector<float> logits;   // logits after the last token (empty if not known)
};

struct PrefillOptions {
  std::vector<int> boundaries;               // content-derived positions where batches break
  std::vector<int> snapshot_at;              // exact positions at which to call on_snapshot
  std::function<void(int pos)> on_snapshot;  // the session holds exactly `pos` tokens then
  std::function<bool(int done, int total)> on_progress;  // return false to cancel
};

class Session {
 public:
  // A session with a context of its own.
  Session(Model& model, const SessionOptions& opt = {});
  // Sequence `seq` of a context shared with other sessions (created with the same options).
  Session(Model& model, const SessionOptions& opt, std::shared_ptr<SharedContext> shared, int seq);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const Model& model() const { return model_; }
  const SessionOptions& options() const { return opt_; }
  // Identifies model file + every setting that changes the KV bytes.
  const Fingerprint& fingerprint() const { return fp_; }
  const std::string& fingerprint_settings() const { return fp_settings_; }

  const std::vector<Token>& tokens() const { return tokens_; }
  const std::vector<float>& logits() const { return logits_; }

  // Extends the live state to `prompt`, which must start with tokens(). Returns false if
  // on_progress cancelled it (the state then holds the chunks done so far).
  bool prefill(const std::vector<Token>& prompt, const PrefillOptions& opt = {});
  void decode_one(Token t);
  Token greedy() const;
  void clear();
  // Cuts the live state to its first n tokens. Only where resume_kind() is kAnyBoundary.
  void trim(size_t n);
  // Replaces the live state with the first n tokens of `src`'s, another sequence of the same
  // context (SharedContext::fork): as exact as src.trim(n) would be. Only where resume_kind() is
  // kAnyBoundary.
  void fork_from(const Session& src, size_t n);

  Snapshot snapshot() const;
  void restore(const Snapshot& s);

  // The attention KV cells of tokens [begin, end) as a standalone state section (kv_blob.h),
  // read straight out of the KV tensors into a buffer of `pool` (no zero-fill, no second copy).
  Payload extract_kv(int begin, int end, BufferPool& pool);
  // The same as a vector (tests and tools).
  std::vector<uint8_t> extract_kv(int begin, int end);
  // Hybrid models: the recurrent state at the current position (without attention KV).
  std::vector<uint8_t> partial_state() const;
  // A restore in steps (cache/kv_engine.h states the contract): keep the live [0, keep), append
  // KV sections straight from the caller's buffers (no join, no copy: llama.cpp uploads from
  // them), then set the recurrent state (hybrid models) and the tokens.
  void restore_begin(int keep, int from);
  // Queues the section's upload without waiting for it (kvstash's KV_NO_WAIT): its bytes stay
  // unchanged until restore_sync() or restore_end() returns.
  void restore_kv(std::span<const uint8_t> section);
  // The same from a copy in device memory (the VRAM tier; a DeviceKv copy): copied on the device.
  void restore_kv(const DeviceCopy& copy);
  void restore_sync();
  void restore_end(std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                   const std::vector<float>& logits);

 private:
  void decode(const std::vector<Token>& toks, size_t pos, bool with_logits);
  void check(const Fingerprint& fp) const;
  void load_state(const std::vector<uint8_t>& state);
  // Runs `fn` with the context to this session (SharedContext::exclusive).
  void on_context(const std::function<void(llama_context*)>& fn) const;
  void remove_from(size_t n);  // drops the sequence's cells from position n on
  // Sliding-window models: puts the window's cells (a section) after the full-attention KV,
  // at the cell indices a prefill gives them (kv_blob.h, filler_section).
  void append_window(std::span<const uint8_t> window);
  // Appends a section of `cells` cells from `first` (which must continue the restore) with `set`,
  // one llama.cpp call that queues its uploads and returns the bytes read (0: rejected).
  void append_section(int first, uint32_t cells, const std::function<size_t(llama_context*)>& set);

  Model& model_;
  SessionOptions opt_;
  std::shared_ptr<SharedContext> shared_;
  int seq_ = 0;
  Fingerprint fp_;
  std::string fp_settings_;
  std::vector<Token> tokens_;
  std::vector<float> logits_;
  int restore_keep_ = -1;        // between restore_begin and restore_end: the kept live tokens
  int restore_next_ = 0;         // the position the next section must continue from
  bool uploads_queued_ = false;  // restore_kv queued uploads nobody has waited for
};

}  // namespace kvstash::engine
