// The disk tier's file discipline: atomic writes, checksums, damaged files never served.
#include "tiers/disk_tier.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "temp_dir.h"
#include "tiers/disk_format.h"
#include "tiers/ram_tier.h"
#include "tiers/tier_set.h"
#include "util/log.h"

using namespace kvstash;
using namespace kvstash::tiers;
namespace fs = std::filesystem;

namespace {

using fixtures::TempDir;

Fingerprint16 fp(uint8_t v) {
  Fingerprint16 f;
  f.fill(v);
  return f;
}

cache::ObjectMeta meta(uint64_t k, cache::ObjKind kind = cache::ObjKind::kChunk) {
  cache::ObjectMeta m;
  m.kind = kind;
  m.key = {k, k};
  m.n_tokens = 256;
  m.created_ms = 1;
  return m;
}

std::vector<uint8_t> payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7 + seed);
  return p;
}

void flip_byte(const std::string& path, size_t off) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(off);
  char c;
  f.get(c);
  f.seekp(off);
  f.put(static_cast<char>(c ^ 0x40));
}

size_t scan_count(DiskTier& d) {
  size_t n = 0;
  d.scan([&](cache::ObjKind, const cache::Key&, const StoredObject*) { ++n; });
  return n;
}

}  // namespace

TEST(DiskFormat, HeaderRoundTripsAndRejectsDamage) {
  FileHeader h;
  h.meta = meta(5, cache::ObjKind::kEntry);
  h.meta.reason = cache::Reason::kContinued;
  h.meta.has_logits = true;
  h.meta.payload_bytes = 77;
  h.fingerprint = fp(3);
  h.payload_checksum = 1234;
  h.stats = {9, 42};
  auto b = encode_header(h);
  auto d = decode_header(b, fp(3));
  ASSERT_TRUE(std::holds_alternative<FileHeader>(d));
  const auto& g = std::get<FileHeader>(d);
  EXPECT_EQ(g.meta.key, h.meta.key);
  EXPECT_EQ(g.meta.reason, cache::Reason::kContinued);
  EXPECT_TRUE(g.meta.has_logits);
  EXPECT_EQ(g.stats.hits, 9u);
  EXPECT_TRUE(std::holds_alternative<std::string>(decode_header(b, fp(4))));  // foreign model
  for (size_t off : {0, 9, 40, 85}) {
    auto bad = b;
    bad[off] ^= 1;
    EXPECT_TRUE(std::holds_alternative<std::string>(decode_header(bad, fp(3)))) << off;
  }
  auto stats_changed = b;
  stats_changed[kStatsOffset] ^= 1;  // usage statistics are outside the checksum
  EXPECT_TRUE(std::holds_alternative<FileHeader>(decode_header(stats_changed, fp(3))));
}

TEST(DiskFormat, AnotherFormatVersionIsRefusedWithItsNumber) {
  FileHeader h;
  h.meta = meta(5);
  h.fingerprint = fp(3);
  auto b = encode_header(h);
  const uint32_t v2 = 2;
  std::memcpy(b.data() + 8, &v2, 4);
  const uint64_t sum = XXH3_64bits(b.data(), 96);  // a well-formed header of version 2
  std::memcpy(b.data() + 96, &sum, 8);
  auto d = decode_header(b, fp(3));
  ASSERT_TRUE(std::holds_alternative<std::string>(d));
  EXPECT_NE(std::get<std::string>(d).find("unsupported format version 2"), std::string::npos);
}

TEST(DiskTier, RoundTripAndSurvivesReopen) {
  TempDir t;
  {
    DiskTier d(t.path, fp(1));
    EXPECT_TRUE(d.put(meta(1), {}, payload(1000, 1)));
  }
  DiskTier d(t.path, fp(1));
  EXPECT_EQ(scan_count(d), 1u);
  auto got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_TRUE(got);
  EXPECT_TRUE(std::ranges::equal((*got)->span(), payload(1000, 1)));
  EXPECT_TRUE(fs::is_empty(d.dir() + "/tmp")) << "no temporary file is left behind";
}

