#include "cli/calibration.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "util/log.h"

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

double calibrate_disk(const std::string& chunks_dir, cache::RateModel& rates) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path largest;
  uintmax_t size = 0;
  for (const auto& e : fs::directory_iterator(chunks_dir, ec)) {
    const auto n = e.is_regular_file(ec) ? e.file_size(ec) : 0;
    if (!ec && n > size) largest = e.path(), size = n;
  }
  if (size == 0) return 0;
  // Unfilled memory: zero-filling it would be timed as well.
  std::unique_ptr<char[]> buf(new char[size]);
  const auto t0 = std::chrono::steady_clock::now();
  std::ifstream f(largest, std::ios::binary);
  f.read(buf.get(), static_cast<std::streamsize>(size));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!f || secs <= 0) return 0;
  const double rate = static_cast<double>(size) / secs;
  rates.seed_restore(cache::Source::kDisk, rate);
  char line[160];
  std::snprintf(line, sizeof line,
                "kv cache calibration: disk read %.1f MiB in %.1f ms (%.2f GB/s)",
                static_cast<double>(size) / (1 << 20), secs * 1e3, rate / 1e9);
  log::info(line);
  return rate;
}

}  // namespace kvstash::cli
