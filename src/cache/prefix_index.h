// The prefix index: every stored chunk and entry of one model namespace, and the lookup that
// finds the longest prefix of a prompt the engine can resume from.
//
// The index is a tree over chunk keys (a radix tree whose edges are C-token chunks): chunk i's
// parent is chunk i-1, and entries hang under the last full chunk of their prefix. Because keys
// are a hash chain, walking a prompt's chain keys down the tree is linear in its chunks.
//
// Where a state may resume (see engine/session.h for why): the engine breaks prefill batches at
// multiples of C and at the prompt's content-derived boundaries (chat message starts), and a
// restored state continues bit-exactly only from such a break. So:
//   - attention-only models resume at the last break at or below the longest stored prefix (the
//     state is cut back to it), never at the prompt's very end (its logits must be computed);
//   - snapshot-only models (recurrent, hybrid, sliding window) resume exactly at a stored entry
//     that sits on a break, or at the prompt end if the entry carries its logits.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/types.h"

namespace kvstash::cache {

struct Node {
  ObjectMeta meta;
  ObjectStats stats;
  bool on_disk = false;
  bool in_ram = false;
  bool on_remote = false;  // seen in the shared remote tier
  bool in_vram = false;    // a copy in the VRAM tier (wanted: its upload may still be queued)
  uint32_t pins = 0;
  bool pending = false;  // being written to disk (its payload is held by the transfer worker)
};

// Batch break positions of one prompt: multiples of the chunk size plus `boundaries`.
class Breaks {
 public:
  Breaks(uint32_t chunk, std::vector<uint32_t> boundaries);
  bool is_break(uint32_t pos) const;
  uint32_t last_at_or_below(uint32_t pos) const;

 private:
  uint32_t chunk_;
  std::vector<uint32_t> boundaries_;  // sorted
};

struct RestorePlan {
  std::vector<Key> chunks;      // chunk keys to load, in order (chunk i covers [iC, (i+1)C))
  std::optional<Key> entry;     // entry completing the prefix past the chunks
  uint32_t restore_tokens = 0;  // tokens the loaded state holds
  uint32_t resume_at = 0;       // the state is cut back to this before prefill continues
};

class PrefixIndex {
 public:
  PrefixIndex(Key root, uint32_t chunk, bool snapshot_only);

  const Key& root() const { return root_; }
  uint32_t chunk() const { return chunk_; }
  bool snapshot_only() const { return snapshot_only_; }

  Node& upsert(const ObjectMeta& meta, const ObjectStats& stats);
  void erase(ObjKind kind, const Key& key);
  Node* find(ObjKind kind, const Key& key);
  const Node* find(ObjKind kind, const Key& key) const;
  size_t size() const { return chunks_.size() + entries_.size(); }
  void for_each(const std::function<void(Node&)>& fn);

  // The longest restorable prefix of `prompt` (an empty plan if none).
  RestorePlan plan(std::span<const Token> prompt, const Chain& chain, const Breaks& breaks) const;
  // Entries whose prefix is a prefix of `tokens` (at any length up to tokens.size()).
  std::vector<const Node*> entries_on_path(std::span<const Token> tokens, const Chain& chain) const;
  // Objects not reachable from a root through parents present in the index. (Depth-0 objects
  // hang under the model's root or a salted one, which the index cannot tell apart from a typo:
  // they count as reachable.)
  std::vector<std::pair<ObjKind, Key>> unreachable() const;

 private:
  Key root_;
  uint32_t chunk_;
  bool snapshot_only_;
  std::unordered_map<Key, Node, KeyHash> chunks_, entries_;
  std::unordered_multimap<Key, Key, KeyHash> entries_by_parent_;
};

}  // namespace kvstash::cache
