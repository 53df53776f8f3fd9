#include "engine/session.h"

#include <llama.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "cache/batching.h"
#include "engine/device_kv.h"
#include "engine/kv_blob.h"
#include "engine/shared_context.h"

namespace kvstash::engine {

namespace {

// The sequence id written into every cell of a KV range copied out, whichever sequence it came
// from, so the stored bytes do not depend on the slot (llama.cpp ignores it on restore).
constexpr int32_t kStoredSeq = 0;

// A sliding-window model's KV range is written as its full-attention section followed by the
// window's section; a chunk keeps the first and an empty second (n_stream 1, no cells), which
// llama.cpp's append reads as "no window cells" (the window comes with the snapshot's partial).
constexpr uint32_t kNoWindow[2] = {1, 0};

}  // namespace

Session::Session(Model& model, const SessionOptions& opt)
    : Session(model, opt, std::make_shared<SharedContext>(model, opt, 1), 0) {}

Session::Session(Model& model, const SessionOptions& opt, std::shared_ptr<SharedContext> shared,
                 int seq)
    : model_(model), opt_(opt), shared_(std::move(shared)), seq_(seq) {
  if (seq < 0 || seq >= shared_->n_seq()) throw std::out_of_range("no such sequence");
  // Everything that changes the bytes of a KV state or how they were computed. (How many
  // sequences share the context does not: each has its own KV stream.)
  fp_settings_ = "arch=" + model.arch() + ";type_k=" + opt.type_k + ";type_v=" + opt.type_v +
                 ";flash_attn=" + (opt.flash_attn ? "1" : "0") +
                 ";gpu_layers=" + std::to_string(model.options().n_gpu_layers) +
                 ";chunk=" + std::to_string(opt.chunk) + ";" + llama_build();
  fp_ = combine(model.file_hash(), fp_settings_);
}

Session::~Session() {
  try {
    remove_from(0);
  } catch (...) {
  }
}

void Session::on_context(const std::function<void(llama_context*)>& fn) const {
  shared_->exclusive(fn);
}

void Session::remove_from(size_t n) {
  bool ok = true;
  on_context([&](llama_context* ctx) {
    ok = llama_memory_seq_rm(llama_get_memory(ctx), seq_, static_cast<llama_pos>(n), -1);
  });
  if (!ok) throw std::runtime_error("llama.cpp refused to trim the KV cache");
}

void Session::decode(const std::vector<Token>& toks, size_t pos, bool with_logits) {
  if (!with_logits) logits_.clear();  // unknown until a batch asks for them
  shared_->prefill(seq_, toks, static_cast<int>(pos), with_logits ? &logits_ : nullptr);
  tokens_.insert(tokens_.end(), toks.begin(), toks.end());
}

bool Session::prefill(const std::vector<Token>& prompt, const PrefillOptions& opt) {
  if (prompt.size() < tokens_.size() ||
      !std::equal(tokens_.begin(), tokens_.end(), prompt.begin())) {
    throw std::logic_error("prefill: the live state is not a prefix of the prompt");
  }
  if (prompt.size() > static_cast<size_t>(opt_.n_ctx)) {
    throw std::invalid_argument("prompt of " + std::to_string(prompt.size()) +
                                " tokens does not fit the context of " +
                                std::to_string(opt_.n_ctx));
  }
  if (prompt.size() == tokens_.size() && logits_.empty() && !tokens_.empty()) {
    // The state is complete but its logits are unknown: recompute the last token.
    trim(tokens_.size() - 1);
  }
  // The batches of every engine (cache/batching.h): restores continue bit-exactly from a break.
  const std::vector<uint32_t> boundaries(opt.boundaries.begin(), opt.boundaries.end());
  const std::vector<uint32_t> snaps(opt.snapshot_at.begin(), opt.snapshot_at.end());
  const auto total = static_cast<uint32_t>(prompt.size());
  for (const cache::Batch& b :
       cache::prefill_batches(static_cast<uint32_t>(tokens_.size()), total,
                              static_cast<uint32_t>(opt_.chunk), boundaries, snaps)) {
    // Only the prompt's last batch needs logits; the others queue on the device unwaited.
    decode(std::vector<Token>(prompt.begin() + b.begin, prompt.begin() + b.end), b.begin,
           b.end == total);
    if (opt.on_snapshot && b.snapshot) opt.on_snapshot(static_cast<int>(b.end));
    if (opt.on_progress && !opt.on_progress(static_cast<int>(b.end), static_cast<int>(total))) {
      return false;
    }
  }
  return true;
}

void Session::decode_one(Token t) {
  shared_->decode(seq_, t, static_cast<int>(tokens_.size()), &logits_);
  tokens_.push_back(t);
}

Token Session::greedy() const {
  if (logits_.empty()) throw std::logic_error("no logits to sample from");
  return static_cast<Token>(std::max_element(logits_.begin(), logits_.end()) - logits_.begin());
}

void Session::clear() {
  remove_from(0);
  tokens_.clear();
  logits_.clear();
}

void Session::fork_from(const Session& src, size_t n) {
  if (model_.resume_kind() != ResumeKind::kAnyBoundary) {
    throw std::logic_error("this model's state cannot be cut, so it cannot be forked");
  }
  if (src.shared_ != shared_ || src.seq_ == seq_ || n == 0 || n > src.tokens_.size()) {
    throw std::logic_error("fork: not another sequence of this context, or past its tokens");
  }
  shared_->fork(src.seq_, seq_, static_cast<int>(n), src.tokens_.front());
  tokens_.assign(src.tokens_.begin(), src.tokens_.begin() + static_cast<std::ptrdiff_t>(n));
  logits_.clear();
}

void Session::trim(size_t n) {
  if (n >= tokens_.size()) return;
  if (model_.resume_kind() != ResumeKind::kAnyBoundary) {
    throw std::logic_error("this model's state cannot be cut to a shorter prefix");
  }
  remove_from(n);
  tokens_.resize(n);
  logits_.clear();
}

Snapshot Session::snapshot() const {
  Snapshot s;
  s.fingerprint = fp_;
  s.tokens = tokens_;
  s.logits = logits_;
  size_t n = 0;
  on_context([&](llama_context* ctx) {
    s.state.resize(llama_state_seq_get_size(ctx, seq_));
    n = llama_state_seq_get_data(ctx, s.state.data(), s.state.size(), seq_);
  });
  if (n == 0 || n > s.state.size()) throw std::runtime_error("llama.cpp could not save the state");
  s.state.resize(n);
  return s;
}

void Session::check(const Fingerprint& fp) const {
  if (fp != fp_) {
    throw StateMismatch("saved state belongs to model/settings " + fp.hex() +
                        " but this session is " + fp_.hex() + " (" + fp_settings_ +
                        "): another model file or other KV settings; refusing to restore it");
  }
}

void Session::load_state(const std::vector<uint8_t>& state) {
  remove_from(0);
  tokens_.clear();
  logits_.clear();
  size_t n = 0;
  on_context([&](llama_context* ctx) {
    n = llama_state_seq_set_data(ctx, state.data(), state.size(), seq_);
    if (n == 0) llama_memory_seq_rm(llama_get_memory(ctx), seq_, -1, -1);
  });
  if (n == 0) {
    throw StateMismatch("llama.cpp rejected the saved state (layout does not match this context)");
  }
}

void Session::restore(const Snapshot& s) {
  check(s.fingerprint);
  if (s.tokens.size() > static_cast<size_t>(opt_.n_ctx)) {
    throw std::invalid_argument("saved state is longer than this context");
  }
  if (model_.sliding_window()) {
    // The full-attention section as stored, then the window where a prefill has it.
    const auto body = strip_seq_header(s.state);
    const size_t full = parse_kv_section(body, model_.cell_ext_size(), model_.kv_has_v()).end;
    std::vector<uint8_t> st(s.state.begin(), s.state.begin() + kSeqStateHeaderSize + full);
    const auto* no = reinterpret_cast<const uint8_t*>(kNoWindow);
    st.insert(st.end(), no, no + sizeof(kNoWindow));
    load_state(st);
    append_window(body.subspan(full));
  } else {
    load_state(s.state);
  }
  llama_pos last = -1;
  on_context(
      [&](llama_context* ctx) { last = llama_memory_seq_pos_max(llama_get_memory(ctx), seq_); });
  if (last + 1 != static_cast<llama_pos>(s.tokens.size())) {
    clear();
    throw StateMismatch("saved state holds " + std::to_string(last + 1) + " positions, expected " +
                        std::to_string(s.tokens.size()));
  }
  tokens_ = s.tokens;
  if (s.logits.size() == static_cast<size_t>(model_.n_vocab())) logits_ = s.logits;
}

Payload Session::extract_kv(int begin, int end, BufferPool& pool) {
  if (begin < 0 || end <= begin || static_cast<size_t>(end) > tokens_.size()) {
    throw std::out_of_range("extract_kv: range outside the live state");
  }
  std::shared_ptr<Bytes> buf;
  size_t n = 0;
  on_context([&](llama_context* ctx) {
    const size_t size = llama_state_seq_get_size_range(ctx, seq_, begin, end, 0);
    buf = pool.get(size);
    n = llama_state_seq_get_data_range(ctx, buf->data(), size, seq_, begin, end, 0);
  });
  if (n == 0) throw std::runtime_error("llama.cpp could not save the KV range");
  buf->shrink(n);
  const auto body = strip_seq_header(std::as_const(*buf).span());
  const KvSection sec = parse_kv_section(body, model_.cell_ext_size(), model_.kv_has_v());
  if (sec.cell_count != static_cast<uint32_t>(end - begin) || sec.first_pos(body) != begin) {
    throw std::runtime_error("KV range [" + std::to_string(begin) + "," + std::to_string(end) +
                             ") came out with " + std::to_string(sec.cell_count) + " cells");
  }
  for (uint32_t i = 0; i < sec.cell_count; ++i) {
    const size_t at = static_cast<size_t>(body.data() - buf->data()) + sec.meta_offset +
                      (i + 1) * sec.meta_cell_size - sizeof(kStoredSeq);
    std::memcpy(buf->data() + at, &kStoredSeq, sizeof(kStoredSeq));
  }
  // Keep the section only: the header is llama.cpp's, and a hybrid model's recurrent part or
  // sliding window belongs to snapshots (a window section follows as an empty one).
  buf->drop_front(static_cast<size_t>(body.data() - buf->data()));
  if (model_.sliding_window()) {
    std::memcpy(buf->data() + sec.end, kNoWindow, sizeof(kNoWindow));
    buf->shrink(sec.end + sizeof(kNoWindow));
  } else {
    buf->shrink(sec.end);
  }
  return buf;
}

std::vector<uint8_t> Session::extract_kv(int begin, int end) {
  BufferPool pool(0);
  const Payload p = extract_kv(begin, end, pool);
  return {p->span().begin(), p->span().end()};
}

std::vector<uint8_t> Session::partial_state() const {
  if (!model_.hybrid()) throw std::logic_error("partial_state: only hybrid models have one");
  std::vector<uint8_t> out;
  size_t n = 0;
  on_context([&](llama_context* ctx) {
    out.resize(llama_state_seq_get_size_ext(ctx, seq_, LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY));
    n = llama_state_seq_get_data_ext(ctx, out.data(), out.size(), seq_,
                                     LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY);
  });
  if (n == 0) throw std::runtime_error("llama.cpp could not save the recurrent state");
  const auto body = strip_seq_header({out.data(), n});
  return {body.begin(), body.end()};
}

void Session::restore_begin(int keep, int from) {
  if (keep < 0 || static_cast<size_t>(keep) > tokens_.size() || from > keep || from < 0 ||
      (from < keep && from % opt_.chunk != 0)) {
    throw std::out_of_range("restore_begin: keep " + std::to_string(keep) + " / from " +
                            std::to_string(from) + " outside the live state");
  }
  if (keep == 0) {
    clear();
  } else if (!model_.hybrid()) {
    trim(keep);
  }
  // A hybrid model's attention KV past `keep` is replaced by the first section, its recurrent
  // state by restore_end(): llama.cpp cannot cut a recurrent state to a shorter prefix.
  restore_keep_ = keep;
  restore_next_ = from;
  tokens_.resize(keep);
  logits_.clear();
}

void Session::restore_kv(std::span<const uint8_t> section) {
  if (restore_keep_ < 0) throw std::logic_error("restore_kv outside a restore");
  const KvSection sec = parse_kv_section(section, model_.cell_ext_size(), model_.kv_has_v());
  const int first = sec.first_pos(section);
  const size_t size = sec.end + (model_.sliding_window() ? sizeof(kNoWindow) : 0);
  if (size != section.size()) throw StateMismatch("KV section has trailing bytes");
  append_section(first, sec.cell_count, [&](llama_context* ctx) {
    return llama_state_seq_set_data_ext(
        ctx, section.data(), section.size(), seq_,
        LLAMA_STATE_SEQ_FLAGS_KV_APPEND | LLAMA_STATE_SEQ_FLAGS_KV_NO_WAIT);
  });
}

void Session::restore_kv(const DeviceCopy& copy) {
  if (restore_keep_ < 0) throw std::logic_error("restore_kv outside a restore");
  const auto* c = dynamic_cast<const DeviceKv::Copy*>(&copy);
  if (!c || !c->owner) throw std::invalid_argument("restore_kv: not a copy of this engine's");
  append_section(c->first_pos, c->cells, [&](llama_context* ctx) {
    return llama_state_seq_set_data_rows(
        ctx, c->meta.data(), c->meta.size(), c->owner->buffer(), c->owner->slot_offset(c->slot),
        c->rows, seq_, LLAMA_STATE_SEQ_FLAGS_KV_APPEND | LLAMA_STATE_SEQ_FLAGS_KV_NO_WAIT);
  });
}

void Session::append_section(int first, uint32_t cells,
                             const std::function<size_t(llama_context*)>& set) {
  if (first != restore_next_) {
    throw StateMismatch("KV section of " + std::to_string(cells) + " cells from " +
                        std::to_string(first) + " does not continue the state at " +
                        std::to_string(restore_next_));
  }
  size_t n = 0;
  on_context([&](llama_context* ctx) { n = set(ctx); });
  uploads_queued_ = true;  // even a rejected section may have queued some
  if (n == 0) {
    throw StateMismatch("llama.cpp rejected a KV section (layout does not match this context)");
  }
  restore_next_ = first + static_cast<int>(cells);
}

void Session::restore_sync() {
  if (!uploads_queued_) return;
  // The uploads run on the stream the context computes on, so later batches see their cells
  // regardless; the wait is for the caller's buffers.
  on_context([](llama_context* ctx) { llama_synchronize(ctx); });
  uploads_queued_ = false;
}

void Session::restore_end(std::span<const uint8_t> partial, const std::vector<Token>& tokens,
                          const std::vector<float>& logits) {
  if (restore_keep_ < 0) throw std::logic_error("restore_end outside a restore");
  restore_keep_ = -1;
  restore_sync();
  if (model_.hybrid() == partial.empty()) {
    throw std::invalid_argument(model_.hybrid()
                                    ? "a hybrid model needs the recurrent state to resume"
                                    : "this model has no recurrent state to restore");
  }
  if (!model_.hybrid() && model_.resume_kind() != ResumeKind::kAnyBoundary) {
    throw std::invalid_argument("this model can only resume from whole snapshots");
  }
  if (static_cast<size_t>(restore_next_) != tokens.size() || tokens.size() < tokens_.size() ||
      !std::equal(tokens_.begin(), tokens_.end(), tokens.begin())) {
    throw StateMismatch("restored KV holds " + std::to_string(restore_next_) +
                        " positions, expected " + std::to_string(tokens.size()));
  }
  if (model_.sliding_window()) {
    append_window(partial);
  } else if (model_.hybrid()) {
    const auto st = with_seq_header(partial);
    size_t n = 0;
    on_context([&](llama_context* ctx) {
      n = llama_state_seq_set_data_ext(ctx, st.data(), st.size(), seq_,
                                       LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY);
    });
    if (n == 0) {
      throw StateMismatch("llama.cpp rejected the recurrent state");
    }
  }
  // Every memory of the sequence (attention, recurrent) ends where the tokens do.
  llama_pos last = -1;
  on_context(
      [&](llama_context* ctx) { last = llama_memory_seq_pos_max(llama_get_memory(ctx), seq_); });
  if (last + 1 != restore_next_) {
    throw StateMismatch("restored state ends at position " + std::to_string(last + 1) +
                        ", expected " + std::to_string(tokens.size()));
  }
  tokens_ = tokens;
  if (logits.size() == static_cast<size_t>(model_.n_vocab())) logits_ = logits;
}

void Session::append_window(std::span<const uint8_t> window) {
  const size_t ext = model_.cell_ext_size();
  const KvSection w = parse_kv_section(window, ext, model_.kv_has_v());
  if (w.end != window.size()) throw StateMismatch("the sliding window's state is malformed");
  if (w.cell_count == 0) return;
  // Each piece goes in as an append of an empty full-attention section and a window section.
  auto append = [&](std::span<const uint8_t> section) {
    std::vector<uint8_t> st(sizeof(kNoWindow) + section.size());
    std::memcpy(st.data(), kNoWindow, sizeof(kNoWindow));
    std::memcpy(st.data() + sizeof(kNoWindow), section.data(), section.size());
    size_t n = 0;
    on_context([&](llama_context* ctx) {
      n = llama_state_seq_set_data_ext(ctx, st.data(), st.size(), seq_,
                                       LLAMA_STATE_SEQ_FLAGS_KV_APPEND);
    });
    if (n == 0) throw StateMismatch("llama.cpp rejected the sliding window's state");
  };
  // Where the window cache's cells end now (llama.cpp reports the window cache's end for these
  // models): masked fillers from there to the window's first position, in pieces of a chunk.
  llama_pos live = -1;
  on_context(
      [&](llama_context* ctx) { live = llama_memory_seq_pos_max(llama_get_memory(ctx), seq_); });
  const int32_t first = w.first_pos(window);
  for (int32_t p = live + 1; p < first; p += opt_.chunk) {
    append(filler_section(w, p, static_cast<uint32_t>(std::min(opt_.chunk, first - p)), ext));
  }
  append(window);
}

}  // namespace kvstash::engine
