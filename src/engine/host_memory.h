// Host memory the GPU copies from at full speed.
//
// Copies into GPU memory run at PCIe speed only from page-locked (pinned) host memory; from
// ordinary memory the driver stages them through a bounce buffer at a fraction of it. The cache's
// payload buffers (util/buffer_pool.h: the RAM tier, disk and Redis reads) come from this
// allocator when the KV lives on a GPU, so a restore uploads straight from where the bytes are.
#pragma once

#include <optional>

#include "util/buffer_pool.h"

namespace kvstash::engine {

// ggml's host buffer type of the first GPU device (CUDA: cudaMallocHost) for a model loaded with
// `n_gpu_layers`, or nullopt when its KV is in host memory: no layers offloaded, or the build has
// no GPU backend, or no GPU is present.
std::optional<BufferPool::Allocator> pinned_host_allocator(int n_gpu_layers);

// Whether a model loaded with `n_gpu_layers` keeps its KV on a GPU (the allocator above exists):
// what the GPU defaults (pinned buffers, the RAM tier, the chunk) go by.
bool kv_on_gpu(int n_gpu_layers);

}  // namespace kvstash::engine
