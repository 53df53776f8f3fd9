#include "engine/model_gen.h"

#include <ggml.h>
#include <gguf.h>
#include <llama.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>

#include "engine/model.h"

#ifndef KVSTASH_VOCAB_DIR
#define KVSTASH_VOCAB_DIR ""
#endif

namespace kvstash::engine {

namespace fs = std::filesystem;

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = [] {
    std::vector<ModelShape> v;
    // Small enough that a 2-core CI machine prefills thousands of tokens per second.
    v.push_back({"tiny", "qwen3", 128, 2, 4, 2, 32, 256, true});
    // The published Qwen3-0.6B and Qwen3-8B shapes.
    v.push_back({"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, true});
    v.push_back({"qwen3-8b", "qwen3", 4096, 36, 32, 8, 128, 12288, false});
    // Qwen3.5-style hybrid: gated-delta-net (recurrent) layers with full attention every 2nd.
    ModelShape h{"hybrid-tiny", "qwen35", 128, 4, 4, 2, 32, 256, true};
    h.full_attention_interval = 2;
    h.ssm_state = 32;
    h.ssm_groups = 2;
    h.ssm_v_heads = 4;
    h.rope_dims = 16;
    h.chat_template = "Qwen3.5-4B";
    v.push_back(h);
    // Llama 3.x: plain GQA attention, the Llama 3 tokenizer (128k) and template. The 8B shape is
    // Llama-3.1-8B's (its long-context rope scaling factors are left out: random weights).
    ModelShape l{"llama-tiny", "llama", 128, 2, 4, 2, 32, 256, true, 131072, 500000.0f};
    l.vocab = "llama-bpe";
    l.chat_template = "meta-llama-Llama-3.1-8B-Instruct";
    v.push_back(l);
    ModelShape l8{"llama3-8b", "llama", 4096, 32, 32, 8, 128, 14336, false, 131072, 500000.0f};
    l8.vocab = l.vocab;
    l8.chat_template = l.chat_template;
    v.push_back(l8);
    // Qwen3-MoE: qwen3 attention, experts instead of the dense FFN (KV as qwen3's).
    ModelShape m{"qwen3moe-tiny", "qwen3moe", 128, 2, 4, 2, 32, 256, true};
    m.n_expert = 8;
    m.n_expert_used = 2;
    m.n_ff_exp = 64;
    v.push_back(m);
    // Gemma 3: sliding-window layers with a full-attention layer every swa_pattern-th (Gemma 3
    // 4B: window 1024, pattern 6). Tiny: window 128 so that test prompts slide past it, every 2nd
    // layer full so that both kinds exist. llama.cpp ships Gemma 4's tokenizer and template, not
    // Gemma 3's; they are used as the closest real ones.
    ModelShape g{"gemma3-tiny", "gemma3", 128, 4, 4, 2, 32, 256, true, 131072};
    g.n_swa = 128;
    g.swa_pattern = 2;
    g.vocab = "gemma-4";
    g.chat_template = "google-gemma-4-31B-it";
    v.push_back(g);
    // GPT-OSS: MoE, sliding (window 128) and full attention alternating, attention sinks, biases.
    // Its o200k tokenizer is not shipped with llama.cpp: qwen2's stands in, with the real template.
    ModelShape o{"gpt-oss-tiny", "gpt-oss", 128, 2, 4, 2, 32, 256, false, 131072, 150000.0f};
    o.n_expert = 4;
    o.n_expert_used = 2;
    o.n_ff_exp = 64;
    o.n_swa = 128;
    o.swa_pattern = 2;
    o.chat_template = "openai-gpt-oss-120b";
    v.push_back(o);
    // DeepSeek-V2 (MLA): the KV cache holds one latent (kv_lora_rank) plus the roped key part per
    // token and layer, no V. DeepSeek-V2-Lite's shape: 27 layers, 16 heads, K head 192 (128 + 64
    // roped), V head 128, latent 512, 64 experts (6 used, 2 shared), first layer dense.
    ModelShape d{"deepseek2-lite", "deepseek2", 2048, 27, 16, 1, 192, 10944, false,
                 163840,           10000.0f};
    d.rope_dims = 64;
    d.kv_lora_rank = 512;
    d.head_dim_v = 128;
    d.n_expert = 64;
    d.n_expert_used = 6;
    d.n_expert_shared = 2;
    d.n_ff_exp = 1408;
    d.n_dense_lead = 1;
    d.vocab = "deepseek-llm";
    d.chat_template = "deepseek-ai-DeepSeek-V3.1";
    v.push_back(d);
    ModelShape dt{"deepseek2-tiny", "deepseek2", 128, 2, 4, 1, 64, 256, true, 163840, 10000.0f};
    dt.rope_dims = 32;
    dt.kv_lora_rank = 64;  // both 64 and 64 + 32 roped: whole q8_0 / q4_0 blocks
    dt.head_dim_v = 32;
    dt.n_expert = 4;
    dt.n_expert_used = 2;
    dt.n_expert_shared = 1;
    dt.n_ff_exp = 64;
    dt.n_dense_lead = 1;
    dt.vocab = d.vocab;
    dt.chat_template = d.chat_template;
    v.push_back(dt);
    return v;
  }();
  return shapes;
}

const ModelShape& find_shape(const std::string& name) {
  std::string names;
  for (const auto& s : model_shapes()) {
    if (s.name == name) return s;
    names += (names.empty() ? "" : ", ") + s.name;
  }
  throw std::invalid_argument("unknown model shape '" + name + "' (known: " + names + ")");
}

std::string template_path(const std::string& name, const ModelShape& shape) {
  // The family's real template, so generated models render real agent prompts (tools, tool
  // calls, thinking) exactly as the published checkpoints do.
  const std::string& n = !name.empty() ? name : shape.chat_template;
  if (fs::exists(n)) return n;
  const char* env = std::getenv("KVSTASH_TEMPLATE_DIR");
  const std::string p = std::string(env && *env ? env : KVSTASH_TEMPLATE_DIR) + "/" + n + ".jinja";
  if (!fs::exists(p)) {
    throw std::invalid_argument("no chat template '" + n + "': " + p +
                                " does not exist (pass a path, or set KVSTASH_TEMPLATE_DIR)");
  }
  return p;
}

std::string vocab_path(const std::string& vocab) {
  if (fs::exists(vocab)) return vocab;
  const char* env = std::getenv("KVSTASH_VOCAB_DIR");
  const std::string dir = env && *env ? env : KVSTASH_VOCAB_DIR;
  const std::string p = dir + "/ggml-vocab-" + vocab + ".gguf";
  if (!fs::exists(p)) {
    throw std::invalid_argument("no vocab '" + vocab + "': " + p +
                                " does not exist (pass a path, or set KVSTASH_VOCAB_DIR)");
  }
  return p;
}

namespace {

struct TensorSpec {
  std::string name;
  int64_t ne0, ne1;  // ne1 == 0: a vector
  enum Init { kWeight, kOnes, kNegative, kZero } init = kWeight;
  bool f32 = false;  // kept in f32 even in an f16 model (ggml's ssm_conv takes only f32)
  int64_t ne2 = 0;   // experts (3D tensors)
};

using Specs = std::vector<TensorSpec>;

void add_norm(Specs& t, const std::string& name, int64_t n) {
  t.push_back({name + ".weight", n, 0, TensorSpec::kOnes});
}

// Q, K, V and output projections of grouped-query attention.
void add_gqa(Specs& t, const std::string& b, const ModelShape& s) {
  const int64_t E = s.n_embd, q = int64_t(s.head_dim) * s.n_head,
                kv = int64_t(s.head_dim) * s.n_head_kv;
  t.push_back({b + "attn_q.weight", E, q});
  t.push_back({b + "attn_k.weight", E, kv});
  t.push_back({b + "attn_v.weight", E, kv});
  t.push_back({b + "attn_output.weight", q, E});
}

void add_dense_ffn(Specs& t, const std::string& b, const ModelShape& s) {
  t.push_back({b + "ffn_gate.weight", s.n_embd, s.n_ff});
  t.push_back({b + "ffn_down.weight", s.n_ff, s.n_embd});
  t.push_back({b + "ffn_up.weight", s.n_embd, s.n_ff});
}

// Router and experts; `bias`: gpt-oss's per-expert biases.
void add_experts(Specs& t, const std::string& b, const ModelShape& s, bool bias) {
  const int64_t E = s.n_embd, F = s.n_ff_exp, X = s.n_expert;
  t.push_back({b + "ffn_gate_inp.weight", E, X});
  t.push_back({b + "ffn_gate_exps.weight", E, F, TensorSpec::kWeight, false, X});
  t.push_back({b + "ffn_down_exps.weight", F, E, TensorSpec::kWeight, false, X});
  t.push_back({b + "ffn_up_exps.weight", E, F, TensorSpec::kWeight, false, X});
  if (!bias) return;
  t.push_back({b + "ffn_gate_inp.bias", X, 0, TensorSpec::kZero});
  t.push_back({b + "ffn_gate_exps.bias", F, X, TensorSpec::kZero, true});
  t.push_back({b + "ffn_down_exps.bias", E, X, TensorSpec::kZero, true});
  t.push_back({b + "ffn_up_exps.bias", F, X, TensorSpec::kZero, true});
}

void add_qwen35_layer(Specs& t, const std::string& b, const ModelShape& s, bool recurrent) {
  const int64_t E = s.n_embd, hd = s.head_dim, q = hd * s.n_head, kv = hd * s.n_head_kv;
  add_norm(t, b + "post_attention_norm", E);
  if (!recurrent) {  // attention layer: q carries a gate half
    t.push_back({b + "attn_q.weight", E, q * 2});
    t.push_back({b + "attn_k.weight", E, kv});
    t.push_back({b + "attn_v.weight", E, kv});
    t.push_back({b + "attn_output.weight", q, E});
    add_norm(t, b + "attn_q_norm", hd);
    add_norm(t, b + "attn_k_norm", hd);
    return;
  }
  // gated delta net layer
  const int64_t key_dim = int64_t(s.ssm_state) * s.ssm_groups;
  const int64_t value_dim = int64_t(s.ssm_state) * s.ssm_v_heads;
  t.push_back({b + "attn_qkv.weight", E, key_dim * 2 + value_dim});
  t.push_back({b + "attn_gate.weight", E, value_dim});
  t.push_back({b + "ssm_conv1d.weight", 4, key_dim * 2 + value_dim, TensorSpec::kWeight, true});
  t.push_back({b + "ssm_dt.bias", s.ssm_v_heads, 0, TensorSpec::kZero});
  t.push_back({b + "ssm_a", s.ssm_v_heads, 0, TensorSpec::kNegative});
  t.push_back({b + "ssm_beta.weight", E, s.ssm_v_heads});
  t.push_back({b + "ssm_alpha.weight", E, s.ssm_v_heads});
  add_norm(t, b + "ssm_norm", s.ssm_state);
  t.push_back({b + "ssm_out.weight", value_dim, E});
}

// deepseek2 with MLA (no q LoRA, as V2-Lite): the latent and the roped key come from one
// projection; attn_k_b / attn_v_b expand the latent per head.
void add_mla_layer(Specs& t, const std::string& b, const ModelShape& s, uint32_t il) {
  const int64_t E = s.n_embd, H = s.n_head, R = s.kv_lora_rank, nope = s.head_dim - s.rope_dims;
  add_norm(t, b + "attn_kv_a_norm", R);
  t.push_back({b + "attn_q.weight", E, H * s.head_dim});
  t.push_back({b + "attn_kv_a_mqa.weight", E, R + s.rope_dims});
  t.push_back({b + "attn_k_b.weight", nope, R, TensorSpec::kWeight, false, H});
  t.push_back({b + "attn_v_b.weight", R, s.head_dim_v, TensorSpec::kWeight, false, H});
  t.push_back({b + "attn_output.weight", H * s.head_dim_v, E});
  add_norm(t, b + "ffn_norm", E);
  if (il < s.n_dense_lead) {
    add_dense_ffn(t, b, s);
    return;
  }
  add_experts(t, b, s, false);
  const int64_t sh = int64_t(s.n_ff_exp) * s.n_expert_shared;
  t.push_back({b + "ffn_gate_shexp.weight", E, sh});
  t.push_back({b + "ffn_down_shexp.weight", sh, E});
  t.push_back({b + "ffn_up_shexp.weight", E, sh});
}

Specs tensor_specs(const ModelShape& s, uint32_t n_vocab) {
  Specs t;
  const int64_t E = s.n_embd, hd = s.head_dim;
  t.push_back({"token_embd.weight", E, n_vocab});
  add_norm(t, "output_norm", E);
  if (!s.tied_output) t.push_back({"output.weight", E, n_vocab});
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add_norm(t, b + "attn_norm", E);
    if (s.arch == "qwen35") {
      add_qwen35_layer(t, b, s, (il + 1) % s.full_attention_interval != 0);
      add_dense_ffn(t, b, s);
    } else if (s.arch == "deepseek2") {
      add_mla_layer(t, b, s, il);
    } else if (s.arch == "gpt-oss") {
      add_norm(t, b + "post_attention_norm", E);
      add_gqa(t, b, s);
      t.push_back({b + "attn_output.bias", E, 0, TensorSpec::kZero});
      t.push_back({b + "attn_sinks.weight", s.n_head, 0, TensorSpec::kZero});
      add_experts(t, b, s, true);
    } else {  // llama, qwen3, qwen3moe, gemma3
      add_gqa(t, b, s);
      if (s.arch != "llama") {
        add_norm(t, b + "attn_q_norm", hd);
        add_norm(t, b + "attn_k_norm", hd);
      }
      add_norm(t, b + "ffn_norm", E);
      if (s.arch == "gemma3") {
        add_norm(t, b + "post_attention_norm", E);
        add_norm(t, b + "post_ffw_norm", E);
      }
      if (s.n_expert) {
        add_experts(t, b, s, false);
      } else {
        add_dense_ffn(t, b, s);
      }
    }
  }
  return t;
}

// splitmix64: fast, seedable, good enough for weights whose values do not matter.
struct Rng {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  float uniform() { return (next() >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f; }  // [-1, 1)
};

void fill(const TensorSpec& t, uint64_t seed, std::vector<float>& v) {
  Rng rng{seed ^ std::hash<std::string>{}(t.name)};
  // Scale like a trained layer (variance ~ 1/fan_in) so activations stay finite through depth.
  const float scale = t.ne1 ? 1.7f / std::sqrt(float(t.ne0)) : 0.5f;
  for (auto& x : v) {
    switch (t.init) {
      case TensorSpec::kWeight:
        x = rng.uniform() * scale;
        break;
      case TensorSpec::kOnes:
        x = 1.0f + 0.05f * rng.uniform();
        break;
      case TensorSpec::kNegative:
        x = -0.5f - 0.5f * std::fabs(rng.uniform());
        break;
      case TensorSpec::kZero:
        x = 0.0f;
        break;
    }
  }
}

// llama.cpp recognises end-of-turn, end-of-generation and fill-in-the-middle tokens by their text
// (llama-vocab.cpp, "auto-detect special tokens by text") and, when the file does not type one of
// them as control, overrides it with the warning "control-looking token ... probably a bug in the
// model" on every load. Qwen2's vocab has '</s>' as a normal token, so every generated model
// warned. llama.cpp itself says which tokens it treats as control (a vocab-only load of the source,
// its complaints discarded); writing those as control makes a load quiet and changes nothing else,
// since that is the type llama.cpp gives them anyway.
void write_control_token_types(gguf_context* g, const std::string& vocab_file) {
  const int64_t key = gguf_find_key(g, "tokenizer.ggml.token_type");
  if (key < 0 || gguf_get_arr_type(g, key) != GGUF_TYPE_INT32) return;
  const size_t n = gguf_get_arr_n(g, key);
  const auto* types = static_cast<const int32_t*>(gguf_get_arr_data(g, key));
  std::vector<int32_t> fixed(types, types + n);
  LlamaLogCapture quiet;
  const Model vocab(vocab_file, {.vocab_only = true});
  bool changed = false;
  for (size_t i = 0; i < n && i < static_cast<size_t>(vocab.n_vocab()); ++i) {
    const auto attr = llama_vocab_get_attr(vocab.vocab(), static_cast<llama_token>(i));
    if ((attr & LLAMA_TOKEN_ATTR_CONTROL) && fixed[i] != LLAMA_TOKEN_TYPE_CONTROL) {
      fixed[i] = LLAMA_TOKEN_TYPE_CONTROL;
      changed = true;
    }
  }
  if (changed) {
    gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, fixed.data(), n);
  }
}

void set_u32(gguf_context* g, const std::string& key, uint32_t v) {
  gguf_set_val_u32(g, key.c_str(), v);
}

}  // namespace

uint64_t generate_model(const GenOptions& opt) {
  ModelShape s = find_shape(opt.shape);
  if (opt.layers) s.n_layer = opt.layers;
  const std::string vocab_name = opt.vocab.empty() ? s.vocab : opt.vocab;
  if (opt.out.empty()) throw std::invalid_argument("mkmodel needs an output path (-o FILE.gguf)");

  gguf_init_params vp{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, void (*)(gguf_context*)> vocab(
      gguf_init_from_file(vocab_path(vocab_name).c_str(), vp), &gguf_free);
  if (!vocab) throw std::runtime_error("cannot read vocab file " + vocab_path(vocab_name));
  const int64_t tok_key = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
  if (tok_key < 0) throw std::runtime_error("vocab file has no tokenizer.ggml.tokens");
  const auto n_vocab = static_cast<uint32_t>(gguf_get_arr_n(vocab.get(), tok_key));

  std::unique_ptr<gguf_context, void (*)(gguf_context*)> g(gguf_init_empty(), &gguf_free);
  gguf_set_kv(g.get(), vocab.get());  // tokenizer.* and chat template, verbatim
  write_control_token_types(g.get(), vocab_path(vocab_name));
  if (opt.chat_template != "vocab") {
    std::ifstream tf(template_path(opt.chat_template, s));
    const std::string tmpl((std::istreambuf_iterator<char>(tf)), std::istreambuf_iterator<char>());
    if (tmpl.empty())
      throw std::runtime_error("empty chat template " + template_path(opt.chat_template, s));
    gguf_set_val_str(g.get(), "tokenizer.chat_template", tmpl.c_str());
  }
  const std::string a = s.arch;
  // The vocab file's own hyperparameters stay out where they would be read as this model's (the
  // llama-bpe vocab is a Llama model's: its llama.rope.dimension_count would apply).
  for (int64_t k = gguf_get_n_kv(g.get()) - 1; k >= 0; --k) {
    if (std::string(gguf_get_key(g.get(), k)).starts_with(a + ".")) {
      gguf_remove_key(g.get(), gguf_get_key(g.get(), k));
    }
  }
  gguf_set_val_str(g.get(), "general.architecture", a.c_str());
  const std::string layers = opt.layers ? ", " + std::to_string(s.n_layer) + " layers" : "";
  gguf_set_val_str(g.get(), "general.name", ("kvstash random " + s.name + layers).c_str());
  gguf_set_val_u32(g.get(), "general.file_type", opt.f16 ? 1 : 0);
  set_u32(g.get(), a + ".vocab_size", n_vocab);
  set_u32(g.get(), a + ".context_length", s.n_ctx_train);
  set_u32(g.get(), a + ".embedding_length", s.n_embd);
  set_u32(g.get(), a + ".block_count", s.n_layer);
  set_u32(g.get(), a + ".feed_forward_length", s.n_ff);
  set_u32(g.get(), a + ".attention.head_count", s.n_head);
  set_u32(g.get(), a + ".attention.head_count_kv", s.n_head_kv);
  if (s.kv_lora_rank) {
    // MLA: llama.cpp's K "head" is the cached latent plus the roped key; the attention heads'
    // own sizes are the _mla keys.
    set_u32(g.get(), a + ".attention.key_length", s.kv_lora_rank + s.rope_dims);
    set_u32(g.get(), a + ".attention.value_length", s.kv_lora_rank);
    set_u32(g.get(), a + ".attention.key_length_mla", s.head_dim);
    set_u32(g.get(), a + ".attention.value_length_mla", s.head_dim_v);
    set_u32(g.get(), a + ".attention.kv_lora_rank", s.kv_lora_rank);
    set_u32(g.get(), a + ".attention.q_lora_rank", 0);
    set_u32(g.get(), a + ".rope.dimension_count", s.rope_dims);
    set_u32(g.get(), a + ".leading_dense_block_count", s.n_dense_lead);
    set_u32(g.get(), a + ".expert_shared_count", s.n_expert_shared);
    gguf_set_val_f32(g.get(), (a + ".expert_weights_scale").c_str(), 1.0f);
  } else {
    set_u32(g.get(), a + ".attention.key_length", s.head_dim);
    set_u32(g.get(), a + ".attention.value_length", s.head_dim);
  }
  gguf_set_val_f32(g.get(), (a + ".attention.layer_norm_rms_epsilon").c_str(), 1e-6f);
  gguf_set_val_f32(g.get(), (a + ".rope.freq_base").c_str(), s.rope_base);
  if (s.arch == "qwen35") {
    set_u32(g.get(), a + ".rope.dimension_count", s.rope_dims);
    const int32_t q = static_cast<int32_t>(s.rope_dims / 2 / 3);
    const int32_t sections[4] = {q + 1, q + 1, static_cast<int32_t>(s.rope_dims / 2) - 2 * q - 2,
                                 0};
    gguf_set_arr_data(g.get(), (a + ".rope.dimension_sections").c_str(), GGUF_TYPE_INT32, sections,
                      4);
    set_u32(g.get(), a + ".full_attention_interval", s.full_attention_interval);
    set_u32(g.get(), a + ".ssm.conv_kernel", 4);
    set_u32(g.get(), a + ".ssm.state_size", s.ssm_state);
    set_u32(g.get(), a + ".ssm.group_count", s.ssm_groups);
    set_u32(g.get(), a + ".ssm.time_step_rank", s.ssm_v_heads);
    set_u32(g.get(), a + ".ssm.inner_size", s.ssm_state * s.ssm_v_heads);
  }
  if (s.n_expert) {
    set_u32(g.get(), a + ".expert_count", s.n_expert);
    set_u32(g.get(), a + ".expert_used_count", s.n_expert_used);
    set_u32(g.get(), a + ".expert_feed_forward_length", s.n_ff_exp);
  }
  if (s.n_swa) {
    set_u32(g.get(), a + ".attention.sliding_window", s.n_swa);
    set_u32(g.get(), a + ".attention.sliding_window_pattern", s.swa_pattern);
  }
  const auto specs = tensor_specs(s, n_vocab);
  ggml_init_params cp{/*mem_size=*/ggml_tensor_overhead() * (specs.size() + 1),
                      /*mem_buffer=*/nullptr, /*no_alloc=*/true};
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(cp), &ggml_free);
  std::vector<ggml_tensor*> tensors;
  uint64_t n_params = 0;
  for (const auto& t : specs) {
    const ggml_type type = opt.f16 && !t.f32 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    ggml_tensor* x = t.ne2   ? ggml_new_tensor_3d(ctx.get(), type, t.ne0, t.ne1, t.ne2)
                     : t.ne1 ? ggml_new_tensor_2d(ctx.get(), type, t.ne0, t.ne1)
                             : ggml_new_tensor_1d(ctx.get(), GGML_TYPE_F32, t.ne0);
    ggml_set_name(x, t.name.c_str());
    gguf_add_tensor(g.get(), x);
    tensors.push_back(x);
    n_params += ggml_nelements(x);
  }

  // Unique per process: concurrent generators of one model each rename a whole file into place.
  const std::string tmp = opt.out + ".tmp." + std::to_string(::getpid());
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
  std::vector<uint8_t> meta(gguf_get_meta_size(g.get()));
  gguf_get_meta_data(g.get(), meta.data());
  bool ok = std::fwrite(meta.data(), 1, meta.size(), f.get()) == meta.size();
  const size_t align = gguf_get_alignment(g.get());
  std::vector<float> buf;
  std::vector<ggml_fp16_t> half;
  const std::vector<uint8_t> zeros(align, 0);
  for (size_t i = 0; i < specs.size() && ok; ++i) {
    buf.resize(ggml_nelements(tensors[i]));
    fill(specs[i], opt.seed, buf);
    const void* data = buf.data();
    if (tensors[i]->type == GGML_TYPE_F16) {
      half.resize(buf.size());
      ggml_fp32_to_fp16_row(buf.data(), half.data(), buf.size());
      data = half.data();
    }
    const size_t n = ggml_nbytes(tensors[i]);
    ok = std::fwrite(data, 1, n, f.get()) == n;
    const size_t pad = GGML_PAD(n, align) - n;
    ok = ok && std::fwrite(zeros.data(), 1, pad, f.get()) == pad;
  }
  ok = ok && std::fflush(f.get()) == 0;
  f.reset();
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("writing " + tmp + " failed: " + std::strerror(errno));
  }
  fs::rename(tmp, opt.out);
  return n_params;
}

}  // namespace kvstash::engine
