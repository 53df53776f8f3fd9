// Flags, test data and the bench directory of kvstash-bench-micro.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "micro.h"

namespace fs = std::filesystem;

namespace kvstash::micro {

Flags g_flags;

const std::array<uint8_t, 16> kFingerprint = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

void die(const std::string& what) {
  std::fprintf(stderr, "kvstash-bench-micro: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void skip(benchmark::State& state, const std::string& why) {
  state.SkipWithError((std::string(kSkipped) + why).c_str());
}

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> b(n);
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  for (; i < n; ++i) b[i] = static_cast<uint8_t>(rng());
  return b;
}

std::vector<cache::Token> random_tokens(size_t n, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<cache::Token> t(n);
  for (auto& x : t) x = static_cast<cache::Token>(rng() % 151000);
  return t;
}

cache::Key random_key(std::mt19937_64& rng) { return {rng(), rng()}; }

std::string sub_dir(const std::string& name) {
  const std::string d = g_flags.dir + "/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void set_bytes(benchmark::State& state, size_t per_iteration) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * per_iteration));
}

cache::CacheConfig cache_config(const std::string& dir) {
  cache::CacheConfig cc;
  cc.dir = dir;
  cc.chunk = kChunk;
  cc.disk_budget = 1ull << 40;
  return cc;
}

}  // namespace kvstash::micro
