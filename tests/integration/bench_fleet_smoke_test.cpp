// A small run of `kvstash bench --fleet 2` (the smoke version CI runs; the real run is in
// bench/results/). Nothing timed is asserted: the test checks that every request goes through
// HAProxy and is answered, kill -9 of instance 1 included, that each session stays on one instance
// until the kill, and that the report counts requests per instance.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "subprocess.h"
#include "temp_dir.h"
#include "test_models.h"

namespace kvstash::fixtures {
namespace {

using nlohmann::json;

bool installed(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

TEST(BenchFleetSmoke, AffinityKeepsSessionsOnOneInstanceAndTheKillFailsNothing) {
  for (const char* tool : {"haproxy", "redis-server", "redis-cli", "curl", "perl"}) {
    ASSERT_TRUE(installed(tool)) << tool << " is not installed (./setup.sh installs it)";
  }
  TempDir dir;
  const auto r = run_kvstash({"bench",
                              "-m",
                              model_path("tiny"),
                              "--fleet",
                              "2",
                              "--servers",
                              "kvstash",
                              "--sessions",
                              "3",
                              "--turns",
                              "3",
                              "--subagents",
                              "0",
                              "--system-tokens",
                              "400",
                              "--tool-result-tokens",
                              "60",
                              "--max-tokens",
                              "2",
                              "-c",
                              "4096",
                              "-t",
                              "1",
                              "--np",
                              "2",
                              "-o",
                              dir.path + "/out"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;

  std::ifstream f(dir.path + "/out/report.json");
  ASSERT_TRUE(f) << "no report.json";
  const json rep = json::parse(f);
  ASSERT_EQ(rep["fleet"]["runs"].size(), 2u);  // kvstash with affinity, then round-robin
  EXPECT_EQ(rep["fleet"]["runs"][1]["name"], "kvstash-roundrobin");
  const json& run = rep["fleet"]["runs"][0];
  EXPECT_EQ(run["name"], "kvstash");
  EXPECT_EQ(run["balance"], "affinity");
  // 3 sessions x 3 turns, instance 1 killed half-way.
  ASSERT_EQ(run["requests"].size(), 9u);
  EXPECT_EQ(run["kill_at"], 4);
  EXPECT_EQ(run["failed"], 0);
  std::map<std::string, std::set<std::string>> before_kill;
  size_t counted = 0;
  for (const auto& q : run["requests"]) {
    EXPECT_TRUE(q["ok"].get<bool>());
    ASSERT_TRUE(q["instance"] == "inst1" || q["instance"] == "inst2") << q;
    if (!q["after_kill"].get<bool>()) {
      before_kill[q["session"]].insert(q["instance"]);
    } else {
      EXPECT_EQ(q["instance"], "inst2") << "instance 1 is dead";
    }
  }
  for (const auto& [session, insts] : before_kill) EXPECT_EQ(insts.size(), 1u) << session;
  EXPECT_EQ(run["sessions_on_one_instance"], 3);
  for (const auto& [inst, n] : run["requests_per_instance"].items()) counted += n.get<size_t>();
  EXPECT_EQ(counted, 9u);
  EXPECT_TRUE(rep["fleet"]["ratios"]["kvstash_over_roundrobin"].is_number());

  std::ifstream md(dir.path + "/out/report.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("| requests per instance |"), std::string::npos);
  EXPECT_NE(text.find("instance 1 killed"), std::string::npos);
}

}  // namespace
}  // namespace kvstash::fixtures