TEST(DiskTier, FlippedPayloadByteIsDetectedRemovedAndNeverServed) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  d.put(meta(1), {}, payload(1000, 1));
  flip_byte(d.path(cache::ObjKind::kChunk, {1, 1}), kHeaderSize + 500);
  const auto got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, IoError::kDamaged);
  EXPECT_NE(got.error().what.find("checksum"), std::string::npos) << got.error().what;
  EXPECT_FALSE(fs::exists(d.path(cache::ObjKind::kChunk, {1, 1})));
}

TEST(DiskFormat, PiecewiseChecksumEqualsTheWholePayloads) {
  const auto p = payload(3 << 20, 5);
  for (const size_t piece : {size_t{1}, size_t{4096}, size_t{512} << 10, size_t{1} << 20}) {
    PayloadChecksum sum;
    for (size_t at = 0; at < p.size(); at += piece) {
      sum.update({p.data() + at, std::min(piece, p.size() - at)});
    }
    EXPECT_EQ(sum.digest(), payload_checksum(p)) << "pieces of " << piece;
  }
  PayloadChecksum empty;
  EXPECT_EQ(empty.digest(), payload_checksum({}));
}

TEST(DiskTier, PayloadOfManyReadPiecesRoundTripsAndADamagedLastPieceIsCaught) {
  // Larger than the pieces get() reads and hashes one by one (512 KiB), ending mid-piece.
  const size_t n = (5 << 19) + 123;
  TempDir t;
  DiskTier d(t.path, fp(1));
  ASSERT_TRUE(d.put(meta(1), {}, payload(n, 3)));
  auto got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_TRUE(got);
  EXPECT_TRUE(std::ranges::equal((*got)->span(), payload(n, 3)));
  flip_byte(d.path(cache::ObjKind::kChunk, {1, 1}), kHeaderSize + n - 7);
  got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, IoError::kDamaged);
  EXPECT_NE(got.error().what.find("checksum"), std::string::npos) << got.error().what;
}

TEST(DiskTier, ScanRemovesTruncatedZeroLengthForeignAndMisplacedFiles) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  for (uint64_t k = 1; k <= 6; ++k) d.put(meta(k), {}, payload(1000, uint8_t(k)));
  fs::resize_file(d.path(cache::ObjKind::kChunk, {1, 1}), kHeaderSize + 10);  // torn
  fs::resize_file(d.path(cache::ObjKind::kChunk, {2, 2}), 0);                 // zero length
  flip_byte(d.path(cache::ObjKind::kChunk, {3, 3}), 0);                       // bad magic
  {
    DiskTier other(t.path, fp(9));  // another model's file copied into our namespace
    other.put(meta(7), {}, payload(100, 7));
    fs::copy_file(other.path(cache::ObjKind::kChunk, {7, 7}),
                  d.path(cache::ObjKind::kChunk, {7, 7}));
  }
  fs::create_directory(d.path(cache::ObjKind::kChunk, {8, 8}));  // a directory, not a file
  std::ofstream(d.dir() + "/chunks/garbage.txt") << "x";
  const auto rep = d.scan([](cache::ObjKind, const cache::Key&, const StoredObject*) {});
  EXPECT_EQ(rep.objects, 3u);
  EXPECT_EQ(rep.removed_damaged, 5u);
  EXPECT_EQ(rep.skipped, 1u) << "a file not under an object's name is not this build's to judge";
  EXPECT_TRUE(fs::exists(d.dir() + "/chunks/garbage.txt"));
  EXPECT_EQ(scan_count(d), 3u) << "a second scan finds only the valid files";
}

