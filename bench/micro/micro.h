// What the groups of kvstash-bench-micro (bench/MICRO.md) share: the flags, the chunk size, test
// data and the bench directory (common.cpp), raw files and the page cache (files.cpp), and each
// group's registration. The groups: index.cpp (index lookup, chunk hashing), store_load.cpp (store
// and load through the disk tier and the PrefixCache next to raw I/O), engine_restore.cpp (the
// whole engine restore), remote_auth.cpp (the fleet key's HMAC next to the payload checksum);
// ratio_table.h the reporter; main.cpp the flags and the run.
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cache/prefix_cache.h"
#include "core/key.h"

namespace kvstash::micro {

// ---------------------------------------------------------------------------------------------
// common.cpp

constexpr uint32_t kChunk = 256;

struct Flags {
  std::string dir;
  std::vector<uint64_t> tok_bytes = {114688, 147456};
  uint32_t objects = 8;
  std::vector<uint64_t> index_chunks = {1000, 10000, 100000};
  std::vector<uint64_t> engine_tokens = {4096};
};
extern Flags g_flags;

extern const std::array<uint8_t, 16> kFingerprint;

// Prints "kvstash-bench-micro: WHAT: <errno's message>" and exits 1.
[[noreturn]] void die(const std::string& what);

// google-benchmark 1.7 has no SkipWithMessage: a benchmark that cannot run here says so with
// this prefix; any other SkipWithError is a failure, and the program exits 1 (so CI notices).
constexpr std::string_view kSkipped = "skipped: ";
void skip(benchmark::State& state, const std::string& why);

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed);
std::vector<cache::Token> random_tokens(size_t n, uint64_t seed);
cache::Key random_key(std::mt19937_64& rng);

// `name` under the bench directory, emptied.
std::string sub_dir(const std::string& name);
void set_bytes(benchmark::State& state, size_t per_iteration);
cache::CacheConfig cache_config(const std::string& dir);

// ---------------------------------------------------------------------------------------------
// files.cpp

// Drops the clean page-cache pages of every file under `dir` (the files were fsynced).
void drop_pages(const std::string& dir);
// The same inside a timed loop, with the timer paused (a cold read's setup is not timed).
void drop_pages_untimed(benchmark::State& state, const std::string& dir);
// Checked once per cold benchmark: did POSIX_FADV_DONTNEED drop the pages?
void check_cold(benchmark::State& state, const std::string& dir);
// Raw files the size of a disk-tier file: header + payload.
void write_raw_files(const std::string& dir, size_t n, const std::vector<uint8_t>& payload);
// read() of n files of `payload` into one reused buffer: the physical limit of the loads.
void time_raw_reads(benchmark::State& state, const std::string& name, size_t n,
                    const std::vector<uint8_t>& payload, bool cold);

// ---------------------------------------------------------------------------------------------
// The groups; main registers them in this order.

void register_index();        // index.cpp
void register_store_load();   // store_load.cpp
void register_engine();       // engine_restore.cpp
void register_remote_auth();  // remote_auth.cpp

}  // namespace kvstash::micro
