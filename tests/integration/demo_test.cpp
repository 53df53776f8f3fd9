// `kvstash demo` (what ./setup.sh ends with) goes through the real cache: the disk tier, a
// restart between turns, the log lines of `kvstash serve`, and the bit-exact check.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "subprocess.h"
#include "test_models.h"

using namespace kvstash;

namespace {

bool has(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

TEST(Demo, RestoresTurnOneFromTheDiskTierAfterARestart) {
  const auto r = fixtures::run_kvstash(
      {"demo", "--model", fixtures::model_path("tiny"), "--prompt-tokens", "2500"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_TRUE(has(r.err, "kv cache stored tokens=2048 reason=cold")) << r.err;
  EXPECT_TRUE(has(r.err, "reason=shutdown")) << r.err;
  EXPECT_TRUE(has(r.err, "kv cache hit tokens=")) << r.err;
  EXPECT_TRUE(has(r.err, "bit-identical to cold")) << r.err;
  EXPECT_TRUE(has(r.out, "faster")) << r.out;

  // The default cache directory is the demo's own, gone afterwards.
  const std::string marker = "disk tier in ";
  const size_t at = r.err.find(marker);
  ASSERT_NE(at, std::string::npos) << r.err;
  const std::string dir =
      r.err.substr(at + marker.size(), r.err.find(' ', at + marker.size()) - at - marker.size());
  EXPECT_TRUE(has(dir, "kvstash-demo-")) << dir;
  EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
}

}  // namespace
