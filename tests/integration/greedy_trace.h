// What "bit-exact" compares in the engine tests: the logits after the prompt, 32 greedy tokens,
// and the logits after them, byte for byte.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/session.h"

namespace kvstash::fixtures {

constexpr int kGreedy = 32;

struct Trace {
  std::vector<float> logits;          // after the prompt
  std::vector<engine::Token> tokens;  // greedy continuation
  std::vector<float> final_logits;    // after the continuation
};

inline Trace continue_greedy(engine::Session& s) {
  Trace t;
  t.logits = s.logits();
  for (int i = 0; i < kGreedy; ++i) {
    t.tokens.push_back(s.greedy());
    s.decode_one(t.tokens.back());
  }
  t.final_logits = s.logits();
  return t;
}

inline void expect_same(const Trace& a, const Trace& b) {
  ASSERT_EQ(a.logits.size(), b.logits.size());
  EXPECT_EQ(0, std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)))
      << "logits after the prompt differ";
  EXPECT_EQ(a.tokens, b.tokens) << "greedy continuations differ";
  ASSERT_EQ(a.final_logits.size(), b.final_logits.size());
  EXPECT_EQ(0, std::memcmp(a.final_logits.data(), b.final_logits.data(),
                           a.final_logits.size() * sizeof(float)))
      << "logits after the continuation differ";
}

}  // namespace kvstash::fixtures
