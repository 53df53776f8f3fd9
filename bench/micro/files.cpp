// Raw files and the page cache: the raw write()/read() baselines that the store and load figures
// are ratios to, and dropping files from the page cache for the cold reads.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "micro.h"
#include "tiers/disk_tier.h"

namespace fs = std::filesystem;

namespace kvstash::micro {

namespace {

void write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_all(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("read");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// Every regular file under `dir`.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& de : fs::recursive_directory_iterator(dir, ec)) {
    if (de.is_regular_file()) out.push_back(de.path().string());
  }
  return out;
}

// Fraction of the pages of the files under `dir` that are in the page cache (mincore).
double resident_fraction(const std::string& dir) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size_t total = 0, resident = 0;
  for (const auto& p : files_under(dir)) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      void* m = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) {
        std::vector<unsigned char> vec((st.st_size + page - 1) / page);
        if (::mincore(m, st.st_size, vec.data()) == 0) {
          for (unsigned char v : vec) resident += v & 1;
          total += vec.size();
        }
        ::munmap(m, st.st_size);
      }
    }
    ::close(fd);
  }
  return total ? double(resident) / double(total) : 0.0;
}

void raw_read_files(const std::string& dir, size_t n, std::vector<uint8_t>& buf) {
  for (size_t i = 0; i < n; ++i) {
    const std::string p = dir + "/raw" + std::to_string(i);
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open " + p);
    read_all(fd, buf.data(), buf.size());
    ::close(fd);
  }
}

}  // namespace

void drop_pages(const std::string& dir) {
  for (const auto& p : files_under(dir)) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

void drop_pages_untimed(benchmark::State& state, const std::string& dir) {
  state.PauseTiming();
  drop_pages(dir);
  state.ResumeTiming();
}

void check_cold(benchmark::State& state, const std::string& dir) {
  drop_pages(dir);
  const double r = resident_fraction(dir);
  state.counters["resident_after_drop"] = r;
  if (r > 0.01) {
    std::fprintf(stderr,
                 "warning: %.0f%% of %s still in the page cache after POSIX_FADV_DONTNEED: "
                 "the cold figures are not cold\n",
                 r * 100, dir.c_str());
  }
}

void write_raw_files(const std::string& dir, size_t n, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> head(tiers::kHeaderSize, 0x5a);
  for (size_t i = 0; i < n; ++i) {
    const std::string p = dir + "/raw" + std::to_string(i);
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("open " + p);
    write_all(fd, head.data(), head.size());
    write_all(fd, payload.data(), payload.size());
    if (::fsync(fd) != 0) die("fsync");
    ::close(fd);
  }
}

void time_raw_reads(benchmark::State& state, const std::string& name, size_t n,
                    const std::vector<uint8_t>& payload, bool cold) {
  const std::string dir = sub_dir(cold ? name + "-cold" : name);
  write_raw_files(dir, n, payload);
  std::vector<uint8_t> buf(payload.size() + tiers::kHeaderSize);
  if (cold) check_cold(state, dir);
  for (auto _ : state) {
    if (cold) drop_pages_untimed(state, dir);
    raw_read_files(dir, n, buf);
    benchmark::ClobberMemory();
  }
  set_bytes(state, n * payload.size());
  fs::remove_all(dir);
}

}  // namespace kvstash::micro
