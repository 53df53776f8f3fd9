// What `kvstash mkmodel` writes, as llama.cpp sees it when it loads the file.
#include "engine/model_gen.h"

#include <gtest/gtest.h>
#include <llama.h>

#include <string>

#include "engine/model.h"
#include "temp_dir.h"
#include "test_models.h"

using namespace kvstash;

namespace {

const char* kWarning = "control-looking token";

// llama.cpp warns on every load of a model whose control tokens are not typed as control
// ("... was not control-type; this is probably a bug in the model"); a generated model must not.
TEST(ModelGen, LoadingAGeneratedModelIsQuiet) {
  std::string source_log;
  {
    engine::LlamaLogCapture cap;
    engine::Model source(engine::vocab_path("qwen2"), {.vocab_only = true});
    source_log = cap.text();
  }
  // The source vocab does warn: otherwise this test could not see the warning at all.
  ASSERT_NE(source_log.find(kWarning), std::string::npos) << source_log;

  fixtures::TempDir dir;
  engine::GenOptions o;
  o.shape = "tiny";
  o.out = dir.path + "/tiny.gguf";
  engine::generate_model(o);
  engine::LlamaLogCapture cap;
  engine::Model m(o.out);
  const std::string log = cap.text();
  EXPECT_NE(log.find("llama_model_loader"), std::string::npos) << "the load was logged: " << log;
  EXPECT_EQ(log.find(kWarning), std::string::npos) << log;

  // The types written are the ones llama.cpp assigned anyway: text tokenizes as before.
  engine::Model source(engine::vocab_path("qwen2"), {.vocab_only = true});
  const std::string text = "a</s>b<|im_end|>\n<|endoftext|> plain text";
  EXPECT_EQ(m.tokenize(text), source.tokenize(text));
  EXPECT_EQ(m.detokenize(m.tokenize(text)), source.detokenize(source.tokenize(text)));
}

// Every family's tiny shape loads as its llama.cpp architecture with its family's tokenizer and
// template, and with the KV character the engine relies on: where a restore may resume, whether a
// snapshot carries a partial state (recurrent state, sliding window), whether V is cached (MLA).
TEST(ModelGen, FamiliesLoadWithTheirKvCharacter) {
  struct Want {
    const char* shape;
    const char* arch;
    int n_vocab;
    bool anywhere, partial, sliding, has_v;
  };
  const Want wants[] = {
      {"tiny", "qwen3", 151936, true, false, false, true},
      {"hybrid-tiny", "qwen35", 151936, false, true, false, true},
      {"llama-tiny", "llama", 128256, true, false, false, true},
      {"qwen3moe-tiny", "qwen3moe", 151936, true, false, false, true},
      {"gemma3-tiny", "gemma3", 262144, false, true, true, true},
      {"gpt-oss-tiny", "gpt-oss", 151936, false, true, true, true},
      {"deepseek2-tiny", "deepseek2", 102400, true, false, false, false},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(w.shape);
    engine::Model& m = fixtures::model(w.shape);
    EXPECT_EQ(m.arch(), w.arch);
    EXPECT_EQ(m.n_vocab(), w.n_vocab);
    EXPECT_EQ(m.resume_kind() == engine::ResumeKind::kAnyBoundary, w.anywhere);
    EXPECT_EQ(m.hybrid(), w.partial);
    EXPECT_EQ(m.sliding_window(), w.sliding);
    EXPECT_EQ(m.kv_has_v(), w.has_v);
    EXPECT_FALSE(m.chat_template().empty());
  }
}

// --layers builds fewer layers of a shape and keeps its layer pattern: a 2-layer gemma3 still has
// a sliding and a full-attention layer, so it stays snapshot-only.
TEST(ModelGen, FewerLayersKeepTheLayerPattern) {
  fixtures::TempDir dir;
  engine::GenOptions o;
  o.shape = "gemma3-tiny";
  o.layers = 2;
  o.out = dir.path + "/gemma3-2.gguf";
  engine::generate_model(o);
  engine::Model m(o.out);
  EXPECT_EQ(llama_model_n_layer(m.get()), 2);
  EXPECT_TRUE(m.sliding_window());
  EXPECT_NE(m.resume_kind(), engine::ResumeKind::kAnyBoundary);
}

}  // namespace
