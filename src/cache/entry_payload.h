// The payload of an entry: what completes a prefix past its last full chunk.
//   u64 n, tail KV section (cells from the last full chunk to the entry's end; kv_blob layout)
//   u64 n, recurrent state at the entry's end (hybrid models; else empty)
//   u64 n, logits after the entry's last token as f32 (only where they cannot be recomputed)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "util/buffer_pool.h"

namespace kvstash::cache {

struct EntryPayload {
  std::vector<uint8_t> tail_kv;
  std::vector<uint8_t> partial_state;
  std::vector<float> logits;
};

std::vector<uint8_t> encode_entry_payload(const EntryPayload& p);
// The same encoding written once, straight into a buffer of `pool` (a store's entry: no
// intermediate copies of a tail that may hold tens of MiB of KV).
Payload encode_entry_payload(BufferPool& pool, std::span<const uint8_t> tail_kv,
                             std::span<const uint8_t> partial_state, std::span<const float> logits);
// nullopt when the bytes are not a well-formed payload.
std::optional<EntryPayload> decode_entry_payload(std::span<const uint8_t> bytes);

}  // namespace kvstash::cache
