// A fresh directory under /tmp, removed with everything in it when the test is done.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace kvstash::fixtures {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/kvstash-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace kvstash::fixtures
