#include "util/buffer_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>

namespace kvstash {

namespace {

// Size classes: a multiple of 4 KiB below 1 MiB, of 1 MiB above (KV chunks are tens of MiB).
size_t size_class(size_t n) {
  const size_t g = n >= (1u << 20) ? (1u << 20) : 4096;
  return std::max<size_t>(g, (n + g - 1) / g * g);
}

BufferPool::Allocator pageable() {
  return {"pageable",
          [](size_t n, void** handle) {
            void* p = std::malloc(n);
            *handle = p;
            return p;
          },
          [](void* handle) { std::free(handle); }};
}

}  // namespace

struct BufferPool::State {
  struct Block {
    void* ptr = nullptr;
    void* handle = nullptr;
    size_t cap = 0;
    std::shared_ptr<const Allocator> alloc;
  };
  std::mutex mu;
  std::shared_ptr<const Allocator> alloc = std::make_shared<Allocator>(pageable());
  uint64_t idle_limit = 0;
  std::deque<Block> idle;  // oldest first
  Stats st;

  static void free_block(const Block& b) { b.alloc->free(b.handle); }
  // Frees the oldest idle blocks until the idle bytes fit the limit. Returns them (freed by the
  // caller outside the lock).
  std::vector<Block> trim_locked() {
    std::vector<Block> out;
    while (st.idle_bytes > idle_limit && !idle.empty()) {
      st.idle_bytes -= idle.front().cap;
      out.push_back(std::move(idle.front()));
      idle.pop_front();
    }
    return out;
  }
};

BufferPool::BufferPool(uint64_t idle_limit) : s_(std::make_shared<State>()) {
  s_->idle_limit = idle_limit;
}

BufferPool::~BufferPool() {
  std::lock_guard lock(s_->mu);
  for (const auto& b : s_->idle) State::free_block(b);
  s_->idle.clear();
}

void BufferPool::set_allocator(Allocator a) {
  std::vector<State::Block> old;
  {
    std::lock_guard lock(s_->mu);
    s_->alloc = std::make_shared<Allocator>(std::move(a));
    old.assign(s_->idle.begin(), s_->idle.end());  // made by the previous allocator
    s_->idle.clear();
    s_->st.idle_bytes = 0;
  }
  for (const auto& b : old) State::free_block(b);
}

uint64_t BufferPool::idle_limit() const {
  std::lock_guard lock(s_->mu);
  return s_->idle_limit;
}

void BufferPool::set_idle_limit(uint64_t bytes) {
  std::vector<State::Block> freed;
  {
    std::lock_guard lock(s_->mu);
    s_->idle_limit = bytes;
    freed = s_->trim_locked();
  }
  for (const auto& b : freed) State::free_block(b);
}

std::string BufferPool::allocator_name() const {
  std::lock_guard lock(s_->mu);
  return s_->alloc->name;
}

std::shared_ptr<Bytes> BufferPool::get(size_t n) {
  const size_t cap = size_class(n);
  State::Block b;
  {
    std::lock_guard lock(s_->mu);
    auto it = std::find_if(s_->idle.begin(), s_->idle.end(),
                           [&](const State::Block& x) { return x.cap == cap; });
    if (it != s_->idle.end()) {
      b = std::move(*it);
      s_->idle.erase(it);
      s_->st.idle_bytes -= cap;
      ++s_->st.reuses;
    } else {
      b.alloc = s_->alloc;
      b.cap = cap;
      ++s_->st.allocations;
    }
    s_->st.live_bytes += cap;
  }
  if (!b.ptr) {
    b.ptr = b.alloc->alloc(cap, &b.handle);
    if (!b.ptr) {
      std::lock_guard lock(s_->mu);
      s_->st.live_bytes -= cap;
      throw std::bad_alloc();
    }
  }
  auto* raw = new Bytes(static_cast<uint8_t*>(b.ptr), n, cap);
  std::weak_ptr<State> weak = s_;
  return std::shared_ptr<Bytes>(raw, [weak, b](Bytes* p) {
    delete p;
    auto s = weak.lock();
    if (!s) return State::free_block(b);
    std::vector<State::Block> freed;
    {
      std::lock_guard lock(s->mu);
      s->st.live_bytes -= b.cap;
      if (b.alloc == s->alloc) {
        s->idle.push_back(b);
        s->st.idle_bytes += b.cap;
        freed = s->trim_locked();
      } else {
        freed.push_back(b);
      }
    }
    for (const auto& f : freed) State::free_block(f);
  });
}

size_t BufferPool::warm(size_t n, size_t count) {
  const size_t cap = size_class(n);
  size_t made = 0;
  for (; made < count; ++made) {
    State::Block b;
    {
      std::lock_guard lock(s_->mu);
      if (s_->st.idle_bytes + cap > s_->idle_limit) break;
      b.alloc = s_->alloc;
      b.cap = cap;
    }
    b.ptr = b.alloc->alloc(cap, &b.handle);  // outside the lock: pinning takes time
    if (!b.ptr) break;
    std::lock_guard lock(s_->mu);
    if (b.alloc != s_->alloc || s_->st.idle_bytes + cap > s_->idle_limit) {
      State::free_block(b);
      break;
    }
    s_->idle.push_back(b);
    s_->st.idle_bytes += cap;
    ++s_->st.allocations;
  }
  return made;
}

std::shared_ptr<Bytes> BufferPool::copy(std::span<const uint8_t> src) {
  auto b = get(src.size());
  if (!src.empty()) std::memcpy(b->data(), src.data(), src.size());
  return b;
}

BufferPool::Stats BufferPool::stats() const {
  std::lock_guard lock(s_->mu);
  return s_->st;
}

}  // namespace kvstash
