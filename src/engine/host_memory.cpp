#include "engine/host_memory.h"

#include <ggml-backend.h>

namespace kvstash::engine {

std::optional<BufferPool::Allocator> pinned_host_allocator(int n_gpu_layers) {
  if (n_gpu_layers == 0) return std::nullopt;
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
    ggml_backend_buffer_type_t buft = ggml_backend_dev_host_buffer_type(dev);
    if (!buft) continue;
    BufferPool::Allocator a;
    a.name = std::string("pinned (") + ggml_backend_buft_name(buft) + ")";
    a.alloc = [buft](size_t n, void** handle) -> void* {
      ggml_backend_buffer_t b = ggml_backend_buft_alloc_buffer(buft, n);
      if (!b) return nullptr;
      *handle = b;
      return ggml_backend_buffer_get_base(b);
    };
    a.free = [](void* handle) {
      ggml_backend_buffer_free(static_cast<ggml_backend_buffer_t>(handle));
    };
    return a;
  }
  return std::nullopt;
}

bool kv_on_gpu(int n_gpu_layers) { return pinned_host_allocator(n_gpu_layers).has_value(); }

}  // namespace kvstash::engine
