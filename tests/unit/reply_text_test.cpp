// Stop strings and UTF-8 on the way out (server/reply_text.h): what is sent, held back and cut.
#include "server/reply_text.h"

#include <gtest/gtest.h>

using kvstash::server::TextCutter;

namespace {
// Feeds the pieces; returns what was sent, with "|" between the steps' outputs.
std::string run(TextCutter& c, const std::vector<std::string>& pieces, int* stopped = nullptr) {
  std::string out;
  for (const auto& p : pieces) {
    const auto step = c.add(p);
    out += step.out + "|";
    if (step.stopped) {
      if (stopped) *stopped = static_cast<int>(*step.stopped);
      return out;
    }
  }
  return out + c.flush();
}
}  // namespace

TEST(TextCutter, WithoutStopsSendsEveryPieceAtOnce) {
  TextCutter c({});
  EXPECT_EQ(run(c, {"Hel", "lo", " world"}), "Hel|lo| world|");
}

TEST(TextCutter, HoldsBackWhatCouldStartAStopStringAndCutsAtIt) {
  TextCutter c({"END"});
  int stopped = -1;
  EXPECT_EQ(run(c, {"ab", "cE", "N", "Dxyz"}, &stopped), "ab|c|||");
  EXPECT_EQ(stopped, 0);
}

TEST(TextCutter, ReleasesAHeldPrefixThatDidNotBecomeAStop) {
  TextCutter c({"END"});
  EXPECT_EQ(run(c, {"aE", "Nx", "b"}), "a|ENx|b|");
}

TEST(TextCutter, TheEarliestOfSeveralStopsWins) {
  TextCutter c({"zz", "b"});
  int stopped = -1;
  EXPECT_EQ(run(c, {"a", "bzz"}, &stopped), "a||");
  EXPECT_EQ(stopped, 1);
}

TEST(TextCutter, HoldsBackATornUtf8CharacterUntilItIsWhole) {
  TextCutter c({});
  const std::string euro = "\xE2\x82\xAC";  // three bytes
  EXPECT_EQ(run(c, {"a" + euro.substr(0, 1), euro.substr(1, 1), euro.substr(2) + "b"}),
            "a||" + euro + "b|");
}

TEST(TextCutter, FlushSendsWhatWasHeldAtTheEnd) {
  TextCutter c({"END"});
  EXPECT_EQ(run(c, {"xEN"}), "x|EN");
}
