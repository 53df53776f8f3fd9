#include "cache/restore_choice.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>

namespace kvstash::cache {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTieFraction = 0.02;

size_t idx(Source s) { return static_cast<size_t>(s); }
bool moves_nothing(Source s) { return s == Source::kLive || s == Source::kRecompute; }

// Lower bound of bucket b's positions; bucket_lo(kBuckets) is past every position.
uint64_t bucket_lo(size_t b) {
  if (b == 0) return 0;
  if (b >= RateModel::kBuckets) return uint64_t{1} << 32;
  return uint64_t{1} << (b + 9);
}

std::string ms(double s) {
  if (std::isnan(s)) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s * 1000.0);
  return buf;
}
}  // namespace

const char* source_name(Source s) {
  switch (s) {
    case Source::kLive:
      return "live";
    case Source::kVram:
      return "vram";
    case Source::kRam:
      return "ram";
    case Source::kDisk:
      return "disk";
    case Source::kRemote:
      return "remote";
    case Source::kRecompute:
      return "recompute";
  }
  return "?";
}

RateModel::RateModel() {
  tier_[idx(Source::kVram)].value = 200e9;
  tier_[idx(Source::kRam)].value = 8e9;
  tier_[idx(Source::kDisk)].value = 1.5e9;
  tier_[idx(Source::kRemote)].value = 0.3e9;
  page_cache_.value = 6e9;
}

size_t RateModel::bucket_of(uint32_t pos) {
  if (pos < 1024) return 0;
  return std::min<size_t>(kBuckets - 1, std::bit_width(pos) - 10);  // 1024..2047 -> 1
}

void RateModel::blend(Rate& r, double v) {
  r.value = r.observed ? r.value + kAlpha * (v - r.value) : v;
  r.observed = true;
}

void RateModel::seed_restore(Source tier, double bytes_per_s) {
  if (moves_nothing(tier) || !(bytes_per_s >= 0) || std::isinf(bytes_per_s)) return;
  std::lock_guard lk(mu_);
  if (!tier_[idx(tier)].observed) tier_[idx(tier)].value = bytes_per_s;
}

void RateModel::seed_page_cache(double bytes_per_s) {
  if (!(bytes_per_s >= 0) || std::isinf(bytes_per_s)) return;
  std::lock_guard lk(mu_);
  if (!page_cache_.observed) page_cache_.value = bytes_per_s;
}

void RateModel::observe_restore(Source tier, uint64_t bytes, double seconds, uint64_t page_cached) {
  if (moves_nothing(tier) || bytes == 0 || !(seconds > 0) || std::isinf(seconds)) return;
  const double rate = static_cast<double>(bytes) / seconds;
  std::lock_guard lk(mu_);
  if (tier != Source::kDisk || page_cached * 10 <= bytes) {
    blend(tier_[idx(tier)], rate);
  } else if (page_cached * 10 >= bytes * 9) {
    blend(page_cache_, rate);
  }
}

void RateModel::add_prefill(uint32_t begin, uint32_t end, double seconds, bool seed) {
  if (end <= begin || !(seconds > 0) || std::isinf(seconds)) return;
  const double rate = (end - begin) / seconds;
  const uint32_t mid = begin + (end - begin) / 2;
  std::lock_guard lk(mu_);
  Rate& r = prefill_[bucket_of(mid)];
  if (!seed) {
    blend(r, rate);
  } else if (!r.observed) {
    r.value = rate;
  }
}

void RateModel::observe_prefill(uint32_t begin, uint32_t end, double seconds) {
  add_prefill(begin, end, seconds, false);
}

void RateModel::seed_prefill(uint32_t begin, uint32_t end, double seconds) {
  add_prefill(begin, end, seconds, true);
}

double RateModel::tier_rate(Source tier) const {
  if (moves_nothing(tier)) return kInf;
  std::lock_guard lk(mu_);
  return tier_[idx(tier)].value;
}

double RateModel::page_cache_rate() const {
  std::lock_guard lk(mu_);
  return page_cache_.value;
}

double RateModel::restore_seconds(Source tier, uint64_t bytes, uint64_t page_cached) const {
  if (bytes == 0 || moves_nothing(tier)) return 0;
  const uint64_t cached = tier == Source::kDisk ? std::min(page_cached, bytes) : 0;
  auto over = [](uint64_t n, double rate) {
    return n == 0 ? 0.0 : rate > 0 ? static_cast<double>(n) / rate : kNaN;
  };
  return over(bytes - cached, tier_rate(tier)) + over(cached, page_cache_rate());
}

