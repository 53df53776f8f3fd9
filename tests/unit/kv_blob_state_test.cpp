// concat_seq_state(): the one-buffer restore path must produce exactly the bytes of the
// three-step one it replaced (join, append the recurrent state, put the sequence header in front).
#include <gtest/gtest.h>

#include "engine/kv_blob.h"

using namespace kvstash::engine;

namespace {

template <typename T>
void put(std::vector<uint8_t>& o, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  o.insert(o.end(), p, p + sizeof(T));
}

// Cells at positions [begin, end), 2 layers, rows of 6 bytes (V transposed: 2-byte elements).
std::vector<uint8_t> section(int begin, int end, bool v_trans, size_t ext = 0) {
  std::vector<uint8_t> o;
  put<uint32_t>(o, 1);
  put<uint32_t>(o, end - begin);
  for (int p = begin; p < end; ++p) {
    put<int32_t>(o, p);
    put<uint32_t>(o, 1);
    for (size_t e = 0; e < ext; ++e) o.push_back(uint8_t(p + e));
    put<int32_t>(o, 0);
  }
  put<uint32_t>(o, v_trans);
  put<uint32_t>(o, 2);
  for (int l = 0; l < 2; ++l) {
    put<int32_t>(o, 1);
    put<uint64_t>(o, 6);
    for (int p = begin; p < end; ++p)
      for (int b = 0; b < 6; ++b) o.push_back(uint8_t(l * 31 + p * 7 + b));
  }
  for (int l = 0; l < 2; ++l) {
    put<int32_t>(o, 1);
    if (!v_trans) {
      put<uint64_t>(o, 6);
      for (int p = begin; p < end; ++p)
        for (int b = 0; b < 6; ++b) o.push_back(uint8_t(l * 13 + p * 5 + b + 100));
    } else {
      put<uint32_t>(o, 2);
      put<uint32_t>(o, 3);
      for (int j = 0; j < 3; ++j)
        for (int p = begin; p < end; ++p) {
          o.push_back(uint8_t(l * 13 + j * 3 + p));
          o.push_back(uint8_t(l + j + p * 11));
        }
    }
  }
  return o;
}

}  // namespace

TEST(KvBlob, SeqStateEqualsHeaderPlusJoinedSectionsPlusTrailer) {
  for (bool v_trans : {false, true}) {
    for (size_t ext : {size_t(0), size_t(12)}) {
      const auto a = section(0, 3, v_trans, ext), b = section(3, 8, v_trans, ext),
                 c = section(8, 9, v_trans, ext);
      for (const std::vector<uint8_t>& trailer :
           {std::vector<uint8_t>{}, std::vector<uint8_t>{1, 2, 3, 4, 5}}) {
        auto expect = concat_kv_sections({a, b, c}, ext);
        EXPECT_EQ(expect, section(0, 9, v_trans, ext));
        expect.insert(expect.end(), trailer.begin(), trailer.end());
        const auto got = concat_seq_state({a, b, c}, trailer, ext);
        EXPECT_EQ(got, with_seq_header(expect)) << "v_trans=" << v_trans << " ext=" << ext;
        EXPECT_EQ(got.capacity(), got.size()) << "sized up front";
      }
    }
  }
  EXPECT_THROW(concat_seq_state({section(0, 3, false), section(4, 5, false)}, {}, 0), KvBlobError);
  EXPECT_THROW(concat_seq_state({}, {}, 0), KvBlobError);
}
