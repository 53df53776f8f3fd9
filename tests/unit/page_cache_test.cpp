// util::page_cached_bytes against the kernel's page cache on a real file.
#include "util/page_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <string>
#include <vector>

using kvstash::util::page_cached_bytes;

TEST(PageCache, MissingFileHasNothingCached) {
  EXPECT_EQ(page_cached_bytes(testing::TempDir() + "/kvstash-no-such-file"), 0u);
}

TEST(PageCache, WrittenFileIsCachedUntilDropped) {
  const std::string path = testing::TempDir() + "/kvstash-page-cache-" + std::to_string(getpid());
  const size_t size = (4u << 20) + 100;  // not a whole number of pages
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const std::vector<char> data(size, 'k');
  ASSERT_EQ(::write(fd, data.data(), size), static_cast<ssize_t>(size));
  ASSERT_EQ(::fdatasync(fd), 0);
  // What was just written is in the page cache, counted up to the file's size.
  EXPECT_EQ(page_cached_bytes(path), size);

  struct statfs fs {};
  ASSERT_EQ(::fstatfs(fd, &fs), 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  const uint64_t after = page_cached_bytes(path);
  ::close(fd);
  ::unlink(path.c_str());
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << "tmpfs keeps its files in memory";
  // Clean pages dropped: most of the file must now come from the device.
  EXPECT_LT(after, size / 2);
}
