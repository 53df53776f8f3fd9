#include "server/slot_pool.h"

#include <algorithm>
#include <chrono>

#include "cache/slot_choice.h"
#include "util/log.h"
#include "util/timing.h"

namespace kvstash::server {

const char* job_end_name(JobEnd e) {
  switch (e) {
    case JobEnd::kEos:
    case JobEnd::kStopString:
      return "stop";
    case JobEnd::kLength:
      return "length";
    case JobEnd::kCancelled:
      return "cancelled";
    case JobEnd::kError:
      return "error";
  }
  return "error";
}

namespace {
constexpr size_t kHistory = 64;  // recent prompts kept per salt for auto:N (N <= kHistory is exact)
constexpr size_t kHistorySalts = 16;  // salts whose recent prompts are kept
}  // namespace

struct SlotPool::Slot {
  int id;
  std::unique_ptr<engine::Session> session;
  std::unique_ptr<engine::CachedSession> cached;
  std::shared_ptr<Job> job;         // assigned work, guarded by the pool mutex
  std::vector<engine::Token> live;  // copy of the live tokens for slot selection
  size_t computed = 0;              // how many of them prefill computed (the rest were decoded)
  std::string live_salt;            // the cache_salt they belong to
  uint64_t last_used = 0, requests = 0;
  bool pinned = false;        // a fork reads this slot's live state: it takes no job
  Slot* fork_from = nullptr;  // the slot this one's job forks from (pinned until the copy)
  std::thread thread;
};

SlotPool::SlotPool(engine::Model& model, const engine::SessionOptions& session, int n_slots,
                   cache::PrefixCache* cache, const cache::StoreConfig& store, cache::Scope scope)
    : model_(model),
      cache_(cache),
      store_(store),
      scope_(scope),
      history_(kHistory, kHistorySalts) {
  if (n_slots < 1) throw std::invalid_argument("--parallel must be at least 1");
  context_ = std::make_shared<engine::SharedContext>(model, session, n_slots);
  // A fork is worth a prefill batch at least; only attention KV can be cut after the copy.
  fork_rule_ = {n_slots > 1 && model.resume_kind() == engine::ResumeKind::kAnyBoundary,
                static_cast<size_t>(session.chunk)};
  for (int i = 0; i < n_slots; ++i) {
    auto s = std::make_unique<Slot>();
    s->id = i;
    s->session = std::make_unique<engine::Session>(model, session, context_, i);
    s->cached = std::make_unique<engine::CachedSession>(*s->session, cache, store);
    slots_.push_back(std::move(s));
  }
  for (auto& s : slots_) s->thread = std::thread([this, p = s.get()] { run(*p); });
}

SlotPool::~SlotPool() { shutdown(); }

namespace {
Job::Result refused(std::string why) {
  Job::Result r;
  r.end = JobEnd::kError;
  r.error = std::move(why);
  r.error_status = 503;
  return r;
}
}  // namespace

void SlotPool::submit(std::shared_ptr<Job> job) {
  std::lock_guard lock(mu_);
  if (stopping_) return job->on_done(refused("the server is shutting down"));
  if (job->kind == Job::Kind::kRequest) {
    const auto waiting = std::count_if(
        queue_.begin(), queue_.end(), [](const auto& j) { return j->kind == Job::Kind::kRequest; });
    if (static_cast<size_t>(waiting) >= max_queue_) {
      return job->on_done(refused("the server is busy: " + std::to_string(waiting) +
                                  " requests wait for a slot (--max-queue); retry later"));
    }
  }
  queue_.push_back(std::move(job));
  cv_.notify_all();
}

void SlotPool::run(Slot& s) {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      // A slot takes the first queued job for which it is the best idle slot.
      cv_.wait(lock, [&] {
        if (stopping_) return !s.pinned;  // a fork still reads this slot's live state
        std::vector<cache::SlotState> states(slots_.size());
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
          if ((*it)->only_slot >= 0) {  // for one slot only: others pass it by
            if ((*it)->only_slot != s.id || s.pinned) continue;
            job = *it;
            queue_.erase(it);
            s.job = job;
            return true;
          }
          for (size_t i = 0; i < slots_.size(); ++i) {
            const Slot& o = *slots_[i];
            const Job& j = **it;
            const size_t shared =
                o.job ? 0 : cache::reusable_prefix(o.live, o.live_salt, j.prompt, j.info.salt);
            states[i] = {!o.job && !o.pinned, shared, o.last_used, o.computed};
          }
          const auto choice = cache::choose_slot_or_fork(states, fork_rule_);
          if (choice && slots_[choice->slot].get() == &s) {
            job = *it;
            queue_.erase(it);
            s.job = job;
            take(s, *choice, states[choice->slot]);
            return true;
          }
          if (choice) break;  // another idle slot is better for the head of the queue
        }
        return false;
      });
      if (!job) break;  // stopping
      // The others passed over this job; the next one in the queue may be for one of them, and
      // nothing else would wake them before a request ends.
      cv_.notify_all();
    }
    ++busy_;
    execute(s, *job);
    --busy_;
    std::lock_guard lock(mu_);
    s.job.reset();
    s.live = s.session->tokens();
    s.computed = std::min(s.live.size(), job->prompt.size());
    s.live_salt = job->info.salt;
    if (job->kind == Job::Kind::kRequest) ++s.requests;  // a settle is not a request
    s.last_used = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
    cv_.notify_all();
  }
  // Graceful exit: the live state may be the only copy of its prefix.
  try {
    s.cached->shutdown();
  } catch (const std::exception& e) {
    log::error("slot " + std::to_string(s.id) + ": shutdown store failed: " + e.what());
  }
}

