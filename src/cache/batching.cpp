#include "cache/batching.h"

#include <algorithm>
#include <stdexcept>

namespace kvstash::cache {

std::vector<Batch> prefill_batches(uint32_t start, uint32_t total, uint32_t chunk,
                                   std::span<const uint32_t> boundaries,
                                   std::span<const uint32_t> snapshot_at) {
  if (chunk == 0) throw std::invalid_argument("prefill_batches: chunk must be > 0");
  std::vector<uint32_t> snaps(snapshot_at.begin(), snapshot_at.end());
  std::sort(snaps.begin(), snaps.end());
  std::vector<uint32_t> breaks(boundaries.begin(), boundaries.end());
  breaks.insert(breaks.end(), snaps.begin(), snaps.end());
  std::sort(breaks.begin(), breaks.end());

  std::vector<Batch> out;
  for (uint64_t pos = start; pos < total;) {
    uint64_t end = std::min<uint64_t>(total, (pos / chunk + 1) * chunk);
    const auto next = std::upper_bound(breaks.begin(), breaks.end(), pos);
    if (next != breaks.end() && *next < end) end = *next;
    const auto e = static_cast<uint32_t>(end);
    out.push_back(
        {static_cast<uint32_t>(pos), e, std::binary_search(snaps.begin(), snaps.end(), e)});
    pos = end;
  }
  return out;
}

uint32_t auto_chunk(bool kv_on_gpu) { return kv_on_gpu ? 512 : 256; }

}  // namespace kvstash::cache
