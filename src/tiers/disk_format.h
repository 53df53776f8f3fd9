// The on-disk format of one cache object (a chunk or an entry): a 128-byte header, then the
// payload.
//
//   off size field
//     0    8 magic "KVSTASH\x1a"
//     8    4 version (1)
//    12    1 kind (1 chunk, 2 entry)      13 1 reason   14 1 flags (bit 0: has logits)  15 1 0
//    16   16 model fingerprint (namespace)
//    32   16 key                          48 16 parent key
//    64    4 depth                        68  4 token count
//    72    8 created (ms since epoch)     80  8 payload size
//    88    8 XXH3-64 of the payload       96  8 XXH3-64 of bytes 0..95
//   104    4 hits                        108  4 0
//   112    8 last used (ms)              120  8 0
//   128      payload
// Bytes 104..127 are usage statistics, updated in place and outside the checksums: a torn update
// there can only misrank an object, never change what is restored. All integers little-endian.
//
// Versions: bytes 0..11 (magic, version) are the same in every format version, so any build can
// tell a newer version's file from a damaged one. A file of a newer version is another build's to
// judge: this build skips it and never removes it.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <variant>

#include "core/types.h"
#include "tiers/result.h"

struct XXH3_state_s;  // xxhash.h

namespace kvstash::tiers {

constexpr size_t kHeaderSize = 128;
constexpr size_t kStatsOffset = 104;
constexpr uint32_t kFormatVersion = 1;

using Fingerprint16 = std::array<uint8_t, 16>;

struct FileHeader {
  cache::ObjectMeta meta;
  cache::ObjectStats stats;
  Fingerprint16 fingerprint{};
  uint64_t payload_checksum = 0;
};

// What a file's first bytes (at least kVersionBytes of them) say about its format: a version this
// build reads, a newer version (left alone), or no kvstash object of any version.
constexpr size_t kVersionBytes = 12;
enum class FormatVersion : uint8_t { kKnown, kNewer, kNotOurs };
FormatVersion format_version(std::span<const uint8_t> first_bytes);

std::array<uint8_t, kHeaderSize> encode_header(const FileHeader& h);
// The header of an object about to be written with `payload` (sizes and checksum filled in).
std::array<uint8_t, kHeaderSize> make_header(const cache::ObjectMeta& meta,
                                             const cache::ObjectStats& stats,
                                             const Fingerprint16& fingerprint,
                                             std::span<const uint8_t> payload);
std::array<uint8_t, 16> encode_stats(const cache::ObjectStats& s);
// Returns the header, or a one-line reason why these bytes are not a valid header for `expected`.
// (The format's parser, fuzzed as such; the tiers check objects with check_object below.)
std::variant<FileHeader, std::string> decode_header(std::span<const uint8_t> bytes,
                                                    const Fingerprint16& expected);
uint64_t payload_checksum(std::span<const uint8_t> payload);

// The same checksum taken piece by piece (XXH3's streaming form gives the one-shot value): a
// reader hashes each piece right after reading it, while it is still in the CPU's cache, instead
// of reading the whole payload from memory once more.
class PayloadChecksum {
 public:
  PayloadChecksum();
  ~PayloadChecksum();
  PayloadChecksum(const PayloadChecksum&) = delete;
  PayloadChecksum& operator=(const PayloadChecksum&) = delete;
  void update(std::span<const uint8_t> piece);
  uint64_t digest() const;

 private:
  ::XXH3_state_s* st_;  // xxhash.h's streaming state
};

// Decodes the header of a stored object (header + payload, `total_size` bytes in all) and checks
// that it is the object asked for. Returns the header, or kDamaged with why the object must not be
// served. The payload checksum is checked by the caller once the payload is read.
Result<FileHeader> check_object(std::span<const uint8_t> header_bytes,
                                const Fingerprint16& expected, cache::ObjKind kind,
                                const cache::Key& key, uint64_t total_size);

}  // namespace kvstash::tiers
