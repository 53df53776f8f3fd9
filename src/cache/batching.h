// Where a prefill's batches break: one rule for every engine (engine/session.cpp over llama.cpp,
// replay/sim_engine.cpp without a model), as a pure function of plain data.
//
// Why batches break where they do: kernels are not batch-invariant (matmul tiling, the gated delta
// net's 64-token chunking), so a token computed in another batch shape can differ in its last
// bits. A restored state continues bit-exactly only from a position where a fresh prefill of the
// same prompt also broke a batch: from there on, both compute the same batches. So a batch ends at
//   - the next absolute multiple of `chunk` (positions, not counts from where this prefill
//     started: a state restored at a chunk multiple continues on the same grid);
//   - the next content-derived boundary (chat message starts: the caller derives them from the
//     prompt's content, so every prompt sharing that prefix passes them identically);
//   - the next snapshot position (the caller takes an exact state there, e.g. the prompt's end
//     or a hybrid model's resume point);
//   - the end of the prompt;
// whichever comes first. The batches of a prompt are therefore a function of the prompt alone,
// and those of a prefill that starts at a break are the tail of a fresh prefill's batches.
// A batch that ends at a snapshot position is marked: the engine holds exactly that state then.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kvstash::cache {

struct Batch {
  uint32_t begin = 0, end = 0;  // tokens [begin, end) of the prompt
  bool snapshot = false;        // `end` is one of the snapshot positions
  bool operator==(const Batch&) const = default;
};

// The batches that extend a state of `start` tokens to `total` tokens, in order (none when
// start >= total). `boundaries` and `snapshot_at` need not be sorted or unique; positions at or
// before `start` or past `total` break nothing. Throws std::invalid_argument when chunk is 0.
std::vector<Batch> prefill_batches(uint32_t start, uint32_t total, uint32_t chunk,
                                   std::span<const uint32_t> boundaries,
                                   std::span<const uint32_t> snapshot_at);

// The chunk (the batch grid above, and the cache's unit) when none is given. On a GPU a batch
// of 256 tokens leaves an 8B model's matmuls short of the weights' reuse that 512 gives: a cold
// 25k-token prefill takes ~2.2 s in 512-token batches against ~2.5 s in 256 (llama-server's
// ubatch is 512 too). On a CPU the batch size barely moves the prefill rate, and the finer grid
// restores more of a prompt that diverges mid-chunk: 256.
uint32_t auto_chunk(bool kv_on_gpu);

}  // namespace kvstash::cache
