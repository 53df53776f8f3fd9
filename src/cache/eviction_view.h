// The eviction policy's view of the index: which objects of one tier to evict so that `incoming`
// bytes fit its budget. It turns index nodes into eviction candidates (eviction.h) — parent links,
// hits, age, protected prefixes of the incoming prompt, superseded checkpoints, objects a
// snapshot-only model can never restore from — and returns the victims. Pure over the index: no
// I/O; the caller removes the victims from the tier.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cache/eviction.h"
#include "cache/prefix_index.h"

namespace kvstash::cache {

using ObjId = std::pair<ObjKind, Key>;

struct RoomRequest {
  bool disk = true;                  // which tier (disk or RAM)
  uint64_t used = 0;                 // bytes the tier holds now
  uint64_t budget = 0;               // its budget
  uint64_t incoming = 0;             // bytes about to be added
  std::vector<ObjId> incoming_objs;  // the objects being added (never victims)
  std::vector<Key> incoming_parents;
  std::span<const Token> protect;  // the incoming prompt: its prefixes go last
  std::string salt;                // its cache_salt
  std::vector<ObjId> written;      // objects written just now (store-then-evict mode)
};

// Room for `incoming` bytes of the objects `objs` (whose parents are `parents`), protecting the
// prefixes of `protect` (salted with `salt`).
RoomRequest room_for(uint64_t incoming, std::vector<ObjId> objs, std::vector<Key> parents,
                     std::span<const Token> protect = {}, std::string salt = {});

// Victims in eviction order; nullopt when the budget cannot be met. `size(node)`: the bytes a
// node occupies in the tier (0 if not there).
std::optional<std::vector<Node*>> choose_victims(PrefixIndex& index, const RoomRequest& r,
                                                 const EvictConfig& cfg, int64_t now_ms,
                                                 const std::function<uint64_t(const Node&)>& size);

}  // namespace kvstash::cache
