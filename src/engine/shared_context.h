// One llama.cpp context shared by the sessions of a server's slots, one sequence per slot, and the
// scheduler of the work they put on it.
//
// Exactness: every sequence has its own KV stream (kv_unified = false), so a sequence's cells lie
// at the same cells and in the same order as in a context of its own, and a prefill batch holds
// one sequence's tokens only: it computes exactly what a lone prefill computes (the engine tests
// compare both, bit for bit). A single stream shared by all slots would not do: another slot's
// cells, interleaved with this one's, change the order in which attention sums, and so its last
// bits. Decode steps are batched across sequences: decoded tokens are never stored (a prefill
// computes them differently anyway), so batching them costs no exactness.
//
// Scheduling. llama.cpp contexts are not thread-safe; each slot thread runs its own request, and
// every call on the context goes through this class:
//  - decode(): a slot's next token joins the pending decode step. The first slot to arrive leads:
//    it waits until every slot that is decoding (Decoding, below) has its token in, or for a
//    window measured from the last steps, then runs one llama_decode for all of them and hands
//    each its logits.
//  - exclusive(): any other work (a prefill batch, a restore section, a KV copy out) runs alone.
//    Decode steps and exclusive work alternate while both wait: a prefill is cut into batches by
//    the session, so a long prefill holds the other streams up by one batch at a time, and
//    decoding streams never starve a prefill (or a new stream's start) either. Exclusive work
//    goes first come, first served.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "engine/model.h"

struct llama_context;

namespace kvstash::engine {

struct SessionOptions;

class SharedContext {
 public:
  // `n_seq` sequences (slots), each with room for opt.n_ctx tokens (n_seq 1: a lone session).
  SharedContext(Model& model, const SessionOptions& opt, int n_seq);
  ~SharedContext();
  SharedContext(const SharedContext&) = delete;
  SharedContext& operator=(const SharedContext&) = delete;

  int n_seq() const { return n_seq_; }

  struct Stats {
    uint64_t steps = 0;      // decode steps run
    uint64_t tokens = 0;     // tokens they decoded (tokens / steps: the mean batch)
    uint64_t exclusive = 0;  // pieces of exclusive work (prefill batches, restores, copies)
    uint64_t max_batch = 0;  // the largest step
  };
  Stats stats();

  // Runs `fn` with the context to itself.
  void exclusive(const std::function<void(llama_context*)>& fn);
  // A prefill batch: `toks` of sequence `seq` from `pos` on, alone (what keeps it exact), as
  // exclusive work; the logits after the last token go to *logits. With no `logits` the batch
  // asks for none and returns without waiting for the device, which computes it while the host
  // builds the next batch. The KV cells are the same bits either way: output rows are selected
  // after the last layer's attention.
  void prefill(int seq, std::span<const Token> toks, int pos, std::vector<float>* logits);
  // Decodes token `t` at `pos` of sequence `seq` (batched with the other decoding sequences) and
  // stores the logits after it in *logits.
  void decode(int seq, Token t, int pos, std::vector<float>* logits);
  // Makes sequence `dst` hold the first `n` cells of sequence `src` (which must hold more than
  // n - 1 positions, position-ordered from cell 0): a copy of src's whole KV stream, cut to n.
  // The cells then lie where src's lie, so continuing dst computes what continuing src from n
  // would. As exclusive work; done when it returns. Attention KV only (llama.cpp copies whole
  // streams; a recurrent state cannot be cut).
  void fork(int src, int dst, int n, Token filler);

  // Marks a slot as decoding while it lives: a decode step waits for the tokens of these slots.
  class Decoding {
   public:
    explicit Decoding(SharedContext& c);
    ~Decoding();
    Decoding(const Decoding&) = delete;
    Decoding& operator=(const Decoding&) = delete;

   private:
    SharedContext& c_;
  };

 private:
  struct Step {
    int seq;
    Token token;
    int pos;
    std::vector<float>* logits;
    bool done = false;
    std::exception_ptr error;
  };
  void run_step(std::vector<Step*>& steps);

  Model& model_;
  llama_context* ctx_ = nullptr;
  int n_seq_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;            // someone runs on the context
  bool last_exclusive_ = false;  // the last run was exclusive work: a decode step goes next
  int decoding_ = 0;             // slots inside a Decoding scope
  // Callers of exclusive() take tickets; exclusive_next_ - exclusive_turn_ of them are waiting.
  uint64_t exclusive_next_ = 0;             // the next ticket handed out
  uint64_t exclusive_turn_ = 0;             // the ticket whose turn is next
  std::chrono::microseconds last_step_{0};  // how long the last decode step took
  std::chrono::microseconds comeback_{0};   // how long slots take to come back after a step
  std::chrono::steady_clock::time_point last_end_{};  // when the last step ended
  std::vector<uint64_t> seq_step_;  // per sequence: the last step it was in (1-based)
  std::vector<Step*> pending_;      // decode tokens waiting for the next step
  Stats stats_;
};

}  // namespace kvstash::engine
