// The model fingerprint names the whole llama.cpp build a state comes from: its upstream commit,
// kvstash's patch series (which defines the state layout) and the backend.
#include "engine/fingerprint.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "util/hex.h"

using namespace kvstash;

namespace {
// The id cmake/llama.sh gives the series: p + 8 hex digits of SHA-256(the patches in name order).
std::string patch_series_id() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(KVSTASH_SOURCE_DIR "/cmake/patches")) {
    if (e.path().extension() == ".patch") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string all;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::array<uint8_t, 32> md{};
  unsigned n = 0;
  EVP_Digest(all.data(), all.size(), md.data(), &n, EVP_sha256(), nullptr);
  return "p" + to_hex(md).substr(0, 8);
}
}  // namespace

TEST(Fingerprint, NamesThePatchSeriesAndTheBackend) {
  const std::string b = engine::llama_build();
  EXPECT_NE(b.find("llama="), std::string::npos) << b;
  EXPECT_NE(b.find(";patches=" + patch_series_id() + ";"), std::string::npos) << b;
  EXPECT_NE(b.find(";backend="), std::string::npos) << b;
  EXPECT_EQ(b.find("unknown"), std::string::npos) << b;
}

TEST(Fingerprint, DiffersWithTheBuild) {
  const engine::Fingerprint file;
  EXPECT_NE(engine::combine(file, "chunk=256;" + engine::llama_build()),
            engine::combine(file, "chunk=256;llama=x;patches=p0;backend=cpu"));
}
