#include "engine/shared_context.h"

#include <llama.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "engine/session.h"

namespace kvstash::engine {

namespace {

// How long the slot leading a decode step waits for the tokens of the other decoding slots: as
// long as the last step took, or twice as long as slots take to come back after a step (sampling
// and streaming a piece; slow in a sanitizer build or on a busy machine), within bounds. Waiting
// less splits the streams into steps of one token, each costing nearly what a batched step costs.
constexpr auto kMinGather = std::chrono::milliseconds(5);
constexpr auto kMaxGather = std::chrono::milliseconds(250);

struct BatchToken {
  Token token;
  int pos;
  int seq;
  bool logits;
};

// One llama_decode of `toks`; a failure says `where` it happened.
void decode_tokens(llama_context* ctx, const std::vector<BatchToken>& toks,
                   const std::string& where) {
  const int n = static_cast<int>(toks.size());
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    b.token[i] = toks[i].token;
    b.pos[i] = toks[i].pos;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = toks[i].seq;
    b.logits[i] = toks[i].logits;
  }
  b.n_tokens = n;
  const int rc = llama_decode(ctx, b);
  llama_batch_free(b);
  if (rc != 0) {
    throw std::runtime_error("llama_decode failed (rc=" + std::to_string(rc) + ") " + where +
                             (rc == 1 ? ": the context is full" : ""));
  }
}

ggml_type parse_type(const std::string& s) {
  static const std::pair<const char*, ggml_type> types[] = {
      {"f32", GGML_TYPE_F32},   {"f16", GGML_TYPE_F16},   {"bf16", GGML_TYPE_BF16},
      {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1},
      {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1}, {"iq4_nl", GGML_TYPE_IQ4_NL}};
  for (const auto& [name, t] : types) {
    if (s == name) return t;
  }
  throw std::invalid_argument("unknown KV cache type '" + s +
                              "' (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)");
}

}  // namespace

SharedContext::SharedContext(Model& model, const SessionOptions& opt, int n_seq)
    : model_(model), n_seq_(n_seq), seq_step_(static_cast<size_t>(std::max(n_seq, 1)), 0) {
  if (opt.chunk <= 0 || opt.n_ctx <= 0) throw std::invalid_argument("chunk and n_ctx must be > 0");
  if (n_seq < 1) throw std::invalid_argument("a context needs at least one sequence");
  auto cp = llama_context_default_params();
  // One KV stream per sequence, each of n_ctx cells (llama.cpp divides n_ctx among the streams).
  cp.n_ctx = static_cast<uint32_t>(opt.n_ctx) * static_cast<uint32_t>(n_seq);
  cp.n_batch = std::max(opt.chunk, n_seq);
  cp.n_ubatch = cp.n_batch;
  cp.n_seq_max = static_cast<uint32_t>(n_seq);
  cp.kv_unified = false;
  const int threads =
      opt.n_threads > 0 ? opt.n_threads : static_cast<int>(std::thread::hardware_concurrency());
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.type_k = parse_type(opt.type_k);
  cp.type_v = parse_type(opt.type_v);
  cp.flash_attn_type =
      opt.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  ctx_ = llama_init_from_model(model.get(), cp);
  if (!ctx_) {
    throw std::runtime_error("cannot create a llama.cpp context (n_ctx=" +
                             std::to_string(opt.n_ctx) + " x " + std::to_string(n_seq) +
                             " sequences, type_k=" + opt.type_k + ", type_v=" + opt.type_v + ")");
  }
}

SharedContext::~SharedContext() { llama_free(ctx_); }

void SharedContext::exclusive(const std::function<void(llama_context*)>& fn) {
  std::unique_lock lock(mu_);
  // Between two pieces of exclusive work (prefill batches), a waiting decode step goes first.
  // Exclusive work goes in arrival order: new streams start in the order their slots took them
  // (so the decoding slots tend to be consecutive sequences, which one ubatch can hold), and two
  // long prefills take turns batch by batch.
  const uint64_t ticket = exclusive_next_++;
  cv_.wait(lock, [&] {
    return !busy_ && ticket == exclusive_turn_ && !(last_exclusive_ && !pending_.empty());
  });
  ++exclusive_turn_;
  busy_ = true;
  lock.unlock();
  std::exception_ptr error;
  try {
    fn(ctx_);
  } catch (...) {
    error = std::current_exception();
  }
  lock.lock();
  busy_ = false;
  last_exclusive_ = true;
  ++stats_.exclusive;
  cv_.notify_all();
  lock.unlock();
  if (error) std::rethrow_exception(error);
}

