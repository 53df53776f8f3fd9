// Byte buffers for KV payloads, recycled instead of allocated per request.
//
// Every object the cache reads (a disk file, a Redis value) lands in a buffer of this pool, and the
// RAM tier keeps those buffers as they are: a restore hands the engine the very memory the bytes
// were read into, with no join copy, no fresh allocation and no zero-fill on the hit path. On a GPU
// build the engine installs an allocator of pinned host memory (ggml's host buffer type), so the
// upload into the KV tensors moves at PCIe speed from any buffer of the pool.
//
// A released buffer goes back to an idle list by size class, up to `idle_limit` bytes (the
// staging memory a restore streams through; --cache-staging), and is reused by the next read of
// that size. Chunks of one model all have one size, so after warm-up the hit path allocates
// nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace kvstash {

// A buffer of `size()` bytes; shared read-only once filled (Payload).
class Bytes {
 public:
  Bytes(uint8_t* data, size_t size, size_t capacity) : data_(data), size_(size), cap_(capacity) {}
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  std::span<const uint8_t> span() const { return {data_, size_}; }
  std::span<uint8_t> span() { return {data_, size_}; }
  // Shortens the buffer (e.g. after a short read); never grows it.
  void shrink(size_t n) { size_ = n < size_ ? n : size_; }
  // Drops the first n bytes (a header the caller does not keep): the view starts later, the
  // memory is freed as a whole all the same.
  void drop_front(size_t n) {
    n = n < size_ ? n : size_;
    data_ += n;
    size_ -= n;
    cap_ -= n;
  }

 private:
  uint8_t* data_;
  size_t size_, cap_;
};
using Payload = std::shared_ptr<const Bytes>;

class BufferPool {
 public:
  struct Allocator {
    std::string name;                                     // "pageable", "pinned (CUDA_Host)"
    std::function<void*(size_t n, void** handle)> alloc;  // null on failure
    std::function<void(void* handle)> free;
  };
  // Plain (pageable) memory, `idle_limit` bytes kept for reuse.
  explicit BufferPool(uint64_t idle_limit = 256ull << 20);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Buffers made from now on come from `a` (those made before keep their own allocator).
  void set_allocator(Allocator a);
  void set_idle_limit(uint64_t bytes);
  uint64_t idle_limit() const;
  std::string allocator_name() const;

  // An uninitialised buffer of `n` bytes. Throws std::bad_alloc when memory is exhausted.
  std::shared_ptr<Bytes> get(size_t n);
  // Allocates up to `count` idle buffers that fit `n` bytes, as far as the idle limit allows, so
  // that the first requests do not pay for the allocation (pinning memory takes ~0.3 s per GiB).
  // Returns how many were made. Safe to run on a thread of its own while the pool is in use.
  size_t warm(size_t n, size_t count);
  // A buffer holding a copy of `src`.
  std::shared_ptr<Bytes> copy(std::span<const uint8_t> src);

  struct Stats {
    uint64_t live_bytes = 0, idle_bytes = 0;  // capacity handed out / kept for reuse
    uint64_t allocations = 0, reuses = 0;
  };
  Stats stats() const;

 private:
  struct State;
  std::shared_ptr<State> s_;  // buffers hold it weakly: one released after the pool is freed
};

}  // namespace kvstash
