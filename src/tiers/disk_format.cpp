#include "tiers/disk_format.h"

#include <xxhash.h>

#include <cstring>
#include <new>

namespace kvstash::tiers {

namespace {
constexpr char kMagic[8] = {'K', 'V', 'S', 'T', 'A', 'S', 'H', 0x1a};

template <typename T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}
template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
void put_key(uint8_t* p, const cache::Key& k) {
  put(p, k.hi);
  put(p + 8, k.lo);
}
cache::Key get_key(const uint8_t* p) { return {get<uint64_t>(p), get<uint64_t>(p + 8)}; }
}  // namespace

FormatVersion format_version(std::span<const uint8_t> first_bytes) {
  if (first_bytes.size() < kVersionBytes || std::memcmp(first_bytes.data(), kMagic, 8) != 0) {
    return FormatVersion::kNotOurs;
  }
  const auto version = get<uint32_t>(first_bytes.data() + 8);
  if (version > kFormatVersion) return FormatVersion::kNewer;
  return version == kFormatVersion ? FormatVersion::kKnown : FormatVersion::kNotOurs;
}

Result<FileHeader> check_object(std::span<const uint8_t> header_bytes,
                                const Fingerprint16& expected, cache::ObjKind kind,
                                const cache::Key& key, uint64_t total_size) {
  auto dec = decode_header(header_bytes, expected);
  if (auto* e = std::get_if<std::string>(&dec)) return IoError{IoError::kDamaged, *e};
  const FileHeader& h = std::get<FileHeader>(dec);
  if (h.meta.kind != kind || h.meta.key != key) {
    return IoError{IoError::kDamaged, "header names another object"};
  }
  if (total_size != kHeaderSize + h.meta.payload_bytes) {
    return IoError{IoError::kDamaged,
                   "size " + std::to_string(total_size) + " does not match the header's " +
                       std::to_string(kHeaderSize + h.meta.payload_bytes) + " (truncated?)"};
  }
  return h;
}

uint64_t payload_checksum(std::span<const uint8_t> payload) {
  return XXH3_64bits(payload.data(), payload.size());
}

PayloadChecksum::PayloadChecksum() : st_(XXH3_createState()) {
  if (!st_) throw std::bad_alloc();
  XXH3_64bits_reset(st_);
}

PayloadChecksum::~PayloadChecksum() { XXH3_freeState(st_); }

void PayloadChecksum::update(std::span<const uint8_t> piece) {
  XXH3_64bits_update(st_, piece.data(), piece.size());
}

uint64_t PayloadChecksum::digest() const { return XXH3_64bits_digest(st_); }

std::array<uint8_t, 16> encode_stats(const cache::ObjectStats& s) {
  std::array<uint8_t, 16> b{};
  put(b.data(), s.hits);
  put(b.data() + 8, s.last_used_ms);
  return b;
}

std::array<uint8_t, kHeaderSize> make_header(const cache::ObjectMeta& meta,
                                             const cache::ObjectStats& stats,
                                             const Fingerprint16& fingerprint,
                                             std::span<const uint8_t> payload) {
  FileHeader h;
  h.meta = meta;
  h.meta.payload_bytes = payload.size();
  h.stats = stats;
  h.fingerprint = fingerprint;
  h.payload_checksum = payload_checksum(payload);
  return encode_header(h);
}

std::array<uint8_t, kHeaderSize> encode_header(const FileHeader& h) {
  std::array<uint8_t, kHeaderSize> b{};
  uint8_t* p = b.data();
  std::memcpy(p, kMagic, 8);
  put(p + 8, kFormatVersion);
  p[12] = static_cast<uint8_t>(h.meta.kind);
  p[13] = static_cast<uint8_t>(h.meta.reason);
  p[14] = h.meta.has_logits ? 1 : 0;
  std::memcpy(p + 16, h.fingerprint.data(), 16);
  put_key(p + 32, h.meta.key);
  put_key(p + 48, h.meta.parent);
  put(p + 64, h.meta.depth);
  put(p + 68, h.meta.n_tokens);
  put(p + 72, h.meta.created_ms);
  put(p + 80, h.meta.payload_bytes);
  put(p + 88, h.payload_checksum);
  put(p + 96, XXH3_64bits(p, 96));
  const auto s = encode_stats(h.stats);
  std::memcpy(p + kStatsOffset, s.data(), s.size());
  return b;
}

std::variant<FileHeader, std::string> decode_header(std::span<const uint8_t> bytes,
                                                    const Fingerprint16& expected) {
  if (bytes.size() < kHeaderSize) return std::string("shorter than a header (torn write?)");
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kMagic, 8) != 0) return std::string("not a kvstash cache file (bad magic)");
  const auto version = get<uint32_t>(p + 8);
  if (version != kFormatVersion) {
    return "unsupported format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kFormatVersion) + ")";
  }
  if (get<uint64_t>(p + 96) != XXH3_64bits(p, 96)) return std::string("header checksum mismatch");
  FileHeader h;
  std::memcpy(h.fingerprint.data(), p + 16, 16);
  if (h.fingerprint != expected) return std::string("belongs to another model or KV settings");
  const uint8_t kind = p[12], reason = p[13];
  if (kind != 1 && kind != 2) return "unknown object kind " + std::to_string(kind);
  if (kind == 2 && (reason < 1 || reason > 5)) return "unknown reason " + std::to_string(reason);
  h.meta.kind = static_cast<cache::ObjKind>(kind);
  h.meta.reason = kind == 2 ? static_cast<cache::Reason>(reason) : cache::Reason::kCold;
  h.meta.has_logits = p[14] & 1;
  h.meta.key = get_key(p + 32);
  h.meta.parent = get_key(p + 48);
  h.meta.depth = get<uint32_t>(p + 64);
  h.meta.n_tokens = get<uint32_t>(p + 68);
  h.meta.created_ms = get<int64_t>(p + 72);
  h.meta.payload_bytes = get<uint64_t>(p + 80);
  h.payload_checksum = get<uint64_t>(p + 88);
  h.stats.hits = get<uint32_t>(p + kStatsOffset);
  h.stats.last_used_ms = get<int64_t>(p + kStatsOffset + 8);
  return h;
}

}  // namespace kvstash::tiers
