#include "tiers/remote_directory.h"

#include "tiers/remote_tier.h"

namespace kvstash::tiers {

std::vector<cache::ObjectMeta> RemoteDirectory::discover(const cache::Chain& c, size_t local) {
  std::vector<cache::ObjectMeta> out;
  if (!remote_) return out;
  const auto& chain = c.keys;
  size_t usable = local;
  while (usable < chain.size() && !rejected(chain[usable])) ++usable;
  const std::vector<cache::Key> rest(chain.begin() + local, chain.begin() + usable);
  // An unreachable tier holds nothing this lookup can use.
  const size_t more = remote_->chunk_depth(rest).value_or(0);
  for (size_t i = 0; i < more; ++i) {
    cache::ObjectMeta m;
    m.kind = cache::ObjKind::kChunk;
    m.key = chain[local + i];
    m.parent = c.parent_of(local + i);
    m.depth = static_cast<uint32_t>(local + i);
    m.n_tokens = chunk_;
    out.push_back(m);
  }
  for (size_t k = 0; k <= local + more; ++k) {
    const auto depth = static_cast<uint32_t>(k);
    for (const cache::ObjectMeta& e :
         remote_->entries_under(c.parent_of(k), depth, chunk_).value_or({})) {
      if (!rejected(e.key)) out.push_back(e);
    }
  }
  return out;
}

void RemoteDirectory::reject(const cache::Key& key) {
  std::lock_guard lock(mu_);
  rejected_.insert(key);
}

void RemoteDirectory::accept(const cache::Key& key) {
  std::lock_guard lock(mu_);
  rejected_.erase(key);
}

bool RemoteDirectory::rejected(const cache::Key& key) const {
  std::lock_guard lock(mu_);
  return rejected_.contains(key);
}

}  // namespace kvstash::tiers
