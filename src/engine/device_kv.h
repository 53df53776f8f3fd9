// The VRAM tier's store on llama.cpp: an arena in the memory the KV lives in (the first GPU's;
// the host's on a CPU build, which tests use), cut into slots of one chunk's rows each.
//
// A section is kept split the way llama_state_seq_set_data_rows (cmake/patches/
// kv-set-rows.patch) reads it: its scalars (cell count, positions, per-layer types and row sizes)
// in host memory, its rows back to back in one slot. The arena is allocated on the first upload,
// when the chunk's row bytes are known, as one backend buffer: a cudaMalloc per object would cost
// a device-wide synchronisation on every free.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/device_memory.h"

struct ggml_backend_buffer;
struct ggml_backend_buffer_type;
struct ggml_context;
struct ggml_tensor;

namespace kvstash::engine {

// Held by shared_ptr (make_device_kv): each copy keeps the arena alive.
class DeviceKv : public DeviceMemory, public std::enable_shared_from_this<DeviceKv> {
 public:
  // `capacity` bytes for sections of the given layout (kv_blob.h); the arena is allocated on the
  // first upload (a failure then is logged, and every upload returns null).
  DeviceKv(uint64_t capacity, size_t cell_ext_size, bool has_v);
  ~DeviceKv() override;

  std::string name() const override;
  uint64_t capacity() const override { return capacity_; }
  DeviceRef upload(std::span<const uint8_t> section) override;

  // What a restore passes to llama.cpp.
  struct Copy : DeviceCopy {
    std::shared_ptr<DeviceKv> owner;  // keeps the arena alive
    std::vector<uint8_t> meta;        // the section without its rows
    size_t slot = 0, rows = 0;        // where its rows are, how many bytes
    int32_t first_pos = 0;
    uint32_t cells = 0;
    ~Copy() override;
  };
  ggml_backend_buffer* buffer() const { return buf_; }
  size_t slot_offset(size_t slot) const { return slot * slot_bytes_; }

 private:
  void release(size_t slot);
  bool allocate_locked(size_t rows);

  const uint64_t capacity_;
  const size_t cell_ext_;
  const bool has_v_;
  ggml_backend_buffer_type* buft_ = nullptr;
  std::mutex mu_;
  ggml_backend_buffer* buf_ = nullptr;
  ggml_context* ctx_ = nullptr;
  ggml_tensor* arena_ = nullptr;  // one I8 tensor over the buffer, for ggml_backend_tensor_set
  size_t slot_bytes_ = 0;
  std::vector<size_t> free_;  // free slots
  bool failed_ = false;       // the arena could not be allocated: uploads return null
};

// Free and total bytes of the GPU the KV would live on; nullopt without a GPU backend.
struct DeviceMemory {
  uint64_t free = 0, total = 0;
};
std::optional<DeviceMemory> kv_device_memory();

// A store of `capacity` bytes for the model's sections.
std::shared_ptr<DeviceKv> make_device_kv(uint64_t capacity, size_t cell_ext_size, bool has_v);

}  // namespace kvstash::engine
