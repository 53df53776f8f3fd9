// Bit-exactness of restored states against fresh prefills, on real generated models:
// attention-only (qwen3 shape) and hybrid attention + gated delta net (qwen35 shape), each with
// flash attention on and off (off, llama.cpp stores V transposed: another KV layout to cut into
// chunks and put back); the tiny shape of every other supported family (llama, qwen3moe, gemma3
// and gpt-oss with sliding-window layers, deepseek2 with MLA's latent KV), and quantized KV.
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>

#include "engine/kv_blob.h"
#include "engine/session.h"
#include "engine/session_engine.h"
#include "greedy_trace.h"
#include "test_models.h"

using namespace kvstash;
using engine::Session;
using engine::Token;
using fixtures::continue_greedy;
using fixtures::expect_same;
using fixtures::Trace;

namespace {

constexpr size_t kPrompt = 700;  // chunks of 256: boundaries at 256 and 512, end inside a chunk

struct Param {
  std::string shape;  // a tiny shape of kvstash mkmodel
  bool flash_attn;
  std::string kv_type = "f16";  // K and V
};
void PrintTo(const Param& p, std::ostream* os) {
  *os << p.shape << (p.flash_attn ? "" : ", flash attention off") << ", KV " << p.kv_type;
}

engine::SessionOptions opts(const Param& p) {
  engine::SessionOptions o;
  o.n_ctx = 1024;
  o.chunk = 256;
  o.flash_attn = p.flash_attn;
  o.type_k = p.kv_type;
  o.type_v = p.kv_type;
  return o;
}

class EngineRestore : public ::testing::TestWithParam<Param> {
 protected:
  engine::Model& m() { return fixtures::model(GetParam().shape); }
  engine::SessionOptions opts() { return ::opts(GetParam()); }
  std::vector<Token> prompt() { return fixtures::prompt_tokens(m(), kPrompt); }

  // The prompt's content-derived batch breaks (as a server passes chat message starts).
  engine::PrefillOptions breaks() {
    engine::PrefillOptions po;
    po.boundaries = {300};
    return po;
  }

  Trace fresh() {
    Session s(m(), opts());
    s.prefill(prompt(), breaks());
    return continue_greedy(s);
  }

