#include "engine/kv_blob.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace kvstash::engine;

namespace {

template <typename T>
void put(std::vector<uint8_t>& o, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  o.insert(o.end(), p, p + sizeof(T));
}

// A synthetic KV section for cells at positions [begin, end): layers x (K rows, V rows) whose
// bytes encode (layer, kind, position, byte) so misplaced data is detectable.
std::vector<uint8_t> section(int begin, int end, bool v_trans, int layers = 3, int row = 8,
                             int32_t k_type = 1, bool has_v = true) {
  std::vector<uint8_t> o;
  const uint32_t n = end - begin;
  put<uint32_t>(o, 1);
  put<uint32_t>(o, n);
  for (int p = begin; p < end; ++p) {
    put<int32_t>(o, p);
    put<uint32_t>(o, 1);
    put<int32_t>(o, 0);
  }
  put<uint32_t>(o, v_trans);
  put<uint32_t>(o, layers);
  for (int l = 0; l < layers; ++l) {
    put<int32_t>(o, k_type);
    put<uint64_t>(o, row);
    for (int p = begin; p < end; ++p)
      for (int b = 0; b < row; ++b) o.push_back(uint8_t(l * 31 + p * 7 + b));
  }
  for (int l = 0; has_v && l < layers; ++l) {
    put<int32_t>(o, 1);
    if (!v_trans) {
      put<uint64_t>(o, row);
      for (int p = begin; p < end; ++p)
        for (int b = 0; b < row; ++b) o.push_back(uint8_t(l * 13 + p * 5 + b + 100));
    } else {
      put<uint32_t>(o, 2);    // element size
      put<uint32_t>(o, row);  // embedding rows
      for (int j = 0; j < row; ++j)
        for (int p = begin; p < end; ++p) {
          o.push_back(uint8_t(l * 13 + j * 3 + p));
          o.push_back(uint8_t(l + j + p * 11));
        }
    }
  }
  return o;
}

}  // namespace

TEST(KvBlob, ParsesSectionAndFindsItsEnd) {
  auto s = section(10, 20, false);
  s.push_back(0xAB);  // a hybrid model's recurrent state would follow here
  const KvSection k = parse_kv_section(s, 0);
  EXPECT_EQ(k.cell_count, 10u);
  EXPECT_EQ(k.first_pos(s), 10);
  EXPECT_EQ(k.last_pos(s), 19);
  EXPECT_EQ(k.k.size(), 3u);
  EXPECT_EQ(k.end, s.size() - 1);
}

TEST(KvBlob, ConcatEqualsOneSectionOverTheWholeRange) {
  for (bool v_trans : {false, true}) {
    const auto a = section(0, 4, v_trans), b = section(4, 9, v_trans), c = section(9, 10, v_trans);
    const auto joined = concat_kv_sections({a, b, c}, 0);
    EXPECT_EQ(joined, section(0, 10, v_trans)) << "v_trans=" << v_trans;
  }
}

TEST(KvBlob, RefusesGapsAndMismatchedLayouts) {
  const auto a = section(0, 4, false);
  EXPECT_THROW(concat_kv_sections({a, section(5, 8, false)}, 0), KvBlobError);
  EXPECT_THROW(concat_kv_sections({a, section(4, 8, false, 2)}, 0), KvBlobError);
  EXPECT_THROW(concat_kv_sections({a, section(4, 8, false, 3, 8, 8)}, 0), KvBlobError);
  EXPECT_THROW(concat_kv_sections({a, section(4, 8, true)}, 0), KvBlobError);
}

TEST(KvBlob, RefusesTruncatedAndImplausibleInput) {
  const auto a = section(0, 4, false);
  for (size_t cut : {size_t(0), size_t(3), size_t(20), a.size() - 1}) {
    EXPECT_THROW(parse_kv_section(std::span(a.data(), cut), 0), KvBlobError) << cut;
  }
  // A wrong cell-extension size misreads the header and must be caught, not trusted.
  EXPECT_THROW(parse_kv_section(a, 12), KvBlobError);
}

// MLA caches (deepseek2) write K rows only: the section ends after them, and chunks join.
TEST(KvBlob, MlaSectionsHaveNoV) {
  const auto a = section(0, 4, false, 2, 8, 1, false), b = section(4, 9, false, 2, 8, 1, false);
  const KvSection k = parse_kv_section(a, 0, false);
  EXPECT_TRUE(k.v.empty());
  EXPECT_EQ(k.end, a.size());
  EXPECT_EQ(concat_kv_sections({a, b}, 0, false), section(0, 9, false, 2, 8, 1, false));
  // Read as K/V, the same bytes are refused rather than misread.
  EXPECT_THROW(parse_kv_section(a, 0, true), KvBlobError);
}

// Fillers take the layout of the window they precede and hold zeros at the positions asked.
TEST(KvBlob, FillerSectionHasTheWindowsLayout) {
  for (bool v_trans : {false, true}) {
    const auto w = section(300, 310, v_trans);
    const KvSection ws = parse_kv_section(w, 0);
    const auto f = filler_section(ws, 290, 10, 0);
    const KvSection fs = parse_kv_section(f, 0);
    EXPECT_EQ(fs.end, f.size());
    EXPECT_EQ(fs.cell_count, 10u);
    EXPECT_EQ(fs.first_pos(f), 290);
    EXPECT_EQ(fs.last_pos(f), 299);
    EXPECT_EQ(fs.v_trans, v_trans);
    ASSERT_EQ(fs.k.size(), ws.k.size());
    for (size_t l = 0; l < fs.k.size(); ++l) {
      EXPECT_EQ(fs.k[l].row_size, ws.k[l].row_size);
      EXPECT_EQ(fs.v[l].n_embd, ws.v[l].n_embd);
    }
    // They continue into the window like any earlier chunk.
    EXPECT_NO_THROW(concat_kv_sections({f, w}, 0));
  }
}
