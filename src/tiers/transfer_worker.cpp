#include "tiers/transfer_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

namespace kvstash::tiers {

TransferWorker::TransferWorker(uint64_t budget, Write write, Done done, int threads)
    : budget_(budget), write_(std::move(write)), done_(std::move(done)), inline_(threads <= 0) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

TransferWorker::~TransferWorker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool TransferWorker::try_reserve(uint64_t bytes) {
  std::lock_guard lock(mu_);
  // An empty queue takes any job: one larger than the whole budget goes alone.
  if (!inline_ && st_.queued_bytes > 0 && st_.queued_bytes + bytes > budget_) return false;
  st_.queued_bytes += bytes;
  return true;
}

void TransferWorker::reserve(uint64_t bytes) {
  std::unique_lock lock(mu_);
  room_cv_.wait(lock, [&] {
    return inline_ || st_.queued_bytes == 0 || st_.queued_bytes + bytes <= budget_;
  });
  st_.queued_bytes += bytes;
}

void TransferWorker::adjust(uint64_t reserved, uint64_t actual) {
  {
    std::lock_guard lock(mu_);
    st_.queued_bytes = st_.queued_bytes - std::min(st_.queued_bytes, reserved) + actual;
  }
  room_cv_.notify_all();
}

void TransferWorker::submit(std::vector<StoreObject> job, uint64_t reserved) {
  std::unique_lock lock(mu_);
  Job j{std::move(job), reserved, next_seq_++};
  for (const auto& o : j.objs) in_flight_[{o.meta.kind, o.meta.key}] = {o.payload, j.seq};
  if (inline_) {
    ++running_;
    lock.unlock();
    write_job(j);
    return;
  }
  queue_.push_back(std::move(j));
  ++st_.queued_jobs;
  lock.unlock();
  work_cv_.notify_one();
}

void TransferWorker::write_job(Job& job) {
  bool ok = true;
  for (const auto& o : job.objs) {
    if (ok && o.meta.depth > 0) {
      // The parent chunk, if an earlier job is still writing it, goes first.
      std::unique_lock lock(mu_);
      done_cv_.wait(lock, [&] {
        auto it = in_flight_.find({cache::ObjKind::kChunk, o.meta.parent});
        return stop_ || it == in_flight_.end() || it->second.seq >= job.seq;
      });
      ok = !stop_;
    }
    const bool wrote = ok && write_(o);
    done_(o, wrote);
    {
      std::lock_guard lock(mu_);
      if (ok && wrote) ++st_.written;
      if (ok && !wrote) ++st_.failed;
      if (!ok) ++st_.skipped;
      ok = ok && wrote;
      // A later job of the same object (a store that raced this one) keeps its own entry.
      auto it = in_flight_.find({o.meta.kind, o.meta.key});
      if (it != in_flight_.end() && it->second.payload == o.payload) in_flight_.erase(it);
    }
    done_cv_.notify_all();
  }
  {
    std::lock_guard lock(mu_);
    st_.queued_bytes -= std::min(st_.queued_bytes, job.reserved);
    --running_;
  }
  room_cv_.notify_all();
}

void TransferWorker::run() {
  // Writers yield to the engine: on a machine with few cores their checksums and copies into the
  // page cache would otherwise slow the decode of the request that just queued them.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      --st_.queued_jobs;
      ++running_;
    }
    write_job(job);
  }
}

Payload TransferWorker::find(cache::ObjKind kind, const cache::Key& key) const {
  std::lock_guard lock(mu_);
  auto it = in_flight_.find({kind, key});
  return it == in_flight_.end() ? nullptr : it->second.payload;
}

bool TransferWorker::drain(int timeout_ms) {
  std::unique_lock lock(mu_);
  auto idle = [&] { return queue_.empty() && running_ == 0; };
  if (timeout_ms < 0) {
    room_cv_.wait(lock, idle);
    return true;
  }
  return room_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), idle);
}

TransferWorker::Stats TransferWorker::stats() const {
  std::lock_guard lock(mu_);
  return st_;
}

}  // namespace kvstash::tiers
