// Slots: the server's concurrent request executors, sharing one prefix cache.
//
// Each slot owns an engine session and its live state. The sessions are sequences of one llama.cpp
// context (engine/shared_context.h), so the decode steps of all generating slots run as one batch
// while each prefill batch is computed alone, exactly as a lone prefill (that is what keeps
// restores bit-exact); a long prefill is interleaved with the others' decode steps batch by
// batch. A request goes to the idle slot whose live state of its own cache_salt shares the
// longest prefix with it (else the least recently used one: cache::choose_slot,
// cache/slot_choice.h, the rule replay shares) and waits when all are busy. Where that slot's
// live state would be cut while an idle slot holds a state worth less, the request goes there
// and forks the shared prefix out of the first slot (cache::choose_slot_or_fork), which keeps its
// live state; the source slot takes no work until the copy is made. Each slot runs its
// request in a thread of its own: restores, stores and evictions of one slot go on while the others
// decode.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/prefix_cache.h"
#include "cache/scope_policy.h"
#include "cache/slot_choice.h"
#include "engine/cached_session.h"
#include "engine/sampler.h"
#include "engine/shared_context.h"
#include "server/reply_text.h"

namespace kvstash::server {

// How a job ended.
enum class JobEnd {
  kEos,         // the model ended its turn
  kStopString,  // a stop string (Job::stop) matched: Result::stop_index says which
  kLength,      // the token limit or the context's end
  kCancelled,   // the client went away, or the server is stopping
  kError,
};
// "stop", "length", "cancelled", "error": the status page's and request log's words.
const char* job_end_name(JobEnd e);

struct Job {
  // kRequest: a client's. kSettle: brings one slot's live state to a prompt (max_tokens 0), the
  // way the client's next turn will render the reply it just got (HttpServer::settle_turn); it
  // runs only on `only_slot`, ahead of later requests, and is not counted as a request.
  enum class Kind { kRequest, kSettle };
  Kind kind = Kind::kRequest;
  int only_slot = -1;
  std::vector<engine::Token> prompt;
  engine::PromptInfo info;            // boundaries, anchor (policy is filled by the pool)
  std::optional<cache::Scope> scope;  // per-request override
  int max_tokens = -1;
  engine::SamplingParams sampling;
  // Built from `sampling` by whoever checked its grammar before submitting (else by the slot),
  // so a grammar is parsed once.
  std::unique_ptr<engine::Sampler> sampler;
  std::vector<std::string> stop;
  std::atomic<bool> cancelled{false};

  // Called from the slot thread.
  std::function<void(int done, int total, int cached)> on_progress;
  std::function<void(const std::string& piece)> on_text;
  // Called for each generated token when sampling.n_probs > 0 or `logprobs` is set.
  bool logprobs = false;
  std::function<void(engine::Token t, float logprob, const std::vector<engine::TokenProb>& top)>
      on_logprob;
  struct Result {
    uint32_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
    JobEnd end = JobEnd::kLength;
    int stop_index = -1;  // kStopString: the index in Job::stop of the string that matched
    std::string error;
    int error_status = 500;  // the HTTP status of an error (503: shutting down)
    double prompt_ms = 0, generation_ms = 0;
    double restore_ms = 0;  // part of prompt_ms spent restoring from the cache
    // What served cached_tokens: live, fork (a prefix copied from another slot's live state),
    // ram, disk, remote ("": none).
    std::string cache_source;
    int slot = -1;
    std::vector<cache::StoreOutcome> stores;  // the stores its prefill attempted
  };
  std::function<void(const Result&)> on_done;
  // Called from the slot thread when a slot takes the job (the status page's current request).
  std::function<void(int slot)> on_start;
};

struct SlotInfo {
  int id;
  bool busy;
  size_t live_tokens;
  uint64_t requests;
};

struct PoolCounters {
  std::atomic<uint64_t> requests{0}, prompt_tokens{0}, cached_tokens{0}, prefilled_tokens{0},
      generated_tokens{0}, cancelled{0};
  std::atomic<uint64_t> forks{0};      // requests that started from a forked prefix
  std::atomic<uint64_t> evictions{0};  // live states cut or dropped to serve another request
};

class SlotPool {
 public:
  SlotPool(engine::Model& model, const engine::SessionOptions& session, int n_slots,
           cache::PrefixCache* cache, const cache::StoreConfig& store, cache::Scope scope);
  ~SlotPool();

  // Queues the job; a client's job when `max_queue` others wait already, or any job while
  // stopping, ends at once with a 503 error (on_done, on this thread).
  void submit(std::shared_ptr<Job> job);
  void set_max_queue(size_t n) { max_queue_ = n; }
  std::vector<SlotInfo> slots();
  const cache::Scope& default_scope() const { return scope_; }
  PoolCounters& counters() { return counters_; }
  engine::SharedContext::Stats decode_stats() { return context_->stats(); }
  int busy() const { return busy_.load(); }
  // Jobs a slot runs or that wait for one (a drain waits for none).
  size_t pending();
  // Refuses new jobs, answers the queued ones (503) and cancels the running ones; returns at once,
  // so that the HTTP threads waiting on those jobs finish.
  void begin_shutdown();
  // begin_shutdown(), then waits for the slots to store every live state (reason=shutdown) and
  // joins their threads.
  void shutdown();

 private:
  struct Slot;
  void run(Slot& s);
  void execute(Slot& s, Job& job);
  engine::RequestPolicy policy_for(Job& job);
  // With the pool mutex held, as s takes a job by `choice` (`was`: s's state then): counts a
  // live state cut, pins the fork's source.
  void take(Slot& s, const cache::SlotChoice& choice, const cache::SlotState& was);
  // Frees the slot s forks from (idempotent).
  void release_fork(Slot& s);

  engine::Model& model_;
  std::shared_ptr<engine::SharedContext> context_;  // every slot's sequence
  cache::PrefixCache* cache_;
  cache::StoreConfig store_;
  cache::Scope scope_;
  cache::ForkRule fork_rule_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  cache::PromptHistory history_;  // recent prompts for the auto scope, per salt
  bool stopping_ = false;
  size_t max_queue_ = SIZE_MAX;
  std::atomic<int> busy_{0};
  PoolCounters counters_;
};

}  // namespace kvstash::server
