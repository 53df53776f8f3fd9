#include "tiers/disk_tier.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "util/hex.h"
#include "util/log.h"

namespace kvstash::tiers {

namespace fs = std::filesystem;

namespace {

const char* subdir(cache::ObjKind k) { return k == cache::ObjKind::kChunk ? "chunks" : "entries"; }

std::string errno_text() { return std::strerror(errno); }

// A failed system call as an IoError (errno still set): kFull for a full disk.
IoError errno_error(const std::string& what) {
  const bool full = errno == ENOSPC || errno == EDQUOT;
  return {full ? IoError::kFull : IoError::kIo, what + ": " + errno_text()};
}

// RAII file descriptor.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, uint8_t* p, size_t n, off_t off) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    off += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Returns an error message, empty on success.
std::string fsync_dir(const std::string& dir, bool fault) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0) return "cannot open " + dir + ": " + errno_text();
  if (fault) errno = EIO;
  if (fault || ::fsync(d.fd) != 0) return "fsync of " + dir + " failed: " + errno_text();
  return {};
}

// Creates `dir` and the missing directories above it, owner-only (the files hold users' prompts);
// directories that exist keep their modes.
void make_private_dirs(const fs::path& dir, std::error_code& ec) {
  fs::path at;
  for (const auto& part : dir) {
    at /= part;
    if (std::error_code e; fs::is_directory(at, e)) continue;
    if (::mkdir(at.c_str(), 0700) != 0 && errno != EEXIST) {
      ec = std::error_code(errno, std::generic_category());
      return;
    }
  }
}

// An object file's header as read from an open descriptor.
struct HeaderRead {
  enum Outcome : uint8_t { kValid, kNewer, kDamaged } outcome = kDamaged;
  FileHeader header;  // kValid
  std::string why;    // otherwise
};

HeaderRead read_header(int fd, const Fingerprint16& fp, cache::ObjKind kind,
                       const cache::Key& key) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return {HeaderRead::kDamaged, {}, "not a regular file"};
  std::array<uint8_t, kHeaderSize> hb{};
  const size_t n = std::min<size_t>(static_cast<size_t>(st.st_size), kHeaderSize);
  if (!read_all(fd, hb.data(), n, 0)) return {HeaderRead::kDamaged, {}, "header read failed"};
  if (format_version({hb.data(), n}) == FormatVersion::kNewer) {
    return {
        HeaderRead::kNewer, {}, "written by a newer kvstash (a newer format version): left alone"};
  }
  if (n < kHeaderSize) return {HeaderRead::kDamaged, {}, "shorter than a header (torn write?)"};
  auto h = check_object(hb, fp, kind, key, static_cast<uint64_t>(st.st_size));
  if (!h) return {HeaderRead::kDamaged, {}, h.error().what};
  return {HeaderRead::kValid, *h, {}};
}

int64_t mtime_ns(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

DiskTier::DiskTier(const std::string& root, const Fingerprint16& fingerprint,
                   std::shared_ptr<BufferPool> pool)
    : pool_(pool ? std::move(pool) : std::make_shared<BufferPool>()), fp_(fingerprint) {
  if (root.empty()) throw std::invalid_argument("the disk cache needs a directory");
  if (const char* f = std::getenv("KVSTASH_FAULT_ENOSPC_AFTER"))
    fault_after_ = std::strtoull(f, nullptr, 10);
  if (const char* f = std::getenv("KVSTASH_FAULT_EIO_AFTER"))
    fault_eio_after_ = std::strtoull(f, nullptr, 10);
  fault_dir_fsync_ = std::getenv("KVSTASH_FAULT_DIR_FSYNC") != nullptr;
  if (const char* f = std::getenv("KVSTASH_FAULT_WRITE_DELAY_MS")) fault_delay_ms_ = std::atoi(f);
  dir_ = (fs::path(root) / to_hex(fingerprint)).string();
  for (const char* sub : {"chunks", "entries", "tmp"}) {
    std::error_code ec;
    make_private_dirs(fs::path(dir_) / sub, ec);
    if (ec || !fs::is_directory(fs::path(dir_) / sub)) {
      throw std::runtime_error("cannot use cache directory " + dir_ + "/" + sub + ": " +
                               (ec ? ec.message() : "not a directory"));
    }
  }
}

std::string DiskTier::path(cache::ObjKind kind, const cache::Key& key) const {
  return dir_ + "/" + subdir(kind) + "/" + key.hex() + ".kv";
}

Status DiskTier::put(const cache::ObjectMeta& meta, const cache::ObjectStats& stats,
                     std::span<const uint8_t> payload) {
  static std::atomic<uint64_t> seq{0};
  const std::string final_path = path(meta.kind, meta.key);
  const std::string tmp = dir_ + "/tmp/" + meta.key.hex() + "." + std::to_string(::getpid()) + "." +
                          std::to_string(seq++) + ".tmp";
  const auto header = make_header(meta, stats, fp_, payload);
  std::optional<IoError> err;
  {
    // Owner-only: the payload holds a user's prompt. Locked until renamed: a scan by any process
    // leaves a locked temporary file alone (temp_fate()).
    Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (f.fd < 0) return errno_error("cannot create " + tmp);
    (void)::flock(f.fd, LOCK_EX);
    const uint64_t after = written_ + header.size() + payload.size();
    const bool fault = after > fault_after_ || after > fault_eio_after_;
    if (fault || !write_all(f.fd, header.data(), header.size()) ||
        !write_all(f.fd, payload.data(), payload.size())) {
      if (fault) errno = after > fault_after_ ? ENOSPC : EIO;
      err = errno_error("write to " + tmp + " failed");
    } else if (::fsync(f.fd) != 0) {
      err = errno_error("fsync of " + tmp + " failed");
    }
    if (fault_delay_ms_ > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(fault_delay_ms_));
    }
    if (!err && ::rename(tmp.c_str(), final_path.c_str()) != 0) {
      err = errno_error("rename to " + final_path + " failed");
    }
    if (err) ::unlink(tmp.c_str());
  }
  if (err) return *err;
  written_ += header.size() + payload.size();
  // The file is complete under its name either way; without this fsync a power loss may only
  // undo the rename (the object is then absent, never torn), so the put stands.
  if (const std::string e = fsync_dir(dir_ + "/" + subdir(meta.kind), fault_dir_fsync_);
      !e.empty()) {
    ++dir_fsync_errors_;
    log::warn("kv cache " + e + ": " + meta.key.hex() + " may not survive a power loss");
  }
  return {};
}