void SharedContext::decode(int seq, Token t, int pos, std::vector<float>* logits) {
  Step me{seq, t, pos, logits, false, nullptr};
  std::unique_lock lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (stats_.steps > 0 && seq_step_[static_cast<size_t>(seq)] == stats_.steps) {
    // This slot was in the last step: how long slots take to come back (sampling, streaming).
    const auto gap = std::chrono::duration_cast<std::chrono::microseconds>(now - last_end_);
    comeback_ = (comeback_ * 7 + gap) / 8;
  }
  pending_.push_back(&me);
  cv_.notify_all();
  const auto deadline = now + std::clamp<std::chrono::microseconds>(
                                  std::max(last_step_, 2 * comeback_), kMinGather, kMaxGather);
  for (;;) {
    if (me.done) break;
    // The first of the pending steps leads; it goes once every decoding slot is in (or the
    // window is over) and nobody else is on the context.
    const bool leader = !pending_.empty() && pending_.front() == &me;
    const bool gathered = static_cast<int>(pending_.size()) >= decoding_ ||
                          std::chrono::steady_clock::now() >= deadline;
    // Between two decode steps, waiting exclusive work (the next prefill batch) goes first.
    const bool turn = !busy_ && (last_exclusive_ || exclusive_next_ == exclusive_turn_);
    if (leader && turn && gathered) {
      std::vector<Step*> steps;
      steps.swap(pending_);
      busy_ = true;
      lock.unlock();
      const auto t0 = std::chrono::steady_clock::now();
      run_step(steps);
      const auto took = std::chrono::steady_clock::now() - t0;
      lock.lock();
      last_step_ = std::chrono::duration_cast<std::chrono::microseconds>(took);
      busy_ = false;
      last_exclusive_ = false;
      ++stats_.steps;
      stats_.tokens += steps.size();
      stats_.max_batch = std::max<uint64_t>(stats_.max_batch, steps.size());
      last_end_ = std::chrono::steady_clock::now();
      for (Step* s : steps) {
        seq_step_[static_cast<size_t>(s->seq)] = stats_.steps;
        s->done = true;
      }
      cv_.notify_all();
      break;
    }
    if (leader && turn) {
      cv_.wait_until(lock, deadline);
    } else {
      cv_.wait(lock);
    }
  }
  lock.unlock();
  if (me.error) std::rethrow_exception(me.error);
}

SharedContext::Stats SharedContext::stats() {
  std::lock_guard lock(mu_);
  return stats_;
}

void SharedContext::prefill(int seq, std::span<const Token> toks, int pos,
                            std::vector<float>* logits) {
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < toks.size(); ++i) {
    batch.push_back({toks[i], pos + static_cast<int>(i), seq, logits && i + 1 == toks.size()});
  }
  exclusive([&](llama_context* ctx) {
    decode_tokens(ctx, batch, "at position " + std::to_string(pos));
    if (!logits) return;
    const float* l = llama_get_logits_ith(ctx, -1);
    logits->assign(l, l + model_.n_vocab());
  });
}

void SharedContext::fork(int src, int dst, int n, Token filler) {
  if (src == dst || src < 0 || dst < 0 || src >= n_seq_ || dst >= n_seq_ || n <= 0) {
    throw std::logic_error("fork: bad sequences or length");
  }
  exclusive([&](llama_context* ctx) {
    llama_memory_t mem = llama_get_memory(ctx);
    llama_memory_seq_rm(mem, dst, -1, -1);
    // Across streams llama.cpp copies only whole streams: it copies the cells' metadata now and
    // queues the buffer copy for the memory update at the start of the next llama_decode.
    llama_memory_seq_cp(mem, src, dst, -1, -1);
    if (!llama_memory_seq_rm(mem, dst, n, -1))
      throw std::runtime_error("fork: cannot cut the copy");
    // That update runs here, with one token decoded at n and dropped: no later work (a restore
    // writing src's cells, a read of dst's) may run between the queued copy and the copy.
    decode_tokens(ctx, {{filler, n, dst, false}}, "at position " + std::to_string(n) + " (fork)");
    if (!llama_memory_seq_rm(mem, dst, n, -1))
      throw std::runtime_error("fork: cannot cut the copy");
  });
}

void SharedContext::run_step(std::vector<Step*>& steps) {
  // With one KV stream per sequence, llama.cpp puts into one ubatch only sequences whose ids
  // follow each other in the batch (0, 1, 2...): in arrival order, a step of four would run as up
  // to four ubatches of one token, each costing nearly a whole step.
  std::sort(steps.begin(), steps.end(),
            [](const Step* a, const Step* b) { return a->seq < b->seq; });
  std::vector<BatchToken> batch;
  for (const Step* s : steps) batch.push_back({s->token, s->pos, s->seq, true});
  try {
    decode_tokens(ctx_, batch,
                  "in a decode step of " + std::to_string(steps.size()) + " sequences");
  } catch (...) {
    const auto error = std::current_exception();
    for (Step* s : steps) s->error = error;
    return;
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const float* l = llama_get_logits_ith(ctx_, static_cast<int32_t>(i));
    steps[i]->logits->assign(l, l + model_.n_vocab());
  }
}

SharedContext::Decoding::Decoding(SharedContext& c) : c_(c) {
  std::lock_guard lock(c_.mu_);
  ++c_.decoding_;
}

SharedContext::Decoding::~Decoding() {
  std::lock_guard lock(c_.mu_);
  --c_.decoding_;
  c_.cv_.notify_all();
}

}  // namespace kvstash::engine
