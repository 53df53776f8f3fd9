// What `kvstash mkmodel` writes, as llama.cpp sees it when it loads the file.
#include "engine/model_gen.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/model.h"
#include "temp_dir.h"

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

}  // namespace
