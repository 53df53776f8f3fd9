// Storage without duplication (SPEC section 2): a conversation that grows by a turn writes about
// that turn's KV, not the whole context again. Ten turns of ~2k tokens, a restart before each:
// the bytes each turn writes must stay within 1.25x the KV bytes of its new tokens.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "cache/prefix_cache.h"
#include "engine/cached_session.h"
#include "server/chat_prompt.h"
#include "test_models.h"

using namespace kvstash;
namespace fs = std::filesystem;

namespace {

std::vector<server::ChatMessage> turns(int n) {
  std::string sys = "You are a coding agent. Tools:\n";
  for (int i = 0; i < 150; ++i) {
    sys += "{\"name\":\"tool_" + std::to_string(i) + "\",\"description\":\"runs step " +
           std::to_string(i) + " of the build and returns its log\"}\n";
  }
  std::vector<server::ChatMessage> m = {{"system", sys}, {"user", "Fix the build."}};
  for (int t = 1; t < n; ++t) {
    m.push_back({"assistant", "Running the build, attempt " + std::to_string(t) + "."});
    std::string log;
    for (int l = 0; l < 110; ++l) {
      log += "[" + std::to_string(t) + ":" + std::to_string(l) + "] compiling src/module_" +
             std::to_string(l * t) + ".cpp ok\n";
    }
    m.push_back({"user", log});
  }
  return m;
}

class WriteAmplification : public ::testing::TestWithParam<std::string> {};

TEST_P(WriteAmplification, TenTurnConversationWritesOnlyItsNewTokens) {
  engine::Model& model = fixtures::model(GetParam());
  char tmpl[] = "/tmp/kvstash-wa-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  engine::SessionOptions so;
  so.n_ctx = 32768;
  cache::StoreConfig store;
  store.boundary_align = 2048;

  double bytes_per_token = 0, worst = 0, sum = 0;
  uint32_t prev_prompt = 0;
  for (int t = 1; t <= 10; ++t) {
    engine::Session s(model, so);  // a restart: nothing survives but the disk
    cache::CacheConfig cc;
    cc.dir = dir;
    cc.chunk = so.chunk;
    cc.snapshot_only = model.resume_kind() != engine::ResumeKind::kAnyBoundary;
    cache::PrefixCache cache(cc, s.fingerprint().bytes);
    engine::CachedSession cs(s, &cache, store);
    const auto p = server::render_chat(model, engine::ChatTemplates(model), turns(t));
    const auto rep = cs.prefill(p.tokens, p.info);
    if (t == 1) bytes_per_token = s.extract_kv(0, so.chunk).size() / double(so.chunk);
    for (int i = 0; i < 4; ++i) s.decode_one(s.greedy());
    cs.shutdown();
    const uint64_t written = cache.stats().bytes_written;
    const double new_kv = (p.tokens.size() - prev_prompt) * bytes_per_token;
    const double ratio = written / new_kv;
    std::printf(
        "turn %2d: prompt %6zu tokens, restored %6u, wrote %9llu bytes for %6zu new tokens "
        "(%.0f KV bytes): %.3fx\n",
        t, p.tokens.size(), rep.cached_tokens, static_cast<unsigned long long>(written),
        p.tokens.size() - prev_prompt, new_kv, ratio);
    if (t > 1) {
      EXPECT_GT(rep.cached_tokens, prev_prompt * 9 / 10) << "turn " << t;
      worst = std::max(worst, ratio);
      sum += ratio;
    }
    EXPECT_LE(ratio, 1.25) << "turn " << t;
    prev_prompt = static_cast<uint32_t>(p.tokens.size());
  }
  std::printf("write amplification (%s): mean %.3fx, worst %.3fx over turns 2-10\n",
              GetParam().c_str(), sum / 9, worst);
  RecordProperty("write_amplification_mean", std::to_string(sum / 9));
  RecordProperty("write_amplification_worst", std::to_string(worst));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Models, WriteAmplification, ::testing::Values("tiny", "hybrid-tiny"),
                         [](const auto& info) {
                           return info.param == "tiny" ? std::string("Attention")
                                                       : std::string("Hybrid");
                         });

}  // namespace
