#include "cache/eviction_view.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace kvstash::cache {

RoomRequest room_for(uint64_t incoming, std::vector<ObjId> objs, std::vector<Key> parents,
                     std::span<const Token> protect, std::string salt) {
  RoomRequest r;
  r.incoming = incoming;
  r.incoming_objs = std::move(objs);
  r.incoming_parents = std::move(parents);
  r.protect = protect;
  r.salt = std::move(salt);
  return r;
}

std::optional<std::vector<Node*>> choose_victims(PrefixIndex& index, const RoomRequest& r,
                                                 const EvictConfig& cfg, int64_t now,
                                                 const std::function<uint64_t(const Node&)>& size) {
  const uint64_t used = r.used + r.incoming;
  if (used <= r.budget) return std::vector<Node*>{};
  const uint32_t C = index.chunk();

  // Candidates: every indexed object (those not in this tier only as structure), then the
  // incoming ones. Parent links use chunk keys.
  std::vector<Node*> nodes;
  std::unordered_map<Key, size_t, KeyHash> chunk_idx;
  index.for_each([&](Node& n) {
    if (n.meta.kind == ObjKind::kChunk) chunk_idx[n.meta.key] = nodes.size();
    nodes.push_back(&n);
  });
  std::unordered_set<Key, KeyHash> protected_keys, has_child_chunk, useful;
  const std::set<ObjId> written_set(r.written.begin(), r.written.end());
  if (!r.protect.empty()) {
    const Chain chain = make_chain(salted_root(index.root(), r.salt), r.protect, C);
    protected_keys.insert(chain.keys.begin(), chain.keys.end());
    for (const Node* e : index.entries_on_path(r.protect, chain))
      protected_keys.insert(e->meta.key);
  }
  for (Node* n : nodes) {
    if (n->meta.kind == ObjKind::kChunk) has_child_chunk.insert(n->meta.parent);
  }
  // Snapshot-only models restore only through entries: chunks with no entry below are useless.
  auto mark_useful = [&](Key k) {
    while (chunk_idx.contains(k) && useful.insert(k).second) k = nodes[chunk_idx[k]]->meta.parent;
  };
  for (Node* n : nodes) {
    if (n->meta.kind == ObjKind::kEntry) mark_useful(n->meta.parent);
  }
  for (const Key& p : r.incoming_parents) mark_useful(p);

  std::vector<Candidate> cands;
  for (Node* n : nodes) {
    Candidate c;
    auto pit = chunk_idx.find(n->meta.parent);
    c.parent = pit == chunk_idx.end() ? -1 : static_cast<int64_t>(pit->second);
    c.hits = n->stats.hits;
    c.tokens = n->meta.n_tokens;
    c.bytes = size(*n);
    // An object being written may go too: its write then finds it gone and removes the file.
    c.pinned = n->pins > 0 || c.bytes == 0;
    c.age_s = (now - std::max(n->stats.last_used_ms, n->meta.created_ms)) / 1000.0;
    c.protected_prefix = protected_keys.contains(n->meta.key);
    c.just_written = written_set.contains({n->meta.kind, n->meta.key});
    // A continued checkpoint at a chunk boundary is superseded once the chain goes on below it.
    c.superseded = n->meta.kind == ObjKind::kEntry && n->meta.reason == Reason::kContinued &&
                   n->meta.n_tokens == n->meta.depth * C &&
                   has_child_chunk.contains(n->meta.parent);
    c.useless =
        index.snapshot_only() && n->meta.kind == ObjKind::kChunk && !useful.contains(n->meta.key);
    cands.push_back(c);
  }
  for (size_t i = 0; i < r.incoming_objs.size(); ++i) {
    Candidate c;
    c.just_written = true;
    auto pit = chunk_idx.find(r.incoming_parents[i]);
    c.parent = pit == chunk_idx.end() ? -1 : static_cast<int64_t>(pit->second);
    cands.push_back(c);
  }
  const EvictionPlan ep = plan_eviction(cands, used, r.budget, cfg);
  if (!ep.fits) return std::nullopt;
  std::vector<Node*> victims;
  for (size_t v : ep.victims) victims.push_back(nodes[v]);
  return victims;
}

}  // namespace kvstash::cache
