// Where an object lives, as the prefix index records it (a Node's tier flags), and the pure rules
// the facade's units apply when they move it between tiers: which tier serves it, how a store
// waits for the store queue, what becomes of an object leaving RAM, where a queued write goes.
//
// Pure: plain data in, a decision out; no lock, no I/O. The effects (tier calls, queueing, the
// flag changes that keep the tier byte counts) are the callers' (cache_state.h, tier_mover.h,
// store_pipeline.h). Each rule has a unit test per scenario (tests/unit/tier_rules_test.cpp).
#pragma once

#include <cstdint>

#include "cache/prefix_index.h"
#include "cache/restore_choice.h"

namespace kvstash::cache {

// Held by this process: on disk, in RAM, or pending (queued for the disk; this process serves it
// from the buffer the store copied it into). A copy in the remote tier alone is not local.
bool held_locally(const Node* n);

// The tier a read would be served from: VRAM (a copy there or on its way), else RAM (a pending
// object too: its buffer), else disk, else the remote tier.
Source serving_tier(const Node& n);

// How a store finds room in the full store queue: a checkpoint is an optimisation and is dropped
// (never blocking the request); the only copy of a live state (evict, shutdown) waits for room.
enum class Admission { kDropWhenFull, kWaitForRoom };
Admission store_admission(Reason reason);

// What becomes of an object evicted from RAM. It is demoted (queued for the disk, its buffer
// readable meanwhile) when RAM was its only local copy and the disk takes it without evicting
// anything; otherwise it only leaves RAM (and the index, if it is held nowhere else).
enum class RamExit { kDemote, kDrop };
struct DiskRoom {
  bool has_disk = false;  // a disk tier is configured
  uint64_t used = 0;      // bytes it holds
  uint64_t size = 0;      // bytes the object would occupy there
  uint64_t budget = 0;
};
RamExit ram_exit(const Node& n, const DiskRoom& disk);

// Where the transfer worker writes a queued object when its turn comes, by the node's flags
// then: into RAM if the node still wants its RAM copy, to disk if it is still pending, and to
// the remote tier if one is configured and does not hold it yet, and into VRAM if the node wants
// a copy there (the writer skips it if the copy is already made).
struct WriteTargets {
  bool ram = false, disk = false, remote = false, vram = false;
};
WriteTargets write_targets(const Node& n, bool has_remote);

// The RAM tier's budget when the user leaves it to kvstash (--cache-ram-budget auto). With the KV
// on a GPU, a hit from pinned RAM uploads at PCIe speed (~20 GB/s on an H100 host) where one from
// the page cache moves ~8 GB/s: the tier gets llama-server's default host prompt cache (8 GiB), at
// most an eighth of the host's memory. On a CPU the page cache already is that tier: none.
uint64_t auto_ram_budget(bool kv_on_gpu, uint64_t host_memory);

// The VRAM tier's budget when the user leaves it to kvstash (--cache-vram-budget auto), from the
// GPU's memory once the model, the context and its compute buffers are loaded: half of what is
// free beyond a margin of max(1 GiB, 1/20 of the card). Half, because the arena is allocated on
// the first upload and what else runs on the card (another instance, a growing compute buffer)
// must still fit then. A restore from VRAM moves at device speed (~200 GB/s measured on an H100)
// where one from pinned RAM moves at PCIe speed. On a CPU, or with the KV in host memory: none.
uint64_t auto_vram_budget(bool kv_on_gpu, uint64_t free_bytes, uint64_t total_bytes);

}  // namespace kvstash::cache
