#include "cache/prefix_index.h"

#include <algorithm>
#include <unordered_set>

namespace kvstash::cache {

Breaks::Breaks(uint32_t chunk, std::vector<uint32_t> boundaries)
    : chunk_(chunk), boundaries_(std::move(boundaries)) {
  std::sort(boundaries_.begin(), boundaries_.end());
}

bool Breaks::is_break(uint32_t pos) const {
  return pos % chunk_ == 0 || std::binary_search(boundaries_.begin(), boundaries_.end(), pos);
}

uint32_t Breaks::last_at_or_below(uint32_t pos) const {
  uint32_t best = pos / chunk_ * chunk_;
  auto it = std::upper_bound(boundaries_.begin(), boundaries_.end(), pos);
  if (it != boundaries_.begin()) best = std::max(best, *std::prev(it));
  return best;
}

PrefixIndex::PrefixIndex(Key root, uint32_t chunk, bool snapshot_only)
    : root_(root), chunk_(chunk), snapshot_only_(snapshot_only) {}

Node& PrefixIndex::upsert(const ObjectMeta& meta, const ObjectStats& stats) {
  auto& map = meta.kind == ObjKind::kChunk ? chunks_ : entries_;
  auto [it, inserted] = map.try_emplace(meta.key);
  it->second.meta = meta;
  if (inserted) {
    it->second.stats = stats;
    if (meta.kind == ObjKind::kEntry) entries_by_parent_.emplace(meta.parent, meta.key);
  } else {
    it->second.stats.hits = std::max(it->second.stats.hits, stats.hits);
    it->second.stats.last_used_ms = std::max(it->second.stats.last_used_ms, stats.last_used_ms);
  }
  return it->second;
}

void PrefixIndex::erase(ObjKind kind, const Key& key) {
  if (kind == ObjKind::kChunk) {
    chunks_.erase(key);
    return;
  }
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto [b, e] = entries_by_parent_.equal_range(it->second.meta.parent);
  for (auto p = b; p != e; ++p) {
    if (p->second == key) {
      entries_by_parent_.erase(p);
      break;
    }
  }
  entries_.erase(it);
}

Node* PrefixIndex::find(ObjKind kind, const Key& key) {
  auto& map = kind == ObjKind::kChunk ? chunks_ : entries_;
  auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

const Node* PrefixIndex::find(ObjKind kind, const Key& key) const {
  return const_cast<PrefixIndex*>(this)->find(kind, key);
}

void PrefixIndex::for_each(const std::function<void(Node&)>& fn) {
  for (auto& [k, n] : chunks_) fn(n);
  for (auto& [k, n] : entries_) fn(n);
}

std::vector<const Node*> PrefixIndex::entries_on_path(std::span<const Token> tokens,
                                                      const Chain& chain) const {
  std::vector<const Node*> out;
  for (size_t k = 0; k <= chain.keys.size(); ++k) {
    if (k > 0 && !chunks_.contains(chain.keys[k - 1])) break;
    const Key& parent = chain.parent_of(k);
    auto [b, e] = entries_by_parent_.equal_range(parent);
    for (auto it = b; it != e; ++it) {
      const Node& n = entries_.at(it->second);
      const size_t start = k * chunk_;
      // An entry under chain position k covers [kC, n) with n < (k+1)C and has depth k: one that
      // claims otherwise (metadata from another server) would index past the chain.
      if (n.meta.depth != k || n.meta.n_tokens / chunk_ != k) continue;
      if (n.meta.n_tokens > tokens.size()) continue;
      if (entry_key(parent, tokens.subspan(start, n.meta.n_tokens - start)) == n.meta.key) {
        out.push_back(&n);
      }
    }
  }
  return out;
}

RestorePlan PrefixIndex::plan(std::span<const Token> prompt, const Chain& chain,
                              const Breaks& breaks) const {
  RestorePlan best;
  const auto len = static_cast<uint32_t>(prompt.size());
  if (len < 2) return best;
  uint32_t depth = 0;
  while (depth < chain.keys.size() && chunks_.contains(chain.keys[depth])) ++depth;

  auto consider = [&](uint32_t n_chunks, std::optional<Key> entry, uint32_t restore,
                      uint32_t resume) {
    if (resume == 0 || resume < best.resume_at) return;
    // Equal resume points: prefer the plan that loads less.
    if (resume == best.resume_at && restore >= best.restore_tokens) return;
    best.chunks.assign(chain.keys.begin(), chain.keys.begin() + n_chunks);
    best.entry = entry;
    best.restore_tokens = restore;
    best.resume_at = resume;
  };

  if (!snapshot_only_) {
    // Chunks alone: cut back to the last break below the prompt end.
    const uint32_t r = breaks.last_at_or_below(std::min(depth * chunk_, len - 1));
    const uint32_t n = (r + chunk_ - 1) / chunk_;
    consider(n, std::nullopt, n * chunk_, r);
  }
  const Chain known{chain.root, {chain.keys.begin(), chain.keys.begin() + depth}};
  for (const Node* e : entries_on_path(prompt, known)) {
    const uint32_t n = e->meta.n_tokens;
    if (snapshot_only_) {
      if ((n < len && breaks.is_break(n)) || (n == len && e->meta.has_logits)) {
        consider(e->meta.depth, e->meta.key, n, n);
      }
    } else {
      consider(e->meta.depth, e->meta.key, n, breaks.last_at_or_below(std::min(n, len - 1)));
    }
  }
  return best;
}

std::vector<std::pair<ObjKind, Key>> PrefixIndex::unreachable() const {
  std::unordered_set<Key, KeyHash> ok;
  // Chunks: reachable if the chain of parents leads to the root. Depth order makes one pass do.
  std::vector<const Node*> by_depth;
  for (const auto& [k, n] : chunks_) by_depth.push_back(&n);
  std::sort(by_depth.begin(), by_depth.end(),
            [](const Node* a, const Node* b) { return a->meta.depth < b->meta.depth; });
  std::vector<std::pair<ObjKind, Key>> out;
  for (const Node* n : by_depth) {
    const bool reach = n->meta.depth == 0 || ok.contains(n->meta.parent);
    if (reach)
      ok.insert(n->meta.key);
    else
      out.push_back({ObjKind::kChunk, n->meta.key});
  }
  for (const auto& [k, n] : entries_) {
    const bool reach = n.meta.depth == 0 || ok.contains(n.meta.parent);
    if (!reach) out.push_back({ObjKind::kEntry, k});
  }
  return out;
}

}  // namespace kvstash::cache
