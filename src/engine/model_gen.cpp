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
    v.push_back(h);
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
  const std::string n = !name.empty()            ? name
                        : shape.arch == "qwen35" ? "Qwen3.5-4B"
                                                 : "Qwen-Qwen3-0.6B";
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
};

std::vector<TensorSpec> tensor_specs(const ModelShape& s, uint32_t n_vocab) {
  std::vector<TensorSpec> t;
  const int64_t E = s.n_embd, hd = s.head_dim, q = hd * s.n_head, kv = hd * s.n_head_kv;
  t.push_back({"token_embd.weight", E, n_vocab});
  t.push_back({"output_norm.weight", E, 0, TensorSpec::kOnes});
  if (!s.tied_output) t.push_back({"output.weight", E, n_vocab});
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    t.push_back({b + "attn_norm.weight", E, 0, TensorSpec::kOnes});
    const bool recurrent = s.arch == "qwen35" && (il + 1) % s.full_attention_interval != 0;
    if (s.arch == "qwen3") {
      t.push_back({b + "attn_q.weight", E, q});
      t.push_back({b + "attn_k.weight", E, kv});
      t.push_back({b + "attn_v.weight", E, kv});
      t.push_back({b + "attn_output.weight", q, E});
      t.push_back({b + "attn_q_norm.weight", hd, 0, TensorSpec::kOnes});
      t.push_back({b + "attn_k_norm.weight", hd, 0, TensorSpec::kOnes});
      t.push_back({b + "ffn_norm.weight", E, 0, TensorSpec::kOnes});
    } else if (!recurrent) {  // qwen35 attention layer: q carries a gate half
      t.push_back({b + "post_attention_norm.weight", E, 0, TensorSpec::kOnes});
      t.push_back({b + "attn_q.weight", E, q * 2});
      t.push_back({b + "attn_k.weight", E, kv});
      t.push_back({b + "attn_v.weight", E, kv});
      t.push_back({b + "attn_output.weight", q, E});
      t.push_back({b + "attn_q_norm.weight", hd, 0, TensorSpec::kOnes});
      t.push_back({b + "attn_k_norm.weight", hd, 0, TensorSpec::kOnes});
    } else {  // qwen35 gated delta net layer
      const int64_t key_dim = int64_t(s.ssm_state) * s.ssm_groups;
      const int64_t value_dim = int64_t(s.ssm_state) * s.ssm_v_heads;
      t.push_back({b + "post_attention_norm.weight", E, 0, TensorSpec::kOnes});
      t.push_back({b + "attn_qkv.weight", E, key_dim * 2 + value_dim});
      t.push_back({b + "attn_gate.weight", E, value_dim});
      t.push_back({b + "ssm_conv1d.weight", 4, key_dim * 2 + value_dim, TensorSpec::kWeight, true});
      t.push_back({b + "ssm_dt.bias", s.ssm_v_heads, 0, TensorSpec::kZero});
      t.push_back({b + "ssm_a", s.ssm_v_heads, 0, TensorSpec::kNegative});
      t.push_back({b + "ssm_beta.weight", E, s.ssm_v_heads});
      t.push_back({b + "ssm_alpha.weight", E, s.ssm_v_heads});
      t.push_back({b + "ssm_norm.weight", s.ssm_state, 0, TensorSpec::kOnes});
      t.push_back({b + "ssm_out.weight", value_dim, E});
    }
    t.push_back({b + "ffn_gate.weight", E, s.n_ff});
    t.push_back({b + "ffn_down.weight", s.n_ff, E});
    t.push_back({b + "ffn_up.weight", E, s.n_ff});
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
  const ModelShape& s = find_shape(opt.shape);
  if (opt.out.empty()) throw std::invalid_argument("mkmodel needs an output path (-o FILE.gguf)");

  gguf_init_params vp{/*no_alloc=*/true, /*ctx=*/nullptr};
  std::unique_ptr<gguf_context, void (*)(gguf_context*)> vocab(
      gguf_init_from_file(vocab_path(opt.vocab).c_str(), vp), &gguf_free);
  if (!vocab) throw std::runtime_error("cannot read vocab file " + vocab_path(opt.vocab));
  const int64_t tok_key = gguf_find_key(vocab.get(), "tokenizer.ggml.tokens");
  if (tok_key < 0) throw std::runtime_error("vocab file has no tokenizer.ggml.tokens");
  const auto n_vocab = static_cast<uint32_t>(gguf_get_arr_n(vocab.get(), tok_key));

  std::unique_ptr<gguf_context, void (*)(gguf_context*)> g(gguf_init_empty(), &gguf_free);
  gguf_set_kv(g.get(), vocab.get());  // tokenizer.* and chat template, verbatim
  write_control_token_types(g.get(), vocab_path(opt.vocab));
  if (opt.chat_template != "vocab") {
    std::ifstream tf(template_path(opt.chat_template, s));
    const std::string tmpl((std::istreambuf_iterator<char>(tf)), std::istreambuf_iterator<char>());
    if (tmpl.empty())
      throw std::runtime_error("empty chat template " + template_path(opt.chat_template, s));
    gguf_set_val_str(g.get(), "tokenizer.chat_template", tmpl.c_str());
  }
  const std::string a = s.arch;
  gguf_set_val_str(g.get(), "general.architecture", a.c_str());
  gguf_set_val_str(g.get(), "general.name", ("kvstash random " + s.name).c_str());
  gguf_set_val_u32(g.get(), "general.file_type", opt.f16 ? 1 : 0);
  set_u32(g.get(), a + ".vocab_size", n_vocab);
  set_u32(g.get(), a + ".context_length", s.n_ctx_train);
  set_u32(g.get(), a + ".embedding_length", s.n_embd);
  set_u32(g.get(), a + ".block_count", s.n_layer);
  set_u32(g.get(), a + ".feed_forward_length", s.n_ff);
  set_u32(g.get(), a + ".attention.head_count", s.n_head);
  set_u32(g.get(), a + ".attention.head_count_kv", s.n_head_kv);
  set_u32(g.get(), a + ".attention.key_length", s.head_dim);
  set_u32(g.get(), a + ".attention.value_length", s.head_dim);
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

  const auto specs = tensor_specs(s, n_vocab);
  ggml_init_params cp{/*mem_size=*/ggml_tensor_overhead() * (specs.size() + 1),
                      /*mem_buffer=*/nullptr, /*no_alloc=*/true};
  std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx(ggml_init(cp), &ggml_free);
  std::vector<ggml_tensor*> tensors;
  uint64_t n_params = 0;
  for (const auto& t : specs) {
    const ggml_type type = opt.f16 && !t.f32 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    ggml_tensor* x = t.ne1 ? ggml_new_tensor_2d(ctx.get(), type, t.ne0, t.ne1)
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
