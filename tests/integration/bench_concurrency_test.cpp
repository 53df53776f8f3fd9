// A small run of `kvstash bench --concurrency` (the smoke version CI runs). Nothing timed is
// asserted: the test checks that the harness drives concurrent streams and the interference
// request through a real server, that every stream decodes exactly the tokens it asked for (the
// ban of end-of-generation tokens works), and that the report's figures agree with each other.
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

constexpr int kStreams = 2, kMaxTokens = 12;

// The per-stream records of a scenario agree with its totals and with what was asked.
void check_scenario(const json& sc, int slots) {
  EXPECT_EQ(sc["slots"], slots);
  ASSERT_EQ(sc["streams"].size(), static_cast<size_t>(kStreams));
  int tokens = 0;
  for (const auto& s : sc["streams"]) {
    ASSERT_TRUE(s["ok"].get<bool>()) << s["error"];
    EXPECT_EQ(s["completion_tokens"], kMaxTokens);
    // One chunk per token (the random model may emit a token the stream holds back, so <=).
    EXPECT_LE(s["chunks"].get<int>(), kMaxTokens);
    EXPECT_GT(s["chunks"].get<int>(), 1);
    EXPECT_GT(s["ttft_s"].get<double>(), 0);
    EXPECT_GE(s["itl_s"]["p99"].get<double>(), s["itl_s"]["median"].get<double>());
    EXPECT_GE(s["last_token_at_s"].get<double>(), s["first_token_at_s"].get<double>());
    tokens += s["completion_tokens"].get<int>();
  }
  EXPECT_EQ(sc["completion_tokens"], tokens);
  EXPECT_GT(sc["aggregate_decode_tok_s"].get<double>(), 0);
  EXPECT_GT(sc["throughput_tok_s"].get<double>(), 0);
  EXPECT_LE(sc["decode_wall_s"].get<double>(), sc["wall_s"].get<double>());
  for (const char* k : {"itl_s", "ttft_s"}) {
    EXPECT_GT(sc[k]["n"].get<int>(), 0) << k;
    EXPECT_GE(sc[k]["p99"].get<double>(), sc[k]["median"].get<double>()) << k;
    EXPECT_GE(sc[k]["max"].get<double>(), sc[k]["p99"].get<double>()) << k;
  }
}

TEST(BenchConcurrency, StreamsAndInterferenceAgainstKvstash) {
  TempDir dir;
  const auto r =
      run_kvstash({"bench", "-m", model_path("tiny"), "--servers", "kvstash", "--concurrency",
                   std::to_string(kStreams), "--concurrency-prompt-tokens", "64", "--max-tokens",
                   std::to_string(kMaxTokens), "--concurrency-interference", "600", "-c", "3072",
                   "-t", "2", "-o", dir.path + "/out"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;

  std::ifstream f(dir.path + "/out/report.json");
  ASSERT_TRUE(f) << "no report.json";
  const json rep = json::parse(f);
  ASSERT_TRUE(rep.contains("concurrency")) << rep.dump(2);
  const json& c = rep["concurrency"];
  EXPECT_EQ(c["streams"], kStreams);
  EXPECT_EQ(c["max_tokens"], kMaxTokens);
  ASSERT_EQ(c["servers"].size(), 1u);
  const json& kv = c["servers"][0];
  EXPECT_EQ(kv["name"], "kvstash");
  ASSERT_FALSE(kv["failed"].get<bool>()) << kv["error"];

  check_scenario(kv["steady"], kStreams);
  // No prefix is shared between streams: each prompt was prefilled in full.
  for (const auto& s : kv["steady"]["streams"]) EXPECT_GT(s["prompt_tokens"].get<int>(), 50);

  const json& in = kv["interference"];
  check_scenario(in, kStreams + 1);
  // About the tokens asked for (the workload counts its pieces apart, the prompt merges a few).
  EXPECT_GT(in["long_request"]["prompt_tokens"].get<int>(), 500);
  EXPECT_GT(in["long_request"]["ttft_s"].get<double>(), 0);
  EXPECT_GE(in["long_request"]["window_end_s"].get<double>(),
            in["long_request"]["window_start_s"].get<double>());
  // Every interval of the running streams is either in the prefill window or outside it.
  EXPECT_EQ(in["itl_in_window_s"]["n"].get<int>() + in["itl_outside_window_s"]["n"].get<int>(),
            in["itl_s"]["n"].get<int>());
  EXPECT_GE(in["itl_in_window_s"]["p99"].get<double>(),
            in["itl_in_window_s"]["median"].get<double>());
  EXPECT_TRUE(in.contains("p99_in_window_over_median_outside"));

  for (const char* file :
       {"report.md", "tokens-kvstash.tsv", "kvstash.log", "kvstash-interference.log"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.path + "/out/" + file)) << file;
  }
}

}  // namespace
}  // namespace kvstash::fixtures