engine::RequestPolicy SlotPool::policy_for(Job& job) {
  const cache::Scope scope = job.scope.value_or(scope_);
  std::vector<std::vector<engine::Token>> hist;
  if (scope.kind == cache::Scope::Kind::kFixed || scope.kind == cache::Scope::Kind::kAuto) {
    std::lock_guard lock(mu_);
    hist = history_.recent(job.info.salt);
  }
  std::string decision;
  const auto p = cache::policy_for_scope(scope, job.prompt, job.info.boundaries, hist,
                                         store_.min_tokens, &decision);
  if (!decision.empty()) log::info(decision);
  std::lock_guard lock(mu_);
  history_.add(job.info.salt, job.prompt);
  return p;
}

void SlotPool::take(Slot& s, const cache::SlotChoice& choice, const cache::SlotState& was) {
  if (was.live_tokens > 0 && was.shared_prefix < was.live_tokens) ++counters_.evictions;
  if (!choice.fork_from) return;
  s.fork_from = slots_[*choice.fork_from].get();
  s.fork_from->pinned = true;
  log::info("slot " + std::to_string(s.id) + " forks up to " + std::to_string(choice.fork_tokens) +
            " tokens from slot " + std::to_string(s.fork_from->id));
}

void SlotPool::release_fork(Slot& s) {
  std::lock_guard lock(mu_);
  if (!s.fork_from) return;
  s.fork_from->pinned = false;
  s.fork_from = nullptr;
  cv_.notify_all();
}

