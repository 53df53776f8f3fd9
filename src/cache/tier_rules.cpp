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

uint64_t auto_vram_budget(bool kv_on_gpu, uint64_t free_bytes, uint64_t total_bytes) {
  if (!kv_on_gpu) return 0;
  const uint64_t margin = std::max<uint64_t>(1ull << 30, total_bytes / 20);
  return free_bytes > margin ? (free_bytes - margin) / 2 : 0;
}

}  // namespace kvstash::cache
