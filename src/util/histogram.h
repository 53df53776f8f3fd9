// A latency histogram with fixed buckets, in the shape Prometheus exposes.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

namespace kvstash {

class Histogram {
 public:
  static constexpr std::array<double, 10> kBounds = {0.001, 0.005, 0.01, 0.05, 0.1,
                                                     0.5,   1.0,   5.0,  10.0, 60.0};  // seconds
  void observe(double seconds);
  // Prometheus text lines for metric `name` (with _bucket, _sum, _count).
  std::string prometheus(const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace kvstash