  // Prefills the prompt taking a snapshot at `pos`, restores it into a new session and finishes.
  Trace via_snapshot(int pos) {
    engine::Snapshot snap;
    {
      Session s(m(), opts());
      engine::PrefillOptions po = breaks();
      po.snapshot_at = {pos};
      po.on_snapshot = [&](int p) {
        EXPECT_EQ(p, pos);
        snap = s.snapshot();
      };
      s.prefill(prompt(), po);
      EXPECT_EQ(snap.tokens.size(), static_cast<size_t>(pos)) << "snapshot did not fire";
    }
    Session r(m(), opts());
    r.restore(snap);
    EXPECT_EQ(r.tokens().size(), static_cast<size_t>(pos));
    r.prefill(prompt(), breaks());
    return continue_greedy(r);
  }
};

TEST_P(EngineRestore, SnapshotAtPromptEnd) { expect_same(fresh(), via_snapshot(kPrompt)); }
// 300 is inside the chunk [256, 512) and a message boundary of the prompt.
TEST_P(EngineRestore, SnapshotInsideChunk) { expect_same(fresh(), via_snapshot(300)); }
TEST_P(EngineRestore, SnapshotAtChunkBoundary) { expect_same(fresh(), via_snapshot(512)); }

TEST_P(EngineRestore, PrefixRebuiltFromRangeChunks) {
  const Trace ref = fresh();
  std::vector<std::vector<uint8_t>> chunks;
  std::vector<uint8_t> partial;
  std::vector<float> logits;
  {
    Session s(m(), opts());
    engine::PrefillOptions po = breaks();
    po.snapshot_at = {512};
    po.on_snapshot = [&](int) {
      if (m().hybrid()) partial = s.partial_state();
      logits = s.logits();
    };
    s.prefill(prompt(), po);
    chunks.push_back(s.extract_kv(0, 256));
    chunks.push_back(s.extract_kv(256, 512));
  }
  // The layout under test: V transposed exactly when flash attention is off.
  EXPECT_EQ(engine::parse_kv_section(chunks[0], m().cell_ext_size(), m().kv_has_v()).v_trans,
            !GetParam().flash_attn);
  Session r(m(), opts());
  const auto p = prompt();
  engine::SessionEngine re(r);
  cache::restore_parts(re, 0, {chunks[0], chunks[1]}, partial, {p.begin(), p.begin() + 512},
                       logits);
  r.prefill(p, breaks());
  expect_same(ref, continue_greedy(r));
}

TEST_P(EngineRestore, TrimToBoundaryWhereAllowed) {
  if (m().resume_kind() != engine::ResumeKind::kAnyBoundary) {
    Session s(m(), opts());
    s.prefill(prompt());
    EXPECT_THROW(s.trim(256), std::logic_error);
    return;
  }
  const Trace ref = fresh();
  Session s(m(), opts());
  const auto p = prompt();
  auto other = fixtures::prompt_tokens(m(), kPrompt, 1);
  std::copy(p.begin(), p.begin() + 256, other.begin());
  s.prefill(other);  // shares exactly the first 256 tokens
  s.trim(256);
  s.prefill(p, breaks());
  expect_same(ref, continue_greedy(s));
}

TEST_P(EngineRestore, RefusesStateOfAnotherModel) {
  const std::string other = GetParam().shape == "tiny" ? "hybrid-tiny" : "tiny";
  Session a(fixtures::model(other), opts());
  a.prefill(fixtures::prompt_tokens(fixtures::model(other), 300));
  const auto snap = a.snapshot();
  Session b(m(), opts());
  try {
    b.restore(snap);
    FAIL() << "restore of another model's state succeeded";
  } catch (const engine::StateMismatch& e) {
    EXPECT_NE(std::string(e.what()).find("another model file or other KV settings"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(b.tokens().empty());
}

TEST_P(EngineRestore, RefusesStateWithOtherKvSettings) {
  auto q8 = opts();
  q8.type_k = q8.type_k == "f16" ? "q8_0" : "f16";
  q8.type_v = q8.flash_attn ? q8.type_k : "f16";  // llama.cpp quantizes V only with flash attention
  Session a(m(), q8);
  a.prefill(fixtures::prompt_tokens(m(), 300));
  auto snap = a.snapshot();
  Session b(m(), opts());
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  EXPECT_THROW(b.restore(snap), engine::StateMismatch);
  // Even with a forged fingerprint, llama.cpp's own checks refuse the foreign layout.
  snap.fingerprint = b.fingerprint();
  EXPECT_THROW(b.restore(snap), engine::StateMismatch);
  EXPECT_TRUE(b.tokens().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Models, EngineRestore,
    ::testing::Values(Param{"tiny", true}, Param{"hybrid-tiny", true}, Param{"tiny", false},
                      Param{"hybrid-tiny", false}, Param{"tiny", true, "q8_0"},
                      Param{"tiny", true, "q4_0"}, Param{"llama-tiny", true},
                      Param{"qwen3moe-tiny", true}, Param{"gemma3-tiny", true},
                      Param{"gpt-oss-tiny", true}, Param{"deepseek2-tiny", true}),
    [](const auto& info) {
      const std::string& s = info.param.shape;
      std::string n = s == "tiny" ? "Attention" : s == "hybrid-tiny" ? "Hybrid" : s;
      n += info.param.flash_attn ? "" : "NoFlashAttn";
      n += info.param.kv_type == "f16" ? "" : info.param.kv_type;
      std::erase_if(n, [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); });
      return n;
    });

}  // namespace
