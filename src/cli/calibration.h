// The startup calibration of the restore-or-recompute estimate.
//
// Whether a stored prefix is worth restoring depends on how fast the engine prefills: a GPU
// recomputes tens of thousands of tokens a second, faster than a cold disk or a far Redis can
// deliver their KV. Requests measure it as they go, but the first request after a start would
// otherwise decide blind (and take the longest prefix, whatever its tier). So when a started
// cache already holds something to restore, the engine prefills a few batches before the server
// reports ready and seeds the rate model with their speed; requests' measurements replace it. The
// other side of the choice is seeded the same way: one stored chunk is read from the disk tier
// twice. The disk is two rates (8 GB/s for what the page cache holds, 1.3 GB/s from the device on
// the H100 machine), and a restore is priced by how much of it the page cache holds (util/
// page_cache.h); the first read seeds the rate that the chunk's residency says it measured, the
// second, from the page cache, seeds the page cache's.
#pragma once

#include <string>

#include "cache/prefix_cache.h"
#include "cache/restore_choice.h"
#include "engine/session.h"

namespace kvstash::cli {

// Prefills `tokens` tokens (at least two batches: the first warms kernels and caches up and is
// not timed) in `s`, seeds `rates` with the timed part, clears `s`, and logs the rate. Returns
// the tokens/s seeded, 0 when nothing was timed (tokens below two batches).
double calibrate_prefill(engine::Session& s, cache::RateModel& rates, int tokens);

// Reads the largest chunk of `cache`'s disk tier twice, seeds the rates that the reads measured
// (above) and logs them. Returns the first read's bytes/s, 0 when there was nothing to read.
double calibrate_disk(cache::PrefixCache& cache);

}  // namespace kvstash::cli
