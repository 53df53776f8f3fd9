// A storage tier for cache objects (chunks and entries), addressed by kind and key.
//
// Tiers only store and fetch bytes; what to store and what to evict is decided in src/cache/.
// Every tier verifies what it returns: a damaged object is dropped and reported, never served.
//
// Errors (one convention for every tier operation: Tier, DiskTier, RamTier, RemoteTier, TierSet,
// result.h): an operation returns Status, or Result<T> when it has a value, and a failure is an
// IoError, whose kind says what the caller may do about it: kMissing (not there), kDamaged (was
// there, failed verification, removed by the tier), kUnavailable (tier not configured or
// unreachable), kFull (no space, or no room in a bounded queue), kIo (anything else); `what` is
// one line for the log. Operations never throw and never report through strings, out-parameters
// or flags. Only constructors throw (std::invalid_argument, std::runtime_error: a directory that
// cannot be used, a malformed --cache-remote URL), since a tier that cannot be built cannot
// answer anything; configuration errors are reported at startup that way. Failures that leave
// the object usable (the disk tier's directory fsync after a rename, its usage-statistics
// writes) are not errors of the operation: logged and counted (DiskTier::io_errors()).
#pragma once

#include <span>

#include "core/types.h"
#include "tiers/result.h"
#include "util/buffer_pool.h"

namespace kvstash::tiers {

struct StoredObject {
  cache::ObjectMeta meta;
  cache::ObjectStats stats;
};

class Tier {
 public:
  virtual ~Tier() = default;
  virtual const char* name() const = 0;
  // Stores atomically: afterwards the object is either complete or absent.
  virtual Status put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                     std::span<const uint8_t> payload) = 0;
  // The verified payload (never null); kMissing, or kDamaged (then removed from the tier).
  virtual Result<Payload> get(cache::ObjKind kind, const cache::Key& key) = 0;
  // Removing what is not there succeeds.
  virtual Status remove(cache::ObjKind kind, const cache::Key& key) = 0;
  // Usage statistics kept next to the object (hits, last use), where the tier keeps them.
  virtual Status update_stats(cache::ObjKind kind, const cache::Key& key,
                              const cache::ObjectStats& stats) = 0;
  // Bytes the object occupies in this tier (what its budget counts).
  virtual uint64_t object_size(const cache::ObjectMeta& meta) const = 0;
};

}  // namespace kvstash::tiers
