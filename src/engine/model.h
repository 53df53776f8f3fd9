// A loaded GGUF model and what kvstash needs to know about it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/fingerprint.h"

struct llama_model;
struct llama_vocab;

namespace kvstash::engine {

using Token = int32_t;

// Where a restored state may resume. Pure attention caches can be cut at any token, so any stored
// chunk boundary is a resume point; recurrent and hybrid models carry state that exists only at
// the exact positions where a snapshot was taken. So do sliding-window models: llama.cpp writes
// a sequence's window cells only (the older ones are masked for every later token), and the
// window at position p is not the window at any other position. (A prefix shorter than the
// window would be cuttable, but kvstash keeps one rule per model: its prompts are longer than
// the windows of real models, 512 to 4096 tokens.)
enum class ResumeKind { kAnyBoundary, kSnapshotOnly };

struct ModelOptions {
  int n_gpu_layers = 0;     // -1: all
  bool vocab_only = false;  // tokenizer and template only (no weights loaded)
};

class Model {
 public:
  // Throws std::runtime_error with llama.cpp's reason folded into the message.
  Model(const std::string& path, const ModelOptions& opt = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  llama_model* get() const { return model_; }
  const llama_vocab* vocab() const;
  const std::string& path() const { return path_; }
  const Fingerprint& file_hash() const { return file_hash_; }
  const ModelOptions& options() const { return opt_; }
  std::string arch() const;
  ResumeKind resume_kind() const;
  // KV in chunks plus a partial state that exists only at snapshot positions: attention +
  // recurrent layers (qwen35), or full + sliding-window attention layers (gemma3, gpt-oss: the
  // full layers' KV is chunked, the window's cells are the partial state).
  bool hybrid() const;
  bool sliding_window() const;   // has sliding-window attention layers
  size_t cell_ext_size() const;  // bytes of per-cell position extension in KV state (M-RoPE)
  bool kv_has_v() const;         // false for MLA (deepseek2): the cache holds K (the latent) only
  int n_vocab() const;
  bool is_eog(Token t) const;  // end of generation (EOS, end of turn)
  int n_ctx_train() const;

  std::vector<Token> tokenize(const std::string& text, bool add_special = true,
                              bool parse_special = true) const;
  std::string detokenize(const std::vector<Token>& tokens) const;
  std::string token_text(Token t) const;
  std::string chat_template() const;  // as stored in the GGUF (empty if none)

 private:
  std::string path_;
  ModelOptions opt_;
  llama_model* model_ = nullptr;
  Fingerprint file_hash_;
};

// llama.cpp's backends, registered once per process; log output goes through kvstash's logger.
void init_backend();
// Routes llama.cpp's log lines (quiet by default: only warnings and errors).
void set_llama_verbose(bool verbose);

// While alive, llama.cpp's log lines (every level) are collected here instead of printed: for
// tests that check what llama.cpp says, and for loads whose complaints are expected.
class LlamaLogCapture {
 public:
  LlamaLogCapture();
  ~LlamaLogCapture();
  LlamaLogCapture(const LlamaLogCapture&) = delete;
  LlamaLogCapture& operator=(const LlamaLogCapture&) = delete;
  std::string text() const;

 private:
  LlamaLogCapture* prev_;  // captures nest; the innermost one collects
  std::string text_;
  friend void llama_log_to_capture(const char* text);
};

}  // namespace kvstash::engine
