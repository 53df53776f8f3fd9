// How much of a file the OS page cache holds.
//
// A read from the disk tier runs at memory speed for the bytes the page cache holds and at the
// device's speed for the rest (about 8 against 1.3 GB/s on the H100 machine), so the
// restore-or-recompute estimate prices the two apart, and a restart (whose files are still
// cached) is not mistaken for a reboot (whose files are not). mincore(2) over a read-only mapping
// answers without reading anything.
#pragma once

#include <cstdint>
#include <string>

namespace kvstash::util {

// Bytes of `path` resident in the page cache (whole pages, capped at the file size); 0 when the
// file cannot be opened or mapped.
uint64_t page_cached_bytes(const std::string& path);

}  // namespace kvstash::util