// Another kvstash version's file (a newer format) is neither served nor taken for damage: no scan
// or read removes it, `kvstash cache ls` and older servers included.
TEST(DiskTier, NewerFormatVersionIsSkippedAndNeverRemoved) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  d.put(meta(1), {}, payload(1000, 1));
  const std::string p = d.path(cache::ObjKind::kChunk, {1, 1});
  {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    const uint32_t v = kFormatVersion + 1;
    f.seekp(8);
    f.write(reinterpret_cast<const char*>(&v), 4);
  }
  const auto rep = d.scan([](cache::ObjKind, const cache::Key&, const StoredObject*) {});
  EXPECT_EQ(rep.objects, 0u);
  EXPECT_EQ(rep.removed_damaged, 0u);
  EXPECT_EQ(rep.skipped, 1u);
  const auto got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, IoError::kMissing) << got.error().what;
  EXPECT_EQ(d.probe(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kMissing);
  EXPECT_TRUE(fs::exists(p)) << "a newer version's file was deleted";
}

TEST(DiskFormat, FormatVersionTellsANewerVersionFromDamage) {
  FileHeader h;
  h.meta = meta(5);
  auto b = encode_header(h);
  EXPECT_EQ(format_version(b), FormatVersion::kKnown);
  EXPECT_EQ(format_version(std::span(b).first(kVersionBytes)), FormatVersion::kKnown);
  EXPECT_EQ(format_version(std::span(b).first(kVersionBytes - 1)), FormatVersion::kNotOurs);
  for (uint32_t v : {kFormatVersion + 1, 1000u}) {
    std::memcpy(b.data() + 8, &v, 4);
    EXPECT_EQ(format_version(b), FormatVersion::kNewer) << v;
  }
  const uint32_t zero = 0;
  std::memcpy(b.data() + 8, &zero, 4);
  EXPECT_EQ(format_version(b), FormatVersion::kNotOurs);
  b[0] ^= 1;
  std::memcpy(b.data() + 8, &kFormatVersion, 4);
  EXPECT_EQ(format_version(b), FormatVersion::kNotOurs) << "bad magic";
}

// The files hold users' prompts: owner-only, and so are the directories the tier creates.
TEST(DiskTier, FilesAndDirectoriesAreOwnerOnly) {
  TempDir t;
  const std::string root = t.path + "/cache";
  DiskTier d(root, fp(1));
  d.put(meta(1), {}, payload(100, 1));
  auto mode = [](const std::string& p) { return fs::status(p).permissions() & fs::perms::all; };
  EXPECT_EQ(mode(d.path(cache::ObjKind::kChunk, {1, 1})),
            fs::perms::owner_read | fs::perms::owner_write);
  for (const std::string& dir : {root, d.dir(), d.dir() + "/chunks", d.dir() + "/tmp"}) {
    EXPECT_EQ(mode(dir), fs::perms::owner_all) << dir;
  }
}

TEST(TempFate, LockedByAWriterIsKeptWhateverElse) {
  EXPECT_EQ(
      temp_fate({.locked = true, .writer_alive = false, .age_ms = kTempMaxAgeMs * 2, .size = 9}),
      TempFate::kKeep);
}

TEST(TempFate, EmptyAndNewIsKeptItsWriterLocksItNext) {
  EXPECT_EQ(temp_fate({.locked = false, .writer_alive = false, .age_ms = 100, .size = 0}),
            TempFate::kKeep);
  EXPECT_EQ(
      temp_fate({.locked = false, .writer_alive = false, .age_ms = kTempCreateGraceMs, .size = 0}),
      TempFate::kRemove);
}

