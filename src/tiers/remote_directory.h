// The remote directory: which objects of a prompt's chain the shared remote tier holds beyond
// what this process's index knows, and which remote objects this process refuses to take again.
//
// Other servers write to the remote tier, so the index cannot know its content; it asks along a
// prompt's chain when planning (Redis round trips, so never under the index lock). An object the
// engine refused (its bytes passed the checksum but do not form a state) is never taken from the
// remote tier again by this process — other servers may upload the same bytes again — until this
// process stores the prefix itself.
#pragma once

#include <mutex>
#include <unordered_set>
#include <vector>

#include "core/key.h"
#include "core/types.h"

namespace kvstash::tiers {

class RemoteTier;

class RemoteDirectory {
 public:
  RemoteDirectory(RemoteTier* remote, uint32_t chunk) : remote_(remote), chunk_(chunk) {}

  // Metadata of the remote objects along `chain` past its first `local` chunks: the chunks that
  // continue it, and the entries under any chunk up to there. Empty without a remote tier.
  std::vector<cache::ObjectMeta> discover(const cache::Chain& chain, size_t local);
  void reject(const cache::Key& key);
  void accept(const cache::Key& key);  // stored by this process: its own bytes
  bool rejected(const cache::Key& key) const;

 private:
  RemoteTier* remote_;
  uint32_t chunk_;
  mutable std::mutex mu_;
  std::unordered_set<cache::Key, cache::KeyHash> rejected_;
};

}  // namespace kvstash::tiers
