#include "cli/calibration.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "util/log.h"
#include "util/page_cache.h"

namespace kvstash::cli {

double calibrate_prefill(engine::Session& s, cache::RateModel& rates, int tokens) {
  const int chunk = s.options().chunk;
  tokens = std::min(tokens, s.options().n_ctx) / chunk * chunk;
  if (tokens < 2 * chunk) return 0;
  // Tokens of the vocabulary's ordinary range; their values do not change the speed.
  std::vector<engine::Token> toks(static_cast<size_t>(tokens));
  for (int i = 0; i < tokens; ++i) toks[static_cast<size_t>(i)] = 10 + (i * 7) % 1000;
  s.clear();
  s.prefill({toks.begin(), toks.begin() + chunk});
  const auto t0 = std::chrono::steady_clock::now();
  s.prefill(toks);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.clear();
  if (secs <= 0) return 0;
  rates.seed_prefill(static_cast<uint32_t>(chunk), static_cast<uint32_t>(tokens), secs);
  const double rate = (tokens - chunk) / secs;
  char line[160];
  std::snprintf(line, sizeof line,
                "kv cache calibration: prefill %d tokens in %.1f ms (%.0f tokens/s), the "
                "estimate's seed until requests measure it",
                tokens - chunk, secs * 1e3, rate);
  log::info(line);
  return rate;
}

double calibrate_disk(cache::PrefixCache& cache) {
  std::string path;
  uint64_t size = 0;
  for (const cache::Node& n : cache.objects()) {
    if (n.on_disk && n.meta.kind == cache::ObjKind::kChunk && n.meta.payload_bytes > size) {
      path = cache.disk_path(n.meta.kind, n.meta.key), size = n.meta.payload_bytes;
    }
  }
  if (path.empty()) return 0;
  std::error_code ec;
  size = std::filesystem::file_size(path, ec);
  if (ec || size == 0) return 0;
  // Zero-filled before the clock starts: a first read into untouched memory also times the
  // buffer's page faults (on the H100 machine a cached chunk read at 1.0 GB/s, then 5.8).
  auto buf = std::make_unique<char[]>(size);
  auto read_rate = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    std::ifstream f(path, std::ios::binary);
    f.read(buf.get(), static_cast<std::streamsize>(size));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return f && s > 0 ? static_cast<double>(size) / s : 0.0;
  };
  const uint64_t cached = util::page_cached_bytes(path);
  const double first = read_rate();
  const double second = read_rate();
  if (first <= 0) return 0;
  // The first read measured the device only if little was cached; the second reads the page
  // cache (the first filled it).
  if (cached * 10 <= size) cache.rates().seed_restore(cache::Source::kDisk, first);
  cache.rates().seed_page_cache(second > 0 ? second : first);
  char line[200];
  std::snprintf(line, sizeof line,
                "kv cache calibration: disk read %.1f MiB (%.0f%% in the page cache) at %.2f GB/s, "
                "again at %.2f GB/s",
                static_cast<double>(size) / (1 << 20), 100.0 * static_cast<double>(cached) / size,
                first / 1e9, second / 1e9);
  log::info(line);
  return first;
}

}  // namespace kvstash::cli