TEST(TempFate, UnlockedOfALiveWriterIsKeptForAnHour) {
  // A writer of a build that takes no lock.
  EXPECT_EQ(temp_fate({.locked = false, .writer_alive = true, .age_ms = 60'000, .size = 9}),
            TempFate::kKeep);
  EXPECT_EQ(temp_fate({.locked = false, .writer_alive = true, .age_ms = kTempMaxAgeMs, .size = 9}),
            TempFate::kRemove);
}

TEST(TempFate, UnlockedOfAGoneWriterIsRemoved) {
  EXPECT_EQ(temp_fate({.locked = false, .writer_alive = false, .age_ms = 0, .size = 9}),
            TempFate::kRemove);
}

TEST(OrphanFate, AYoungOrphanIsLeftAnOldOneRemoved) {
  EXPECT_EQ(orphan_fate(0), OrphanFate::kLeave);
  EXPECT_EQ(orphan_fate(kOrphanGraceMs - 1), OrphanFate::kLeave);
  EXPECT_EQ(orphan_fate(kOrphanGraceMs), OrphanFate::kRemove);
}

// A writer in another pid namespace (a container sharing the directory) looks gone by its pid;
// its lock says it is not.
TEST(DiskTier, LockedTemporaryFileIsKeptThoughItsPidLooksGone) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  const std::string tmp = d.dir() + "/tmp/" + cache::Key{2, 2}.hex() + ".99999999.0.tmp";
  std::ofstream(tmp) << "partial";
  {
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    EXPECT_EQ(d.scan([](cache::ObjKind, const cache::Key&, const StoredObject*) {}).removed_temp,
              0u);
    EXPECT_TRUE(fs::exists(tmp)) << "a locked temporary file was removed";
    ::close(fd);
  }
  EXPECT_EQ(d.scan([](cache::ObjKind, const cache::Key&, const StoredObject*) {}).removed_temp, 1u);
  EXPECT_FALSE(fs::exists(tmp));
}

TEST(DiskTier, AbandonedTemporaryFilesAreRemovedLiveWritersKept) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  // pid 1 always exists (init); a pid past pid_max never does.
  const std::string live = d.dir() + "/tmp/" + cache::Key{1, 1}.hex() + ".1.0.tmp";
  const std::string dead = d.dir() + "/tmp/" + cache::Key{2, 2}.hex() + ".99999999.0.tmp";
  std::ofstream(live) << "partial";
  std::ofstream(dead) << "partial";
  const auto rep = d.scan([](cache::ObjKind, const cache::Key&, const StoredObject*) {});
  EXPECT_EQ(rep.removed_temp, 1u);
  EXPECT_TRUE(fs::exists(live));
  EXPECT_FALSE(fs::exists(dead));
}

TEST(DiskTier, StatsUpdateInPlaceKeepsTheFileValid) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  d.put(meta(1), {}, payload(100, 1));
  d.update_stats(cache::ObjKind::kChunk, {1, 1}, {5, 123});
  auto o = d.probe(cache::ObjKind::kChunk, {1, 1});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->stats.hits, 5u);
  EXPECT_TRUE(d.get(cache::ObjKind::kChunk, {1, 1}));
}

TEST(DiskTier, NamespacesOfDifferentFingerprintsAreSeparate) {
  TempDir t;
  DiskTier a(t.path, fp(1)), b(t.path, fp(2));
  a.put(meta(1), {}, payload(100, 1));
  const auto got = b.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, IoError::kMissing);
  EXPECT_EQ(scan_count(b), 0u);
}

// Failures that leave the object usable are not errors of put()/update_stats(), but they are
// logged and counted, never silent.
TEST(DiskTier, FailedDirectoryFsyncAndStatsWriteAreLoggedAndCounted) {
  TempDir t;
  ::setenv("KVSTASH_FAULT_DIR_FSYNC", "1", 1);
  ::setenv("KVSTASH_FAULT_ENOSPC_AFTER", std::to_string(kHeaderSize + 100).c_str(), 1);
  DiskTier d(t.path, fp(1));
  ::unsetenv("KVSTASH_FAULT_DIR_FSYNC");
  ::unsetenv("KVSTASH_FAULT_ENOSPC_AFTER");
  std::vector<std::string> logs;
  log::set_hook([&](const std::string& l) { logs.push_back(l); });
  EXPECT_TRUE(d.put(meta(1), {}, payload(100, 1))) << "the renamed file is complete";
  EXPECT_TRUE(d.update_stats(cache::ObjKind::kChunk, {1, 1}, {5, 123}));  // the disk is full now
  log::set_hook(nullptr);
  EXPECT_EQ(d.io_errors().dir_fsync, 1u);
  EXPECT_EQ(d.io_errors().stats_write, 1u);
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_NE(logs[0].find("fsync of " + d.dir() + "/chunks failed"), std::string::npos) << logs[0];
  EXPECT_NE(logs[1].find("usage statistics write"), std::string::npos) << logs[1];
  EXPECT_NE(logs[1].find("No space left on device"), std::string::npos) << logs[1];
  auto o = d.probe(cache::ObjKind::kChunk, {1, 1});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->stats.hits, 0u);
  const auto got = d.get(cache::ObjKind::kChunk, {1, 1});
  ASSERT_TRUE(got);
  EXPECT_TRUE(std::ranges::equal((*got)->span(), payload(100, 1)));
}

