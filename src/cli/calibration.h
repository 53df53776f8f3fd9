// The startup calibration of the restore-or-recompute estimate.
//
// Whether a stored prefix is worth restoring depends on how fast the engine prefills: a GPU
// recomputes tens of thousands of tokens a second, faster than a cold disk or a far Redis can
// deliver their KV. Requests measure it as they go, but the first request after a start would
// otherwise decide blind (and take the longest prefix, whatever its tier). So when a started
// cache already holds something to restore, the engine prefills a few batches before the server
// reports ready and seeds the rate model with their speed; requests' measurements replace it. The
// other side of the choice is seeded the same way: one stored chunk is read from the disk tier as
// the page cache holds it now (warm after a restart, cold after a reboot: 8 against 1.3 GB/s on
// the H100 machine), so a warm disk is not taken for a slow one.
#pragma once

#include <string>

#include "cache/restore_choice.h"
#include "engine/session.h"

namespace kvstash::cli {

// Prefills `tokens` tokens (at least two batches: the first warms kernels and caches up and is
// not timed) in `s`, seeds `rates` with the timed part, clears `s`, and logs the rate. Returns
// the tokens/s seeded, 0 when nothing was timed (tokens below two batches).
double calibrate_prefill(engine::Session& s, cache::RateModel& rates, int tokens);

// Reads the largest chunk file under `chunks_dir` (a disk tier's chunks/ directory), seeds the
// disk tier's rate with it and logs it. Returns the bytes/s seeded, 0 when there was none.
double calibrate_disk(const std::string& chunks_dir, cache::RateModel& rates);

}  // namespace kvstash::cli