Result<Payload> DiskTier::get(cache::ObjKind kind, const cache::Key& key) {
  const std::string p = path(kind, key);
  Fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) {
    if (errno != ENOENT) return errno_error("cannot open " + p);
    return IoError{IoError::kMissing, "missing: " + p};
  }
  auto fail = [&](const std::string& reason) -> IoError {
    log::warn("kv cache removing damaged file " + p + ": " + reason);
    ::unlink(p.c_str());
    return {IoError::kDamaged, reason};
  };
  const HeaderRead hr = read_header(f.fd, fp_, kind, key);
  if (hr.outcome == HeaderRead::kNewer) return IoError{IoError::kMissing, p + " " + hr.why};
  if (hr.outcome == HeaderRead::kDamaged) return fail(hr.why);
  const FileHeader* h = &hr.header;
  // Straight into a reusable (pinned, on GPU builds) buffer: the engine uploads from it.
  // Read and hashed in pieces: each is hashed while still in the CPU's cache, so the payload
  // crosses memory once on its way in (a separate pass over the whole payload costs a restore
  // from the page cache about a fifth of its time on a 2-core machine).
  auto payload = pool_->get(h->meta.payload_bytes);
  PayloadChecksum sum;
  constexpr size_t kPiece = 512 << 10;
  for (size_t at = 0; at < payload->size(); at += kPiece) {
    const size_t n = std::min(kPiece, payload->size() - at);
    if (!read_all(f.fd, payload->data() + at, n, static_cast<off_t>(kHeaderSize + at))) {
      return fail("read failed");
    }
    sum.update({payload->data() + at, n});
  }
  if (sum.digest() != h->payload_checksum) return fail("payload checksum mismatch");
  return payload;
}

Status DiskTier::remove(cache::ObjKind kind, const cache::Key& key) {
  const std::string p = path(kind, key);
  struct stat st;
  const bool faulted = fault_after_ != UINT64_MAX && ::stat(p.c_str(), &st) == 0;
  if (::unlink(p.c_str()) != 0) {
    if (errno != ENOENT) return errno_error("cannot remove " + p);
    return {};
  }
  if (faulted) {  // the injected full disk has this file's bytes free again
    const auto n = static_cast<uint64_t>(st.st_size);
    uint64_t cur = written_.load();
    while (!written_.compare_exchange_weak(cur, cur >= n ? cur - n : 0)) {
    }
  }
  return {};
}

Result<uint64_t> DiskTier::free_bytes() const {
  struct statvfs fs;
  if (::statvfs(dir_.c_str(), &fs) != 0) return errno_error("cannot statvfs " + dir_);
  uint64_t free = uint64_t(fs.f_bavail) * fs.f_frsize;
  if (fault_after_ != UINT64_MAX)
    free = std::min(free, fault_after_ - std::min(fault_after_, written_.load()));
  return free;
}

Status DiskTier::update_stats(cache::ObjKind kind, const cache::Key& key,
                              const cache::ObjectStats& stats) {
  Fd f(::open(path(kind, key).c_str(), O_WRONLY | O_CLOEXEC));
  if (f.fd < 0) return IoError{IoError::kMissing, "missing: " + path(kind, key)};  // evicted
  const auto b = encode_stats(stats);
  // The statistics lie outside the checksums: a failed write costs eviction accuracy only.
  const bool fault = written_ + b.size() > fault_after_;
  if (fault) errno = ENOSPC;
  if (fault || ::pwrite(f.fd, b.data(), b.size(), kStatsOffset) != static_cast<ssize_t>(b.size())) {
    ++stats_write_errors_;
    log::warn("kv cache usage statistics write to " + path(kind, key) + " failed: " + errno_text());
  }
  return {};  // the object is usable either way (counted in io_errors())
}

