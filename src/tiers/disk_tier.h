// The disk tier: one file per object under DIR/<fingerprint>/{chunks,entries}/<key>.kv.
//
// Crash safety: an object is written to DIR/<fingerprint>/tmp/<key>.<pid>.<n>.tmp, fsynced,
// renamed into place, and the directory fsynced, so a file under its final name is always
// complete. The header and payload carry checksums (disk_format.h): a damaged file is detected,
// logged, removed, and never served.
//
// Sharing: several processes (servers, `kvstash cache` commands, other kvstash versions) may use
// one directory. The discipline is atomic rename: objects are content-addressed (one key, one
// content), so two writers of one key write the same bytes and the last rename wins; readers hold
// an open descriptor, unaffected by a concurrent rename or unlink. No process removes a file
// another may still be writing or cannot be read by this build: a temporary file is locked
// (flock) by its writer until renamed and carries the writer's pid (temp_fate()); a file of a
// newer format version, or under a name that is not an object's, is skipped; an object whose
// parent is not on disk is removed only once it is old (orphan_fate(): it may be a write racing a
// scan). Each process keeps its own index and picks up the others' writes when a directory's
// modification time changes (see changed_since_last_check()).
//
// Files are created owner-only (0600, directories 0700): they hold users' prompts.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "tiers/disk_format.h"
#include "tiers/tier.h"

namespace kvstash::tiers {

// What a scan does with a temporary file, from what it can see of it (pure). A file is abandoned,
// and removed, unless a writer holds its lock, or it is empty and new (a writer creates it, then
// locks it), or its writer's pid names a live process and it is under an hour old (a writer of
// a build that takes no lock).
constexpr int64_t kTempCreateGraceMs = 10'000;
constexpr int64_t kTempMaxAgeMs = 3'600'000;
struct TempFile {
  bool locked = false;        // a writer holds its lock
  bool writer_alive = false;  // the pid in its name is a live process here
  int64_t age_ms = 0;         // since its last modification
  uint64_t size = 0;
};
enum class TempFate : uint8_t { kKeep, kRemove };
TempFate temp_fate(const TempFile& f);

// An object found on disk without its parent (pure): its file is removed once unmodified for
// kOrphanGraceMs; a younger one may be another process's write racing this scan, or a child
// whose parent is being written again, and is left (the index forgets it until the next scan).
constexpr int64_t kOrphanGraceMs = 60'000;
enum class OrphanFate : uint8_t { kLeave, kRemove };
OrphanFate orphan_fate(int64_t age_ms);

class DiskTier : public Tier {
 public:
  // Payloads are read into buffers of `pool` (null: a pool of its own). Throws if the directory
  // cannot be created or used (the tier API's only exceptions are its constructors'; tier.h).
  DiskTier(const std::string& root, const Fingerprint16& fingerprint,
           std::shared_ptr<BufferPool> pool = nullptr);

  const char* name() const override { return "disk"; }
  // kFull on a full disk (ENOSPC), kIo otherwise; the temporary file is removed either way.
  Status put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
             std::span<const uint8_t> payload) override;
  Result<Payload> get(cache::ObjKind kind, const cache::Key& key) override;
  Status remove(cache::ObjKind kind, const cache::Key& key) override;
  // kMissing if the file is gone (evicted meanwhile); a failed write is not an error (below).
  Status update_stats(cache::ObjKind kind, const cache::Key& key,
                      const cache::ObjectStats& stats) override;
  uint64_t object_size(const cache::ObjectMeta& meta) const override {
    return kHeaderSize + meta.payload_bytes;
  }

  struct ScanReport {
    size_t objects = 0, removed_damaged = 0, removed_temp = 0;
    size_t skipped = 0;  // files this build does not read (newer format, not an object's name)
  };
  // Lists every object; removes damaged files and abandoned temporary files, logging each.
  // Calls `found` for every object: with its header, or with nullptr where known(kind, key) said
  // the caller has it already (so a rescan reads only new files' headers).
  using Found = std::function<void(cache::ObjKind, const cache::Key&, const StoredObject*)>;
  using Known = std::function<bool(cache::ObjKind, const cache::Key&)>;
  ScanReport scan(const Found& found, const Known& known = nullptr);
  // One object's header (how another process's write is picked up): kMissing without a file,
  // kDamaged for a bad header (the file is left to get(), which removes it).
  Result<StoredObject> probe(cache::ObjKind kind, const cache::Key& key);
  // True if a file was added or removed since the last call (directory modification times).
  bool changed_since_last_check();
  // Bytes the filesystem under the directory has free for this process (statvfs).
  Result<uint64_t> free_bytes() const;
  // Milliseconds since the object's file was last modified.
  Result<int64_t> age_ms(cache::ObjKind kind, const cache::Key& key) const;

  // I/O errors that leave the object usable, so put() and update_stats() do not fail on them:
  // the directory fsync after a rename, and the usage-statistics write. Each is logged.
  struct IoErrors {
    uint64_t dir_fsync = 0, stats_write = 0;
  };
  IoErrors io_errors() const { return {dir_fsync_errors_.load(), stats_write_errors_.load()}; }

  const std::string& dir() const { return dir_; }
  std::string path(cache::ObjKind kind, const cache::Key& key) const;

 private:
  // Removes the temporary files temp_fate() finds abandoned; returns how many.
  size_t remove_abandoned_temp_files();

  std::string dir_;  // DIR/<fingerprint>
  std::shared_ptr<BufferPool> pool_;
  Fingerprint16 fp_;
  // Fault injection for tests: $KVSTASH_FAULT_ENOSPC_AFTER=N: writes (objects and statistics)
  // fail with ENOSPC once the bytes this process wrote, less those of the files it removed,
  // would pass N, as on a disk of N bytes (free_bytes() reports what is left of them);
  // $KVSTASH_FAULT_EIO_AFTER=N: object writes fail with EIO once this process has written N
  // bytes (a disk error that no eviction cures);
  // $KVSTASH_FAULT_DIR_FSYNC (set): directory fsyncs fail with EIO;
  // $KVSTASH_FAULT_WRITE_DELAY_MS=N: each object write takes N ms more before its rename, as on a
  // slow disk (the store queue fills; a kill lands mid-write).
  uint64_t fault_after_ = UINT64_MAX, fault_eio_after_ = UINT64_MAX;
  std::atomic<uint64_t> written_{0};  // the writer thread and usage-statistics writes
  bool fault_dir_fsync_ = false;
  int fault_delay_ms_ = 0;
  std::atomic<uint64_t> dir_fsync_errors_{0}, stats_write_errors_{0};
  int64_t seen_mtime_ns_ = -1;
};

}  // namespace kvstash::tiers