// Nearest bucket with data, the longer-context one on a tie; NaN when none has data.
double RateModel::bucket_rate_locked(size_t b) const {
  for (size_t d = 0; d < kBuckets; ++d) {
    if (b + d < kBuckets && prefill_[b + d].value > 0) return prefill_[b + d].value;
    if (d <= b && prefill_[b - d].value > 0) return prefill_[b - d].value;
  }
  return kNaN;
}

bool RateModel::knows_prefill() const {
  std::lock_guard lk(mu_);
  return std::any_of(prefill_.begin(), prefill_.end(), [](const Rate& r) { return r.value > 0; });
}

double RateModel::prefill_rate(uint32_t pos) const {
  std::lock_guard lk(mu_);
  return bucket_rate_locked(bucket_of(pos));
}

double RateModel::prefill_seconds(uint32_t begin, uint32_t end) const {
  if (end <= begin) return 0;
  std::lock_guard lk(mu_);
  double total = 0;
  for (size_t b = bucket_of(begin); b < kBuckets && bucket_lo(b) < end; ++b) {
    const uint64_t lo = std::max<uint64_t>(begin, bucket_lo(b));
    const uint64_t hi = std::min<uint64_t>(end, bucket_lo(b + 1));
    total += static_cast<double>(hi - lo) / bucket_rate_locked(b);  // NaN propagates
  }
  return total;
}

Choice choose(uint32_t prompt_len, const std::vector<PlanOption>& cands, const RateModel& rates) {
  Choice c;
  const size_t n = cands.size();
  std::vector<double> restore(n, 0.0);
  bool any_known = false;
  for (size_t i = 0; i < n; ++i) {
    for (size_t t = 0; t < kSourceCount; ++t) {
      restore[i] +=
          rates.restore_seconds(static_cast<Source>(t), cands[i].bytes[t], cands[i].page_cached);
    }
    any_known = any_known || !std::isnan(restore[i]);
    const uint32_t start = std::min(cands[i].start, prompt_len);
    c.est_seconds.push_back(restore[i] + rates.prefill_seconds(start, prompt_len));
  }
  c.recompute_seconds = rates.prefill_seconds(0, prompt_len);

  // Unknown restores only compete when no candidate has a known one.
  auto eligible = [&](size_t i) { return !any_known || !std::isnan(restore[i]); };
  auto or_inf = [](double v) { return std::isnan(v) ? kInf : v; };
  const bool by_estimate = any_known && rates.knows_prefill();
  double limit = kInf;
  if (by_estimate) {
    double best = kInf;
    for (size_t i = 0; i < n; ++i) {
      if (eligible(i)) best = std::min(best, or_inf(c.est_seconds[i]));
    }
    limit = best * (1.0 + kTieFraction);
  }
  // Among the eligible within the limit: the largest start, then the smallest estimate (or
  // restore time, where the prefill is unknown).
  const auto key = [&](size_t j) {
    return std::pair(-static_cast<int64_t>(std::min(cands[j].start, prompt_len)),
                     by_estimate ? or_inf(c.est_seconds[j]) : or_inf(restore[j]));
  };
  bool found = false;
  for (size_t i = 0; i < n; ++i) {
    if (!eligible(i) || or_inf(c.est_seconds[i]) > limit) continue;
    if (!found || key(i) < key(c.index)) c.index = i;
    found = true;
  }

  std::string log = "kv cache plan tokens=" + std::to_string(prompt_len);
  if (n == 0) {
    c.log = log + " no candidates";
    return c;
  }
  const PlanOption& pick = cands[c.index];
  log += std::string(" chose=") + source_name(pick.source) +
         " start=" + std::to_string(pick.start) + " keep=" + std::to_string(pick.keep) +
         " est=" + ms(c.est_seconds[c.index]) + " ms, recompute est=" + ms(c.recompute_seconds) +
         " ms";
  if (!by_estimate) log += any_known ? " (no prefill data: longest)" : " (no estimates: longest)";
  log += " candidates(start/keep)=[";
  for (size_t i = 0; i < n; ++i) {
    log += std::string(i ? "; " : "") + source_name(cands[i].source) + " " +
           std::to_string(cands[i].start) + "/" + std::to_string(cands[i].keep) + " " +
           ms(c.est_seconds[i]) + " ms";
    if (const uint64_t d = cands[i].bytes[idx(Source::kDisk)]; d > 0) {
      log += " (page cache " + std::to_string(std::min(cands[i].page_cached, d) * 100 / d) + "%)";
    }
  }
  c.log = log + "]";
  return c;
}

}  // namespace kvstash::cache
