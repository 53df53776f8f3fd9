#include "cache/tier_rules.h"

#include <algorithm>

namespace kvstash::cache {

bool held_locally(const Node* n) { return n && (n->on_disk || n->in_ram || n->pending); }

Source serving_tier(const Node& n) {
  if (n.in_vram) return Source::kVram;
  if (n.in_ram || n.pending) return Source::kRam;
  return n.on_disk ? Source::kDisk : Source::kRemote;
}

Admission store_admission(Reason reason) {
  const bool only_copy = reason == Reason::kEvict || reason == Reason::kShutdown;
  return only_copy ? Admission::kWaitForRoom : Admission::kDropWhenFull;
}

RamExit ram_exit(const Node& n, const DiskRoom& disk) {
  const bool only_copy = !n.on_disk && !n.pending;
  const bool fits = disk.has_disk && disk.used + disk.size <= disk.budget;
  return only_copy && fits ? RamExit::kDemote : RamExit::kDrop;
}

WriteTargets write_targets(const Node& n, bool has_remote) {
  return {n.in_ram, n.pending, has_remote && !n.on_remote, n.in_vram};
}

uint64_t auto_ram_budget(bool kv_on_gpu, uint64_t host_memory) {
  if (!kv_on_gpu) return 0;
  return std::min<uint64_t>(8ull << 30, host_memory / 8);
}

}  // namespace kvstash::cache
