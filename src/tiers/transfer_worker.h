// The transfer worker: stores leave the request here.
//
// A store copies the KV it needs out of the engine into pool buffers (the only part that must
// happen before the engine moves on) and submits the objects as one job. Writer threads make them
// durable (checksum, write, fsync, rename: DiskTier::put). One job is written by one thread, in
// order (parents first); jobs run in parallel, since one thread's fsyncs leave the disk idle
// between them, but an object whose parent is still being written by an earlier job waits for
// it: a reader (this or another process) never finds a child on disk before its parent.
//
// While a job waits, its payloads stay readable here (find()): a lookup of an object being
// written is served from its buffer, so a request arriving right after a store hits at memory
// speed instead of missing. The object becomes visible to other processes (a file under its final
// name) only when durable.
//
// Backpressure: the bytes of queued jobs are bounded by `budget` (--cache-store-queue). A
// checkpoint store that does not fit is dropped by its caller (try_reserve() false: a checkpoint
// is an optimisation); a store of the only copy of a live state waits for room (reserve()), since
// dropping it loses the state.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/types.h"
#include "util/buffer_pool.h"

namespace kvstash::tiers {

struct StoreObject {
  cache::ObjectMeta meta;
  cache::ObjectStats stats;
  Payload payload;
  // Set for a copy taken from RAM (a demotion): the payload is verified against it before it is
  // written, so a damaged RAM copy never becomes a valid-looking file.
  std::optional<uint64_t> checksum;
  // A promotion into the VRAM tier only: nothing else is written.
  bool vram_only = false;
};

class TransferWorker {
 public:
  // write(obj): makes one object durable; false if it failed (the rest of its job is then
  // skipped: its children would be unreachable). done(obj, ok): after each object, written or
  // skipped, before its payload leaves find(). Both run on the writer thread.
  using Write = std::function<bool(const StoreObject&)>;
  using Done = std::function<void(const StoreObject&, bool ok)>;
  // threads == 0: submit() writes inline on the caller's thread (`kvstash replay`, whose
  // virtual clock needs every store finished before the next request).
  TransferWorker(uint64_t budget, Write write, Done done, int threads = 1);
  ~TransferWorker();  // abandons what is still queued (never made visible; see drain())
  TransferWorker(const TransferWorker&) = delete;
  TransferWorker& operator=(const TransferWorker&) = delete;

  uint64_t budget() const { return budget_; }
  bool async() const { return !inline_; }
  // Room for `bytes` more, reserved if there is; false when the queue is full. An empty queue
  // takes a job of any size (one larger than the whole budget goes alone).
  bool try_reserve(uint64_t bytes);
  // Waits until `bytes` fit (or the queue is empty).
  void reserve(uint64_t bytes);
  // Corrects a reservation made from an estimate to the actual size (0: released).
  void adjust(uint64_t reserved, uint64_t actual);
  // Queue room reserved by reserve() or try_reserve(), held by its owner until a job takes it
  // (release()); whatever is still held when it goes out of scope, a throw included, goes back.
  class Reservation {
   public:
    Reservation(TransferWorker& w, uint64_t bytes) : w_(&w), bytes_(bytes) {}
    ~Reservation() {
      if (w_) w_->adjust(bytes_, 0);
    }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    // The reservation, made from an estimate, becomes `actual` bytes.
    void resize(uint64_t actual) {
      w_->adjust(bytes_, actual);
      bytes_ = actual;
    }
    // Hands the bytes over to a job (submit()'s `reserved`): no longer released here.
    uint64_t release() {
      w_ = nullptr;
      return bytes_;
    }

   private:
    TransferWorker* w_;
    uint64_t bytes_;
  };
  // Queues a job whose bytes were reserved (the reservation is released as it is written).
  void submit(std::vector<StoreObject> job, uint64_t reserved);
  // The payload of an object in a queued job (null if none).
  Payload find(cache::ObjKind kind, const cache::Key& key) const;
  // Waits until every queued job is written, up to timeout_ms (< 0: no limit).
  bool drain(int timeout_ms);

  struct Stats {
    uint64_t queued_bytes = 0;  // reserved by queued and running jobs
    uint64_t queued_jobs = 0;
    uint64_t written = 0, failed = 0, skipped = 0;  // objects
  };
  Stats stats() const;

 private:
  struct Job {
    std::vector<StoreObject> objs;
    uint64_t reserved = 0;
    uint64_t seq = 0;  // submission order
  };
  struct Held {
    Payload payload;
    uint64_t seq = 0;  // of the job writing it
  };
  void run();
  void write_job(Job& job);

  const uint64_t budget_;
  Write write_;
  Done done_;
  const bool inline_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, room_cv_, done_cv_;
  std::deque<Job> queue_;
  int running_ = 0;  // jobs being written
  bool stop_ = false;
  uint64_t next_seq_ = 0;
  std::map<std::pair<cache::ObjKind, cache::Key>, Held> in_flight_;
  Stats st_;
  std::vector<std::thread> threads_;
};

}  // namespace kvstash::tiers
