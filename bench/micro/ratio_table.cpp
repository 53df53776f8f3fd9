#include "ratio_table.h"

#include <unistd.h>

#include <cstdio>

#include "micro.h"

namespace kvstash::micro {

Recorder::Recorder() : ConsoleReporter(::isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

void Recorder::ReportRuns(const std::vector<Run>& runs) {
  for (const auto& r : runs) {
    if (r.error_occurred && !r.error_message.starts_with(kSkipped)) {
      failed_.push_back(r.benchmark_name() + ": " + r.error_message);
    }
    if (r.error_occurred) continue;
    if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
    auto it = r.counters.find("bytes_per_second");
    if (it == r.counters.end()) continue;
    // "Op/tok_bytes:114688/objs:8/real_time" -> op, rest
    std::string name = r.run_name.str();
    const size_t slash = name.find('/');
    if (slash == std::string::npos) continue;
    if (name.ends_with("/real_time")) name.resize(name.size() - 10);
    rates_[name.substr(slash + 1)][name.substr(0, slash)] = it->second.value;
  }
  ConsoleReporter::ReportRuns(runs);
}

void Recorder::print_ratios() const {
  static const struct {
    const char *what, *op, *base;
  } pairs[] = {
      {"store: DiskTier::put / raw write+fsync", "TierPut", "RawWrite"},
      {"store: PrefixCache::store / raw write+fsync", "CacheStore", "RawWrite"},
      {"load warm: DiskTier::get / raw read", "TierGet", "RawRead"},
      {"load warm: PrefixCache::load / raw read", "CacheLoad", "RawRead"},
      {"load cold: DiskTier::get / raw read", "TierGetCold", "RawReadCold"},
      {"load cold: PrefixCache::load / raw read", "CacheLoadCold", "RawReadCold"},
      {"engine restore warm / raw read", "EngineRestore", "EngineRawRead"},
      {"engine restore cold / raw read", "EngineRestoreCold", "EngineRawReadCold"},
  };
  bool header = false;
  for (const auto& [args, ops] : rates_) {
    for (const auto& p : pairs) {
      auto a = ops.find(p.op), b = ops.find(p.base);
      if (a == ops.end() || b == ops.end() || b->second <= 0) continue;
      if (!header) {
        std::printf("\n| ratio | args | MiB/s | raw MiB/s | ratio |\n|---|---|---|---|---|\n");
        header = true;
      }
      std::printf("| %s | %s | %.0f | %.0f | %.2f |\n", p.what, args.c_str(), a->second / (1 << 20),
                  b->second / (1 << 20), a->second / b->second);
    }
  }
}

}  // namespace kvstash::micro
