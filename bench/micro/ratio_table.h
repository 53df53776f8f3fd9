// The console reporter of kvstash-bench-micro: google-benchmark's tables as usual, then the ratio
// table (each store/load figure over the raw write/read of the same bytes, same run).
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

namespace kvstash::micro {

// Console output as usual; remembers bytes/s per benchmark for the ratio table.
class Recorder : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (this reporter replaces the one --benchmark_color would set up).
  Recorder();

  void ReportRuns(const std::vector<Run>& runs) override;

  // Benchmarks that reported an error other than a skip ("name: message").
  const std::vector<std::string>& failed() const { return failed_; }

  void print_ratios() const;

 private:
  std::map<std::string, std::map<std::string, double>> rates_;
  std::vector<std::string> failed_;  // benchmarks that reported an error
};

}  // namespace kvstash::micro
