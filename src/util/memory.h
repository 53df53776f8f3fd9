// How the process allocates the large, short-lived buffers of stores and restores.
#pragma once

namespace kvstash {

// Restores and stores allocate buffers of hundreds of MiB to GiB per request. glibc serves large
// allocations with fresh mappings and unmaps them on free (and trims its heap top), so every
// request page-faults its buffers in again; in the VMs measured here first-touch memory runs at
// 1-2 GiB/s against ~9 GiB/s for reused memory, and that, more than the disk, bounded restores
// (bench/GPU.md: 8B, 32k tokens, page cache warm, 7.98 s -> 3.74 s). Serving every allocation
// from the heap and keeping freed memory there lets later requests reuse warm pages; the cost is
// that the process keeps its peak heap resident.
//
// The settings exceed what mallopt() accepts (its thresholds are ints), so they are glibc
// tunables, read only at process start: if GLIBC_TUNABLES does not already tune malloc, this sets
// it and re-executes the program with the same arguments. Returns only when nothing was done
// (or the exec failed).
void reexec_with_warm_malloc(char** argv);

}  // namespace kvstash
