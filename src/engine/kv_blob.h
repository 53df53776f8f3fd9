// The byte layout of a llama.cpp sequence state, as far as kvstash relies on it.
//
// llama_state_seq_get_data() on an attention KV cache (llama_kv_cache::state_write) writes:
//   u32 n_stream; per stream: u32 cell_count; cell_count x meta; data
//   meta = i32 pos, u32 n_seq_id (=1), [cell ext, 12 bytes, M-RoPE models], i32 seq_id
//   data = u32 v_trans, u32 n_layer,
//          n_layer x (i32 k_type, u64 k_row_size, cell_count rows),
//          !v_trans: n_layer x (i32 v_type, u64 v_row_size, cell_count rows)
//           v_trans: n_layer x (i32 v_type, u32 v_el_size, u32 n_embd_v, n_embd_v x cell_count els)
//          (no V at all for MLA caches: K holds the latent and V is a view of it)
// K and V rows of quantized types (q8_0, q4_0) are whole rows of blocks, one per cell, so cutting
// and joining at cell boundaries needs no block alignment; transposed V is never quantized
// (llama.cpp quantizes V only with flash attention, which stores V untransposed).
// llama_state_seq_get_data() puts an 8-byte header in front (u32 magic, i32 seq id); chunks are
// stored without it. A hybrid model appends its recurrent state after this section. kvstash stores
// attention KV in chunks of cells (one blob per token range) and rebuilds a prefix by concatenating
// them, which this module does without llama.cpp: it is pure byte work, unit-tested on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

namespace kvstash::engine {

struct KvBlobError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The header llama_context adds around a sequence state.
constexpr uint32_t kSeqStateMagic = 0xaf143cd8;
constexpr size_t kSeqStateHeaderSize = 8;
// Returns the state without its header; throws KvBlobError if the header is not there.
std::span<const uint8_t> strip_seq_header(std::span<const uint8_t> state);
// Returns header + body, ready for llama_state_seq_set_data().
std::vector<uint8_t> with_seq_header(std::span<const uint8_t> body);

struct KvLayer {
  int32_t type = 0;
  uint64_t row_size = 0;  // bytes per cell (non-transposed) or element size (transposed V)
  uint32_t n_embd = 0;    // transposed V only: number of rows
  size_t offset = 0;      // where the cell data starts in the blob
};

// A parsed attention KV section: one stream, cells in position order.
struct KvSection {
  uint32_t cell_count = 0;
  size_t meta_offset = 0;
  size_t meta_cell_size = 0;  // bytes of meta per cell
  bool v_trans = false;
  std::vector<KvLayer> k, v;
  size_t end = 0;  // offset just past the section (start of any recurrent state)

  int32_t first_pos(std::span<const uint8_t> blob) const;
  int32_t last_pos(std::span<const uint8_t> blob) const;
};

// Parses the attention KV section at the start of `blob`. `cell_ext_size` is 12 for models whose
// KV cells carry 2D positions (M-RoPE), else 0; `has_v` is false for MLA caches (K only). Throws
// KvBlobError on any inconsistency.
KvSection parse_kv_section(std::span<const uint8_t> blob, size_t cell_ext_size, bool has_v = true);

// Concatenates KV sections of consecutive token ranges into one section holding all their cells.
// Every part must have the same layer layout and its positions must continue the previous part's.
std::vector<uint8_t> concat_kv_sections(const std::vector<std::span<const uint8_t>>& parts,
                                        size_t cell_ext_size, bool has_v = true);

// A section of `n` masked filler cells at positions [first, first + n): the layer layout (types,
// row sizes, V layout) of `like`, zero K and V (an all-zero q8_0 / q4_0 block is zeros too), cells
// of sequence 0. A sliding-window cache keeps a sequence's cells at index == position (a fresh
// prefill with llama.cpp's full-size SWA cache never moves or drops them), and attention kernels
// group cells by index (CPU flash attention in tiles, decode in KV chunks split by the number of
// cells); a window restored alone would land at index 0 and its sums would differ in the last
// bits. Fillers below the window put it where a prefill has it; no later token attends to them,
// as to the masked cells a prefill keeps there.
std::vector<uint8_t> filler_section(const KvSection& like, int32_t first, uint32_t n,
                                    size_t cell_ext_size);

}  // namespace kvstash::engine