// The tier API's error convention (tier.h): each failure says what kind it is.
namespace {
Payload bytes_of(const std::vector<uint8_t>& p) {
  static BufferPool pool;
  return pool.copy(p);
}
}  // namespace

TEST(TierErrors, PutOnAFullDiskIsFullAndLeavesNoTemporaryFile) {
  TempDir t;
  ::setenv("KVSTASH_FAULT_ENOSPC_AFTER", "0", 1);
  DiskTier d(t.path, fp(1));
  ::unsetenv("KVSTASH_FAULT_ENOSPC_AFTER");
  const Status st = d.put(meta(1), {}, payload(100, 1));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, IoError::kFull);
  EXPECT_NE(st.error().what.find("No space left on device"), std::string::npos) << st.error().what;
  EXPECT_TRUE(fs::is_empty(d.dir() + "/tmp"));
  EXPECT_EQ(d.get(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kMissing);
}

TEST(TierErrors, RemovingWhatIsNotThereSucceedsUpdatingItsStatsIsMissing) {
  TempDir t;
  DiskTier d(t.path, fp(1));
  EXPECT_TRUE(d.remove(cache::ObjKind::kChunk, {1, 1}));
  const Status st = d.update_stats(cache::ObjKind::kChunk, {1, 1}, {5, 123});
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().kind, IoError::kMissing);
  EXPECT_EQ(d.probe(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kMissing);
}

TEST(TierErrors, RamCopyMissingOrDamagedAndTheDamagedOneIsDropped) {
  RamTier r(std::make_shared<BufferPool>());
  EXPECT_EQ(r.get(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kMissing);
  EXPECT_EQ(r.peek(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kMissing);
  const auto p = payload(100, 1);
  EXPECT_TRUE(r.put_checked(meta(1), bytes_of(p), payload_checksum(p) ^ 1));
  EXPECT_EQ(r.get(cache::ObjKind::kChunk, {1, 1}).error().kind, IoError::kDamaged);
  EXPECT_FALSE(r.peek(cache::ObjKind::kChunk, {1, 1})) << "removed when found damaged";
}

TEST(TierErrors, TierSetReadReportsEachFailedCopyAndMissingTiersAreUnavailable) {
  TempDir t;
  TierSet set({t.path, 1 << 20, 1 << 20, {}, nullptr}, fp(1), std::make_shared<BufferPool>());
  const auto p = payload(100, 1);
  ASSERT_TRUE(set.write_disk(meta(1), {}, bytes_of(p)));
  const auto r = set.read(cache::ObjKind::kChunk, {1, 1}, {true, true, true});
  ASSERT_TRUE(r.got);
  EXPECT_EQ(r.got->from, Where::kDisk);
  EXPECT_TRUE(std::ranges::equal(r.got->payload->span(), p));
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_EQ(r.failed[0].first, Where::kRam);
  EXPECT_EQ(r.failed[0].second.kind, IoError::kMissing);
  const auto none = set.read(cache::ObjKind::kChunk, {2, 2}, {false, true, false});
  ASSERT_FALSE(none.got);
  EXPECT_EQ(none.got.error().kind, IoError::kMissing);
  const Status remote = set.put_remote(meta(1), {}, bytes_of(p));
  ASSERT_FALSE(remote);
  EXPECT_EQ(remote.error().kind, IoError::kUnavailable);
}
