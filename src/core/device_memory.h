// Device memory for KV sections: the store behind the VRAM tier (--cache-vram-budget).
//
// A hit from the VRAM tier copies device to device into the slot (~1.5 TB/s on an H100, against
// ~25 GB/s from pinned RAM). The engine owns the memory (engine/device_kv.h allocates it with
// ggml's backend API in the buffer type the KV lives in); the cache only holds references to the
// copies and hands them back to the engine for a restore (KvEngine::restore_kv_device).
// Engine-agnostic: nothing here knows llama.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace kvstash {

// One section's copy in device memory. Its memory is reused once the last reference is gone, so
// a restore holds the reference until its copies are waited for.
struct DeviceCopy {
  virtual ~DeviceCopy() = default;
};
using DeviceRef = std::shared_ptr<const DeviceCopy>;

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // Where the copies live ("CUDA0", "CPU").
  virtual std::string name() const = 0;
  // Bytes of device memory the store may use.
  virtual uint64_t capacity() const = 0;
  // A copy of `section` (one attention KV section as the engine extracts it), or null when the
  // memory is full or the section is not one the store takes (a sliding-window model's, say).
  // Blocks until the copy is complete: called by the cache's transfer worker, not a request.
  virtual DeviceRef upload(std::span<const uint8_t> section) = 0;
};

}  // namespace kvstash