void SlotPool::execute(Slot& s, Job& job) {
  struct Release {
    SlotPool& pool;
    Slot& s;
    ~Release() { pool.release_fork(s); }
  } release{*this, s};
  cache::ForkSource fork;
  if (s.fork_from) {  // set under the mutex by this thread; the source is pinned
    fork.from = &s.fork_from->cached->flow();
    fork.done = [this, &s] { release_fork(s); };
  }
  Job::Result r;
  r.slot = s.id;
  r.prompt_tokens = static_cast<uint32_t>(job.prompt.size());
  if (job.on_start) job.on_start(s.id);
  const bool request = job.kind == Job::Kind::kRequest;
  if (job.cancelled) {  // the client left while it waited: no restore, no store for nobody
    r.end = JobEnd::kCancelled;
    ++counters_.cancelled;
    log::info("slot " + std::to_string(s.id) + " request cancelled before it started");
    job.on_done(r);
    return;
  }
  if (request) {
    ++counters_.requests;
    counters_.prompt_tokens += job.prompt.size();
  }
  try {
    job.info.policy = policy_for(job);
    const auto t0 = Clock::now();
    int last_logged = 0;
    auto on_progress = [&](int done, int total, int cached) {
      if (job.on_progress) job.on_progress(done, total, cached);
      if (done - last_logged >= 2048 || done == total) {
        log::info("slot " + std::to_string(s.id) + " prefill " + std::to_string(done) + "/" +
                  std::to_string(total) + " (" + std::to_string(done * 100 / std::max(total, 1)) +
                  "%)");
        last_logged = done;
      }
      return !job.cancelled.load();
    };
    const auto rep = s.cached->prefill(job.prompt, job.info, on_progress, &fork);
    if (rep.forked_tokens > 0) ++counters_.forks;
    r.cached_tokens = rep.cached_tokens;
    r.prompt_ms = ms_since(t0);
    r.restore_ms = rep.restore_ms;
    r.stores = rep.stores;
    if (rep.cached_tokens > 0) {
      r.cache_source =
          rep.from_live && rep.forked_tokens > 0 ? "fork" : cache::source_name(rep.source);
    }
    if (request) {
      counters_.cached_tokens += rep.cached_tokens;
      counters_.prefilled_tokens += job.prompt.size() - rep.cached_tokens;
    } else {
      log::info("slot " + std::to_string(s.id) + " settled the turn as the client sends it back: " +
                std::to_string(rep.cached_tokens) + " tokens kept, " +
                std::to_string(job.prompt.size() - rep.cached_tokens) + " prefilled");
    }
    if (job.max_tokens == 0 && !rep.cancelled) {
      r.end = JobEnd::kLength;
      job.on_done(r);
      return;
    }
    if (rep.cancelled) {
      r.end = JobEnd::kCancelled;
      ++counters_.cancelled;
      log::info("slot " + std::to_string(s.id) + " request cancelled during prefill at " +
                std::to_string(s.session->tokens().size()) + " tokens");
      job.on_done(r);
      return;
    }

    // Decode.
    const auto tg = Clock::now();
    if (!job.sampler) {
      job.sampler =
          std::make_unique<engine::Sampler>(model_, job.sampling, s.session->options().n_ctx);
    }
    engine::Sampler& sampler = *job.sampler;
    const int room = s.session->options().n_ctx - static_cast<int>(s.session->tokens().size());
    const int limit = job.max_tokens < 0 ? room : std::min(job.max_tokens, room);
    TextCutter cutter(job.stop);
    r.end = JobEnd::kLength;
    const engine::SharedContext::Decoding decoding(*context_);  // batched with the other slots
    for (int i = 0; i < limit; ++i) {
      if (job.cancelled.load()) {
        r.end = JobEnd::kCancelled;
        ++counters_.cancelled;
        break;
      }
      const engine::Token t = sampler.sample(s.session->logits());
      if ((job.logprobs || job.sampling.n_probs > 0) && job.on_logprob) {
        const auto [lp, top] =
            engine::Sampler::logprobs(s.session->logits(), t, job.sampling.n_probs);
        job.on_logprob(t, lp, top);
      }
      if (model_.is_eog(t)) {
        r.end = JobEnd::kEos;
        break;
      }
      ++r.completion_tokens;
      const TextCutter::Step step = cutter.add(model_.token_text(t));
      if (!step.out.empty() && job.on_text) job.on_text(step.out);
      if (step.stopped) {
        r.end = JobEnd::kStopString;
        r.stop_index = static_cast<int>(*step.stopped);
        break;
      }
      s.session->decode_one(t);
    }
    if (r.end == JobEnd::kCancelled) {
      log::info("slot " + std::to_string(s.id) + " request cancelled after " +
                std::to_string(r.completion_tokens) + " generated tokens");
    }
    if (const std::string rest = cutter.flush(); !rest.empty() && job.on_text) job.on_text(rest);
    r.generation_ms = ms_since(tg);
    counters_.generated_tokens += r.completion_tokens;
  } catch (const std::exception& e) {
    r.end = JobEnd::kError;
    r.error = "the request failed on the server (its log says why)";
    log::error("slot " + std::to_string(s.id) + ": " + e.what());
    // The live state may be half-written: start the next request from a clean slot, and make
    // sure the shutdown store does not save a state that is gone.
    s.cached->reset();
  }
  // After the last token (not in the TTFT) but before the reply ends: the client's next turn
  // must find this slot idle, or it goes to another slot and misses its live state.
  if (request &&
      (r.end == JobEnd::kEos || r.end == JobEnd::kStopString || r.end == JobEnd::kLength)) {
    try {
      s.cached->store_turn();
    } catch (const std::exception& e) {
      log::error("slot " + std::to_string(s.id) + ": turn store failed: " + e.what());
    }
  }
  job.on_done(r);
}

std::vector<SlotInfo> SlotPool::slots() {
  std::lock_guard lock(mu_);
  std::vector<SlotInfo> out;
  for (auto& s : slots_) out.push_back({s->id, s->job != nullptr, s->live.size(), s->requests});
  return out;
}

size_t SlotPool::pending() {
  std::lock_guard lock(mu_);
  const auto running =
      std::count_if(slots_.begin(), slots_.end(), [](const auto& s) { return s->job != nullptr; });
  return queue_.size() + static_cast<size_t>(running);
}

void SlotPool::begin_shutdown() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  for (auto& s : slots_) {
    if (s->job) s->job->cancelled = true;
  }
  for (auto& j : queue_) j->on_done(refused("the server is shutting down"));
  queue_.clear();
  cv_.notify_all();
}

void SlotPool::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && slots_.empty()) return;
  }
  begin_shutdown();
  for (auto& s : slots_) {
    if (s->thread.joinable()) s->thread.join();
  }
  slots_.clear();
}

}  // namespace kvstash::server
