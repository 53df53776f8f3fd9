#include "engine/kv_blob.h"

#include <cstring>
#include <string>

namespace kvstash::engine {

namespace {

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + off_, sizeof(T));
    off_ += sizeof(T);
    return v;
  }
  void skip(size_t n) {
    need(n);
    off_ += n;
  }
  size_t offset() const { return off_; }

 private:
  void need(size_t n) const {
    if (n > b_.size() - off_)
      throw KvBlobError("kv state truncated at byte " + std::to_string(off_));
  }
  std::span<const uint8_t> b_;
  size_t off_ = 0;
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

int32_t read_pos(std::span<const uint8_t> blob, size_t off) {
  int32_t p;
  std::memcpy(&p, blob.data() + off, sizeof(p));
  return p;
}

}  // namespace

std::span<const uint8_t> strip_seq_header(std::span<const uint8_t> state) {
  Reader r(state);
  if (r.get<uint32_t>() != kSeqStateMagic) throw KvBlobError("not a llama.cpp sequence state");
  r.get<int32_t>();
  return state.subspan(kSeqStateHeaderSize);
}

std::vector<uint8_t> with_seq_header(std::span<const uint8_t> body) {
  std::vector<uint8_t> out;
  out.reserve(kSeqStateHeaderSize + body.size());
  put<uint32_t>(out, kSeqStateMagic);
  put<int32_t>(out, 0);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

int32_t KvSection::first_pos(std::span<const uint8_t> blob) const {
  return read_pos(blob, meta_offset);
}

int32_t KvSection::last_pos(std::span<const uint8_t> blob) const {
  return read_pos(blob, meta_offset + (cell_count - 1) * meta_cell_size);
}

KvSection parse_kv_section(std::span<const uint8_t> blob, size_t cell_ext_size, bool has_v) {
  Reader r(blob);
  KvSection s;
  const auto n_stream = r.get<uint32_t>();
  if (n_stream != 1) {
    throw KvBlobError("kv state has " + std::to_string(n_stream) +
                      " streams; kvstash needs a unified KV cache (one stream)");
  }
  s.cell_count = r.get<uint32_t>();
  if (s.cell_count == 0) {
    s.end = r.offset();
    return s;
  }
  s.meta_offset = r.offset();
  s.meta_cell_size = 4 + 4 + cell_ext_size + 4;
  for (uint32_t i = 0; i < s.cell_count; ++i) {
    r.get<int32_t>();
    if (r.get<uint32_t>() != 1) throw KvBlobError("kv cell belongs to several sequences");
    r.skip(cell_ext_size + 4);
  }
  const auto v_trans = r.get<uint32_t>();
  const auto n_layer = r.get<uint32_t>();
  if (v_trans > 1 || n_layer == 0 || n_layer > 4096) {
    throw KvBlobError("kv state header is not plausible (v_trans=" + std::to_string(v_trans) +
                      ", n_layer=" + std::to_string(n_layer) + "): wrong cell layout?");
  }
  s.v_trans = v_trans;
  for (uint32_t l = 0; l < n_layer; ++l) {
    KvLayer k;
    k.type = r.get<int32_t>();
    k.row_size = r.get<uint64_t>();
    k.offset = r.offset();
    r.skip(k.row_size * s.cell_count);
    s.k.push_back(k);
  }
  // MLA caches write no V section at all (llama.cpp skips layers without a V tensor).
  for (uint32_t l = 0; has_v && l < n_layer; ++l) {
    KvLayer v;
    v.type = r.get<int32_t>();
    if (!s.v_trans) {
      v.row_size = r.get<uint64_t>();
      v.offset = r.offset();
      r.skip(v.row_size * s.cell_count);
    } else {
      v.row_size = r.get<uint32_t>();
      v.n_embd = r.get<uint32_t>();
      v.offset = r.offset();
      r.skip(static_cast<size_t>(v.row_size) * v.n_embd * s.cell_count);
    }
    s.v.push_back(v);
  }
  s.end = r.offset();
  return s;
}

namespace {

// Parts checked to join into one section, and the size of that section.
struct Joinable {
  std::vector<KvSection> secs;
  uint32_t cells = 0;
  size_t bytes = 0;
};

Joinable check_joinable(const std::vector<std::span<const uint8_t>>& parts, size_t cell_ext_size,
                        bool has_v) {
  Joinable j;
  for (const auto& p : parts) {
    j.secs.push_back(parse_kv_section(p, cell_ext_size, has_v));
    if (j.secs.back().cell_count == 0) throw KvBlobError("empty kv chunk");
    j.cells += j.secs.back().cell_count;
  }
  if (j.secs.empty()) throw KvBlobError("no kv chunks to join");
  const auto& secs = j.secs;
  const KvSection& a = secs[0];
  for (size_t i = 1; i < secs.size(); ++i) {
    const KvSection& b = secs[i];
    if (b.v_trans != a.v_trans || b.k.size() != a.k.size() || b.v.size() != a.v.size()) {
      throw KvBlobError("kv chunk " + std::to_string(i) + " has another layer layout");
    }
    for (size_t l = 0; l < a.k.size(); ++l) {
      if (a.k[l].type != b.k[l].type || a.k[l].row_size != b.k[l].row_size) {
        throw KvBlobError("kv chunk " + std::to_string(i) + " has another K type in layer " +
                          std::to_string(l));
      }
    }
    for (size_t l = 0; l < a.v.size(); ++l) {
      if (a.v[l].type != b.v[l].type || a.v[l].row_size != b.v[l].row_size ||
          a.v[l].n_embd != b.v[l].n_embd) {
        throw KvBlobError("kv chunk " + std::to_string(i) + " has another V type in layer " +
                          std::to_string(l));
      }
    }
    if (b.first_pos(parts[i]) != secs[i - 1].last_pos(parts[i - 1]) + 1) {
      throw KvBlobError("kv chunk " + std::to_string(i) + " starts at position " +
                        std::to_string(b.first_pos(parts[i])) + ", expected " +
                        std::to_string(secs[i - 1].last_pos(parts[i - 1]) + 1));
    }
  }
  // The joined section: stream and cell counts, cell meta, v_trans and n_layer, then per layer
  // its type and row header and the rows of every cell.
  j.bytes = 4 + 4 + size_t(j.cells) * a.meta_cell_size + 4 + 4;
  for (const auto& k : a.k) j.bytes += 4 + 8 + k.row_size * j.cells;
  for (const auto& v : a.v) {
    j.bytes +=
        a.v_trans ? 4 + 4 + 4 + v.row_size * v.n_embd * j.cells : 4 + 8 + v.row_size * j.cells;
  }
  return j;
}

// Appends the joined section to `out`, which has the capacity for it (one copy of each byte,
// no reallocation).
void write_joined(std::vector<uint8_t>& out, const std::vector<std::span<const uint8_t>>& parts,
                  const Joinable& j) {
  const auto& secs = j.secs;
  const KvSection& a = secs[0];
  auto append = [&out](const uint8_t* d, size_t n) { out.insert(out.end(), d, d + n); };
  put<uint32_t>(out, 1);
  put<uint32_t>(out, j.cells);
  for (size_t i = 0; i < parts.size(); ++i) {
    append(parts[i].data() + secs[i].meta_offset, secs[i].cell_count * secs[i].meta_cell_size);
  }
  put<uint32_t>(out, a.v_trans ? 1 : 0);
  put<uint32_t>(out, static_cast<uint32_t>(a.k.size()));
  for (size_t l = 0; l < a.k.size(); ++l) {
    put<int32_t>(out, a.k[l].type);
    put<uint64_t>(out, a.k[l].row_size);
    for (size_t i = 0; i < parts.size(); ++i) {
      append(parts[i].data() + secs[i].k[l].offset, secs[i].k[l].row_size * secs[i].cell_count);
    }
  }
  for (size_t l = 0; l < a.v.size(); ++l) {
    put<int32_t>(out, a.v[l].type);
    if (!a.v_trans) {
      put<uint64_t>(out, a.v[l].row_size);
      for (size_t i = 0; i < parts.size(); ++i) {
        append(parts[i].data() + secs[i].v[l].offset, secs[i].v[l].row_size * secs[i].cell_count);
      }
    } else {
      // Transposed V: each embedding row holds one element per cell, so interleave per row.
      put<uint32_t>(out, static_cast<uint32_t>(a.v[l].row_size));
      put<uint32_t>(out, a.v[l].n_embd);
      for (uint32_t r = 0; r < a.v[l].n_embd; ++r) {
        for (size_t i = 0; i < parts.size(); ++i) {
          const size_t row = a.v[l].row_size * secs[i].cell_count;
          append(parts[i].data() + secs[i].v[l].offset + r * row, row);
        }
      }
    }
  }
}

}  // namespace

std::vector<uint8_t> concat_kv_sections(const std::vector<std::span<const uint8_t>>& parts,
                                        size_t cell_ext_size, bool has_v) {
  const Joinable j = check_joinable(parts, cell_ext_size, has_v);
  std::vector<uint8_t> out;
  out.reserve(j.bytes);
  write_joined(out, parts, j);
  return out;
}

std::vector<uint8_t> filler_section(const KvSection& like, int32_t first, uint32_t n,
                                    size_t cell_ext_size) {
  std::vector<uint8_t> out;
  auto zeros = [&out](size_t bytes) { out.insert(out.end(), bytes, 0); };
  put<uint32_t>(out, 1);
  put<uint32_t>(out, n);
  for (uint32_t i = 0; i < n; ++i) {  // pos, n_seq_id, [ext], seq_id
    put<int32_t>(out, first + static_cast<int32_t>(i));
    put<uint32_t>(out, 1);
    zeros(cell_ext_size);
    put<int32_t>(out, 0);
  }
  if (n == 0) return out;
  put<uint32_t>(out, like.v_trans ? 1 : 0);
  put<uint32_t>(out, static_cast<uint32_t>(like.k.size()));
  for (const auto& k : like.k) {
    put<int32_t>(out, k.type);
    put<uint64_t>(out, k.row_size);
    zeros(k.row_size * n);
  }
  for (const auto& v : like.v) {
    put<int32_t>(out, v.type);
    if (!like.v_trans) {
      put<uint64_t>(out, v.row_size);
      zeros(v.row_size * n);
    } else {
      put<uint32_t>(out, static_cast<uint32_t>(v.row_size));
      put<uint32_t>(out, v.n_embd);
      zeros(v.row_size * v.n_embd * n);
    }
  }
  return out;
}

}  // namespace kvstash::engine
