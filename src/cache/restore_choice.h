// Restore or recompute: which way to reach a prompt's state is cheapest, as a pure function of
// plain data and observed rates.
//
// The longest cached prefix is not always the fastest: a cold disk or a remote tier can be slower
// than the engine's prefill (a GPU prefills tens of thousands of tokens a second), a live prefix
// that needs no load can beat a marginally longer one that does, and a delta restore (keep the
// live tokens, load only the rest) can beat both. So each candidate gets an estimate, bytes moved
// per tier over that tier's rate plus the prefill of the rest, and the cheapest wins. Rates are
// learned online (EWMA, so a disk that warms up or a busy link is followed) from what the server
// actually measures, seeded by defaults or a startup calibration. Prefill speed depends on the
// context length (attention grows with it), so it is kept per power-of-two context bucket. Without
// any prefill data the estimate is unknown and the longest prefix wins, as before this existed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace kvstash::cache {

// Where a candidate's bytes come from. kVram is a future tier; it is kept in the enum.
enum class Source : uint8_t { kLive, kVram, kRam, kDisk, kRemote, kRecompute };
inline constexpr size_t kSourceCount = 6;
const char* source_name(Source s);  // "live", "vram", "ram", "disk", "remote", "recompute"

// Observed rates, updated online and seeded by defaults or a startup calibration. Thread-safe
// (slots observe concurrently).
class RateModel {
 public:
  static constexpr double kAlpha = 0.3;  // EWMA weight of a new observation
  // Prefill buckets by context position: <1k, <2k, <4k, ..., <128k, >=128k.
  static constexpr size_t kBuckets = 9;

  // Seeds, used until the first observation of the tier: vram 200 GB/s, ram 8 GB/s, disk 1.5
  // GB/s (a read from the device) and 6 GB/s for disk bytes the page cache holds, remote 0.3
  // GB/s (GB = 1e9 bytes). Prefill: unknown. Live and recompute move nothing.
  RateModel();

  // Seed (calibration) of a tier's rate in bytes/s; 0 marks it unknown. Ignored once observed.
  void seed_restore(Source tier, double bytes_per_s);
  // The same for disk reads the page cache serves.
  void seed_page_cache(double bytes_per_s);
  // A restore moved `bytes` from `tier` in `seconds`; of a disk restore, `page_cached` bytes were
  // in the page cache when it began. The first observation replaces the seed, later ones are
  // blended in (EWMA). A disk restore updates the page-cache rate when at least 90% of its bytes
  // were cached, the device's when at most 10% were, neither in between (the time cannot be
  // split). Empty or non-positive measurements are ignored.
  void observe_restore(Source tier, uint64_t bytes, double seconds, uint64_t page_cached = 0);
  // A prefill of tokens [begin, end) took `seconds`; kept in the bucket of the midpoint
  // position, the first observation replacing a seed, later ones blended in (EWMA).
  void observe_prefill(uint32_t begin, uint32_t end, double seconds);
  // Calibration: like observe_prefill, but only a seed; a later seed of the same bucket replaces
  // it, and a seed of a bucket that has an observation is ignored.
  void seed_prefill(uint32_t begin, uint32_t end, double seconds);

  // bytes / tier_rate (for the disk, `page_cached` of them at the page cache's rate); 0 for live,
  // recompute or 0 bytes; NaN when a rate needed is unknown.
  double restore_seconds(Source tier, uint64_t bytes, uint64_t page_cached = 0) const;
  // Time to prefill [begin, end): the range is split at bucket borders, each part's tokens over
  // its bucket's rate; a bucket without data uses the nearest bucket with data (on a tie, the
  // longer-context one). Without any prefill data: 0 for an empty range, NaN otherwise.
  double prefill_seconds(uint32_t begin, uint32_t end) const;
  bool knows_prefill() const;
  double tier_rate(Source tier) const;      // bytes/s assumed now (infinite for live, recompute)
  double page_cache_rate() const;           // bytes/s of disk reads the page cache serves
  double prefill_rate(uint32_t pos) const;  // tokens/s assumed at `pos`; NaN without data

  static size_t bucket_of(uint32_t pos);

 private:
  struct Rate {
    double value = 0;  // bytes/s or tokens/s; 0: unknown
    bool observed = false;
  };
  static void blend(Rate& r, double v);
  void add_prefill(uint32_t begin, uint32_t end, double seconds, bool seed);
  double bucket_rate_locked(size_t b) const;

  mutable std::mutex mu_;
  std::array<Rate, kSourceCount> tier_{};  // kDisk: reads from the device
  Rate page_cache_;
  std::array<Rate, kBuckets> prefill_{};
};

// One way to reach the prompt's state: `start` tokens are available without prefill (kept live,
// or restored), the rest [start, prompt_len) is prefilled. `bytes` is how many bytes are moved
// from each tier to get there (all zero for kLive and kRecompute).
struct PlanOption {
  Source source = Source::kRecompute;  // the slowest tier involved, for logs and metrics
  uint32_t start = 0;
  uint32_t keep = 0;  // live tokens kept (a delta loads only [keep, start))
  std::array<uint64_t, kSourceCount> bytes{};  // indexed by Source
  uint64_t page_cached = 0;                    // of bytes[kDisk], those the page cache holds
};

struct Choice {
  size_t index = 0;                 // into the candidates
  std::vector<double> est_seconds;  // per candidate; NaN where unknown
  double recompute_seconds = 0;     // the full prefill [0, prompt_len); NaN where unknown
  std::string log;                  // one line: "kv cache plan tokens=N chose=ram start=M ..."
};

// Estimate per candidate: sum over tiers of restore_seconds + prefill_seconds(start, prompt_len).
// Picks the cheapest; within 2% of the cheapest the larger `start` wins (less compute, less
// energy). A candidate whose restore estimate is unknown is never chosen over one whose estimate
// is known. Without prefill data the largest `start` wins (the behaviour before estimates).
// `cands` must not be empty.
Choice choose(uint32_t prompt_len, const std::vector<PlanOption>& cands, const RateModel& rates);

}  // namespace kvstash::cache
