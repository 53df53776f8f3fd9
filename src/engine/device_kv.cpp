#include "engine/device_kv.h"

#include <ggml-backend.h>
#include <ggml.h>

#include <stdexcept>

#include "engine/kv_blob.h"
#include "util/log.h"
#include "util/size.h"

namespace kvstash::engine {

namespace {

// The first GPU, or null.
ggml_backend_dev_t gpu_device() {
  for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU) return dev;
  }
  return nullptr;
}

// The memory the KV lives in: the first GPU's, else the host's.
ggml_backend_buffer_type_t kv_buffer_type() {
  ggml_backend_dev_t dev = gpu_device();
  return dev ? ggml_backend_dev_buffer_type(dev) : ggml_backend_cpu_buffer_type();
}

// The byte ranges of a section's rows, in order.
std::vector<std::pair<size_t, size_t>> row_ranges(const KvSection& s) {
  std::vector<std::pair<size_t, size_t>> r;
  for (const KvLayer& k : s.k) r.push_back({k.offset, k.row_size * s.cell_count});
  for (const KvLayer& v : s.v) {
    r.push_back({v.offset, v.row_size * (s.v_trans ? v.n_embd : 1) * s.cell_count});
  }
  return r;
}

}  // namespace

DeviceKv::DeviceKv(uint64_t capacity, size_t cell_ext_size, bool has_v)
    : capacity_(capacity), cell_ext_(cell_ext_size), has_v_(has_v), buft_(kv_buffer_type()) {}

DeviceKv::~DeviceKv() {
  if (ctx_) ggml_free(ctx_);
  if (buf_) ggml_backend_buffer_free(buf_);
}

std::optional<DeviceMemory> kv_device_memory() {
  ggml_backend_dev_t dev = gpu_device();
  if (!dev) return std::nullopt;
  size_t free = 0, total = 0;
  ggml_backend_dev_memory(dev, &free, &total);
  return DeviceMemory{free, total};
}

std::string DeviceKv::name() const { return ggml_backend_buft_name(buft_); }

DeviceKv::Copy::~Copy() {
  if (owner) owner->release(slot);
}

void DeviceKv::release(size_t slot) {
  std::lock_guard lock(mu_);
  free_.push_back(slot);
}

bool DeviceKv::allocate_locked(size_t rows) {
  if (buf_ || failed_) return buf_ != nullptr;
  // Every chunk has the same cells, so its rows are the slot size (entries never come here).
  slot_bytes_ = (rows + 255) / 256 * 256;
  const size_t n = capacity_ / slot_bytes_;
  if (n == 0) {
    failed_ = true;
    log::warn("kv cache VRAM tier off: --cache-vram-budget " + format_size(capacity_) +
              " is less than one chunk (" + format_size(slot_bytes_) + ")");
    return false;
  }
  buf_ = ggml_backend_buft_alloc_buffer(buft_, n * slot_bytes_);
  if (!buf_) {
    failed_ = true;
    log::error("kv cache VRAM tier off: cannot allocate " + format_size(n * slot_bytes_) + " in " +
               name());
    return false;
  }
  ggml_init_params params{ggml_tensor_overhead() * 2, nullptr, true};
  ctx_ = ggml_init(params);
  arena_ = ggml_new_tensor_1d(ctx_, GGML_TYPE_I8, static_cast<int64_t>(n * slot_bytes_));
  if (ggml_backend_tensor_alloc(buf_, arena_, ggml_backend_buffer_get_base(buf_)) !=
      GGML_STATUS_SUCCESS) {
    throw std::runtime_error("kv cache VRAM tier: cannot place the arena tensor");
  }
  for (size_t i = n; i-- > 0;) free_.push_back(i);
  log::info("kv cache VRAM tier: " + format_size(n * slot_bytes_) + " in " + name() + " (" +
            std::to_string(n) + " chunks of " + format_size(slot_bytes_) + ")");
  return true;
}

DeviceRef DeviceKv::upload(std::span<const uint8_t> section) {
  KvSection s;
  try {
    s = parse_kv_section(section, cell_ext_, has_v_);
  } catch (const KvBlobError&) {
    return nullptr;
  }
  // A sliding-window model's section carries a trailer the rows reader does not know.
  if (s.cell_count == 0 || s.end != section.size()) return nullptr;
  const auto ranges = row_ranges(s);
  size_t rows = 0;
  for (const auto& [off, len] : ranges) rows += len;
  auto c = std::make_shared<Copy>();
  {
    std::lock_guard lock(mu_);
    if (!allocate_locked(rows) || rows > slot_bytes_ || free_.empty()) return nullptr;
    c->slot = free_.back();
    free_.pop_back();
  }
  c->owner = shared_from_this();
  c->rows = rows;
  c->first_pos = s.first_pos(section);
  c->cells = s.cell_count;
  c->meta.reserve(section.size() - rows);
  size_t at = 0, dst = slot_offset(c->slot);
  for (const auto& [off, len] : ranges) {
    c->meta.insert(c->meta.end(), section.begin() + at, section.begin() + off);
    ggml_backend_tensor_set(arena_, section.data() + off, dst, len);
    dst += len;
    at = off + len;
  }
  c->meta.insert(c->meta.end(), section.begin() + at, section.end());
  return c;
}

std::shared_ptr<DeviceKv> make_device_kv(uint64_t capacity, size_t cell_ext_size, bool has_v) {
  return std::make_shared<DeviceKv>(capacity, cell_ext_size, has_v);
}

}  // namespace kvstash::engine