Result<StoredObject> DiskTier::probe(cache::ObjKind kind, const cache::Key& key) {
  const std::string p = path(kind, key);
  Fd f(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return IoError{IoError::kMissing, "missing: " + p};
  // Damaged: reported, not removed here; get() removes it when someone tries to use it.
  const HeaderRead hr = read_header(f.fd, fp_, kind, key);
  if (hr.outcome == HeaderRead::kNewer) return IoError{IoError::kMissing, p + " " + hr.why};
  if (hr.outcome == HeaderRead::kDamaged) return IoError{IoError::kDamaged, hr.why};
  return StoredObject{hr.header.meta, hr.header.stats};
}

TempFate temp_fate(const TempFile& f) {
  if (f.locked) return TempFate::kKeep;
  if (f.size == 0 && f.age_ms < kTempCreateGraceMs) return TempFate::kKeep;
  if (f.writer_alive && f.age_ms < kTempMaxAgeMs) return TempFate::kKeep;
  return TempFate::kRemove;
}

OrphanFate orphan_fate(int64_t age_ms) {
  return age_ms >= kOrphanGraceMs ? OrphanFate::kRemove : OrphanFate::kLeave;
}

namespace {

// The pid a temporary file's name gives its writer (<key>.<pid>.<n>.tmp; 0 if none).
pid_t temp_writer(const std::string& name) {
  if (!name.ends_with(".tmp")) return 0;
  const auto dot2 = name.rfind('.', name.size() - 5);
  if (dot2 == std::string::npos || dot2 == 0) return 0;
  const auto dot1 = name.rfind('.', dot2 - 1);
  return dot1 == std::string::npos ? 0 : static_cast<pid_t>(std::atoll(name.c_str() + dot1 + 1));
}

int64_t age_ms_of(const struct stat& st) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return now - (int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000);
}

}  // namespace

size_t DiskTier::remove_abandoned_temp_files() {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir_ + "/tmp", ec)) {
    const std::string path = de.path().string();
    Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st;
    if (f.fd < 0 || ::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    TempFile t;
    // Held while this scan decides: a writer's own lock comes first, or waits for the decision.
    t.locked = ::flock(f.fd, LOCK_EX | LOCK_NB) != 0;
    const pid_t pid = temp_writer(de.path().filename().string());
    t.writer_alive = pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
    t.age_ms = age_ms_of(st);
    t.size = static_cast<uint64_t>(st.st_size);
    if (temp_fate(t) == TempFate::kKeep) continue;
    ::unlink(path.c_str());
    ++removed;
    log::info("kv cache removed abandoned temporary file " + path);
  }
  return removed;
}

Result<int64_t> DiskTier::age_ms(cache::ObjKind kind, const cache::Key& key) const {
  struct stat st;
  if (::stat(path(kind, key).c_str(), &st) != 0)
    return errno_error("cannot stat " + path(kind, key));
  return age_ms_of(st);
}

DiskTier::ScanReport DiskTier::scan(const Found& found, const Known& known) {
  ScanReport rep;
  rep.removed_temp = remove_abandoned_temp_files();
  std::error_code ec;
  for (auto kind : {cache::ObjKind::kChunk, cache::ObjKind::kEntry}) {
    for (const auto& de : fs::directory_iterator(dir_ + "/" + subdir(kind), ec)) {
      const std::string name = de.path().filename().string();
      const auto key = name.size() == 35 && name.ends_with(".kv")
                           ? cache::Key::from_hex(name.substr(0, 32))
                           : std::nullopt;
      // Not an object's name: not this build's to judge (another version's, or a user's).
      if (!key) {
        ++rep.skipped;
        continue;
      }
      if (known && known(kind, *key)) {
        ++rep.objects;
        found(kind, *key, nullptr);
        continue;
      }
      Fd f(::open(de.path().c_str(), O_RDONLY | O_CLOEXEC));
      if (f.fd < 0) continue;  // vanished: another process evicted it
      const HeaderRead hr = read_header(f.fd, fp_, kind, *key);
      if (hr.outcome == HeaderRead::kNewer) {
        ++rep.skipped;
        continue;
      }
      if (hr.outcome == HeaderRead::kDamaged) {
        log::warn("kv cache removing damaged file " + de.path().string() + ": " + hr.why);
        std::error_code rec;
        fs::remove(de.path(), rec);
        ++rep.removed_damaged;
        continue;
      }
      ++rep.objects;
      const StoredObject obj{hr.header.meta, hr.header.stats};
      found(kind, *key, &obj);
    }
  }
  changed_since_last_check();
  return rep;
}

bool DiskTier::changed_since_last_check() {
  const int64_t m = std::max(mtime_ns(dir_ + "/chunks"), mtime_ns(dir_ + "/entries"));
  const bool changed = m != seen_mtime_ns_;
  seen_mtime_ns_ = m;
  return changed;
}

}  // namespace kvstash::tiers
