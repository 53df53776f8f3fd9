// The cache end to end on real generated models: every request is its own process (a restart),
// and every answer must equal, bit for bit, the answer of a fresh prefill without the cache.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "subprocess.h"
#include "temp_dir.h"
#include "test_models.h"
#include "tiers/disk_format.h"

using namespace kvstash;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using fixtures::TempDir;

// An agent conversation: long system prompt with tool schemas, then turns with tool output.
json conversation(int turns, int variant) {
  std::string sys = "You are coding agent #" + std::to_string(variant) + ". Tools:\n";
  for (int i = 0; i < 90; ++i) {
    sys += "{\"name\":\"tool_" + std::to_string(i) + "\",\"description\":\"reads file " +
           std::to_string(i * variant) + " and returns numbered lines\"}\n";
  }
  json msgs = json::array({{{"role", "system"}, {"content", sys}},
                           {{"role", "user"}, {"content", "Make the test suite pass."}}});
  for (int t = 1; t < turns; ++t) {
    msgs.push_back(
        {{"role", "assistant"}, {"content", "Calling run_tests, step " + std::to_string(t)}});
    std::string out = "test output " + std::to_string(t) + ":\n";
    for (int l = 0; l < 25; ++l)
      out += "FAILED tests/test_" + std::to_string(l) + ".py line " + std::to_string(t * l) + "\n";
    msgs.push_back({{"role", "user"}, {"content", out}});
  }
  return msgs;
}

struct Param {
  std::string shape;  // a tiny shape of kvstash mkmodel
  std::string kv_type = "f16";
};
void PrintTo(const Param& p, std::ostream* os) { *os << p.shape << ", KV " << p.kv_type; }

class CacheRestart : public ::testing::TestWithParam<Param> {
 protected:
  TempDir dir;
  std::string model() { return fixtures::model_path(GetParam().shape); }

  std::string write_messages(const json& msgs, const std::string& name) {
    const std::string p = dir.path + "/" + name + ".json";
    std::ofstream(p) << msgs.dump();
    return p;
  }

