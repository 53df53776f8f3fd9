#include "engine/model.h"

#include <gguf.h>
#include <llama.h>

#include <cstdio>
#include <mutex>
#include <stdexcept>

namespace kvstash::engine {

namespace {
bool g_verbose = false;
std::string g_last_error;  // last llama.cpp error line, to explain a failed load
std::mutex g_capture_mu;
LlamaLogCapture* g_capture = nullptr;
}  // namespace

void llama_log_to_capture(const char* text) { g_capture->text_ += text; }

namespace {
void log_cb(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) g_last_error = text;
  {
    std::lock_guard lock(g_capture_mu);
    if (g_capture) {
      llama_log_to_capture(text);
      return;
    }
  }
  if (g_verbose || level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
    std::fputs(text, stderr);
  }
}
}  // namespace

void set_llama_verbose(bool verbose) { g_verbose = verbose; }

LlamaLogCapture::LlamaLogCapture() {
  init_backend();  // the log callback is installed there
  std::lock_guard lock(g_capture_mu);
  prev_ = g_capture;
  g_capture = this;
}

LlamaLogCapture::~LlamaLogCapture() {
  std::lock_guard lock(g_capture_mu);
  g_capture = prev_;
}

std::string LlamaLogCapture::text() const {
  std::lock_guard lock(g_capture_mu);
  return text_;
}

// The model file's general.architecture ("" if it cannot be read).
std::string gguf_architecture(const std::string& path) {
  gguf_init_params params{true, nullptr};
  gguf_context* g = gguf_init_from_file(path.c_str(), params);
  if (!g) return "";
  std::string arch;
  const int64_t k = gguf_find_key(g, "general.architecture");
  if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) arch = gguf_get_val_str(g, k);
  gguf_free(g);
  return arch;
}

void init_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(log_cb, nullptr);
    llama_backend_init();
  });
}

Model::Model(const std::string& path, const ModelOptions& opt) : path_(path), opt_(opt) {
  init_backend();
  if (!opt.vocab_only) file_hash_ = hash_file(path);  // a tokenizer needs no fingerprint
  auto mp = llama_model_default_params();
  mp.n_gpu_layers = opt.n_gpu_layers;
  mp.vocab_only = opt.vocab_only;
  // llama.cpp's AMX weight buffers (Intel CPUs with AMX) leave an op of MLA's attention
  // (deepseek2) without a backend, and context creation aborts: such models keep their weights
  // in plain buffers. Other models keep the extra buffer types (weight repacking).
  mp.use_extra_bufts = gguf_architecture(path) != "deepseek2";
  g_last_error.clear();
  model_ = llama_model_load_from_file(path.c_str(), mp);
  if (!model_) {
    throw std::runtime_error("cannot load model " + path +
                             (g_last_error.empty() ? "" : ": " + g_last_error));
  }
}

Model::~Model() { llama_model_free(model_); }

const llama_vocab* Model::vocab() const { return llama_model_get_vocab(model_); }

std::string Model::arch() const {
  char buf[128] = {0};
  llama_model_meta_val_str(model_, "general.architecture", buf, sizeof(buf));
  return buf;
}

bool Model::hybrid() const { return llama_model_is_hybrid(model_) || sliding_window(); }

bool Model::sliding_window() const { return llama_model_n_swa(model_) > 0; }

ResumeKind Model::resume_kind() const {
  if (llama_model_is_recurrent(model_) || llama_model_is_hybrid(model_) || sliding_window()) {
    return ResumeKind::kSnapshotOnly;
  }
  return ResumeKind::kAnyBoundary;
}

size_t Model::cell_ext_size() const {
  const auto rt = llama_model_rope_type(model_);
  return (rt == LLAMA_ROPE_TYPE_MROPE || rt == LLAMA_ROPE_TYPE_IMROPE) ? 12 : 0;
}

bool Model::kv_has_v() const {
  // llama.cpp caches no V for multi-head latent attention (llama_hparams::is_mla(): the model
  // declares the per-head sizes of its decompressed K and V under the _mla keys).
  char buf[32];
  return llama_model_meta_val_str(model_, (arch() + ".attention.key_length_mla").c_str(), buf,
                                  sizeof(buf)) < 0;
}

int Model::n_vocab() const { return llama_vocab_n_tokens(vocab()); }
bool Model::is_eog(Token t) const { return llama_vocab_is_eog(vocab(), t); }

int Model::n_ctx_train() const { return llama_model_n_ctx_train(model_); }

std::vector<Token> Model::tokenize(const std::string& text, bool add_special,
                                   bool parse_special) const {
  std::vector<Token> out(text.size() + 16);
  int n = llama_tokenize(vocab(), text.data(), static_cast<int32_t>(text.size()), out.data(),
                         static_cast<int32_t>(out.size()), add_special, parse_special);
  if (n < 0) {
    out.resize(-n);
    n = llama_tokenize(vocab(), text.data(), static_cast<int32_t>(text.size()), out.data(),
                       static_cast<int32_t>(out.size()), add_special, parse_special);
  }
  if (n < 0) throw std::runtime_error("tokenization failed");
  out.resize(n);
  return out;
}

std::string Model::token_text(Token t) const {
  char buf[256];
  const int n = llama_token_to_piece(vocab(), t, buf, sizeof(buf), 0, true);
  return n > 0 ? std::string(buf, n) : std::string();
}

std::string Model::detokenize(const std::vector<Token>& tokens) const {
  std::string out(tokens.size() * 8 + 16, '\0');
  int n = llama_detokenize(vocab(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                           static_cast<int32_t>(out.size()), false, false);
  if (n < 0) {
    out.resize(-n);
    n = llama_detokenize(vocab(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                         static_cast<int32_t>(out.size()), false, false);
  }
  out.resize(n < 0 ? 0 : n);
  return out;
}

std::string Model::chat_template() const {
  const char* t = llama_model_chat_template(model_, nullptr);
  return t ? t : "";
}

}  // namespace kvstash::engine
