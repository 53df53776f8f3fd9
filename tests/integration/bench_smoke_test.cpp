// A small run of `kvstash bench` (the smoke version CI runs; the real runs are in bench/).
// Nothing timed is asserted: the test checks that the harness drives both servers through the
// same workload, that kvstash's cache survives the restart, and that the reuse it reports is
// consistent with the oracle.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "subprocess.h"
#include "temp_dir.h"
#include "test_models.h"

namespace kvstash::fixtures {
namespace {

using nlohmann::json;

// The llama.cpp build (cmake/llama.sh) always makes llama-server beside libllama, so a missing
// one is a broken build: the test fails rather than measure kvstash alone.
std::string llama_server() { return llama_server_path(); }

TEST(BenchSmoke, AgentWorkloadAgainstKvstashAndLlamaServer) {
  TempDir dir;
  std::vector<std::string> args = {"bench",
                                   "-m",
                                   model_path("tiny"),
                                   "--system-tokens",
                                   "1500",
                                   "--sessions",
                                   "2",
                                   "--turns",
                                   "2",
                                   "--subagent-turns",
                                   "1",
                                   "--tool-result-tokens",
                                   "200",
                                   "--max-tokens",
                                   "4",
                                   "-c",
                                   "4096",
                                   "-t",
                                   "2",
                                   "-o",
                                   dir.path + "/out",
                                   "--write-token-trace",
                                   dir.path + "/tokens.jsonl"};
  const std::string peer = llama_server();
  ASSERT_TRUE(!peer.empty() && std::filesystem::exists(peer))
      << "llama-server not found (" << (peer.empty() ? "no llama.cpp prefix" : peer)
      << "): the llama.cpp build makes it; rebuild it (cmake/llama.sh)";
  args.insert(args.end(), {"--llama-server", peer});
  const auto r = run_kvstash(args);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;

  std::ifstream f(dir.path + "/out/report.json");
  ASSERT_TRUE(f) << "no report.json";
  const json rep = json::parse(f);
  ASSERT_EQ(rep["servers"].size(), 2u);
  const json& kv = rep["servers"][0];
  EXPECT_EQ(kv["name"], "kvstash");
  ASSERT_FALSE(kv["failed"].get<bool>()) << kv["error"];
  // 2 sessions x (2 turns + 1 sub-agent turn), a restart half-way.
  ASSERT_EQ(kv["requests"].size(), 6u);
  double cached = 0, oracle = 0;
  for (const auto& q : kv["requests"]) {
    // The server counts the same prompt tokens as the bench's own rendering, and never reuses
    // more than an ideal cache could.
    EXPECT_EQ(q["server_prompt_tokens"], q["prompt_tokens"]);
    EXPECT_LE(q["cached_tokens"].get<int>(), q["oracle_tokens"].get<int>());
    cached += q["cached_tokens"].get<int>();
    oracle += q["oracle_tokens"].get<int>();
  }
  EXPECT_GE(cached, 0.9 * oracle) << "reused " << cached << " of " << oracle;
  // The first request after the restart is served from the disk cache.
  EXPECT_GT(kv["requests"][3]["cached_tokens"].get<int>(), 0);
  EXPECT_GT(kv["totals"]["bytes_written"].get<double>(), 0);
  EXPECT_EQ(kv["startup_s"].size(), 2u);

  const json& ls = rep["servers"][1];
  EXPECT_EQ(ls["name"], "llama-server");
  ASSERT_FALSE(ls["failed"].get<bool>()) << ls["error"];
  ASSERT_EQ(ls["requests"].size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    // Both servers saw the same prompts: a fair comparison.
    EXPECT_EQ(ls["requests"][i]["server_prompt_tokens"], kv["requests"][i]["prompt_tokens"])
        << "request " << i;
  }
  for (const char* file : {"report.md", "requests-kvstash.tsv", "kvstash.log"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.path + "/out/" + file)) << file;
  }
  // The token trace feeds `kvstash replay`: one line per request and one for the restart.
  std::ifstream t(dir.path + "/tokens.jsonl");
  int lines = 0, restarts = 0;
  for (std::string l; std::getline(t, l); ++lines) {
    restarts += json::parse(l)["type"] == "restart";
  }
  EXPECT_EQ(lines, 7);
  EXPECT_EQ(restarts, 1);
}

}  // namespace
}  // namespace kvstash::fixtures

namespace kvstash::fixtures {
namespace {

// `--api messages|responses`: the same workload over Anthropic Messages and OpenAI Responses
// reaches both servers as the same prompts the bench renders for chat, and the cache serves it.
TEST(BenchSmoke, AgentWorkloadOverMessagesAndResponses) {
  const std::string peer = llama_server_path();
  ASSERT_TRUE(!peer.empty() && std::filesystem::exists(peer)) << "llama-server not found";
  for (const std::string api : {"messages", "responses"}) {
    SCOPED_TRACE(api);
    TempDir dir;
    const auto r = run_kvstash({"bench",
                                "-m",
                                model_path("tiny"),
                                "--system-tokens",
                                "1500",
                                "--sessions",
                                "2",
                                "--turns",
                                "2",
                                "--subagent-turns",
                                "1",
                                "--tool-result-tokens",
                                "200",
                                "--max-tokens",
                                "4",
                                "-c",
                                "4096",
                                "-t",
                                "2",
                                "-o",
                                dir.path + "/out",
                                "--api",
                                api,
                                "--llama-server",
                                peer});
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    std::ifstream f(dir.path + "/out/report.json");
    const json rep = json::parse(f);
    ASSERT_EQ(rep["servers"].size(), 2u);
    int cached = 0;
    for (const auto& server : rep["servers"]) {
      ASSERT_FALSE(server["failed"].get<bool>()) << server["error"];
      ASSERT_EQ(server["requests"].size(), 6u);
      for (const auto& q : server["requests"]) {
        EXPECT_EQ(q["server_prompt_tokens"], q["prompt_tokens"]) << server["name"];
      }
    }
    for (const auto& q : rep["servers"][0]["requests"]) cached += q["cached_tokens"].get<int>();
    EXPECT_GT(cached, 0);
  }
}

}  // namespace
}  // namespace kvstash::fixtures