  json generate(const std::string& messages, std::vector<std::string> extra,
                fixtures::ProcResult* raw = nullptr) {
    std::vector<std::string> args = {
        "generate", "-m", model(),      "--messages", messages,
        "-n",       "8",  "--ctx-size", "8192",       "--cache-boundary-align",
        "256"};
    if (GetParam().kv_type != "f16") {
      args.insert(args.end(),
                  {"--cache-type-k", GetParam().kv_type, "--cache-type-v", GetParam().kv_type});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = fixtures::run_kvstash(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    if (raw) *raw = r;
    return json::parse(r.out.empty() ? "{}" : r.out);
  }

  void multi_turn();
  json fresh(const std::string& messages) { return generate(messages, {"--no-cache"}); }
  json cached(const std::string& messages, const std::string& cache_dir,
              std::vector<std::string> extra = {}, fixtures::ProcResult* raw = nullptr) {
    extra.insert(extra.begin(), {"--cache-dir", cache_dir});
    return generate(messages, extra, raw);
  }
};

void expect_same_answer(const json& a, const json& b) {
  EXPECT_EQ(a.at("logits_hash"), b.at("logits_hash")) << "logits after the prompt differ";
  EXPECT_EQ(a.at("tokens"), b.at("tokens")) << "greedy tokens differ";
}

// Four turns, each a new process restoring from disk; every answer equals a fresh prefill's.
void CacheRestart::multi_turn() {
  const std::string cache_dir = dir.path + "/cache";
  uint32_t prev_prompt = 0;
  for (int turn = 1; turn <= 4; ++turn) {
    const auto m = write_messages(conversation(turn, 1), "turn" + std::to_string(turn));
    const json c = cached(m, cache_dir);
    expect_same_answer(c, fresh(m));
    if (turn > 1) {
      EXPECT_GT(c.at("cached_tokens").get<uint32_t>(), prev_prompt * 9 / 10)
          << "turn " << turn << " should restore nearly all of the previous turn";
    }
    prev_prompt = c.at("prompt_tokens");
  }
}

TEST_P(CacheRestart, MultiTurnConversationRestoresBitExactAfterEachRestart) { multi_turn(); }

TEST_P(CacheRestart, DamagedFilesAreDetectedAndNeverServed) {
  const std::string cache_dir = dir.path + "/cache";
  cached(write_messages(conversation(1, 2), "t1"), cache_dir);
  // Damage every file in a different way: payload byte, header byte, truncation.
  int i = 0;
  for (const auto& de : fs::recursive_directory_iterator(cache_dir)) {
    if (!de.is_regular_file()) continue;
    const std::string p = de.path();
    switch (i++ % 3) {
      case 0: {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(tiers::kHeaderSize + 3);
        f.put('\x55');
        break;
      }
      case 1: {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(20);
        f.put('\x55');
        break;
      }
      case 2:
        fs::resize_file(p, fs::file_size(p) / 2);
        break;
    }
  }
  ASSERT_GT(i, 2);
  const auto m2 = write_messages(conversation(2, 2), "t2");
  fixtures::ProcResult raw;
  const json c = cached(m2, cache_dir, {}, &raw);
  expect_same_answer(c, fresh(m2));
  EXPECT_EQ(c.at("cached_tokens"), 0) << "nothing damaged may be restored";
  EXPECT_NE(raw.err.find("removing damaged file"), std::string::npos) << raw.err;
}

TEST_P(CacheRestart, TinyBudgetForcesEvictionsWithoutBreakingARestore) {
  const std::string cache_dir = dir.path + "/cache";
  std::string log;
  for (int round = 0; round < 2; ++round) {
    for (int conv = 1; conv <= 3; ++conv) {
      const auto m = write_messages(conversation(1 + round, 10 + conv), "c" + std::to_string(conv));
      fixtures::ProcResult raw;
      const json c = cached(m, cache_dir, {"--cache-disk-budget", "2M"}, &raw);
      expect_same_answer(c, fresh(m));
      log += raw.err;
    }
  }
  EXPECT_NE(log.find("kv cache evicted reason=disk-cache-full"), std::string::npos);
  uint64_t bytes = 0;
  for (const auto& de : fs::recursive_directory_iterator(cache_dir)) {
    if (de.is_regular_file()) bytes += de.file_size();
  }
  EXPECT_LE(bytes, 2u << 20);
}

// Without --cache-dir, generate keeps its cache in $XDG_CACHE_HOME/kvstash/kv, so the next process
// restores what this one stored; --cache-dir none writes nothing at all.
TEST(CacheDefaults, GenerateKeepsItsCacheInXdgCacheHomeUnlessNone) {
  TempDir dir;
  const std::string xdg = dir.path + "/xdg", home = dir.path + "/home", kv = xdg + "/kvstash/kv";
  const std::vector<std::pair<std::string, std::string>> env = {{"XDG_CACHE_HOME", xdg},
                                                                {"HOME", home}};
  const std::string m = dir.path + "/m.json";
  std::ofstream(m) << conversation(1, 40).dump();
  const std::vector<std::string> args = {
      "generate",   "-m",   fixtures::model_path("tiny"), "--messages", m, "-n", "4",
      "--ctx-size", "8192", "--cache-boundary-align",     "256"};
  auto none_args = args;
  none_args.insert(none_args.end(), {"--cache-dir", "none"});
  const auto none = fixtures::run_kvstash(none_args, env);
  ASSERT_EQ(none.rc, 0) << none.err;
  EXPECT_NE(none.err.find("kv cache disk tier off (--cache-dir none)"), std::string::npos)
      << none.err;
  EXPECT_FALSE(fs::exists(xdg) || fs::exists(home)) << "--cache-dir none wrote files";

  const auto first = fixtures::run_kvstash(args, env);
  ASSERT_EQ(first.rc, 0) << first.err;
  EXPECT_NE(first.err.find("kv cache dir " + kv + " (persistent disk tier"), std::string::npos)
      << first.err;
  const auto second = fixtures::run_kvstash(args, env);
  ASSERT_EQ(second.rc, 0) << second.err;
  const json a = json::parse(none.out), b = json::parse(first.out), c = json::parse(second.out);
  EXPECT_EQ(b.at("cached_tokens"), 0);
  EXPECT_GT(c.at("cached_tokens").get<int>(), c.at("prompt_tokens").get<int>() * 9 / 10)
      << "the second process restores from the default directory";
  expect_same_answer(a, b);
  expect_same_answer(a, c);
  EXPECT_FALSE(fs::exists(home)) << "$XDG_CACHE_HOME is set: nothing goes to ~/.cache";
}

// A process started on a cache that holds something to restore measures its prefill speed first,
// so its first request chooses between restore and recompute from rates rather than taking the
// longest prefix blindly; a process on an empty cache (nothing to decide) skips it, and so does
// --cache-calibrate 0. The restored answer stays the fresh prefill's.
TEST(CacheCalibration, AStartOnAFilledCacheSeedsThePrefillEstimateBeforeTheFirstRequest) {
  TempDir dir;
  const std::string m = dir.path + "/m.json", cache_dir = dir.path + "/cache";
  std::ofstream(m) << conversation(2, 41).dump();
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"generate",
                                     "-m",
                                     fixtures::model_path("tiny"),
                                     "--messages",
                                     m,
                                     "-n",
                                     "4",
                                     "--ctx-size",
                                     "8192",
                                     "--cache-dir",
                                     cache_dir};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = fixtures::run_kvstash(args);
    EXPECT_EQ(r.rc, 0) << r.err;
    return r;
  };
  const std::string calibrated = "kv cache calibration: prefill 256 tokens in ";
  const auto first = run({});
  EXPECT_EQ(first.err.find(calibrated), std::string::npos) << "an empty cache has no decision\n"
                                                           << first.err;
  const auto second = run({});
  EXPECT_NE(second.err.find(calibrated), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("kv cache calibration: disk read "), std::string::npos) << second.err;
  const auto plan = second.err.find("kv cache plan ");
  ASSERT_NE(plan, std::string::npos) << second.err;
  const std::string line = second.err.substr(plan, second.err.find('\n', plan) - plan);
  EXPECT_EQ(line.find("no prefill data"), std::string::npos) << line;
  EXPECT_EQ(line.find("recompute est=?"), std::string::npos) << line;
  // The disk candidate is priced by how much of it the page cache holds.
  EXPECT_NE(line.find("(page cache "), std::string::npos) << line;
  const auto off = run({"--cache-calibrate", "0"});
  EXPECT_EQ(off.err.find("kv cache calibration"), std::string::npos) << off.err;
  EXPECT_NE(off.err.find("(no prefill data: longest)"), std::string::npos) << off.err;
  const json a = json::parse(second.out), b = json::parse(off.out);
  EXPECT_GT(a.at("cached_tokens").get<int>(), 0);
  expect_same_answer(a, b);
  expect_same_answer(a, json::parse(run({"--no-cache"}).out));
}

INSTANTIATE_TEST_SUITE_P(Models, CacheRestart,
                         ::testing::Values(Param{"tiny"}, Param{"hybrid-tiny"}),
                         [](const auto& info) {
                           return info.param.shape == "tiny" ? std::string("Attention")
                                                             : std::string("Hybrid");
                         });

// The tiny shape of every other family, and quantized KV, through the multi-turn conversation
// only (the damage and budget tests exercise the cache, which is the same for every family).
class CacheRestartFamilies : public CacheRestart {};
TEST_P(CacheRestartFamilies, MultiTurnConversationRestoresBitExactAfterEachRestart) {
  multi_turn();
}
INSTANTIATE_TEST_SUITE_P(Families, CacheRestartFamilies,
                         ::testing::Values(Param{"tiny", "q8_0"}, Param{"llama-tiny"},
                                           Param{"qwen3moe-tiny"}, Param{"gemma3-tiny"},
                                           Param{"gpt-oss-tiny"}, Param{"deepseek2-tiny"}),
                         [](const auto& info) {
                           std::string n = info.param.shape;
                           if (info.param.kv_type != "f16") n += info.param.kv_type;
                           std::erase_if(n, [](char c) { return !std::isalnum(c); });
                           return n;
                         });

}  // namespace
