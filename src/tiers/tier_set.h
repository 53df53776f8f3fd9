// The tier set: the tiers behind one cache namespace (RAM in front of disk, a shared remote tier
// behind both), their budgets and the bytes each holds.
//
// It moves bytes and counts them; what to keep where is decided in src/cache/ (the facade and
// the eviction policy), which tells the set when an object enters or leaves a tier (count()).
// Byte counts are kept incrementally, so a budget check never walks the index.
//
// Thread safety: the I/O calls (read, write_disk, put_ram, put_remote, remove,
// update_disk_stats) may run on any thread, outside the cache's index lock; each tier guards
// itself. count()/used() are atomic.
//
// Errors: the tier API's convention (tier.h, result.h); an operation on a tier that is not
// configured fails with kUnavailable.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device_memory.h"
#include "core/types.h"
#include "tiers/remote_tier.h"
#include "util/buffer_pool.h"

namespace kvstash::tiers {

class DiskTier;
class RamTier;
class VramTier;

enum class Where : uint8_t { kNone, kRam, kDisk, kRemote, kVram };

struct TierConfig {
  std::string dir;  // disk tier directory; empty: no disk tier
  uint64_t disk_budget = 0;
  uint64_t ram_budget = 0;  // 0: no RAM tier
  RemoteConfig remote;      // remote.url empty: no remote tier
  // The VRAM tier's memory (null: no VRAM tier); its budget is the memory's capacity.
  std::shared_ptr<DeviceMemory> vram;
};

class TierSet {
 public:
  TierSet(const TierConfig& cfg, const Fingerprint16& fingerprint,
          std::shared_ptr<BufferPool> pool);
  ~TierSet();

  DiskTier* disk() { return disk_.get(); }
  RamTier* ram() { return ram_.get(); }
  RemoteTier* remote() { return remote_.get(); }
  VramTier* vram() { return vram_.get(); }
  // A local tier's budget; the disk's is the configured one capped by what its filesystem
  // holds (refresh_disk_cap(), cap_disk()).
  uint64_t budget(Where w) const;
  // The disk budget's cap becomes the bytes the disk tier holds plus what its filesystem has
  // free (no cap if that cannot be told).
  void refresh_disk_cap();
  // The disk budget's cap becomes `cap` bytes (a write found the disk full), until the next
  // refresh_disk_cap().
  void cap_disk(uint64_t cap) { disk_cap_ = cap; }
  // Bytes the object occupies in a local tier (what its budget counts).
  uint64_t size_in(Where w, const cache::ObjectMeta& meta) const;
  uint64_t used(Where w) const { return used_[index(w)].load(); }
  // The object entered (add) or left a local tier: the count follows.
  void count(Where w, const cache::ObjectMeta& meta, bool add);

  // Where a reader should look, fastest first.
  struct Held {
    bool ram = false, disk = false, remote = false;
  };
  struct Served {
    Payload payload;  // verified
    Where from = Where::kNone;
  };
  struct Read {
    // The payload and the tier that served it, or the error of the last tier tried (kMissing
    // if `held` named no configured tier).
    Result<Served> got;
    // Every tier in `held` that was tried and failed (missing there, or damaged and removed by
    // the tier), fastest first: the caller's index no longer counts on those copies.
    std::vector<std::pair<Where, IoError>> failed;
  };
  // The verified payload from the fastest tier in `held` that has it.
  Read read(cache::ObjKind kind, const cache::Key& key, Held held);
  // Atomic, durable disk write (write, fsync, rename).
  Status write_disk(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                    const Payload& payload);
  // Keeps the buffer in RAM as it is (no copy), with its checksum computed by the caller.
  Status put_ram(const cache::ObjectMeta& meta, const Payload& payload, uint64_t checksum);
  // Queues the object for the remote tier's writer (a drop is an error the caller may ignore).
  Status put_remote(const cache::ObjectMeta& meta, const cache::ObjectStats& st,
                    const Payload& payload);
  Status remove(Where w, cache::ObjKind kind, const cache::Key& key);
  // Usage statistics written next to a disk object (its hits, last use).
  Status update_disk_stats(cache::ObjKind kind, const cache::Key& key,
                           const cache::ObjectStats& st);

 private:
  TierConfig cfg_;
  std::unique_ptr<DiskTier> disk_;
  std::unique_ptr<RamTier> ram_;
  std::unique_ptr<RemoteTier> remote_;
  std::unique_ptr<VramTier> vram_;
  static size_t index(Where w) { return w == Where::kDisk ? 1 : w == Where::kVram ? 2 : 0; }
  std::array<std::atomic<uint64_t>, 3> used_{};  // [0] RAM, [1] disk, [2] VRAM
  std::atomic<uint64_t> disk_cap_{UINT64_MAX};
};

}  // namespace kvstash::tiers
