// Random-weight GGUF models of real shapes (`kvstash mkmodel`).
//
// No weights can be downloaded where kvstash is developed and tested, and prefill speed does not
// depend on weight values, so tests and benchmarks run on generated models: real architectures
// and shapes, seeded random weights, and a real tokenizer plus chat template copied from one of
// llama.cpp's models/ggml-vocab-*.gguf files. Tensor data is streamed to disk, so an 8B-class
// model needs no more memory than its largest tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvstash::engine {

struct ModelShape {
  std::string name;  // tiny | qwen3-0.6b | ... (model_shapes() lists them)
  // llama.cpp architecture: qwen3, qwen35, llama, qwen3moe, gemma3, gpt-oss, deepseek2
  std::string arch;
  uint32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
  bool tied_output;
  uint32_t n_ctx_train = 40960;
  float rope_base = 1000000.0f;
  // qwen35 (gated delta net) only
  uint32_t full_attention_interval = 0, ssm_state = 0, ssm_groups = 0, ssm_v_heads = 0;
  uint32_t rope_dims = 0;  // qwen35, deepseek2 (the roped part of a head); else head_dim
  // The family's tokenizer (a name of ggml-vocab-NAME.gguf) and chat template (models/templates).
  std::string vocab = "qwen2", chat_template = "Qwen-Qwen3-0.6B";
  // Mixture of experts (qwen3moe, gpt-oss, deepseek2): n_ff is then the dense FFN of deepseek2's
  // leading dense layers.
  uint32_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_expert_shared = 0, n_dense_lead = 0;
  // Sliding-window attention (gemma3, gpt-oss): window and layer pattern (every n-th layer full).
  uint32_t n_swa = 0, swa_pattern = 0;
  // Multi-head latent attention (deepseek2): the cached latent is kv_lora_rank + rope_dims wide.
  uint32_t kv_lora_rank = 0, head_dim_v = 0;  // head_dim is the K head (nope + rope)
};

const std::vector<ModelShape>& model_shapes();
const ModelShape& find_shape(const std::string& name);  // throws with the list of valid names

struct GenOptions {
  std::string shape = "tiny";
  // A name (ggml-vocab-NAME.gguf in the vocab dir) or a path; empty: the shape's family's.
  std::string vocab;
  std::string out;
  uint64_t seed = 42;
  bool f16 = true;  // matrices in f16 (as shipped checkpoints are); f32 otherwise
  // Layers to build, 0: the shape's own count. Fewer layers of a real shape keep its per-layer
  // widths (so its KV bytes per token per layer) and its layer pattern (sliding window, leading
  // dense layers, recurrent layers), so a benchmark on a small machine measures real row sizes.
  uint32_t layers = 0;
  // The chat template embedded: a name in llama.cpp's models/templates (without .jinja), a path,
  // "vocab" for the vocab file's own, or empty for the real template of the shape's family.
  std::string chat_template;
};

// Resolves a vocab name to a file path in the vocab directory (or returns an existing path).
std::string vocab_path(const std::string& vocab);
// Resolves a template name (or path, or the family default for `shape`) to a template file path.
std::string template_path(const std::string& name, const ModelShape& shape);

// Writes the model (to a temp file, then renames). Returns the number of parameters.
uint64_t generate_model(const GenOptions& opt);

}  // namespace kvstash::engine
