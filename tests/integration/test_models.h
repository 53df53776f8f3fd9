// Real models for tests: generated once per build directory with kvstash's own generator.
#pragma once

#include <memory>
#include <string>

#include "engine/model.h"

namespace kvstash::fixtures {

// Path of the generated model of `shape` (tiny | hybrid-tiny), writing it on first use.
std::string model_path(const std::string& shape);
// One loaded instance per shape, shared by the tests of a binary.
engine::Model& model(const std::string& shape);
// The llama.cpp build's llama-server (cmake/llama.sh always makes it beside libllama), or ""
// where this build knows no llama.cpp prefix.
std::string llama_server_path();
// A deterministic agent-like prompt of about n tokens.
std::vector<engine::Token> prompt_tokens(engine::Model& m, size_t n, int variant = 0);

}  // namespace kvstash::fixtures
